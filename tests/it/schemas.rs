//! The JSON Schemas committed under `schemas/` must match what the code
//! generates. Run with `DISTEX_BLESS=1` to rewrite them after a protocol change.

use crate::util as support;

use support::Sandbox;

#[test]
fn committed_schemas_match_the_code() {
    let sb = Sandbox::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let mut stale = Vec::new();
    for kind in ["request", "response", "config"] {
        let generated = sb.cmd().args(["schema", kind]).run().success().stdout();
        let serde_json::Value::Object(_) = serde_json::from_str(&generated).expect("schema is JSON") else {
            panic!("schema {kind} is not an object");
        };
        let path = dir.join(format!("{kind}.schema.json"));
        if std::env::var_os("DISTEX_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            stale.push(path.display().to_string());
        }
    }
    assert!(stale.is_empty(), "out of date: {stale:?}; regenerate with DISTEX_BLESS=1 cargo test --test schemas");
}

#[test]
fn request_schema_names_every_op() {
    let sb = Sandbox::new();
    let schema = sb.cmd().args(["schema", "request"]).run().success().stdout();
    for op in ["\"route\"", "\"nodes\""] {
        assert!(schema.contains(op), "{op} missing from request schema");
    }
}

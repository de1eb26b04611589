//! Isolation of region workers: a cleared environment (no secret of the
//! parent reaches a processor), a private working directory that is HOME
//! and TMPDIR and is removed afterwards, hostile region names that never
//! reach a shell, a path or an argument, and `--sandbox`.

use crate::util as support;

use support::Sandbox;

/// Prints the worker's view of the world as JSON.
const INSPECT: &str = r#"python3 -c '
import json, os, sys
rows = sys.stdin.read()
print(json.dumps({"env": dict(os.environ), "cwd": os.getcwd(), "region": os.environ.get("DISTEX_REGION"), "stdin": rows}))
'"#;

#[test]
fn a_secret_in_the_parent_environment_is_invisible_to_processors() {
    let sb = Sandbox::new();
    let run = sb
        .cmd()
        .env("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
        .env("GITHUB_TOKEN", "ghp_s3cr3t")
        .env("LC_ALL", "C.UTF-8")
        .env("TZ", "UTC")
        .args(["process", "--demo", "--json", "--processor", INSPECT])
        .run()
        .success();
    let report = run.json();
    for (name, region) in report["regions"].as_object().unwrap() {
        let result = &region["result"];
        let env = result["env"].as_object().unwrap();
        let text = result["env"].to_string();
        assert!(!text.contains("s3cr3t"), "a secret leaked into region {name}: {text}");
        assert!(!env.contains_key("AWS_SECRET_ACCESS_KEY") && !env.contains_key("GITHUB_TOKEN"));
        assert_eq!(env["LC_ALL"], "C.UTF-8");
        assert_eq!(env["TZ"], "UTC");
        assert_eq!(env["DISTEX_REGION"], name.as_str());
        assert_eq!(env["DISTEX_ATTEMPT"], "1");
        assert_eq!(env["DISTEX_TASK_ID"], region["task"]);
        // HOME and TMPDIR are inside the worker's own fresh directory, which is its cwd.
        let cwd = result["cwd"].as_str().unwrap();
        assert_eq!(env["HOME"].as_str().unwrap(), format!("{cwd}/home"));
        assert_eq!(env["TMPDIR"].as_str().unwrap(), format!("{cwd}/tmp"));
        assert!(!std::path::Path::new(cwd).exists(), "the work directory {cwd} was not removed");
        // The records arrive on stdin in the input's format, header first.
        assert!(result["stdin"].as_str().unwrap().starts_with("region,city,product,units,revenue,note\n"));
    }
    let cwds: std::collections::BTreeSet<&str> =
        report["regions"].as_object().unwrap().values().map(|r| r["result"]["cwd"].as_str().unwrap()).collect();
    assert_eq!(cwds.len(), 3, "each region has its own directory");
}

#[test]
fn keep_workdirs_keeps_them() {
    let sb = Sandbox::new();
    let report = sb
        .cmd()
        .args(["process", "--demo", "--json", "--keep-workdirs", "--processor", INSPECT])
        .run()
        .success()
        .json();
    let dir = report["workdir"].as_str().unwrap().to_string();
    let cwd = report["regions"]["A"]["result"]["cwd"].as_str().unwrap();
    assert!(std::path::Path::new(cwd).is_dir());
    assert!(cwd.starts_with(&dir));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Region names that would do damage if they reached a shell, a path or an argument.
const HOSTILE: [&str; 7] = ["../etc", "$(touch pwned)", "`touch pwned2`", "a b", "new\nline", "; rm -rf ~ #", "-rf"];

#[test]
fn hostile_region_names_stay_data() {
    let sb = Sandbox::new();
    let mut csv = String::from("region,v\n");
    for (i, name) in HOSTILE.iter().enumerate() {
        csv.push_str(&format!("\"{}\",{}\n", name.replace('"', "\"\""), i + 1));
    }
    std::fs::write(sb.path().join("d.csv"), &csv).unwrap();
    std::fs::create_dir(sb.path().join("home")).unwrap();
    std::fs::write(sb.path().join("home/keep"), "x").unwrap();

    // Built-in summary and a user processor, human and JSON output.
    let report = sb.cmd().args(["process", "d.csv", "--by", "region", "--json"]).run().success().json();
    for (i, name) in HOSTILE.iter().enumerate() {
        assert_eq!(report["regions"][name]["stats"]["v"]["sum"], (i + 1) as f64, "region {name:?}");
    }
    let report =
        sb.cmd().args(["process", "d.csv", "--by", "region", "--json", "--processor", INSPECT]).run().success().json();
    for name in HOSTILE {
        assert_eq!(report["regions"][name]["result"]["region"], name);
    }
    let human = sb.cmd().args(["process", "d.csv", "--by", "region"]).run().success().stdout();
    assert!(human.contains("Region new\\nline: 1 records processed"), "{human}");
    assert!(
        !human.lines().any(|l| l == "line: 1 records processed" || l.starts_with("line")),
        "a newline in a name forged a line:\n{human}"
    );
    assert!(human.contains("Region ../etc: 1 records processed"));

    // --regions: hostile file names are region names too.
    let dir = sb.path().join("split");
    std::fs::create_dir(&dir).unwrap();
    for name in ["$(touch pwned3)", "a b", "-rf"] {
        std::fs::write(dir.join(format!("{name}.csv")), "v\n1\n2\n").unwrap();
    }
    let report =
        sb.cmd().args(["process", "--regions", "split", "--json", "--processor", INSPECT]).run().success().json();
    assert_eq!(report["regions"]["$(touch pwned3)"]["result"]["region"], "$(touch pwned3)");
    assert_eq!(report["regions"]["-rf"]["records"], 2);

    for f in ["pwned", "pwned2", "pwned3"] {
        assert!(!sb.path().join(f).exists(), "a region name ran as a command ({f})");
    }
    assert!(sb.path().join("home/keep").exists());
    assert!(!sb.path().join("etc").exists());
}

#[test]
fn sandbox_blocks_writes_outside_the_workdir_and_the_network() {
    let sb = Sandbox::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let outside = sb.path().join("outside.txt");
    let cmd = format!(
        r#"python3 -c '
import json, socket
res = {{}}
try:
    open("{outside}", "w").write("x"); res["outside"] = "written"
except OSError as e:
    res["outside"] = "denied"
open("inside.txt", "w").write("x"); res["inside"] = "written"
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2); res["net"] = "connected"
except OSError:
    res["net"] = "blocked"
print(json.dumps(res))
'"#,
        outside = outside.display()
    );
    let run = sb.cmd().args(["process", "--demo", "--json", "--sandbox", "--processor", &cmd]).run();
    if !support::bwrap_works() {
        let run = run.expect_code(2);
        assert!(run.stderr().contains("--sandbox is not available here"), "{}", run.stderr());
        return;
    }
    let report = run.success().json();
    for region in ["A", "B", "C"] {
        assert_eq!(
            report["regions"][region]["result"],
            serde_json::json!({"outside": "denied", "inside": "written", "net": "blocked"})
        );
    }
    assert!(!outside.exists());
    // The built-in summary works inside the sandbox too.
    let report = sb.cmd().args(["process", "--demo", "--json", "--sandbox"]).run().success().json();
    assert_eq!(report["totals"]["records"], 30);
    // Without --sandbox the same processor can write outside (the test is able to fail).
    let report =
        sb.cmd().args(["process", "--demo", "--json", "--jobs", "1", "--processor", &cmd]).run().success().json();
    assert_eq!(report["regions"]["A"]["result"]["net"], "connected");
    assert!(outside.exists());
}

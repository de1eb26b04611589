//! The one-way flow of the source tree, checked: every `crate::` path in
//! `src/` names a module of a lower layer than the module it is written in
//! (so nothing imports upward and no two modules import each other).
//!
//! The layers, lowest first (README "Layout"): leaves (`error`, `sys`), `config`, `state` and `announce`, `route` (pure), `exec`,
//! `tasks`, `process`, `report`; then `protocol` and `hook` at the side,
//! `commands`, and `cli` on top. A new top-level module must be given a
//! layer here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A module's layer; a module may only use modules of a lower layer.
fn layer(module: &str) -> Option<u32> {
    Some(match module {
        "error" | "sys" => 0,
        "config" => 1,
        "state" | "announce" => 2,
        "route" => 3,
        "exec" => 4,
        "tasks" => 5,
        "process" => 6,
        "report" => 7,
        "protocol" | "hook" => 8,
        "commands" => 9,
        "cli" => 10,
        _ => return None,
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules named right after `crate::` in `code`, including
/// each one in a `crate::{a::x, b}` group.
fn used_modules(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: the first word after `{` or a
            // comma at nesting depth 0.
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_ascii_alphabetic() || c == '_') => {
                        used.insert(ident(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            used.insert(ident(rest));
        }
    }
    used
}

fn ident(text: &str) -> String {
    text.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

/// Code without `//` comments (doc links may point anywhere).
fn without_comments(source: &str) -> String {
    source.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

#[test]
fn no_module_imports_upward_or_in_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let own = relative.components().next().unwrap().as_os_str().to_string_lossy();
        let own = own.trim_end_matches(".rs");
        if matches!(own, "lib" | "main") {
            continue;
        }
        let Some(own_layer) = layer(own) else {
            problems.push(format!("src/{}: module {own} has no layer in tests/it/layers.rs", relative.display()));
            continue;
        };
        let code = without_comments(&std::fs::read_to_string(&file).unwrap());
        for used in used_modules(&code) {
            if used == own {
                continue;
            }
            match layer(&used) {
                Some(l) if l < own_layer => {}
                Some(_) => {
                    problems.push(format!("src/{}: {own} uses {used}, which is not below it", relative.display()))
                }
                None => problems.push(format!("src/{}: {own} uses {used}, which has no layer", relative.display())),
            }
        }
    }
    assert!(problems.is_empty(), "the one-way flow is broken:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_grouped_and_nested_paths() {
    let code = "use crate::{config::{self, Config}, route::decide};\nlet x = crate::exec::run();";
    let used: Vec<String> = used_modules(code).into_iter().collect();
    assert_eq!(used, ["config", "exec", "route"]);
}

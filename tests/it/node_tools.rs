//! Only nodes that have the tool: `distex nodes --probe` learns each real
//! sshd node's system and which of the rules' programs its user can run,
//! `distex nodes` shows it, routing skips a node that lacks the matched
//! program; a remote `distex run` learns the same without `--probe`; and a
//! part-level rewritten line runs for real against a node.

use crate::util as support;

use serde_json::Value;
use support::Sandbox;
use support::sshd::Cluster;

/// One builder node; a user rule names a program no node has.
fn setup() -> (Sandbox, Cluster) {
    let cluster = Cluster::start(1);
    let sandbox = Sandbox::new();
    let tail =
        "[[rule]]\nname = \"rare_tool\"\ncommands = [\"distex-no-such-tool\"]\nrequires = { roles = [\"builder\"] }\n";
    sandbox.write_config(&cluster.config("roles = [\"builder\"]", tail));
    (sandbox, cluster)
}

fn route(sandbox: &Sandbox, line: &str) -> Value {
    sandbox.configured().args(["route", "--json", "--assume-load", "local=0", "--", line]).run().success().json()
}

#[test]
fn a_probe_learns_system_and_tools_and_routing_skips_a_node_without_the_program() {
    let (sb, _cluster) = setup();
    // Before any probe nothing is known: the node is assumed to have it.
    assert_eq!(route(&sb, "distex-no-such-tool --all")["node"], "n1");

    let probe = sb.configured().args(["nodes", "--probe", "--json"]).run().success().json();
    let n1 = probe["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "n1").unwrap().clone();
    let platform = &n1["platform"];
    let uname_m = std::process::Command::new("uname").arg("-m").output().unwrap();
    assert_eq!(platform["os"], "Linux", "{n1}");
    assert_eq!(platform["arch"], String::from_utf8_lossy(&uname_m.stdout).trim(), "{n1}");
    let missing: Vec<&str> = platform["missing"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let present: Vec<&str> = platform["programs"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(missing.contains(&"distex-no-such-tool"), "{n1}");
    assert!(present.contains(&"make"), "make is in /usr/bin on the node: {n1}");

    // The cache keeps it: `distex nodes` (no network) shows it.
    let table = sb.configured().arg("nodes").run().success().stdout();
    assert!(table.contains("system: Linux"), "{table}");
    assert!(table.contains("lacks:") && table.contains("distex-no-such-tool"), "{table}");

    // Routing skips the node for the program it lacks, and says why.
    let decision = route(&sb, "distex-no-such-tool --all");
    assert_eq!(decision["distribute"], false, "{decision}");
    assert_eq!(decision["rule"], "rare_tool");
    let warnings = decision["warnings"].to_string();
    assert!(warnings.contains("has distex-no-such-tool on its PATH"), "{warnings}");
    assert!(
        decision["candidates"][0]["why_not"].as_str().unwrap().starts_with("lacks distex-no-such-tool"),
        "{decision}"
    );
    // ... but not for the programs it has.
    assert_eq!(route(&sb, "make -j2")["node"], "n1");
    // Nor for a function (or alias) of that name the line defines itself:
    // calling it looks nothing up on PATH. `command` bypasses functions.
    assert_eq!(route(&sb, "distex-no-such-tool() { make -j2; }; distex-no-such-tool")["node"], "n1");
    assert_eq!(route(&sb, "alias distex-no-such-tool='make'\ndistex-no-such-tool")["node"], "n1");
    assert_eq!(route(&sb, "distex-no-such-tool() { :; }; command distex-no-such-tool")["distribute"], false);
}

#[test]
fn a_remote_run_learns_the_platform_without_a_probe() {
    let (sb, _cluster) = setup();
    let before = sb.configured().args(["nodes", "--json"]).run().success().json();
    assert!(!before.to_string().contains("\"platform\""), "nothing known yet: {before}");

    // A plain run: its output and status are the command's own.
    let run = sb.configured().args(["run", "--node", "n1", "--", "echo hi; exit 3"]).run();
    assert_eq!(run.code(), Some(3));
    assert_eq!(run.stdout(), "hi\n");

    // The cache now knows n1's system and tools, with no --probe.
    let nodes = sb.configured().args(["nodes", "--json"]).run().success().json();
    let n1 = nodes["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "n1").unwrap().clone();
    let platform = &n1["platform"];
    assert_eq!(platform["os"], "Linux", "{n1}");
    let missing: Vec<&str> = platform["missing"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let present: Vec<&str> = platform["programs"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(missing.contains(&"distex-no-such-tool"), "{n1}");
    assert!(present.contains(&"make"), "{n1}");

    // Routing uses it as after a probe: the rare tool stays here, make goes to n1.
    let decision = route(&sb, "distex-no-such-tool --all");
    assert_eq!(decision["distribute"], false, "{decision}");
    assert!(
        decision["candidates"][0]["why_not"].as_str().unwrap().starts_with("lacks distex-no-such-tool"),
        "{decision}"
    );
    assert_eq!(route(&sb, "make -j2")["node"], "n1");
}

#[test]
fn a_rewritten_line_runs_its_local_part_here_and_its_routed_part_on_the_node() {
    let (sb, _cluster) = setup();
    let project = sb.path().join("proj");
    std::fs::create_dir_all(&project).unwrap();
    // A real repository: what is synced is git's file set (gen.h, untracked, included).
    let init = std::process::Command::new("git").args(["init", "-q"]).arg(&project).status().unwrap();
    assert!(init.success(), "git init");
    std::fs::write(project.join("Makefile"), "show:\n\t@cat gen.h; echo \"on $$DISTEX_TEST_NODE\"\n").unwrap();
    let line = "echo 'int x;' > gen.h && make -s show";
    let input = serde_json::json!({
        "hook_event_name": "PreToolUse", "tool_name": "Bash", "cwd": project,
        "tool_input": { "command": line }
    });
    let answer = sb.configured().args(["hook", "pre-tool-use"]).stdin(&input.to_string()).success().json();
    let rewritten = answer["hookSpecificOutput"]["updatedInput"]["command"].as_str().unwrap().to_string();
    assert_eq!(rewritten, "echo 'int x;' > gen.h && distex run --node n1 -- 'make -s show'");

    // Run it as Claude Code's Bash tool would: a shell in the project, distex on PATH.
    let bin_dir = std::path::Path::new(support::DISTEX).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&rewritten)
        .current_dir(&project)
        .env("PATH", path)
        .env("HOME", sb.path().join("home"))
        .env("DISTEX_STATE_DIR", sb.path().join("state"))
        .env("DISTEX_RUNTIME_DIR", sb.path().join("run"))
        .env("DISTEX_CONFIG", sb.path().join("cluster.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // gen.h was written here first, synced, and read by make on the node.
    assert_eq!(stdout, "int x;\non n1\n");
    assert_eq!(std::fs::read_to_string(project.join("gen.h")).unwrap(), "int x;\n");
}

//! `distex hook pre-tool-use` as Claude Code runs it: a process reading the
//! PreToolUse JSON on stdin. These tests check what it prints, its exit
//! status, and what it leaves in the log, for every mode and every way the
//! input or the config can go wrong.

mod support;

use serde_json::{Value, json};
use support::Sandbox;

/// One builder node on a local "macos" machine, so heavy commands route;
/// the overload threshold is out of reach so the test machine's own load
/// never routes anything.
fn cluster(extra: &str) -> String {
    format!(
        r#"
[local]
name = "laptop"
os = "macos"

[[node]]
name = "builder"
host = "127.0.0.2"
os = "linux"
roles = ["builder"]
slots = 4

[routing]
overload_threshold = 1000.0
{extra}
"#
    )
}

fn bash(command: &str) -> String {
    json!({
        "session_id": "s1", "transcript_path": "/tmp/t.jsonl", "cwd": "/tmp", "permission_mode": "default",
        "hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_use_id": "toolu_1",
        "tool_input": { "command": command, "description": "Run it", "timeout": 120000, "run_in_background": false }
    })
    .to_string()
}

/// Runs the hook in `sandbox` with `config` and `input`; asserts exit 0 and
/// an empty stderr (Claude Code shows stderr to the user in some modes).
fn hook(sandbox: &Sandbox, config: &str, input: &str) -> support::Run {
    let path = sandbox.write_config(config);
    let run = sandbox.cmd().args(["hook", "pre-tool-use"]).env("DISTEX_CONFIG", path).stdin(input).success();
    assert_eq!(run.stderr(), "", "the hook wrote to stderr");
    run
}

fn log(sandbox: &Sandbox) -> String {
    std::fs::read_to_string(sandbox.path().join("state/hook.log")).unwrap_or_default()
}

#[test]
fn local_commands_get_no_output_at_all() {
    let sandbox = Sandbox::new();
    for command in ["ls -la", "echo \"docker is great\"", "git commit -m 'fix make'", "cat Makefile", "which cargo"] {
        let run = hook(&sandbox, &cluster(""), &bash(command));
        assert_eq!(run.stdout(), "", "{command} should stay local");
    }
    assert_eq!(log(&sandbox), "", "a local decision is not an event worth logging");
}

#[test]
fn a_heavy_command_is_rewritten_with_every_other_field_unchanged() {
    let sandbox = Sandbox::new();
    let run = hook(&sandbox, &cluster(""), &bash("cargo build --release 2>&1 | tail -5"));
    let out = run.json();
    let specific = &out["hookSpecificOutput"];
    assert_eq!(specific["hookEventName"], "PreToolUse");
    assert_eq!(
        specific["updatedInput"],
        json!({
            "command": "distex run --node builder -- 'cargo build --release' 2>&1 | tail -5",
            "description": "Run it", "timeout": 120000, "run_in_background": false
        })
    );
    assert!(specific.get("permissionDecision").is_none(), "no permission decision by default: {out}");
    let context = specific["additionalContext"].as_str().unwrap();
    assert!(context.contains("builder") && context.contains("heavy_computation"), "{context}");
    assert!(specific["permissionDecisionReason"].as_str().unwrap().contains("builder"), "{out}");
    assert_eq!(out.as_object().unwrap().len(), 1, "only hookSpecificOutput: {out}");
}

#[test]
fn only_the_parts_that_belong_on_the_node_are_rewritten() {
    let sandbox = Sandbox::new();
    let cases = [
        // Local parts stay exactly as written, in order; the routed part is wrapped.
        (
            "git add -A && git commit -m wip && make",
            "git add -A && git commit -m wip && distex run --node builder -- make",
        ),
        (
            "cd ../other && make -j8 2>&1 | tail -3",
            "cd ../other && distex run --node builder -- 'make -j8' 2>&1 | tail -3",
        ),
        // Splitting would change the meaning: the whole line moves.
        ("export CC=clang && make", "distex run --node builder -- 'export CC=clang && make'"),
        ("make && ./run_tests", "distex run --node builder -- 'make && ./run_tests'"),
    ];
    for (line, want) in cases {
        let out = hook(&sandbox, &cluster(""), &bash(line)).json();
        let specific = &out["hookSpecificOutput"];
        assert_eq!(specific["updatedInput"]["command"], want, "{line}");
        assert!(specific["permissionDecisionReason"].as_str().unwrap().contains(want), "{out}");
    }
    // A later part that uses the build here keeps the whole line here: no answer at all.
    let run = hook(&sandbox, &cluster(""), &bash("make && make install"));
    assert_eq!(run.stdout(), "", "make && make install stays here");
}

#[test]
fn a_line_nested_too_deeply_to_analyze_is_left_alone() {
    let sandbox = Sandbox::new();
    let line = format!("{}make{}", "{ ".repeat(3000), "; }".repeat(3000));
    let run = hook(&sandbox, &cluster(""), &bash(&line));
    assert_eq!(run.stdout(), "", "the command runs as written");
}

#[test]
fn linux_only_commands_go_to_a_linux_node() {
    let sandbox = Sandbox::new();
    let out = hook(&sandbox, &cluster(""), &bash("sudo docker compose up -d")).json();
    assert_eq!(
        out["hookSpecificOutput"]["updatedInput"]["command"],
        "distex run --node builder -- 'sudo docker compose up -d'"
    );
}

#[test]
fn auto_approve_is_an_explicit_opt_in() {
    let sandbox = Sandbox::new();
    let out = hook(&sandbox, &cluster("[hook]\nauto_approve = true\n"), &bash("make -j8")).json();
    assert_eq!(out["hookSpecificOutput"]["permissionDecision"], "allow");
    assert_eq!(out["hookSpecificOutput"]["updatedInput"]["command"], "distex run --node builder -- 'make -j8'");
}

#[test]
fn suggest_mode_only_tells_claude() {
    let sandbox = Sandbox::new();
    let out = hook(&sandbox, &cluster("[hook]\nmode = \"suggest\"\n"), &bash("pytest -x")).json();
    let specific = &out["hookSpecificOutput"];
    assert!(specific.get("updatedInput").is_none(), "{out}");
    assert!(specific.get("permissionDecision").is_none(), "{out}");
    assert!(
        specific["additionalContext"].as_str().unwrap().contains("distex run --node builder -- 'pytest -x'"),
        "{out}"
    );
}

#[test]
fn off_mode_and_a_cluster_without_nodes_do_nothing() {
    let sandbox = Sandbox::new();
    assert_eq!(hook(&sandbox, &cluster("[hook]\nmode = \"off\"\n"), &bash("cargo build")).stdout(), "");
    let alone = "[local]\nname = \"laptop\"\nos = \"macos\"\n";
    assert_eq!(hook(&sandbox, alone, &bash("docker ps")).stdout(), "");
    assert_eq!(log(&sandbox), "");
}

#[test]
fn a_broken_config_leaves_the_command_alone_and_says_why_in_the_log() {
    let sandbox = Sandbox::new();
    let run = hook(&sandbox, "[[node]]\nname = \"b\"\nhost = 5\n", &bash("cargo build"));
    assert_eq!(run.stdout(), "");
    let log = log(&sandbox);
    assert!(log.contains("config error") && log.contains("cluster.toml"), "{log}");
    assert_eq!(log.lines().count(), 1, "{log}");
}

#[test]
fn a_missing_config_file_is_logged_not_fatal() {
    let sandbox = Sandbox::new();
    let run = sandbox
        .cmd()
        .args(["hook", "pre-tool-use"])
        .env("DISTEX_CONFIG", sandbox.path().join("nope.toml"))
        .stdin(&bash("cargo build"))
        .success();
    assert_eq!(run.stdout(), "");
    assert!(log(&sandbox).contains("nope.toml"), "{}", log(&sandbox));
}

#[test]
fn unreadable_input_and_other_tools_are_ignored_and_logged() {
    let sandbox = Sandbox::new();
    let cases = [
        ("", "unreadable"),
        ("{not json", "unreadable"),
        (r#"{"hook_event_name":"PostToolUse","tool_name":"Bash","tool_input":{"command":"make"}}"#, "PostToolUse"),
        (
            r#"{"hook_event_name":"PreToolUse","tool_name":"Write","tool_input":{"file_path":"/x","content":"make"}}"#,
            "Write",
        ),
        (r#"{"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{}}"#, "Bash"),
    ];
    for (input, _) in cases {
        assert_eq!(hook(&sandbox, &cluster(""), input).stdout(), "", "input {input:?}");
    }
    let log = log(&sandbox);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), cases.len(), "{log}");
    for (line, (_, expected)) in lines.iter().zip(cases) {
        assert!(line.contains(expected), "{line:?} should mention {expected:?}");
    }
}

#[test]
fn a_command_that_does_not_parse_stays_local() {
    let sandbox = Sandbox::new();
    assert_eq!(hook(&sandbox, &cluster(""), &bash("cargo build 'unterminated")).stdout(), "");
}

#[test]
fn an_unhealthy_node_is_not_chosen() {
    let sandbox = Sandbox::new();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let second = "[[node]]\nname = \"spare\"\nhost = \"127.0.0.3\"\nos = \"linux\"\nroles = [\"builder\"]\nslots = 1\n";
    std::fs::create_dir_all(sandbox.path().join("state")).unwrap();
    let states =
        json!({ "nodes": { "builder": { "answered": false, "checked_at": now, "error": "connection refused" } } });
    std::fs::write(sandbox.path().join("state/nodes.json"), states.to_string()).unwrap();
    let out = hook(&sandbox, &cluster(second), &bash("cargo test")).json();
    assert_eq!(out["hookSpecificOutput"]["updatedInput"]["command"], "distex run --node spare -- 'cargo test'");
    // With the only builder down, nothing is rewritten at all.
    assert_eq!(hook(&sandbox, &cluster(""), &bash("cargo test")).stdout(), "");
}

#[test]
fn an_already_rewritten_command_is_not_wrapped_twice() {
    let sandbox = Sandbox::new();
    assert_eq!(hook(&sandbox, &cluster(""), &bash("distex run --node builder -- 'cargo build'")).stdout(), "");
}

/// The announcement is spoken by a program the hook starts and does not wait
/// for: the hook has exited while that program is still running.
#[test]
fn the_announcement_is_spoken_without_waiting() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path();
    let said = dir.join("said.txt");
    let release = dir.join("release");
    let tts = dir.join("fake-say");
    std::fs::write(
        &tts,
        format!(
            "#!/bin/sh\nprintf '%s' \"$1\" > '{said}.tmp'\necho $$ > '{said}.pid'\nmv '{said}.tmp' '{said}'\n\
             while [ ! -e '{release}' ] && [ -d '{dir}' ]; do sleep 0.05; done\n",
            said = said.display(),
            release = release.display(),
            dir = dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&tts, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = cluster(&format!("[announce]\nspeak = true\ncommand = \"{}\"\n", tts.display()));
    let run = hook(&sandbox, &config, &bash("cargo build"));
    assert!(run.stdout().contains("updatedInput"), "{}", run.stdout());
    // The hook is done; the speaker is still going (it waits for `release`).
    let spoken = wait_for_file(&said);
    assert_eq!(spoken, "Heavy compilation detected, offloading to builder.");
    let pid: i32 = wait_for_file(&dir.join("said.txt.pid")).trim().parse().unwrap();
    assert!(process_alive(pid), "the speaker should still be running after the hook exited");
    std::fs::write(&release, "").unwrap();
    // Released, it ends by itself: nothing is left behind.
    for _ in 0..200 {
        if !process_alive(pid) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("the stand-in speaker {pid} did not exit after being released");
}

fn wait_for_file(path: &std::path::Path) -> String {
    // Polls until the background program has written it (bounded so a broken
    // build fails instead of hanging).
    for _ in 0..400 {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("{} never appeared", path.display());
}

fn process_alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn output_is_one_json_object_claude_code_can_read() {
    let sandbox = Sandbox::new();
    let run = hook(&sandbox, &cluster(""), &bash("go build ./..."));
    assert!(run.stdout().ends_with('\n') && run.stdout().trim().lines().count() == 1, "{:?}", run.stdout());
    let _: Value = run.json();
}

/// When this machine is overloaded the router may send any command away;
/// the hook only suggests that for commands no rule matched (`git add` must
/// happen here), and still rewrites rule-matched ones.
#[test]
fn overload_alone_never_rewrites() {
    let sandbox = Sandbox::new();
    let busy = cluster("").replace("overload_threshold = 1000.0", "overload_threshold = 0.0001");
    let spare = "[[node]]\nname = \"spare\"\nhost = \"127.0.0.3\"\nos = \"macos\"\nslots = 64\n";
    let config = format!("{busy}\n{spare}");
    let path = sandbox.write_config(&config);
    let run =
        sandbox.cmd().args(["hook", "pre-tool-use"]).env("DISTEX_CONFIG", &path).stdin(&bash("git add -A")).success();
    // Whether the router calls this machine overloaded depends on its load
    // right now; either way nothing may be rewritten.
    if !run.stdout().is_empty() {
        let out = run.json();
        assert!(out["hookSpecificOutput"].get("updatedInput").is_none(), "{out}");
        assert!(out["hookSpecificOutput"]["additionalContext"].as_str().unwrap().contains("suggests"), "{out}");
    }
    let heavy = hook(&sandbox, &config, &bash("cargo build")).json();
    assert!(
        heavy["hookSpecificOutput"]["updatedInput"]["command"].as_str().unwrap().starts_with("distex run --node"),
        "{heavy}"
    );
}

#[test]
fn a_suggestion_is_not_announced() {
    let sandbox = Sandbox::new();
    let speaker = |name: &str| {
        let script = sandbox.path().join(name);
        let out = sandbox.path().join(format!("{name}.said"));
        // Written aside and renamed: the file appears whole, never empty.
        let out_text = out.display();
        std::fs::write(
            &script,
            format!("#!/bin/sh\nprintf '%s' \"$1\" > '{out_text}.tmp'\nmv '{out_text}.tmp' '{out_text}'\n"),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        (script, out)
    };
    let (suggest_tts, suggest_said) = speaker("suggest-say");
    let (rewrite_tts, rewrite_said) = speaker("rewrite-say");
    let with = |mode: &str, tts: &std::path::Path| {
        cluster(&format!("[announce]\nspeak = true\ncommand = \"{}\"\n[hook]\nmode = \"{mode}\"\n", tts.display()))
    };
    let run = hook(&sandbox, &with("suggest", &suggest_tts), &bash("cargo build"));
    assert!(run.stdout().contains("suggests"), "{}", run.stdout());
    // A later rewrite does speak; by the time its speaker (started after any
    // the suggestion could have started) has finished, nothing spoke for the suggestion.
    hook(&sandbox, &with("rewrite", &rewrite_tts), &bash("cargo build"));
    assert_eq!(wait_for_file(&rewrite_said), "Heavy compilation detected, offloading to builder.");
    assert!(!suggest_said.exists(), "a suggestion was announced as if the command had moved");
}

//! `distex hook pre-tool-use` as Claude Code runs it: a process reading the
//! PreToolUse JSON on stdin. These tests check what it prints, its exit
//! status, and what it leaves in the log, for every mode and every way the
//! input or the config can go wrong.

use crate::util as support;

use serde_json::{Value, json};
use support::Sandbox;

/// [`support::BUILDER_CLUSTER`] followed by `extra`.
fn cluster(extra: &str) -> String {
    format!("{}{extra}\n", support::BUILDER_CLUSTER)
}

fn bash(command: &str) -> String {
    bash_in(command, "/nonexistent-project", "s1", "default")
}

/// The hook input for `command` in session `session`, in directory `cwd`.
fn bash_in(command: &str, cwd: &str, session: &str, mode: &str) -> String {
    json!({
        "session_id": session, "transcript_path": "/tmp/t.jsonl", "cwd": cwd, "permission_mode": mode,
        "hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_use_id": "toolu_1",
        "tool_input": { "command": command, "description": "Run it", "timeout": 120000, "run_in_background": false }
    })
    .to_string()
}

/// Runs the hook in `sandbox` with `config` and `input`; asserts exit 0 and
/// an empty stderr (Claude Code shows stderr to the user in some modes).
fn hook(sandbox: &Sandbox, config: &str, input: &str) -> support::Run {
    hook_with(sandbox, config, input, &[])
}

/// [`hook`] with extra environment variables. Claude Code's own variables
/// are cleared, and the managed policy file is one in the sandbox, so only
/// the settings a test writes count.
fn hook_with(sandbox: &Sandbox, config: &str, input: &str, env: &[(&str, &std::path::Path)]) -> support::Run {
    let path = sandbox.write_config(config);
    let mut cmd = sandbox.cmd().args(["hook", "pre-tool-use"]).env("DISTEX_CONFIG", path);
    cmd.cmd.env_remove("CLAUDE_CONFIG_DIR").env_remove("CLAUDE_PROJECT_DIR");
    cmd = cmd.env("DISTEX_CLAUDE_MANAGED_SETTINGS", sandbox.path().join("managed-settings.json"));
    for (key, value) in env {
        cmd = cmd.env(key, value);
    }
    let run = cmd.stdin(input).success();
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
    assert!(
        context.contains("sent part of this Bash command to node builder")
            && context.contains("`cargo build --release` ran there")
            && context.contains("heavy_computation"),
        "{context}"
    );
    assert!(specific.get("permissionDecisionReason").is_none(), "no reason without a decision: {out}");
    assert_eq!(
        out["systemMessage"],
        "distex: sent to builder (rule heavy_computation: `cargo build`): cargo build --release \
         (the rest of the line runs here)"
    );
    assert_eq!(out.as_object().unwrap().len(), 2, "only systemMessage and hookSpecificOutput: {out}");
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
        let context = specific["additionalContext"].as_str().unwrap();
        assert!(context.contains(&format!("as `{want}`")), "{out}");
        let split = !want.starts_with("distex run");
        assert_eq!(context.contains("sent part of this Bash command"), split, "{line}: {context}");
        let shown = out["systemMessage"].as_str().unwrap();
        assert_eq!(shown.ends_with("(the rest of the line runs here)"), split, "{line}: {shown}");
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
fn off_mode_does_nothing() {
    let sandbox = Sandbox::new();
    assert_eq!(hook(&sandbox, &cluster("[hook]\nmode = \"off\"\n"), &bash("cargo build")).stdout(), "");
    let alone = "[local]\nname = \"laptop\"\nos = \"macos\"\n[hook]\nmode = \"off\"\n";
    assert_eq!(hook(&sandbox, alone, &bash("docker ps")).stdout(), "");
    assert_eq!(log(&sandbox), "");
}

/// The user's message alone: `{"systemMessage": "..."}` and nothing else.
fn notice(run: &support::Run) -> String {
    let out = run.json();
    assert_eq!(out.as_object().map(|o| o.len()), Some(1), "only a systemMessage: {out}");
    out["systemMessage"].as_str().unwrap_or_else(|| panic!("no systemMessage: {out}")).to_string()
}

#[test]
fn no_nodes_is_told_once_per_session_and_nothing_is_rewritten() {
    let sandbox = Sandbox::new();
    let alone = "[local]\nname = \"laptop\"\nos = \"macos\"\n";
    let first = notice(&hook(&sandbox, alone, &bash("docker ps")));
    assert!(first.contains("no nodes are configured") && first.contains("cluster.toml"), "{first}");
    assert_eq!(hook(&sandbox, alone, &bash("docker ps")).stdout(), "", "said again in the same session");
    assert_eq!(hook(&sandbox, alone, &bash("ls")).stdout(), "");
    let other = bash_in("docker ps", "/nonexistent-project", "s2", "default");
    assert!(notice(&hook(&sandbox, alone, &other)).contains("no nodes"), "a new session is told again");
    assert_eq!(log(&sandbox), "");
}

#[test]
fn a_broken_config_leaves_the_command_alone_tells_the_user_once_and_logs_every_time() {
    let sandbox = Sandbox::new();
    let broken = "[[node]]\nname = \"b\"\nhost = 5\n";
    let first = notice(&hook(&sandbox, broken, &bash("cargo build")));
    assert!(first.contains("config has an error") && first.contains("cluster.toml"), "{first}");
    assert!(!first.contains('\n'), "one line: {first:?}");
    assert_eq!(hook(&sandbox, broken, &bash("cargo build")).stdout(), "");
    let log = log(&sandbox);
    assert!(log.contains("config error") && log.contains("cluster.toml"), "{log}");
    assert_eq!(log.lines().count(), 2, "{log}");
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
    assert!(notice(&run).contains("nope.toml"), "{}", run.stdout());
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
    support::write_executable(
        &tts,
        &format!(
            "#!/bin/sh\nprintf '%s' \"$1\" > '{said}.tmp'\necho $$ > '{said}.pid'\nmv '{said}.tmp' '{said}'\n\
             while [ ! -e '{release}' ] && [ -d '{dir}' ]; do sleep 0.05; done\n",
            said = said.display(),
            release = release.display(),
            dir = dir.display()
        ),
    );
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
    let ended = support::eventually(std::time::Duration::from_secs(30), || !process_alive(pid));
    assert!(ended, "the stand-in speaker {pid} did not exit after being released");
}

fn wait_for_file(path: &std::path::Path) -> String {
    // Polls until the background program has written it (bounded so a broken
    // build fails instead of hanging).
    let appeared = support::eventually(std::time::Duration::from_secs(30), || path.exists());
    assert!(appeared, "{} never appeared", path.display());
    std::fs::read_to_string(path).unwrap()
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
        support::write_executable(
            &script,
            &format!("#!/bin/sh\nprintf '%s' \"$1\" > '{out_text}.tmp'\nmv '{out_text}.tmp' '{out_text}'\n"),
        );
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

/// A sandbox with a project directory; returns (sandbox, project path).
fn project() -> (Sandbox, std::path::PathBuf) {
    let sandbox = Sandbox::new();
    let project = sandbox.path().join("project");
    std::fs::create_dir_all(project.join(".claude")).unwrap();
    std::fs::create_dir_all(sandbox.path().join("home/.claude")).unwrap();
    (sandbox, project)
}

fn settings(path: &std::path::Path, permissions: Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, json!({ "permissions": permissions }).to_string()).unwrap();
}

fn rewritten(run: &support::Run) -> Option<String> {
    if run.stdout().is_empty() {
        return None;
    }
    run.json()["hookSpecificOutput"]["updatedInput"]["command"].as_str().map(String::from)
}

fn decision(run: &support::Run) -> Option<String> {
    run.json()["hookSpecificOutput"]["permissionDecision"].as_str().map(String::from)
}

/// Issue 14's first case: `"allow": ["Bash"], "deny": ["Bash(rm:*)"]` in the
/// user's settings. Any line with an `rm` in it is left for Claude Code to
/// judge (it denies it); the log says which rule held it back.
#[test]
fn a_deny_rule_on_any_part_of_the_line_keeps_it_from_being_rewritten() {
    let (sandbox, project) = project();
    settings(&sandbox.path().join("home/.claude/settings.json"), json!({ "allow": ["Bash"], "deny": ["Bash(rm:*)"] }));
    let cwd = project.to_str().unwrap();
    for line in [
        "rm -f x && make who",
        "make who; rm -f x",
        "make who | rm -f x",
        "make who\nrm -f x",
        "sudo rm -f x && make who",
        "make who && (cd sub && rm -rf build)",
        "make $(rm -f x)",
    ] {
        let run = hook(&sandbox, &cluster(""), &bash_in(line, cwd, "s1", "default"));
        assert_eq!(run.stdout(), "", "{line:?} was answered");
    }
    let log = log(&sandbox);
    assert!(log.contains("deny rule Bash(rm:*)") && log.contains("home/.claude/settings.json"), "{log}");
    // The same settings allow a plain make: rewritten, and allowed by the user's rule.
    let run = hook(&sandbox, &cluster(""), &bash_in("make who", cwd, "s1", "default"));
    assert_eq!(rewritten(&run).as_deref(), Some("distex run --node builder -- 'make who'"));
    assert_eq!(decision(&run).as_deref(), Some("allow"));
    let reason = run.json()["hookSpecificOutput"]["permissionDecisionReason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("allowed by your Claude Code rules (Bash in") && reason.contains("settings.json"),
        "{reason}"
    );
}

/// A deny rule against distex itself: the rewrite would be refused, so the
/// command is left alone (it runs here, as the user's rules say).
#[test]
fn a_deny_rule_on_distex_run_keeps_commands_from_being_rewritten() {
    let (sandbox, project) = project();
    settings(&project.join(".claude/settings.json"), json!({ "allow": ["Bash"], "deny": ["Bash(distex run:*)"] }));
    let run = hook(&sandbox, &cluster(""), &bash_in("make who", project.to_str().unwrap(), "s1", "default"));
    assert_eq!(run.stdout(), "");
    assert!(log(&sandbox).contains("deny rule Bash(distex run:*)"), "{}", log(&sandbox));
    // Also when only one part of the line would move: Claude Code judges
    // the rewritten line part by part, so its `distex run` part is denied.
    let split = bash_in("git add -A && make who", project.to_str().unwrap(), "s1", "default");
    assert_eq!(hook(&sandbox, &cluster(""), &split).stdout(), "");
    let log = log(&sandbox);
    assert!(log.contains("matches `distex run --node builder -- 'make who'`"), "{log}");
}

/// Every settings file Claude Code reads counts: the project's shared and
/// local files, the managed policy, `CLAUDE_CONFIG_DIR` instead of
/// `~/.claude`, `CLAUDE_PROJECT_DIR` for the project.
#[test]
fn deny_and_ask_rules_count_from_every_settings_file() {
    let (sandbox, project) = project();
    let cwd = project.to_str().unwrap();
    let input = |line: &str| bash_in(line, cwd, "s1", "default");
    settings(&project.join(".claude/settings.json"), json!({ "deny": ["Bash(cargo test:*)"] }));
    settings(&project.join(".claude/settings.local.json"), json!({ "ask": ["Bash(make check)"] }));
    settings(&sandbox.path().join("managed-settings.json"), json!({ "deny": ["Bash(* --release)"] }));
    for line in ["cargo test --lib", "make check", "cargo build --release"] {
        assert_eq!(hook(&sandbox, &cluster(""), &input(line)).stdout(), "", "{line}");
    }
    for line in ["cargo build", "make", "make check-all"] {
        let run = hook(&sandbox, &cluster(""), &input(line));
        assert!(rewritten(&run).is_some(), "{line}: {}", run.stdout());
        assert_eq!(decision(&run), None, "no allow rule, no decision: {line}");
    }
    // CLAUDE_CONFIG_DIR replaces ~/.claude.
    let config_dir = sandbox.path().join("claude-config");
    settings(&config_dir.join("settings.json"), json!({ "deny": ["Bash(make:*)"] }));
    settings(&sandbox.path().join("home/.claude/settings.json"), json!({ "allow": ["Bash(go build:*)"] }));
    let env = [("CLAUDE_CONFIG_DIR", config_dir.as_path())];
    assert_eq!(hook_with(&sandbox, &cluster(""), &input("make"), &env).stdout(), "");
    let go = hook_with(&sandbox, &cluster(""), &input("go build ./..."), &env);
    assert_eq!(decision(&go), None, "~/.claude is not read when CLAUDE_CONFIG_DIR is set");
    let go = hook(&sandbox, &cluster(""), &input("go build ./..."));
    assert_eq!(decision(&go).as_deref(), Some("allow"), "{}", go.stdout());
    // CLAUDE_PROJECT_DIR names the project even when the shell has moved.
    let elsewhere = sandbox.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let moved = bash_in("cargo test", elsewhere.to_str().unwrap(), "s1", "default");
    assert!(rewritten(&hook(&sandbox, &cluster(""), &moved)).is_some());
    let env = [("CLAUDE_PROJECT_DIR", project.as_path())];
    assert_eq!(hook_with(&sandbox, &cluster(""), &moved, &env).stdout(), "");
}

/// A deny rule in a parent directory's project settings holds (it can only
/// make the hook step aside); an allow rule there does not count.
#[test]
fn parent_directories_add_deny_rules_but_not_allow_rules() {
    let (sandbox, project) = project();
    let sub = project.join("crates/app");
    std::fs::create_dir_all(&sub).unwrap();
    settings(&project.join(".claude/settings.local.json"), json!({ "allow": ["Bash"], "deny": ["Bash(pytest:*)"] }));
    let input = |line: &str| bash_in(line, sub.to_str().unwrap(), "s1", "default");
    assert_eq!(hook(&sandbox, &cluster(""), &input("pytest -x")).stdout(), "");
    let run = hook(&sandbox, &cluster(""), &input("make"));
    assert!(rewritten(&run).is_some());
    assert_eq!(decision(&run), None);
}

/// Allow rules approve the rewrite only when they allow every part; plan
/// mode never gets an approval.
#[test]
fn allow_rules_approve_the_rewrite_only_when_every_part_is_allowed() {
    let (sandbox, project) = project();
    settings(
        &sandbox.path().join("home/.claude/settings.json"),
        json!({ "allow": ["Bash(make:*)", "Bash(tail *)", "Bash(git add:*)"] }),
    );
    let cwd = project.to_str().unwrap();
    let cases = [
        ("make who", Some("allow")),
        ("make -j8 2>&1 | tail -n 20", Some("allow")),
        ("make who > build.log", Some("allow")),
        ("make who && cargo build", None),
        // Only `make` moves; the allow rules judge the line as written.
        ("git add -A && make who", Some("allow")),
        ("git commit -m x && make who", None),
        ("cd sub && make", Some("allow")),
        ("cd /etc && make", None),
        ("timeout 600 make -j8", Some("allow")),
        ("RUST_LOG=debug make", Some("allow")),
        ("make -j$(nproc)", None),
        ("LD_PRELOAD=/tmp/x.so make", None),
    ];
    for (line, expected) in cases {
        let run = hook(&sandbox, &cluster(""), &bash_in(line, cwd, "s1", "default"));
        assert!(rewritten(&run).is_some(), "{line}: {}", run.stdout());
        assert_eq!(decision(&run).as_deref(), expected, "{line}");
    }
    let plan = hook(&sandbox, &cluster(""), &bash_in("make who", cwd, "s1", "plan"));
    assert!(rewritten(&plan).is_some());
    assert_eq!(decision(&plan), None, "plan mode: {}", plan.stdout());
}

/// A settings file that is not JSON hides its deny rules: nothing is
/// routed, the user is told once per session, the log says it every time.
#[test]
fn unreadable_claude_settings_stop_routing_and_say_so_once() {
    let (sandbox, project) = project();
    std::fs::write(project.join(".claude/settings.json"), "{ \"permissions\": ").unwrap();
    let cwd = project.to_str().unwrap();
    let first = notice(&hook(&sandbox, &cluster(""), &bash_in("make", cwd, "s1", "default")));
    assert!(first.contains("routing is off") && first.contains(".claude/settings.json"), "{first}");
    assert_eq!(hook(&sandbox, &cluster(""), &bash_in("make", cwd, "s1", "default")).stdout(), "");
    assert_eq!(hook(&sandbox, &cluster(""), &bash_in("ls", cwd, "s1", "default")).stdout(), "");
    assert_eq!(log(&sandbox).lines().count(), 2, "{}", log(&sandbox));
}

/// Waits (at most 30 s, burning a CPU) until this machine's 1-minute load
/// is above zero, so a tiny overload threshold really means "overloaded".
fn make_load() {
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let spinner = {
        let busy = busy.clone();
        std::thread::spawn(move || while busy.load(std::sync::atomic::Ordering::Relaxed) {})
    };
    for _ in 0..300 {
        let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        if loadavg.split_whitespace().next().and_then(|l| l.parse::<f64>().ok()).is_some_and(|l| l > 0.0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    busy.store(false, std::sync::atomic::Ordering::Relaxed);
    spinner.join().unwrap();
}

/// Issue 14 item 6: with this machine "overloaded" (a tiny threshold), quick
/// read-only commands and distex's own get no note; a long-running one gets
/// a suggestion once per session.
#[test]
fn a_busy_machine_suggests_only_long_running_commands_once_per_session() {
    make_load();
    let sandbox = Sandbox::new();
    let busy = cluster("").replace("overload_threshold = 1000.0", "overload_threshold = 0.000001");
    let config = format!("{busy}\n[[node]]\nname = \"spare\"\nhost = \"127.0.0.3\"\nos = \"macos\"\nslots = 64\n");
    for line in ["ls", "git status", "cat README.md", "distex nodes", "distex run --node local -- 'ffmpeg -i a b'"] {
        assert_eq!(hook(&sandbox, &config, &bash(line)).stdout(), "", "{line}");
    }
    let suggested = hook(&sandbox, &config, &bash("ffmpeg -i in.mov out.mp4")).json();
    let context = suggested["hookSpecificOutput"]["additionalContext"].as_str().unwrap();
    assert!(context.contains("distex suggests running this command on node"), "{suggested}");
    assert!(suggested["hookSpecificOutput"].get("updatedInput").is_none(), "{suggested}");
    assert_eq!(hook(&sandbox, &config, &bash("ffmpeg -i b.mov b.mp4")).stdout(), "", "not again in this session");
    let other = bash_in("ffmpeg -i c.mov c.mp4", "/nonexistent-project", "s2", "default");
    assert!(hook(&sandbox, &config, &other).stdout().contains("suggests"), "a new session may hear it once");
    // A rule-matched command is still rewritten every time.
    for _ in 0..2 {
        assert!(rewritten(&hook(&sandbox, &config, &bash("cargo build"))).is_some());
    }
}

/// A 4 MB command (`cargo build; echo a; echo a; ...`, which a rule would
/// route) is past the size the hook routes: it answers at once with
/// nothing (the command runs here as it was) and says why in its log. How
/// fast that is, is measured by `bench/hook.sh`.
#[test]
fn a_huge_command_is_left_alone_at_once() {
    let sandbox = Sandbox::new();
    let mut command = String::from("cargo build --release");
    while command.len() < 4_000_000 {
        command.push_str("; echo a");
    }
    let run = hook(&sandbox, &cluster(""), &bash(&command));
    assert_eq!(run.stdout(), "", "a huge command is not rewritten");
    let log = log(&sandbox);
    assert!(log.contains(&format!("a command of {} bytes", command.len())) && log.contains("64 KiB"), "{log}");
    // Just under the limit, the same command is still routed.
    let mut command = String::from("cargo build --release");
    while command.len() < 60_000 {
        command.push_str("; echo a");
    }
    let run = hook(&sandbox, &cluster(""), &bash(&command));
    assert!(run.stdout().contains("distex run --node builder"), "{}", run.stdout());
}

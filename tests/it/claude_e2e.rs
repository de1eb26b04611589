//! End-to-end tests in the real Claude Code CLI.
//!
//! Each test starts a [`ModelServer`] scripted with the tool calls the "model"
//! makes, runs `claude -p ... --plugin-dir <this repo> --output-format
//! stream-json --verbose` against it (`ANTHROPIC_BASE_URL`, a dummy key), and
//! asserts on what really happened: what Claude Code sent back to the model
//! (tool results, loaded skill text), files the commands wrote, and the
//! stream-json events on stdout.

use crate::util as support;
use crate::util::model_server;
use support::{BUILDER_CLUSTER, write_executable};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use model_server::{ModelServer, Turn};
use serde_json::{Value, json};

/// The repository root: the plugin directory under test.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Finds `claude` on PATH. Without it the tests skip loudly, except in CI
/// (`CI=true`), where a missing client is a failure.
pub(crate) fn claude_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("claude")).find(|p| p.is_file()));
    if found.is_none() {
        let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!in_ci, "CI is set but the `claude` CLI is not installed: run .ci/needs-claude.sh");
        // Straight to the process's stderr: the test harness would swallow
        // eprintln! output of a passing test.
        use std::io::Write;
        let _ = std::io::stderr().write_all(
            b"\n*** SKIPPED: the `claude` CLI is not installed (npm install -g @anthropic-ai/claude-code); see .ci/needs-claude.sh ***\n",
        );
    }
    found
}

/// One Claude Code session against a scripted model, in a private HOME.
struct Session {
    sandbox: support::Sandbox,
    claude: PathBuf,
    allowed: Vec<String>,
    disallowed: Vec<String>,
    env: Vec<(String, String)>,
    /// The plugin under test, passed with --plugin-dir (default: this
    /// repository); None when the test installed it from the marketplace.
    plugin_dir: Option<PathBuf>,
    /// What the plugin's launcher runs (`DISTEX_BIN`); None lets it find or build its own.
    distex_bin: Option<PathBuf>,
}

/// What a finished session left behind.
struct Finished {
    server: ModelServer,
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

impl Finished {
    /// The stream-json events printed on stdout.
    fn events(&self) -> Vec<Value> {
        self.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    fn dump(&self) -> String {
        let requests: Vec<String> = self
            .server
            .requests()
            .iter()
            .map(|r| format!("{} {} scripted={} {}", r.method, r.path, r.scripted, truncate(&r.body.to_string(), 600)))
            .collect();
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- requests\n{}",
            self.code,
            self.stdout,
            self.stderr,
            requests.join("\n")
        )
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n).collect::<String>()) }
}

impl Session {
    fn new() -> Option<Session> {
        let claude = claude_binary()?;
        let sandbox = support::Sandbox::new();
        // Not "run": distex makes its runtime directory itself, private
        // (it refuses one that others could use).
        for dir in ["home", "project", "state"] {
            std::fs::create_dir_all(sandbox.path().join(dir)).unwrap();
        }
        // The project is a git repository: what distex syncs is what git sees.
        let git = std::process::Command::new("git").args(["init", "-q"]).arg(sandbox.path().join("project")).status();
        assert!(git.is_ok_and(|s| s.success()), "git init");
        Some(Session {
            sandbox,
            claude,
            allowed: vec![],
            disallowed: vec![],
            env: vec![],
            plugin_dir: Some(repo()),
            distex_bin: Some(support::DISTEX.into()),
        })
    }

    fn project(&self) -> PathBuf {
        self.sandbox.path().join("project")
    }

    /// Tools the session allows without asking (`--allowedTools`).
    fn allow(mut self, rule: &str) -> Self {
        self.allowed.push(rule.to_string());
        self
    }

    /// Tools the session refuses (`--disallowedTools`).
    fn disallow(mut self, rule: &str) -> Self {
        self.disallowed.push(rule.to_string());
        self
    }

    fn env(mut self, key: &str, value: impl AsRef<Path>) -> Self {
        self.env.push((key.to_string(), value.as_ref().display().to_string()));
        self
    }

    /// Writes the cluster config the hook and `distex` will read.
    fn config(self, text: &str) -> Self {
        let path = self.sandbox.write_config(text);
        self.env("DISTEX_CONFIG", path)
    }

    /// Runs `claude -p PROMPT` with the model answering from `script`.
    fn run(&self, prompt: &str, script: Vec<Turn>) -> Finished {
        let server = ModelServer::start(script);
        let mut cmd = Command::new(&self.claude);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if ["DISTEX_", "XDG_", "CLAUDE", "ANTHROPIC_"].iter().any(|p| k.starts_with(p)) {
                cmd.env_remove(&key);
            }
        }
        let home = self.sandbox.path().join("home");
        cmd.args(["-p", prompt, "--output-format", "stream-json", "--verbose", "--model", "claude-scripted-model"])
            .current_dir(self.project())
            .env("HOME", &home)
            .env("ANTHROPIC_BASE_URL", server.base_url())
            .env("ANTHROPIC_API_KEY", "sk-ant-dummy-key-for-tests")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("IS_SANDBOX", "1")
            .env("DISTEX_STATE_DIR", self.sandbox.path().join("state"))
            .env("DISTEX_RUNTIME_DIR", self.sandbox.path().join("run"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.plugin_dir {
            cmd.arg("--plugin-dir").arg(dir);
        }
        if let Some(bin) = &self.distex_bin {
            // The plugin's bin/distex runs the binary under test instead of building one.
            cmd.env("DISTEX_BIN", bin);
        }
        if !self.allowed.is_empty() {
            cmd.arg("--allowedTools").arg(self.allowed.join(","));
        }
        if !self.disallowed.is_empty() {
            cmd.arg("--disallowedTools").arg(self.disallowed.join(","));
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start claude");
        let output = wait_with_deadline(child, Duration::from_secs(900));
        Finished {
            server,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            code: output.status.code(),
        }
    }
}

/// Waits for the session; a hung client is killed so the test fails instead
/// of hanging CI forever (a safety net, not a timing assertion).
fn wait_with_deadline(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait claude").is_some() || start.elapsed() > limit {
            let _ = child.kill();
            return child.wait_with_output().expect("collect claude output");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const REWRITTEN_CARGO: &str = "distex run --node builder -- 'cargo build'";

impl Session {
    /// Puts a recorder in front of the distex binary: every invocation (the
    /// hook's and the Bash tool's, through the plugin's bin/distex) appends
    /// its arguments, each in <>, as one line of `calls.log`.
    fn recording(self) -> Self {
        let shim = self.sandbox.path().join("distex-recorder");
        let log = self.sandbox.path().join("calls.log");
        let script = format!(
            "#!/bin/sh\n{{ for a in \"$@\"; do printf '<%s>' \"$a\"; done; echo; }} >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            support::DISTEX
        );
        write_executable(&shim, &script);
        Session { distex_bin: Some(shim), ..self }
    }

    /// The lines of `calls.log`.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.sandbox.path().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn hook_log(&self) -> String {
        std::fs::read_to_string(self.sandbox.path().join("state/hook.log")).unwrap_or_default()
    }

    /// Writes the user's Claude Code settings (`~/.claude/settings.json` in
    /// the session's HOME) with these `permissions`: rules the hook can see,
    /// unlike `--allowedTools`.
    fn user_permissions(self, permissions: Value) -> Self {
        let dir = self.sandbox.path().join("home/.claude");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("settings.json"), json!({ "permissions": permissions }).to_string()).unwrap();
        self
    }
}

impl Finished {
    /// The final `result` event of the stream.
    fn result(&self) -> Value {
        self.events()
            .into_iter()
            .rfind(|e| e["type"] == "result")
            .unwrap_or_else(|| panic!("no result event\n{}", self.dump()))
    }

    /// Commands Claude Code refused to run (the tool input it refused, as
    /// the hook left it).
    fn denied_commands(&self) -> Vec<String> {
        self.result()["permission_denials"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["tool_input"]["command"].as_str().map(String::from))
            .collect()
    }

    /// The one tool result of a one-tool-call session.
    fn only_result(&self) -> model_server::ToolResult {
        let results = self.server.tool_results();
        assert_eq!(results.len(), 1, "expected one tool result\n{}", self.dump());
        results.into_iter().next().unwrap()
    }

    fn assert_completed(&self) {
        assert_eq!(self.code, Some(0), "claude failed\n{}", self.dump());
        assert!(self.server.turns_served() >= 1, "the scripted model was never asked\n{}", self.dump());
    }
}

#[test]
fn local_commands_reach_the_shell_untouched() {
    let Some(session) = Session::new() else {
        return;
    };
    let session = session.config(BUILDER_CLUSTER).recording().allow("Bash");
    std::fs::write(session.project().join("marker-file.txt"), "").unwrap();
    let done = session.run(
        "list the files and say something",
        vec![Turn::bash("ls"), Turn::bash("echo \"docker is great\""), Turn::text("done")],
    );
    done.assert_completed();
    let results = done.server.tool_results();
    assert_eq!(results.len(), 2, "{}", done.dump());
    assert!(!results[0].is_error && results[0].content.contains("marker-file.txt"), "{}", done.dump());
    assert!(!results[1].is_error && results[1].content.trim() == "docker is great", "{}", done.dump());
    // The hook was asked about both and stayed silent; nothing ran through distex.
    let calls = session.calls();
    assert_eq!(calls.iter().filter(|c| c.as_str() == "<hook><pre-tool-use>").count(), 2, "{calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("<run>")), "{calls:?}");
    assert!(!done.server.last_request_text().contains("distex routed"), "{}", done.dump());
    assert_eq!(session.hook_log(), "");
}

#[test]
fn a_heavy_command_is_rewritten_to_distex_run() {
    let Some(session) = Session::new() else {
        return;
    };
    let session = session.config(BUILDER_CLUSTER).recording().allow("Bash");
    let done = session.run("build the project", vec![Turn::bash("cargo build"), Turn::text("done")]);
    done.assert_completed();
    // The Bash tool ran the rewritten command: the plugin's bin/distex was on
    // its PATH and received the original line as exactly one argument.
    let calls = session.calls();
    assert!(calls.contains(&"<run><--node><builder><--><cargo build>".to_string()), "{calls:?}\n{}", done.dump());
    // Claude was told where the command went and why.
    let text = done.server.last_request_text();
    assert!(text.contains("distex sent this Bash command to node builder"), "{}", done.dump());
    assert!(text.contains("heavy_computation"), "{}", done.dump());
    // The builder cannot be reached (port 1): a build only prefers builders,
    // so it ran here instead, and the result says so (issue 14, item 7).
    assert!(done.only_result().content.contains("running here instead"), "{}", done.dump());
    assert!(done.denied_commands().is_empty(), "{}", done.dump());
}

#[test]
fn a_rewritten_command_still_faces_the_permission_rules() {
    let Some(session) = Session::new() else {
        return;
    };
    // The session allows `cargo build` here, not `distex run`: the rewritten
    // command is a different command and is refused, not auto-approved.
    let session = session.config(BUILDER_CLUSTER).recording().allow("Bash(cargo build:*)");
    let done = session.run("build the project", vec![Turn::bash("cargo build"), Turn::text("done")]);
    done.assert_completed();
    assert_eq!(done.denied_commands(), vec![REWRITTEN_CARGO.to_string()], "{}", done.dump());
    assert!(done.only_result().is_error, "{}", done.dump());
    assert!(!session.calls().iter().any(|c| c.starts_with("<run>")), "{:?}", session.calls());
    // Claude is still told where the command was sent and what a refusal means.
    let text = done.server.all_text();
    assert!(text.contains("distex sent this Bash command to node builder"), "{}", done.dump());
    assert!(text.contains("If the Bash tool refused that command"), "{}", done.dump());
}

#[test]
fn auto_approve_lets_the_rewritten_command_run_without_a_rule() {
    let Some(session) = Session::new() else {
        return;
    };
    let config = format!("{BUILDER_CLUSTER}\n[hook]\nauto_approve = true\n");
    let session = session.config(&config).recording().allow("Bash(cargo build:*)");
    let done = session.run("build the project", vec![Turn::bash("cargo build"), Turn::text("done")]);
    done.assert_completed();
    assert!(done.denied_commands().is_empty(), "{}", done.dump());
    assert!(session.calls().contains(&"<run><--node><builder><--><cargo build>".to_string()), "{:?}", session.calls());
}

#[test]
fn auto_approve_does_not_override_a_deny_rule() {
    let Some(session) = Session::new() else {
        return;
    };
    let config = format!("{BUILDER_CLUSTER}\n[hook]\nauto_approve = true\n");
    let session = session.config(&config).recording().allow("Bash").disallow("Bash(distex run:*)");
    let done = session.run("build the project", vec![Turn::bash("cargo build"), Turn::text("done")]);
    done.assert_completed();
    assert!(done.only_result().is_error, "{}", done.dump());
    assert!(!session.calls().iter().any(|c| c.starts_with("<run>")), "{:?}\n{}", session.calls(), done.dump());
}

#[test]
fn suggest_mode_runs_the_command_here_and_tells_claude() {
    let Some(session) = Session::new() else {
        return;
    };
    let config = format!("{BUILDER_CLUSTER}\n[hook]\nmode = \"suggest\"\n");
    let session = session.config(&config).recording().allow("Bash");
    write_makefile(&session.project());
    let done = session.run("build", vec![Turn::bash("make hello"), Turn::text("done")]);
    done.assert_completed();
    assert_eq!(done.only_result().content.trim(), "built-here", "{}", done.dump());
    assert!(
        done.server.last_request_text().contains("distex suggests running this command on node builder"),
        "{}",
        done.dump()
    );
}

/// A Makefile whose `hello` target proves the command ran in this project, here.
fn write_makefile(project: &Path) {
    std::fs::write(project.join("Makefile"), "hello:\n\t@echo built-here\n").unwrap();
}

#[test]
fn a_broken_config_leaves_the_original_command_running_here() {
    let Some(session) = Session::new() else {
        return;
    };
    let session = session.config("[[node]]\nname = 'b'\nhost = [\n").allow("Bash");
    write_makefile(&session.project());
    let done = session.run("build", vec![Turn::bash("make hello"), Turn::bash("make hello"), Turn::text("done")]);
    done.assert_completed();
    let results = done.server.tool_results();
    assert_eq!(results.len(), 2, "{}", done.dump());
    for result in &results {
        assert!(!result.is_error && result.content.trim() == "built-here", "{}", done.dump());
    }
    assert_eq!(session.hook_log().matches("config error").count(), 2, "{}", session.hook_log());
    // The user is told once in the session, not before every command.
    let shown = system_messages(&done);
    assert_eq!(shown.len(), 1, "{shown:?}\n{}", done.dump());
    assert!(shown[0].contains("config has an error") && shown[0].contains("cluster.toml"), "{shown:?}");
}

/// Issue 14 item 3 (hook side): with no node configured nothing is routed,
/// and the user hears that once per session.
#[test]
fn no_nodes_is_told_once_per_session() {
    let Some(session) = Session::new() else {
        return;
    };
    let session = session.config("[local]\nname = \"laptop\"\nos = \"macos\"\n").allow("Bash");
    write_makefile(&session.project());
    let done = session.run("build", vec![Turn::bash("make hello"), Turn::bash("make hello"), Turn::text("done")]);
    done.assert_completed();
    let results = done.server.tool_results();
    assert_eq!(results.len(), 2, "{}", done.dump());
    assert!(results.iter().all(|r| r.content.trim() == "built-here"), "{}", done.dump());
    let shown = system_messages(&done);
    assert_eq!(shown.len(), 1, "{shown:?}\n{}", done.dump());
    assert!(shown[0].contains("no nodes are configured"), "{shown:?}");
}

#[test]
fn a_crashing_helper_leaves_the_original_command_running_here() {
    let Some(session) = Session::new() else {
        return;
    };
    // Crashes three ways at once: half an answer on stdout, a message on
    // stderr, then death by SIGSEGV. Exit 2 would have blocked the command.
    let crash = session.sandbox.path().join("crashing-distex");
    write_executable(&crash, "#!/bin/sh\nprintf '{\"hookSpecificOutput\":{'\necho 'boom' >&2\nkill -SEGV $$\nexit 2\n");
    let session = Session { distex_bin: Some(crash), ..session.config(BUILDER_CLUSTER).allow("Bash") };
    write_makefile(&session.project());
    let done = session.run("build", vec![Turn::bash("make hello"), Turn::text("done")]);
    done.assert_completed();
    let result = done.only_result();
    assert!(!result.is_error && result.content.trim() == "built-here", "{}", done.dump());
}

#[test]
fn the_distributed_execution_skill_reaches_the_model_and_its_route_call_answers_json() {
    let Some(session) = Session::new() else {
        return;
    };
    // Only the Skill tool is allowed by the session; the skill's own
    // allowed-tools must let its `distex route` call run without a prompt.
    let session = session.config(BUILDER_CLUSTER).recording().allow("Skill");
    let done = session.run(
        "build this on the right machine",
        vec![
            Turn::tool("Skill", json!({ "skill": "distex:distributed-execution" })),
            Turn::bash("distex route --json -- 'cargo build --release'"),
            Turn::bash("distex run --node local -- 'echo ran-through-distex'"),
            Turn::text("done"),
        ],
    );
    done.assert_completed();
    let skill = std::fs::read_to_string(repo().join("skills/distributed-execution/SKILL.md")).unwrap();
    let body = skill.splitn(3, "---").nth(2).unwrap().trim();
    let text = done.server.last_request_text();
    for line in body.lines().filter(|l| l.starts_with("## ")) {
        assert!(text.contains(line), "skill heading {line:?} did not reach the model\n{}", done.dump());
    }
    assert!(
        done.denied_commands().is_empty(),
        "the skill's allowed-tools should cover distex route and distex run\n{}",
        done.dump()
    );
    let results = done.server.tool_results();
    assert_eq!(results.len(), 3, "{}", done.dump());
    let route = &results[1];
    let decision: Value = serde_json::from_str(route.content.trim())
        .unwrap_or_else(|e| panic!("distex route did not answer JSON ({e})\n{}", done.dump()));
    assert_eq!(decision["distribute"], true, "{decision}");
    assert_eq!(decision["node"], "builder", "{decision}");
    assert_eq!(decision["reason"], "heavy_computation", "{decision}");
}

#[test]
fn the_plugin_validates() {
    let Some(claude) = claude_binary() else {
        return;
    };
    let out = Command::new(claude)
        .args(["plugin", "validate", "."])
        .current_dir(repo())
        .env("HOME", support::Sandbox::new().path())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "claude plugin validate . failed:\n{text}");
    assert!(text.contains("Validation passed"), "{text}");
    assert!(!text.contains("ICON_MISSING"), "the plugin ships its icon: {text}");
    for part in [
        "skills: distex:distributed-execution",
        "skills: distex:setup",
        "bin: distex",
        "PreToolUse Bash",
        "SessionStart",
    ] {
        assert!(text.contains(part), "the validator does not see {part:?}:\n{text}");
    }
}

/// A fresh copy of the plugin (no helper installed) in the sandbox, and a
/// stand-in `cargo` first on PATH that logs its calls to `cargo.log`, waits
/// while the sandbox's `hold` file exists, and "builds" a helper that runs
/// the real binary under test. Keeps a first session from being a
/// multi-minute release build.
fn fresh_plugin_copy(session: Session) -> Session {
    let plugin = session.sandbox.path().join("plugin");
    for dir in [".claude-plugin", "hooks", "bin", "skills/distributed-execution", "src"] {
        std::fs::create_dir_all(plugin.join(dir)).unwrap();
    }
    for file in
        [".claude-plugin/plugin.json", "hooks/hooks.json", "bin/distex", "skills/distributed-execution/SKILL.md"]
    {
        support::copy_file(&repo().join(file), &plugin.join(file));
    }
    for file in ["src/main.rs", "Cargo.toml", "Cargo.lock"] {
        std::fs::write(plugin.join(file), "").unwrap();
    }
    let fake = session.sandbox.path().join("fakebin");
    std::fs::create_dir_all(&fake).unwrap();
    write_executable(
        &fake.join("cargo"),
        &format!(
            "#!/bin/sh\necho \"$*\" >> '{dir}/cargo.log'\nwhile [ -e '{dir}/hold' ]; do sleep 0.05; done\n\
             mkdir -p \"$CARGO_TARGET_DIR/release\"\n\
             printf '#!/bin/sh\\nexec %s \"$@\"\\n' '{real}' > \"$CARGO_TARGET_DIR/release/distex\"\n\
             chmod +x \"$CARGO_TARGET_DIR/release/distex\"\n",
            dir = session.sandbox.path().display(),
            real = support::DISTEX
        ),
    );
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap_or_default());
    Session { plugin_dir: Some(plugin), distex_bin: None, ..session.env("PATH", path) }
}

impl Session {
    /// The helper the plugin copy installs into Claude Code's plugin data dir.
    fn installed_helper(&self) -> Option<PathBuf> {
        let data = self.sandbox.path().join("home/.claude/plugins/data");
        std::fs::read_dir(data).ok()?.flatten().map(|d| d.path().join("bin/distex")).find(|p| p.exists())
    }

    fn cargo_calls(&self) -> String {
        std::fs::read_to_string(self.sandbox.path().join("cargo.log")).unwrap_or_default()
    }
}

impl Finished {
    /// What Claude Code showed the user as hook messages (`systemMessage`),
    /// in stream-json: `system` events of subtype `informational`.
    fn user_notices(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["type"] == "system" && e["subtype"] == "informational")
            .filter_map(|e| e["content"].as_str().map(String::from))
            .collect()
    }
}

/// The SessionStart hook, as Claude Code really runs it, starts the helper's
/// build in the background into the plugin's data directory without
/// delaying the session; the data directory keeps only the helper.
#[test]
fn session_start_builds_the_helper_into_the_plugin_data_dir() {
    let Some(session) = Session::new() else {
        return;
    };
    let session = fresh_plugin_copy(session);
    let done = session.run("hello", vec![Turn::text("hi")]);
    done.assert_completed();
    for _ in 0..400 {
        if session.installed_helper().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let exe = session.installed_helper().unwrap_or_else(|| panic!("no helper was installed\n{}", done.dump()));
    let calls = session.cargo_calls();
    assert!(calls.starts_with("build --release --locked"), "{calls}");
    let plugin = session.plugin_dir.clone().unwrap();
    let remembered = std::fs::read_to_string(plugin.join(".plugin-data")).unwrap();
    assert!(exe.starts_with(remembered.trim()), "{remembered} vs {}", exe.display());
    assert!(
        done.server.all_text().contains("SessionStart hook additional context: distex's helper is being built"),
        "Claude was not told\n{}",
        done.dump()
    );
}

/// A first session with no helper: the user is told (SessionStart, then the
/// first Bash command's notice), `distex nodes` answers at once while the
/// build still runs, and once the helper is in place the next command says
/// routing is on and `distex nodes` answers for real.
#[test]
fn a_first_session_without_a_helper_tells_the_user_and_never_waits_for_the_build() {
    let Some(session) = Session::new() else {
        return;
    };
    let hold = session.sandbox.path().join("hold");
    std::fs::write(&hold, "").unwrap();
    let session = fresh_plugin_copy(session).config(BUILDER_CLUSTER).allow("Bash");
    let release_and_wait = format!(
        "rm -f '{}'; for i in $(seq 1200); do [ -x \"$HOME\"/.claude/plugins/data/*/bin/distex ] && \
         [ ! -d \"$HOME\"/.claude/plugins/data/*/build.lock ] && break; sleep 0.05; done; echo waited",
        hold.display()
    );
    let done = session.run(
        "show the nodes",
        vec![Turn::bash("distex nodes"), Turn::bash(&release_and_wait), Turn::bash("distex nodes"), Turn::text("done")],
    );
    std::fs::remove_file(&hold).ok();
    done.assert_completed();
    let results = done.server.tool_results();
    assert_eq!(results.len(), 3, "{}", done.dump());
    // Answered while the stand-in cargo was still held: nothing waited for it.
    assert!(
        results[0].is_error && results[0].content.contains("distex: the helper is being built, started"),
        "{}",
        done.dump()
    );
    assert!(results[0].content.contains("exit status 75"), "{}", done.dump());
    let notices = done.user_notices();
    assert!(
        notices.iter().any(|n| n.contains("distex: the helper is being built") && n.contains("unrouted")),
        "the user was not told on the first command: {notices:?}\n{}",
        done.dump()
    );
    assert!(
        notices.iter().any(|n| n.contains("distex: the helper is ready; routing is on")),
        "the user was not told it is ready: {notices:?}\n{}",
        done.dump()
    );
    assert!(!results[2].is_error && results[2].content.contains("builder"), "{}", done.dump());
    assert_eq!(session.cargo_calls().lines().count(), 1, "{}", session.cargo_calls());
}

/// The whole trip: the hook rewrites a heavy command, the Bash tool runs
/// `distex run --node n1 -- 'make hello'`, distex mirrors the project to a
/// real sshd node on loopback and runs it there, and the remote output comes
/// back to the model as the tool result.
#[test]
fn a_heavy_command_runs_on_a_loopback_sshd_node_through_the_hook() {
    let Some(session) = Session::new() else {
        return;
    };
    let cluster = support::sshd::Cluster::start(1);
    // This machine is Linux without the builder role: `make` must go to n1.
    let config = cluster.config("roles = [\"builder\"]\nslots = 2", "");
    let session = session.config(&config).recording().allow("Bash");
    std::fs::write(session.project().join("Makefile"), "hello:\n\t@echo \"built in $$(pwd)\"\n\t@cat input.txt\n")
        .unwrap();
    std::fs::write(session.project().join("input.txt"), "synced-input-42\n").unwrap();
    let done = session.run("build it", vec![Turn::slow_bash("make hello"), Turn::text("done")]);
    done.assert_completed();
    assert!(
        session.calls().contains(&"<run><--node><n1><--><make hello>".to_string()),
        "{:?}\nhook.log: {}\n{}",
        session.calls(),
        session.hook_log(),
        done.dump()
    );
    let result = done.only_result();
    let workdir = cluster.node("n1").workdir.display().to_string();
    assert!(!result.is_error, "{}", done.dump());
    assert!(
        result.content.contains(&format!("built in {workdir}")),
        "the command did not run in n1's mirror ({workdir})\n{}",
        done.dump()
    );
    assert!(result.content.contains("synced-input-42"), "the project was not synced to n1\n{}", done.dump());
}

/// `/plugin marketplace add <repo>` and `/plugin install distex@distex`
/// (their CLI forms) work, and the installed plugin's hook is active in a
/// session started without --plugin-dir.
#[test]
fn the_repository_is_a_marketplace_the_plugin_installs_from() {
    let Some(session) = Session::new() else {
        return;
    };
    let home = session.sandbox.path().join("home");
    for args in [&["plugin", "marketplace", "add"][..], &["plugin", "install", "distex@distex"][..]] {
        let mut cmd = Command::new(&session.claude);
        cmd.args(args).env("HOME", &home).env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1").env_remove("CLAUDECODE");
        if args.len() == 3 {
            cmd.arg(repo());
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "claude {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let session = Session { plugin_dir: None, ..session.config(BUILDER_CLUSTER).recording().allow("Bash") };
    let done = session.run("build the project", vec![Turn::bash("cargo build"), Turn::text("done")]);
    done.assert_completed();
    assert!(
        done.events()[..].iter().any(|e| e["type"] == "system" && e["plugins"].to_string().contains("distex@distex")),
        "{}",
        done.dump()
    );
    assert!(
        session.calls().contains(&"<run><--node><builder><--><cargo build>".to_string()),
        "{:?}\n{}",
        session.calls(),
        done.dump()
    );
}

/// A rewritten command whose node is down still runs: `distex run` fails
/// over to the next builder, records the dead node in the health cache, and
/// the hook routes the next command straight to the live node.
#[test]
fn a_dead_node_fails_over_and_the_next_command_avoids_it() {
    let Some(session) = Session::new() else {
        return;
    };
    let mut cluster = support::sshd::Cluster::start(2);
    let config = cluster.config("roles = [\"builder\"]\nslots = 2", "");
    cluster.node_mut("n1").kill();
    let session = session.config(&config).recording().allow("Bash");
    std::fs::write(session.project().join("Makefile"), "hello:\n\t@echo \"built in $$(pwd)\"\n").unwrap();
    let done = session
        .run("build it twice", vec![Turn::slow_bash("make hello"), Turn::slow_bash("make hello"), Turn::text("done")]);
    done.assert_completed();
    let calls: Vec<String> = session.calls().into_iter().filter(|c| c.starts_with("<run>")).collect();
    assert_eq!(
        calls,
        vec!["<run><--node><n1><--><make hello>", "<run><--node><n2><--><make hello>"],
        "first routed to n1 (not yet known dead), then straight to n2\n{}",
        done.dump()
    );
    let n2 = cluster.node("n2").workdir.display().to_string();
    let results = done.server.tool_results();
    assert_eq!(results.len(), 2, "{}", done.dump());
    for result in &results {
        assert!(!result.is_error && result.content.contains(&format!("built in {n2}")), "{}", done.dump());
    }
}

/// The distributed-processor skill (issue 4) in the real client: invoking it
/// delivers its instructions to the model (in a forked subagent when the
/// skill says `context: fork`), and the `distex process` call it makes runs
/// without a prompt and returns the TaskList and the aggregated results.
#[test]
fn the_distributed_processor_skill_reaches_the_model_and_process_returns_the_task_list() {
    let Some(session) = Session::new() else {
        return;
    };
    let session = session.config(BUILDER_CLUSTER).recording().allow("Skill");
    let done = session.run(
        "process the regional data",
        vec![
            Turn::tool("Skill", json!({ "skill": "distex:distributed-processor" })),
            Turn::bash("distex process --demo --json"),
            Turn::text("regional report ready"),
        ],
    );
    done.assert_completed();
    let skill = std::fs::read_to_string(repo().join("skills/distributed-processor/SKILL.md")).unwrap();
    let body = skill.splitn(3, "---").nth(2).unwrap().trim();
    let seen = done.server.all_text();
    for line in body.lines().filter(|l| l.starts_with("## ")) {
        assert!(seen.contains(line), "skill heading {line:?} did not reach the model\n{}", done.dump());
    }
    assert!(
        done.denied_commands().is_empty(),
        "the skill's allowed-tools should cover distex process\n{}",
        done.dump()
    );
    let report: Value = done
        .server
        .all_tool_results()
        .iter()
        .find_map(|r| serde_json::from_str::<Value>(r.content.trim()).ok().filter(|v| v.get("tasks").is_some()))
        .unwrap_or_else(|| panic!("no tool result carried the process report\n{}", done.dump()));
    let tasks = report["tasks"].as_array().unwrap();
    assert!(!tasks.is_empty(), "{report}");
    assert!(tasks.iter().all(|t| t["status"] == "completed"), "{report}");
    assert_eq!(report["complete"], true, "{report}");
    for region in ["A", "B", "C"] {
        assert!(report["regions"].get(region).is_some(), "region {region} missing: {report}");
    }
    // With `context: fork` the skill ran in a subagent; its final answer is
    // the Skill call's result in the coordinator's conversation.
    let skill_call = done.server.tool_use_id_of_turn(0).unwrap();
    let results = done.server.all_tool_results();
    let skill_result = results
        .iter()
        .find(|r| r.tool_use_id == skill_call)
        .unwrap_or_else(|| panic!("no result for the Skill call\n{}", done.dump()));
    assert!(skill_result.content.contains("regional report ready"), "{}", done.dump());
}

/// `/distex:setup` is for the user to invoke: the model's own Skill call is
/// refused (`disable-model-invocation`), so its setup steps (writing the
/// config, trusting host keys) never start on the model's initiative.
#[test]
fn the_setup_skill_is_user_invoked_only() {
    let Some(session) = Session::new() else {
        return;
    };
    let session = session.config(BUILDER_CLUSTER).allow("Skill");
    let done =
        session.run("set up distex", vec![Turn::tool("Skill", json!({ "skill": "distex:setup" })), Turn::text("done")]);
    done.assert_completed();
    let result = done.only_result();
    assert!(result.is_error, "{}", done.dump());
    assert!(result.content.contains("disable-model-invocation"), "{}", done.dump());
    assert!(!done.server.all_text().contains("## 3. Host keys"), "the skill body reached the model\n{}", done.dump());
}

/// The user's `/distex:setup` does start it: the skill's steps reach the
/// model, and its first command (`distex config show`) runs without a
/// prompt under the skill's own allowed-tools.
#[test]
fn the_user_starts_setup_with_a_slash_command() {
    let Some(session) = Session::new() else {
        return;
    };
    let session = session.config(BUILDER_CLUSTER).recording();
    let done = session.run("/distex:setup", vec![Turn::bash("distex config show"), Turn::text("done")]);
    done.assert_completed();
    assert!(done.server.all_text().contains("## 3. Host keys (offer, never assume)"), "{}", done.dump());
    assert!(done.denied_commands().is_empty(), "{}", done.dump());
    let result = done.only_result();
    assert!(!result.is_error && result.content.contains("builder"), "{}", done.dump());
    assert!(session.calls().contains(&"<config><show>".to_string()), "{:?}", session.calls());
}

/// Issue 14 item 1, in the real client: the user's settings allow `Bash` and
/// deny `Bash(rm:*)`. `rm -f x && make who` would be routed (make), but the
/// hook leaves it alone, so Claude Code judges the original line and denies
/// it for its `rm` part: nothing runs, here or on the node, and x is kept.
#[test]
fn a_deny_rule_in_the_users_settings_holds_for_a_line_that_would_be_routed() {
    let Some(session) = Session::new() else {
        return;
    };
    let session = session
        .config(BUILDER_CLUSTER)
        .recording()
        .user_permissions(json!({ "allow": ["Bash"], "deny": ["Bash(rm:*)"] }));
    write_makefile(&session.project());
    std::fs::write(session.project().join("x"), "keep me").unwrap();
    let done = session.run("clean and build", vec![Turn::bash("rm -f x && make who"), Turn::text("done")]);
    done.assert_completed();
    let calls = session.calls();
    assert!(calls.contains(&"<hook><pre-tool-use>".to_string()), "the hook was not consulted: {calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("<run>")), "{calls:?}\n{}", done.dump());
    assert_eq!(done.denied_commands(), vec!["rm -f x && make who".to_string()], "{}", done.dump());
    assert!(done.only_result().is_error, "{}", done.dump());
    assert!(session.project().join("x").exists(), "x was removed\n{}", done.dump());
    assert!(session.hook_log().contains("deny rule Bash(rm:*)"), "{}", session.hook_log());
}

/// The hook `systemMessage`s Claude Code showed the user. Claude Code
/// 2.1.330 prints each as a stream-json event
/// `{"type":"system","subtype":"informational","content":"PreToolUse:Bash says: <message>"}`.
fn system_messages(done: &Finished) -> Vec<String> {
    done.events()
        .iter()
        .filter(|e| e["type"] == "system" && e["subtype"] == "informational")
        .filter_map(|e| e["content"].as_str()?.strip_prefix("PreToolUse:Bash says: ").map(String::from))
        .collect()
}

/// Issue 14 items 2 and 5, in the real client: the user's settings allow
/// `Bash(make:*)` and nothing else (no `--allowedTools`). The routed `make`
/// is allowed because the user allowed `make`, runs on a loopback sshd node,
/// and the user is shown one line naming the node; Claude is told "sent to".
#[test]
fn an_allow_rule_for_make_lets_the_routed_make_run_on_the_node_and_the_user_sees_where() {
    let Some(session) = Session::new() else {
        return;
    };
    let cluster = support::sshd::Cluster::start(1);
    let config = cluster.config("roles = [\"builder\"]\nslots = 2", "");
    let session = session.config(&config).recording().user_permissions(json!({ "allow": ["Bash(make:*)"] }));
    std::fs::write(session.project().join("Makefile"), "hello:\n\t@echo \"built in $$(pwd)\"\n").unwrap();
    let done = session.run("build it", vec![Turn::slow_bash("make hello"), Turn::text("done")]);
    done.assert_completed();
    assert!(done.denied_commands().is_empty(), "{}", done.dump());
    assert!(
        session.calls().contains(&"<run><--node><n1><--><make hello>".to_string()),
        "{:?}\nhook.log: {}\n{}",
        session.calls(),
        session.hook_log(),
        done.dump()
    );
    let result = done.only_result();
    let workdir = cluster.node("n1").workdir.display().to_string();
    assert!(!result.is_error && result.content.contains(&format!("built in {workdir}")), "{}", done.dump());
    let text = done.server.last_request_text();
    assert!(text.contains("distex sent this Bash command to node n1"), "{}", done.dump());
    assert!(!text.contains("ran as"), "{}", done.dump());
    let shown = system_messages(&done);
    assert!(
        shown.iter().any(|m| m.contains("sent to n1") && m.contains("heavy_computation") && m.contains("make hello")),
        "no systemMessage naming the node: {shown:?}\n{}",
        done.dump()
    );
}

/// Issue 14 item 6, in the real client: this machine is "overloaded" (a tiny
/// threshold) and a spare node is idle, yet `ls` gets no note at all.
#[test]
fn a_busy_laptop_gets_no_note_on_ls() {
    let Some(session) = Session::new() else {
        return;
    };
    let busy = BUILDER_CLUSTER.replace("overload_threshold = 1000.0", "overload_threshold = 0.000001");
    let config =
        format!("{busy}\n[[node]]\nname = \"spare\"\nhost = \"127.0.0.3\"\nport = 1\nos = \"macos\"\nslots = 64\n");
    let session = session.config(&config).recording().allow("Bash");
    // The router does call this machine busy: without the hook's filter `ls`
    // would be suggested for node spare.
    let route = session
        .sandbox
        .cmd()
        .args(["route", "--json", "--", "ls"])
        .env("DISTEX_CONFIG", session.sandbox.path().join("cluster.toml"))
        .run()
        .json();
    assert_eq!(route["reason"], "overloaded", "{route}");
    std::fs::write(session.project().join("marker-file.txt"), "").unwrap();
    let done = session.run("list the files", vec![Turn::bash("ls"), Turn::bash("git status"), Turn::text("done")]);
    done.assert_completed();
    let calls = session.calls();
    assert_eq!(calls.iter().filter(|c| c.as_str() == "<hook><pre-tool-use>").count(), 2, "{calls:?}");
    let results = done.server.tool_results();
    assert!(results[0].content.contains("marker-file.txt"), "{}", done.dump());
    let text = done.server.all_text();
    // The note would be the hook's additionalContext, "distex suggests running
    // this command on node spare (reason overloaded: ...)".
    assert!(!text.contains("distex suggests") && !text.contains("reason overloaded"), "{}", done.dump());
    assert!(system_messages(&done).is_empty(), "{}", done.dump());
    assert_eq!(session.hook_log(), "");
}

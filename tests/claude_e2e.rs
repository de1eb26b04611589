//! End-to-end tests in the real Claude Code CLI.
//!
//! Each test starts a [`ModelServer`] scripted with the tool calls the "model"
//! makes, runs `claude -p ... --plugin-dir <this repo> --output-format
//! stream-json --verbose` against it (`ANTHROPIC_BASE_URL`, a dummy key), and
//! asserts on what really happened: what Claude Code sent back to the model
//! (tool results, loaded skill text), files the commands wrote, and the
//! stream-json events on stdout.

#[path = "support/mod.rs"]
mod support;
#[path = "support/model_server.rs"]
mod model_server;

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
fn claude_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("claude")).find(|p| p.is_file()));
    if found.is_none() {
        let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!in_ci, "CI is set but the `claude` CLI is not installed: run .ci/needs-claude.sh");
        eprintln!("\n*** SKIPPED: the `claude` CLI is not installed (npm install -g @anthropic-ai/claude-code); see .ci/needs-claude.sh ***\n");
    }
    found
}

/// One Claude Code session against a scripted model, in a private HOME.
struct Session {
    sandbox: support::Sandbox,
    claude: PathBuf,
    allowed: Vec<String>,
    env: Vec<(String, String)>,
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
    if s.len() <= n { s.to_string() } else { format!("{}…", &s[..s.floor_char_boundary(n)]) }
}

impl Session {
    fn new() -> Option<Session> {
        let claude = claude_binary()?;
        let sandbox = support::Sandbox::new();
        for dir in ["home", "project", "state", "run"] {
            std::fs::create_dir_all(sandbox.path().join(dir)).unwrap();
        }
        Some(Session { sandbox, claude, allowed: vec![], env: vec![] })
    }

    fn project(&self) -> PathBuf {
        self.sandbox.path().join("project")
    }

    /// Tools the session allows without asking (`--allowedTools`).
    fn allow(mut self, rule: &str) -> Self {
        self.allowed.push(rule.to_string());
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
        cmd.args(["-p", prompt, "--output-format", "stream-json", "--verbose", "--plugin-dir"])
            .arg(std::env::var_os("E2E_PLUGIN_DIR").map_or_else(repo, PathBuf::from))
            .args(["--model", "claude-scripted-model"])
            .current_dir(self.project())
            .env("HOME", &home)
            .env("ANTHROPIC_BASE_URL", server.base_url())
            .env("ANTHROPIC_API_KEY", "sk-ant-dummy-key-for-tests")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("IS_SANDBOX", "1")
            // The plugin's bin/distex runs the binary under test instead of building one.
            .env("DISTEX_BIN", support::DISTEX)
            .env("DISTEX_STATE_DIR", self.sandbox.path().join("state"))
            .env("DISTEX_RUNTIME_DIR", self.sandbox.path().join("run"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !self.allowed.is_empty() {
            cmd.arg("--allowedTools").arg(self.allowed.join(","));
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start claude");
        let output = wait_with_deadline(child, Duration::from_secs(180));
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

#[test]
fn explore() {
    let Some(session) = Session::new() else { return };
    let session = session.allow("Bash");
    let done = session.run("run echo", vec![Turn::bash("echo hello-from-bash"), Turn::text("finished")]);
    eprintln!("{}", done.stdout);
    eprintln!("{:#?}", done.server.tool_results());
    eprintln!("CONTEXT in last request: {}", done.server.last_request_text().contains("CONTEXT-LINE"));
    let t = done.server.last_request_text();
    if let Some(i) = t.find("CONTEXT-LINE") { eprintln!("{}", &t[i.saturating_sub(300)..(i+100).min(t.len())]); }
    let _ = json!({});
    panic!("explore");
}

//! Helpers shared by the integration tests (each test file brings this
//! module in as `support`).
//!
//! [`TestCommand`] runs the real `distex` binary with an isolated
//! environment: its own config, state and runtime directories under a
//! temporary directory, and none of the developer's DISTEX_* or XDG_*
//! settings, so tests never read or write the user's files.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) mod model_server;
pub(crate) mod process_data;
pub(crate) mod slurm;
pub(crate) mod sshd;

pub(crate) const DISTEX: &str = env!("CARGO_BIN_EXE_distex");

/// The cluster the hook tests route against: this machine is a "laptop"
/// on macOS (so Linux-only commands leave it) and its one remote node is a
/// Linux builder. Nothing listens on 127.0.0.2:1, so a command that really
/// goes there fails fast. The overload threshold is out of reach so this
/// machine's own load never routes anything. Append tables (`[hook]`,
/// `[announce]`, more `[[node]]`s) to it as needed.
pub(crate) const BUILDER_CLUSTER: &str = r#"
[local]
name = "laptop"
os = "macos"

[[node]]
name = "builder"
host = "127.0.0.2"
port = 1
os = "linux"
roles = ["builder"]
slots = 4
connect_timeout = 2

[routing]
overload_threshold = 1000.0
"#;

/// A sandbox for one test: a temp dir holding config, state and runtime dirs.
pub(crate) struct Sandbox {
    pub(crate) dir: tempfile::TempDir,
}

impl Sandbox {
    pub(crate) fn new() -> Self {
        Sandbox { dir: tempfile::Builder::new().prefix("dx").tempdir_in("/tmp").expect("temp dir") }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `cluster.toml` in the sandbox and returns its path.
    pub(crate) fn write_config(&self, text: &str) -> PathBuf {
        let path = self.path().join("cluster.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// [`Sandbox::cmd`] reading the config [`Sandbox::write_config`] wrote.
    pub(crate) fn configured(&self) -> TestCommand {
        self.cmd().arg("--config").arg(self.path().join("cluster.toml"))
    }

    /// A `distex` invocation that sees only this sandbox.
    pub(crate) fn cmd(&self) -> TestCommand {
        let mut cmd = Command::new(DISTEX);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("DISTEX_") || k.starts_with("XDG_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("HOME", self.path().join("home"))
            .env("DISTEX_STATE_DIR", self.path().join("state"))
            .env("DISTEX_RUNTIME_DIR", self.path().join("run"))
            .current_dir(self.path())
            .stdin(Stdio::null());
        TestCommand { cmd }
    }
}

/// A builder around [`Command`] with assertions that print everything on failure.
pub(crate) struct TestCommand {
    pub(crate) cmd: Command,
}

impl TestCommand {
    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    pub(crate) fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub(crate) fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Runs with the file at `path` on stdin (any bytes, not only text).
    pub(crate) fn stdin_file(mut self, path: impl AsRef<Path>) -> Run {
        self.cmd.stdin(std::fs::File::open(path).expect("open stdin file"));
        self.run()
    }

    /// Runs with `input` on stdin.
    pub(crate) fn stdin(mut self, input: &str) -> Run {
        use std::io::Write;
        self.cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("spawn distex");
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_string();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let output = child.wait_with_output().expect("wait distex");
        writer.join().unwrap();
        Run { output }
    }

    pub(crate) fn run(mut self) -> Run {
        Run { output: self.cmd.output().expect("run distex") }
    }

    /// Runs with the reading end of stdout closed before distex writes, as
    /// when `distex ... | head` stopped reading.
    pub(crate) fn run_with_stdout_closed(mut self) -> Run {
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("spawn distex");
        drop(child.stdout.take());
        Run { output: child.wait_with_output().expect("wait distex") }
    }
}

/// A finished run.
pub(crate) struct Run {
    pub(crate) output: Output,
}

impl Run {
    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub(crate) fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// Asserts the exit code, showing both streams when it differs.
    pub(crate) fn expect_code(self, code: i32) -> Self {
        assert_eq!(self.code(), Some(code), "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout(), self.stderr());
        assert!(!self.stderr().contains("panicked"), "a Rust panic reached the user:\n{}", self.stderr());
        self
    }

    pub(crate) fn success(self) -> Self {
        self.expect_code(0)
    }

    /// stdout parsed as one JSON value.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout().trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout()))
    }

    /// stdout parsed as JSON Lines.
    pub(crate) fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }
}

/// A `distex process` report's accounting: input records, processed,
/// rejected, in failed regions (each must be there, as a number).
pub(crate) fn accounting(report: &serde_json::Value) -> [u64; 4] {
    ["input_records", "processed", "rejected", "in_failed_regions"].map(|k| {
        report["accounting"][k].as_u64().unwrap_or_else(|| panic!("accounting.{k} is not a count: {report:#}"))
    })
}

/// Writes an executable script at `path`, safely while other tests run.
///
/// Linux refuses to execute a file that any process holds open for writing
/// (ETXTBSY, "Text file busy"). The test harness runs tests on many threads:
/// a child another thread forks while this one has the file open inherits
/// the descriptor and keeps it until that child execs, so writing the file
/// here and running it at once fails now and then. Renaming into place does
/// not help (the inode is the same, still open for writing). So this test
/// process writes only a scratch copy, and `install`, a separate process
/// that forks nothing, writes the executable: no process that could fork
/// ever holds it open for writing.
pub(crate) fn write_executable(path: &Path, text: &str) {
    let scratch = path.with_file_name(format!(".{}.text", path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&scratch, text).expect("write script text");
    let status = Command::new("install")
        .args(["-m", "755"])
        .arg(&scratch)
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run install (coreutils)");
    assert!(status.success(), "install {} failed", path.display());
    std::fs::remove_file(&scratch).expect("remove script text");
}

/// Copies `from` to `to` with its permissions, for a file that may be
/// executed: `cp` writes it, not this process (see [`write_executable`]).
pub(crate) fn copy_file(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-p").arg(from).arg(to).stdin(Stdio::null()).status().expect("run cp");
    assert!(status.success(), "cp {} {} failed", from.display(), to.display());
}

/// Polls `done` every 20 ms until it holds or `limit` passes; says whether
/// it held. For what another process brings about (a file appearing,
/// processes exiting): a fixed sleep is either wasted time or, on a loaded
/// machine, too short. The caller asserts, with its own message.
pub(crate) fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// bubblewrap can create its namespaces here (.ci/run installs it).
pub(crate) fn bwrap_works() -> bool {
    std::process::Command::new("bwrap")
        .args(["--unshare-all", "--unshare-user", "--ro-bind", "/", "/", "true"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

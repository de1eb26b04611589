//! Helpers shared by the integration tests.
//!
//! [`TestCommand`] runs the real `distex` binary with an isolated
//! environment: its own config, state and runtime directories under a
//! temporary directory, and none of the developer's DISTEX_* or XDG_*
//! settings, so tests never read or write the user's files.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub mod slurm;
pub mod sshd;

pub const DISTEX: &str = env!("CARGO_BIN_EXE_distex");

/// A sandbox for one test: a temp dir holding config, state and runtime dirs.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox { dir: tempfile::Builder::new().prefix("dx").tempdir_in("/tmp").expect("temp dir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `cluster.toml` in the sandbox and returns its path.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.path().join("cluster.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// A `distex` invocation that sees only this sandbox.
    pub fn cmd(&self) -> TestCommand {
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
pub struct TestCommand {
    pub cmd: Command,
}

impl TestCommand {
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Runs with the file at `path` on stdin (any bytes, not only text).
    pub fn stdin_file(mut self, path: impl AsRef<Path>) -> Run {
        self.cmd.stdin(std::fs::File::open(path).expect("open stdin file"));
        self.run()
    }

    /// Runs with `input` on stdin.
    pub fn stdin(mut self, input: &str) -> Run {
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

    pub fn run(mut self) -> Run {
        Run { output: self.cmd.output().expect("run distex") }
    }

    /// Runs with the reading end of stdout closed before distex writes, as
    /// when `distex ... | head` stopped reading.
    pub fn run_with_stdout_closed(mut self) -> Run {
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("spawn distex");
        drop(child.stdout.take());
        Run { output: child.wait_with_output().expect("wait distex") }
    }
}

/// A finished run.
pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// Asserts the exit code, showing both streams when it differs.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(self.code(), Some(code), "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout(), self.stderr());
        assert!(!self.stderr().contains("panicked"), "a Rust panic reached the user:\n{}", self.stderr());
        self
    }

    pub fn success(self) -> Self {
        self.expect_code(0)
    }

    /// stdout parsed as one JSON value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout().trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout()))
    }

    /// stdout parsed as JSON Lines.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }
}

/// A `distex process` report's accounting: input records, processed,
/// rejected, in failed regions (each must be there, as a number).
pub fn accounting(report: &serde_json::Value) -> [u64; 4] {
    ["input_records", "processed", "rejected", "in_failed_regions"].map(|k| {
        report["accounting"][k].as_u64().unwrap_or_else(|| panic!("accounting.{k} is not a count: {report:#}"))
    })
}

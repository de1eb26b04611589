//! Running one isolated worker process and judging what it printed.
//!
//! Every worker (the built-in summary, which is distex re-executed as
//! `distex __worker summary`, a user's `--processor`, or an `--aggregate`
//! command) is started the same way:
//!
//! * its own process group, so that a timeout or cleanup reaches its
//!   children and grandchildren too;
//! * a fresh working directory, which is also its HOME and (below `tmp/`)
//!   its TMPDIR;
//! * an environment cleared to an allowlist: PATH, LANG, LC_*, TZ and
//!   DISTEX_*, plus the variables distex sets for it and those named by
//!   `--pass-env`;
//! * resource limits set between fork and exec (address space, CPU time,
//!   open files, no core dumps), and a parent-death signal on Linux;
//! * with `--sandbox`, `distex __sandbox` in front of it, which runs it in
//!   a bubblewrap container ([`super::sandbox`]); without, a `--processor`
//!   or `--aggregate` command runs under `distex __reap`, which collects
//!   what it daemonized ([`super::reaper`]), counted in the report.
//!
//! Its stdin is a file (the region's spool), its stdout is read up to
//! `--max-output` bytes, and the last few KB of stderr are kept for the
//! error message. When it ends, or times out (TERM, grace period, KILL),
//! whatever is left in its process group is killed before it is reaped.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::sys::{self, Limit};

/// Resource limits of each worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Limits {
    /// Address-space limit in bytes (RLIMIT_AS).
    pub(crate) max_memory: Option<u64>,
    /// CPU-time limit in seconds (RLIMIT_CPU).
    pub(crate) max_cpu_seconds: Option<u64>,
    /// Most bytes a worker may print on stdout.
    pub(crate) max_output: u64,
    /// Most open files (RLIMIT_NOFILE); by default [`DEFAULT_OPEN_FILES`],
    /// or the hard limit in force when that is lower.
    pub(crate) max_open_files: Option<u64>,
    /// Wall-clock limit per attempt, in seconds.
    pub(crate) timeout: Option<f64>,
    /// Seconds between SIGTERM and SIGKILL when a worker is stopped.
    pub(crate) grace: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory: None,
            max_cpu_seconds: None,
            max_output: 16 << 20,
            max_open_files: None,
            timeout: None,
            grace: 2.0,
        }
    }
}

/// Open files a worker may have unless `--max-open-files` says otherwise.
pub(crate) const DEFAULT_OPEN_FILES: u64 = 1024;

/// The limits set on a worker, computed before it is forked (see [`Limits::in_force`]).
struct Rlimits {
    open_files: u64,
    address_space: Option<u64>,
    /// Soft and hard CPU seconds.
    cpu: Option<(u64, u64)>,
}

impl Limits {
    /// Refuses a limit the user gave above the hard limit in force (no
    /// process can raise its own): the error names the flag and the limit.
    /// Defaults are clamped instead ([`Limits::in_force`]).
    pub(crate) fn check_hard_limits(&self) -> Result<(), String> {
        let given = [
            ("--max-open-files", Limit::OpenFiles, self.max_open_files, "open files (ulimit -Hn)"),
            ("--max-memory", Limit::AddressSpace, self.max_memory, "address space in bytes (ulimit -Hv, in KiB)"),
            ("--max-cpu-seconds", Limit::CpuSeconds, self.max_cpu_seconds, "CPU seconds (ulimit -Ht)"),
        ];
        for (flag, limit, value, what) in given {
            if let (Some(value), Some(hard)) = (value, sys::hard_limit(limit))
                && value > hard
            {
                return Err(format!(
                    "{flag} {value} is above the hard limit in force here ({hard} {what}), which no process \
                     can raise: give at most {hard}, or leave the flag out"
                ));
            }
        }
        Ok(())
    }

    /// The limits a worker gets: what was given, and for open files the
    /// default clamped to the hard limit in force; the CPU limit's hard
    /// second (SIGKILL after SIGXCPU) too.
    fn in_force(&self) -> Rlimits {
        let hard = |limit| sys::hard_limit(limit).unwrap_or(u64::MAX);
        Rlimits {
            open_files: self.max_open_files.unwrap_or_else(|| DEFAULT_OPEN_FILES.min(hard(Limit::OpenFiles))),
            address_space: self.max_memory,
            cpu: self.max_cpu_seconds.map(|secs| (secs, (secs + 1).min(hard(Limit::CpuSeconds)).max(secs))),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub(crate) enum Program {
    /// `distex __worker KIND` (`summary` or `scan`), with its spec in DISTEX_WORKER_SPEC.
    Builtin { kind: &'static str, spec: String },
    /// A user command, run by `/bin/sh -c` (the command is the user's own text).
    Shell(String),
}

/// One attempt of one worker.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) program: Program,
    /// Becomes the worker's stdin.
    pub(crate) stdin: PathBuf,
    /// A fresh directory for this attempt (created here).
    pub(crate) workdir: PathBuf,
    /// DISTEX_REGION, DISTEX_TASK_ID, DISTEX_ATTEMPT, ...
    pub(crate) env: Vec<(String, String)>,
    pub(crate) limits: Limits,
    pub(crate) sandbox: bool,
    /// `--pass-env` variables, with their values in distex's environment.
    pub(crate) pass_env: Vec<(String, String)>,
    /// `--allow-connect HOST:PORT` endpoints a sandboxed worker may reach.
    pub(crate) allow_connect: Vec<String>,
}

impl Job {
    /// How much of its stdout is read before the worker is stopped:
    /// `--max-output` guards against a runaway user processor; distex's own
    /// workers print an amount fixed by the data (a summary per region),
    /// which can pass 16 MB with hundreds of thousands of regions.
    pub(crate) fn output_cap(&self) -> u64 {
        match self.program {
            Program::Builtin { .. } => u64::MAX,
            Program::Shell(_) => self.limits.max_output,
        }
    }
}

/// Runs `job` to the end; returns what it printed on stdout (after a clean
/// exit) or why it failed. Callers check the output: [`parse_output`] for
/// user commands, typed parsing for built-in workers.
pub(crate) fn run(job: &Job) -> Result<Vec<u8>, String> {
    let home = job.workdir.join("home");
    let tmp = job.workdir.join("tmp");
    for dir in [&home, &tmp] {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create work directory {}: {e}", dir.display()))?;
    }
    let stdin = std::fs::File::open(&job.stdin).map_err(|e| format!("cannot open {}: {e}", job.stdin.display()))?;
    let mut cmd = command(job)?;
    cmd.current_dir(&job.workdir)
        .env_clear()
        .envs(allowed_env())
        .env("HOME", &home)
        .env("TMPDIR", &tmp)
        .envs(job.pass_env.iter().map(|(k, v)| (k, v)))
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .envs(match &job.program {
            Program::Builtin { spec, .. } => vec![("DISTEX_WORKER_SPEC", spec.as_str())],
            Program::Shell(_) => vec![],
        })
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let limits = job.limits.in_force();
    // SAFETY: between fork and exec only async-signal-safe calls are made
    // (setrlimit, prctl), with values computed before the fork.
    unsafe {
        cmd.pre_exec(move || apply_limits(&limits));
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start worker: {e}"))?;
    let pgid = child.id() as i32;
    let exceeded = Arc::new(AtomicBool::new(false));
    let stdout = read_capped(child.stdout.take().expect("piped"), job.output_cap(), exceeded.clone());
    let stderr = read_tail(child.stderr.take().expect("piped"));

    let started = Instant::now();
    let timeout = job.limits.timeout.map(Duration::from_secs_f64);
    // A reaper (see [`command`]) first gives the worker the grace period
    // itself, then collects what it left: the group's SIGKILL, which would
    // kill the reaper too, comes only after that.
    let grace = Duration::from_secs_f64(job.limits.grace) + if reaped(job) { REAPER_MARGIN } else { Duration::ZERO };
    let mut stopped: Option<String> = None;
    let mut term_sent: Option<Instant> = None;
    let mut nap = Duration::from_millis(2);
    let exit_fd = sys::ExitWatch::open(pgid);
    loop {
        if sys::exited_unreaped(pgid) {
            break;
        }
        let now = Instant::now();
        if stopped.is_none() {
            if exceeded.load(Ordering::Relaxed) {
                stopped =
                    Some(format!("printed more than {} (--max-output)", super::human_bytes(job.limits.max_output)));
            } else if timeout.is_some_and(|t| now - started >= t) {
                stopped = Some(format!(
                    "timed out after {}s (--timeout); its process group was terminated",
                    job.limits.timeout.unwrap_or(0.0)
                ));
            } else if interrupted() {
                stopped = Some("interrupted (SIGINT or SIGTERM); its process group was terminated".into());
            }
            if stopped.is_some() {
                sys::signal_group(pgid, sys::SIGTERM);
                term_sent = Some(now);
            }
        } else if term_sent.is_some_and(|t| now - t >= grace) {
            sys::signal_group(pgid, sys::SIGKILL);
            term_sent = None;
        }
        exit_fd.wait(nap);
        nap = (nap * 2).min(Duration::from_millis(25));
    }
    // The leader has exited but is not reaped yet, so its process group id
    // cannot be reused: kill whatever it left behind, then reap it.
    sys::signal_group(pgid, sys::SIGKILL);
    let status = child.wait().map_err(|e| format!("cannot wait for worker: {e}"))?;
    let out = stdout
        .recv_timeout(Duration::from_secs(5))
        .map_err(|_| "its stdout stayed open after it exited (a process escaped its process group)".to_string())?;
    let err_tail = stderr.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    let err_tail = if reaped(job) { take_collected(job, err_tail) } else { err_tail };
    if let Some(reason) = stopped {
        return Err(reason);
    }
    if exceeded.load(Ordering::Relaxed) {
        return Err(format!("printed more than {} (--max-output)", super::human_bytes(job.limits.max_output)));
    }
    if !status.success() {
        return Err(describe_failure(status, &err_tail, &job.limits));
    }
    Ok(out)
}

fn command(job: &Job) -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the distex binary: {e}"))?;
    let (program, args): (PathBuf, Vec<String>) = match &job.program {
        Program::Builtin { kind, .. } => (exe.clone(), vec!["__worker".into(), kind.to_string()]),
        Program::Shell(cmd) => (PathBuf::from("/bin/sh"), vec!["-c".into(), cmd.clone()]),
    };
    let cmd = if job.sandbox {
        let mut c = Command::new(&exe);
        c.arg("__sandbox");
        for endpoint in &job.allow_connect {
            c.arg("--allow-connect").arg(endpoint);
        }
        c.arg("--").arg(&program).args(&args);
        c
    } else if reaped(job) {
        let mut c = Command::new(&exe);
        c.args(["__reap", "--grace", &job.limits.grace.to_string(), "--"]).arg(&program).args(&args);
        c
    } else {
        let mut c = Command::new(&program);
        c.args(&args);
        c
    };
    Ok(cmd)
}

/// Extra time the coordinator waits after the grace period before killing
/// a reaper's whole group, so the reaper can collect first.
const REAPER_MARGIN: Duration = Duration::from_secs(2);

/// Whether `job` runs under `distex __reap`: user commands outside the
/// sandbox (distex's own workers start nothing; a sandbox collects all).
/// (A unit test runs inside the test harness, which has no `__reap`.)
fn reaped(job: &Job) -> bool {
    !cfg!(test) && !job.sandbox && matches!(job.program, Program::Shell(_))
}

/// Removes the reaper's last line from the worker's stderr tail and counts
/// the processes it collected for the report ([`take_collections`]).
pub(crate) fn take_collected(job: &Job, tail: String) -> String {
    let trimmed = tail.trim_end_matches('\n');
    let Some(start) = trimmed.rfind(super::reaper::COLLECTED_MARKER) else { return tail };
    let Ok(count) = trimmed[start + super::reaper::COLLECTED_MARKER.len()..].trim().parse::<u64>() else { return tail };
    let var = |name: &str| job.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let label = match (var("DISTEX_REGION"), var("DISTEX_TASK_ID")) {
        (Some(region), _) => format!("region {region:?}"),
        (None, task) => format!("task {}", task.unwrap_or("?")),
    };
    COLLECTIONS.lock().unwrap_or_else(|e| e.into_inner()).push((label, count));
    trimmed[..start].to_string()
}

/// Processes that left their worker's process group and were killed when
/// the attempt ended: (`region "A"` or `task 7`, how many), one entry per attempt.
static COLLECTIONS: std::sync::Mutex<Vec<(String, u64)>> = std::sync::Mutex::new(Vec::new());

/// Takes what the reapers collected since the last call (for the report).
pub(crate) fn take_collections() -> Vec<(String, u64)> {
    std::mem::take(&mut *COLLECTIONS.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The parent's variables a worker may see.
fn allowed_env() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            k == "PATH" || k == "LANG" || k == "TZ" || k.starts_with("LC_") || k.starts_with("DISTEX_")
        })
        .collect()
}

/// The worker's limits, applied in the child between fork and exec (only
/// async-signal-safe system calls).
fn apply_limits(limits: &Rlimits) -> std::io::Result<()> {
    sys::set_limit(Limit::Core, 0, 0)?;
    sys::set_limit(Limit::OpenFiles, limits.open_files, limits.open_files)?;
    if let Some(bytes) = limits.address_space {
        sys::set_limit(Limit::AddressSpace, bytes, bytes)?;
    }
    if let Some((soft, hard)) = limits.cpu {
        // Soft limit sends SIGXCPU; the hard limit one second later kills.
        sys::set_limit(Limit::CpuSeconds, soft, hard)?;
    }
    sys::die_with_parent();
    Ok(())
}

/// Reads stdout on a thread, keeping at most `cap` bytes; sets `exceeded`
/// (and stops reading) when the worker prints more.
fn read_capped(pipe: impl Read + Send + 'static, cap: u64, exceeded: Arc<AtomicBool>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Straight into the result, which grows as the bytes come; one byte
        // past the cap tells that it was exceeded. A read error ends the
        // output as it stands (EINTR is retried).
        let mut out = Vec::new();
        let _ = pipe.take(cap.saturating_add(1)).read_to_end(&mut out);
        if out.len() as u64 > cap {
            exceeded.store(true, Ordering::Relaxed);
            out.truncate(cap as usize);
        }
        let _ = tx.send(out);
    });
    rx
}

/// Reads stderr on a thread, keeping its last 4 KB.
fn read_tail(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    const KEEP: usize = 4096;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 2 * KEEP {
                tail.drain(..tail.len() - KEEP);
            }
        }
        let start = tail.len().saturating_sub(KEEP);
        let _ = tx.send(String::from_utf8_lossy(&tail[start..]).into_owned());
    });
    rx
}

fn describe_failure(status: std::process::ExitStatus, stderr: &str, limits: &Limits) -> String {
    use std::os::unix::process::ExitStatusExt;
    let last =
        stderr.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().chars().take(300).collect::<String>());
    let mut reason = match (status.code(), status.signal()) {
        // A shell reports a command killed by signal N as status 128 + N.
        (Some(code), _) if (129..=128 + 64).contains(&code) => {
            format!(
                "exited with status {code} (a command it ran was killed by signal {}, {})",
                code - 128,
                sys::signal_name(code - 128)
            )
        }
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig} ({})", sys::signal_name(sig)),
        _ => "ended abnormally".to_string(),
    };
    if status.signal() == Some(sys::SIGXCPU)
        || status.signal() == Some(sys::SIGKILL) && limits.max_cpu_seconds.is_some()
    {
        reason.push_str(" (it may have exceeded --max-cpu-seconds)");
    } else if let Some(bytes) = limits.max_memory {
        let memory_hint = last.as_deref().is_some_and(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("memory") || l.contains("alloc")
        });
        if memory_hint || status.signal() == Some(sys::SIGABRT) {
            reason.push_str(&format!(" (it may have exceeded --max-memory {})", super::human_bytes(bytes)));
        }
    }
    if let Some(last) = last {
        reason.push_str(": ");
        reason.push_str(&last);
    }
    reason
}

/// A worker must print exactly one JSON object (surrounding whitespace allowed).
pub(crate) fn parse_output(out: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let text = std::str::from_utf8(out).map_err(|_| "printed output that is not UTF-8 text".to_string())?;
    let preview = || {
        let t = text.trim();
        let p: String = t.chars().take(120).collect();
        if p.len() < t.len() { format!("{p:?}...") } else { format!("{p:?}") }
    };
    if text.trim().is_empty() {
        return Err("printed nothing; a processor must print one JSON object on stdout".to_string());
    }
    match serde_json::from_str::<serde_json::Value>(text.trim()) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(format!("printed JSON that is not an object: {}", preview())),
        Err(_) => Err(format!("did not print one JSON object on stdout: {}", preview())),
    }
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: i32) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM stop the run cleanly: running workers' process
/// groups are terminated (TERM, grace, KILL), no new attempt starts, and the
/// report says what was not done. Installed by the CLI, not by workers.
pub(crate) fn handle_interrupts() {
    sys::on_interrupt(on_signal);
}

/// True once SIGINT or SIGTERM arrived (after [`handle_interrupts`]).
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Removes a directory tree, ignoring errors (best effort cleanup).
pub(crate) fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// The spec a built-in worker (`distex __worker KIND`) was started with, from
/// DISTEX_WORKER_SPEC; `Err` is the exit status after saying what is wrong.
pub(crate) fn spec_from_env<T: serde::de::DeserializeOwned>() -> Result<T, u8> {
    std::env::var("DISTEX_WORKER_SPEC")
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
        .map_err(|e| {
            eprintln!("distex worker: bad DISTEX_WORKER_SPEC: {e}");
            2
        })
}

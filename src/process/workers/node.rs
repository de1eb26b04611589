//! Region workers on cluster nodes (`--nodes`), over distex's SSH layer
//! ([`crate::exec::ssh`]).
//!
//! A remote worker gets the same contract as a local one: the region's
//! records streamed on its stdin over the SSH channel, `DISTEX_REGION`,
//! `DISTEX_TASK_ID` and `DISTEX_ATTEMPT`, one JSON object expected on stdout.
//! A `--processor` command runs with `/bin/sh -c`; the built-in summary runs
//! the node's own distex (its `distex` config key) as `distex __worker
//! summary`, after checking it is this version ([`RemoteError::NoWorker`]
//! otherwise, and the region moves on).
//! Isolation on the node, from a small POSIX `sh` script where every value
//! is a single-quoted positional argument, never interpolated:
//!
//! * its own process group (sshd starts each session in a new one and the
//!   script `exec`s into its leader); the script announces that pid with the
//!   exec layer's pid marker, so that `--timeout` and Ctrl-C kill the whole
//!   group with [`crate::exec::remote::kill_script`]; when the processor
//!   exits, the script kills whatever it left behind in that group; when
//!   the session's sshd goes away (a dropped connection), a watchdog in the
//!   script kills the group on the node;
//! * a fresh `mktemp -d` directory that is its cwd, HOME and TMPDIR, removed
//!   afterwards;
//! * `env -i` with only PATH, LANG and the DISTEX_* variables above (plus
//!   DISTEX_WORKER_SPEC for a built-in worker), and the `--pass-env`
//!   variables, which come first on the channel's stdin (one `NAME=VALUE`
//!   line each, after a line with their count) so that no value is ever on
//!   a command line (where `ps` on the node would show it);
//! * `ulimit` for `--max-memory`, `--max-cpu-seconds` and open files;
//! * without `--sandbox`, a processor runs under the node's `distex
//!   __reap` (when the node has this version), which collects what it
//!   daemonizes and says how many on stderr, as locally;
//! * with `--sandbox`, the node's own `distex __sandbox` (the node's
//!   distex is then required, as for the built-in summary): the same
//!   bubblewrap container as on this machine, with `--allow-connect`
//!   endpoints as seen from the node. A node that cannot sandbox (no
//!   bubblewrap) never runs the worker: the unit moves elsewhere.
//!
//! The exit status comes back as the exec layer's exit marker on stderr, so
//! "the processor exited 255" is never confused with "ssh failed".

use std::fmt;
use std::time::{Duration, Instant};

use openssh::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Node;
use crate::exec::remote::{Markers, kill_script, nonce, run_quietly};
use crate::exec::ssh;
use crate::process::workers::local::{Job, Program, interrupted};
use crate::route::sh_quote;

/// The script run on the node. Arguments: region, task id, attempt, memory
/// limit in KiB (or empty), CPU seconds (or empty), open files, then either
/// the processor command (with an empty spec after it) or, for a
/// built-in worker, its kind and its spec; then the node's distex binary
/// and the `--version` line expected of it (empty when neither a built-in
/// worker nor the sandbox needs it); then `sandbox` or empty, and the
/// `--allow-connect HOST:PORT` words for the sandbox (endpoints are checked
/// to hold no blanks or shell patterns). It first reads this run's secret
/// nonce from stdin and announces its pid, which is also its process group
/// (sshd starts each session in a new one and the login shell `exec`s into
/// this script), with the exec layer's pid marker carrying the nonce; then
/// it waits for distex's `go` line before anything runs (the `--pass-env`
/// header and the region's records follow on stdin). Without `go`, the
/// region provably never ran; after it, a lost connection means it may
/// have, and it is never run again.
///
/// A node without a usable distex (not found, not executable, another
/// version) exits 127 before anything runs, with the reason as the last
/// line on stderr: distex moves that region elsewhere.
///
/// A watchdog in the background checks every second that the sshd process
/// that started the script is still there. When it is gone (the connection
/// dropped, or sshd died), nobody can read the worker's result or stop it
/// any more, so the watchdog stops it as a timeout would: SIGTERM to the
/// group, 2 s of grace, SIGKILL. The script itself survives the SIGTERM
/// (it only waits for the worker to end, then removes its directory) and
/// ignores SIGPIPE (restored for the worker), so that writing to the dead
/// channel cannot kill it before that. Its last act, after a normal end,
/// kills the watchdog with the rest of the group.
const SCRIPT: &str = r#"cd || exit 125
IFS= read -r n || exit 125
printf '\036\037distex-%s:pid %d\n' "$n" "$$" >&2
IFS= read -r go && [ "$go" = go ] || exit 125
d=$(mktemp -d "${TMPDIR:-/tmp}/distex-worker.XXXXXX") || { printf '\036\037distex-%s:exit 125\n' "$n" >&2; exit 125; }
mkdir "$d/home" "$d/tmp" && cd "$d" || { rm -rf "$d"; printf '\036\037distex-%s:exit 125\n' "$n" >&2; exit 125; }
region=$1 task=$2 attempt=$3 mem=$4 cpu=$5 files=$6 what=$7 spec=$8 distex=$9 version=${10} mode=${11} connect=${12} grace=${13}
shift 13
if [ -n "$distex" ]; then
  v=$(env -i PATH="$PATH" /bin/sh -c 'exec "$1" --version' sh "$distex" </dev/null 2>&1)
  rc=$?
  [ "$rc" -eq 0 ] && [ "$v" != "$version" ] && { v="it is $(printf %s "$v" | head -n 1), not $version"; rc=127; }
  [ "$rc" -ne 0 ] && [ "$mode" = reap ] && distex=
  [ "$rc" -ne 0 ] && [ -n "$distex" ] && { printf '%s\n' "$v" | tail -n 1 | sed 's/^/distex on the node: /' >&2; cd / && rm -rf "$d"; printf '\036\037distex-%s:exit 127\n' "$n" >&2; exit 127; }
fi
k= && IFS= read -r k && [ "$k" -ge 0 ] 2>/dev/null || { cd / && rm -rf "$d"; printf 'no environment header on stdin\n\036\037distex-%s:exit 125\n' "$n" >&2; exit 125; }
while [ "$k" -gt 0 ]; do IFS= read -r kv && set -- "$@" "$kv"; k=$((k - 1)); done
trap : TERM
trap '' PIPE
(
  trap '' TERM
  exec </dev/null >/dev/null 2>&1
  while kill -0 "$PPID" 2>/dev/null; do sleep 1; done
  kill -TERM 0; sleep 2; kill -KILL 0
) &
(
  trap - PIPE
  [ -n "$mem" ] && ulimit -v "$mem"
  [ -n "$cpu" ] && ulimit -t "$cpu"
  ulimit -n "$files" 2>/dev/null
  ulimit -c 0 2>/dev/null
  set -f
  [ "$mode" = sandbox ] && [ -n "$spec" ] && exec env -i PATH="$PATH" LANG="${LANG:-C.UTF-8}" HOME="$d/home" \
    TMPDIR="$d/tmp" DISTEX_REGION="$region" DISTEX_TASK_ID="$task" DISTEX_ATTEMPT="$attempt" DISTEX_WORKER_SPEC="$spec" \
    "$@" "$distex" __sandbox $connect -- /run/distex/distex __worker "$what"
  [ "$mode" = sandbox ] && exec env -i PATH="$PATH" LANG="${LANG:-C.UTF-8}" HOME="$d/home" TMPDIR="$d/tmp" \
    DISTEX_REGION="$region" DISTEX_TASK_ID="$task" DISTEX_ATTEMPT="$attempt" "$@" \
    "$distex" __sandbox $connect -- /bin/sh -c "$what"
  [ -n "$spec" ] && exec env -i PATH="$PATH" LANG="${LANG:-C.UTF-8}" HOME="$d/home" TMPDIR="$d/tmp" \
    DISTEX_REGION="$region" DISTEX_TASK_ID="$task" DISTEX_ATTEMPT="$attempt" DISTEX_WORKER_SPEC="$spec" \
    "$@" /bin/sh -c 'exec "$1" __worker "$2"' sh "$distex" "$what"
  [ "$mode" = reap ] && [ -n "$distex" ] && exec env -i PATH="$PATH" LANG="${LANG:-C.UTF-8}" HOME="$d/home" \
    TMPDIR="$d/tmp" DISTEX_REGION="$region" DISTEX_TASK_ID="$task" DISTEX_ATTEMPT="$attempt" "$@" \
    "$distex" __reap --grace "$grace" -- /bin/sh -c "$what"
  exec env -i PATH="$PATH" LANG="${LANG:-C.UTF-8}" HOME="$d/home" TMPDIR="$d/tmp" \
    DISTEX_REGION="$region" DISTEX_TASK_ID="$task" DISTEX_ATTEMPT="$attempt" "$@" /bin/sh -c "$what"
)
rc=$?
cd / && rm -rf "$d"
printf '\036\037distex-%s:exit %d\n' "$n" "$rc" >&2
kill -KILL 0"#;

/// Longest grace a reaper on a node gives its worker after SIGTERM, in
/// seconds: [`kill_script`] sends SIGKILL 2 s after SIGTERM.
const REMOTE_REAPER_GRACE: f64 = 1.5;

/// The `--version` line a node's distex must print to serve as a built-in
/// worker for this one: workers and coordinator share the spec format.
fn version_line() -> String {
    format!("distex {}", env!("CARGO_PKG_VERSION"))
}

/// The remote command line for one attempt on `node`.
fn command_line(job: &Job, node: &Node) -> String {
    let var = |k: &str| job.env.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str()).unwrap_or("");
    let memory_kib = job.limits.max_memory.map(|b| (b / 1024).to_string()).unwrap_or_default();
    let cpu = job.limits.max_cpu_seconds.map(|s| s.to_string()).unwrap_or_default();
    let version = version_line();
    // The built-in worker's spec is data (column names): an argument like
    // every other value, single-quoted, never part of the script.
    let (what, spec) = match &job.program {
        Program::Shell(command) => (command.as_str(), ""),
        Program::Builtin { kind, spec } => (*kind, spec.as_str()),
    };
    // Every worker that can use the node's distex does: a built-in one and
    // the sandbox need it; a plain processor runs under its reaper when the
    // node has this version, else without.
    let (distex, version) = (node.distex.as_str(), version.as_str());
    let mode = match (job.sandbox, &job.program) {
        (true, _) => "sandbox",
        (false, Program::Shell(_)) => "reap",
        (false, Program::Builtin { .. }) => "",
    };
    // The node's kill script waits 2 s after SIGTERM: the reaper must be done by then.
    let grace = job.limits.grace.min(REMOTE_REAPER_GRACE).to_string();
    let connect: Vec<String> = job.allow_connect.iter().map(|e| format!("--allow-connect {e}")).collect();
    let connect = connect.join(" ");
    let args = [
        var("DISTEX_REGION"),
        var("DISTEX_TASK_ID"),
        var("DISTEX_ATTEMPT"),
        &memory_kib,
        &cpu,
        &job.limits.max_open_files.unwrap_or(super::local::DEFAULT_OPEN_FILES).to_string(),
        what,
        spec,
        distex,
        version,
        mode,
        &connect,
        &grace,
    ]
    .iter()
    .map(|a| sh_quote(a))
    .collect::<Vec<_>>()
    .join(" ");
    format!("exec sh -c {} distex {args}", sh_quote(SCRIPT))
}

/// The `--pass-env` variables as the script reads them first on stdin:
/// their count, then one `NAME=VALUE` line each (values with a newline are
/// refused before the run starts).
fn env_header(job: &Job) -> String {
    let mut header = format!("{}\n", job.pass_env.len());
    for (name, value) in &job.pass_env {
        header.push_str(&format!("{name}={value}\n"));
    }
    header
}

/// Why a remote attempt produced no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RemoteError {
    /// The node could not be reached, or the connection was lost before the
    /// worker reported its exit status: the node is at fault, not the
    /// processor, so the unit may run elsewhere.
    Transport(String),
    /// The processor ran and failed (non-zero exit, timeout, too much
    /// output, interrupted): retried on its own target per `--retries`.
    Failed(String),
    /// The worker was let start, then the connection was lost before its
    /// exit status arrived: it may have run, so it is never run again (the
    /// region fails, the node is marked down).
    Lost(String),
    /// The node's host key is not the one known_hosts holds (a security
    /// event): the region runs nowhere, is not retried, and the node is
    /// not trusted in the node cache.
    Refused(String),
    /// The node answered but has no usable distex for a built-in worker
    /// (not installed where its `distex` key says, or another version): the
    /// unit may run elsewhere, and the node is not down.
    NoWorker(String),
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::Transport(why)
            | RemoteError::Failed(why)
            | RemoteError::Refused(why)
            | RemoteError::Lost(why)
            | RemoteError::NoWorker(why) => f.write_str(why),
        }
    }
}

/// Runs `job` on `node`; returns its stdout after a clean exit, or why it failed.
pub(crate) fn run(node: &Node, job: &Job) -> Result<Vec<u8>, RemoteError> {
    let runtime =
        crate::exec::runtime().map_err(|e| RemoteError::Failed(format!("cannot start the SSH runtime: {e}")))?;
    runtime.block_on(run_async(node, job))
}

/// One attempt, in phases: connect, start the script, exchange (records
/// in, output out, until the worker ends or distex stops it), then the
/// verdict from its exit marker.
async fn run_async(node: &Node, job: &Job) -> Result<Vec<u8>, RemoteError> {
    let master = connect(node).await?;
    let mut child = master.session().raw_command(command_line(job, node));
    child.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = child.spawn().await.map_err(|e| transport(node, format!("cannot start ssh: {e}")))?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin().take(), child.stdout().take(), child.stderr().take())
    else {
        return Err(transport(node, "ssh gave no pipes".into()));
    };
    let exchange = exchange(node, job, Pipes { stdin, stdout, stderr }).await;
    let streams = match exchange.ended {
        Ok(streams) if !streams.exceeded => streams,
        Ok(_) => {
            stop(&master, exchange.pgid).await;
            return Err(RemoteError::Failed(format!(
                "printed more than {} (--max-output) on node {}",
                super::human_bytes(job.output_cap()),
                node.name
            )));
        }
        Err(why) => {
            stop(&master, exchange.pgid).await;
            return Err(RemoteError::Failed(why));
        }
    };
    let _ = child.wait().await;
    verdict(node, job, streams, exchange.let_go)
}

/// The node's master connection. A changed host key is refused (the
/// region runs nowhere); a node that cannot be reached is a transport
/// failure (the region may move).
async fn connect(node: &Node) -> Result<ssh::Master, RemoteError> {
    ssh::connect(node).await.map_err(|e| match e.fault {
        ssh::Fault::HostKeyChanged => RemoteError::Refused(e.message),
        // Trouble on this machine: no other node would fare better.
        ssh::Fault::Local => RemoteError::Failed(e.message),
        ssh::Fault::Unreachable => transport(node, format!("cannot connect: {e}")),
    })
}

/// A transport failure on `node`: the worker never started there.
fn transport(node: &Node, why: String) -> RemoteError {
    RemoteError::Transport(format!("node {}: {why}", node.name))
}

/// The ssh channel's three pipes to the script on the node.
struct Pipes {
    stdin: openssh::ChildStdin,
    stdout: openssh::ChildStdout,
    stderr: openssh::ChildStderr,
}

/// What the worker printed, once its streams closed.
struct Streams {
    stdout: Vec<u8>,
    /// The last few KiB of stderr, markers taken out.
    tail: Vec<u8>,
    /// The status from the exit marker (`None`: none arrived).
    status: Option<i32>,
    /// stdout went over `--max-output` (reading stopped there).
    exceeded: bool,
}

/// How the exchange with the script ended.
struct Exchange {
    /// The streams, or why distex stopped the worker (timeout, interrupt).
    ended: Result<Streams, String>,
    /// The worker's process group on the node, once the script announced it.
    pgid: Option<u32>,
    /// Whether distex wrote `go` (after it, the worker may have run).
    let_go: bool,
}

/// Talks with the script: the nonce, then `go` once it announced its pid,
/// the `--pass-env` header and the region's records on stdin, while
/// stdout and stderr are read and the timeout and interrupts watched.
async fn exchange(node: &Node, job: &Job, pipes: Pipes) -> Exchange {
    let Pipes { mut stdin, stdout: mut out, stderr: mut err } = pipes;
    let spool = job.stdin.clone();
    let nonce = nonce();
    let header = env_header(job);
    // The script runs nothing before it reads `go`, which is written once
    // it announced its pid: without `go`, the region provably never ran.
    let announced = tokio::sync::Notify::new();
    let let_go = std::cell::Cell::new(false);
    // The nonce, `go`, the --pass-env header, then the region's records.
    let feed = async {
        stdin.write_all(format!("{nonce}\n").as_bytes()).await?;
        announced.notified().await;
        let_go.set(true);
        stdin.write_all(b"go\n").await?;
        stdin.write_all(header.as_bytes()).await?;
        let mut file = tokio::fs::File::open(&spool).await?;
        tokio::io::copy(&mut file, &mut stdin).await?;
        stdin.shutdown().await?;
        drop(stdin);
        Ok::<(), std::io::Error>(())
    };
    let cap = job.output_cap();
    // The worker's process group on the node, once its script announced it.
    let pgid = std::cell::Cell::new(None);
    let pump = async {
        let (mut stdout, mut tail, mut marker) = (Vec::new(), Vec::new(), Markers::new(&nonce));
        let (mut ob, mut eb) = (vec![0u8; 64 << 10], vec![0u8; 16 << 10]);
        let (mut out_open, mut err_open, mut exceeded) = (true, true, false);
        while out_open || err_open {
            tokio::select! {
                n = out.read(&mut ob), if out_open => match n {
                    Ok(0) | Err(_) => out_open = false,
                    Ok(n) if stdout.len() as u64 + n as u64 > cap => { exceeded = true; break; }
                    Ok(n) => stdout.extend_from_slice(&ob[..n]),
                },
                n = err.read(&mut eb), if err_open => match n {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(n) => {
                        tail.extend(marker.feed(&eb[..n]));
                        if pgid.get().is_none() && marker.pid.is_some() {
                            pgid.set(marker.pid);
                            announced.notify_one();
                        }
                        if tail.len() > 8192 { tail.drain(..tail.len() - 4096); }
                    }
                },
            }
        }
        tail.extend(marker.finish());
        Streams { stdout, tail, status: marker.status, exceeded }
    };
    let watch = watch(node, job);
    // Feeding stdin must never keep a timeout from firing: a processor that
    // hangs without reading leaves the feed blocked on a full channel.
    tokio::pin!(feed, pump, watch);
    let mut feeding = true;
    let ended = loop {
        tokio::select! {
            _ = &mut feed, if feeding => feeding = false,
            r = &mut pump => break Ok(r),
            why = &mut watch => break Err(why),
        }
    };
    Exchange { ended, pgid: pgid.get(), let_go: let_go.get() }
}

/// Resolves with the reason once the worker must be stopped: `--timeout`
/// passed, or distex was interrupted.
async fn watch(node: &Node, job: &Job) -> String {
    let started = Instant::now();
    let timeout = job.limits.timeout.map(Duration::from_secs_f64);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            return format!(
                "timed out after {}s (--timeout) on node {}; its process group was killed",
                job.limits.timeout.unwrap_or(0.0),
                node.name
            );
        }
        if interrupted() {
            return format!("interrupted; its process group on node {} was killed", node.name);
        }
    }
}

/// The attempt's result from the worker's exit marker (`let_go`: whether
/// it was let start, which decides what a missing marker means).
fn verdict(node: &Node, job: &Job, streams: Streams, let_go: bool) -> Result<Vec<u8>, RemoteError> {
    let tail = String::from_utf8_lossy(&streams.tail).into_owned();
    // A plain processor's reaper says last what it collected.
    let tail = if job.sandbox { tail } else { crate::process::workers::local::take_collected(job, tail) };
    let last = tail.lines().rev().find(|l| !l.trim().is_empty()).map(|l| format!(": {}", l.trim())).unwrap_or_default();
    let failed = RemoteError::Failed;
    let checked_distex = last.starts_with(": distex on the node: ");
    let last = last.replacen(": distex on the node: ", ": ", 1);
    match streams.status {
        // (A processor may answer without reading all of its input.)
        Some(0) => Ok(streams.stdout),
        Some(126) if job.sandbox && last.starts_with(": distex: sandbox:") => {
            Err(RemoteError::NoWorker(format!("node {} cannot run a sandboxed worker{last}", node.name)))
        }
        Some(127) if matches!(job.program, Program::Builtin { .. }) || checked_distex => {
            Err(RemoteError::NoWorker(format!(
                "node {name} has no usable distex binary (`{distex}`{last}); install {version} there, or set \
             `distex = \"/path/to/distex\"` in node {name}'s [[node]] table of the cluster config",
                name = node.name,
                distex = node.distex,
                version = version_line(),
            )))
        }
        Some(code) if (129..=192).contains(&code) => Err(failed(format!(
            "exited with status {code} on node {} (killed by signal {}){last}",
            node.name,
            code - 128
        ))),
        Some(code) => Err(failed(format!("exited with status {code} on node {}{last}", node.name))),
        // No exit marker, after `go`: it may have run; never run it again.
        None if let_go => Err(RemoteError::Lost(format!(
            "started on node {}, connection lost, outcome unknown, not retried{last}",
            node.name
        ))),
        // No exit marker before `go`: it never ran; it may run elsewhere.
        None => Err(transport(node, format!("the connection ended before the processor started{last}"))),
    }
}

/// Kills the worker's process group on the node (TERM, grace, KILL). With
/// no pid announced yet, nothing has started there that could outlive the
/// dropped channel.
async fn stop(master: &ssh::Master, pgid: Option<u32>) {
    if let Some(script) = pgid.and_then(kill_script) {
        run_quietly(master, script).await;
    }
}

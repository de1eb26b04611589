//! Running a command on this machine, with the user's shell, in the
//! current directory: output streamed (or inherited), status passed through.
//!
//! The command runs in its own process group so that `--timeout` and the
//! stopping signals stop everything it started, not just the shell; a
//! watchdog in that group kills it if distex itself dies (SIGKILL).

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncReadExt;

use super::output::{OutputSink, Stream};
use super::remote::Stop;
use crate::sys::{SIGKILL, SIGTERM, group_alive, signal_group};

/// How a local run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LocalOutcome {
    Exited(i32),
    Signaled(i32),
    Stopped(Stop),
    /// The shell could not be started at all.
    SpawnFailed(String),
}

/// The user's shell (`$SHELL`), else `/bin/sh`.
pub(crate) fn user_shell() -> String {
    std::env::var("SHELL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into())
}

/// Runs `command` in `cwd`. With `inherit`, the child writes straight to
/// our terminal (colours and progress bars keep working) and `sink` sees
/// nothing; otherwise output goes through `sink`.
pub(crate) async fn run(
    command: &str,
    cwd: &Path,
    inherit: bool,
    sink: &mut dyn OutputSink,
    stop: impl Future<Output = Stop>,
) -> LocalOutcome {
    let mut cmd = tokio::process::Command::new(user_shell());
    cmd.arg("-c").arg(command).current_dir(cwd).process_group(0).kill_on_drop(true);
    if inherit {
        cmd.stdin(Stdio::inherit()).stdout(Stdio::inherit()).stderr(Stdio::inherit());
    } else {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return LocalOutcome::SpawnFailed(format!("cannot start {}: {e}", user_shell())),
    };
    let pgid = child.id().map(|p| p as i32);
    let watchdog = pgid.and_then(watchdog);
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let work = async {
        let (mut ob, mut eb) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
        while out.is_some() || err.is_some() {
            tokio::select! {
                n = read_some(&mut out, &mut ob) => match n {
                    Some(n) => sink.chunk(Stream::Stdout, &ob[..n]),
                    None => out = None,
                },
                n = read_some(&mut err, &mut eb) => match n {
                    Some(n) => sink.chunk(Stream::Stderr, &eb[..n]),
                    None => err = None,
                },
            }
        }
        sink.finish();
        child.wait().await
    };
    tokio::pin!(stop);
    let outcome = tokio::select! {
        status = work => match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => LocalOutcome::Exited(code),
                (None, Some(sig)) => LocalOutcome::Signaled(sig),
                _ => LocalOutcome::Exited(1),
            },
            Err(e) => LocalOutcome::SpawnFailed(format!("waiting for the command: {e}")),
        },
        why = &mut stop => LocalOutcome::Stopped(why),
    };
    if let Some(mut w) = watchdog {
        // Its job is done (first, so that it does not hold the group up).
        let _ = w.start_kill();
        let _ = w.wait().await;
    }
    if let (LocalOutcome::Stopped(_), Some(pgid)) = (&outcome, pgid) {
        kill_group(pgid).await;
    }
    outcome
}

/// Starts the watchdog of the remote wrapper ([`super::remote`]) inside the
/// command's process group, reading a pipe only distex writes to: if distex
/// dies, even by SIGKILL, the pipe closes and the watchdog kills the group.
/// (None when the group is already gone: nothing is left to guard.)
fn watchdog(pgid: i32) -> Option<tokio::process::Child> {
    tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(super::remote::WATCHDOG)
        .arg("distex-watchdog")
        .process_group(pgid)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()
}

/// Reads from an optional pipe; `None` at EOF (or when there is no pipe,
/// in which case it never resolves).
async fn read_some<R: tokio::io::AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> Option<usize> {
    match pipe {
        Some(p) => match p.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

/// SIGTERM to the group, up to 2 s of grace, then SIGKILL.
async fn kill_group(pgid: i32) {
    signal_group(pgid, SIGTERM);
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if !group_alive(pgid) {
            return;
        }
    }
    signal_group(pgid, SIGKILL);
}

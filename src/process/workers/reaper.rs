//! Collecting what a worker daemonized (without `--sandbox`).
//!
//! A processor can leave its process group (`setsid`, `setpgrp`) and so
//! escape the group kill that ends every worker. Each `--processor` and
//! `--aggregate` command therefore runs under `distex __reap --grace SECS
//! -- PROGRAM ARGS`, the leader of the worker's process group, which:
//!
//! 1. makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`): whatever
//!    its descendants leave behind when their parent exits is re-parented
//!    to it, not to init, however it detached itself;
//! 2. runs the worker and waits for it;
//! 3. when the worker has exited, kills every process still below it, round
//!    after round (killing one re-parents its children) until none is left,
//!    and counts those that had left the worker's process group;
//! 4. says how many it collected as its last line on stderr
//!    ([`COLLECTED_MARKER`], read by [`super::local`]; nothing below it is
//!    alive any more to write after it), and exits with the worker's status.
//!
//! On SIGTERM or SIGINT (a timeout, or Ctrl-C: the whole group gets it;
//! or distex itself died, which the kernel tells it with SIGTERM) it gives
//! the worker `--grace` seconds, then kills it and collects the rest the
//! same way. The worker itself gets SIGKILL if the reaper is killed. The coordinator sends SIGKILL to the group only
//! later than that, as a last resort.

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::sys;

/// Starts the reaper's last stderr line, followed by the count of
/// processes that had left the worker's process group and were killed.
pub(crate) const COLLECTED_MARKER: &str = "\u{1e}\u{1f}distex-collected ";

static TERMINATED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_terminate(_: i32) {
    // Only an atomic store: async-signal-safe.
    TERMINATED.store(true, Ordering::SeqCst);
}

/// Entry point of `distex __reap --grace SECS -- PROGRAM ARGS...`.
pub(crate) fn main(args: &[OsString]) -> u8 {
    let (grace, command) = match args {
        [flag, secs, dashes, command @ ..] if flag == "--grace" && dashes == "--" && !command.is_empty() => {
            match secs.to_string_lossy().parse::<f64>() {
                Ok(s) if s.is_finite() && s >= 0.0 => (Duration::from_secs_f64(s), command),
                _ => return usage(),
            }
        }
        _ => return usage(),
    };
    // Where there is no subreaper (macOS), only the worker's process group
    // is collected, by the coordinator, as before.
    let _ = sys::become_subreaper();
    sys::on_interrupt(on_terminate);
    // If distex dies (even by SIGKILL), this process is told with SIGTERM
    // and collects everything below it after the grace period.
    sys::terminate_with_parent();
    let mut worker = std::process::Command::new(&command[0]);
    worker.args(&command[1..]);
    // SAFETY: only prctl between fork and exec (async-signal-safe).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut worker, || {
            sys::die_with_parent();
            Ok(())
        });
    }
    let child = match worker.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("distex: cannot run {}: {e}", command[0].to_string_lossy());
            return 127;
        }
    };
    let status = wait_for(child.id() as i32, grace);
    // Always said, so that the last line is the reaper's, not a forgery.
    eprintln!("{COLLECTED_MARKER}{}", collect());
    status as u8
}

fn usage() -> u8 {
    eprintln!("distex __reap: expected --grace SECS -- PROGRAM ARGS...");
    2
}

/// Waits for the worker `pid`; after SIGTERM, at most `grace` before
/// killing it. Returns its status as a shell would (128 + N for signal N).
fn wait_for(pid: i32, grace: Duration) -> i32 {
    let watch = sys::ExitWatch::open(pid);
    let mut deadline: Option<Instant> = None;
    loop {
        // Re-parented orphans that exit on their own are reaped too.
        while let Some((reaped, status)) = sys::reap_any(false) {
            if reaped == pid {
                return sys::shell_status(status);
            }
        }
        if TERMINATED.load(Ordering::SeqCst) {
            let at = *deadline.get_or_insert_with(|| Instant::now() + grace);
            if Instant::now() >= at {
                sys::signal_process(pid, sys::SIGKILL);
            }
        }
        watch.wait(Duration::from_millis(50));
    }
}

/// Kills everything still below this process, round by round, and reaps
/// it. Returns how many of them had left this process group.
fn collect() -> usize {
    let own = sys::own_group();
    let mut escaped = std::collections::BTreeSet::new();
    loop {
        let children = sys::children();
        if children.is_empty() {
            break;
        }
        for &(pid, pgid) in &children {
            sys::signal_process(pid, sys::SIGKILL);
            if pgid != own {
                escaped.insert(pid);
            }
        }
        for _ in &children {
            if sys::reap_any(true).is_none() {
                break;
            }
        }
    }
    escaped.len()
}

//! The signals that stop a run: SIGINT (Ctrl-C), SIGTERM and SIGHUP.
//!
//! Claude Code stops background commands and ends sessions with signals, so
//! each of them must stop what distex started - the local command's process
//! group, or the remote command's group over the master - and distex then
//! exits with 128 + the signal's number, as a shell would report it.
//! (SIGKILL cannot be caught: for remote commands, the wrapper's watchdog
//! on the node notices the closed channel instead; see [`super::remote`].)

use std::sync::atomic::{AtomicI32, Ordering};

/// The first stopping signal received, 0 before any.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Starts listening for SIGINT, SIGTERM and SIGHUP (call inside a tokio
/// runtime). The receiver turns true at the first of them.
pub(crate) fn stop_on_signals() -> tokio::sync::watch::Receiver<bool> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = tokio::sync::watch::channel(false);
    for kind in [SignalKind::interrupt(), SignalKind::terminate(), SignalKind::hangup()] {
        let Ok(mut stream) = signal(kind) else { continue };
        let tx = tx.clone();
        tokio::spawn(async move {
            if stream.recv().await.is_some() {
                let _ = RECEIVED.compare_exchange(0, kind.as_raw_value(), Ordering::SeqCst, Ordering::SeqCst);
                let _ = tx.send(true);
            }
        });
    }
    rx
}

/// The signal that stopped the run, if one did.
pub(crate) fn received() -> Option<i32> {
    Some(RECEIVED.load(Ordering::SeqCst)).filter(|&s| s != 0)
}

/// What distex exits with after a stopping signal: 128 + its number
/// (130 when none was recorded, as for Ctrl-C).
pub(crate) fn exit_code() -> u8 {
    (128 + received().unwrap_or(libc::SIGINT)).clamp(0, 255) as u8
}

//! The hook's log: `hook.log` in distex's state directory.
//!
//! The hook may not print anything Claude Code would act on, so this file is
//! where it says why it stepped aside. One line per event, prefixed with the
//! Unix time; the file is rotated to `hook.log.1` once it passes 1 MiB so it
//! never grows without bound. Failing to log is silently ignored: logging
//! must not be the thing that breaks a session.

use std::io::Write;

const MAX_LOG: u64 = 1 << 20;

/// Appends one line (newlines in `message` are flattened).
pub(crate) fn append(message: &str) {
    // Only in a private state directory (never one another user controls).
    let Ok(dir) = crate::state::checked_state_dir() else { return };
    let path = dir.join("hook.log");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_LOG) {
        let _ = std::fs::rename(&path, path.with_extension("log.1"));
    }
    let line = format!("{} pre-tool-use: {}\n", crate::state::now_secs(), message.replace('\n', " "));
    use std::os::unix::fs::OpenOptionsExt;
    let opened =
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(&path);
    if let Ok(mut file) = opened {
        let _ = file.write_all(line.as_bytes());
    }
}

//! What the hook already told the user in a Claude Code session.
//!
//! Some messages are worth saying once per session, not before every
//! command: a broken config, "no nodes configured", an overload suggestion.
//! The hook remembers each one as an empty marker file
//! `hook-sessions/<session id>.<what>` in distex's state directory, created
//! with `O_EXCL`, so of two hooks running at once (parallel tool calls) only
//! one says it. Markers older than a week are removed whenever a new one is
//! made, so the directory never grows without bound.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// True the first time `what` is asked about in `session` (and from then on
/// false). When the marker cannot be written the answer is true: better a
/// repeated message than a silent one.
pub(crate) fn first_time(session: &str, what: &str) -> bool {
    let dir = dir();
    let marker = dir.join(format!("{}.{what}", file_name(session)));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        super::log::append(&format!("cannot create {}: {e}", dir.display()));
        return true;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&marker) {
        Ok(_) => {
            prune(&dir);
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => {
            super::log::append(&format!("cannot create {}: {e}", marker.display()));
            true
        }
    }
}

fn dir() -> PathBuf {
    crate::state::state_dir().join("hook-sessions")
}

/// Claude Code's session ids are UUIDs; anything else is made safe for a
/// file name by writing every other byte as `%XX` (so two ids never share
/// a name), and bounded in length.
fn file_name(session: &str) -> String {
    let session = if session.is_empty() { "no-session" } else { session };
    let mut name = String::new();
    for b in session.bytes().take(128) {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    name
}

fn prune(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|at| now.duration_since(at).is_ok_and(|age| age > KEEP));
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_become_distinct_safe_file_names() {
        assert_eq!(file_name("3f2a-9c_1"), "3f2a-9c_1");
        assert_eq!(file_name("../x"), "%2E%2E%2Fx");
        assert_eq!(file_name(""), "no-session");
        assert_ne!(file_name("a.b"), file_name("a%2Eb"));
    }
}

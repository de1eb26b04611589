//! Where distex keeps state (caches, logs) and runtime files (SSH control
//! sockets, locks), and the checks that keep them distex's own.
//!
//! Another user must never be able to plant files there: a symlink in a
//! shared `/tmp/distex-UID` made by someone else would let them redirect
//! distex's writes into the victim's files. So before use, each directory
//! is created private (0700) if missing, and an existing one must be a real
//! directory (not a symlink), owned by this user, and closed to others:
//! the runtime directory with no group or other access at all, the state
//! directory with no group or other write access (it may predate this
//! check, made with the usual umask). distex never changes the mode of an
//! existing directory: it refuses, naming the directory and the fix.
//! Files in them are created without following symlinks ([`create_file`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::sys::uid;

/// `$DISTEX_STATE_DIR`, else `$XDG_STATE_HOME/distex`, else `~/.local/state/distex`.
pub(crate) fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DISTEX_STATE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("distex");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/distex"),
        None => std::env::temp_dir().join(format!("distex-state-{}", uid())),
    }
}

/// A short, private directory for SSH control sockets (Unix socket paths are
/// limited to ~104 bytes, so this must stay short): `$DISTEX_RUNTIME_DIR`,
/// else `$XDG_RUNTIME_DIR/distex`, else `/tmp/distex-UID`.
pub(crate) fn runtime_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DISTEX_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("distex");
    }
    PathBuf::from(format!("/tmp/distex-{}", uid()))
}

/// The runtime directory, created if missing (mode 0700), else checked:
/// a real directory of this user's, closed to everyone else.
pub(crate) fn checked_runtime_dir() -> Result<PathBuf, String> {
    let dir = runtime_dir();
    private_dir(&dir, "runtime", 0o077, "DISTEX_RUNTIME_DIR")?;
    Ok(dir)
}

/// The state directory, created if missing (mode 0700), else checked: a
/// real directory of this user's that other users cannot write to.
pub(crate) fn checked_state_dir() -> Result<PathBuf, String> {
    let dir = state_dir();
    private_dir(&dir, "state", 0o002, "DISTEX_STATE_DIR")?;
    Ok(dir)
}

/// Creates `dir` with mode 0700 (parents as needed) if it is missing, then
/// checks that it is a directory, not a symlink, owned by this user, with
/// none of the `forbidden` mode bits.
fn private_dir(dir: &Path, what: &str, forbidden: u32, variable: &str) -> Result<(), String> {
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create distex's {what} directory {}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| format!("cannot read distex's {what} directory {}: {e}", dir.display()))?;
    let problem = if meta.file_type().is_symlink() {
        Some("it is a symlink".to_string())
    } else if !meta.is_dir() {
        Some("it is not a directory".to_string())
    } else if meta.uid() != uid() {
        Some(format!("it belongs to another user (uid {}, you are {})", meta.uid(), uid()))
    } else if meta.mode() & forbidden != 0 {
        Some(format!(
            "its mode is {:04o}: other users can {}",
            meta.mode() & 0o7777,
            if forbidden & 0o005 == 0 { "write to it" } else { "use it" }
        ))
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(why) => Err(format!(
            "refusing to use {} as distex's {what} directory: {why}. Another user could plant files there. \
             Remove it if you made it (or make it yours, mode 0700), or set {variable} to a private directory",
            dir.display()
        )),
    }
}

/// Creates (or truncates) a file for writing, mode 0600, never following a
/// symlink at `path` (`O_NOFOLLOW`).
pub(crate) fn create_file(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_or_linked_directories_are_refused() {
        let base = std::env::temp_dir().join(format!("distex-dirs-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let fresh = base.join("a/b");
        private_dir(&fresh, "runtime", 0o077, "X").unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o700);
        let open = base.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let err = private_dir(&open, "runtime", 0o077, "X").unwrap_err();
        assert!(err.contains("mode is 0777") && err.contains("set X"), "{err}");
        // A state directory made with umask 002 is fine; one others can write is not.
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o775)).unwrap();
        private_dir(&open, "state", 0o002, "X").unwrap();
        std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        assert!(private_dir(&open, "state", 0o002, "X").unwrap_err().contains("can write to it"));
        let link = base.join("link");
        std::os::unix::fs::symlink(&fresh, &link).unwrap();
        assert!(private_dir(&link, "runtime", 0o077, "X").unwrap_err().contains("symlink"));
        // A file never follows a planted symlink.
        let victim = base.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, fresh.join("lock")).unwrap();
        assert!(create_file(&fresh.join("lock")).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        std::fs::remove_dir_all(&base).unwrap();
    }
}

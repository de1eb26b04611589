//! Where distex keeps state (caches, logs) and runtime files (SSH control sockets).

use std::path::PathBuf;

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

//! Spoken announcements ("Heavy compilation detected, offloading to Mac Pro.").
//!
//! The text-to-speech program is started and left to run on its own: distex
//! never waits for it, so speaking never delays an answer. Having no TTS is
//! a warning, never a failure.

use std::process::{Command, Stdio};

use crate::config::AnnounceSettings;

/// Platform TTS programs, in order of preference.
const CANDIDATES: &[&str] = if cfg!(target_os = "macos") { &["say"] } else { &["espeak-ng", "espeak", "spd-say"] };

/// Starts speaking `text` in the background. Returns a warning when nothing can speak.
pub(crate) fn speak(settings: &AnnounceSettings, text: &str) -> Option<String> {
    let program = match &settings.command {
        Some(cmd) => Some(cmd.clone()),
        None => CANDIDATES.iter().find(|p| on_path(p)).map(|p| p.to_string()),
    };
    let Some(program) = program else {
        return Some(format!("cannot speak the announcement: none of {} is installed", CANDIDATES.join(", ")));
    };
    // The text is passed as one argument, never through a shell.
    let spawned =
        Command::new(&program).arg(text).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
    match spawned {
        Ok(_child) => None, // not waited for; it is reparented to init when we exit
        Err(e) => Some(format!("cannot speak the announcement with {program}: {e}")),
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program))))
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

//! Running one command on a node over its SSH master.
//!
//! The command is wrapped in a small POSIX `sh` script (built by
//! [`wrapper`], all data single-quoted, never interpolated) that:
//!
//! 1. records its pid in a pid file: sshd starts every session in a new
//!    session and process group (setsid), and the wrapper `exec`s into that
//!    group's leader, so this pid is the process group of everything the
//!    command starts; [`kill_script`] kills that whole group on `--timeout`
//!    or Ctrl-C, not just the local ssh client;
//! 2. `cd`s into the project mirror and runs the command with the user's
//!    login shell (as a nested shell: `SHLVL` is raised so that bash does
//!    not source `~/.bashrc` a second time; sshd's shell already did, and
//!    its environment is inherited, exactly as with plain `ssh host cmd`);
//! 3. prints an exit marker (`\x1e\x1fdistex-exit N`) on stderr.
//!
//! The marker is how distex tells "the command exited 255" from "ssh
//! failed with 255": no marker means the transport failed (or distex
//! stopped the command). [`ExitMarker`] strips it from the stream.

use std::future::Future;
use openssh::Stdio;

use tokio::io::AsyncReadExt;

use super::output::OutputSink;
use super::ssh::Master;
use crate::tasks::Stream;

/// Why distex stopped a command itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Timeout,
    Interrupted,
}

/// How a remote run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteOutcome {
    /// The command ran and exited with this status (128+N for a signal).
    Exited(i32),
    /// distex stopped it (its process group was killed on the node).
    Stopped(Stop),
    /// The connection failed before the command reported its status.
    Transport(String),
}

const MARKER: &[u8] = b"\x1e\x1fdistex-exit ";

/// Quotes `s` for POSIX sh: `'...'`, with `'` written as `'\''`.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The remote command line for `command` run in `dir`, with its pid in
/// `pidfile` (relative paths are relative to the remote home).
pub fn wrapper(command: &str, dir: &str, pidfile: &str) -> String {
    const SCRIPT: &str = r#"cd || exit 125
case $1 in /*) pf=$1 ;; *) pf=$PWD/$1 ;; esac
[ -d "${pf%/*}" ] || mkdir -p "${pf%/*}"; echo $$ > "$pf"
cd -- "$2" || { rm -f "$pf"; printf '\036\037distex-exit 125\n' >&2; exit 125; }
SHLVL=$((${SHLVL:-0} + 1)); export SHLVL
"${SHELL:-/bin/sh}" -c "$3" </dev/null
rc=$?
rm -f "$pf"
printf '\036\037distex-exit %d\n' "$rc" >&2
exit "$rc""#;
    format!("exec sh -c {} distex {} {} {}", sh_quote(SCRIPT), sh_quote(pidfile), sh_quote(dir), sh_quote(command))
}

/// The remote command line that kills the process group recorded in
/// `pidfile`: SIGTERM, up to 2 s of grace, then SIGKILL. When the stop
/// comes right at the start, the pid file may not be written yet: it waits
/// up to 2 s for it.
pub fn kill_script(pidfile: &str) -> String {
    const SCRIPT: &str = r#"cd || exit 0
i=0
while [ ! -s "$1" ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done
p=$(cat "$1" 2>/dev/null) || exit 0
[ -n "$p" ] || exit 0
kill -TERM "-$p" 2>/dev/null
i=0
while kill -0 "-$p" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done
kill -KILL "-$p" 2>/dev/null
rm -f "$1""#;
    format!("exec sh -c {} distex {}", sh_quote(SCRIPT), sh_quote(pidfile))
}

/// Finds and removes the exit marker in a stderr stream, passing every
/// other byte through unchanged (also across chunk boundaries).
#[derive(Debug, Default)]
pub struct ExitMarker {
    held: Vec<u8>,
    pub status: Option<i32>,
}

impl ExitMarker {
    /// Feeds a chunk; returns the bytes to show the user.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let Some(start) = self.held.iter().position(|&b| b == 0x1e) else {
                out.append(&mut self.held);
                return out;
            };
            out.extend(self.held.drain(..start));
            let candidate = &self.held[..];
            let n = candidate.len().min(MARKER.len());
            if candidate[..n] != MARKER[..n] {
                out.push(self.held.remove(0)); // a stray 0x1e: not ours
                continue;
            }
            if candidate.len() < MARKER.len() {
                return out; // maybe the marker, split across chunks: wait
            }
            let Some(end) = candidate.iter().position(|&b| b == b'\n') else { return out };
            let digits = String::from_utf8_lossy(&candidate[MARKER.len()..end]).into_owned();
            match digits.trim().parse() {
                Ok(code) => {
                    self.status = Some(code);
                    self.held.drain(..=end);
                }
                Err(_) => out.push(self.held.remove(0)),
            }
        }
    }

    /// The stream ended: whatever is still held is ordinary output.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

/// Runs `command` in `dir` on the master's node, streaming output to
/// `sink`, until it exits or `stop` resolves (then its process group on the
/// node is killed).
pub async fn run(
    master: &Master,
    command: &str,
    dir: &str,
    pidfile: &str,
    sink: &mut dyn OutputSink,
    stop: impl Future<Output = Stop>,
) -> RemoteOutcome {
    let line = wrapper(command, dir, pidfile);
    let mut cmd = master.session().raw_command(&line);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn().await {
        Ok(child) => child,
        Err(e) => return RemoteOutcome::Transport(format!("cannot start ssh: {e}")),
    };
    let (Some(mut out), Some(mut err)) = (child.stdout().take(), child.stderr().take()) else {
        return RemoteOutcome::Transport("ssh gave no output pipes".into());
    };
    let mut marker = ExitMarker::default();
    let pump = async {
        let (mut out_buf, mut err_buf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
        let (mut out_open, mut err_open) = (true, true);
        while out_open || err_open {
            tokio::select! {
                n = out.read(&mut out_buf), if out_open => match n {
                    Ok(0) | Err(_) => out_open = false,
                    Ok(n) => sink.chunk(Stream::Stdout, &out_buf[..n]),
                },
                n = err.read(&mut err_buf), if err_open => match n {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(n) => {
                        let shown = marker.feed(&err_buf[..n]);
                        if !shown.is_empty() { sink.chunk(Stream::Stderr, &shown) }
                    }
                },
            }
        }
    };
    tokio::pin!(stop);
    let stopped = tokio::select! {
        () = pump => None,
        why = &mut stop => Some(why),
    };
    if let Some(why) = stopped {
        kill_remote(master, pidfile).await;
        drop(child); // closes our ends; the local ssh client exits
        return RemoteOutcome::Stopped(why);
    }
    let rest = marker.finish();
    if !rest.is_empty() {
        sink.chunk(Stream::Stderr, &rest);
    }
    sink.finish();
    let waited = child.wait().await;
    match marker.status {
        Some(code) => RemoteOutcome::Exited(code),
        None => RemoteOutcome::Transport(match waited {
            Ok(status) => format!("the connection ended before the command finished (ssh exit {status})"),
            Err(e) => format!("the connection failed before the command finished: {e}"),
        }),
    }
}

/// Kills the process group recorded in `pidfile` on the node.
pub async fn kill_remote(master: &Master, pidfile: &str) {
    let mut cmd = master.session().raw_command(kill_script(pidfile));
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), cmd.status()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn marker_is_stripped_and_parsed_across_chunks() {
        let mut m = ExitMarker::default();
        let mut shown = m.feed(b"warning: x\n\x1e\x1fdistex-ex");
        shown.extend(m.feed(b"it 255\n"));
        shown.extend(m.finish());
        assert_eq!(shown, b"warning: x\n");
        assert_eq!(m.status, Some(255));
    }

    #[test]
    fn stray_record_separators_are_output() {
        let mut m = ExitMarker::default();
        let mut shown = m.feed(b"a\x1eb");
        shown.extend(m.finish());
        assert_eq!(shown, b"a\x1eb");
        assert_eq!(m.status, None);
    }

    #[test]
    fn wrapper_runs_a_real_shell() {
        // The wrapper must be valid sh on its own: run it locally.
        let dir = std::env::temp_dir();
        let pid = format!("{}/dx-wrapper-test-{}.pid", dir.display(), std::process::id());
        let line = wrapper("echo \"it's\" $((1+2)); exit 7", &dir.display().to_string(), &pid);
        let out = std::process::Command::new("sh").arg("-c").arg(&line).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's 3\n");
        assert_eq!(out.status.code(), Some(7));
        assert!(String::from_utf8_lossy(&out.stderr).ends_with("distex-exit 7\n"));
        assert!(!std::path::Path::new(&pid).exists());
    }
}

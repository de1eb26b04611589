//! Running one command on a node over its SSH master.
//!
//! sshd runs every command string with the node user's login shell, in a
//! new session (setsid), so that shell is the leader of a process group
//! holding everything the command starts. The string distex sends (built by
//! [`wrapper`], every piece of data quoted by [`sh_quote`], never interpolated) is a
//! short POSIX script, interpreted by that login shell itself (no extra
//! shell is started: one shell startup per command, as with plain `ssh
//! host cmd`). It:
//!
//! 1. prints a pid marker (`\x1e\x1fdistex-pid N`) on stderr: the login
//!    shell's pid, which is the process group to kill on `--timeout` or
//!    Ctrl-C ([`kill_script`]), not just the local ssh client;
//! 2. `cd`s into the project mirror and `eval`s the command in a subshell,
//!    in the login shell's own language (as `ssh host cmd` would);
//! 3. prints an exit marker (`\x1e\x1fdistex-exit N`) on stderr.
//!
//! The exit marker is how distex tells "the command exited 255" from "ssh
//! failed with 255": no marker means the transport failed (or distex
//! stopped the command). [`Markers`] strips both markers from the stream.
//! The login shell must be POSIX-like (sh, bash, zsh, ksh, dash).

use std::future::Future;
use std::time::Duration;

use openssh::Stdio;
use tokio::io::AsyncReadExt;

use super::output::{OutputSink, Stream};
use super::ssh::Master;

/// Why distex stopped a command itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Timeout,
    Interrupted,
}

/// How a remote run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RemoteOutcome {
    /// The command ran and exited with this status (128+N for a signal).
    Exited(i32),
    /// distex stopped it (its process group was killed on the node).
    Stopped(Stop),
    /// The connection failed before the command reported its status.
    Transport(String),
}

const PREFIX: &[u8] = b"\x1e\x1fdistex-";

/// Quotes `word` for a POSIX shell so that it stays exactly one word with
/// nothing expanded: wrap it in single quotes (inside which nothing is
/// special) and write each single quote as `'\''` (close, escaped quote,
/// reopen). Plain words such as node names are left bare for readability.
/// This is distex's one shell-quoting function: everything it puts into a
/// shell command line (here, in rsync's arguments, in the hook's rewrite,
/// in remote workers' arguments) goes through it.
pub(crate) fn sh_quote(word: &str) -> String {
    let plain = !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.,:/@%+=".contains(&b));
    if plain {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The remote command line that runs `command` in `dir` (relative paths
/// are relative to the remote home).
pub(crate) fn wrapper(command: &str, dir: &str) -> String {
    format!("cd || exit 125\n{}", marked_script(command, dir))
}

/// The part of [`wrapper`] that runs anywhere (a Slurm step uses it as
/// is): announce the pid, `cd` into `dir`, run, report the exit status.
pub(crate) fn marked_script(command: &str, dir: &str) -> String {
    format!(
        "printf '\\036\\037distex-pid %d\\n' \"$$\" >&2\n\
         cd -- {dir} || {{ printf '\\036\\037distex-exit 125\\n' >&2; exit 125; }}\n\
         (eval {command}) </dev/null\n\
         rc=$?\n\
         printf '\\036\\037distex-exit %d\\n' \"$rc\" >&2\n\
         exit \"$rc\"",
        dir = sh_quote(dir),
        command = sh_quote(command)
    )
}

/// The remote command line that kills process group `pgid`: SIGTERM, up
/// to 2 s of grace, then SIGKILL.
pub(crate) fn kill_script(pgid: u32) -> String {
    format!(
        "kill -TERM -{pgid} 2>/dev/null; i=0; \
         while kill -0 -{pgid} 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; \
         kill -KILL -{pgid} 2>/dev/null; exit 0"
    )
}

/// Finds and removes distex's markers in a stderr stream, passing every
/// other byte through unchanged (also across chunk boundaries).
#[derive(Debug, Default)]
pub(crate) struct Markers {
    held: Vec<u8>,
    /// The remote process group, once announced.
    pub(crate) pid: Option<u32>,
    /// The command's exit status, once reported.
    pub(crate) status: Option<i32>,
}

impl Markers {
    /// Feeds a chunk; returns the bytes to show the user.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let Some(start) = self.held.iter().position(|&b| b == 0x1e) else {
                out.append(&mut self.held);
                return out;
            };
            out.extend(self.held.drain(..start));
            let n = self.held.len().min(PREFIX.len());
            if self.held[..n] != PREFIX[..n] {
                out.push(self.held.remove(0)); // a stray 0x1e: not ours
                continue;
            }
            let Some(end) = self.held.iter().position(|&b| b == b'\n') else {
                return out; // maybe a marker split across chunks: wait
            };
            let text = String::from_utf8_lossy(&self.held[PREFIX.len().min(end)..end]).into_owned();
            let parsed = match text.split_once(' ') {
                Some(("exit", n)) => n.trim().parse().ok().map(|n| self.status = Some(n)),
                Some(("pid", n)) => n.trim().parse().ok().map(|n| self.pid = Some(n)),
                _ => None,
            };
            match parsed {
                Some(()) => {
                    self.held.drain(..=end);
                }
                None => out.push(self.held.remove(0)),
            }
        }
    }

    /// The stream ended: whatever is still held is ordinary output.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

/// Runs `command` in `dir` on the master's node, streaming output to
/// `sink`, until it exits or `stop` resolves (then its process group on the
/// node is killed).
pub(crate) async fn run(
    master: &Master,
    command: &str,
    dir: &str,
    sink: &mut dyn OutputSink,
    stop: impl Future<Output = Stop>,
) -> RemoteOutcome {
    let mut cmd = master.session().raw_command(wrapper(command, dir));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn().await {
        Ok(child) => child,
        Err(e) => return RemoteOutcome::Transport(format!("cannot start ssh: {e}")),
    };
    let (Some(mut out), Some(mut err)) = (child.stdout().take(), child.stderr().take()) else {
        return RemoteOutcome::Transport("ssh gave no output pipes".into());
    };
    let mut markers = Markers::default();
    let (mut out_buf, mut err_buf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut out_open, mut err_open) = (true, true);
    tokio::pin!(stop);
    let mut stopped: Option<Stop> = None;
    // After a stop, keep reading (up to 2 s) until the pid marker arrives.
    let grace = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(grace);
    while out_open || err_open {
        if let (Some(_), Some(_)) = (stopped, markers.pid) {
            break;
        }
        tokio::select! {
            n = out.read(&mut out_buf), if out_open => match n {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => sink.chunk(Stream::Stdout, &out_buf[..n]),
            },
            n = err.read(&mut err_buf), if err_open => match n {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => {
                    let shown = markers.feed(&err_buf[..n]);
                    if !shown.is_empty() { sink.chunk(Stream::Stderr, &shown) }
                }
            },
            why = &mut stop, if stopped.is_none() => {
                stopped = Some(why);
                grace.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(2));
            },
            () = &mut grace, if stopped.is_some() => break,
        }
    }
    if let Some(why) = stopped {
        if let Some(pgid) = markers.pid {
            kill_remote(master, pgid).await;
        }
        drop(child); // closes our ends; the local ssh client exits
        return RemoteOutcome::Stopped(why);
    }
    let rest = markers.finish();
    if !rest.is_empty() {
        sink.chunk(Stream::Stderr, &rest);
    }
    sink.finish();
    let waited = child.wait().await;
    match markers.status {
        Some(code) => RemoteOutcome::Exited(code),
        None => RemoteOutcome::Transport(match waited {
            Ok(status) => format!("the connection ended before the command finished (ssh exit {status})"),
            Err(e) => format!("the connection failed before the command finished: {e}"),
        }),
    }
}

/// Kills process group `pgid` on the node.
pub(crate) async fn kill_remote(master: &Master, pgid: u32) {
    let mut cmd = master.session().raw_command(kill_script(pgid));
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let _ = tokio::time::timeout(Duration::from_secs(10), cmd.status()).await;
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
    fn quoting_survives_a_real_shell() {
        for word in ["plain", "two words", "it's", "'", "$HOME `id` \\ \"q\" !x", "", "a\nb"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", sh_quote(word)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), word, "quoted as {}", sh_quote(word));
        }
    }

    #[test]
    fn marker_is_stripped_and_parsed_across_chunks() {
        let mut m = Markers::default();
        let mut shown = m.feed(b"\x1e\x1fdistex-pid 42\nwarning: x\n\x1e\x1fdistex-ex");
        shown.extend(m.feed(b"it 255\n"));
        shown.extend(m.finish());
        assert_eq!(shown, b"warning: x\n");
        assert_eq!((m.pid, m.status), (Some(42), Some(255)));
    }

    #[test]
    fn stray_record_separators_are_output() {
        let mut m = Markers::default();
        let mut shown = m.feed(b"a\x1eb");
        shown.extend(m.finish());
        assert_eq!(shown, b"a\x1eb");
        assert_eq!(m.status, None);
    }

    #[test]
    fn wrapper_runs_in_a_real_shell() {
        // The wrapper must be valid for sh and bash on its own: run it locally.
        for shell in ["sh", "bash"] {
            let dir = std::env::temp_dir().display().to_string();
            let line = wrapper("echo \"it's\" $((1+2)); pwd; exit 7", &dir);
            let out = std::process::Command::new(shell).arg("-c").arg(&line).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), format!("it's 3\n{dir}\n"), "{shell}");
            assert_eq!(out.status.code(), Some(7));
            let mut m = Markers::default();
            let shown = m.feed(&out.stderr);
            assert!(shown.is_empty(), "{shell}: {}", String::from_utf8_lossy(&shown));
            assert_eq!(m.status, Some(7));
            assert!(m.pid.is_some());
        }
    }
}

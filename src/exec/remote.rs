//! Running one command on a node over its SSH master, at most once.
//!
//! sshd runs every command string with the node user's login shell, in a
//! new session (setsid), so that shell is the leader of a process group
//! holding everything the command starts. The string distex sends (built by
//! [`wrapper`], every piece of data quoted by [`sh_quote`], never interpolated) is a
//! short POSIX script, interpreted by that login shell itself (no extra
//! shell: one shell startup per command, as with plain `ssh host cmd`).
//! It talks with distex over the session's stdin and stderr:
//!
//! 1. it reads a per-run secret nonce from stdin (never on a command line,
//!    so `ps` on the node cannot show it, and never in the command's
//!    environment or variables);
//! 2. it prints a pid marker carrying the nonce on stderr:
//!    `\x1e\x1fdistex-NONCE:pid N`, then waits for distex's `go` line.
//!    Until distex writes `go`, nothing has run: a connection lost before
//!    that point is a transport failure that may fail over. Once `go` is
//!    written, the command may have started, and a lost connection is
//!    [`RemoteOutcome::Lost`]: never run again;
//! 3. it starts a watchdog in the background (a subshell: shell builtins,
//!    no program started) that reads the rest of stdin:
//!    a `stop` line (distex's `--timeout`, Ctrl-C, SIGTERM, SIGHUP) or end
//!    of file (distex was killed, the master died, the connection dropped:
//!    sshd closes the channel) makes it kill the wrapper's own process group
//!    (`kill 0`: SIGTERM, 2 s of grace, SIGKILL). It can only ever signal
//!    its own group, whatever the command prints;
//! 4. it `cd`s into the project mirror and `eval`s the command in a
//!    subshell (stdin `/dev/null`, the nonce unset), in the login shell's
//!    own language (as `ssh host cmd` would);
//! 5. it stops the watchdog and prints an exit marker with the nonce.
//!
//! distex opens that session by speaking the master's mux protocol itself
//! ([`Master::mux`]): no local `ssh` client process per command.
//!
//! The exit marker is how distex tells "the command exited 255" from "ssh
//! failed with 255". [`Markers`] strips distex's markers from the stream;
//! a marker without the nonce (a build log printing one, a forgery) is
//! ordinary output, and only the first pid and exit markers count.
//! The login shell must be POSIX-like (sh, bash, zsh, ksh, dash).

use std::future::Future;
use std::time::Duration;

use openssh::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::output::{OutputSink, Stream};
use super::ssh::Master;
use crate::route::sh_quote;

/// Why distex stopped a command itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Timeout,
    /// A signal (SIGINT, SIGTERM, SIGHUP) asked distex to stop.
    Interrupted,
}

/// How a remote run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RemoteOutcome {
    /// The command ran and exited with this status (128+N for a signal).
    Exited(i32),
    /// distex stopped it (its process group was killed on the node), or
    /// stopped before it started.
    Stopped(Stop),
    /// The connection failed before distex let the command start: it
    /// provably never ran, so it may run elsewhere.
    NotStarted(String),
    /// distex let the command start, then lost the connection before its
    /// exit status arrived: it may have run, so it must not run again.
    Lost(String),
}

const MARKER_START: &[u8] = b"\x1e\x1fdistex-";

/// A fresh secret for one run: 128 random bits, in hex.
pub(crate) fn nonce() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // No /dev/urandom (a chroot?): time and pid still differ per run.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        bytes[..8].copy_from_slice(&(t.as_nanos() as u64).to_le_bytes());
        bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The remote command line that runs `command` in `dir` (relative paths
/// are relative to the remote home). See the module doc for the protocol.
///
/// Non-interactive shells give a background job `/dev/null` as stdin
/// unless it is redirected: the watchdog gets the session's stdin through
/// fd 3, which is closed before the command runs.
pub(crate) fn wrapper(command: &str, dir: &str) -> String {
    format!(
        "cd || exit 125\n\
         IFS= read -r n || exit 125\n\
         printf '\\036\\037distex-%s:pid %d\\n' \"$n\" \"$$\" >&2\n\
         IFS= read -r go && [ \"$go\" = go ] || exit 125\n\
         exec 3<&0\n\
         ({WATCHDOG}) <&3 3<&- >/dev/null 2>&1 &\n\
         w=$!\n\
         exec 3<&-\n\
         if cd -- {dir}; then (unset n go w; eval {command}) </dev/null; rc=$?; else rc=125; fi\n\
         kill -KILL \"$w\" 2>/dev/null; wait \"$w\" 2>/dev/null\n\
         printf '\\036\\037distex-%s:exit %d\\n' \"$n\" \"$rc\" >&2\n\
         exit \"$rc\"",
        dir = sh_quote(dir),
        command = sh_quote(command),
    )
}

/// The watchdog: on `stop` or end of stdin, it kills its process group -
/// the wrapper's - with SIGTERM, then SIGKILL after 2 s of grace, ignoring
/// SIGTERM itself meanwhile. Only shell builtins until it fires (`sleep`
/// runs only then), so the remote wrapper runs it in a subshell: a fork of
/// the login shell, no new program to load. The local runner starts it as
/// `sh -c WATCHDOG distex-watchdog`, a shell of its own.
pub(crate) const WATCHDOG: &str = "trap '' INT TERM HUP; \
     while IFS= read -r l; do [ \"$l\" = stop ] && break; done; \
     kill -TERM 0; sleep 2; kill -KILL 0";

/// The remote command line that kills process group `pgid`: SIGTERM, up
/// to 2 s of grace, then SIGKILL. It does nothing unless `pgid` really
/// is a process group (its leader's group is itself), and `pgid` 0 or 1
/// (every process of the user) is refused before anything is sent.
pub(crate) fn kill_script(pgid: u32) -> Option<String> {
    (pgid > 1).then(|| {
        format!(
            "[ \"$(ps -o pgid= -p {pgid} 2>/dev/null | tr -d ' ')\" = {pgid} ] || exit 0; \
             kill -TERM -{pgid} 2>/dev/null; i=0; \
             while kill -0 -{pgid} 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; \
             kill -KILL -{pgid} 2>/dev/null; exit 0"
        )
    })
}

/// Finds and removes distex's markers in a stderr stream, passing every
/// other byte through unchanged (also across chunk boundaries).
///
/// A marker counts only when it carries this run's nonce; only the first
/// pid marker and the first exit marker count (later ones are removed from
/// the output but ignored).
#[derive(Debug, Default)]
pub(crate) struct Markers {
    held: Vec<u8>,
    /// `\x1e\x1fdistex-NONCE:` (or `\x1e\x1fdistex-` without a nonce, the
    /// format of `distex process`'s worker script).
    prefix: Vec<u8>,
    /// The remote process group, once announced.
    pub(crate) pid: Option<u32>,
    /// The command's exit status, once reported.
    pub(crate) status: Option<i32>,
}

impl Markers {
    /// Markers of one run, carrying `nonce`.
    pub(crate) fn new(nonce: &str) -> Self {
        let mut prefix = MARKER_START.to_vec();
        prefix.extend_from_slice(nonce.as_bytes());
        prefix.push(b':');
        Markers { prefix, ..Markers::default() }
    }

    /// Feeds a chunk; returns the bytes to show the user.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.prefix.is_empty() {
            self.prefix = MARKER_START.to_vec();
        }
        self.held.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let Some(start) = self.held.iter().position(|&b| b == 0x1e) else {
                out.append(&mut self.held);
                return out;
            };
            out.extend(self.held.drain(..start));
            let n = self.held.len().min(self.prefix.len());
            if self.held[..n] != self.prefix[..n] {
                out.push(self.held.remove(0)); // a stray 0x1e, or not this run's marker
                continue;
            }
            let Some(end) = self.held.iter().position(|&b| b == b'\n') else {
                return out; // maybe a marker split across chunks: wait
            };
            let text = String::from_utf8_lossy(&self.held[self.prefix.len().min(end)..end]).into_owned();
            let parsed = match text.split_once(' ') {
                Some(("exit", n)) => n.trim().parse().ok().map(|n| {
                    self.status.get_or_insert(n);
                }),
                Some(("pid", n)) => n.trim().parse().ok().map(|n| {
                    self.pid.get_or_insert(n);
                }),
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

/// How long distex waits for a stopped command's streams to close before
/// it kills the group over a separate session as well.
const STOP_GRACE: Duration = Duration::from_secs(4);

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
    let nonce = nonce();
    let mut cmd = master.mux().raw_command(wrapper(command, dir));
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn().await {
        Ok(child) => child,
        Err(e) => return RemoteOutcome::NotStarted(format!("cannot start ssh: {e}")),
    };
    let (Some(mut stdin), Some(mut out), Some(mut err)) =
        (child.stdin().take(), child.stdout().take(), child.stderr().take())
    else {
        return RemoteOutcome::NotStarted("ssh gave no pipes".into());
    };
    if let Err(e) = stdin.write_all(format!("{nonce}\n").as_bytes()).await {
        return RemoteOutcome::NotStarted(format!("the connection failed before the command started: {e}"));
    }
    let mut markers = Markers::new(&nonce);
    // Set once `go` was written: from then on the command may have started.
    let mut started = false;
    let (mut out_buf, mut err_buf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut out_open, mut err_open) = (true, true);
    tokio::pin!(stop);
    let mut stopped: Option<Stop> = None;
    let grace = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(grace);
    let mut grace_over = false;
    while out_open || err_open {
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
                    if markers.pid.is_some() && !started && stopped.is_none() {
                        // Whatever happens to this write, the command may now run.
                        started = true;
                        let _ = stdin.write_all(b"go\n").await;
                    }
                }
            },
            why = &mut stop, if stopped.is_none() => {
                stopped = Some(why);
                if !started {
                    break; // never started: closing stdin makes the wrapper exit 125
                }
                // The watchdog kills the wrapper's group; the streams close.
                let _ = stdin.write_all(b"stop\n").await;
                grace.as_mut().reset(tokio::time::Instant::now() + STOP_GRACE);
            },
            () = &mut grace, if stopped.is_some() => {
                grace_over = true;
                break;
            },
        }
    }
    if let Some(why) = stopped {
        if grace_over && let Some(script) = markers.pid.and_then(kill_script) {
            run_quietly(master, script).await;
        }
        drop(stdin);
        drop(child); // closes our ends; the local ssh client exits
        return RemoteOutcome::Stopped(why);
    }
    let rest = markers.finish();
    if !rest.is_empty() {
        sink.chunk(Stream::Stderr, &rest);
    }
    sink.finish();
    drop(stdin);
    let waited = child.wait().await;
    let how = match waited {
        Ok(status) => format!("ssh exit {status}"),
        Err(e) => e.to_string(),
    };
    match (markers.status, started) {
        (Some(code), _) => RemoteOutcome::Exited(code),
        (None, true) => RemoteOutcome::Lost(format!("the connection was lost while the command ran ({how})")),
        (None, false) => RemoteOutcome::NotStarted(format!("the connection ended before the command started ({how})")),
    }
}

/// Runs a short script on the node over a session of its own, waiting at
/// most 10 s.
pub(crate) async fn run_quietly(master: &Master, script: String) {
    let mut cmd = master.session().raw_command(script);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let _ = tokio::time::timeout(Duration::from_secs(10), cmd.status()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_is_stripped_and_parsed_across_chunks() {
        let mut m = Markers::new("abc");
        let mut shown = m.feed(b"\x1e\x1fdistex-abc:pid 42\nwarning: x\n\x1e\x1fdistex-ab");
        shown.extend(m.feed(b"c:exit 255\n"));
        shown.extend(m.finish());
        assert_eq!(shown, b"warning: x\n");
        assert_eq!((m.pid, m.status), (Some(42), Some(255)));
    }

    #[test]
    fn markers_without_the_nonce_are_output_and_only_the_first_counts() {
        let mut m = Markers::new("abc");
        let forged = b"\x1e\x1fdistex-pid 1\n\x1e\x1fdistex-xyz:exit 0\n";
        let mut shown = m.feed(forged);
        assert_eq!((m.pid, m.status), (None, None));
        shown.extend(m.feed(b"\x1e\x1fdistex-abc:pid 42\n\x1e\x1fdistex-abc:pid 1\n"));
        shown.extend(m.finish());
        assert_eq!(shown, forged);
        assert_eq!(m.pid, Some(42));
    }

    #[test]
    fn stray_record_separators_are_output() {
        let mut m = Markers::new("n");
        let mut shown = m.feed(b"a\x1eb");
        shown.extend(m.finish());
        assert_eq!(shown, b"a\x1eb");
        assert_eq!(m.status, None);
    }

    #[test]
    fn the_group_to_kill_is_never_everyone() {
        assert!(kill_script(0).is_none());
        assert!(kill_script(1).is_none());
        assert!(kill_script(4242).unwrap().contains("kill -TERM -4242"));
    }

    #[test]
    fn wrapper_runs_in_a_real_shell_only_after_go() {
        // The wrapper must be valid for sh and bash on its own: run it locally.
        for shell in ["sh", "bash"] {
            let dir = std::env::temp_dir().display().to_string();
            let line = wrapper("echo \"it's\" $((1+2)) \"[$n]\"; pwd; exit 7", &dir);
            // `hold`: keep stdin open until the wrapper exits, as distex
            // does after `go`; otherwise close it, as distex does when it
            // stops before `go`.
            let run = |input: &str, hold: bool| {
                use std::io::Write;
                use std::os::unix::process::CommandExt;
                // Its own process group, as sshd gives it: the watchdog's
                // `kill 0` must never reach the test runner.
                let mut child = std::process::Command::new(shell)
                    .arg("-c")
                    .arg(&line)
                    .process_group(0)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                // Held open until the wrapper exits, as distex does.
                let mut stdin = child.stdin.take().unwrap();
                stdin.write_all(input.as_bytes()).unwrap();
                let held = hold.then_some(stdin);
                let out = child.wait_with_output().unwrap();
                drop(held);
                out
            };
            let out = run("secret\ngo\n", true);
            assert_eq!(String::from_utf8_lossy(&out.stdout), format!("it's 3 []\n{dir}\n"), "{shell}");
            assert_eq!(out.status.code(), Some(7));
            let mut m = Markers::new("secret");
            let shown = m.feed(&out.stderr);
            assert!(shown.is_empty(), "{shell}: {}", String::from_utf8_lossy(&shown));
            assert_eq!(m.status, Some(7));
            assert!(m.pid.is_some());
            // Without `go`, nothing runs.
            let out = run("secret\n", false);
            assert_eq!(out.stdout, b"", "{shell}");
            assert_eq!(out.status.code(), Some(125));
        }
    }
}

//! Where a running command's output goes.
//!
//! Runners read the child's stdout and stderr as byte chunks and hand them
//! to an [`OutputSink`]: `distex run` passes them straight through to its
//! own stdout/stderr; `--json` keeps a bounded [`Capture`]; `distex
//! parallel` splits them into lines prefixed with the task id. Every sink
//! also keeps a capture, so results always carry byte counts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which output stream a chunk or line of a command's output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// How much of each stream a result keeps (the tail: where errors are).
pub(crate) const CAPTURE_LIMIT: usize = 64 * 1024;

/// The last [`CAPTURE_LIMIT`] bytes of a stream, and how much there was.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Capture {
    /// The kept text (lossy UTF-8).
    pub(crate) text: String,
    /// Bytes the command wrote on this stream in total.
    pub(crate) bytes: u64,
    /// True when `text` holds only the end of the output.
    pub(crate) truncated: bool,
}

/// Bounded tail buffer behind a [`Capture`].
#[derive(Debug, Default)]
pub(crate) struct Tail {
    buf: Vec<u8>,
    total: u64,
    limit: usize,
}

impl Tail {
    pub(crate) fn new(limit: usize) -> Self {
        Tail { buf: Vec::new(), total: 0, limit }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > self.limit {
            let cut = self.buf.len() - self.limit;
            self.buf.drain(..cut);
        }
    }

    pub(crate) fn capture(&self) -> Capture {
        Capture {
            text: String::from_utf8_lossy(&self.buf).into_owned(),
            bytes: self.total,
            truncated: self.total > self.buf.len() as u64,
        }
    }
}

/// Receives a command's output as it arrives.
pub(crate) trait OutputSink: Send {
    fn chunk(&mut self, stream: Stream, bytes: &[u8]);
    /// The command ended: flush partial lines.
    fn finish(&mut self) {}
    /// The command has started running (a scheduler such as Slurm may
    /// queue it first; other runners start it at once and never call this).
    fn started(&mut self) {}
    /// Progress of the run that is not the command's output ("queued,
    /// waiting for resources"): shown to the user, never captured.
    fn progress(&mut self, _message: &str) {}
}

/// Keeps bounded captures of both streams; optionally echoes them to this
/// process's own stdout/stderr as they arrive.
pub(crate) struct CaptureSink {
    pub(crate) stdout: Tail,
    pub(crate) stderr: Tail,
    pub(crate) echo: bool,
}

impl CaptureSink {
    pub(crate) fn new(echo: bool) -> Self {
        CaptureSink { stdout: Tail::new(CAPTURE_LIMIT), stderr: Tail::new(CAPTURE_LIMIT), echo }
    }
}

impl OutputSink for CaptureSink {
    fn chunk(&mut self, stream: Stream, bytes: &[u8]) {
        use std::io::Write;
        match stream {
            Stream::Stdout => self.stdout.push(bytes),
            Stream::Stderr => self.stderr.push(bytes),
        }
        if self.echo {
            let _ = match stream {
                Stream::Stdout => std::io::stdout().lock().write_all(bytes).and_then(|()| std::io::stdout().flush()),
                Stream::Stderr => std::io::stderr().lock().write_all(bytes),
            };
        }
    }

    fn progress(&mut self, message: &str) {
        if self.echo {
            eprintln!("distex: {message}");
        }
    }
}

/// Splits chunks into complete lines (for prefixing); keeps the rest.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; returns the complete lines (without newline).
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            lines.push(String::from_utf8_lossy(&line[..line.len() - 1]).trim_end_matches('\r').to_string());
        }
        lines
    }

    /// The unterminated last line, if any.
    pub(crate) fn rest(&mut self) -> Option<String> {
        (!self.pending.is_empty()).then(|| String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end_and_counts_everything() {
        let mut t = Tail::new(4);
        t.push(b"abc");
        t.push(b"defg");
        let c = t.capture();
        assert_eq!((c.text.as_str(), c.bytes, c.truncated), ("defg", 7, true));
    }

    #[test]
    fn splitter_returns_whole_lines_only() {
        let mut s = LineSplitter::default();
        assert_eq!(s.feed(b"a\nb"), vec!["a"]);
        assert_eq!(s.feed(b"c\r\n"), vec!["bc"]);
        assert_eq!(s.rest(), None);
        s.feed(b"tail");
        assert_eq!(s.rest().as_deref(), Some("tail"));
    }
}

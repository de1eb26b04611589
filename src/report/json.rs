//! JSON output: one object per call, compact, newline-terminated.

use std::io::Write;

use serde::Serialize;

/// Writes `value` as one line of JSON to stdout.
pub(crate) fn print<T: Serialize>(value: &T) -> std::io::Result<()> {
    // One write: stdout is line-buffered with a small buffer, and a large
    // report (thousands of regions) would otherwise go out in many small
    // writes, each searched for a line break.
    let mut bytes = serde_json::to_vec(value)?;
    bytes.push(b'\n');
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)?;
    out.flush()
}

/// Writes `value` as indented JSON to stdout (schemas, config).
pub(crate) fn print_pretty<T: Serialize>(value: &T) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()
}

//! JSON output: one object per call, compact, newline-terminated.

use std::io::Write;

use serde::Serialize;

/// Writes `value` as one line of JSON to stdout.
pub fn print<T: Serialize>(value: &T) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Writes `value` as indented JSON to stdout (schemas, config).
pub fn print_pretty<T: Serialize>(value: &T) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()
}

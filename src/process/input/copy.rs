//! Plain copies of stdin and compressed inputs, so that the byte-range path
//! can read them in parallel.
//!
//! The byte-range path splits plain files into ranges that several workers
//! read at once; a gzip stream or a pipe (stdin, or a named one such as
//! `<(zcat a.gz)`) can only be read front to back.
//! Reading one through the region path means parsing every record on one
//! thread and starting a worker per region (seconds with a thousand
//! regions). Decompressing it once into the run directory instead, without
//! parsing, costs a sequential copy and then scales like any plain file.
//! The copy is named as its original in rejects and errors, and goes with
//! the run directory.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::process::input::{Format, Source};

/// `sources` with stdin, pipes and every compressed file replaced by a
/// plain copy in `dir` ([`Source::Copy`]); plain files are left as they are.
pub(crate) fn plain_copies(sources: Vec<Source>, format: Option<Format>, dir: &Path) -> Result<Vec<Source>> {
    let mut out = Vec::with_capacity(sources.len());
    for (i, source) in sources.into_iter().enumerate() {
        let needs_copy = match &source {
            Source::Stdin => true,
            // Not a regular file (a pipe): read once, so never peeked at.
            Source::File(path) => needs_copy(path),
            Source::Embedded(..) | Source::Copy { .. } => false,
        };
        if !needs_copy || format.or_else(|| source.format_hint()) == Some(Format::Jsonl) {
            out.push(source);
            continue;
        }
        let name = source.display();
        let path = dir.join(format!("input-{}", i + 1));
        copy_plain(&source, &path).map_err(|e| match e {
            CopyError::Read(e) => Error::Input(format!("cannot read {name}: {e}")),
            CopyError::Write(e) => Error::Input(format!(
                "cannot copy {name} to {}: {e} (stdin and gzip input are copied, decompressed, to be split \
                 by byte ranges; --split regions reads them without a copy)",
                path.display()
            )),
        })?;
        out.push(Source::Copy { path, name });
    }
    Ok(out)
}

/// Whether a file named as input must be copied to be read by byte
/// ranges: not a regular file (a pipe: read once, so never peeked at), or
/// gzip.
pub(crate) fn needs_copy(path: &Path) -> bool {
    !path.metadata().is_ok_and(|m| m.is_file()) || is_gzip(path)
}

/// Whether `path` starts with gzip's magic bytes (an unreadable file is
/// left to the reader, which says why).
fn is_gzip(path: &Path) -> bool {
    let mut magic = [0u8; 2];
    File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == [0x1f, 0x8b]
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `source`, decompressed, to a new file at `path`.
fn copy_plain(source: &Source, path: &Path) -> Result<(), CopyError> {
    let mut reader = source.open().map_err(CopyError::Read)?;
    let mut writer = BufWriter::with_capacity(1 << 20, File::create(path).map_err(CopyError::Write)?);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        writer.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
    writer.flush().map_err(CopyError::Write)
}

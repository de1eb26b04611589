//! Reading records: CSV (RFC 4180), TSV and JSON Lines, plain or gzip,
//! from files or stdin (`-`).
//!
//! A reader turns bytes into [`Item`]s, one per record: either a [`Row`]
//! (the record's fields, its raw bytes so it can be forwarded unchanged to a
//! region, and the line it starts on) or a [`Bad`] record with the reason it
//! cannot be read. Rows are handed to a callback and borrow the reader's
//! buffers, so reading allocates nothing per row for CSV and TSV.

pub(crate) mod copy;
mod delimited;
mod jsonl;
pub(crate) mod schema;

use delimited::read_delimited;
use jsonl::read_jsonl;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The format of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    Csv,
    Tsv,
    Jsonl,
}

impl Format {
    /// The field delimiter of a delimited format, and whether `"` quotes
    /// fields (CSV) or is an ordinary byte (TSV).
    pub(crate) fn delimiter(self) -> (u8, bool) {
        if self == Format::Tsv { (b'\t', false) } else { (b',', true) }
    }

    /// Guesses the format from a file name (`.csv`, `.tsv`, `.jsonl`, with or
    /// without `.gz`); `None` when the name says nothing.
    pub(crate) fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        let ext = name.rsplit_once('.')?.1;
        match ext {
            "csv" => Some(Format::Csv),
            "tsv" | "tab" => Some(Format::Tsv),
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Jsonl => "jsonl",
        }
    }

    /// The file extension used for region spool files.
    pub(crate) fn extension(self) -> &'static str {
        self.name()
    }
}

/// Where records come from: a file or stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Stdin,
    File(PathBuf),
    /// Bytes embedded in the binary (the `--demo` dataset).
    Embedded(&'static str, &'static [u8]),
    /// A plain copy, in the run directory, of stdin or a compressed file
    /// (see `copy`): read from `path`, named `name` in rejects and
    /// errors, as the original was.
    Copy {
        path: PathBuf,
        name: String,
    },
}

impl Source {
    pub(crate) fn from_arg(arg: &Path) -> Source {
        if arg.as_os_str() == "-" { Source::Stdin } else { Source::File(arg.to_path_buf()) }
    }

    /// How the source is named in rejects and errors.
    pub(crate) fn display(&self) -> String {
        match self {
            Source::Stdin => "-".to_string(),
            Source::File(p) => p.display().to_string(),
            Source::Embedded(name, _) => name.to_string(),
            Source::Copy { name, .. } => name.clone(),
        }
    }

    /// The format its name suggests (`.csv`, `.tsv.gz`, ...), if any.
    pub(crate) fn format_hint(&self) -> Option<Format> {
        match self {
            Source::File(path) => Format::from_path(path),
            Source::Copy { name, .. } => Format::from_path(Path::new(name)),
            Source::Stdin | Source::Embedded(..) => None,
        }
    }

    /// Opens the source, transparently decompressing gzip (detected by its
    /// magic bytes, not its name).
    pub(crate) fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        let raw: Box<dyn Read + Send> = match self {
            Source::Stdin => Box::new(io::stdin()),
            Source::File(p) | Source::Copy { path: p, .. } => Box::new(File::open(p)?),
            Source::Embedded(_, bytes) => Box::new(*bytes),
        };
        let mut buffered = BufReader::with_capacity(1 << 16, raw);
        let head = io::BufRead::fill_buf(&mut buffered)?;
        if head.starts_with(&[0x1f, 0x8b]) {
            Ok(Box::new(flate2::read::MultiGzDecoder::new(buffered)))
        } else {
            Ok(Box::new(buffered))
        }
    }
}

/// One readable record, borrowing the reader's buffers.
pub(crate) struct Row<'a> {
    /// 1-based line of the file where the record starts (the header is line 1).
    pub(crate) line: u64,
    /// The record's bytes as they appeared in the input, newline included.
    pub(crate) raw: &'a [u8],
    /// Field bytes; `ends[i]` is where field `i` ends, and the next field
    /// starts `sep` bytes later (0 when csv-core unescaped the fields into a
    /// buffer, 1 when `out` is the line itself with its delimiters).
    pub(crate) out: &'a [u8],
    pub(crate) ends: &'a [usize],
    pub(crate) sep: usize,
    /// True when the record holds no quote character at all.
    // Read by nothing since the byte path has its own reader; removing it
    // would change the region path's inner loop, so that waits for a
    // measured change of its own.
    #[allow(dead_code)]
    pub(crate) plain: bool,
}

impl<'a> Row<'a> {
    /// Field `i`, or `None` when the record has fewer fields.
    pub(crate) fn field(&self, i: usize) -> Option<&'a [u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] + self.sep };
        Some(&self.out[start..end])
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }
}

/// A record that cannot be read, with the reason.
pub(crate) struct Bad {
    pub(crate) line: u64,
    pub(crate) reason: String,
}

pub(crate) enum Item<'a> {
    Row(Row<'a>),
    Bad(Bad),
}

/// What the callback tells the reader: keep going or stop now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// The header of a source: its column names.
pub(crate) type Header = Vec<String>;

/// Called with the header (and its raw bytes); an error stops the read.
pub(crate) type OnHeader<'f> = dyn FnMut(&Header, &[u8]) -> Result<(), String> + 'f;

/// Called with every record; returns whether to keep reading.
pub(crate) type OnItem<'f> = dyn for<'r> FnMut(Item<'r>) -> Flow + 'f;

/// Reads every record of `source`, calling `on_header` once with the header
/// and raw header bytes, then `on_item` for each record.
///
/// For JSON Lines the header is the list of keys seen so far; it can grow,
/// and `on_header` is called again with the longer header when it does.
pub(crate) fn read(
    source: &Source,
    format: Format,
    on_header: &mut OnHeader<'_>,
    on_item: &mut OnItem<'_>,
) -> Result<ReadSummary, ReadError> {
    let input = source.open().map_err(ReadError::Io)?;
    read_from(input, format, on_header, on_item)
}

/// [`read`] from any reader (already decompressed).
pub(crate) fn read_from(
    input: impl Read,
    format: Format,
    on_header: &mut OnHeader<'_>,
    on_item: &mut OnItem<'_>,
) -> Result<ReadSummary, ReadError> {
    match format {
        Format::Csv => read_delimited(input, b',', true, None, 1 << 20, on_header, on_item),
        Format::Tsv => read_delimited(input, b'\t', false, None, 1 << 20, on_header, on_item),
        Format::Jsonl => read_jsonl(input, on_header, on_item),
    }
}

/// Reads records with no header row, already in memory (whole records of
/// a CSV or TSV file, starting on a record boundary); `fields` is the
/// header's length. Lines are counted from 1 at the start of `input`.
pub(crate) fn read_headerless(
    input: &[u8],
    format: Format,
    fields: usize,
    on_item: &mut OnItem<'_>,
) -> Result<ReadSummary, ReadError> {
    let (delimiter, quoting) = format.delimiter();
    // A buffer the size of the input, not the usual megabyte.
    read_delimited(input, delimiter, quoting, Some(fields), input.len() + 1, &mut |_, _| Ok(()), on_item)
}

/// Counts of what a read saw.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReadSummary {
    /// Records after the header (readable or not).
    pub(crate) records: u64,
    /// True when the callback stopped the read early.
    pub(crate) stopped: bool,
    /// True when the last record was ended by the end of the input rather
    /// than by a line break (or the input ended inside a quoted field).
    pub(crate) unterminated_last: bool,
    /// Line breaks read (CSV and TSV, when the read was not stopped).
    pub(crate) newlines: u64,
}

#[derive(Debug)]
pub(crate) enum ReadError {
    Io(io::Error),
    /// The header is missing or unusable.
    Header(String),
}

#[cfg(test)]
mod tests {
    use super::delimited::{Split, split_line, split_line_scalar};
    use super::*;

    type Rows = Vec<(u64, String, Vec<String>)>;

    fn collect(data: &'static [u8], format: Format) -> (Header, Rows, Vec<(u64, String)>) {
        let mut header = Vec::new();
        let mut rows = Vec::new();
        let mut bad = Vec::new();
        read(
            &Source::Embedded("t", data),
            format,
            &mut |h, _| {
                header = h.clone();
                Ok(())
            },
            &mut |item| {
                match item {
                    Item::Row(r) => rows.push((
                        r.line,
                        String::from_utf8_lossy(r.raw).into_owned(),
                        (0..r.len()).map(|i| String::from_utf8_lossy(r.field(i).unwrap()).into_owned()).collect(),
                    )),
                    Item::Bad(b) => bad.push((b.line, b.reason)),
                }
                Flow::Continue
            },
        )
        .unwrap();
        (header, rows, bad)
    }

    #[test]
    fn csv_quotes_newlines_and_lines() {
        let data = b"region,note,v\nA,\"x, \"\"y\"\"\nz\",1\n\nB,plain,2\nC,short\nD,last,3";
        let (header, rows, bad) = collect(data, Format::Csv);
        assert_eq!(header, ["region", "note", "v"]);
        assert_eq!(rows[0].0, 2);
        assert_eq!(rows[0].2, ["A", "x, \"y\"\nz", "1"]);
        assert_eq!(rows[0].1, "A,\"x, \"\"y\"\"\nz\",1\n");
        assert_eq!(rows[1].0, 5);
        assert_eq!(rows[1].1, "B,plain,2\n");
        assert_eq!(bad, [(6, "has 2 fields, the header has 3".to_string())]);
        assert_eq!(rows[2].0, 7);
        assert_eq!(rows[2].2, ["D", "last", "3"]);
    }

    #[test]
    fn jsonl_rows_and_broken_lines() {
        let data = b"{\"r\":\"A\",\"v\":1}\n{broken\n[1]\n{\"r\":\"B\",\"v\":2.5,\"w\":null}\n";
        let (header, rows, bad) = collect(data, Format::Jsonl);
        assert_eq!(header, ["r", "v", "w"]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].2, ["B", "2.5", ""]);
        assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), [2, 3]);
    }

    #[test]
    fn simd_and_scalar_line_splitting_agree() {
        let alphabet = b"abcdefghij,,,0123456789\"\r\nxyzklmnopqrstuvwABCDEFGHIJKLMNOPQRSTUV";
        let mut x: u64 = 0x2545f4914f6cdd1d;
        for _ in 0..20_000 {
            crate::process::xorshift(&mut x);
            let len = (x % 200) as usize;
            let bytes: Vec<u8> =
                (0..len).map(|k| alphabet[((x >> (k % 50)) as usize ^ k.wrapping_mul(31)) % alphabet.len()]).collect();
            for quoting in [true, false] {
                let (mut a, mut b) = (vec![0usize; 4], vec![0usize; 4]);
                let fast = split_line(&bytes, b',', quoting, &mut a);
                let slow = split_line_scalar(&bytes, 0, 0, b',', quoting, &mut b);
                match (fast, slow) {
                    (Split::Line { len: l1, fields: f1, .. }, Split::Line { len: l2, fields: f2, .. }) => {
                        assert_eq!((l1, f1), (l2, f2), "{bytes:?}");
                        assert_eq!(a[..f1], b[..f2], "{bytes:?}");
                    }
                    (Split::Special, Split::Special) | (Split::Incomplete, Split::Incomplete) => {}
                    _ => panic!("disagree on {bytes:?}"),
                }
            }
        }
    }

    #[test]
    fn newlines_are_counted_exactly() {
        let cases: [&[u8]; 6] = [
            b"a,1\nb,2\n",
            b"\n\na,1\n\nb,\"x\ny\"\n\n\n",
            b"a,1\r\nb,2\r\n\r\n",
            b"a,1\nb,2",
            b"a,\"unterminated\n",
            b"",
        ];
        for bytes in cases {
            let summary = read_headerless(bytes, Format::Csv, 2, &mut |_| Flow::Continue).unwrap();
            let want = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            assert_eq!(summary.newlines, want, "{:?}", String::from_utf8_lossy(bytes));
        }
    }
}

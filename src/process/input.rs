//! Reading records: CSV (RFC 4180), TSV and JSON Lines, plain or gzip,
//! from files or stdin (`-`).
//!
//! A reader turns bytes into [`Item`]s, one per record: either a [`Row`]
//! (the record's fields, its raw bytes so it can be forwarded unchanged to a
//! region, and the line it starts on) or a [`Bad`] record with the reason it
//! cannot be read. Rows are handed to a callback and borrow the reader's
//! buffers, so reading allocates nothing per row for CSV and TSV.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The format of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Tsv,
    Jsonl,
}

impl Format {
    /// The field delimiter of a delimited format, and whether `"` quotes
    /// fields (CSV) or is an ordinary byte (TSV).
    pub fn delimiter(self) -> (u8, bool) {
        if self == Format::Tsv { (b'\t', false) } else { (b',', true) }
    }

    /// Guesses the format from a file name (`.csv`, `.tsv`, `.jsonl`, with or
    /// without `.gz`); `None` when the name says nothing.
    pub fn from_path(path: &Path) -> Option<Format> {
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

    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Jsonl => "jsonl",
        }
    }

    /// The file extension used for region spool files.
    pub fn extension(self) -> &'static str {
        self.name()
    }
}

/// Where records come from: a file or stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    File(PathBuf),
    /// Bytes embedded in the binary (the `--demo` dataset).
    Embedded(&'static str, &'static [u8]),
    /// A plain copy, in the run directory, of stdin or a compressed file
    /// (see `super::copy`): read from `path`, named `name` in rejects and
    /// errors, as the original was.
    Copy {
        path: PathBuf,
        name: String,
    },
}

impl Source {
    pub fn from_arg(arg: &Path) -> Source {
        if arg.as_os_str() == "-" { Source::Stdin } else { Source::File(arg.to_path_buf()) }
    }

    /// How the source is named in rejects and errors.
    pub fn display(&self) -> String {
        match self {
            Source::Stdin => "-".to_string(),
            Source::File(p) => p.display().to_string(),
            Source::Embedded(name, _) => name.to_string(),
            Source::Copy { name, .. } => name.clone(),
        }
    }

    /// The format its name suggests (`.csv`, `.tsv.gz`, ...), if any.
    pub fn format_hint(&self) -> Option<Format> {
        match self {
            Source::File(path) => Format::from_path(path),
            Source::Copy { name, .. } => Format::from_path(Path::new(name)),
            Source::Stdin | Source::Embedded(..) => None,
        }
    }

    /// Opens the source, transparently decompressing gzip (detected by its
    /// magic bytes, not its name).
    pub fn open(&self) -> io::Result<Box<dyn Read + Send>> {
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
pub struct Row<'a> {
    /// 1-based line of the file where the record starts (the header is line 1).
    pub line: u64,
    /// The record's bytes as they appeared in the input, newline included.
    pub raw: &'a [u8],
    /// Field bytes; `ends[i]` is where field `i` ends, and the next field
    /// starts `sep` bytes later (0 when csv-core unescaped the fields into a
    /// buffer, 1 when `out` is the line itself with its delimiters).
    pub out: &'a [u8],
    pub ends: &'a [usize],
    pub sep: usize,
    /// True when the record holds no quote character at all.
    pub plain: bool,
}

impl<'a> Row<'a> {
    /// Field `i`, or `None` when the record has fewer fields.
    pub fn field(&self, i: usize) -> Option<&'a [u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] + self.sep };
        Some(&self.out[start..end])
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// A record that cannot be read, with the reason.
pub struct Bad<'a> {
    pub line: u64,
    pub raw: &'a [u8],
    pub reason: String,
}

pub enum Item<'a> {
    Row(Row<'a>),
    Bad(Bad<'a>),
}

/// What the callback tells the reader: keep going or stop now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// The header of a source: its column names.
pub type Header = Vec<String>;

/// Called with the header (and its raw bytes); an error stops the read.
pub type OnHeader<'f> = dyn FnMut(&Header, &[u8]) -> Result<(), String> + 'f;

/// Called with every record; returns whether to keep reading.
pub type OnItem<'f> = dyn for<'r> FnMut(Item<'r>) -> Flow + 'f;

/// Reads every record of `source`, calling `on_header` once with the header
/// and raw header bytes, then `on_item` for each record.
///
/// For JSON Lines the header is the list of keys seen so far; it can grow,
/// and `on_header` is called again with the longer header when it does.
pub fn read(
    source: &Source,
    format: Format,
    on_header: &mut OnHeader<'_>,
    on_item: &mut OnItem<'_>,
) -> Result<ReadSummary, ReadError> {
    let input = source.open().map_err(ReadError::Io)?;
    read_from(input, format, on_header, on_item)
}

/// [`read`] from any reader (already decompressed).
pub fn read_from(
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
pub fn read_headerless(
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
pub struct ReadSummary {
    /// Records after the header (readable or not).
    pub records: u64,
    /// True when the callback stopped the read early.
    pub stopped: bool,
    /// True when the last record was ended by the end of the input rather
    /// than by a line break (or the input ended inside a quoted field).
    pub unterminated_last: bool,
    /// Line breaks read (CSV and TSV, when the read was not stopped).
    pub newlines: u64,
}

#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    /// The header is missing or unusable.
    Header(String),
}

/// A growable window over the input: bytes are appended at the end and
/// dropped from the front only before the record being parsed.
struct Window<R> {
    input: R,
    buf: Vec<u8>,
    /// Bytes `..len` are valid.
    len: usize,
    eof: bool,
}

impl<R: Read> Window<R> {
    fn new(input: R, capacity: usize) -> Self {
        Window { input, buf: vec![0; capacity.max(64)], len: 0, eof: false }
    }

    /// Drops `..keep_from` and reads more; returns how many bytes were dropped.
    fn refill(&mut self, keep_from: usize) -> io::Result<usize> {
        self.buf.copy_within(keep_from..self.len, 0);
        self.len -= keep_from;
        if self.len == self.buf.len() {
            // One record larger than the window: grow it.
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.input.read(&mut self.buf[self.len..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.len += n;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(keep_from)
    }
}

fn read_delimited(
    input: impl Read,
    delimiter: u8,
    quoting: bool,
    known_fields: Option<usize>,
    window: usize,
    on_header: &mut OnHeader<'_>,
    on_item: &mut OnItem<'_>,
) -> Result<ReadSummary, ReadError> {
    let mut parser = csv_core::ReaderBuilder::new().delimiter(delimiter).quoting(quoting).build();
    let mut win = Window::new(input, window);
    let mut out = vec![0u8; 1 << 12];
    let mut ends = vec![0usize; 64];
    let (mut pos, mut start) = (0usize, 0usize);
    let (mut nout, mut nend) = (0usize, 0usize);
    // Line where the current record's bytes begin.
    let mut line: u64 = 1;
    let mut header: Option<usize> = known_fields;
    let mut summary = ReadSummary::default();
    let mut trailing = 0u64;
    loop {
        // Fast path, at a record boundary once the header is known: a whole
        // line without quotes or carriage returns is split on the delimiter
        // directly. csv-core would read it the same way; it handles the rest.
        if let Some(expected) = header
            && pos == start
        {
            let avail = &win.buf[pos..win.len];
            match split_line(avail, delimiter, quoting, &mut ends) {
                Split::Line { len: nl, fields, ascii } => {
                    let text = &avail[..nl];
                    {
                        let raw = &avail[..=nl];
                        pos += nl + 1;
                        start = pos;
                        let record_line = line;
                        line += 1;
                        if text.is_empty() {
                            continue; // a blank line is no record
                        }
                        summary.records += 1;
                        summary.unterminated_last = false;
                        let shape = Shape { sep: 1, plain: quoting || memchr::memchr(b'"', text).is_none(), ascii };
                        if emit(record_line, raw, text, &ends[..fields], shape, expected, on_item) == Flow::Stop {
                            summary.stopped = true;
                            return Ok(summary);
                        }
                        continue;
                    }
                }
                Split::Special => {}
                Split::Incomplete if !win.eof => {
                    let dropped = win.refill(start).map_err(ReadError::Io)?;
                    pos -= dropped;
                    start -= dropped;
                    continue;
                }
                Split::Incomplete => {}
            }
        }
        let input = &win.buf[pos..win.len];
        let eof_call = input.is_empty();
        if input.is_empty() && !win.eof {
            let dropped = win.refill(start).map_err(ReadError::Io)?;
            pos -= dropped;
            start -= dropped;
            continue;
        }
        let (res, nin, o, e) = parser.read_record(input, &mut out[nout..], &mut ends[nend..]);
        pos += nin;
        nout += o;
        nend += e;
        use csv_core::ReadRecordResult as R;
        match res {
            // More input is needed (or, at the end, one more call with none).
            R::InputEmpty => {}
            R::OutputFull => out.resize(out.len() * 2, 0),
            R::OutputEndsFull => ends.resize(ends.len() * 2, 0),
            R::Record | R::End => {
                if res == R::End && nend == 0 {
                    // Blank lines after the last record: consumed, no record.
                    trailing = memchr::memchr_iter(b'\n', &win.buf[start..pos]).count() as u64;
                    break;
                }
                let mut raw = &win.buf[start..pos];
                // csv-core skips blank lines before a record: they belong to no record.
                while let Some((&b, rest)) = raw.split_first() {
                    if b == b'\n' {
                        line += 1;
                    } else if b != b'\r' {
                        break;
                    }
                    raw = rest;
                }
                let record_line = line;
                line += memchr::memchr_iter(b'\n', raw).count() as u64;
                summary.unterminated_last = eof_call;
                if header.is_none() {
                    let names = header_names(&out[..nout], &ends[..nend])?;
                    on_header(&names, raw).map_err(ReadError::Header)?;
                    header = Some(names.len());
                } else if !raw.is_empty() {
                    summary.records += 1;
                    let expected = header.unwrap_or(0);
                    let shape = Shape { sep: 0, plain: memchr::memchr(b'"', raw).is_none(), ascii: false };
                    if emit(record_line, raw, &out[..nout], &ends[..nend], shape, expected, on_item) == Flow::Stop {
                        summary.stopped = true;
                        return Ok(summary);
                    }
                }
                start = pos;
                nout = 0;
                nend = 0;
                if res == R::End {
                    break;
                }
            }
        }
    }
    if header.is_none() {
        return Err(ReadError::Header("the input is empty: expected a header row".into()));
    }
    summary.newlines = line - 1 + trailing;
    Ok(summary)
}

/// What [`split_line`] found at the start of a buffer.
enum Split {
    /// A line of `len` bytes (line break excluded) with `fields` fields,
    /// whose end offsets are in `ends`; `ascii` when the splitter saw that
    /// every byte is ASCII (so it is valid UTF-8 without another look).
    Line { len: usize, fields: usize, ascii: bool },
    /// The line holds a quote or a carriage return: csv-core must read it.
    Special,
    /// No line break in the buffer.
    Incomplete,
}

/// Splits the line at the start of `avail` on `delim`, unless it holds a
/// quote (when quoting) or a carriage return. Uses AVX2 when the CPU has it.
fn split_line(avail: &[u8], delim: u8, quoting: bool, ends: &mut Vec<usize>) -> Split {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is available (checked just above).
        return unsafe { simd::split_line(avail, delim, quoting, ends) };
    }
    split_line_scalar(avail, 0, 0, delim, quoting, ends)
}

#[inline]
fn push_end(ends: &mut Vec<usize>, fields: &mut usize, at: usize) {
    if *fields == ends.len() {
        ends.resize(ends.len().max(8) * 2, 0);
    }
    ends[*fields] = at;
    *fields += 1;
}

/// Byte-at-a-time [`split_line`], from offset `from` with `fields` found so far.
fn split_line_scalar(
    avail: &[u8],
    from: usize,
    mut fields: usize,
    delim: u8,
    quoting: bool,
    ends: &mut Vec<usize>,
) -> Split {
    for (i, &c) in avail.iter().enumerate().skip(from) {
        if c == delim {
            push_end(ends, &mut fields, i);
        } else if c == b'\n' {
            push_end(ends, &mut fields, i);
            return Split::Line { len: i, fields, ascii: false };
        } else if c == b'\r' || (quoting && c == b'"') {
            return Split::Special;
        }
    }
    Split::Incomplete
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::{Split, push_end, split_line_scalar};

    /// [`super::split_line`] 32 bytes at a time: one compare per byte class
    /// gives bit masks of delimiters, line breaks and special bytes.
    #[target_feature(enable = "avx2")]
    pub unsafe fn split_line(avail: &[u8], delim: u8, quoting: bool, ends: &mut Vec<usize>) -> Split {
        let vd = _mm256_set1_epi8(delim as i8);
        let vn = _mm256_set1_epi8(b'\n' as i8);
        let vr = _mm256_set1_epi8(b'\r' as i8);
        let vq = _mm256_set1_epi8(b'"' as i8);
        let mut fields = 0usize;
        let mut base = 0usize;
        let mut high = 0u32;
        while base + 32 <= avail.len() {
            // SAFETY: base + 32 <= len, and loadu has no alignment requirement.
            let v = unsafe { _mm256_loadu_si256(avail.as_ptr().add(base) as *const __m256i) };
            let d = _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, vd)) as u32;
            // The sign bit of every byte: set for non-ASCII bytes.
            let h = _mm256_movemask_epi8(v) as u32;
            let n = _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, vn)) as u32;
            let mut sp = _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, vr)) as u32;
            if quoting {
                sp |= _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, vq)) as u32;
            }
            // Only bytes before the first line break belong to this line.
            let k = n.trailing_zeros();
            let before = if n == 0 { u32::MAX } else { (1u32 << k) - 1 };
            if sp & before != 0 {
                return Split::Special;
            }
            let mut dm = d & before;
            while dm != 0 {
                push_end(ends, &mut fields, base + dm.trailing_zeros() as usize);
                dm &= dm - 1;
            }
            high |= h & before;
            if n != 0 {
                let len = base + k as usize;
                push_end(ends, &mut fields, len);
                return Split::Line { len, fields, ascii: high == 0 };
            }
            base += 32;
        }
        split_line_scalar(avail, base, fields, delim, quoting, ends)
    }
}

/// How a record's fields are laid out (see [`Row`]).
#[derive(Clone, Copy)]
struct Shape {
    sep: usize,
    plain: bool,
    /// Known to be ASCII already.
    ascii: bool,
}

/// Checks a parsed record (field count, UTF-8) and hands it on.
fn emit(
    line: u64,
    raw: &[u8],
    out: &[u8],
    ends: &[usize],
    shape: Shape,
    expected: usize,
    on_item: &mut OnItem<'_>,
) -> Flow {
    let item = if ends.len() != expected {
        Item::Bad(Bad { line, raw, reason: format!("has {} fields, the header has {expected}", ends.len()) })
    } else if !shape.ascii
        && !out.is_ascii()
        && let Err(e) = std::str::from_utf8(out)
    {
        Item::Bad(Bad { line, raw, reason: format!("invalid UTF-8 at byte {}", e.valid_up_to()) })
    } else {
        Item::Row(Row { line, raw, out, ends, sep: shape.sep, plain: shape.plain })
    };
    on_item(item)
}

fn header_names(out: &[u8], ends: &[usize]) -> Result<Vec<String>, ReadError> {
    let mut names = Vec::with_capacity(ends.len());
    let mut prev = 0;
    for &end in ends {
        let name = std::str::from_utf8(&out[prev..end])
            .map_err(|_| ReadError::Header(format!("header field {} is not valid UTF-8", names.len() + 1)))?;
        names.push(name.trim().to_string());
        prev = end;
    }
    refuse_repeated_names(&names)?;
    Ok(names)
}

/// distex keeps a column's figures, type and `--by` under its name, so two
/// columns with one name would silently show only one of them: refused,
/// naming both columns (1-based, as a spreadsheet counts).
fn refuse_repeated_names(names: &[String]) -> Result<(), ReadError> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if let Some(first) = seen.insert(name, i) {
            return Err(ReadError::Header(format!(
                "line 1: columns {} and {} are both named {name:?}; give every column its own name \
                 (distex reports each column by its name)",
                first + 1,
                i + 1
            )));
        }
    }
    Ok(())
}

fn read_jsonl(
    input: impl Read,
    on_header: &mut OnHeader<'_>,
    on_item: &mut OnItem<'_>,
) -> Result<ReadSummary, ReadError> {
    let mut reader = io::BufReader::with_capacity(1 << 20, input);
    let mut header: Header = Vec::new();
    let mut raw = Vec::new();
    let mut out = Vec::new();
    let mut ends = Vec::new();
    let mut summary = ReadSummary::default();
    let mut line = 0u64;
    loop {
        raw.clear();
        let n = io::BufRead::read_until(&mut reader, b'\n', &mut raw).map_err(ReadError::Io)?;
        if n == 0 {
            break;
        }
        line += 1;
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        summary.records += 1;
        if !raw.ends_with(b"\n") {
            raw.push(b'\n');
        }
        let item = match jsonl_fields(&raw, &mut header, &mut out, &mut ends) {
            Ok(grew) => {
                if grew {
                    on_header(&header, b"").map_err(ReadError::Header)?;
                }
                Item::Row(Row { line, raw: &raw, out: &out, ends: &ends, sep: 0, plain: false })
            }
            Err(reason) => Item::Bad(Bad { line, raw: &raw, reason }),
        };
        if on_item(item) == Flow::Stop {
            summary.stopped = true;
            break;
        }
    }
    Ok(summary)
}

/// Lays a JSON object's values out in header order (strings as text,
/// numbers as written, null and missing keys as empty). Returns whether the
/// header grew.
fn jsonl_fields(raw: &[u8], header: &mut Header, out: &mut Vec<u8>, ends: &mut Vec<usize>) -> Result<bool, String> {
    let text = std::str::from_utf8(raw).map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("broken JSON: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("not a JSON object".to_string());
    };
    let before = header.len();
    for key in map.keys() {
        if !header.iter().any(|h| h == key) {
            header.push(key.clone());
        }
    }
    out.clear();
    ends.clear();
    for name in header.iter() {
        match map.get(name) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(s)) => out.extend_from_slice(s.as_bytes()),
            Some(serde_json::Value::Number(n)) => out.extend_from_slice(n.to_string().as_bytes()),
            Some(other) => out.extend_from_slice(other.to_string().as_bytes()),
        }
        ends.push(out.len());
    }
    Ok(header.len() != before)
}

#[cfg(test)]
mod tests {
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

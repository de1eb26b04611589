//! Reading CSV (RFC 4180, through csv-core's rules) and TSV: records split
//! into fields in a window over the input, with a fast path for lines
//! without quotes (AVX2 when the CPU has it).

use std::io::{self, Read};

use super::*;

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

pub(super) fn read_delimited(
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
pub(super) enum Split {
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
pub(super) fn split_line(avail: &[u8], delim: u8, quoting: bool, ends: &mut Vec<usize>) -> Split {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is available (checked just above).
        return unsafe { simd::split_line(avail, delim, quoting, ends) };
    }
    split_line_scalar(avail, 0, 0, delim, quoting, ends)
}

#[inline]
pub(super) fn push_end(ends: &mut Vec<usize>, fields: &mut usize, at: usize) {
    if *fields == ends.len() {
        ends.resize(ends.len().max(8) * 2, 0);
    }
    ends[*fields] = at;
    *fields += 1;
}

/// Byte-at-a-time [`split_line`], from offset `from` with `fields` found so far.
pub(super) fn split_line_scalar(
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
    pub(crate) unsafe fn split_line(avail: &[u8], delim: u8, quoting: bool, ends: &mut Vec<usize>) -> Split {
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
pub(super) struct Shape {
    sep: usize,
    plain: bool,
    /// Known to be ASCII already.
    ascii: bool,
}

/// Checks a parsed record (field count, UTF-8) and hands it on.
pub(super) fn emit(
    line: u64,
    raw: &[u8],
    out: &[u8],
    ends: &[usize],
    shape: Shape,
    expected: usize,
    on_item: &mut OnItem<'_>,
) -> Flow {
    let item = if ends.len() != expected {
        Item::Bad(Bad { line, reason: format!("has {} fields, the header has {expected}", ends.len()) })
    } else if !shape.ascii
        && !out.is_ascii()
        && let Err(e) = std::str::from_utf8(out)
    {
        Item::Bad(Bad { line, reason: format!("invalid UTF-8 at byte {}", e.valid_up_to()) })
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
pub(super) fn refuse_repeated_names(names: &[String]) -> Result<(), ReadError> {
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

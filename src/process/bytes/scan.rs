//! The fast path of the built-in summary: byte-range scan workers.
//!
//! For plain (uncompressed) CSV and TSV files the coordinator does not
//! spool regions at all. It cuts every file into byte ranges that start on
//! record boundaries ([`super::plan()`]) and starts one isolated `distex __worker
//! scan` per range. The tasks shown are the ranges that really ran
//! (`process-part-N`), never regions.
//!
//! A scan worker reads its range through memory-mapped windows
//! ([`Reading::Mapped`]), 512 KB at a time: first a structural index of the
//! chunk ([`structural::index`]: where every field and record ends), then
//! every record's fields read in place at those offsets (`Summarizer`).
//! A record the index cannot vouch for (irregular quoting) or that must be
//! rejected goes to the same csv-core reader as the region path, so rejects
//! and their reasons do not depend on the path. It prints per-region
//! accumulators that merge exactly (in the binary format of
//! [`super::wire`]).
//!
//! Finding record boundaries: a line break is a record boundary when an
//! even number of `"` precede it (RFC 4180 quotes come in pairs inside
//! quoted fields). The planner reads the parity at each cut off the quotes
//! near it (`local_parity`). That reasoning only holds for valid CSV, so
//! scan workers report the quotes of their ranges and the records csv-core
//! read differently from the index (a stray quote in an unquoted field),
//! and a range whose last record ran into the end of the range; on any of
//! these the coordinator falls back to the region path, which reads the
//! file sequentially.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::merge::Regions;
use super::region_table::{HashedKey, RegionTable};
use super::structural::{self, Index};
use super::wire::ScanResult;
use crate::process::input::schema::{check_key, check_numbers};
use crate::process::input::{self, Flow, Format, Item};
use crate::process::prefetch::prefetch;
use crate::process::stats::region_columns::Columns;
use crate::process::stats::{parse_number, parse_number_at};

/// What a scan worker is told (in DISTEX_WORKER_SPEC).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ScanSpec {
    pub(crate) file: PathBuf,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) format: Format,
    pub(crate) header: Vec<String>,
    pub(crate) key: usize,
    /// Indices of numeric columns.
    pub(crate) numeric: Vec<usize>,
    /// Stop once more than this many records were rejected in this range.
    pub(crate) max_rejects: Option<u64>,
}

/// Entry point of `distex __worker scan`.
pub(crate) fn main() -> u8 {
    let spec: ScanSpec = match crate::process::workers::local::spec_from_env() {
        Ok(spec) => spec,
        Err(status) => return status,
    };
    match scan_summary(&spec, Reading::Mapped, WINDOW) {
        Ok(summary) => {
            use std::io::Write;
            // One write of the whole result (stdout is line-buffered).
            let mut out = std::io::stdout().lock();
            let ok = out.write_all(&summary.encode()).is_ok() && out.flush().is_ok();
            if ok { 0 } else { 1 }
        }
        Err(e) => {
            eprintln!("distex worker: {e}");
            1
        }
    }
}

/// Bytes read from the range at a time: the chunk and its index stay in L2.
const CHUNK: usize = 512 << 10;
/// Bytes kept before the data: numbers are parsed by loading the 8 bytes
/// that end where their field ends ([`parse_number_at`]).
const FRONT: usize = 64;

/// How a scan gets the bytes of its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// Memory-mapped windows, read in place with no copy (the last bytes of
    /// the file are copied). A file that shrinks while it is mapped kills
    /// the process (SIGBUS): workers use this, and a failed part is re-read
    /// by the coordinator with [`Reading::Copied`].
    Mapped,
    /// `read(2)` into a buffer only.
    Copied,
}

/// Scans one byte range, in chunks: each chunk is indexed
/// ([`structural::index`]), then its records are read at the offsets found.
pub(crate) fn scan(spec: &ScanSpec, reading: Reading) -> Result<ScanResult, String> {
    scan_with_window(spec, reading, WINDOW)
}

/// [`scan`] with mapped windows of `window` bytes.
fn scan_with_window(spec: &ScanSpec, reading: Reading, window: u64) -> Result<ScanResult, String> {
    scan_summary(spec, reading, window).map(Summarizer::finish)
}

/// The range read, its regions still running statistics.
fn scan_summary(spec: &ScanSpec, reading: Reading, window: u64) -> Result<Summarizer<'_>, String> {
    let file = File::open(&spec.file).map_err(|e| format!("cannot open {}: {e}", spec.file.display()))?;
    let mut summary = Summarizer::new(spec);
    let mut pos = spec.start;
    if reading == Reading::Mapped {
        pos = scan_mapped(&file, spec, &mut summary, window)?;
    }
    if !summary.out.stopped {
        scan_copied(file, pos, &mut summary, CHUNK)?;
    }
    Ok(summary)
}

/// Bytes mapped at a time: bounded, so that the mapped pages (which count
/// as the worker's resident memory) stay few.
const WINDOW: u64 = 8 << 20;

/// Scans `spec`'s range in mapped windows as far as it safely can; returns
/// where the rest (at most the range's last record or two) begins.
fn scan_mapped(file: &File, spec: &ScanSpec, summary: &mut Summarizer<'_>, window: u64) -> Result<u64, String> {
    let size = file.metadata().map_err(|e| format!("cannot read {}: {e}", spec.file.display()))?.len();
    // The index loads whole blocks past what it indexes: the mapped windows
    // stop short of the end of the file, whose last bytes are copied.
    let safe_end = spec.end.min(size.saturating_sub(structural::PADDING as u64));
    let (delim, quoting) = spec.format.delimiter();
    let mut index = Index::default();
    let mut pos = spec.start;
    while pos + (CHUNK as u64) < safe_end {
        // Some bytes before `pos` too: numbers are read with the 8 bytes ending at their end.
        let map_start = pos.saturating_sub(FRONT as u64);
        let map_to = (map_start + window).min(safe_end);
        let len = (map_to - map_start) as usize + structural::PADDING;
        // SAFETY: the mapping is only read. Its bytes could change if the
        // file were written meanwhile (input files are not), and a file that
        // shrinks kills the worker with SIGBUS, which fails only this part.
        let map = unsafe { memmap2::MmapOptions::new().offset(map_start).len(len).populate().map(file) }
            .map_err(|e| format!("cannot map {}: {e}", spec.file.display()))?;
        let (start, to) = ((pos - map_start) as usize, (map_to - map_start) as usize);
        let mut from = start;
        let mut span = CHUNK;
        while from < to {
            let chunk_to = (from + span).min(to);
            structural::index(&map, from, chunk_to, delim, quoting, &mut index);
            let done = summary.records(&map, from, &index);
            if summary.out.stopped {
                return Ok(map_start + done as u64);
            }
            if done == from {
                if chunk_to == to {
                    break;
                }
                // A record longer than a chunk: index the rest of the window.
                span = to - from;
                continue;
            }
            (from, span) = (done, CHUNK);
        }
        if from == start {
            break; // a record longer than a window: the copying reader grows its buffer
        }
        pos = map_start + from as u64;
    }
    Ok(pos)
}

/// Scans `summary`'s range from `pos` (a record boundary) by reading it
/// into a buffer of `chunk` bytes (grown for a longer record).
fn scan_copied(mut file: File, pos: u64, summary: &mut Summarizer<'_>, chunk: usize) -> Result<(), String> {
    let spec = summary.spec;
    let cannot_read = |e: std::io::Error| format!("cannot read {}: {e}", spec.file.display());
    file.seek(SeekFrom::Start(pos)).map_err(|e| format!("cannot seek in {}: {e}", spec.file.display()))?;
    let mut reader = file.take(spec.end.saturating_sub(pos));
    let (delim, quoting) = spec.format.delimiter();
    let mut capacity = chunk;
    let mut buf = vec![0u8; FRONT + capacity + structural::PADDING];
    let mut index = Index::default();
    // Unread bytes are buf[FRONT..FRONT + len]; they start on a record boundary.
    let mut len = 0usize;
    loop {
        let eof = fill(&mut reader, &mut buf[FRONT + len..FRONT + capacity], &mut len).map_err(cannot_read)?;
        structural::index(&buf, FRONT, FRONT + len, delim, quoting, &mut index);
        let done = summary.records(&buf, FRONT, &index);
        if summary.out.stopped {
            break;
        }
        if eof {
            if done < FRONT + len {
                summary.general(&buf[done..FRONT + len], true);
            }
            break;
        }
        buf.copy_within(done..FRONT + len, FRONT);
        len -= done - FRONT;
        if len == capacity {
            // One record larger than the whole buffer: make room for it.
            capacity *= 2;
            buf.resize(FRONT + capacity + structural::PADDING, 0);
        }
    }
    Ok(())
}

/// Reads until `buf` is full or the input ends (then returns true), adding
/// what was read to `len`.
fn fill(reader: &mut impl Read, buf: &mut [u8], len: &mut usize) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => {
                *len += filled;
                return Ok(true);
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    *len += filled;
    Ok(false)
}

/// The per-region accumulators of one scan worker, and what it counted.
struct Summarizer<'s> {
    spec: &'s ScanSpec,
    out: ScanResult,
    key_name: String,
    fields: usize,
    index: RegionTable,
    names: Vec<String>,
    /// The running statistics of every region's numeric columns.
    columns: Columns,
    /// Records of each region that its first numeric column did not count
    /// (the field was empty, or there are no numeric columns): the others
    /// are counted by that column's accumulator, already in cache.
    uncounted: Vec<u64>,
    values: Vec<Option<f64>>,
    /// Unescaped bytes of a quoted field.
    scratch: Vec<u8>,
    /// Line of the next record, 1 = the range's first line.
    line: u64,
}

/// Records whose regions are found together, before they are read: with
/// thousands of regions the table and the accumulators are not all in
/// cache, and a miss takes as long as reading several records.
const BATCH: usize = 32;

/// No region found ahead.
const UNKNOWN: u32 = u32::MAX;

/// Up to this many regions, nothing is fetched ahead: their table slots and
/// accumulators stay in the L1 and L2 caches.
const FEW_REGIONS: usize = 256;

/// The bounds of a record's fields, from the separators that end them.
struct Fields<'a> {
    start: usize,
    seps: &'a [u32],
    /// The record ends with `\r\n`: its last field ends one byte early.
    crlf: bool,
}

impl Fields<'_> {
    #[inline(always)]
    fn bounds(&self, i: usize) -> (usize, usize) {
        let start = if i == 0 { self.start } else { self.seps[i - 1] as usize + 1 };
        let end = self.seps[i] as usize - (self.crlf && i + 1 == self.seps.len()) as usize;
        (start, end)
    }
}

impl<'s> Summarizer<'s> {
    fn new(spec: &'s ScanSpec) -> Self {
        Summarizer {
            spec,
            out: ScanResult::default(),
            key_name: spec.header.get(spec.key).cloned().unwrap_or_default(),
            fields: spec.header.len(),
            index: RegionTable::default(),
            names: Vec::new(),
            columns: Columns::new(spec.numeric.len()),
            uncounted: Vec::new(),
            values: vec![None; spec.numeric.len()],
            scratch: Vec::new(),
            line: 1,
        }
    }

    /// Reads every whole record of an indexed chunk that starts at `from`;
    /// returns where the unread rest begins.
    fn records(&mut self, buf: &[u8], from: usize, index: &Index) -> usize {
        let (mut start, mut first_sep, mut special, mut high) = (from, 0usize, 0usize, 0usize);
        // A few regions' table slots and accumulators stay in cache anyway.
        let ahead = self.names.len() > FEW_REGIONS;
        // hints[k]: the region of record `batch + k`, found before the batch is read.
        let mut hints = [UNKNOWN; BATCH];
        for batch in (0..index.records.len()).step_by(BATCH) {
            let batch_end = index.records.len().min(batch + BATCH);
            if ahead {
                self.find_ahead(buf, index, batch, batch_end, &mut hints);
            }
            for (k, &last) in index.records[batch..batch_end].iter().enumerate() {
                let last = last as usize;
                let newline = index.seps[last] as usize;
                let specials_start = special;
                while index.specials.get(special).is_some_and(|&s| (s as usize) < newline) {
                    special += 1;
                }
                while index.high_blocks.get(high).is_some_and(|&b| b as usize + 64 <= start) {
                    high += 1;
                }
                let is_high = index.high_blocks.get(high).is_some_and(|&b| (b as usize) <= newline);
                let seps = &index.seps[first_sep..=last];
                self.record(buf, start, seps, &index.specials[specials_start..special], is_high, hints[k]);
                start = newline + 1;
                first_sep = last + 1;
                if self.out.stopped {
                    return start;
                }
            }
        }
        start
    }

    /// The regions of records `batch..end` of the index, read as plain
    /// records, into `hints` ([`UNKNOWN`] where not found), in two passes so
    /// that the cache misses of a batch overlap: every key is hashed and its
    /// table slot fetched, then every slot is read and the region's
    /// accumulators fetched, to be in cache when the record is read.
    #[inline(always)]
    fn find_ahead(&self, buf: &[u8], index: &Index, batch: usize, end: usize, hints: &mut [u32; BATCH]) {
        let mut keys = [(HashedKey::default(), 0usize, 0usize); BATCH];
        for (k, r) in (batch..end).enumerate() {
            // Record 0 of a chunk starts where no separator says: looked up as it is read.
            let span = if r == 0 {
                None
            } else {
                self.plain_key(index, index.records[r - 1] as usize, index.records[r] as usize)
            };
            keys[k] = match span {
                Some((ks, ke)) => {
                    let key = self.index.hash_at(buf, ks, ke);
                    self.index.prefetch_hashed(&key);
                    (key, ks, ke)
                }
                None => (HashedKey::default(), 0, 0),
            };
        }
        for (hint, &(key, ks, ke)) in hints.iter_mut().zip(&keys[..end - batch]) {
            *hint = if ks == ke { UNKNOWN } else { self.look_ahead(buf, (key, ks, ke)) };
        }
    }

    /// The region of a plain record whose key, `buf[ks..ke]`, was hashed by
    /// [`Self::find_ahead`], if it is known ([`UNKNOWN`] if not); its
    /// accumulators are fetched, to be in cache when the record is read.
    #[inline(always)]
    fn look_ahead(&self, buf: &[u8], (key, ks, ke): (HashedKey, usize, usize)) -> u32 {
        let Some(region) = self.index.get_hashed(&key, &buf[ks..ke]) else { return UNKNOWN };
        if self.columns.is_empty() {
            prefetch(&self.uncounted[region]);
        }
        self.columns.prefetch(region);
        region as u32
    }

    /// Where the key of the record whose separators are `index.seps[prev +
    /// 1..=last]` lies, read as a plain record with the right field count.
    #[inline(always)]
    fn plain_key(&self, index: &Index, prev: usize, last: usize) -> Option<(usize, usize)> {
        if last - prev != self.fields {
            return None;
        }
        let key = self.spec.key;
        let (ks, ke) = (index.seps[prev + key] as usize + 1, index.seps[prev + 1 + key] as usize);
        (ks < ke).then_some((ks, ke))
    }

    /// One record: `buf[start..=newline]` where the newline is the last of
    /// `seps`. `hint`: its region if [`Self::look_ahead`] found it (as a
    /// plain record), else [`UNKNOWN`].
    #[inline]
    fn record(&mut self, buf: &[u8], start: usize, seps: &[u32], specials: &[u32], high: bool, hint: u32) {
        let newline = *seps.last().expect("a record ends at its line break") as usize;
        if newline == start {
            // A blank line is no record.
            self.line += 1;
            self.out.newlines += 1;
            return;
        }
        let raw = &buf[start..=newline];
        if specials.is_empty() && !high && seps.len() == self.fields {
            let fields = Fields { start, seps, crlf: false };
            if self.summarize(buf, &fields, false, hint) {
                self.out.records += 1;
                self.out.newlines += 1;
                self.line += 1;
            } else {
                self.general(raw, false);
            }
            return;
        }
        // Quotes, carriage returns or non-ASCII: still the fast path when
        // the quoting is regular and the text valid UTF-8.
        let crlf = buf[newline - 1] == b'\r';
        let fields = Fields { start, seps, crlf };
        let accepted = seps.len() == self.fields
            && (!high || std::str::from_utf8(raw).is_ok())
            && regular_quotes(buf, &fields, specials)
            && self.summarize(buf, &fields, !specials.is_empty(), hint);
        if !accepted {
            self.general(raw, false);
            return;
        }
        let (mut quotes, mut newlines) = (0, 1);
        for &p in specials {
            quotes += (buf[p as usize] == b'"') as u64;
            newlines += (buf[p as usize] == b'\n') as u64;
        }
        self.out.records += 1;
        self.out.newlines += newlines;
        self.out.quotes += quotes;
        self.line += newlines;
    }

    /// Adds a well-formed record to its region; false (and nothing added)
    /// when the record must be rejected, which [`Self::general`] then does
    /// with the reason. `quoted`: fields may be quoted and need unescaping;
    /// `hint`: see [`Self::record`] (used only for an unquoted key).
    #[inline(always)]
    fn summarize(&mut self, buf: &[u8], fields: &Fields<'_>, quoted: bool, hint: u32) -> bool {
        let (ks, ke) = fields.bounds(self.spec.key);
        let known = if quoted {
            let key = unquote(buf, ks, ke, &mut self.scratch);
            if key.iter().all(u8::is_ascii_whitespace) {
                return false;
            }
            self.index.get(key)
        } else {
            if ks == ke || (buf[ks].is_ascii_whitespace() && buf[ks..ke].iter().all(u8::is_ascii_whitespace)) {
                return false;
            }
            // A plain record's key lies where `look_ahead` looked.
            if hint != UNKNOWN { Some(hint as usize) } else { self.index.get_at(buf, ks, ke) }
        };
        // Parse every numeric field once; reject before touching any accumulator.
        for (slot, &col) in self.spec.numeric.iter().enumerate() {
            let (s, e) = fields.bounds(col);
            let parsed = if s == e {
                Ok(None)
            } else if quoted && buf[s] == b'"' {
                let mut scratch = std::mem::take(&mut self.scratch);
                let v = parse_number(unquote(buf, s, e, &mut scratch));
                self.scratch = scratch;
                v
            } else {
                parse_number_at(buf, s, e)
            };
            match parsed {
                Ok(v) => self.values[slot] = v,
                Err(()) => return false,
            }
        }
        let region = match known {
            Some(region) => region,
            None => {
                let mut scratch = std::mem::take(&mut self.scratch);
                let region = self.new_region(if quoted { unquote(buf, ks, ke, &mut scratch) } else { &buf[ks..ke] });
                self.scratch = scratch;
                region
            }
        };
        self.add(region);
        true
    }

    fn new_region(&mut self, key: &[u8]) -> usize {
        let (region, _) = self.index.get_or_insert(key);
        self.names.push(String::from_utf8_lossy(key).into_owned());
        self.columns.add_region();
        self.uncounted.push(0);
        region
    }

    /// Adds `self.values` to `region`.
    #[inline(always)]
    fn add(&mut self, region: usize) {
        if self.values.first().is_none_or(Option::is_none) {
            self.uncounted[region] += 1;
        }
        self.columns.push(region, &self.values);
    }

    /// Records of `region`.
    fn records_of(&self, region: usize) -> u64 {
        self.uncounted[region] + self.columns.count(region)
    }

    /// Reads `raw` (whole records, or the range's unterminated end when
    /// `at_end`) as the region path does, through csv-core where needed,
    /// so rejects and their reasons are the same.
    fn general(&mut self, raw: &[u8], at_end: bool) {
        let base = self.line - 1;
        let mut seen = 0u64;
        let spec = self.spec;
        let result = input::read_headerless(raw, spec.format, self.fields, &mut |item| {
            seen += 1;
            self.item(item, base)
        });
        if let Ok(summary) = result {
            self.out.stopped |= summary.stopped;
            if at_end {
                self.out.unterminated_last = summary.unterminated_last || !raw.ends_with(b"\n");
            }
        }
        // The index took `raw` for one record (or the end of the range);
        // csv-core reading more means a quote the parity got wrong.
        if seen > 1 && !at_end {
            self.out.odd_quote_records += 1;
        }
        let newlines = memchr::memchr_iter(b'\n', raw).count() as u64;
        self.out.newlines += newlines;
        self.line += newlines;
        if spec.format == Format::Csv {
            self.out.quotes += count_quotes(raw);
        }
    }

    /// One record as read by csv-core (lines relative to `base`).
    fn item(&mut self, item: Item<'_>, base: u64) -> Flow {
        self.out.records += 1;
        let spec = self.spec;
        let row = match item {
            Item::Bad(bad) => return self.reject(base + bad.line, bad.reason),
            Item::Row(row) => row,
        };
        let key = match check_key(&row, Some(spec.key), &self.key_name) {
            Ok(k) => k,
            Err(reason) => return self.reject(base + row.line, reason),
        };
        for (slot, &col) in spec.numeric.iter().enumerate() {
            match row.field(col).map(parse_number) {
                Some(Ok(v)) => self.values[slot] = v,
                None => self.values[slot] = None,
                Some(Err(())) => {
                    let reason = check_numbers(&row, &spec.numeric, &spec.header).err().unwrap_or_default();
                    return self.reject(base + row.line, reason);
                }
            }
        }
        let region = match self.index.get(key) {
            Some(region) => region,
            None => self.new_region(key),
        };
        self.add(region);
        Flow::Continue
    }

    fn reject(&mut self, line: u64, reason: String) -> Flow {
        self.out.rejected += 1;
        if self.out.rejects.len() < crate::process::report::MAX_LISTED_REJECTS {
            self.out.rejects.push((line, reason));
        }
        if self.spec.max_rejects.is_some_and(|m| self.out.rejected > m) {
            self.out.stopped = true;
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// What the worker prints ([`super::wire::encode_regions`] of [`Self::finish`]),
    /// written straight from the running statistics, in name order: the
    /// coordinator merges parts by walking them side by side.
    fn encode(&self) -> Vec<u8> {
        let columns: Vec<String> = self.spec.numeric.iter().map(|&col| self.spec.header[col].clone()).collect();
        let mut order: Vec<usize> = (0..self.names.len()).collect();
        order.sort_unstable_by(|&a, &b| self.names[a].cmp(&self.names[b]));
        super::wire::encode_regions(&self.out, &columns, order.len(), |i| {
            // Fetched a few regions ahead: their misses overlap.
            if let Some(&ahead) = order.get(i + 4) {
                self.columns.prefetch(ahead);
            }
            let r = order[i];
            (self.names[r].as_str(), self.records_of(r), self.columns.finished(r))
        })
    }

    fn finish(self) -> ScanResult {
        let records = (0..self.names.len()).map(|r| self.records_of(r)).collect();
        let mut out = self.out;
        out.regions = Regions {
            columns: self.spec.numeric.iter().map(|&col| self.spec.header[col].clone()).collect(),
            accs: (0..self.names.len()).flat_map(|r| self.columns.finish(r)).collect(),
            records,
            names: self.names,
        };
        out
    }
}

/// Whether every quote of a record (`specials`: its quotes, carriage
/// returns and quoted line breaks, in order) sits where RFC 4180 puts it: a
/// field holding any is wrapped in quotes, with the quotes inside it
/// doubled; a carriage return is either inside a quoted field or right
/// before the line break. Then csv-core would read the record exactly as
/// the index split it.
fn regular_quotes(buf: &[u8], fields: &Fields<'_>, specials: &[u32]) -> bool {
    let mut next = 0;
    for i in 0..fields.seps.len() {
        let (s, e) = fields.bounds(i);
        let first = next;
        while specials.get(next).is_some_and(|&p| (p as usize) < e) {
            next += 1;
        }
        let inner = &specials[first..next];
        let Some((&open, rest)) = inner.split_first() else { continue };
        let Some((&close, middle)) = rest.split_last() else { return false };
        if open as usize != s || close as usize != e - 1 || buf[s] != b'"' || buf[e - 1] != b'"' {
            return false;
        }
        let mut k = 0;
        while k < middle.len() {
            let p = middle[k] as usize;
            if buf[p] != b'"' {
                k += 1; // a carriage return or line break inside the quotes
            } else if middle.get(k + 1).is_some_and(|&q| q as usize == p + 1 && buf[p + 1] == b'"') {
                k += 2;
            } else {
                return false;
            }
        }
    }
    // What is left: at most the carriage return of a `\r\n` ending.
    specials.len() - next == fields.crlf as usize
}

/// The content of field `buf[s..e]`: without its quotes, and with doubled
/// quotes made single (in `scratch`) when it has any.
fn unquote<'a>(buf: &'a [u8], s: usize, e: usize, scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if e - s < 2 || buf[s] != b'"' {
        return &buf[s..e];
    }
    let inner = &buf[s + 1..e - 1];
    if memchr::memchr(b'"', inner).is_none() {
        return inner;
    }
    scratch.clear();
    let mut quote = false;
    for &b in inner {
        if b == b'"' && quote {
            quote = false;
            continue;
        }
        quote = b == b'"';
        scratch.push(b);
    }
    scratch
}

fn count_quotes(raw: &[u8]) -> u64 {
    if memchr::memchr(b'"', raw).is_none() { 0 } else { memchr::memchr_iter(b'"', raw).count() as u64 }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::super::plan::{HEAD, local_parity, plan};
    use super::*;
    use crate::process::input::schema::ColumnType;

    /// A random record built from the field shapes the fast path must tell
    /// apart: quoted fields with delimiters, doubled quotes, line breaks
    /// and carriage returns, CRLF endings, non-ASCII and invalid UTF-8,
    /// quoted keys and numbers, bad numbers, empty keys, wrong field counts,
    /// blank lines, quotes inside unquoted fields (in pairs: an odd count
    /// makes byte ranges unsafe, which the coordinator handles).
    fn random_record(x: &mut u64) -> Vec<u8> {
        let mut next = |n: u64| crate::process::xorshift(x) % n;
        let keys: [&[u8]; 9] = [
            b"north",
            b"south",
            b"\"north\"",
            b"\"we,st\"",
            b"\xc3\xa9t\xc3\xa9",
            b"",
            b"  ",
            b"a-very-long-region-name-x",
            b"\"q\"\"k\"",
        ];
        let numbers: [&[u8]; 12] = [
            b"12",
            b"-3.25",
            b"1234567.5",
            b"\"42\"",
            b"",
            b"7e3",
            b"abc",
            b"0.000001",
            b"-",
            b"99999999",
            b"\" 5 \"",
            b"1.5.2",
        ];
        let notes: [&[u8]; 9] = [
            b"plain",
            b"\"a,b\"",
            b"\"say \"\"hi\"\"\"",
            b"\"two\nlines\"",
            b"\"cr\rin\"",
            b"x\"y\"z",
            b"caf\xc3\xa9",
            b"bad\xff",
            b"",
        ];
        if next(40) == 0 {
            return b"\n".to_vec();
        }
        // Many regions too, so that regions are looked up ahead (FEW_REGIONS).
        let many = format!("k{}", next(1000)).into_bytes();
        let mut fields = vec![if next(2) == 0 { &many[..] } else { keys[next(keys.len() as u64) as usize] }];
        for _ in 0..2 {
            fields.push(numbers[next(numbers.len() as u64) as usize]);
        }
        fields.push(notes[next(notes.len() as u64) as usize]);
        match next(30) {
            0 => fields.push(b"extra"),
            1 => {
                fields.pop();
            }
            _ => {}
        }
        let mut rec = fields.join(&b',');
        rec.extend_from_slice(if next(5) == 0 { b"\r\n" } else { b"\n" });
        rec
    }

    /// Writes `body` as a CSV file in `dir` (columns of [`random_record`])
    /// and returns the spec of a scan of `body[start..end]`.
    fn written(dir: &Path, body: &[u8], start: usize, end: usize) -> ScanSpec {
        let file = dir.join("data.csv");
        std::fs::write(&file, body).unwrap();
        ScanSpec {
            file,
            start: start as u64,
            end: end as u64,
            format: Format::Csv,
            header: ["region", "qty", "price", "note"].iter().map(|s| s.to_string()).collect(),
            key: 0,
            numeric: vec![1, 2],
            max_rejects: None,
        }
    }

    /// The fast path (structural index, fields read in place) gives exactly
    /// what csv-core gives reading the same bytes record by record: the
    /// same accumulators, rejects with the same lines and reasons, counts.
    /// Tiny chunks put chunk boundaries everywhere, inside records too.
    #[test]
    fn fast_path_reads_like_csv_core() {
        let mut x = 0x5851_f42d_4c95_7f2d;
        for (records, chunk) in [(3000, 64), (3000, 1000), (20000, CHUNK)] {
            let mut body = Vec::new();
            for _ in 0..records {
                body.extend(random_record(&mut x));
            }
            let dir = tempfile::tempdir().unwrap();
            let spec = written(dir.path(), &body, 0, body.len());
            let file = File::open(&spec.file).unwrap();
            let mut fast = Summarizer::new(&spec);
            scan_copied(file, 0, &mut fast, chunk).unwrap();
            let fast = fast.finish();
            let mapped = scan(&spec, Reading::Mapped).unwrap();
            assert_eq!(
                (mapped.records, &mapped.rejects, &mapped.regions),
                (fast.records, &fast.rejects, &fast.regions)
            );
            let mut reference = Summarizer::new(&spec);
            reference.general(&body, true);
            let reference = reference.finish();
            assert_eq!(fast.records, reference.records, "chunk {chunk}");
            assert_eq!(fast.rejected, reference.rejected);
            assert_eq!(fast.rejects, reference.rejects);
            assert_eq!(fast.regions, reference.regions);
            assert_eq!(fast.newlines, reference.newlines);
            assert_eq!(fast.quotes, reference.quotes);
            assert_eq!((fast.odd_quote_records, fast.unterminated_last), (0, false));
            assert!(fast.rejected > 0 && fast.regions.len() > FEW_REGIONS, "the data exercises both outcomes");
        }
    }

    /// A range in the middle of a file, over several windows: the
    /// mapped reader (windows that start mid-file, chunks within them, then
    /// the copied rest) gives what the copying reader gives.
    #[test]
    fn mapped_windows_read_a_middle_range_like_copies() {
        let mut x = 0x9e37_79b9_7f4a_7c15;
        let mut body = Vec::new();
        while body.len() < 1_500_000 {
            body.extend(random_record(&mut x));
        }
        // Cut on record boundaries the index agrees with: after a plain line.
        let boundary = |near: usize| near + body[near..].windows(2).position(|w| w == b"\nn").unwrap() + 1;
        let (start, end) = (boundary(123_457), boundary(body.len() - 50_000));
        let dir = tempfile::tempdir().unwrap();
        let spec = written(dir.path(), &body, start, end);
        // Windows of 600 KB: a chunk and a bit each, so that chunks end inside windows too.
        let mapped = scan_with_window(&spec, Reading::Mapped, 600_000).unwrap();
        let copied = scan(&spec, Reading::Copied).unwrap();
        assert!(mapped.records > 20_000, "{}", mapped.records);
        assert_eq!(mapped.records, copied.records);
        assert_eq!(mapped.rejects, copied.rejects);
        assert_eq!(mapped.regions, copied.regions);
        assert_eq!((mapped.newlines, mapped.quotes), (copied.newlines, copied.quotes));
    }

    /// A worker prints, straight from its running statistics, exactly the
    /// bytes of the result table it stands for; with enough regions that
    /// the accumulators outgrow their first reservation too.
    #[test]
    fn a_worker_encodes_its_statistics_as_their_table() {
        let mut x = 0x2545_f491_4f6c_dd1d;
        let mut body = Vec::new();
        for i in 0..40_000 {
            body.extend(random_record(&mut x));
            body.extend(format!("r{i},{i},0.5,x\n").as_bytes());
        }
        let dir = tempfile::tempdir().unwrap();
        let spec = written(dir.path(), &body, 0, body.len());
        let summary = scan_summary(&spec, Reading::Copied, WINDOW).unwrap();
        let printed = summary.encode();
        let mut table = summary.finish();
        assert!(table.regions.len() > 40_000, "{}", table.regions.len());
        // Printed in name order.
        table.regions = table.regions.into_sorted_by_name();
        assert!(printed == super::super::wire::encode(&table));
    }

    /// Wherever the bytes around an offset decide, `local_parity` agrees
    /// with counting every quote from the start of the file.
    #[test]
    fn local_parity_agrees_with_counting() {
        let fields: [&[u8]; 8] = [
            b"plain",
            b"\"a,b\"",
            b"\"say \"\"hi\"\"\"",
            b"\"two\nlines\"",
            b"",
            b"\"\"",
            b"12.5",
            b"\"x\"\"\n,\"\"y\"",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut csv = Vec::new();
        for _ in 0..3000 {
            for f in 0..4 {
                crate::process::xorshift(&mut x);
                if f > 0 {
                    csv.push(b',');
                }
                csv.extend_from_slice(fields[(x % 8) as usize]);
            }
            csv.push(b'\n');
        }
        let mut decided = 0;
        let mut inside = csv[0] == b'"';
        for t in 1..csv.len() {
            let end = (t + 200).min(csv.len());
            if let Some(guess) = local_parity(&csv[t - 1..end]) {
                assert_eq!(guess, inside, "at {t}: {:?}", String::from_utf8_lossy(&csv[t - 1..end]));
                decided += 1;
            }
            inside ^= csv[t] == b'"';
        }
        assert!(decided > csv.len() * 9 / 10, "decided only {decided} of {}", csv.len());
    }

    /// Two parts per job when the sample shows few regions (a slow worker
    /// gets help); one per job when it shows thousands (every part prints
    /// and the coordinator merges every region it saw).
    #[test]
    fn the_plan_has_fewer_parts_when_regions_are_many() {
        let dir = tempfile::tempdir().unwrap();
        let parts = |regions: usize| {
            let file = dir.path().join(format!("{regions}.csv"));
            let mut body = b"region,qty\n".to_vec();
            let mut i = 0;
            while body.len() < 40 << 20 {
                body.extend(format!("r{:05},{}\n", (i * 7919) % regions, i % 100).as_bytes());
                i += 1;
            }
            std::fs::write(&file, &body).unwrap();
            let plan =
                plan(&[file], &["f.csv".into()], Format::Csv, "region", &BTreeMap::new(), 2, None).unwrap().unwrap();
            assert_eq!(plan.parts.first().map(|p| p.start), Some(11));
            assert_eq!(plan.parts.last().map(|p| p.end), Some(body.len() as u64));
            plan.parts.len()
        };
        assert_eq!(parts(8), 4);
        assert_eq!(parts(10_000), 2);
    }

    /// Types are inferred from the first thousand rows even when they do
    /// not fit the planner's first read: rows of 2 KB whose `v` is a number
    /// in the first 300 rows and text in the next 700 make `v` text.
    #[test]
    fn types_come_from_a_thousand_rows_however_long() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("long.csv");
        let pad = "x".repeat(2000);
        let mut body = b"region,v,pad\n".to_vec();
        for i in 0..40_000 {
            let v = if (300..1000).contains(&i) { format!("t{i}") } else { i.to_string() };
            body.extend(format!("r{},{v},{pad}\n", i % 3).as_bytes());
        }
        // The first read holds fewer than 300 rows.
        const { assert!(300 * 2010 > HEAD) };
        std::fs::write(&file, &body).unwrap();
        let plan = plan(&[file], &["f.csv".into()], Format::Csv, "region", &BTreeMap::new(), 2, None).unwrap().unwrap();
        assert_eq!(plan.types.get("v"), Some(&ColumnType::Text));
        assert!(plan.numeric.is_empty());
    }
}

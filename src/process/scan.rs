//! The fast path of the built-in summary: byte-range scan workers.
//!
//! For plain (uncompressed) CSV and TSV files the coordinator does not
//! spool regions at all. It cuts every file into byte ranges that start on
//! record boundaries ([`plan`]) and starts one isolated `distex __worker
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

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cache::prefetch;
use super::input::{self, Flow, Format, Item};
use super::keys::{HashedKey, RegionTable};
use super::merge::Regions;
use super::partition::{ColumnType, SAMPLE, check_key, check_numbers, infer_type};
use super::running::Columns;
use super::stats::{parse_number, parse_number_at};
use super::structural::{self, Index};

/// What a scan worker is told (in DISTEX_WORKER_SPEC).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanSpec {
    pub file: PathBuf,
    pub start: u64,
    pub end: u64,
    pub format: Format,
    pub header: Vec<String>,
    pub key: usize,
    /// Indices of numeric columns.
    pub numeric: Vec<usize>,
    /// Stop once more than this many records were rejected in this range.
    pub max_rejects: Option<u64>,
}

/// What a scan worker prints (in the binary format of [`super::wire`]).
#[derive(Debug, Clone, Default)]
pub struct ScanResult {
    pub regions: Regions,
    pub records: u64,
    pub rejected: u64,
    /// The first rejects: line relative to the range (1 = its first line), reason.
    pub rejects: Vec<(u64, String)>,
    /// Line breaks in the range.
    pub newlines: u64,
    /// Records with an odd number of quotes: boundaries cannot be trusted.
    pub odd_quote_records: u64,
    /// Quote characters in the range (CSV): every cut must have an even
    /// number before it in its file, or it did not fall on a record boundary.
    pub quotes: u64,
    /// The last record was ended by the end of the range, not a line break.
    pub unterminated_last: bool,
    /// Stopped early because of `max_rejects`.
    pub stopped: bool,
}

/// Entry point of `distex __worker scan`.
pub fn main() -> u8 {
    let spec: ScanSpec = match super::worker::spec_from_env() {
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
pub enum Reading {
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
pub fn scan(spec: &ScanSpec, reading: Reading) -> Result<ScanResult, String> {
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
        if self.out.rejects.len() < super::partition::MAX_LISTED_REJECTS {
            self.out.rejects.push((line, reason));
        }
        if self.spec.max_rejects.is_some_and(|m| self.out.rejected > m) {
            self.out.stopped = true;
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// What the worker prints ([`super::wire::encode`] of [`Self::finish`]),
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

/// One byte range of one file.
#[derive(Debug, Clone)]
pub struct Part {
    pub file: PathBuf,
    /// Index of the file among the inputs.
    pub file_index: usize,
    pub start: u64,
    pub end: u64,
}

/// How the fast path will run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub header: Vec<String>,
    pub key: usize,
    pub types: BTreeMap<String, ColumnType>,
    pub numeric: Vec<usize>,
    pub parts: Vec<Part>,
    /// Line of each file where its first data record may start (after the header).
    pub first_line: Vec<u64>,
    /// Distinct regions among the rows sampled from each file's head.
    pub sampled_regions: usize,
}

/// Bytes read from the start of each file to find the header and sample
/// types: a first read of [`HEAD`] (a thousand rows of 100 bytes fit in
/// it), and up to [`LONG_HEAD`] when that did not hold the header and the
/// sample. Fresh memory costs a page fault per 4 KB, and everything waits
/// for the plan.
const HEAD: usize = 256 << 10;
const LONG_HEAD: usize = 4 << 20;

/// Distinct keys among the sampled rows (up to a thousand per file) from
/// which the planner expects thousands of regions (see [`plan`]).
const MANY_REGIONS_SAMPLED: usize = 500;

/// Plans byte ranges for `files`, or returns `None` when the fast path does
/// not apply (compressed input, differing headers, a header the planner
/// cannot place) and the region path should be used instead.
pub fn plan(
    files: &[PathBuf],
    names: &[String],
    format: Format,
    key: &str,
    schema: &BTreeMap<String, ColumnType>,
    jobs: usize,
    part_size: Option<u64>,
) -> Result<Option<Plan>, String> {
    let mut header: Option<Vec<String>> = None;
    let mut header_ends = Vec::new();
    let mut header_lines = Vec::new();
    let mut types = BTreeMap::new();
    let mut sizes = Vec::new();
    let mut sampled_keys = std::collections::HashSet::new();
    for (n, path) in files.iter().enumerate() {
        let file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let size = file.metadata().map_err(|e| format!("cannot read {}: {e}", path.display()))?.len();
        let read_head = |len: usize| -> Result<Vec<u8>, String> {
            let mut head = vec![0u8; len.min(size as usize)];
            file.read_exact_at(&mut head, 0).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok(head)
        };
        let mut head = read_head(HEAD)?;
        let unusable = |m: String| format!("{}: {m}", names[n]);
        let mut sampled = sample_head(&head, format).map_err(unusable)?;
        if head.len() < size as usize && sampled.as_ref().is_none_or(|s| s.sample.len() < SAMPLE) {
            head = read_head(LONG_HEAD)?;
            sampled = sample_head(&head, format).map_err(unusable)?;
        }
        let Some(Head { header_end, names, sample }) = sampled else {
            return Ok(None);
        };
        match &header {
            None => {
                let Some(k) = names.iter().position(|h| h == key) else {
                    return Ok(None);
                };
                for (i, name) in names.iter().enumerate() {
                    if i == k {
                        continue;
                    }
                    let t = schema.get(name).copied().unwrap_or_else(|| {
                        infer_type(sample.iter().filter(|r| r.len() == names.len()).map(|r| r[i].as_slice()))
                    });
                    types.insert(name.clone(), t);
                }
                header = Some(names);
            }
            Some(h) if *h != names => return Ok(None),
            Some(_) => {}
        }
        if let Some(k) = header.as_ref().and_then(|h| h.iter().position(|c| c == key)) {
            sampled_keys.extend(sample.iter().filter_map(|r| r.get(k).cloned()));
        }
        header_lines.push(1 + memchr::memchr_iter(b'\n', &head[..header_end]).count() as u64);
        header_ends.push(header_end as u64);
        sizes.push(size);
    }
    let Some(header) = header else {
        return Ok(None);
    };
    let key_index = header.iter().position(|h| h == key).expect("checked");
    let numeric: Vec<usize> =
        (0..header.len()).filter(|&i| i != key_index && types.get(&header[i]) == Some(&ColumnType::Number)).collect();

    // Part size: about two parts per job, between 8 MB and 256 MB, so that
    // a slow worker gets help. But every part prints every region it saw,
    // and the coordinator decodes and merges each one (a microsecond or so
    // per region): when most sampled rows have a region of their own, there
    // are thousands, and one part per job (up to 1 GB) costs less.
    let many_regions = sampled_keys.len() >= MANY_REGIONS_SAMPLED;
    let (per_job, largest) = if many_regions { (1, 1 << 30) } else { (2, 256 << 20) };
    let total: u64 = sizes.iter().zip(&header_ends).map(|(s, h)| s - h).sum();
    let part_size =
        part_size.unwrap_or_else(|| (total / (jobs as u64 * per_job).max(1)).clamp(8 << 20, largest)).max(1);
    let mut parts = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let (start, size) = (header_ends[i], sizes[i]);
        if size <= start {
            continue;
        }
        let cuts = cut_points(path, start, size, part_size, format == Format::Csv, jobs)?;
        let mut prev = start;
        for cut in cuts.into_iter().chain(std::iter::once(size)) {
            if cut > prev {
                parts.push(Part { file: path.clone(), file_index: i, start: prev, end: cut });
                prev = cut;
            }
        }
    }
    let sampled_regions = sampled_keys.len();
    Ok(Some(Plan { header, key: key_index, types, numeric, parts, first_line: header_lines, sampled_regions }))
}

/// Offset just after the first line break at even quote parity, from `from`
/// in `buf` (which starts at parity `even`).
fn first_boundary(buf: &[u8], from: usize, quoting: bool) -> Option<usize> {
    if !quoting {
        return memchr::memchr(b'\n', &buf[from..]).map(|i| from + i + 1);
    }
    let mut inside = false;
    for i in memchr::memchr2_iter(b'"', b'\n', &buf[from..]) {
        match buf[from + i] {
            b'"' => inside = !inside,
            _ if !inside => return Some(from + i + 1),
            _ => {}
        }
    }
    None
}

/// What the start of a file says: where its header ends, its names, and
/// up to [`SAMPLE`] rows after it (their fields).
struct Head {
    header_end: usize,
    names: Vec<String>,
    sample: Vec<Vec<Vec<u8>>>,
}

/// The [`Head`] of a file that starts with `head`; `None` when it is not a
/// plain file's start (compressed, starting with a blank line) or holds no
/// whole header, and an error when its header cannot be used at all.
fn sample_head(head: &[u8], format: Format) -> Result<Option<Head>, String> {
    if head.starts_with(&[0x1f, 0x8b]) || head.first().is_some_and(|&b| b == b'\n' || b == b'\r') {
        return Ok(None);
    }
    let Some(header_end) = first_boundary(head, 0, format == Format::Csv) else {
        return Ok(None);
    };
    let mut names = Vec::new();
    let mut sample: Vec<Vec<Vec<u8>>> = Vec::new();
    let read = input::read_from(
        head,
        format,
        &mut |h, _| {
            names = h.clone();
            Ok(())
        },
        &mut |item| {
            if let Item::Row(row) = item {
                sample.push((0..row.len()).map(|i| row.field(i).unwrap_or(b"").to_vec()).collect());
            }
            if sample.len() >= SAMPLE { Flow::Stop } else { Flow::Continue }
        },
    );
    if let Err(input::ReadError::Header(m)) = read {
        return Err(m);
    }
    Ok(Some(Head { header_end, names, sample }))
}

/// Record boundaries near every multiple of `part_size` in `[start, size)`.
fn cut_points(
    path: &Path,
    start: u64,
    size: u64,
    part_size: u64,
    quoting: bool,
    threads: usize,
) -> Result<Vec<u64>, String> {
    // A cut in the last eighth of a part (at most 64 KB) before the end
    // would leave a sliver: not worth a worker.
    let sliver = (part_size / 8).min(64 << 10);
    let targets: Vec<u64> = (1..).map(|k| start + k * part_size).take_while(|&t| t + sliver < size).collect();
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    // Quote parity at each target: read off the bytes around it when they
    // tell (see `local_parity`), else counted over [start, target) in
    // parallel — a whole extra pass over the file.
    let file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // 64 KB around a cut usually tell; up to 1 MB when they do not.
    let local: Option<Vec<bool>> = if quoting {
        let mut buf = Vec::new();
        targets
            .iter()
            .map(|&t| -> Result<Option<bool>, String> {
                let mut parity = None;
                for len in [64 << 10, 1 << 20] {
                    let want = ((size - (t - 1)) as usize).min(len);
                    buf.resize(want, 0);
                    file.read_exact_at(&mut buf, t - 1).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    parity = local_parity(&buf);
                    if parity.is_some() || want < len {
                        break;
                    }
                }
                Ok(parity)
            })
            .collect::<Result<Option<Vec<bool>>, String>>()?
    } else {
        Some(vec![false; targets.len()])
    };
    let parity: Vec<bool> = if let Some(local) = local {
        local
    } else if quoting {
        let mut bounds = vec![start];
        bounds.extend(&targets);
        let segments: Vec<(u64, u64)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
        let counts = count_quotes_parallel(path, &segments, threads)?;
        let mut odd = false;
        counts
            .iter()
            .map(|c| {
                odd ^= c % 2 == 1;
                odd
            })
            .collect()
    } else {
        vec![false; targets.len()]
    };
    let mut cuts = Vec::new();
    // A record boundary is usually within a few hundred bytes.
    let mut buf = vec![0u8; 64 << 10];
    for (target, odd) in targets.into_iter().zip(parity) {
        // Scan forward from the target with the known parity.
        let mut pos = target;
        let mut inside = odd;
        'search: while pos < size {
            let n = file.read_at(&mut buf, pos).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            for i in if quoting {
                memchr::memchr2_iter(b'"', b'\n', &buf[..n]).collect::<Vec<_>>()
            } else {
                memchr::memchr_iter(b'\n', &buf[..n]).collect()
            } {
                match buf[i] {
                    b'"' => inside = !inside,
                    _ if !inside => {
                        cuts.push(pos + i as u64 + 1);
                        break 'search;
                    }
                    _ => {}
                }
            }
            pos += n as u64;
        }
    }
    cuts.dedup();
    Ok(cuts)
}

/// Whether the byte at offset 1 of `buf` lies inside a quoted field, read
/// off the first quote whose neighbours leave one reading in valid
/// RFC 4180 CSV (`buf[0]` is the byte before, for context):
///
/// * after a comma or line break and before a byte that is none of
///   `,` `\n` `\r` `"`, a quote opens a field: outside before it (inside,
///   a lone quote could only close the field, and a comma or line break
///   would follow);
/// * after a byte that is none of `,` `\n` `\r` `"`, a quote is inside
///   (outside, quotes only open fields, right after a comma or line break).
///
/// The parity of the quotes between offset 1 and that quote then gives the
/// answer. `None` when no quote in `buf` decides. A wrong answer can only
/// come from invalid CSV (a stray quote); scan workers report the quotes
/// of their ranges, and the coordinator checks every cut had an even count
/// before it, falling back to the region path otherwise.
fn local_parity(buf: &[u8]) -> Option<bool> {
    for (count, i) in memchr::memchr_iter(b'"', buf.get(1..)?).map(|i| i + 1).enumerate() {
        let prev = buf[i - 1];
        let next = *buf.get(i + 1)?;
        let boundary = |b: u8| b == b',' || b == b'\n';
        let special = |b: u8| boundary(b) || b == b'\r' || b == b'"';
        if boundary(prev) && !special(next) {
            return Some(!count.is_multiple_of(2));
        }
        if !special(prev) {
            return Some(count.is_multiple_of(2));
        }
    }
    None
}

/// Number of `"` in each segment, counted by `threads` threads.
fn count_quotes_parallel(path: &Path, segments: &[(u64, u64)], threads: usize) -> Result<Vec<u64>, String> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<u64, String>>>> =
        segments.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1).min(segments.len()) {
            scope.spawn(|| {
                let Ok(file) = File::open(path) else { return };
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(mut pos, end)) = segments.get(i) else {
                        break;
                    };
                    let mut count = 0u64;
                    let result = loop {
                        if pos >= end {
                            break Ok(count);
                        }
                        let want = ((end - pos) as usize).min(buf.len());
                        match file.read_at(&mut buf[..want], pos) {
                            Ok(0) => break Ok(count),
                            Ok(n) => {
                                count += memchr::memchr_iter(b'"', &buf[..n]).count() as u64;
                                pos += n as u64;
                            }
                            Err(e) => break Err(format!("cannot read {}: {e}", path.display())),
                        }
                    };
                    *results[i].lock().expect("no poisoning") = Some(result);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner().expect("no poisoning").unwrap_or_else(|| Err(format!("cannot read {}", path.display())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! Splitting the input into regions: validate every record, infer column
//! types, reject what cannot be read, and spool each region's records (in
//! the input's own format, header first) to a file of its own.
//!
//! Spool files are named by the region's index, never by its name: region
//! names come from data and must not reach a path.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::process::input::schema::{ColumnType, KeySpec, SAMPLE, check_key, check_numbers, infer_type};
use crate::process::input::{self, Flow, Format, Item, ReadError, Row, Source};
use crate::process::report::{MAX_LISTED_REJECTS, Reject};

/// One region's share of the input.
#[derive(Debug, Clone)]
pub(crate) struct RegionData {
    pub(crate) name: String,
    pub(crate) records: u64,
    /// The spool file: the header (CSV/TSV) then the region's records.
    pub(crate) spool: PathBuf,
    pub(crate) format: Format,
}

/// The outcome of partitioning.
#[derive(Debug, Clone, Default)]
pub(crate) struct Partition {
    /// Regions sorted by name.
    pub(crate) regions: Vec<RegionData>,
    /// Column types, by name (decided the first time a column is seen).
    pub(crate) types: BTreeMap<String, ColumnType>,
    /// The key column (for `--by`), never a statistics column.
    pub(crate) key: Option<String>,
    pub(crate) input_records: u64,
    pub(crate) rejected: u64,
    /// The first [`MAX_LISTED_REJECTS`] rejects, in input order.
    pub(crate) rejects: Vec<Reject>,
}

/// Bytes buffered per region before they are appended to its spool file.
const REGION_BUFFER: usize = 256 << 10;
/// Bytes buffered across all regions before everything is flushed.
const TOTAL_BUFFER: usize = 32 << 20;

pub(crate) struct Options<'a> {
    pub(crate) key: KeySpec,
    /// Format of every source; `None` guesses from each file name (CSV otherwise).
    pub(crate) format: Option<Format>,
    pub(crate) schema: &'a BTreeMap<String, ColumnType>,
    pub(crate) max_rejects: Option<u64>,
    /// Longer records are rejected unread (`--max-record-size`).
    pub(crate) max_record: u64,
    /// Where spool files go.
    pub(crate) dir: &'a Path,
}

/// Reads every source and spools its records by region.
///
/// `progress` is called with the number of records read so far, every
/// [`PROGRESS_EVERY`] records.
pub(crate) fn partition(sources: &[Source], options: &Options<'_>, progress: &mut dyn FnMut(u64)) -> Result<Partition> {
    let p = std::cell::RefCell::new(Partitioner::new(options, progress));
    for source in sources {
        let format = options.format.or_else(|| source.format_hint()).unwrap_or(Format::Csv);
        p.borrow_mut().begin_source(source, format)?;
        let name = source.display();
        let mut header_error = None;
        let max_record = usize::try_from(options.max_record).unwrap_or(usize::MAX);
        let result = input::read(
            source,
            format,
            max_record,
            &mut |header, raw| match p.borrow_mut().on_header(header, raw) {
                Ok(()) => Ok(()),
                Err(e) => {
                    let message = e.to_string();
                    header_error = Some(e);
                    Err(message)
                }
            },
            &mut |item| p.borrow_mut().on_item(item),
        );
        if let Some(e) = header_error {
            return Err(e);
        }
        match result {
            Ok(_) => {}
            Err(ReadError::Io(e)) => return Err(Error::Input(format!("cannot read {name}: {e}"))),
            Err(ReadError::Header(m)) => return Err(Error::Input(format!("{name}: {m}"))),
        }
        let mut p = p.borrow_mut();
        if let Some(e) = p.fatal.take() {
            return Err(e);
        }
        p.end_source()?;
    }
    p.into_inner().finish()
}

/// A row copied out of the reader's buffers while types are being inferred.
struct PendingRow {
    line: u64,
    sep: usize,
    raw: Vec<u8>,
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl PendingRow {
    fn row(&self) -> Row<'_> {
        Row { line: self.line, raw: &self.raw, out: &self.out, ends: &self.ends, sep: self.sep, plain: false }
    }
}

/// Bytes of rows held back for type inference at most: types come from
/// the first [`SAMPLE`] rows, or from fewer when those hold more, so that
/// long records cannot make the sample a memory hog.
const SAMPLE_BYTES: usize = 16 << 20;

/// How often partitioning reports progress, in records.
pub(crate) const PROGRESS_EVERY: u64 = 1 << 18;

struct Partitioner<'a> {
    options: &'a Options<'a>,
    progress: &'a mut dyn FnMut(u64),
    out: Partition,
    /// Region name -> index into `regions` / `buffers`.
    index: HashMap<Vec<u8>, usize>,
    buffers: Vec<Vec<u8>>,
    /// Raw header bytes each region's spool starts with.
    headers: Vec<Vec<u8>>,
    buffered: usize,
    // Per source:
    source_name: String,
    source_stem: String,
    format: Format,
    header: Vec<String>,
    header_raw: Vec<u8>,
    key_index: Option<usize>,
    /// Indices of numeric columns in the current header.
    numeric: Vec<usize>,
    pending: Option<Vec<PendingRow>>,
    /// Bytes held in `pending`.
    pending_bytes: usize,
    fatal: Option<Error>,
    /// Position of the current source, to list rejects in input order
    /// (rows held back for type inference are judged after later ones).
    source_index: usize,
    /// (source, line) of each listed reject, sorted, parallel to `out.rejects`.
    reject_order: Vec<(usize, u64)>,
}

impl<'a> Partitioner<'a> {
    fn new(options: &'a Options<'a>, progress: &'a mut dyn FnMut(u64)) -> Self {
        let key = match &options.key {
            KeySpec::Column(c) => Some(c.clone()),
            KeySpec::FileStem => None,
        };
        Partitioner {
            options,
            progress,
            out: Partition { key, ..Partition::default() },
            index: HashMap::new(),
            buffers: Vec::new(),
            headers: Vec::new(),
            buffered: 0,
            source_name: String::new(),
            source_stem: String::new(),
            format: Format::Csv,
            header: Vec::new(),
            header_raw: Vec::new(),
            key_index: None,
            numeric: Vec::new(),
            pending: None,
            pending_bytes: 0,
            fatal: None,
            source_index: 0,
            reject_order: Vec::new(),
        }
    }

    fn begin_source(&mut self, source: &Source, format: Format) -> Result<()> {
        self.source_index += 1;
        self.source_name = source.display();
        self.source_stem = match source {
            Source::File(p) => {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let name = name.strip_suffix(".gz").unwrap_or(&name).to_string();
                match name.rsplit_once('.') {
                    Some((stem, _)) if !stem.is_empty() => stem.to_string(),
                    _ => name,
                }
            }
            _ => String::new(),
        };
        if self.options.key == KeySpec::FileStem && self.source_stem.is_empty() {
            return Err(Error::Usage("--regions needs files (the region is the file stem); stdin has no name".into()));
        }
        self.format = format;
        self.header.clear();
        self.header_raw.clear();
        self.key_index = None;
        self.numeric.clear();
        self.pending = None;
        Ok(())
    }

    fn on_header(&mut self, header: &[String], raw: &[u8]) -> Result<()> {
        let first = self.header.is_empty();
        self.header = header.to_vec();
        if first {
            self.header_raw = raw.to_vec();
            if !raw.is_empty() && !raw.ends_with(b"\n") {
                self.header_raw.push(b'\n');
            }
        }
        if let KeySpec::Column(key) = &self.options.key {
            self.key_index = self.header.iter().position(|h| h == key);
            if self.key_index.is_none() && self.format != Format::Jsonl {
                return Err(Error::Input(format!(
                    "{}: column {key:?} (given to --by) is not in the header; {}",
                    self.source_name,
                    describe_header(&self.header)
                )));
            }
        }
        // Columns seen for the first time are typed from a sample of rows.
        let untyped = self.header.iter().any(|h| !self.out.types.contains_key(h) && Some(h) != self.out.key.as_ref());
        if untyped && first {
            self.pending = Some(Vec::new());
        } else if untyped && self.pending.is_none() {
            // Columns appearing late in JSON Lines: numbers only if --schema says so.
            for h in &self.header {
                let t = self.options.schema.get(h).copied().unwrap_or(ColumnType::Text);
                self.out.types.entry(h.clone()).or_insert(t);
            }
        }
        self.update_numeric();
        Ok(())
    }

    fn update_numeric(&mut self) {
        self.numeric = (0..self.header.len())
            .filter(|&i| Some(i) != self.key_index && self.out.types.get(&self.header[i]) == Some(&ColumnType::Number))
            .collect();
    }

    fn on_item(&mut self, item: Item<'_>) -> Flow {
        self.out.input_records += 1;
        if self.out.input_records.is_multiple_of(65536) {
            if crate::process::workers::local::interrupted() {
                self.fatal = Some(Error::Input("interrupted while reading the input; nothing was processed".into()));
                return Flow::Stop;
            }
            if self.out.input_records.is_multiple_of(PROGRESS_EVERY) {
                (self.progress)(self.out.input_records);
            }
        }
        match item {
            Item::Bad(bad) => self.reject(bad.line, bad.reason),
            Item::Row(row) => {
                if let Some(pending) = &mut self.pending {
                    self.pending_bytes += row.raw.len() + row.out.len();
                    pending.push(PendingRow {
                        line: row.line,
                        sep: row.sep,
                        raw: row.raw.to_vec(),
                        out: row.out.to_vec(),
                        ends: row.ends.to_vec(),
                    });
                    if pending.len() >= SAMPLE || self.pending_bytes >= SAMPLE_BYTES {
                        self.infer_and_replay();
                    }
                    Flow::Continue
                } else {
                    self.accept(&row)
                }
            }
        }
    }

    fn infer_and_replay(&mut self) {
        let Some(rows) = self.pending.take() else {
            return;
        };
        self.pending_bytes = 0;
        for (i, name) in self.header.iter().enumerate() {
            if self.out.types.contains_key(name) || Some(i) == self.key_index {
                continue;
            }
            let t = self
                .options
                .schema
                .get(name)
                .copied()
                .unwrap_or_else(|| infer_type(rows.iter().filter_map(|r| r.row().field(i))));
            self.out.types.insert(name.clone(), t);
        }
        self.update_numeric();
        for r in &rows {
            let row = r.row();
            if self.accept(&row) == Flow::Stop {
                return;
            }
        }
    }

    fn reject(&mut self, line: u64, reason: String) -> Flow {
        self.out.rejected += 1;
        // Rejects arrive out of order (rows held back to infer column types
        // are checked later): keep the first ones by position, sorted.
        let at = (self.source_index, line);
        let full = self.out.rejects.len() >= MAX_LISTED_REJECTS;
        if !full || self.reject_order.last().is_some_and(|&last| at < last) {
            let i = self.reject_order.partition_point(|&o| o < at);
            self.reject_order.insert(i, at);
            self.out.rejects.insert(i, Reject { file: self.source_name.clone(), line, reason });
            self.reject_order.truncate(MAX_LISTED_REJECTS);
            self.out.rejects.truncate(MAX_LISTED_REJECTS);
        }
        match self.options.max_rejects {
            Some(max) if self.out.rejected > max => {
                let first: Vec<String> =
                    self.out.rejects.iter().take(3).map(|r| format!("{}:{}: {}", r.file, r.line, r.reason)).collect();
                self.fatal = Some(Error::Input(format!(
                    "stopped after {} rejected records (more than --max-rejects {max}) out of {} read; first: {}",
                    self.out.rejected,
                    self.out.input_records,
                    first.join("; ")
                )));
                Flow::Stop
            }
            _ => Flow::Continue,
        }
    }

    /// Validates a row and appends it to its region's buffer.
    fn accept(&mut self, row: &Row<'_>) -> Flow {
        let key = match &self.options.key {
            KeySpec::FileStem => Ok(self.source_stem.as_bytes()),
            KeySpec::Column(name) => check_key(row, self.key_index, name),
        };
        let key = match key.and_then(|k| check_numbers(row, &self.numeric, &self.header).map(|()| k)) {
            Ok(key) => key,
            Err(reason) => return self.reject(row.line, reason),
        };
        let key = key.to_vec();
        let index = match self.index.get(&key) {
            Some(&i) => i,
            None => match self.new_region(key) {
                Ok(i) => i,
                Err(e) => {
                    self.fatal = Some(e);
                    return Flow::Stop;
                }
            },
        };
        if self.headers[index] != self.header_raw {
            self.fatal = Some(Error::Input(format!(
                "{}: its header differs from the header of an earlier file holding region {:?}; all files of a region need the same columns",
                self.source_name, self.out.regions[index].name
            )));
            return Flow::Stop;
        }
        self.out.regions[index].records += 1;
        let buf = &mut self.buffers[index];
        buf.extend_from_slice(row.raw);
        self.buffered += row.raw.len();
        if !row.raw.ends_with(b"\n") {
            buf.push(b'\n');
            self.buffered += 1;
        }
        let result = if buf.len() >= REGION_BUFFER {
            self.flush(index)
        } else if self.buffered >= TOTAL_BUFFER {
            self.flush_all()
        } else {
            Ok(())
        };
        if let Err(e) = result {
            self.fatal = Some(e);
            return Flow::Stop;
        }
        Flow::Continue
    }

    fn new_region(&mut self, key: Vec<u8>) -> Result<usize> {
        let name = String::from_utf8(key.clone()).map_err(|_| Error::Input("region key is not UTF-8".into()))?;
        let index = self.out.regions.len();
        let spool = self.options.dir.join(format!("region-{index}.{}", self.format.extension()));
        self.out.regions.push(RegionData { name, records: 0, spool, format: self.format });
        self.index.insert(key, index);
        self.buffers.push(self.header_raw.clone());
        self.buffered += self.header_raw.len();
        self.headers.push(self.header_raw.clone());
        Ok(index)
    }

    fn flush(&mut self, index: usize) -> Result<()> {
        let buf = &mut self.buffers[index];
        if buf.is_empty() {
            return Ok(());
        }
        let path = &self.out.regions[index].spool;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        file.write_all(buf).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        self.buffered -= buf.len();
        buf.clear();
        if buf.capacity() > REGION_BUFFER * 2 {
            buf.shrink_to(REGION_BUFFER);
        }
        Ok(())
    }

    fn flush_all(&mut self) -> Result<()> {
        for i in 0..self.buffers.len() {
            self.flush(i)?;
        }
        Ok(())
    }

    fn end_source(&mut self) -> Result<()> {
        if self.pending.is_some() {
            self.infer_and_replay();
        }
        if let Some(e) = self.fatal.take() {
            return Err(e);
        }
        if let (KeySpec::Column(key), None, Format::Jsonl) = (&self.options.key, self.key_index, self.format)
            && self.out.input_records > self.out.rejected
        {
            return Err(Error::Input(format!("{}: no record has the key {key:?} given to --by", self.source_name)));
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Partition> {
        self.flush_all()?;
        let mut out = self.out;
        out.regions.sort_by(|a, b| a.name.cmp(&b.name));
        // `rejects` is kept sorted by position (see `reject`).
        Ok(out)
    }
}

/// The columns of a header, for an error message - unless the first line
/// does not look like a header (one column, or very long or odd names), as
/// when the input is not a table at all (`/etc/shadow`): then its content
/// is never echoed, only its shape.
fn describe_header(header: &[String]) -> String {
    let plausible = header.len() >= 2
        && header.iter().all(|h| h.chars().count() <= 64 && !h.chars().any(|c| c.is_control() || c == '$'));
    if plausible {
        format!("columns: {}", header.join(", "))
    } else {
        format!(
            "its first line does not look like a header ({} column(s); not shown): is this a table in the format given?",
            header.len()
        )
    }
}

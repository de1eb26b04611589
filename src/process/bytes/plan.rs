//! Planning the byte-range path: read the head of every input file (its
//! header and a sample of rows, to infer column types), then cut each file
//! into byte ranges that start on record boundaries, one scan worker each.
//!
//! A cut lands near every multiple of the part size, on a line break at
//! even quote parity; the parity is read off the quotes near the cut
//! ([`local_parity`]), or counted from the start of the file by several
//! threads when the bytes around it do not decide.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::process::input::schema::{ColumnType, SAMPLE, infer_type};
use crate::process::input::{self, Flow, Format, Item};

/// One byte range of one file.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub(crate) file: PathBuf,
    /// Index of the file among the inputs.
    pub(crate) file_index: usize,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// How the fast path will run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) header: Vec<String>,
    pub(crate) key: usize,
    #[cfg(test)]
    pub(crate) types: BTreeMap<String, ColumnType>,
    pub(crate) numeric: Vec<usize>,
    pub(crate) parts: Vec<Part>,
    /// Line of each file where its first data record may start (after the header).
    pub(crate) first_line: Vec<u64>,
    /// Distinct regions among the rows sampled from each file's head.
    pub(crate) sampled_regions: usize,
}

/// Bytes read from the start of each file to find the header and sample
/// types: a first read of [`HEAD`] (a thousand rows of 100 bytes fit in
/// it), and up to [`LONG_HEAD`] when that did not hold the header and the
/// sample. Fresh memory costs a page fault per 4 KB, and everything waits
/// for the plan.
pub(super) const HEAD: usize = 256 << 10;
const LONG_HEAD: usize = 4 << 20;

/// Distinct keys among the sampled rows (up to a thousand per file) from
/// which the planner expects thousands of regions (see [`plan`]).
const MANY_REGIONS_SAMPLED: usize = 500;

/// Plans byte ranges for `files`, or returns `None` when the fast path does
/// not apply (compressed input, differing headers, a header the planner
/// cannot place) and the region path should be used instead.
pub(crate) fn plan(
    files: &[PathBuf],
    names: &[String],
    format: Format,
    key: &str,
    schema: &BTreeMap<String, ColumnType>,
    jobs: usize,
    part_size: Option<u64>,
) -> Result<Option<Plan>, String> {
    let Some(heads) = read_heads(files, names, format, key, schema)? else {
        return Ok(None);
    };
    let Heads { header, types, header_ends, header_lines, sizes, sampled_keys } = heads;
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
    Ok(Some(Plan {
        header,
        key: key_index,
        #[cfg(test)]
        types,
        numeric,
        parts,
        first_line: header_lines,
        sampled_regions: sampled_keys.len(),
    }))
}

/// What the heads of all the files say, when they share one header that
/// holds the key column.
struct Heads {
    header: Vec<String>,
    /// The type of every column but the key: `--schema`'s, else inferred
    /// from the first file's sample.
    types: BTreeMap<String, ColumnType>,
    /// Per file: the offset where its header ends, the line where its data
    /// starts, and its size.
    header_ends: Vec<u64>,
    header_lines: Vec<u64>,
    sizes: Vec<u64>,
    /// The keys of the rows sampled from every file.
    sampled_keys: HashSet<Vec<u8>>,
}

/// Reads the head of every file; `None` when one is unusable for the byte
/// path (see [`sample_head`]), the headers differ, or the first lacks the
/// key column.
fn read_heads(
    files: &[PathBuf],
    names: &[String],
    format: Format,
    key: &str,
    schema: &BTreeMap<String, ColumnType>,
) -> Result<Option<Heads>, String> {
    let mut heads: Option<Heads> = None;
    for (path, name) in files.iter().zip(names) {
        let Some((Head { header_end, names, sample }, header_lines, size)) = read_head(path, name, format)? else {
            return Ok(None);
        };
        let heads = match &mut heads {
            None => {
                let Some(k) = names.iter().position(|h| h == key) else {
                    return Ok(None);
                };
                let types = column_types(&names, k, &sample, schema);
                heads.insert(Heads {
                    header: names,
                    types,
                    header_ends: Vec::new(),
                    header_lines: Vec::new(),
                    sizes: Vec::new(),
                    sampled_keys: HashSet::new(),
                })
            }
            Some(h) if h.header != names => return Ok(None),
            Some(h) => h,
        };
        let k = heads.header.iter().position(|c| c == key).expect("checked");
        heads.sampled_keys.extend(sample.iter().filter_map(|r| r.get(k).cloned()));
        heads.header_lines.push(header_lines);
        heads.header_ends.push(header_end as u64);
        heads.sizes.push(size);
    }
    Ok(heads)
}

/// The [`Head`] of the file at `path` (`name` as the user gave it), the
/// line where its data starts, and its size: [`HEAD`] bytes are read, up
/// to [`LONG_HEAD`] when they hold no header and full sample.
fn read_head(path: &Path, name: &str, format: Format) -> Result<Option<(Head, u64, u64)>, String> {
    let file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let size = file.metadata().map_err(|e| format!("cannot read {}: {e}", path.display()))?.len();
    let read_head = |len: usize| -> Result<Vec<u8>, String> {
        let mut head = vec![0u8; len.min(size as usize)];
        file.read_exact_at(&mut head, 0).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(head)
    };
    let mut head = read_head(HEAD)?;
    let unusable = |m: String| format!("{name}: {m}");
    let mut sampled = sample_head(&head, format).map_err(unusable)?;
    if head.len() < size as usize && sampled.as_ref().is_none_or(|s| s.sample.len() < SAMPLE) {
        head = read_head(LONG_HEAD)?;
        sampled = sample_head(&head, format).map_err(unusable)?;
    }
    Ok(sampled.map(|sampled| {
        let header_lines = 1 + memchr::memchr_iter(b'\n', &head[..sampled.header_end]).count() as u64;
        (sampled, header_lines, size)
    }))
}

/// The type of every column but the key (`key`): `--schema`'s, else
/// inferred from the sampled rows that have every field.
fn column_types(
    names: &[String],
    key: usize,
    sample: &[Vec<Vec<u8>>],
    schema: &BTreeMap<String, ColumnType>,
) -> BTreeMap<String, ColumnType> {
    let mut types = BTreeMap::new();
    for (i, name) in names.iter().enumerate().filter(|&(i, _)| i != key) {
        let t = schema
            .get(name)
            .copied()
            .unwrap_or_else(|| infer_type(sample.iter().filter(|r| r.len() == names.len()).map(|r| r[i].as_slice())));
        types.insert(name.clone(), t);
    }
    types
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
        usize::MAX,
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
    let file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let parity =
        if quoting { quote_parities(&file, path, start, size, &targets, threads)? } else { vec![false; targets.len()] };
    let mut cuts = Vec::new();
    // A record boundary is usually within a few hundred bytes.
    let mut buf = vec![0u8; 64 << 10];
    for (target, odd) in targets.into_iter().zip(parity) {
        if let Some(cut) = next_boundary(&file, path, &mut buf, target, odd, size, quoting)? {
            cuts.push(cut);
        }
    }
    cuts.dedup();
    Ok(cuts)
}

/// Quote parity at each target: read off the bytes around it when they
/// tell (see [`local_parity`]; 64 KB around a cut usually tell, up to
/// 1 MB when they do not), else counted over `[start, target)` on
/// `threads` threads: a whole extra pass over the file.
fn quote_parities(
    file: &File,
    path: &Path,
    start: u64,
    size: u64,
    targets: &[u64],
    threads: usize,
) -> Result<Vec<bool>, String> {
    let mut buf = Vec::new();
    let local = targets
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
        .collect::<Result<Option<Vec<bool>>, String>>()?;
    if let Some(local) = local {
        return Ok(local);
    }
    let mut bounds = vec![start];
    bounds.extend(targets);
    let segments: Vec<(u64, u64)> = bounds.windows(2).map(|w| (w[0], w[1])).collect();
    let counts = count_quotes_parallel(path, &segments, threads)?;
    let mut odd = false;
    Ok(counts
        .iter()
        .map(|c| {
            odd ^= c % 2 == 1;
            odd
        })
        .collect())
}

/// The first record boundary after `target` (just past a line break
/// outside quotes, `inside` quotes at `target` when `odd`), reading
/// through `buf`; `None` when the file ends first.
fn next_boundary(
    file: &File,
    path: &Path,
    buf: &mut [u8],
    target: u64,
    odd: bool,
    size: u64,
    quoting: bool,
) -> Result<Option<u64>, String> {
    let (mut pos, mut inside) = (target, odd);
    while pos < size {
        let n = file.read_at(buf, pos).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        let stops: Vec<usize> = if quoting {
            memchr::memchr2_iter(b'"', b'\n', &buf[..n]).collect()
        } else {
            memchr::memchr_iter(b'\n', &buf[..n]).collect()
        };
        for i in stops {
            match buf[i] {
                b'"' => inside = !inside,
                _ if !inside => return Ok(Some(pos + i as u64 + 1)),
                _ => {}
            }
        }
        pos += n as u64;
    }
    Ok(None)
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
pub(super) fn local_parity(buf: &[u8]) -> Option<bool> {
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

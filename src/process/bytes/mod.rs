//! Coordinating the byte-range path (`--split bytes`, or `auto` on large
//! plain files): one isolated `distex __worker scan` per range of a file,
//! then an exact merge of the per-region accumulators they print (in the
//! binary format of [`wire`]), part by part as they finish and in a
//! fixed order ([`merge`]).
//!
//! The tasks are the ranges that really ran (`process-part-<n>`) and
//! `aggregate-results`, blocked by all of them. When a part fails even
//! after its retries, the coordinator re-reads that range itself only to
//! count its records, so the accounting stays exact and the regions that
//! had records there are reported as failed.
//!
//! The parts: [`plan()`] cuts the files into ranges; each range is read by a
//! [`scan`] worker (a [`structural`] index of each chunk, then every
//! record's key looked up in its [`region_table`]), which prints its
//! per-region accumulators in the [`wire`] format; the coordinator
//! [`merge`]s them, with the allocator tuned by [`crate::sys::alloc`].

pub(crate) mod merge;
pub(crate) mod plan;
pub(crate) mod region_table;
pub(crate) mod scan;
pub(crate) mod structural;
pub(crate) mod wire;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::process::input::{Format, Source};
use crate::process::report::Totals;
use crate::process::report::{MAX_LISTED_REJECTS, Reject};
use crate::process::workers::local::Program;
use crate::process::workers::pool::{self, Unit};
use crate::process::{Accounting, ProcessOptions, ProcessReport, RegionReport};
use crate::sys::alloc;
use crate::tasks::{Event, Reporter, TaskList, TaskStatus};
use merge::{Regions, TreeMerge};
use plan::Plan;
use scan::ScanSpec;
use wire::ScanResult;

/// From this many accumulators in a part's result (about a thousand
/// regions), the heap that decoding the next one takes is made resident
/// before it arrives ([`alloc::prefault_heap`]).
const PREFAULT_FROM: usize = 4096;

/// How the byte path ended.
pub(crate) enum Bytes {
    Done(ProcessReport),
    /// It ran but its boundaries cannot be trusted (a stray quote); use the
    /// region path and add this warning.
    Fallback(String),
}

/// The byte ranges to scan, with what the coordinator needs to run them.
pub(crate) struct Planned {
    pub(crate) plan: Plan,
    /// The files' names as the user gave them (for rejects and messages).
    names: Vec<String>,
    format: Format,
    /// Bytes in all the files.
    pub(crate) total: u64,
}

/// Plans byte ranges over `sources`, keyed by column `key`; `Ok(Err(why))`
/// when the byte path cannot read them (the caller decides whether that
/// is an error: see [`crate::process`]'s `choose_split`).
/// `jobs` is how many workers will read them at once (parts are sized for it).
pub(crate) fn plan(
    options: &ProcessOptions,
    sources: &[Source],
    key: &str,
    jobs: usize,
) -> Result<std::result::Result<Planned, &'static str>> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut format = None;
    for s in sources {
        let (Source::File(p) | Source::Copy { path: p, .. }) = s else {
            return Ok(Err("needs files or stdin (not --demo)"));
        };
        let f = options.format.or_else(|| s.format_hint()).unwrap_or(Format::Csv);
        if f == Format::Jsonl || format.is_some_and(|g| g != f) {
            return Ok(Err("needs CSV or TSV files, all in the same format"));
        }
        format = Some(f);
        files.push(p.clone());
        names.push(s.display());
    }
    let format = format.unwrap_or(Format::Csv);
    let plan =
        plan::plan(&files, &names, format, key, &options.schema, jobs, options.part_size).map_err(Error::Input)?;
    let Some(plan) = plan else {
        return Ok(Err("needs files with the same header, holding the --by column"));
    };
    let total: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    Ok(Ok(Planned { plan, names, format, total }))
}

/// What every phase of a byte-path run shares.
struct Run<'a> {
    options: &'a ProcessOptions,
    plan: &'a Plan,
    /// The files' names as the user gave them.
    names: &'a [String],
    run_dir: &'a Path,
    /// Where the scan workers run: this machine, or a Slurm node that
    /// reads the files in place.
    targets: &'a [pool::Target],
    started: Instant,
    jobs: usize,
    /// One scan spec per part, in plan order.
    specs: Vec<ScanSpec>,
    /// Task ids of the parts, then of `aggregate-results`.
    ids: Vec<String>,
    aggregate_id: String,
}

impl Run<'_> {
    fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The pool of this run's workers, on `targets`.
    fn pool<'t>(&'t self, targets: &'t [pool::Target]) -> pool::Pool<'t> {
        pool::Pool { options: self.options, run_dir: self.run_dir, started: self.started, targets }
    }
}

/// Runs the planned byte ranges: the scan workers, their results merged as
/// they arrive, the failed parts re-counted, the boundaries checked, and
/// the report.
pub(crate) fn run(
    options: &ProcessOptions,
    planned: &Planned,
    run_dir: &Path,
    targets: &[pool::Target],
    started: Instant,
    reporter: &mut dyn Reporter,
) -> Result<Bytes> {
    // Only here: a few workers, and megabytes of results to decode and merge.
    // (With a worker per region, starting thousands of them measured slower.)
    alloc::keep_freed_memory();
    let plan = &planned.plan;
    let n = plan.parts.len();
    let run = Run {
        options,
        plan,
        names: &planned.names,
        run_dir,
        targets,
        started,
        jobs: crate::process::jobs(options),
        specs: scan_specs(options, plan, planned.format),
        ids: (1..=n).map(|i| i.to_string()).collect(),
        aggregate_id: (n + 1).to_string(),
    };
    let mut tasks = TaskList::new();
    let units = units(&run, &mut tasks);
    reporter.report(&Event::RunStarted { run: "process".into(), tasks: tasks.len() });
    let (parsed, mut merged, mut warnings) = scan_and_merge(&run, &units, &mut tasks, reporter);
    let results = recount_failed(&run, parsed, &mut tasks)?;
    if let Some(message) = misplaced_boundary(&run, &results) {
        reporter.report(&Event::Warning { message: message.clone() });
        return Ok(Bytes::Fallback(message));
    }
    let (mut accounting, rejects, failed_records) = account(&run, &results)?;
    let (regions, ok) = region_reports(&mut merged, &failed_records, &mut accounting);
    let totals = aggregate(&run, &merged, &ok, &mut tasks, reporter);
    let complete = tasks.iter().all(|t| t.status == TaskStatus::Completed);
    let elapsed_ms = run.ms();
    reporter.report(&Event::RunFinished {
        completed: tasks.count(TaskStatus::Completed),
        failed: tasks.count(TaskStatus::Failed),
        elapsed_ms,
    });
    warnings.retain(|w| !w.is_empty());
    Ok(Bytes::Done(ProcessReport {
        tasks: tasks.into_vec(),
        regions,
        totals,
        accounting,
        rejects,
        complete,
        warnings,
        collected_processes: 0,
        workdir: None,
        elapsed_ms,
    }))
}

/// What each scan worker is told.
fn scan_specs(options: &ProcessOptions, plan: &Plan, format: Format) -> Vec<ScanSpec> {
    plan.parts
        .iter()
        .map(|p| ScanSpec {
            file: std::path::absolute(&p.file).unwrap_or_else(|_| p.file.clone()),
            start: p.start,
            end: p.end,
            format,
            header: plan.header.clone(),
            key: plan.key,
            numeric: plan.numeric.clone(),
            max_rejects: options.max_rejects,
            max_record: options.max_record_size,
        })
        .collect()
}

/// One unit (and task) per part, then `aggregate-results` blocked by all.
fn units(run: &Run<'_>, tasks: &mut TaskList) -> Vec<Unit<ScanResult>> {
    let units: Vec<Unit<ScanResult>> = run
        .specs
        .iter()
        .enumerate()
        .map(|(i, spec)| Unit {
            task_id: run.ids[i].clone(),
            subject: format!("process-part-{}", i + 1),
            program: Program::Builtin { kind: "scan", spec: serde_json::to_string(spec).expect("spec serializes") },
            stdin: PathBuf::from("/dev/null"),
            env: vec![],
            records: None,
            size: spec.end - spec.start,
            read: read_scan,
        })
        .collect();
    for u in &units {
        tasks.add(u.task_id.clone(), u.subject.clone(), vec![]);
    }
    tasks.add(run.aggregate_id.clone(), "aggregate-results", run.ids.clone());
    units
}

/// A part's result as it arrived, or why it is unusable.
type Parsed = std::result::Result<ScanResult, String>;

/// Runs the scan workers. Every part's result is read as soon as its worker
/// ends and its regions merged while the other parts still run, so that
/// little is left to do after the last one. The merge tree is fixed (runs
/// of contiguous parts, one per job), so the result does not depend on
/// which part finished first.
fn scan_and_merge(
    run: &Run<'_>,
    units: &[Unit<ScanResult>],
    tasks: &mut TaskList,
    reporter: &mut dyn Reporter,
) -> (Vec<Parsed>, Regions, Vec<String>) {
    let plan = run.plan;
    let n = plan.parts.len();
    let columns: Vec<String> = plan.numeric.iter().map(|&c| plan.header[c].clone()).collect();
    let mut tree = TreeMerge::new(n, run.jobs, columns.clone());
    let mut arrived = 0;
    let mut parsed: Vec<Parsed> = (0..n).map(|_| Err(String::new())).collect();
    let warnings = pool::run_units_into(&run.pool(run.targets), units, tasks, reporter, &mut |i, outcome| {
        let result = read_part(outcome, &columns).map(|mut r| {
            let accs = r.regions.accs.len();
            tree.add(i, Some(std::mem::take(&mut r.regions)));
            arrived += 1;
            if arrived < n && accs >= PREFAULT_FROM {
                // The next result is about as large as this one.
                alloc::prefault_heap(accs * std::mem::size_of::<crate::process::stats::Accumulator>() * 5 / 4);
            }
            r
        });
        if result.is_err() {
            tree.add(i, None);
        }
        let verdict = result.as_ref().map(|_| ()).map_err(String::clone);
        parsed[i] = result;
        verdict
    });
    (parsed, tree.finish(), warnings)
}

/// Re-counts failed parts in-process, so the accounting stays exact; each
/// comes back with the reason it failed.
fn recount_failed(
    run: &Run<'_>,
    parsed: Vec<Parsed>,
    tasks: &mut TaskList,
) -> Result<Vec<(ScanResult, Option<String>)>> {
    let mut results: Vec<(ScanResult, Option<String>)> = Vec::with_capacity(parsed.len());
    for (i, parsed) in parsed.into_iter().enumerate() {
        match parsed {
            Ok(r) => results.push((r, None)),
            Err(_) if crate::process::workers::local::interrupted() => {
                return Err(Error::Input("interrupted; nothing was aggregated".into()));
            }
            Err(reason) => {
                let counted = scan::scan(&run.specs[i], scan::Reading::Copied)
                    .map_err(|e| Error::Input(format!("re-reading failed part {}: {e}", i + 1)))?;
                if tasks.get(&run.ids[i]).is_some_and(|t| t.status != TaskStatus::Failed) {
                    tasks.fail(&run.ids[i], reason.clone(), run.ms());
                }
                results.push((counted, Some(reason)));
            }
        }
    }
    Ok(results)
}

/// Boundaries are only trustworthy when every record had balanced quotes
/// and every cut had an even number of quotes before it in its file (the
/// planner inferred the quote parity at each cut from the bytes around it).
/// Returns the warning that sends the run to the region path when not.
fn misplaced_boundary(run: &Run<'_>, results: &[(ScanResult, Option<String>)]) -> Option<String> {
    let parts = &run.plan.parts;
    let stopped = results.iter().any(|(r, _)| r.stopped);
    let mut quotes_before = 0u64;
    for (i, (r, _)) in results.iter().enumerate() {
        let first_of_file = i == 0 || parts[i - 1].file_index != parts[i].file_index;
        if first_of_file {
            quotes_before = 0;
        }
        let misplaced_cut = !stopped && quotes_before % 2 == 1;
        quotes_before += r.quotes;
        let last_of_file = parts.get(i + 1).is_none_or(|next| next.file_index != parts[i].file_index);
        if r.odd_quote_records > 0 || misplaced_cut || (r.unterminated_last && !last_of_file) {
            return Some(format!(
                "{} has a quote inside an unquoted field, so it cannot be split by byte ranges safely; it was re-read sequentially, one worker per region",
                run.names[parts[i].file_index]
            ));
        }
    }
    None
}

/// Records of failed parts, by region: how many, and why.
type FailedRecords = BTreeMap<String, (u64, Vec<String>)>;

/// The accounting and the first rejects (with absolute line numbers: each
/// part starts where the previous one ended), and which regions lost
/// records to failed parts; an input error past `--max-rejects`.
fn account(
    run: &Run<'_>,
    results: &[(ScanResult, Option<String>)],
) -> Result<(Accounting, Vec<Reject>, FailedRecords)> {
    let plan = run.plan;
    let mut first_lines = Vec::with_capacity(results.len());
    let mut line = 0u64;
    for (i, (r, _)) in results.iter().enumerate() {
        if i == 0 || plan.parts[i].file_index != plan.parts[i - 1].file_index {
            line = plan.first_line[plan.parts[i].file_index];
        }
        first_lines.push(line);
        line += r.newlines;
    }

    let mut accounting = Accounting::default();
    let mut rejects: Vec<(usize, u64, Reject)> = Vec::new();
    let mut failed_records = FailedRecords::new();
    for (i, (r, failure)) in results.iter().enumerate() {
        accounting.input_records += r.records;
        accounting.rejected += r.rejected;
        for (rel, reason) in &r.rejects {
            let file = run.names[plan.parts[i].file_index].clone();
            rejects.push((
                plan.parts[i].file_index,
                first_lines[i] + rel - 1,
                Reject { file, line: first_lines[i] + rel - 1, reason: reason.clone() },
            ));
        }
        // Completed parts were merged above (their tables are empty now).
        if let Some(reason) = failure {
            for (name, &records) in r.regions.names.iter().zip(&r.regions.records) {
                accounting.in_failed_regions += records;
                let entry = failed_records.entry(name.clone()).or_default();
                entry.0 += records;
                entry.1.push(format!("part {} failed: {reason}", i + 1));
            }
        }
    }
    rejects.sort_by_key(|(f, l, _)| (*f, *l));
    if let Some(max) = run.options.max_rejects
        && accounting.rejected > max
    {
        let first: Vec<String> =
            rejects.iter().take(3).map(|(_, _, r)| format!("{}:{}: {}", r.file, r.line, r.reason)).collect();
        return Err(Error::Input(format!(
            "stopped after {} rejected records (more than --max-rejects {max}) out of {} read; first: {}",
            accounting.rejected,
            accounting.input_records,
            first.join("; ")
        )));
    }
    rejects.truncate(MAX_LISTED_REJECTS);
    Ok((accounting, rejects.into_iter().map(|(_, _, r)| r).collect(), failed_records))
}

/// The report, by region name, and the regions that go into the totals. A
/// region is failed as a whole when any of its records were lost: its
/// processed records count as in_failed_regions too, and it is left out of
/// the totals.
fn region_reports(
    merged: &mut Regions,
    failed_records: &FailedRecords,
    accounting: &mut Accounting,
) -> (BTreeMap<String, RegionReport>, Vec<usize>) {
    let failed: Vec<bool> = merged.names.iter().map(|name| failed_records.contains_key(name)).collect();
    let ok: Vec<usize> = (0..merged.len()).filter(|&r| !failed[r]).collect();
    for (&records, &failed) in merged.records.iter().zip(&failed) {
        if failed {
            accounting.in_failed_regions += records;
        } else {
            accounting.processed += records;
        }
    }
    let error = |f: &(u64, Vec<String>)| format!("{} of its records were not processed: {}", f.0, f.1.join("; "));
    // On this thread: threads would contend for the one malloc arena (see
    // `sys::alloc`), and a thread with an arena of its own starts on fresh
    // pages; both measured slower at 10,000 regions.
    let stats = merged.summaries();
    // `merged` is in name order: the map is built from a sorted run.
    let mut regions: BTreeMap<String, RegionReport> = std::mem::take(&mut merged.names)
        .into_iter()
        .zip(stats)
        .enumerate()
        .map(|(r, (name, stats))| {
            let lost = failed_records.get(&name);
            let report = RegionReport {
                task: None,
                records: merged.records[r] + lost.map_or(0, |f| f.0),
                stats: if lost.is_none() { Some(stats) } else { None },
                result: None,
                error: lost.map(error),
            };
            (name, report)
        })
        .collect();
    for (name, failed) in failed_records {
        regions.entry(name.clone()).or_insert_with(|| RegionReport {
            task: None,
            records: failed.0,
            stats: None,
            result: None,
            error: Some(error(failed)),
        });
    }
    (regions, ok)
}

/// `aggregate-results`: the totals of the regions in `ok`, once every part
/// completed; otherwise the task fails as blocked.
fn aggregate(
    run: &Run<'_>,
    merged: &Regions,
    ok: &[usize],
    tasks: &mut TaskList,
    reporter: &mut dyn Reporter,
) -> Option<Totals> {
    pool::aggregate(&run.pool(&[]), &run.aggregate_id, tasks, reporter, || {
        let total = merged.total(ok.iter().copied());
        Ok(Totals::Summary { records: total.records, regions: ok.len() as u64, stats: total.summaries() })
    })
}

/// Reads a scan worker's output, on the pool's thread ([`pool::Unit::read`]):
/// a damaged result fails that attempt with the reason.
fn read_scan(bytes: Vec<u8>) -> std::result::Result<ScanResult, String> {
    wire::decode(&bytes).map_err(|e| format!("the worker printed an unreadable result: {e}"))
}

/// The result of one part as the pool handed it over, checked against the
/// plan's numeric columns, or the reason it is unusable.
fn read_part(outcome: pool::Outcome<ScanResult>, columns: &[String]) -> std::result::Result<ScanResult, String> {
    let result = outcome?;
    if result.regions.columns != columns {
        return Err(format!(
            "the worker summarised the columns {:?}, not {columns:?} as planned",
            result.regions.columns
        ));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(columns: &[&str]) -> ScanResult {
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        let mut regions = Regions { columns, ..Regions::default() };
        regions.names.push("north".into());
        regions.records.push(2);
        regions.accs.resize(regions.columns.len(), Default::default());
        ScanResult { regions, records: 2, ..ScanResult::default() }
    }

    /// What the task of a part says when its worker's output is not a
    /// usable result: garbage, a truncated result, other columns.
    #[test]
    fn an_unusable_result_fails_its_part_with_the_reason() {
        let planned = vec!["v".to_string()];
        let read = |bytes: Vec<u8>| read_part(read_scan(bytes), &planned).map(|r| r.records);
        assert_eq!(read(wire::encode(&result(&["v"]))), Ok(2));
        let garbage = read(b"this is not JSON\n".to_vec()).unwrap_err();
        assert!(garbage.contains("unreadable result") && garbage.contains("this is not JSON"), "{garbage}");
        let mut cut = wire::encode(&result(&["v"]));
        cut.truncate(cut.len() - 5);
        let truncated = read(cut).unwrap_err();
        assert!(truncated.contains("unreadable result") && truncated.contains("truncated"), "{truncated}");
        let other = read(wire::encode(&result(&["w"]))).unwrap_err();
        assert!(other.contains("[\"w\"]") && other.contains("[\"v\"]"), "{other}");
        let failed = read_part(Err("exited with status 1".into()), &planned).unwrap_err();
        assert_eq!(failed, "exited with status 1");
    }
}

//! Coordinating the byte-range path (`--split bytes`, or `auto` on large
//! plain files): one isolated `distex __worker scan` per range of a file,
//! then an exact merge of the per-region accumulators they print.
//!
//! The tasks are the ranges that really ran (`process-part-<n>`) and
//! `aggregate-results`, blocked by all of them. When a part fails even
//! after its retries, the coordinator re-reads that range itself only to
//! count its records, so the accounting stays exact and the regions that
//! had records there are reported as failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::input::{Format, Source};
use super::partition::{KeySpec, MAX_LISTED_REJECTS, Reject};
use super::pool::{self, Unit, status_event};
use super::scan::{self, Plan, ScanResult, ScanSpec};
use super::stats::RegionStats;
use super::worker::Program;
use super::{Accounting, ProcessOptions, ProcessReport, RegionReport, Split, aggregate};
use crate::error::{Error, Result};
use crate::tasks::{Event, Reporter, TaskList, TaskStatus};

/// Files smaller than this in total use the region path under `--split auto`.
const AUTO_MIN_BYTES: u64 = 64 << 20;

pub enum Bytes {
    /// The byte-range path does not apply; use the region path.
    NotApplicable,
    Done(ProcessReport),
    /// It ran but its boundaries cannot be trusted (a stray quote); use the
    /// region path and add this warning.
    Fallback(String),
}

/// Runs the byte-range path when it applies.
pub fn try_bytes(
    options: &ProcessOptions,
    sources: &[Source],
    key: &KeySpec,
    run_dir: &Path,
    started: Instant,
    reporter: &mut dyn Reporter,
) -> Result<Bytes> {
    let forced = options.split == Split::Bytes;
    let refuse = |why: &str| -> Result<Bytes> {
        if forced { Err(Error::Usage(format!("--split bytes {why}"))) } else { Ok(Bytes::NotApplicable) }
    };
    if options.split == Split::Regions {
        return Ok(Bytes::NotApplicable);
    }
    if options.processor.is_some() {
        return refuse("works with the built-in summary only (not with --processor)");
    }
    let KeySpec::Column(key) = key else {
        return refuse("needs INPUT files and --by (not --regions)");
    };
    let mut files: Vec<PathBuf> = Vec::new();
    let mut format = None;
    for s in sources {
        let Source::File(p) = s else {
            return refuse("needs files (not stdin or --demo)");
        };
        let f = options.format.or_else(|| Format::from_path(p)).unwrap_or(Format::Csv);
        if f == Format::Jsonl || format.is_some_and(|g| g != f) {
            return refuse("needs CSV or TSV files, all in the same format");
        }
        format = Some(f);
        files.push(p.clone());
    }
    let total: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    if !forced && total < AUTO_MIN_BYTES {
        return Ok(Bytes::NotApplicable);
    }
    let format = format.unwrap_or(Format::Csv);
    let jobs = options.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1);
    let Some(plan) = scan::plan(&files, format, key, &options.schema, jobs, options.part_size).map_err(Error::Input)?
    else {
        return refuse("needs plain (not compressed) files with the same header, holding the --by column");
    };
    run_plan(options, jobs, &plan, format, run_dir, started, reporter)
}

/// Parses the parts' results on `threads` threads and merges their
/// regions: each result comes back with its regions taken out, or the
/// reason it is unreadable.
fn read_results(
    outcomes: Vec<pool::Outcome>,
    threads: usize,
) -> (Vec<std::result::Result<ScanResult, String>>, BTreeMap<String, RegionStats>) {
    let chunk = outcomes.len().div_ceil(threads.max(1)).max(1);
    let mut outcomes = outcomes.into_iter();
    let runs: Vec<Vec<pool::Outcome>> =
        std::iter::from_fn(|| Some(outcomes.by_ref().take(chunk).collect::<Vec<_>>()).filter(|r| !r.is_empty()))
            .collect();
    let done: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs.into_iter().map(|run| scope.spawn(move || read_run(run))).collect();
        handles.into_iter().map(|h| h.join().expect("result readers do not panic")).collect()
    });
    let mut parsed = Vec::new();
    let mut merged: BTreeMap<String, RegionStats> = BTreeMap::new();
    for (run_parsed, run_merged) in done {
        parsed.extend(run_parsed);
        merge_into(&mut merged, run_merged);
    }
    (parsed, merged)
}

/// [`read_results`] of one run of parts, in order.
fn read_run(run: Vec<pool::Outcome>) -> (Vec<std::result::Result<ScanResult, String>>, BTreeMap<String, RegionStats>) {
    let mut merged = BTreeMap::new();
    let parsed = run
        .into_iter()
        .map(|outcome| {
            let mut r = outcome.and_then(|output| match output {
                pool::Output::Raw(bytes) => serde_json::from_slice::<ScanResult>(&bytes)
                    .map_err(|e| format!("the worker printed an unreadable result: {e}")),
                pool::Output::Json(_) => Err("unexpected output".to_string()),
            })?;
            merge_into(&mut merged, std::mem::take(&mut r.regions));
            Ok(r)
        })
        .collect();
    (parsed, merged)
}

fn merge_into(merged: &mut BTreeMap<String, RegionStats>, regions: BTreeMap<String, RegionStats>) {
    if merged.is_empty() {
        *merged = regions;
        return;
    }
    for (name, stats) in regions {
        match merged.get_mut(&name) {
            Some(m) => m.merge(&stats),
            None => {
                merged.insert(name, stats);
            }
        }
    }
}

fn run_plan(
    options: &ProcessOptions,
    jobs: usize,
    plan: &Plan,
    format: Format,
    run_dir: &Path,
    started: Instant,
    reporter: &mut dyn Reporter,
) -> Result<Bytes> {
    let ms = || started.elapsed().as_millis() as u64;
    let n = plan.parts.len();
    let mut tasks = TaskList::new();
    let ids: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let specs: Vec<ScanSpec> = plan
        .parts
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
        })
        .collect();
    let units: Vec<Unit> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| Unit {
            task_id: ids[i].clone(),
            subject: format!("process-part-{}", i + 1),
            program: Program::Builtin { kind: "scan", spec: serde_json::to_string(spec).expect("spec serializes") },
            stdin: PathBuf::from("/dev/null"),
            env: vec![],
            records: None,
        })
        .collect();
    for u in &units {
        tasks.add(u.task_id.clone(), u.subject.clone(), vec![]);
    }
    let aggregate_id = (n + 1).to_string();
    tasks.add(aggregate_id.clone(), "aggregate-results", ids.clone());
    reporter.report(&Event::RunStarted { run: "process".into(), tasks: tasks.len() });
    let (outcomes, mut warnings) = pool::run_units(
        options,
        run_dir,
        &units,
        &mut tasks,
        started,
        reporter,
        &[pool::Target { node: None, slots: jobs }],
    );

    // Read every part's result, merging its regions right away (so only
    // one part's maps are held at a time per thread). With many regions
    // this is real work, done after the last worker ends: `jobs` threads
    // each take a contiguous run of parts (a fixed split, so the merge
    // order and the result do not vary between runs).
    let (parsed, mut merged) = read_results(outcomes, jobs);
    // Re-count failed parts in-process.
    let mut results: Vec<(ScanResult, Option<String>)> = Vec::with_capacity(n);
    for (i, parsed) in parsed.into_iter().enumerate() {
        match parsed {
            Ok(r) => results.push((r, None)),
            Err(_) if super::worker::interrupted() => {
                return Err(Error::Input("interrupted; nothing was aggregated".into()));
            }
            Err(reason) => {
                let counted = scan::scan(&specs[i], scan::Reading::Copied)
                    .map_err(|e| Error::Input(format!("re-reading failed part {}: {e}", i + 1)))?;
                if tasks.get(&ids[i]).is_some_and(|t| t.status != TaskStatus::Failed) {
                    tasks.fail(&ids[i], reason.clone(), ms());
                }
                results.push((counted, Some(reason)));
            }
        }
    }
    // Boundaries are only trustworthy when every record had balanced quotes
    // and every cut had an even number of quotes before it in its file (the
    // planner inferred the quote parity at each cut from the bytes around it).
    let stopped = results.iter().any(|(r, _)| r.stopped);
    let mut quotes_before = 0u64;
    for (i, (r, _)) in results.iter().enumerate() {
        let first_of_file = i == 0 || plan.parts[i - 1].file_index != plan.parts[i].file_index;
        if first_of_file {
            quotes_before = 0;
        }
        let misplaced_cut = !stopped && quotes_before % 2 == 1;
        quotes_before += r.quotes;
        let last_of_file = plan.parts.get(i + 1).is_none_or(|next| next.file_index != plan.parts[i].file_index);
        if r.odd_quote_records > 0 || misplaced_cut || (r.unterminated_last && !last_of_file) {
            let message = format!(
                "{} has a quote inside an unquoted field, so it cannot be split by byte ranges safely; it was re-read sequentially, one worker per region",
                plan.parts[i].file.display()
            );
            reporter.report(&Event::Warning { message: message.clone() });
            return Ok(Bytes::Fallback(message));
        }
    }

    // Absolute line numbers: each part starts where the previous one ended.
    let mut first_lines = Vec::with_capacity(n);
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
    let mut failed_records: BTreeMap<String, (u64, Vec<String>)> = BTreeMap::new();
    for (i, (r, failure)) in results.iter().enumerate() {
        accounting.input_records += r.records;
        accounting.rejected += r.rejected;
        for (rel, reason) in &r.rejects {
            let file = plan.parts[i].file.display().to_string();
            rejects.push((
                plan.parts[i].file_index,
                first_lines[i] + rel - 1,
                Reject { file, line: first_lines[i] + rel - 1, reason: reason.clone() },
            ));
        }
        // Completed parts were merged above (their maps are empty now).
        for (name, stats) in &r.regions {
            if let Some(reason) = failure {
                accounting.in_failed_regions += stats.records;
                let entry = failed_records.entry(name.clone()).or_default();
                entry.0 += stats.records;
                entry.1.push(format!("part {} failed: {reason}", i + 1));
            }
        }
    }
    if let Some(max) = options.max_rejects
        && accounting.rejected > max
    {
        rejects.sort_by_key(|(f, l, _)| (*f, *l));
        let first: Vec<String> =
            rejects.iter().take(3).map(|(_, _, r)| format!("{}:{}: {}", r.file, r.line, r.reason)).collect();
        return Err(Error::Input(format!(
            "stopped after {} rejected records (more than --max-rejects {max}) out of {} read; first: {}",
            accounting.rejected,
            accounting.input_records,
            first.join("; ")
        )));
    }
    rejects.sort_by_key(|(f, l, _)| (*f, *l));
    rejects.truncate(MAX_LISTED_REJECTS);

    accounting.processed = merged.values().map(|s| s.records).sum();
    let mut regions = BTreeMap::new();
    let names: std::collections::BTreeSet<&String> = merged.keys().chain(failed_records.keys()).collect();
    for name in names {
        let ok = merged.get(name);
        let failed = failed_records.get(name);
        regions.insert(
            name.clone(),
            RegionReport {
                task: None,
                records: ok.map_or(0, |s| s.records) + failed.map_or(0, |f| f.0),
                stats: if failed.is_none() { ok.map(|s| s.summaries()) } else { None },
                result: None,
                error: failed.map(|f| format!("{} of its records were not processed: {}", f.0, f.1.join("; "))),
            },
        );
    }
    // A region is failed as a whole when any of its records were lost:
    // move its processed records to in_failed_regions too.
    for (name, _) in failed_records.iter() {
        if let Some(s) = merged.remove(name) {
            accounting.processed -= s.records;
            accounting.in_failed_regions += s.records;
        }
    }

    let totals = if tasks.unblocked().contains(&aggregate_id) {
        let from = tasks.transition(&aggregate_id, TaskStatus::InProgress, ms()).unwrap_or(TaskStatus::Blocked);
        if let Some(t) = tasks.get_mut(&aggregate_id) {
            t.node = Some("local".into());
        }
        reporter.report(&status_event(&tasks, &aggregate_id, from, None));
        let total = aggregate::merge_summaries(merged.values());
        let totals =
            serde_json::json!({ "records": total.records, "regions": merged.len(), "stats": total.summaries() });
        if let Some(from) = tasks.transition(&aggregate_id, TaskStatus::Completed, ms()) {
            reporter.report(&status_event(&tasks, &aggregate_id, from, None));
        }
        Some(totals)
    } else {
        pool::fail_blocked(&mut tasks, &aggregate_id, ms(), reporter);
        None
    };
    let complete = tasks.iter().all(|t| t.status == TaskStatus::Completed);
    let elapsed_ms = ms();
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
        rejects: rejects.into_iter().map(|(_, _, r)| r).collect(),
        complete,
        warnings,
        workdir: None,
        elapsed_ms,
    }))
}

//! The region path (`--split regions`, `--processor`, `--regions`,
//! `--nodes`, and `auto` on small inputs): the input is read once and
//! partitioned, each region's records spooled to a file of their own
//! ([`partition`]); one isolated worker per region (the built-in
//! [`summary`] or the user's `--processor`) runs on this machine or a
//! node; `aggregate-results`, blocked by every region task, combines the
//! results ([`aggregate`]).

pub(crate) mod aggregate;
pub(crate) mod partition;
pub(crate) mod summary;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::ProcessOptions;
use super::report::{Accounting, ProcessReport, RegionReport, Totals};
use super::workers::local::{self as worker, Job, Program};
use super::workers::pool::{self, Pool, Unit};
use crate::process::input::schema::ColumnType;
use crate::process::stats::RegionStats;
use crate::tasks::{Event, Reporter, TaskList, TaskStatus};
use partition::Partition;

/// What every phase of a region run shares.
struct Run<'a> {
    pool: &'a Pool<'a>,
    part: &'a Partition,
    /// The regions' task ids, in partition order.
    ids: Vec<String>,
    /// The task id of `aggregate-results`, after the regions'.
    aggregate_id: String,
}

/// Runs the region tasks and the aggregation; never fails as a whole.
/// Phases: the task list, the region workers, the report of each region,
/// `aggregate-results`, and the end of the run.
pub(crate) fn coordinate(pool: &Pool<'_>, part: &Partition, reporter: &mut dyn Reporter) -> ProcessReport {
    let n = part.regions.len();
    let run = Run { pool, part, ids: (1..=n).map(|i| i.to_string()).collect(), aggregate_id: (n + 1).to_string() };
    let subjects = region_subjects(part);
    let mut tasks = TaskList::new();
    for (id, subject) in run.ids.iter().zip(&subjects) {
        tasks.add(id.clone(), subject.clone(), vec![]);
    }
    tasks.add(run.aggregate_id.clone(), "aggregate-results", run.ids.clone());
    reporter.report(&Event::RunStarted { run: "process".into(), tasks: tasks.len() });

    let units = region_units(pool.options, part, &run.ids, &subjects);
    let (outcomes, warnings) = run_regions(&run, &units, &mut tasks, reporter);
    let (mut report, aggregated) = region_reports(&run, outcomes);
    report.warnings = warnings;
    report.totals = aggregate_results(&run, &aggregated, &mut tasks, &mut report.warnings, reporter);
    report.complete = tasks.iter().all(|t| t.status == TaskStatus::Completed);
    report.elapsed_ms = pool.ms();
    reporter.report(&Event::RunFinished {
        completed: tasks.count(TaskStatus::Completed),
        failed: tasks.count(TaskStatus::Failed),
        elapsed_ms: report.elapsed_ms,
    });
    report.tasks = tasks.into_vec();
    report
}

/// Runs a worker per region; the outcome of each, in partition order, and
/// the pool's warnings. A summary that does not account for every record
/// sent fails its task (it cannot happen unless the worker is broken;
/// never hide it).
fn run_regions(
    run: &Run<'_>,
    units: &[Unit<RegionOutput>],
    tasks: &mut TaskList,
    reporter: &mut dyn Reporter,
) -> (Vec<pool::Outcome<RegionOutput>>, Vec<String>) {
    let regions = &run.part.regions;
    let mut results: Vec<Option<pool::Outcome<RegionOutput>>> = vec![None; units.len()];
    let warnings = pool::run_units_into(run.pool, units, tasks, reporter, &mut |i, outcome| {
        let outcome = match outcome {
            Ok(RegionOutput::Summary(s)) if s.records != regions[i].records => {
                Err(format!("the worker counted {} records, {} were sent", s.records, regions[i].records))
            }
            outcome => outcome,
        };
        let verdict = outcome.as_ref().map(|_| ()).map_err(String::clone);
        results[i] = Some(outcome);
        verdict
    });
    // The pool hands every unit over, failed or not.
    let outcomes = results.into_iter().map(|r| r.unwrap_or_else(|| Err("not run".into()))).collect();
    (outcomes, warnings)
}

/// The report of every region and the record accounting (the rest of the
/// report is filled in later), and what `aggregate-results` combines.
fn region_reports(run: &Run<'_>, outcomes: Vec<pool::Outcome<RegionOutput>>) -> (ProcessReport, Aggregated) {
    let part = run.part;
    let mut report = ProcessReport {
        tasks: Vec::new(),
        regions: BTreeMap::new(),
        totals: None,
        accounting: Accounting { input_records: part.input_records, rejected: part.rejected, ..Accounting::default() },
        rejects: part.rejects.clone(),
        complete: false,
        warnings: Vec::new(),
        collected_processes: 0,
        workdir: None,
        elapsed_ms: 0,
    };
    let mut aggregated = Aggregated::default();
    for ((data, id), outcome) in part.regions.iter().zip(&run.ids).zip(outcomes) {
        let mut entry =
            RegionReport { task: Some(id.clone()), records: data.records, stats: None, result: None, error: None };
        match outcome {
            Ok(RegionOutput::Json(map)) => {
                report.accounting.processed += data.records;
                aggregated.region_results.insert(data.name.clone(), Value::Object(map.clone()));
                aggregated.user_results.push(map.clone());
                entry.result = Some(Value::Object(map));
            }
            Ok(RegionOutput::Summary(s)) => {
                report.accounting.processed += data.records;
                entry.stats = Some(s.summaries());
                aggregated.summaries.push(*s);
            }
            Err(reason) => {
                report.accounting.in_failed_regions += data.records;
                entry.error = Some(reason);
            }
        }
        report.regions.insert(data.name.clone(), entry);
    }
    (report, aggregated)
}

/// Builds one unit per region: the built-in summary (told the numeric
/// columns) or the user's `--processor`, its region's spool on stdin.
fn region_units(
    options: &ProcessOptions,
    part: &Partition,
    ids: &[String],
    subjects: &[String],
) -> Vec<Unit<RegionOutput>> {
    let numeric: Vec<String> = part
        .types
        .iter()
        .filter(|(name, t)| **t == ColumnType::Number && Some(*name) != part.key.as_ref())
        .map(|(n, _)| n.clone())
        .collect();
    part.regions
        .iter()
        .enumerate()
        .map(|(i, data)| Unit {
            task_id: ids[i].clone(),
            subject: subjects[i].clone(),
            program: match &options.processor {
                Some(cmd) => Program::Shell(cmd.clone()),
                None => Program::Builtin {
                    kind: "summary",
                    spec: serde_json::to_string(&summary::Spec { format: data.format, numeric: numeric.clone() })
                        .expect("spec serializes"),
                },
            },
            stdin: data.spool.clone(),
            env: vec![("DISTEX_REGION".into(), data.name.clone())],
            records: Some(data.records),
            size: std::fs::metadata(&data.spool).map_or(0, |m| m.len()),
            read: if options.processor.is_some() { read_json } else { read_summary },
        })
        .collect()
}

/// What the regions produced, as `aggregate-results` combines it.
#[derive(Default)]
struct Aggregated {
    /// The built-in summaries of the regions that completed.
    summaries: Vec<RegionStats>,
    /// `--processor`: the results of the regions that completed...
    user_results: Vec<Map<String, Value>>,
    /// ...and the same by region name, for `--aggregate`.
    region_results: BTreeMap<String, Value>,
}

/// `aggregate-results`: once every region task completed, the `--aggregate`
/// command, the sum of the processors' results (its warnings added to
/// `warnings`), or the merged summaries; otherwise the task fails as
/// blocked.
fn aggregate_results(
    run: &Run<'_>,
    aggregated: &Aggregated,
    tasks: &mut TaskList,
    warnings: &mut Vec<String>,
    reporter: &mut dyn Reporter,
) -> Option<Totals> {
    let options = run.pool.options;
    pool::aggregate(run.pool, &run.aggregate_id, tasks, reporter, || {
        if let Some(cmd) = &options.aggregate {
            let totals = run_aggregator(run, cmd, &aggregated.region_results)?;
            Ok(Totals::Result(Value::Object(totals)))
        } else if options.processor.is_some() {
            let (totals, w) = aggregate::sum_results(aggregated.user_results.iter());
            warnings.extend(w);
            Ok(Totals::Result(totals))
        } else {
            let total = aggregate::merge_summaries(aggregated.summaries.iter());
            let regions = aggregated.summaries.len() as u64;
            Ok(Totals::Summary { records: total.records, regions, stats: total.summaries() })
        }
    })
}

/// What a region's worker produced.
#[derive(Debug, Clone)]
enum RegionOutput {
    /// The JSON object a user's `--processor` printed.
    Json(Map<String, Value>),
    /// The built-in summary of the region.
    Summary(Box<RegionStats>),
}

/// Reads a `--processor`'s output: exactly one JSON object.
fn read_json(bytes: Vec<u8>) -> std::result::Result<RegionOutput, String> {
    worker::parse_output(&bytes).map(RegionOutput::Json)
}

/// Reads a built-in summary worker's output, as part of its attempt: an
/// unreadable one fails the attempt (retried per `--retries`).
fn read_summary(bytes: Vec<u8>) -> std::result::Result<RegionOutput, String> {
    serde_json::from_slice::<RegionStats>(&bytes)
        .map(|s| RegionOutput::Summary(Box::new(s)))
        .map_err(|e| format!("the worker printed an unreadable summary: {e}"))
}

/// `process-region-<name>`, lower-cased as in the seed when that keeps
/// subjects distinct. Subjects are labels: renderers escape them.
fn region_subjects(part: &Partition) -> Vec<String> {
    let lower: Vec<String> = part.regions.iter().map(|r| format!("process-region-{}", r.name.to_lowercase())).collect();
    let distinct = lower.iter().collect::<std::collections::BTreeSet<_>>().len() == lower.len();
    if distinct { lower } else { part.regions.iter().map(|r| format!("process-region-{}", r.name)).collect() }
}

/// Runs `--aggregate CMD` as an isolated worker with every region's result on stdin.
fn run_aggregator(
    run: &Run<'_>,
    cmd: &str,
    results: &BTreeMap<String, Value>,
) -> std::result::Result<Map<String, Value>, String> {
    let (options, run_dir, task_id) = (run.pool.options, run.pool.run_dir, &run.aggregate_id);
    let input = run_dir.join("aggregate-input.json");
    let body = serde_json::json!({ "regions": results });
    std::fs::write(&input, format!("{body}\n")).map_err(|e| format!("cannot write the aggregator's input: {e}"))?;
    let workdir = run_dir.join("work-aggregate");
    let job = Job {
        program: Program::Shell(cmd.to_string()),
        stdin: input,
        workdir: workdir.clone(),
        env: vec![("DISTEX_TASK_ID".into(), task_id.to_string()), ("DISTEX_ATTEMPT".into(), "1".into())],
        limits: options.limits.clone(),
        sandbox: options.sandbox,
        pass_env: crate::process::options::passed_env(options).unwrap_or_default(),
        allow_connect: options.allow_connect.clone(),
    };
    let result = worker::run(&job);
    if !options.keep_workdirs {
        worker::remove_dir(&workdir);
    }
    result.and_then(|out| worker::parse_output(&out))
}

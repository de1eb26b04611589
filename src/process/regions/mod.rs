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
use std::path::Path;
use std::time::Instant;

use serde_json::{Map, Value};

use super::ProcessOptions;
use super::report::{Accounting, ProcessReport, RegionReport};
use super::workers::local::{self as worker, Job, Program};
use super::workers::pool::{self, Unit, status_event};
use crate::process::input::schema::ColumnType;
use crate::process::stats::RegionStats;
use crate::tasks::{Event, Reporter, TaskList, TaskStatus};
use partition::Partition;

/// Runs the region tasks and the aggregation; never fails as a whole.
pub(crate) fn coordinate(
    options: &ProcessOptions,
    part: &Partition,
    run_dir: &Path,
    started: Instant,
    reporter: &mut dyn Reporter,
    targets: &[pool::Target],
) -> ProcessReport {
    let ms = || started.elapsed().as_millis() as u64;
    let mut tasks = TaskList::new();
    let subjects = region_subjects(part);
    let ids: Vec<String> = (1..=part.regions.len()).map(|i| i.to_string()).collect();
    for (id, subject) in ids.iter().zip(&subjects) {
        tasks.add(id.clone(), subject.clone(), vec![]);
    }
    let aggregate_id = (part.regions.len() + 1).to_string();
    tasks.add(aggregate_id.clone(), "aggregate-results", ids.clone());
    reporter.report(&Event::RunStarted { run: "process".into(), tasks: tasks.len() });

    let units = region_units(options, part, &ids, &subjects);
    // A summary that does not account for every record sent fails its task
    // (it cannot happen unless the worker is broken; never hide it).
    let mut results: Vec<Option<pool::Outcome<RegionOutput>>> = vec![None; units.len()];
    let warnings =
        pool::run_units_into(options, run_dir, &units, &mut tasks, started, reporter, targets, &mut |i, outcome| {
            let outcome = match outcome {
                Ok(RegionOutput::Summary(s)) if s.records != part.regions[i].records => {
                    Err(format!("the worker counted {} records, {} were sent", s.records, part.regions[i].records))
                }
                outcome => outcome,
            };
            let verdict = outcome.as_ref().map(|_| ()).map_err(String::clone);
            results[i] = Some(outcome);
            verdict
        });

    let mut report = ProcessReport {
        tasks: Vec::new(),
        regions: BTreeMap::new(),
        totals: None,
        accounting: Accounting { input_records: part.input_records, rejected: part.rejected, ..Accounting::default() },
        rejects: part.rejects.clone(),
        complete: false,
        warnings,
        collected_processes: 0,
        workdir: None,
        elapsed_ms: 0,
    };
    let mut summaries: Vec<RegionStats> = Vec::new();
    let mut user_results: Vec<Map<String, Value>> = Vec::new();
    let mut region_results: BTreeMap<String, Value> = BTreeMap::new();
    for (i, data) in part.regions.iter().enumerate() {
        let mut entry =
            RegionReport { task: Some(ids[i].clone()), records: data.records, stats: None, result: None, error: None };
        match results[i].take() {
            Some(Ok(output)) => {
                report.accounting.processed += data.records;
                match output {
                    RegionOutput::Json(map) => {
                        region_results.insert(data.name.clone(), Value::Object(map.clone()));
                        user_results.push(map.clone());
                        entry.result = Some(Value::Object(map));
                    }
                    RegionOutput::Summary(s) => {
                        entry.stats = Some(s.summaries());
                        summaries.push(*s);
                    }
                }
            }
            Some(Err(reason)) => {
                report.accounting.in_failed_regions += data.records;
                entry.error = Some(reason);
            }
            None => unreachable!("every unit has an outcome"),
        }
        report.regions.insert(data.name.clone(), entry);
    }

    // aggregate-results: runs once every region task completed.
    let aggregated = Aggregated { summaries: &summaries, user_results: &user_results, region_results: &region_results };
    aggregate_results(options, run_dir, &aggregate_id, &aggregated, &mut tasks, &mut report, reporter, &ms);
    report.complete = tasks.iter().all(|t| t.status == TaskStatus::Completed);
    let failed = tasks.count(TaskStatus::Failed);
    report.elapsed_ms = ms();
    reporter.report(&Event::RunFinished {
        completed: tasks.count(TaskStatus::Completed),
        failed,
        elapsed_ms: report.elapsed_ms,
    });
    report.tasks = tasks.into_vec();
    report
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
            read: if options.processor.is_some() { read_json } else { read_summary },
        })
        .collect()
}

/// What the regions produced, as `aggregate-results` combines it.
struct Aggregated<'a> {
    summaries: &'a [RegionStats],
    user_results: &'a [Map<String, Value>],
    region_results: &'a BTreeMap<String, Value>,
}

/// `aggregate-results`: once every region task completed, the `--aggregate`
/// command, the sum of the processors' results, or the merged summaries;
/// otherwise the task fails as blocked.
#[allow(clippy::too_many_arguments)]
fn aggregate_results(
    options: &ProcessOptions,
    run_dir: &Path,
    aggregate_id: &str,
    aggregated: &Aggregated<'_>,
    tasks: &mut TaskList,
    report: &mut ProcessReport,
    reporter: &mut dyn Reporter,
    ms: &dyn Fn() -> u64,
) {
    if pool::aggregate_ready(tasks, aggregate_id) {
        let from = tasks.transition(aggregate_id, TaskStatus::InProgress, ms()).unwrap_or(TaskStatus::Blocked);
        if let Some(t) = tasks.get_mut(aggregate_id) {
            t.node = Some("local".into());
        }
        reporter.report(&status_event(tasks, aggregate_id, from, None));
        let outcome: std::result::Result<Value, String> = if let Some(cmd) = &options.aggregate {
            run_aggregator(options, run_dir, aggregate_id, cmd, aggregated.region_results).map(Value::Object)
        } else if options.processor.is_some() {
            let (totals, w) = aggregate::sum_results(aggregated.user_results.iter());
            report.warnings.extend(w);
            Ok(totals)
        } else {
            let total = aggregate::merge_summaries(aggregated.summaries.iter());
            Ok(
                serde_json::json!({ "records": total.records, "regions": aggregated.summaries.len(), "stats": total.summaries() }),
            )
        };
        let status_from = match &outcome {
            Ok(_) => tasks.transition(aggregate_id, TaskStatus::Completed, ms()),
            Err(e) => tasks.fail(aggregate_id, e.clone(), ms()),
        };
        if let Some(from) = status_from {
            reporter.report(&status_event(tasks, aggregate_id, from, outcome.as_ref().err().cloned()));
        }
        report.totals = outcome.ok();
    } else {
        pool::fail_blocked(tasks, aggregate_id, ms(), reporter);
    }
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
    options: &ProcessOptions,
    run_dir: &Path,
    task_id: &str,
    cmd: &str,
    results: &BTreeMap<String, Value>,
) -> std::result::Result<Map<String, Value>, String> {
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

//! `distex process`: partition a dataset by region, process each region in
//! an isolated worker process, and aggregate the results exactly.
//!
//! The coordinator ([`run`]) works in three phases:
//!
//! 1. [`partition`] reads every input once, rejects what cannot be read
//!    (with file, line and reason) and spools each region's records to a
//!    private file;
//! 2. a pool of `--jobs` threads runs one isolated [`worker`] per region
//!    (the built-in [`summary`] or the user's `--processor`), retrying
//!    failed attempts with backoff;
//! 3. `aggregate-results`, blocked by every region task, combines the
//!    results ([`aggregate`]).
//!
//! Runners never print: progress goes out as [`Event`]s to a [`Reporter`],
//! and the outcome is a [`ProcessReport`] for the caller to render.

pub mod aggregate;
pub mod alloc;
pub mod cache;
pub mod copy;
pub mod input;
pub mod keys;
pub mod merge;
pub mod partition;
pub mod parts;
pub mod pool;
pub mod remote;
pub mod running;
pub mod sandbox;
pub mod scan;
pub mod stats;
pub mod structural;
pub mod summary;
pub mod wire;
pub mod worker;

/// One step of Marsaglia's xorshift64: the tests' reproducible random numbers.
#[cfg(test)]
pub(crate) fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::tasks::{Event, Reporter, Task, TaskList, TaskStatus};
use input::{Format, Source};
use partition::{ColumnType, KeySpec, Partition, Reject};
use pool::{Unit, status_event};
use stats::{ColumnMap, ColumnStats, RegionStats};
use worker::{Job, Limits, Program};

/// The demo dataset embedded in the binary (`--demo`).
pub const DEMO_CSV: &str = include_str!("demo.csv");

/// Everything `distex process` (and `{"op":"process"}`) accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessOptions {
    /// Input files (`-` is stdin), partitioned by `by`.
    pub inputs: Vec<PathBuf>,
    /// The key column that names each record's region.
    pub by: Option<String>,
    /// Already split data: files or directories of files, one region per file stem.
    pub regions: Vec<PathBuf>,
    /// Use the small dataset embedded in distex (regions A, B, C).
    pub demo: bool,
    /// Input format; guessed from file names when absent (CSV otherwise).
    pub format: Option<Format>,
    /// Column types that override inference, by column name.
    pub schema: BTreeMap<String, ColumnType>,
    /// A shell command run once per region instead of the built-in summary.
    pub processor: Option<String>,
    /// A shell command that combines every region's result (JSON on stdin).
    pub aggregate: Option<String>,
    /// Workers run in parallel (default: the number of cores).
    pub jobs: Option<usize>,
    /// Extra attempts for a failed region, with exponential backoff.
    pub retries: u32,
    /// Stop with an input error once more records than this are rejected.
    pub max_rejects: Option<u64>,
    pub limits: Limits,
    /// Landlock and a private network namespace for every worker (Linux).
    pub sandbox: bool,
    /// Keep the run directory (spools and work directories) for inspection.
    pub keep_workdirs: bool,
    /// Cluster nodes to place region workers on as well as this machine.
    pub nodes: Vec<String>,
    /// How work is split into worker processes.
    pub split: Split,
    /// Target size of a byte range with `split: bytes` (default: about four
    /// ranges per job, between 8 MiB and 256 MiB).
    pub part_size: Option<u64>,
}

/// How `distex process` splits the work into isolated workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// `bytes` for the built-in summary of plain CSV/TSV files of 64 MiB or
    /// more, `regions` otherwise.
    #[default]
    Auto,
    /// One worker per region (`process-region-<name>` tasks).
    Regions,
    /// Byte ranges of the input files scanned in parallel (`process-part-<n>`
    /// tasks); built-in summary of plain CSV/TSV files only.
    Bytes,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions {
            inputs: Vec::new(),
            by: None,
            regions: Vec::new(),
            demo: false,
            format: None,
            schema: BTreeMap::new(),
            processor: None,
            aggregate: None,
            jobs: None,
            retries: 0,
            max_rejects: None,
            limits: Limits::default(),
            sandbox: false,
            keep_workdirs: false,
            nodes: Vec::new(),
            split: Split::Auto,
            part_size: None,
        }
    }
}

/// `input_records == processed + rejected + in_failed_regions`, always.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Accounting {
    pub input_records: u64,
    /// Records of regions whose task completed.
    pub processed: u64,
    pub rejected: u64,
    /// Records of regions whose task failed.
    pub in_failed_regions: u64,
}

/// One region in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RegionReport {
    /// The region's task id (absent when byte ranges, not regions, were the tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Records the coordinator sent to the region.
    pub records: u64,
    /// Built-in summary: statistics of every numeric column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<BTreeMap<String, ColumnStats>>")]
    pub stats: Option<ColumnMap>,
    /// `--processor`: the JSON object it printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why the region failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The outcome of `distex process`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessReport {
    pub tasks: Vec<Task>,
    pub regions: BTreeMap<String, RegionReport>,
    /// Combined results; null when `aggregate-results` did not complete.
    /// Built-in summary: `{"records", "stats"}`.
    pub totals: Option<Value>,
    pub accounting: Accounting,
    /// The first rejected records (all are counted in `accounting.rejected`).
    pub rejects: Vec<Reject>,
    /// False when any task failed: some records were not processed.
    pub complete: bool,
    pub warnings: Vec<String>,
    /// The run directory, when kept with `keep_workdirs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    pub elapsed_ms: u64,
}

/// Checks option values that need no I/O.
pub fn check_options(options: &ProcessOptions) -> std::result::Result<(), String> {
    let l = &options.limits;
    if let Some(t) = l.timeout
        && !(t.is_finite() && t > 0.0)
    {
        return Err(format!("--timeout must be a positive number of seconds, got {t}"));
    }
    if !(l.grace.is_finite() && l.grace >= 0.0) {
        return Err(format!("--grace must be a non-negative number of seconds, got {}", l.grace));
    }
    if options.jobs == Some(0) && options.nodes.is_empty() {
        return Err("--jobs must be at least 1 (0 means \"no local workers\", which needs --nodes)".into());
    }
    if l.max_open_files < 16 {
        return Err("--max-open-files must be at least 16".into());
    }
    if options.processor.as_deref().is_some_and(|c| c.trim().is_empty()) {
        return Err("--processor is empty".into());
    }
    Ok(())
}

/// Runs a whole `distex process`.
pub fn run(options: &ProcessOptions, config: &Config, reporter: &mut dyn Reporter) -> Result<ProcessReport> {
    check_options(options).map_err(Error::Usage)?;
    let (sources, key) = plan_inputs(options)?;
    let (targets, target_warning) = targets(options, config)?;
    // Byte ranges are scans of files on this machine: with nodes to place
    // work on, the work is split by region.
    let remote_split;
    let options = if targets.iter().any(|t| t.node.is_some()) {
        if options.split == Split::Bytes {
            return Err(Error::Usage(
                "--split bytes scans the input files on this machine and cannot use --nodes: \
                 drop --nodes, or use --split regions"
                    .into(),
            ));
        }
        remote_split = ProcessOptions { split: Split::Regions, ..options.clone() };
        &remote_split
    } else {
        options
    };
    if options.aggregate.is_some() && options.processor.is_none() {
        return Err(Error::Usage("--aggregate needs --processor: the built-in summary aggregates itself".into()));
    }
    let run_dir = worker::make_run_dir().map_err(|e| Error::io("creating the run directory", e))?;
    let guard = RunDir { path: run_dir.clone(), keep: options.keep_workdirs };
    if options.sandbox {
        sandbox::check(&run_dir).map_err(Error::Usage)?;
    }
    let started = Instant::now();
    // Stdin and compressed files can then be split into byte ranges too.
    let sources = if parts::may_split_bytes(options, &key) {
        copy::plain_copies(sources, options.format, &run_dir)?
    } else {
        sources
    };
    let mut fallback = None;
    match parts::try_bytes(options, &sources, &key, &run_dir, started, reporter)? {
        parts::Bytes::NotApplicable => {}
        parts::Bytes::Fallback(warning) => fallback = Some(warning),
        parts::Bytes::Done(mut report) => {
            if options.keep_workdirs {
                report.workdir = Some(run_dir.display().to_string());
            }
            drop(guard);
            return Ok(report);
        }
    }
    let part = partition::partition(
        &sources,
        &partition::Options {
            key,
            format: options.format,
            schema: &options.schema,
            max_rejects: options.max_rejects,
            dir: &run_dir,
        },
        &mut |records| {
            let elapsed_ms = started.elapsed().as_millis() as u64;
            reporter.report(&Event::Progress { done: 0, total: None, records: Some(records), elapsed_ms });
        },
    )?;
    let mut report = coordinate(options, &part, &run_dir, started, reporter, &targets);
    report.warnings.extend(fallback);
    report.warnings.extend(target_warning);
    if options.keep_workdirs {
        report.workdir = Some(run_dir.display().to_string());
    }
    drop(guard);
    Ok(report)
}

/// Where region workers run: this machine (`--jobs` at once) and every
/// node named by `--nodes` (its `slots` at once).
fn targets(options: &ProcessOptions, config: &Config) -> Result<(Vec<pool::Target>, Option<String>)> {
    let local = pool::Target { node: None, slots: options.jobs.unwrap_or_else(|| jobs(options)) };
    if options.nodes.is_empty() {
        return Ok((vec![local], None));
    }
    if options.sandbox {
        return Err(Error::Usage(
            "--sandbox cannot be enforced on remote nodes: drop --nodes, or drop --sandbox to accept weaker isolation there".into(),
        ));
    }
    // `--jobs 0` with `--nodes`: every region goes to the nodes.
    let mut targets = if local.slots == 0 { vec![] } else { vec![local] };
    for name in &options.nodes {
        if name == "local" {
            continue;
        }
        let Some(node) = config.node(name) else {
            let known: Vec<&str> = config.nodes.iter().map(|n| n.name.as_str()).collect();
            return Err(Error::Usage(format!(
                "--nodes names unknown node {name:?}; known nodes: {}",
                if known.is_empty() { "none (see `distex config init`)".to_string() } else { known.join(", ") }
            )));
        };
        targets.push(pool::Target { node: Some(node.clone()), slots: node.slots.max(1) as usize });
    }
    if targets.is_empty() {
        return Err(Error::Usage("--jobs 0 leaves no worker anywhere: name at least one node in --nodes".into()));
    }
    let skipped = skip_known_down(&mut targets, config);
    Ok((targets, skipped))
}

/// Leaves out nodes that the health cache says did not answer recently
/// (as `distex route` does), unless that would leave no target at all.
/// They are tried again once `routing.unhealthy_for` has passed, or after
/// `distex nodes --probe` finds them up.
fn skip_known_down(targets: &mut Vec<pool::Target>, config: &Config) -> Option<String> {
    let states = crate::state::NodeStates::load();
    let now = crate::state::now_secs();
    let down = |t: &pool::Target| {
        t.node
            .as_ref()
            .and_then(|n| states.get(&n.name))
            .is_some_and(|h| !h.answered && now.saturating_sub(h.checked_at) < config.routing.unhealthy_for)
    };
    let (skipped, kept): (Vec<pool::Target>, Vec<pool::Target>) = targets.drain(..).partition(down);
    if kept.is_empty() {
        *targets = skipped;
        return None;
    }
    *targets = kept;
    let names: Vec<&str> = skipped.iter().map(pool::Target::name).collect();
    (!names.is_empty()).then(|| {
        format!(
            "skipped node(s) {} that did not answer recently (see `distex nodes`; `distex nodes --probe` rechecks)",
            names.join(", ")
        )
    })
}

/// Workers at once on this machine.
pub(super) fn jobs(options: &ProcessOptions) -> usize {
    options.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1)
}

/// Removes the run directory when dropped, unless asked to keep it.
struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.keep {
            worker::remove_dir(&self.path);
        }
    }
}

/// Turns the options into sources to read and how to key them.
fn plan_inputs(options: &ProcessOptions) -> Result<(Vec<Source>, KeySpec)> {
    let modes = [options.demo, !options.inputs.is_empty(), !options.regions.is_empty()];
    match modes.iter().filter(|m| **m).count() {
        0 => {
            return Err(Error::Usage(
                "nothing to process: give INPUT... --by FIELD, --regions DIR_OR_FILES, or --demo".into(),
            ));
        }
        1 => {}
        _ => {
            return Err(Error::Usage("give only one of INPUT..., --regions and --demo".into()));
        }
    }
    if options.demo {
        let key = options.by.clone().unwrap_or_else(|| "region".into());
        return Ok((vec![Source::Embedded("demo.csv", DEMO_CSV.as_bytes())], KeySpec::Column(key)));
    }
    if !options.regions.is_empty() {
        if options.by.is_some() {
            return Err(Error::Usage("--regions takes one file per region; --by does not apply".into()));
        }
        let mut files = Vec::new();
        for path in &options.regions {
            if path.is_dir() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| Error::Input(format!("cannot read directory {}: {e}", path.display())))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
                    .collect();
                entries.sort();
                if entries.is_empty() {
                    return Err(Error::Input(format!("{}: no files in this directory", path.display())));
                }
                files.extend(entries.into_iter().map(Source::File));
            } else if path.is_file() {
                files.push(Source::File(path.clone()));
            } else {
                return Err(Error::Input(format!("{}: no such file or directory", path.display())));
            }
        }
        return Ok((files, KeySpec::FileStem));
    }
    let Some(by) = options.by.clone() else {
        return Err(Error::Usage("--by FIELD is required with INPUT files: which column names the region?".into()));
    };
    let mut sources = Vec::new();
    for path in &options.inputs {
        let source = Source::from_arg(path);
        // Pipes (`<(zcat a.gz)`) are read like stdin; directories are not input.
        if let Source::File(p) = &source {
            match std::fs::metadata(p) {
                Err(e) => return Err(Error::Input(format!("cannot read {}: {e}", p.display()))),
                Ok(m) if m.is_dir() => {
                    return Err(Error::Input(format!(
                        "{} is a directory: name its files, or use --regions for one file per region",
                        p.display()
                    )));
                }
                Ok(_) => {}
            }
        }
        sources.push(source);
    }
    if sources.iter().filter(|s| **s == Source::Stdin).count() > 1 {
        return Err(Error::Usage("stdin (`-`) can be read only once".into()));
    }
    Ok((sources, KeySpec::Column(by)))
}

/// Runs the region tasks and the aggregation; never fails as a whole.
fn coordinate(
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

    let numeric: Vec<String> = part
        .types
        .iter()
        .filter(|(name, t)| **t == ColumnType::Number && Some(*name) != part.key.as_ref())
        .map(|(n, _)| n.clone())
        .collect();
    let units: Vec<Unit> = part
        .regions
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
            read: options.processor.is_none().then_some(read_summary as pool::ReadOutput),
        })
        .collect();
    // A summary that does not account for every record sent fails its task
    // (it cannot happen unless the worker is broken; never hide it).
    let mut results: Vec<Option<pool::Outcome>> = vec![None; units.len()];
    let warnings =
        pool::run_units_into(options, run_dir, &units, &mut tasks, started, reporter, targets, &mut |i, outcome| {
            let outcome = match outcome {
                Ok(pool::Output::Summary(s)) if s.records != part.regions[i].records => {
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
                    pool::Output::Json(map) => {
                        region_results.insert(data.name.clone(), Value::Object(map.clone()));
                        user_results.push(map.clone());
                        entry.result = Some(Value::Object(map));
                    }
                    pool::Output::Summary(s) => {
                        entry.stats = Some(s.summaries());
                        summaries.push(*s);
                    }
                    pool::Output::Part(_) => unreachable!("region units are read as JSON"),
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
    if pool::aggregate_ready(&tasks, &aggregate_id) {
        let from = tasks.transition(&aggregate_id, TaskStatus::InProgress, ms()).unwrap_or(TaskStatus::Blocked);
        if let Some(t) = tasks.get_mut(&aggregate_id) {
            t.node = Some("local".into());
        }
        reporter.report(&status_event(&tasks, &aggregate_id, from, None));
        let outcome: std::result::Result<Value, String> = if let Some(cmd) = &options.aggregate {
            run_aggregator(options, run_dir, &aggregate_id, cmd, &region_results).map(Value::Object)
        } else if options.processor.is_some() {
            let (totals, w) = aggregate::sum_results(user_results.iter());
            report.warnings.extend(w);
            Ok(totals)
        } else {
            let total = aggregate::merge_summaries(summaries.iter());
            Ok(serde_json::json!({ "records": total.records, "regions": summaries.len(), "stats": total.summaries() }))
        };
        let status_from = match &outcome {
            Ok(_) => tasks.transition(&aggregate_id, TaskStatus::Completed, ms()),
            Err(e) => tasks.fail(&aggregate_id, e.clone(), ms()),
        };
        if let Some(from) = status_from {
            reporter.report(&status_event(&tasks, &aggregate_id, from, outcome.as_ref().err().cloned()));
        }
        report.totals = outcome.ok();
    } else {
        pool::fail_blocked(&mut tasks, &aggregate_id, ms(), reporter);
    }
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

/// Reads a built-in summary worker's output, as part of its attempt: an
/// unreadable one fails the attempt (retried per `--retries`).
fn read_summary(bytes: Vec<u8>) -> std::result::Result<pool::Output, String> {
    serde_json::from_slice::<RegionStats>(&bytes)
        .map(|s| pool::Output::Summary(Box::new(s)))
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
    };
    let result = worker::run(&job);
    if !options.keep_workdirs {
        worker::remove_dir(&workdir);
    }
    result.and_then(|out| worker::parse_output(&out))
}

/// `1.5 GiB`-style sizes for messages.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// Parses sizes such as `512M`, `2G`, `1.5GiB`, `4096`.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("{text:?} is not a size (examples: 512M, 2G, 4096)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => {
            return Err(format!("{text:?}: unknown unit {unit:?} (use K, M, G or T)"));
        }
    };
    Ok((value * factor as f64) as u64)
}

/// Parses `--schema col=number,other=text`.
pub fn parse_schema(specs: &[String]) -> std::result::Result<BTreeMap<String, ColumnType>, String> {
    let mut out = BTreeMap::new();
    for spec in specs.iter().flat_map(|s| s.split(',')) {
        let (name, t) =
            spec.split_once('=').ok_or_else(|| format!("--schema expects COLUMN=number|text, got {spec:?}"))?;
        let t = match t.trim() {
            "number" | "numeric" => ColumnType::Number,
            "text" | "string" => ColumnType::Text,
            other => {
                return Err(format!("--schema {name}: unknown type {other:?} (number or text)"));
            }
        };
        out.insert(name.trim().to_string(), t);
    }
    Ok(out)
}

/// True when the format is one distex can read.
pub fn parse_format(text: &str) -> std::result::Result<Format, String> {
    match text {
        "csv" => Ok(Format::Csv),
        "tsv" => Ok(Format::Tsv),
        "jsonl" | "ndjson" => Ok(Format::Jsonl),
        _ => Err(format!("unknown format {text:?}: csv, tsv or jsonl")),
    }
}

//! `distex process`: split a dataset into isolated worker processes and
//! aggregate their results exactly.
//!
//! [`run`] is the front door: it plans the inputs, chooses how to split
//! the work, and hands it to one of two paths that share everything else:
//!
//! * [`regions`]: one worker per region. The input is partitioned once and
//!   each region's records spooled to a file; a worker per region (the
//!   built-in summary or the user's `--processor`) runs on this machine or
//!   a node.
//! * [`bytes`]: byte ranges of plain CSV/TSV files, one scan worker per
//!   range, their per-region accumulators merged exactly as they finish
//!   (built-in summary only).
//!
//! Shared parts: [`options`] (what a run accepts), [`input`] (reading
//! records and their checks), [`stats`] (accumulators that merge exactly),
//! [`workers`] (the pool, local and node workers, the sandbox) and
//! [`report`] (what a run returns).
//!
//! Runners never print: progress goes out as [`Event`]s to a [`Reporter`],
//! and the outcome is a [`ProcessReport`] for the caller to render.

pub(crate) mod bytes;
pub(crate) mod input;
pub(crate) mod options;
pub(crate) mod prefetch;
pub(crate) mod regions;
pub(crate) mod report;
pub(crate) mod stats;
pub(crate) mod workers;

/// One step of Marsaglia's xorshift64: the tests' reproducible random numbers.
#[cfg(test)]
pub(crate) fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::{Config, Node, NodeKind};
use crate::error::{Error, Result};
use crate::tasks::{Event, Reporter};
use input::schema::KeySpec;
use input::{Source, copy};
use regions::partition;
use workers::{pool, sandbox};

pub(crate) use options::{ProcessOptions, Split, check_options, jobs};
pub(crate) use report::{Accounting, ProcessReport, RegionReport};

/// The demo dataset embedded in the binary (`--demo`).
pub(crate) const DEMO_CSV: &str = include_str!("demo.csv");

/// Runs a whole `distex process`: plan the inputs and where workers run,
/// choose the split, run that path (the region path also when the byte
/// path falls back), and finish the report.
pub(crate) fn run(options: &ProcessOptions, config: &Config, reporter: &mut dyn Reporter) -> Result<ProcessReport> {
    check_options(options).map_err(Error::Usage)?;
    options.limits.check_hard_limits().map_err(Error::Usage)?;
    let passed = options::passed_env(options).map_err(Error::Usage)?;
    if let Some((name, _)) = passed.iter().find(|(_, v)| v.contains('\n'))
        && !options.nodes.is_empty()
    {
        return Err(Error::Usage(format!(
            "--pass-env {name}: its value holds a newline, which cannot be passed to --nodes workers"
        )));
    }
    let (sources, key) = plan_inputs(options)?;
    let (targets, target_warning) = targets(options, config)?;
    let guard = run_dir(options)?;
    let run_dir = guard.path();
    let started = Instant::now();
    let on_nodes = targets.iter().any(|t| t.node.is_some());
    // A Slurm node takes every unit (workers/pool.rs), byte ranges too.
    let slurm = targets.iter().find_map(|t| t.node.as_ref().filter(|n| n.kind() == NodeKind::Slurm));
    let byte_targets = match slurm {
        Some(_) => targets.clone(),
        None => vec![pool::Target { node: None, slots: jobs(options) }],
    };
    let pool = pool::Pool { options, run_dir, started, targets: &targets };
    let by_regions =
        |sources: Vec<Source>, reporter: &mut dyn Reporter| regions_path(&pool, &sources, key.clone(), reporter);
    // Clear what an earlier run in this process left, so the report
    // counts this run's collections only (on both paths).
    workers::local::take_collections();
    let inputs = SplitInputs { options, sources, key: &key, on_nodes, slurm, run_dir };
    let (mut report, fallback) = match choose_split(inputs)? {
        Chosen::Regions(sources) => (by_regions(sources, reporter)?, None),
        Chosen::Bytes { planned, sources } => {
            match bytes::run(options, &planned, run_dir, &byte_targets, started, reporter)? {
                bytes::Bytes::Done(report) => (report, None),
                bytes::Bytes::Fallback(warning) => (by_regions(sources, reporter)?, Some(warning)),
            }
        }
    };
    count_collected(&mut report);
    report.warnings.extend(fallback);
    report.warnings.extend(target_warning);
    if options.keep_workdirs {
        report.workdir = Some(run_dir.display().to_string());
    }
    drop(guard);
    Ok(report)
}

/// A fresh private (0700) directory under the system's temp dir, removed
/// when the run ends however it ends, unless asked to keep it; checked
/// for `--sandbox`.
fn run_dir(options: &ProcessOptions) -> Result<tempfile::TempDir> {
    let guard = tempfile::Builder::new()
        .prefix("distex-process-")
        .disable_cleanup(options.keep_workdirs)
        .tempdir()
        .map_err(|e| Error::io("creating the run directory", e))?;
    if options.sandbox {
        sandbox::check(guard.path()).map_err(Error::Usage)?;
    }
    Ok(guard)
}

/// The region path: partition the input into one spool per region, then
/// run a worker per region and the aggregation.
fn regions_path(
    pool: &pool::Pool<'_>,
    sources: &[Source],
    key: KeySpec,
    reporter: &mut dyn Reporter,
) -> Result<ProcessReport> {
    let options = pool.options;
    let partition_options = partition::Options {
        key,
        format: options.format,
        schema: &options.schema,
        max_rejects: options.max_rejects,
        max_record: options.max_record_size,
        dir: pool.run_dir,
    };
    let part = partition::partition(sources, &partition_options, &mut |records| {
        reporter.report(&Event::Progress { done: 0, total: None, records: Some(records), elapsed_ms: pool.ms() });
    })?;
    Ok(regions::coordinate(pool, &part, reporter))
}

/// Puts what the workers' reapers collected into the report: the total,
/// and one warning per attempt that left processes behind.
fn count_collected(report: &mut ProcessReport) {
    for (worker, count) in workers::local::take_collections() {
        if count == 0 {
            continue;
        }
        report.collected_processes += count;
        report.warnings.push(format!(
            "{worker}: {count} process(es) left the worker's process group (setsid/setpgrp) and outlived it; \
             they were killed when the attempt ended"
        ));
    }
}

/// Files smaller than this in total use the region path under `--split
/// auto`, unless their first rows hold [`AUTO_MIN_REGIONS`] regions.
const AUTO_MIN_BYTES: u64 = 64 << 20;
const AUTO_MIN_REGIONS: usize = 64;

/// Everything the choice of split depends on.
struct SplitInputs<'a> {
    /// `--split`, `--processor`, and what planning byte ranges reads
    /// (`--format`, `--schema`, `--jobs`, `--part-size`).
    options: &'a ProcessOptions,
    /// The inputs as given (stdin and gzip files not yet copied).
    sources: Vec<Source>,
    /// A `--by` column, or one file per region (`--regions`).
    key: &'a KeySpec,
    /// Whether any worker runs on a node (`--nodes`).
    on_nodes: bool,
    /// The Slurm node among them, which takes every part.
    slurm: Option<&'a Node>,
    /// Where stdin and gzip input are copied for the byte path.
    run_dir: &'a Path,
}

/// The path a run takes, with the sources it reads.
enum Chosen {
    /// One worker per region ([`regions`]).
    Regions(Vec<Source>),
    /// Byte ranges ([`bytes`]), planned; `sources` for the region path if
    /// the byte path falls back.
    Bytes { planned: bytes::Planned, sources: Vec<Source> },
}

/// The one place that decides how the work is split. The region path
/// when asked (`--split regions`), with `--processor`, with `--regions`, or
/// with `--nodes` naming only SSH nodes (byte ranges are scans of files on
/// this machine; `--split bytes` with them is refused). A Slurm node takes
/// byte ranges only of plain files it reads in place, on a filesystem it
/// shares with this machine at the same path (see
/// [`workers::slurm::shared_path`]: its workdir when it has no login `host`,
/// and its `shared` directories with or without one, since the ranges
/// are planned from the file here); nothing is copied. Otherwise stdin and gzip input are copied plain so byte ranges
/// can read them, and the byte path is taken if it can read the input and
/// it is worth it: always under `--split bytes` (which refuses what it
/// cannot read), under `auto` when the input is large or holds many
/// regions.
fn choose_split(inputs: SplitInputs<'_>) -> Result<Chosen> {
    let SplitInputs { options, mut sources, key, on_nodes, slurm, run_dir } = inputs;
    let forced = options.split == Split::Bytes;
    if forced && on_nodes && slurm.is_none() {
        return Err(Error::Usage(
            "--split bytes scans the input files on this machine and cannot use SSH --nodes: \
             drop --nodes, or use --split regions"
                .into(),
        ));
    }
    // The byte path cannot take the input: an error if it was asked for.
    let refuse = |why: &str, sources: Vec<Source>| -> Result<Chosen> {
        if forced { Err(Error::Usage(format!("--split bytes {why}"))) } else { Ok(Chosen::Regions(sources)) }
    };
    if options.split == Split::Regions || (on_nodes && slurm.is_none()) {
        return Ok(Chosen::Regions(sources));
    }
    if options.processor.is_some() {
        return refuse("works with the built-in summary only (not with --processor)", sources);
    }
    let KeySpec::Column(column) = key else {
        return refuse("needs INPUT files and --by (not --regions)", sources);
    };
    // On a Slurm node: as many workers as its slots, reading in place.
    let mut workers = jobs(options);
    if let Some(node) = slurm {
        match read_in_place(node, &sources) {
            Ok(in_place) => sources = in_place,
            Err(why) => return refuse(&why, sources),
        }
        workers = node.slots.max(1) as usize;
    }
    // Stdin and compressed files can then be split into byte ranges too.
    let sources = copy::plain_copies(sources, options.format, run_dir)?;
    let planned = match bytes::plan(options, &sources, column, workers)? {
        Ok(planned) => planned,
        Err(why) => return refuse(why, sources),
    };
    // Small inputs of a few regions read well as one task per region (the
    // seed's display); from dozens of regions a worker per region costs
    // more than the data.
    if !forced && planned.total < AUTO_MIN_BYTES && planned.plan.sampled_regions < AUTO_MIN_REGIONS {
        return Ok(Chosen::Regions(sources));
    }
    Ok(Chosen::Bytes { planned, sources })
}

/// Whether Slurm node `node` can read every source in place: plain files
/// (not stdin, a pipe or gzip, which the byte path copies here) on a
/// filesystem it shares with this machine. Returns the sources named as
/// the cluster reads them ([`workers::slurm::shared_path`]), or why not,
/// as a sentence.
fn read_in_place(node: &Node, sources: &[Source]) -> std::result::Result<Vec<Source>, String> {
    let mut in_place = Vec::with_capacity(sources.len());
    for source in sources {
        let Source::File(path) = source else {
            return Err(format!(
                "with --nodes {}: stdin and --demo input cannot be read in place there; use --split regions",
                node.name
            ));
        };
        if copy::needs_copy(path) {
            return Err(format!(
                "with --nodes {}: {} is compressed or not a regular file, so it cannot be read in place there; \
                 decompress it into a shared directory, or use --split regions",
                node.name,
                path.display()
            ));
        }
        let Some(shared) = workers::slurm::shared_path(node, path) else {
            // Through a login node the workdir is the login node's, not
            // this machine's: only the `shared` list counts.
            let places = match node.ssh_host() {
                None => "its workdir, or a directory of its `shared` list",
                Some(_) => "a directory of its `shared` list; its workdir is on its login node",
            };
            return Err(format!(
                "with --nodes {name}: {file} is not on a filesystem node {name} shares with this machine \
                 ({places}: {dirs}); add the directory to `shared` in node {name}'s config if this machine \
                 and the compute nodes mount it at the same path, or use --split regions",
                name = node.name,
                file = path.display(),
                dirs = workers::slurm::shared_dirs(node)
                    .iter()
                    .map(|(named, _)| named.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        };
        in_place.push(Source::File(shared));
    }
    Ok(in_place)
}

/// Where region workers run: this machine (`--jobs` at once) and every
/// node named by `--nodes` (its `slots` at once).
fn targets(options: &ProcessOptions, config: &Config) -> Result<(Vec<pool::Target>, Option<String>)> {
    let local = pool::Target { node: None, slots: options.jobs.unwrap_or_else(|| jobs(options)) };
    if options.nodes.is_empty() {
        return Ok((vec![local], None));
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

/// Turns the options into sources to read and how to key them: the demo
/// dataset, one file per region (`--regions`), or INPUT files keyed by
/// `--by`.
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
        return Ok((region_files(&options.regions)?, KeySpec::FileStem));
    }
    let Some(by) = options.by.clone() else {
        return Err(Error::Usage("--by FIELD is required with INPUT files: which column names the region?".into()));
    };
    Ok((input_sources(&options.inputs)?, KeySpec::Column(by)))
}

/// `--regions`: the files named, and those in each directory named (in
/// name order, hidden ones left out).
fn region_files(paths: &[PathBuf]) -> Result<Vec<Source>> {
    let mut files = Vec::new();
    for path in paths {
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
    Ok(files)
}

/// INPUT...: files, pipes (`<(zcat a.gz)`, read like stdin) and `-` for
/// stdin (once); directories are not input.
fn input_sources(inputs: &[PathBuf]) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    for path in inputs {
        let source = Source::from_arg(path);
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
    Ok(sources)
}

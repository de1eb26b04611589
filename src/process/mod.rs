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

use std::path::PathBuf;
use std::time::Instant;

use crate::config::Config;
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

/// Runs a whole `distex process`.
pub(crate) fn run(options: &ProcessOptions, config: &Config, reporter: &mut dyn Reporter) -> Result<ProcessReport> {
    check_options(options).map_err(Error::Usage)?;
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
    // A fresh private (0700) directory under the system's temp dir, removed
    // when the run ends however it ends, unless asked to keep it.
    let guard = tempfile::Builder::new()
        .prefix("distex-process-")
        .disable_cleanup(options.keep_workdirs)
        .tempdir()
        .map_err(|e| Error::io("creating the run directory", e))?;
    let run_dir = guard.path().to_path_buf();
    if options.sandbox {
        sandbox::check(&run_dir).map_err(Error::Usage)?;
    }
    let started = Instant::now();
    // Stdin and compressed files can then be split into byte ranges too.
    let sources = if bytes::may_split_bytes(options, &key) {
        copy::plain_copies(sources, options.format, &run_dir)?
    } else {
        sources
    };
    let mut fallback = None;
    if let Chosen::Bytes(planned) = choose_split(options, &sources, &key)? {
        match bytes::run(options, &planned, &run_dir, started, reporter)? {
            bytes::Bytes::Fallback(warning) => fallback = Some(warning),
            bytes::Bytes::Done(mut report) => {
                if options.keep_workdirs {
                    report.workdir = Some(run_dir.display().to_string());
                }
                drop(guard);
                return Ok(report);
            }
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
    workers::local::take_collections();
    let mut report = regions::coordinate(options, &part, &run_dir, started, reporter, &targets);
    count_collected(&mut report);
    report.warnings.extend(fallback);
    report.warnings.extend(target_warning);
    if options.keep_workdirs {
        report.workdir = Some(run_dir.display().to_string());
    }
    drop(guard);
    Ok(report)
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

/// The path a run takes.
enum Chosen {
    /// One worker per region ([`regions`]).
    Regions,
    /// Byte ranges ([`bytes`]), planned.
    Bytes(bytes::Planned),
}

/// The one place that decides how the work is split (after `--nodes` has
/// made `auto` mean `regions`): the byte path for the built-in summary of
/// a `--by` column over plain CSV/TSV files, when asked (`--split bytes`,
/// which refuses what it cannot read) or, under `auto`, when the input is
/// large or holds many regions; the region path otherwise.
fn choose_split(options: &ProcessOptions, sources: &[Source], key: &KeySpec) -> Result<Chosen> {
    let forced = options.split == Split::Bytes;
    let refuse = |why: &str| -> Result<Chosen> {
        if forced { Err(Error::Usage(format!("--split bytes {why}"))) } else { Ok(Chosen::Regions) }
    };
    if options.split == Split::Regions {
        return Ok(Chosen::Regions);
    }
    if options.processor.is_some() {
        return refuse("works with the built-in summary only (not with --processor)");
    }
    let KeySpec::Column(key) = key else {
        return refuse("needs INPUT files and --by (not --regions)");
    };
    let planned = match bytes::plan(options, sources, key)? {
        Ok(planned) => planned,
        Err(why) => return refuse(why),
    };
    // Small inputs of a few regions read well as one task per region (the
    // seed's display); from dozens of regions a worker per region costs
    // more than the data.
    if !forced && planned.total < AUTO_MIN_BYTES && planned.plan.sampled_regions < AUTO_MIN_REGIONS {
        return Ok(Chosen::Regions);
    }
    Ok(Chosen::Bytes(planned))
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

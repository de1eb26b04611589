//! Region workers on a Slurm node (`--nodes hpc` where `hpc` has
//! `kind = "slurm"`): every unit is a task of one `sbatch --array` job.
//!
//! The shared run directory (`WORKDIR/distex-process/<run>/`, on the
//! filesystem the compute nodes share) holds, per unit `i`:
//!
//! * `in-i`: the unit's input (its stdin), copied once;
//! * `task-i.sh`: its attempt, a POSIX script where every value is
//!   single-quoted: a fresh `mktemp -d` directory as cwd, HOME and TMPDIR,
//!   `env -i` with only PATH, LANG and the `DISTEX_*` variables, the
//!   `ulimit`s of `--max-memory` and `--max-cpu-seconds`;
//! * `out-i-A`, `err-i-A`, `status-i-A`: what attempt `A` printed and its
//!   exit status, each renamed into place when complete. The status file is
//!   the source of truth: without an accounting database `sacct` knows
//!   nothing, and `scontrol` forgets a job after `MinJobAge`.
//!
//! `array.sh` runs `task-$SLURM_ARRAY_TASK_ID.sh`. The coordinator follows
//! its tasks with one `squeue --states=all` call per poll (a task shows
//! `in_progress` once Slurm runs it), reads each status file as it
//! appears, and resubmits in one new array the tasks that failed (per
//! `--retries`) or were lost (the job ended, or its node went down, without
//! a status file: not the processor's fault, so not counted as a retry).
//! `--timeout` cancels the one array task; Ctrl-C cancels every array.
//!
//! The run directory and Slurm's commands are here, or on the node's login
//! `host` over SSH ([`site`]: one rsync per batch of files, one round trip
//! per poll). The built-in summary worker is this distex binary, copied
//! once into `WORKDIR/distex-process/bin/` when the cluster runs this
//! machine's system and architecture, else the node's `distex`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::local::{Program, interrupted};
use super::pool::Unit;
use crate::config::Node;
use crate::process::ProcessOptions;

mod array;
mod site;
mod squeue;

use array::{Array, Seen, prepare};
use site::Read;

/// How often the coordinator asks `squeue`.
const POLL: Duration = Duration::from_millis(250);
/// Polls a task may be missing from `squeue` without a status file before
/// it counts as lost (a status file may land just after its job leaves).
const LOST_AFTER: u32 = 3;

/// What the array reports to the pool, unit by unit.
pub(crate) enum ArrayEvent<T> {
    /// Slurm started attempt `attempt` of `unit`.
    Started { unit: usize, attempt: u32 },
    /// The attempt failed; it is submitted again.
    Retrying { unit: usize, attempt: u32, reason: String },
    /// The attempt was lost (node down, job gone); it is submitted again.
    Lost { unit: usize, attempt: u32, reason: String },
    /// The unit's final outcome.
    Finished { unit: usize, result: Result<T, String> },
}

/// One unit's place in the run.
struct Task {
    attempt: u32,
    /// Attempts that were lost, not failed (they do not use up `--retries`).
    lost: u32,
    job: String,
    started: Option<Instant>,
    /// The last attempt reported as started (a quick task may end
    /// between two polls without ever being seen running).
    announced: u32,
    missing: u32,
    done: bool,
}

/// reporting to `on`; `read` turns a successful task's stdout into its
/// result (a refusal fails the attempt, retried like a non-zero exit).
pub(crate) fn run_array<T>(
    options: &ProcessOptions,
    node: &Node,
    units: &[Unit<T>],
    read: &dyn Fn(usize, Vec<u8>) -> Result<T, String>,
    on: &mut dyn FnMut(ArrayEvent<T>),
) {
    let array = match prepare(node, units) {
        Ok(a) => a,
        Err(e) => {
            for unit in 0..units.len() {
                on(ArrayEvent::Finished { unit, result: Err(format!("node {}: {e}", node.name)) });
            }
            return;
        }
    };
    let mut tasks: Vec<Task> = (0..units.len())
        .map(|_| Task { attempt: 1, lost: 0, job: String::new(), started: None, announced: 0, missing: 0, done: false })
        .collect();
    let all: Vec<usize> = (0..units.len()).collect();
    if let Err(e) = array.submit(options, units, &all, &mut tasks) {
        for unit in all {
            on(ArrayEvent::Finished { unit, result: Err(e.clone()) });
        }
        array.clean_up(options);
        return;
    }
    follow(options, &array, units, &mut tasks, read, on);
    array.clean_up(options);
}

/// The poll loop: one `squeue` per round, then every open task's files.
fn follow<T>(
    options: &ProcessOptions,
    array: &Array,
    units: &[Unit<T>],
    tasks: &mut [Task],
    read: &dyn Fn(usize, Vec<u8>) -> Result<T, String>,
    on: &mut dyn FnMut(ArrayEvent<T>),
) {
    let timeout = options.limits.timeout.map(Duration::from_secs_f64);
    while tasks.iter().any(|t| !t.done) {
        if interrupted() {
            array.cancel_all(tasks);
            for (unit, t) in tasks.iter_mut().enumerate().filter(|(_, t)| !t.done) {
                t.done = true;
                on(ArrayEvent::Finished {
                    unit,
                    result: Err("interrupted; its Slurm array task was cancelled".into()),
                });
            }
            return;
        }
        let mut seen = match array.poll(options, tasks) {
            Ok(seen) => seen,
            Err(_) if interrupted() => continue,
            Err(e) => return give_up(array, tasks, &e, on),
        };
        let mut again = Vec::new();
        for (unit, task) in tasks.iter_mut().enumerate().filter(|(_, t)| !t.done) {
            let now = step(options, array, unit, task, &mut seen, timeout, read);
            if react(options, array, unit, task, now, on) {
                again.push(unit);
            }
        }
        if !again.is_empty()
            && let Err(e) = array.submit(options, units, &again, tasks)
        {
            for unit in again {
                tasks[unit].done = true;
                on(ArrayEvent::Finished { unit, result: Err(e.clone()) });
            }
        }
        std::thread::sleep(POLL);
    }
}

/// The site stayed unreachable (a login node lost): the open parts fail,
/// never resubmitted, since their tasks may still run on the cluster.
fn give_up<T>(array: &Array, tasks: &mut [Task], why: &str, on: &mut dyn FnMut(ArrayEvent<T>)) {
    for (unit, task) in tasks.iter_mut().enumerate().filter(|(_, t)| !t.done) {
        task.done = true;
        let result = Err(format!("node {}: {why}", array.node.name));
        on(ArrayEvent::Finished { unit, result });
    }
}

/// Reports what `step` found; true when the task must be submitted again.
fn react<T>(
    options: &ProcessOptions,
    array: &Array,
    unit: usize,
    task: &mut Task,
    step: Step<T>,
    on: &mut dyn FnMut(ArrayEvent<T>),
) -> bool {
    let ran = matches!(step, Step::Started | Step::Done(_) | Step::Failed(_));
    if ran && task.announced != task.attempt {
        task.announced = task.attempt;
        on(ArrayEvent::Started { unit, attempt: task.attempt });
    }
    match step {
        Step::Wait | Step::Started => false,
        Step::Done(result) => {
            task.done = true;
            on(ArrayEvent::Finished { unit, result });
            false
        }
        Step::Failed(reason) if task.attempt - task.lost <= options.retries && !interrupted() => {
            on(ArrayEvent::Retrying { unit, attempt: task.attempt, reason });
            task.attempt += 1;
            true
        }
        Step::Failed(reason) => {
            task.done = true;
            let reason = if task.attempt > 1 { format!("{reason} (after {} attempts)", task.attempt) } else { reason };
            on(ArrayEvent::Finished { unit, result: Err(reason) });
            false
        }
        Step::Lost(reason) => {
            // Make sure the lost copy never runs after all (at most one
            // live attempt per unit).
            array.cancel_task(&task.job, unit);
            on(ArrayEvent::Lost { unit, attempt: task.attempt, reason });
            task.attempt += 1;
            task.lost += 1;
            true
        }
    }
}

enum Step<T> {
    Wait,
    Started,
    Done(Result<T, String>),
    Failed(String),
    Lost(String),
}

/// What one task's files (as the poll brought them) and Slurm state say now.
fn step<T>(
    options: &ProcessOptions,
    array: &Array,
    unit: usize,
    task: &mut Task,
    seen: &mut Seen,
    timeout: Option<Duration>,
    read: &dyn Fn(usize, Vec<u8>) -> Result<T, String>,
) -> Step<T> {
    let status = array.files(unit, task.attempt).status;
    if let Some(code) = text(seen.files.get(&status)).and_then(|t| t.trim().parse::<i32>().ok()) {
        return finished(options, array, unit, task, code, &mut seen.files, read);
    }
    let state = seen.states.get(&(task.job.clone(), unit)).map(String::as_str);
    match state {
        Some("PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "SUSPENDED" | "RESIZING") => {
            task.missing = 0;
            Step::Wait
        }
        Some("RUNNING" | "CONFIGURING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING") => {
            task.missing = 0;
            let first = task.started.is_none();
            let since = *task.started.get_or_insert_with(Instant::now);
            if timeout.is_some_and(|t| since.elapsed() >= t) {
                array.cancel_task(&task.job, unit);
                return Step::Failed(format!(
                    "timed out after {}s (--timeout) on node {}; its Slurm array task was cancelled",
                    options.limits.timeout.unwrap_or(0.0),
                    array.node.name
                ));
            }
            if first { Step::Started } else { Step::Wait }
        }
        // Ended (or forgotten) without a status file: count a few polls,
        // then it is lost (its node went down, or Slurm cancelled it).
        other => {
            task.missing += 1;
            if task.missing < LOST_AFTER {
                return Step::Wait;
            }
            task.missing = 0;
            task.started = None;
            Step::Lost(format!(
                "its Slurm array task {}_{unit} ended {} without a result on node {}",
                task.job,
                other.map_or("(no longer listed)".to_string(), |s| format!("as {s}")),
                array.node.name
            ))
        }
    }
}

/// A file the poll brought, as text.
fn text(file: Option<&Read>) -> Option<String> {
    match file {
        Some(Read::Bytes(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        _ => None,
    }
}

/// A task wrote its status: read what it printed (the poll brought it).
fn finished<T>(
    options: &ProcessOptions,
    array: &Array,
    unit: usize,
    task: &mut Task,
    code: i32,
    seen: &mut BTreeMap<String, Read>,
    read: &dyn Fn(usize, Vec<u8>) -> Result<T, String>,
) -> Step<T> {
    task.started = None;
    let files = array.files(unit, task.attempt);
    let err = text(seen.get(&files.err)).unwrap_or_default();
    let last = err.lines().rev().find(|l| !l.trim().is_empty()).map(|l| format!(": {}", l.trim())).unwrap_or_default();
    let node = &array.node.name;
    if code != 0 {
        let signal =
            if (129..=192).contains(&code) { format!(" (killed by signal {})", code - 128) } else { String::new() };
        return Step::Failed(format!("exited with status {code}{signal} on node {node}{last}"));
    }
    let cap = match array.programs.get(unit) {
        Some(Program::Shell(_)) => options.limits.max_output,
        _ => u64::MAX,
    };
    match seen.remove(&files.out) {
        Some(Read::Bytes(bytes)) if bytes.len() as u64 > cap => Step::Failed(too_much(cap, node)),
        Some(Read::TooBig(_)) => Step::Failed(too_much(cap, node)),
        Some(Read::Bytes(bytes)) => match read(unit, bytes) {
            Ok(result) => Step::Done(Ok(result)),
            Err(reason) => Step::Failed(reason),
        },
        _ => Step::Failed(format!("cannot read its output {} on node {node}", array.site.path(&files.out))),
    }
}

/// Why an attempt that printed more than `--max-output` failed.
fn too_much(cap: u64, node: &str) -> String {
    format!("printed more than {} (--max-output) on node {node}", super::human_bytes(cap))
}

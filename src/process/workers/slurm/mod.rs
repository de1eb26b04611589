//! Region workers on a Slurm node (`--nodes hpc` where `hpc` has
//! `kind = "slurm"`): every unit is a part of an `sbatch --array` job,
//! small parts grouped so that each array task is worth the scheduler's
//! overhead ([`group`]).
//!
//! The shared run directory (`WORKDIR/distex-process/<run>/`, on the
//! filesystem the compute nodes share) holds, per unit `i`:
//!
//! * `in-i`: the unit's input (its stdin), copied once (a byte-range part
//!   reads its file in place and has none);
//! * `task-i.sh`: its attempt, a POSIX script where every value is
//!   single-quoted: a fresh `mktemp -d` directory as cwd, HOME and TMPDIR,
//!   `env -i` with only PATH, LANG and the `DISTEX_*` variables, the
//!   `ulimit`s of `--max-memory` and `--max-cpu-seconds`;
//! * `out-i-A`, `err-i-A`, `status-i-A`: what attempt `A` printed and its
//!   exit status, each renamed into place when complete. The status file is
//!   the source of truth: without an accounting database `sacct` knows
//!   nothing, and `scontrol` forgets a job after `MinJobAge`.
//!
//! and per array `a` and group `g`, `group-a-g.sh`: its parts' attempt
//! scripts, one after another. `array.sh a` runs
//! `group-a-$SLURM_ARRAY_TASK_ID.sh`.
//!
//! The coordinator follows the groups with one `squeue --states=all` call
//! per poll. A part is `in_progress` once its group runs and every part
//! before it in the group has finished (a status file), so the TaskList
//! and `--timeout` see the part itself start, to a poll. It reads each
//! status file as it appears, and resubmits in one new array, regrouped,
//! the parts that failed (per `--retries`) or were lost (their group ended,
//! or its node went down, without their status file: not the processor's
//! fault, so not counted as a retry).
//!
//! **Slots**: the array tasks Slurm may run at once, over every array of
//! the run, never exceed the node's `slots`. An array's throttle (`%N`)
//! limits its own tasks; an array still holding `k` unfinished groups may
//! run `min(k, N)` of them, and that only falls. A retry array is given
//! the room left (`slots` minus that sum) as its throttle, and waits while
//! there is none.
//!
//! `--timeout` cancels the part's group (its later parts are lost, and
//! resubmitted without using up `--retries`); Ctrl-C cancels every array.
//!
//! The run directory and Slurm's commands are here, or on the node's login
//! `host` over SSH ([`site`]: one rsync per batch of files, one round trip
//! per poll, which brings the status files of every open part, whichever
//! group runs it). The built-in summary worker is this distex binary,
//! copied once into `WORKDIR/distex-process/bin/` when the cluster runs
//! this machine's system and architecture, else the node's `distex`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::local::{Program, interrupted};
use super::pool::Unit;
use crate::config::Node;
use crate::process::ProcessOptions;

mod array;
mod group;
mod site;
mod squeue;

use array::{Array, prepare};
use site::Read;

/// How often the coordinator asks `squeue`.
const POLL: Duration = Duration::from_millis(250);
/// Polls a task may be missing from `squeue` without a status file before
/// it counts as lost (a status file may land just after its job leaves).
const LOST_AFTER: u32 = 3;
/// How long `squeue` may fail to answer (controller down or overloaded)
/// before the run gives up on the parts still out there: they are never
/// resubmitted meanwhile, since they may be running.
const SQUEUE_SILENT_FOR: Duration = Duration::from_secs(120);

/// The directories node `node`'s compute nodes read at the same path as
/// this machine: its `workdir` (only when Slurm's commands run here: with
/// a login `host`, the workdir is on the login node's filesystem, which
/// this machine need not see) and its `shared` list (directories the
/// config says this machine and the compute nodes mount at the same path,
/// with or without `host`). Each comes as the config names it (the path
/// the cluster knows) and as it resolves here through symlinks.
pub(crate) fn shared_dirs(node: &Node) -> Vec<(PathBuf, PathBuf)> {
    let workdir = node.ssh_host().is_none().then(|| local_workdir(&node.workdir));
    let listed = node.slurm.iter().flat_map(|s| s.shared.iter().map(PathBuf::from));
    workdir
        .into_iter()
        .chain(listed)
        .map(|named| {
            let resolved = std::fs::canonicalize(&named).unwrap_or_else(|_| named.clone());
            (named, resolved)
        })
        .collect()
}

/// A node's `workdir` on this machine (a relative one is relative to
/// `$HOME`), as [`site::Site`] names it when Slurm's commands run here.
fn local_workdir(workdir: &str) -> PathBuf {
    PathBuf::from(crate::exec::slurm::under_home(std::env::var("HOME").ok().as_deref(), workdir))
}

/// The path at which Slurm node `node` reads `file` in place, if it lies
/// under one of its [`shared_dirs`] (compared after resolving symlinks):
/// the shared directory as the config names it, joined with the rest of
/// the file's resolved path. A symlink that exists only here (a project's
/// `data.csv` pointing into `/shared`) is thus never handed to the
/// cluster, which may not have it.
pub(crate) fn shared_path(node: &Node, file: &Path) -> Option<PathBuf> {
    let file = std::fs::canonicalize(file).ok()?;
    shared_dirs(node)
        .into_iter()
        .find_map(|(named, resolved)| file.strip_prefix(&resolved).ok().map(|rest| named.join(rest)))
}

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
    /// The array job of its latest attempt.
    job: String,
    /// Its group (an index into [`Run::groups`]) while its attempt is
    /// submitted and not yet settled; `None` while it waits to be
    /// (re)submitted.
    group: Option<usize>,
    started: Option<Instant>,
    /// The last attempt reported as started (a quick task may end
    /// between two polls without ever being seen running).
    announced: u32,
    missing: u32,
    done: bool,
}

/// One array task: parts run one after another.
struct Group {
    job: String,
    /// Its index in its array (`SLURM_ARRAY_TASK_ID`).
    index: usize,
    parts: Vec<usize>,
    /// Cancelled for a part's `--timeout`: its later parts never start
    /// (they are lost once Slurm lists it ended).
    cancelled: bool,
}

/// One submitted array and its throttle (`%N`).
struct Submitted {
    throttle: usize,
    /// Its groups, as indices into [`Run::groups`].
    groups: std::ops::Range<usize>,
}

/// `(job, array index) -> state`, from one `squeue` call.
type States = BTreeMap<(String, usize), String>;

/// Everything the coordinator follows.
struct Run<'a, 'n, T> {
    options: &'a ProcessOptions,
    array: &'a Array<'n>,
    units: &'a [Unit<T>],
    tasks: Vec<Task>,
    groups: Vec<Group>,
    arrays: Vec<Submitted>,
    /// Parts waiting for room to be (re)submitted.
    waiting: Vec<usize>,
}

/// Runs every unit of `units` on `node` as parts of Slurm array jobs,
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
    let tasks = (0..units.len())
        .map(|_| Task {
            attempt: 1,
            lost: 0,
            job: String::new(),
            group: None,
            started: None,
            announced: 0,
            missing: 0,
            done: false,
        })
        .collect();
    let waiting = (0..units.len()).collect();
    let mut run = Run { options, array: &array, units, tasks, groups: Vec::new(), arrays: Vec::new(), waiting };
    run.submit_waiting(&States::new(), on);
    // A run that gave up on parts that may still run keeps their directory.
    if run.follow(read, on) {
        array.clean_up(options);
    }
}

impl<T> Run<'_, '_, T> {
    /// The poll loop: one `squeue` per round, then every open part's
    /// files, then the parts to resubmit, as room allows. False when it
    /// gave up on parts that may still run ([`Run::give_up`]).
    fn follow(
        &mut self,
        read: &dyn Fn(usize, Vec<u8>) -> Result<T, String>,
        on: &mut dyn FnMut(ArrayEvent<T>),
    ) -> bool {
        let mut unanswered_since: Option<Instant> = None;
        while self.tasks.iter().any(|t| !t.done) {
            if interrupted() {
                self.array.cancel_all(&self.tasks);
                for (unit, t) in self.tasks.iter_mut().enumerate().filter(|(_, t)| !t.done) {
                    t.done = true;
                    on(ArrayEvent::Finished {
                        unit,
                        result: Err("interrupted; its Slurm array task was cancelled".into()),
                    });
                }
                return true;
            }
            let mut seen = match self.array.poll(self.options, &self.tasks) {
                Ok(seen) => seen,
                Err(_) if interrupted() => continue,
                Err(e) => {
                    self.give_up(&e, on);
                    return false;
                }
            };
            if seen.answered {
                unanswered_since = None;
            } else if unanswered_since.get_or_insert_with(Instant::now).elapsed() >= SQUEUE_SILENT_FOR {
                self.give_up(&self.array.squeue_silent(SQUEUE_SILENT_FOR), on);
                return false;
            }
            // Group by group, each in its running order: a part settles
            // before the next one of its group is seen starting.
            let open: Vec<(usize, usize)> = (self.groups.iter().enumerate())
                .flat_map(|(g, group)| group.parts.iter().map(move |&p| (g, p)))
                .filter(|&(g, p)| self.tasks[p].group == Some(g) && !self.tasks[p].done)
                .collect();
            for (group, unit) in open {
                let g = &self.groups[group];
                let (index, turn) = (g.index, self.its_turn(unit, group) && !g.cancelled);
                let state = seen.states.get(&(g.job.clone(), index)).map(String::as_str);
                let place = Place { state, answered: seen.answered, index, turn };
                let task = &mut self.tasks[unit];
                let now = step(self.options, self.array, unit, task, place, &mut seen.files, read);
                if matches!(now, Step::TimedOut(_)) {
                    self.groups[group].cancelled = true;
                }
                if react(self.options, self.array, unit, &mut self.tasks[unit], index, now, on) {
                    self.tasks[unit].group = None;
                    self.waiting.push(unit);
                }
            }
            self.submit_waiting(&seen.states, on);
            std::thread::sleep(POLL);
        }
        true
    }

    /// The site stayed unreachable (a login node lost): the open parts
    /// fail, never resubmitted, since their groups may still run on the
    /// cluster (and the parts waiting for room with them: the run is over).
    fn give_up(&mut self, why: &str, on: &mut dyn FnMut(ArrayEvent<T>)) {
        for (unit, task) in self.tasks.iter_mut().enumerate().filter(|(_, t)| !t.done) {
            task.done = true;
            let result = Err(format!("node {}: {why}", self.array.node.name));
            on(ArrayEvent::Finished { unit, result });
        }
    }

    /// Whether `unit` runs now if its group does: every part before it in
    /// the group has settled (finished, or failed and waits for a retry).
    fn its_turn(&self, unit: usize, group: usize) -> bool {
        let parts = &self.groups[group].parts;
        parts.iter().take_while(|&&p| p != unit).all(|&p| self.tasks[p].done || self.tasks[p].group != Some(group))
    }

    /// Whether group `g` may still run a part: one of its parts has not
    /// settled, or Slurm lists it as queued or running.
    fn live(&self, g: usize, states: &States) -> bool {
        let group = &self.groups[g];
        let listed = states.get(&(group.job.clone(), group.index)).is_some_and(|s| !squeue::is_final(s));
        listed || group.parts.iter().any(|&p| !self.tasks[p].done && self.tasks[p].group == Some(g))
    }

    /// The array tasks the run's arrays may still start at once: for each
    /// array, its throttle or its live groups, whichever is fewer.
    fn busy(&self, states: &States) -> usize {
        self.arrays.iter().map(|a| a.groups.clone().filter(|&g| self.live(g, states)).count().min(a.throttle)).sum()
    }

    /// Submits the waiting parts as one new array, regrouped for the room
    /// left under `slots`; they keep waiting while there is none.
    fn submit_waiting(&mut self, states: &States, on: &mut dyn FnMut(ArrayEvent<T>)) {
        if self.waiting.is_empty() || interrupted() {
            return;
        }
        let room = (self.array.node.slots.max(1) as usize).saturating_sub(self.busy(states));
        if room == 0 {
            return;
        }
        let mut waiting = std::mem::take(&mut self.waiting);
        waiting.sort_unstable();
        let sized: Vec<(usize, u64)> = waiting.iter().map(|&u| (u, self.units[u].size)).collect();
        let groups = group::groups(&sized, room);
        let throttle = room.min(groups.len());
        let number = self.arrays.len();
        match self.array.submit(self.options, self.units, number, &groups, throttle, &self.tasks) {
            Ok(job) => {
                let first = self.groups.len();
                for (index, parts) in groups.into_iter().enumerate() {
                    for &unit in &parts {
                        let task = &mut self.tasks[unit];
                        (task.job, task.group, task.missing) = (job.clone(), Some(first + index), 0);
                    }
                    self.groups.push(Group { job: job.clone(), index, parts, cancelled: false });
                }
                self.arrays.push(Submitted { throttle, groups: first..self.groups.len() });
            }
            Err(e) => {
                for unit in waiting {
                    self.tasks[unit].done = true;
                    on(ArrayEvent::Finished { unit, result: Err(e.clone()) });
                }
            }
        }
    }
}

/// Reports what `step` found; true when the task must be submitted again.
fn react<T>(
    options: &ProcessOptions,
    array: &Array,
    unit: usize,
    task: &mut Task,
    index: usize,
    step: Step<T>,
    on: &mut dyn FnMut(ArrayEvent<T>),
) -> bool {
    let step = match step {
        Step::TimedOut(reason) => Step::Failed(reason),
        other => other,
    };
    let ran = matches!(step, Step::Started | Step::Done(_) | Step::Failed(_));
    if ran && task.announced != task.attempt {
        task.announced = task.attempt;
        on(ArrayEvent::Started { unit, attempt: task.attempt });
    }
    match step {
        Step::Wait | Step::Started | Step::TimedOut(_) => false,
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
            array.cancel_task(&task.job, index);
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
    /// Failed for `--timeout`: its group was cancelled.
    TimedOut(String),
    Lost(String),
}

/// Where a part's group stands in Slurm.
struct Place<'s> {
    /// The group's state in `squeue`, if listed.
    state: Option<&'s str>,
    /// Whether `squeue` answered this poll (else `state` is unknown).
    answered: bool,
    /// The group's array index.
    index: usize,
    /// Whether every part before this one in the group has settled (and
    /// the group was not cancelled: then no later part starts).
    turn: bool,
}

/// What one part's files (as the poll brought them) and its group's
/// Slurm state say now.
fn step<T>(
    options: &ProcessOptions,
    array: &Array,
    unit: usize,
    task: &mut Task,
    place: Place<'_>,
    files: &mut BTreeMap<String, Read>,
    read: &dyn Fn(usize, Vec<u8>) -> Result<T, String>,
) -> Step<T> {
    let Place { state, answered, index, turn } = place;
    let timeout = options.limits.timeout.map(Duration::from_secs_f64);
    let status = array.files(unit, task.attempt).status;
    if let Some(code) = text(files.get(&status)).and_then(|t| t.trim().parse::<i32>().ok()) {
        return finished(options, array, unit, task, code, files, read);
    }
    match state {
        Some("PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "SUSPENDED" | "RESIZING") => {
            task.missing = 0;
            Step::Wait
        }
        // The group runs, but an earlier part of it still does (or it was
        // cancelled before this part's turn).
        Some("RUNNING" | "CONFIGURING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING") if !turn => {
            task.missing = 0;
            Step::Wait
        }
        Some("RUNNING" | "CONFIGURING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING") => {
            task.missing = 0;
            let first = task.started.is_none();
            let since = *task.started.get_or_insert_with(Instant::now);
            if timeout.is_some_and(|t| since.elapsed() >= t) {
                array.cancel_task(&task.job, index);
                return Step::TimedOut(format!(
                    "timed out after {}s (--timeout) on node {}; its Slurm array task was cancelled",
                    options.limits.timeout.unwrap_or(0.0),
                    array.node.name
                ));
            }
            if first { Step::Started } else { Step::Wait }
        }
        // Slurm could not be asked: the group may well be running. Never
        // count that towards lost (resubmitting could run a part twice).
        None if !answered => Step::Wait,
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
                "its Slurm array task {}_{index} ended {} without a result on node {}",
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

/// A part wrote its status: read what it printed (the poll brought it).
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

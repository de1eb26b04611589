//! The worker pool: `--jobs` threads run units (one isolated worker each,
//! retried with backoff) and the coordinator thread turns what they report
//! into task transitions and events. Only the coordinator touches the
//! [`TaskList`] and the [`Reporter`].
//!
//! Failover: when a node cannot be reached (or the connection drops before
//! its worker reported an exit status), the unit moves to the next healthy
//! target, else this machine, in a new attempt; the node is marked down for
//! the rest of the run and in the node cache (`distex route` reads it), and
//! its slots stop taking units. A node that answers but has no usable
//! distex for a built-in worker is left out of the run the same way, but
//! not marked down in the cache. A processor that fails is not failover: it
//! is retried on its own target per `--retries`.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::local::{self as worker, Job, Program};
use super::node::{self as remote, RemoteError};
use super::slurm::ArrayEvent;
use crate::config::NodeKind;
use crate::process::ProcessOptions;
use crate::tasks::{Event, Reporter, TaskList, TaskStatus};

/// One worker to run: a region, or a byte range of a file.
#[derive(Debug, Clone)]
pub(crate) struct Unit<T> {
    pub(crate) task_id: String,
    pub(crate) subject: String,
    pub(crate) program: Program,
    pub(crate) stdin: PathBuf,
    /// Extra variables (DISTEX_REGION); DISTEX_TASK_ID and DISTEX_ATTEMPT are added.
    pub(crate) env: Vec<(String, String)>,
    /// Records it holds, for progress (unknown for byte ranges).
    pub(crate) records: Option<u64>,
    /// The input bytes it reads (its stdin, or its byte range): a Slurm
    /// node groups small units into one array task by it.
    pub(crate) size: u64,
    /// Reads the worker's output as part of its attempt, on the pool's
    /// thread: an output it refuses fails the attempt (retried per
    /// `--retries`) like a processor that printed garbage.
    pub(crate) read: ReadOutput<T>,
}

/// See [`Unit::read`]: what a unit's output is read as is the caller's
/// choice (a region's summary or JSON object, a byte range's result).
pub(crate) type ReadOutput<T> = fn(Vec<u8>) -> Result<T, String>;

/// What became of a unit: its output as read, or why it failed.
pub(crate) type Outcome<T> = Result<T, String>;

/// Where units run: this machine, or a cluster node (`--nodes`), with how
/// many at once.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) node: Option<crate::config::Node>,
    pub(crate) slots: usize,
}

impl Target {
    pub(crate) fn name(&self) -> &str {
        self.node.as_ref().map_or("local", |n| n.name.as_str())
    }
}

/// A set of node names shared by the worker threads: the nodes found
/// unreachable during this run, or those that answered.
type Down = Arc<Mutex<HashSet<String>>>;

fn is_down(down: &Down, target: &Target) -> bool {
    target.node.as_ref().is_some_and(|n| down.lock().is_ok_and(|d| d.contains(&n.name)))
}

/// Where a unit whose home is `targets[home]` runs now: its home if it is
/// up, else the next node that is up, else this machine.
fn pick(targets: &[Target], home: usize, down: &Down) -> Target {
    let n = targets.len();
    let healthy = |t: &&Target| !is_down(down, t);
    let home_target = targets.get(home).filter(healthy);
    home_target
        .or_else(|| (1..n).map(|k| &targets[(home + k) % n]).filter(|t| t.node.is_some()).find(healthy))
        .or_else(|| targets.iter().find(|t| t.node.is_none()))
        .cloned()
        .unwrap_or(Target { node: None, slots: 1 })
}

/// Whether the slots of a down target should stop taking units: yes while
/// some other target is up to take them (this machine always is).
fn retire(targets: &[Target], home: usize, down: &Down) -> bool {
    is_down(down, &targets[home]) && targets.iter().any(|t| !is_down(down, t))
}

enum Msg<T> {
    Started { unit: usize, attempt: u32, node: String },
    Retrying { unit: usize, attempt: u32, reason: String, delay: Duration },
    Moved { unit: usize, attempt: u32, reason: String, to: String },
    NodeDown { node: String },
    Finished { unit: usize, result: Outcome<T> },
}

/// What every unit of a run shares: the options its workers run with, the
/// run directory, the clock of the run, and where units may run.
pub(crate) struct Pool<'a> {
    pub(crate) options: &'a ProcessOptions,
    pub(crate) run_dir: &'a Path,
    pub(crate) started: Instant,
    pub(crate) targets: &'a [Target],
}

impl Pool<'_> {
    /// Milliseconds since the run started.
    pub(crate) fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// What the Slurm array runner reports, as the pool's own messages.
fn array_message<T>(event: ArrayEvent<T>, node: &str) -> Msg<T> {
    match event {
        ArrayEvent::Started { unit, attempt } => Msg::Started { unit, attempt, node: node.to_string() },
        ArrayEvent::Retrying { unit, attempt, reason } => {
            Msg::Retrying { unit, attempt, reason, delay: Duration::ZERO }
        }
        ArrayEvent::Lost { unit, attempt, reason } => {
            Msg::Moved { unit, attempt, reason, to: format!("node {node} again (not counted as a retry)") }
        }
        ArrayEvent::Finished { unit, result } => Msg::Finished { unit, result },
    }
}

/// Runs every unit, handing each unit's outcome to `done` (on this thread)
/// as soon as it is known, so the caller can start on it while other units
/// still run. `done` gets every unit exactly once, and says whether the
/// unit completed: `Err` fails its task with that reason (an output the
/// caller cannot use). Returns the warnings.
pub(crate) fn run_units_into<T: Send + Clone + 'static>(
    pool: &Pool<'_>,
    units: &[Unit<T>],
    tasks: &mut TaskList,
    reporter: &mut dyn Reporter,
    done: &mut dyn FnMut(usize, Outcome<T>) -> Result<(), String>,
) -> Vec<String> {
    let (tx, rx) = mpsc::channel::<Msg<T>>();
    let threads = spawn_slots(pool, units, tx);
    let mut coordinator = Coordinator {
        pool,
        units,
        tasks,
        reporter,
        done,
        handed: vec![false; units.len()],
        warnings: Vec::new(),
        finished: 0,
        records_done: 0,
    };
    for msg in rx {
        coordinator.take(msg);
    }
    for t in threads {
        let _ = t.join();
    }
    coordinator.fail_unhanded();
    coordinator.warnings
}

/// Starts the threads that run the units and send what happens to `tx`:
/// Slurm array jobs when a Slurm node is among the targets, else one thread
/// per slot of every target.
fn spawn_slots<T: Send + Clone + 'static>(
    pool: &Pool<'_>,
    units: &[Unit<T>],
    tx: mpsc::Sender<Msg<T>>,
) -> Vec<std::thread::JoinHandle<()>> {
    let queue = Arc::new(Mutex::new((0..units.len()).collect::<VecDeque<usize>>()));
    let (down, answered): (Down, Down) = (Arc::default(), Arc::default());
    let mut threads = Vec::new();
    // A Slurm node takes every unit, as array jobs (workers/slurm/).
    let slurm = pool.targets.iter().find_map(|t| t.node.as_ref().filter(|n| n.kind() == NodeKind::Slurm)).cloned();
    if let Some(node) = slurm {
        let (units, options, tx) = (units.to_vec(), pool.options.clone(), tx.clone());
        threads.push(std::thread::spawn(move || {
            let read = |i: usize, bytes: Vec<u8>| (units[i].read)(bytes);
            super::slurm::run_array(&options, &node, &units, &read, &mut |event| {
                let _ = tx.send(array_message(event, &node.name));
            });
        }));
    }
    // Otherwise one thread per slot of every target, all taking units from
    // one queue: a faster target simply takes more of them.
    let pool_targets = if threads.is_empty() { pool.targets } else { &[] };
    for (home, target) in pool_targets.iter().enumerate() {
        for _ in 0..target.slots.min(units.len()) {
            let (queue, tx, targets) = (queue.clone(), tx.clone(), pool.targets.to_vec());
            let (down, answered) = (down.clone(), answered.clone());
            let (units, options, run_dir) = (units.to_vec(), pool.options.clone(), pool.run_dir.to_path_buf());
            threads.push(std::thread::spawn(move || {
                let place = Placement { targets: &targets, home, down: &down, answered: &answered };
                while !retire(&targets, home, &down) {
                    let Some(unit) = queue.lock().ok().and_then(|mut q| q.pop_front()) else { break };
                    let result = run_with_retries(&options, &run_dir, unit, &units[unit], &place, &tx);
                    let _ = tx.send(Msg::Finished { unit, result });
                }
            }));
        }
    }
    threads
}

/// The coordinator's side of a pool: turns the slots' messages into task
/// transitions, events and warnings, and hands outcomes to the caller.
struct Coordinator<'a, 'p, T> {
    pool: &'a Pool<'p>,
    units: &'a [Unit<T>],
    tasks: &'a mut TaskList,
    reporter: &'a mut dyn Reporter,
    done: &'a mut dyn FnMut(usize, Outcome<T>) -> Result<(), String>,
    /// Units whose outcome went to `done`.
    handed: Vec<bool>,
    warnings: Vec<String>,
    /// Units finished, and the records they held, for progress.
    finished: u64,
    records_done: u64,
}

impl<T> Coordinator<'_, '_, T> {
    fn take(&mut self, msg: Msg<T>) {
        match msg {
            Msg::Started { unit, attempt, node } => self.started(unit, attempt, node),
            Msg::Retrying { unit, attempt, reason, delay } => self.warn(format!(
                "{} attempt {attempt} failed: {reason}; retrying in {} ms",
                self.units[unit].subject,
                delay.as_millis()
            )),
            Msg::Moved { unit, attempt, reason, to } => self.warn(format!(
                "{} attempt {attempt} could not run: {reason}; moving it to {to}",
                self.units[unit].subject
            )),
            Msg::NodeDown { node } => self.warn(format!(
                "node {node} is marked down: no more regions go there in this run, and later runs skip it \
                 for routing.unhealthy_for (see `distex nodes`; `distex nodes --probe` rechecks)"
            )),
            Msg::Finished { unit, result } => self.finished(unit, result),
        }
    }

    /// An attempt started on `node`: the task is in progress there (said
    /// again on a first attempt, and after a failed one).
    fn started(&mut self, unit: usize, attempt: u32, node: String) {
        let id = &self.units[unit].task_id;
        if let Some(from) = self.tasks.transition(id, TaskStatus::InProgress, self.pool.ms()) {
            if let Some(t) = self.tasks.get_mut(id) {
                t.node = Some(node);
            }
            if from != TaskStatus::InProgress || attempt == 1 {
                self.reporter.report(&status_event(self.tasks, id, from, None));
            }
        }
    }

    fn warn(&mut self, message: String) {
        self.reporter.report(&Event::Warning { message: message.clone() });
        self.warnings.push(message);
    }

    /// A unit's outcome: handed to the caller, whose verdict completes or
    /// fails the task; then progress.
    fn finished(&mut self, unit: usize, result: Outcome<T>) {
        // A result for a task that already finished is ignored: counted once.
        if self.handed[unit] {
            return;
        }
        self.handed[unit] = true;
        let id = &self.units[unit].task_id;
        let verdict = (self.done)(unit, result);
        let from = match &verdict {
            Ok(()) => self.tasks.transition(id, TaskStatus::Completed, self.pool.ms()),
            Err(reason) => self.tasks.fail(id, reason.clone(), self.pool.ms()),
        };
        if let Some(from) = from {
            self.reporter.report(&status_event(self.tasks, id, from, verdict.err()));
            self.finished += 1;
            self.records_done += self.units[unit].records.unwrap_or(0);
            self.reporter.report(&Event::Progress {
                done: self.finished,
                total: Some(self.units.len() as u64),
                records: self.units[unit].records.map(|_| self.records_done),
                elapsed_ms: self.pool.ms(),
            });
        }
    }

    /// Fails every unit no slot finished (the slots stopped early), so
    /// that `done` still gets each unit once.
    fn fail_unhanded(&mut self) {
        for i in (0..self.units.len()).filter(|&i| !self.handed[i]) {
            let reason = "the worker pool stopped before running it".to_string();
            self.tasks.fail(&self.units[i].task_id, reason.clone(), self.pool.ms());
            let _ = (self.done)(i, Err(reason));
        }
    }
}

/// The event of task `id`'s move from `from` to its status now.
fn status_event(tasks: &TaskList, id: &str, from: TaskStatus, error: Option<String>) -> Event {
    let task = tasks.get(id).expect("known task");
    Event::TaskStatusChanged {
        id: id.to_string(),
        subject: task.subject.clone(),
        from,
        to: task.status,
        at_ms: task.history.last().map_or(0, |h| h.at_ms),
        node: task.node.clone(),
        error,
    }
}

/// Runs `aggregate-results` (task `id`) on this machine once every task
/// it waits on completed: `combine` computes the totals, and an `Err`
/// fails the task with that reason. Otherwise the task fails as blocked,
/// naming the failed tasks. The totals when it completed.
pub(crate) fn aggregate<R>(
    pool: &Pool<'_>,
    id: &str,
    tasks: &mut TaskList,
    reporter: &mut dyn Reporter,
    combine: impl FnOnce() -> Result<R, String>,
) -> Option<R> {
    if !aggregate_ready(tasks, id) {
        fail_blocked(tasks, id, pool.ms(), reporter);
        return None;
    }
    let from = tasks.transition(id, TaskStatus::InProgress, pool.ms()).unwrap_or(TaskStatus::Blocked);
    if let Some(t) = tasks.get_mut(id) {
        t.node = Some("local".into());
    }
    reporter.report(&status_event(tasks, id, from, None));
    let outcome = combine();
    let status_from = match &outcome {
        Ok(_) => tasks.transition(id, TaskStatus::Completed, pool.ms()),
        Err(e) => tasks.fail(id, e.clone(), pool.ms()),
    };
    if let Some(from) = status_from {
        reporter.report(&status_event(tasks, id, from, outcome.as_ref().err().cloned()));
    }
    outcome.ok()
}

/// Whether `aggregate_id` can run: every task it waits on completed (or,
/// for an input without records, it waits on none and is still pending).
fn aggregate_ready(tasks: &TaskList, aggregate_id: &str) -> bool {
    tasks.get(aggregate_id).is_some_and(|t| t.status == TaskStatus::Pending)
        || tasks.unblocked().iter().any(|id| id == aggregate_id)
}

/// Fails `aggregate_id` because tasks it waits on failed, naming them.
fn fail_blocked(tasks: &mut TaskList, aggregate_id: &str, at_ms: u64, reporter: &mut dyn Reporter) {
    let failed: Vec<&str> = tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Failed && t.id != aggregate_id)
        .map(|t| t.subject.as_str())
        .collect();
    let reason = format!("not run: blocked by failed task(s) {}", failed.join(", "));
    if let Some(from) = tasks.fail(aggregate_id, reason.clone(), at_ms) {
        reporter.report(&status_event(tasks, aggregate_id, from, Some(reason)));
    }
}

/// The targets a worker thread may use: its own (`home`) first.
struct Placement<'a> {
    targets: &'a [Target],
    home: usize,
    down: &'a Down,
    answered: &'a Down,
}

/// Runs one unit with up to `options.retries` extra attempts, each in a
/// fresh work directory. Moves off an unreachable node do not use up
/// `--retries` (every move marks one more node down, so they are bounded).
fn run_with_retries<T>(
    options: &ProcessOptions,
    run_dir: &Path,
    index: usize,
    unit: &Unit<T>,
    place: &Placement,
    tx: &mpsc::Sender<Msg<T>>,
) -> Outcome<T> {
    let (mut attempt, mut moves) = (1u32, 0u32);
    let mut target = pick(place.targets, place.home, place.down);
    loop {
        let _ = tx.send(Msg::Started { unit: index, attempt, node: target.name().to_string() });
        let workdir = run_dir.join(format!("work-{index}-{attempt}"));
        let job = job(options, unit, workdir.clone(), attempt);
        let ran = match &target.node {
            Some(node) => remote::run(node, &job),
            None => worker::run(&job).map_err(RemoteError::Failed),
        };
        let result = ran.and_then(|out| (unit.read)(out).map_err(RemoteError::Failed));
        if !options.keep_workdirs {
            worker::remove_dir(&workdir);
        }
        let reason = match result {
            Ok(output) => {
                mark_up(place, &target);
                return Ok(output);
            }
            Err(RemoteError::Transport(reason)) if !worker::interrupted() => {
                if mark_down(place.down, &target, &reason) {
                    let _ = tx.send(Msg::NodeDown { node: target.name().to_string() });
                }
                target = move_on(place, index, attempt, reason, tx);
                (attempt, moves) = (attempt + 1, moves + 1);
                continue;
            }
            Err(RemoteError::NoWorker(reason)) if !worker::interrupted() => {
                // The node answered: it is left out of this run only, not
                // marked down in the node cache.
                exclude(place.down, &target);
                target = move_on(place, index, attempt, reason, tx);
                (attempt, moves) = (attempt + 1, moves + 1);
                continue;
            }
            // A changed host key: a security event, not a node that is down
            // (its other regions are refused the same way, never moved).
            Err(RemoteError::Refused(reason)) => {
                distrust(&target, &reason);
                return Err(reason);
            }
            // At most once: a worker that may have run is never run again.
            Err(RemoteError::Lost(reason)) => {
                if mark_down(place.down, &target, &reason) {
                    let _ = tx.send(Msg::NodeDown { node: target.name().to_string() });
                }
                return Err(reason);
            }
            Err(e) => e.to_string(),
        };
        if attempt - moves <= options.retries && !worker::interrupted() {
            let delay = backoff(attempt);
            let _ = tx.send(Msg::Retrying { unit: index, attempt, reason, delay });
            std::thread::sleep(delay);
            attempt += 1;
        } else if attempt > 1 {
            return Err(format!("{reason} (after {attempt} attempts)"));
        } else {
            return Err(reason);
        }
    }
}

/// Attempt `attempt` of `unit`, in `workdir`: its variables with
/// `DISTEX_TASK_ID` and `DISTEX_ATTEMPT` added, and the run's limits.
fn job<T>(options: &ProcessOptions, unit: &Unit<T>, workdir: PathBuf, attempt: u32) -> Job {
    let mut env = unit.env.clone();
    env.push(("DISTEX_TASK_ID".into(), unit.task_id.clone()));
    env.push(("DISTEX_ATTEMPT".into(), attempt.to_string()));
    Job {
        program: unit.program.clone(),
        stdin: unit.stdin.clone(),
        workdir,
        env,
        limits: options.limits.clone(),
        sandbox: options.sandbox,
        pass_env: crate::process::options::passed_env(options).unwrap_or_default(),
        allow_connect: options.allow_connect.clone(),
    }
}

/// Where a unit that could not run on its target goes next (the next
/// node up, else this machine), said as a move of attempt `attempt`.
fn move_on<T>(place: &Placement, unit: usize, attempt: u32, reason: String, tx: &mpsc::Sender<Msg<T>>) -> Target {
    let target = pick(place.targets, place.home, place.down);
    let to = target.node.as_ref().map_or("this machine".to_string(), |n| format!("node {}", n.name));
    let _ = tx.send(Msg::Moved { unit, attempt, reason, to });
    target
}

/// Marks `target`'s node down for this run and, once per node, in the node
/// cache, so that later runs and `distex route` avoid it. True the first
/// time (the caller says so once).
fn mark_down(down: &Down, target: &Target, reason: &str) -> bool {
    let Some(node) = &target.node else { return false };
    let first = down.lock().is_ok_and(|mut d| d.insert(node.name.clone()));
    if first {
        distrust(target, reason);
    }
    first
}

/// Records in the node cache that `target`'s node failed us (`answered:
/// false` with the reason: down, or its host key changed), so that
/// `distex route` and later runs avoid it.
fn distrust(target: &Target, reason: &str) {
    if let Some(node) = &target.node {
        // Only a cache: a run must not fail because it cannot be written.
        let _ = crate::state::NodeStates::record_failure(&node.name, reason);
    }
}

/// Takes `target`'s node out of this run (its slots stop taking units)
/// without touching the node cache: it answered, it just cannot run them.
fn exclude(down: &Down, target: &Target) {
    if let Some(node) = &target.node
        && let Ok(mut d) = down.lock()
    {
        d.insert(node.name.clone());
    }
}

/// Records in the node cache, once per node and run, that a node answered
/// (so a node that was down in an earlier run is trusted again), unless it
/// was found down since.
fn mark_up(place: &Placement, target: &Target) {
    let Some(node) = &target.node else { return };
    if is_down(place.down, target) {
        return;
    }
    if place.answered.lock().is_ok_and(|mut a| a.insert(node.name.clone())) {
        let _ = crate::state::NodeStates::record_answer(&node.name, None);
    }
}

/// 100 ms, 200 ms, 400 ms, ... capped at 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << (attempt - 1).min(6))).min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value};

    use super::*;

    fn node(name: &str) -> Target {
        use crate::config::{Detected, Os, parse};
        let detected = Detected { hostname: "here".into(), os: Os::Linux, cores: 2 };
        let text = format!("[[node]]\nname = \"{name}\"\nhost = \"{name}.example\"\nos = \"linux\"\n");
        let config = parse(&text, None, &detected).expect("valid config");
        Target { node: config.node(name).cloned(), slots: 2 }
    }

    fn down(names: &[&str]) -> Down {
        Arc::new(Mutex::new(names.iter().map(|n| n.to_string()).collect()))
    }

    /// The caller's verdict decides a unit's status: an output it cannot
    /// use fails the task with the reason (it is not left `completed`).
    #[test]
    fn an_output_the_caller_refuses_fails_its_task() {
        let run_dir = tempfile::tempdir().unwrap();
        let units: Vec<Unit<Map<String, Value>>> = ["good", "bad"]
            .iter()
            .map(|name| Unit {
                task_id: name.to_string(),
                subject: format!("process-part-{name}"),
                program: Program::Shell(format!("echo '{{\"name\": \"{name}\"}}'")),
                stdin: PathBuf::from("/dev/null"),
                env: vec![],
                records: None,
                size: 0,
                read: |out| worker::parse_output(&out),
            })
            .collect();
        let mut tasks = TaskList::new();
        for u in &units {
            tasks.add(u.task_id.clone(), u.subject.clone(), vec![]);
        }
        let mut seen = Vec::new();
        let options = ProcessOptions::default();
        let local = [Target { node: None, slots: 2 }];
        let mut reporter = crate::tasks::NullReporter;
        let pool = Pool { options: &options, run_dir: run_dir.path(), started: Instant::now(), targets: &local };
        run_units_into(&pool, &units, &mut tasks, &mut reporter, &mut |i, out| {
            seen.push(i);
            match out {
                Ok(map) if map["name"] == "bad" => Err("its result names other columns".into()),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            }
        });
        seen.sort();
        assert_eq!(seen, [0, 1], "every unit is handed over once");
        let good = tasks.get("good").unwrap();
        assert_eq!(good.status, TaskStatus::Completed);
        let bad = tasks.get("bad").unwrap();
        assert_eq!(bad.status, TaskStatus::Failed);
        assert_eq!(bad.error.as_deref(), Some("its result names other columns"));
    }

    #[test]
    fn a_unit_moves_to_the_next_node_up_then_to_this_machine() {
        let here = Target { node: None, slots: 1 };
        let targets = [here, node("a"), node("b"), node("c")];
        assert_eq!(pick(&targets, 1, &down(&[])).name(), "a");
        assert_eq!(pick(&targets, 1, &down(&["a"])).name(), "b");
        assert_eq!(pick(&targets, 3, &down(&["c"])).name(), "a", "wraps around the nodes");
        assert_eq!(pick(&targets, 1, &down(&["a", "b", "c"])).name(), "local");
        assert_eq!(pick(&targets, 0, &down(&["a", "b", "c"])).name(), "local");
    }

    #[test]
    fn without_local_slots_the_last_resort_is_still_this_machine() {
        let targets = [node("a"), node("b")];
        let all_down = down(&["a", "b"]);
        let last = pick(&targets, 0, &all_down);
        assert!(last.node.is_none());
        // The slots of a down node retire while another target is up, and
        // keep working (here) once none is.
        assert!(retire(&targets, 0, &down(&["a"])));
        assert!(!retire(&targets, 1, &down(&["a"])));
        assert!(!retire(&targets, 0, &all_down));
    }
}

//! Runs a [`Plan`] across the cluster: the engine of `distex parallel`.
//!
//! Each task is routed like a single `distex run` would be. A task whose
//! command matched a rule may only go where the rule allows (its failover
//! order); a task no rule cares about may run anywhere (this machine
//! first, then the nodes, best score first), which is what spreads a batch
//! of independent commands over the cluster. Every target takes at most
//! its `slots` tasks at once, and `--jobs` caps the total.
//!
//! The loop is event-driven: it starts whatever can start, then waits for
//! a task to finish (or print a line, or Ctrl-C). A transport failure marks
//! the node down for the rest of the run and puts the task back to
//! `pending`, so it goes elsewhere; a failed command fails its task, and
//! unless `keep_going`, no new task starts after that. The scheduler never
//! prints: every change is an [`Event`] for the [`Reporter`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::plan::{Inferred, Plan};
use super::{Event, Reporter, Stream, Task, TaskList, TaskStatus};
use crate::config::{Config, NodeKind};
use crate::exec::node;
use crate::exec::output::{Capture, LineSplitter, OutputSink, Tail};
use crate::exec::run::{self, AttemptResult, RunSpec, RunStatus, Stopper, SyncedNodes, Timings};
use crate::exec::ssh::{Fault, TransportError};
use crate::exec::sync::Project;
use crate::route::Decision;

/// How to run a plan.
#[derive(Debug, Clone, Default)]
pub(crate) struct ParallelOptions {
    /// At most this many tasks at once (default: the cluster's total slots).
    pub(crate) jobs: Option<usize>,
    /// Keep starting tasks that do not depend on a failed one.
    pub(crate) keep_going: bool,
    /// Only use these targets (`local` included by name).
    pub(crate) nodes: Option<Vec<String>>,
    /// Sync the project before remote tasks (None: each rule's default).
    pub(crate) sync: Option<bool>,
    /// Per-task timeout.
    pub(crate) timeout: Option<Duration>,
    /// Where the commands belong locally.
    pub(crate) cwd: PathBuf,
    /// The project root to mirror (`--sync-root`).
    pub(crate) sync_root: Option<PathBuf>,
}

/// One task in the final report: the shared TaskList shape plus what ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct TaskReport {
    #[serde(flatten)]
    pub(crate) task: Task,
    pub(crate) command: String,
    /// The command's exit status, when it ran to the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timings: Option<Timings>,
    /// The end of the task's output (last attempt), bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stdout: Option<Capture>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stderr: Option<Capture>,
    /// Dependencies distex inferred (shared build directories, files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) inferred: Vec<Inferred>,
}

/// Totals of a parallel run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Summary {
    pub(crate) total: usize,
    pub(crate) completed: usize,
    pub(crate) failed: usize,
    /// Failed tasks that never started (a dependency failed, or the run stopped).
    pub(crate) not_started: usize,
    pub(crate) elapsed_ms: u64,
    pub(crate) interrupted: bool,
    /// Tasks completed per target.
    pub(crate) per_node: BTreeMap<String, usize>,
}

/// `{"tasks": [...], "summary": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct ParallelReport {
    pub(crate) tasks: Vec<TaskReport>,
    pub(crate) summary: Summary,
}

impl ParallelReport {
    /// 0 all completed, 128+N after signal N (130 for Ctrl-C), 1 otherwise.
    pub(crate) fn exit_code(&self) -> u8 {
        use crate::error::exit;
        if self.summary.interrupted {
            crate::exec::signals::exit_code()
        } else if self.summary.failed == 0 {
            exit::OK
        } else {
            exit::FAILED
        }
    }
}

enum Msg {
    Output {
        id: String,
        stream: Stream,
        line: String,
    },
    /// A task a node's own scheduler (Slurm) had queued started running.
    Started {
        id: String,
        target: String,
    },
    Done {
        id: String,
        target: String,
        result: Box<Result<AttemptResult, TransportError>>,
        output: (Capture, Capture),
    },
}

/// What a task that ran left behind: exit code, timings, (stdout, stderr).
type Finished = (Option<i32>, Timings, (Capture, Capture));

/// How much of each stream a parallel task's report keeps.
pub(crate) const TASK_CAPTURE_LIMIT: usize = 16 * 1024;

/// Sends a task's output, line by line, to the scheduler loop.
struct LineSink {
    id: String,
    target: String,
    tx: mpsc::UnboundedSender<Msg>,
    out: LineSplitter,
    err: LineSplitter,
    out_tail: Tail,
    err_tail: Tail,
}

impl OutputSink for LineSink {
    fn chunk(&mut self, stream: Stream, bytes: &[u8]) {
        let splitter = match stream {
            Stream::Stdout => {
                self.out_tail.push(bytes);
                &mut self.out
            }
            Stream::Stderr => {
                self.err_tail.push(bytes);
                &mut self.err
            }
        };
        for line in splitter.feed(bytes) {
            let _ = self.tx.send(Msg::Output { id: self.id.clone(), stream, line });
        }
    }

    fn started(&mut self) {
        let _ = self.tx.send(Msg::Started { id: self.id.clone(), target: self.target.clone() });
    }

    fn finish(&mut self) {
        for (stream, splitter) in [(Stream::Stdout, &mut self.out), (Stream::Stderr, &mut self.err)] {
            if let Some(line) = splitter.rest() {
                let _ = self.tx.send(Msg::Output { id: self.id.clone(), stream, line });
            }
        }
    }
}

/// Where a task may run, in order of preference.
fn targets(config: &Config, decision: &Decision, allowed: Option<&[String]>) -> Vec<String> {
    let mut order: Vec<String> = if decision.rule.is_none() && !decision.distribute {
        // Nobody cares where it runs: here first, then every node by score.
        let mut nodes: Vec<_> =
            decision.candidates.iter().filter(|c| c.eligible).map(|c| (c.score, c.node.clone())).collect();
        nodes.sort_by(|a, b| a.0.total_cmp(&b.0));
        std::iter::once("local".to_string()).chain(nodes.into_iter().map(|(_, n)| n)).collect()
    } else {
        run::failover_order(config, decision, None).iter().map(|t| t.name().to_string()).collect()
    };
    if let Some(allowed) = allowed {
        order.retain(|t| allowed.contains(t));
    }
    order
}

fn subject(command: &str) -> String {
    if command.chars().count() > 60 {
        command.chars().take(57).chain("...".chars()).collect()
    } else {
        command.to_string()
    }
}

/// Where one task may run, decided once before the run starts.
#[derive(Clone)]
struct Placement {
    /// Targets in order of preference (nodes that go down are skipped later).
    order: Vec<String>,
    /// This machine is in `order` only as a fallback: the task's rule
    /// prefers nodes this machine is not (roles), so it runs here only
    /// when none of them is left up.
    here_as_fallback: bool,
    /// The project to mirror before running remotely, if any.
    project: Option<Project>,
    /// Paths to bring back afterwards.
    returns: Vec<String>,
    /// Why the task cannot start at all (it needs a project there is none of).
    refused: Option<String>,
}

/// Runs the plan to the end (or until Ctrl-C).
///
/// The phases: place every task (route it once), then loop: settle the
/// list (unblock, doom), start what may start, wait for one message and
/// apply it; finally fail what never started and build the report.
pub(crate) async fn run(
    config: Arc<Config>,
    plan: &Plan,
    opts: &ParallelOptions,
    reporter: &mut dyn Reporter,
    cancel: tokio::sync::watch::Receiver<bool>,
) -> ParallelReport {
    let mut cancel_watch = cancel.clone();
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let mut run = Scheduler::new(config, plan, opts, reporter, cancel);
    loop {
        run.settle();
        if !run.stop_starting {
            run.start_ready(&tx);
        }
        if run.running == 0 {
            // Nothing runs and nothing could start: done (or stuck behind failures).
            break;
        }
        let msg = tokio::select! {
            msg = rx.recv() => msg,
            changed = cancel_watch.changed(), if !run.interrupted => {
                if changed.is_ok() && *cancel_watch.borrow() {
                    run.interrupted = true;
                    run.stop_starting = true;
                }
                continue;
            }
        };
        let Some(msg) = msg else { break };
        run.apply(msg);
    }
    run.fail_leftovers();
    run.report()
}

/// The state of one run of the scheduler loop.
struct Scheduler<'a> {
    config: Arc<Config>,
    plan: &'a Plan,
    opts: &'a ParallelOptions,
    reporter: &'a mut dyn Reporter,
    started: Instant,
    list: TaskList,
    placements: HashMap<String, Placement>,
    /// The `--jobs` cap on tasks running at once.
    jobs: usize,
    /// Nodes already synced in this run (each is synced once).
    synced: SyncedNodes,
    /// Ctrl-C for every task (each adds its own `--timeout` deadline).
    stopper: Stopper,
    /// Tasks running per target.
    busy: HashMap<String, usize>,
    /// Tasks handed to a node's own scheduler (Slurm) that have not started
    /// yet: still `pending` in the TaskList, but taken.
    queued: HashSet<String>,
    /// Targets that failed to connect: skipped for the rest of the run.
    down: HashSet<String>,
    running: usize,
    stop_starting: bool,
    interrupted: bool,
    results: HashMap<String, Finished>,
    completed_on: BTreeMap<String, usize>,
    /// Per task, why each target it was sent to could not be reached.
    last_errors: HashMap<String, Vec<String>>,
    /// Tasks already warned that they run here as a fallback.
    warned_fallback: HashSet<String>,
    set: tokio::task::JoinSet<()>,
}

impl<'a> Scheduler<'a> {
    /// Phase 1: the task list, and a placement for every task.
    fn new(
        config: Arc<Config>,
        plan: &'a Plan,
        opts: &'a ParallelOptions,
        reporter: &'a mut dyn Reporter,
        cancel: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let started = Instant::now();
        let mut list = TaskList::new();
        for t in &plan.tasks {
            list.add(t.id.clone(), subject(&t.command), t.blocked_by());
        }
        reporter.report(&Event::RunStarted { run: run::run_id(), tasks: list.len() });
        let (placements, warning) = place(&config, plan, opts);
        if let Some(message) = warning {
            reporter.report(&Event::Warning { message });
        }
        Scheduler {
            config,
            plan,
            opts,
            reporter,
            started,
            list,
            placements,
            jobs: opts.jobs.unwrap_or(usize::MAX).max(1),
            synced: Default::default(),
            stopper: Stopper::new(None, cancel),
            busy: HashMap::new(),
            queued: HashSet::new(),
            down: HashSet::new(),
            running: 0,
            stop_starting: false,
            interrupted: false,
            results: HashMap::new(),
            completed_on: BTreeMap::new(),
            last_errors: HashMap::new(),
            warned_fallback: HashSet::new(),
            set: tokio::task::JoinSet::new(),
        }
    }

    /// Milliseconds since the run started.
    fn at(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn emit(&mut self, id: &str, to: TaskStatus, node: Option<String>, error: Option<String>) {
        let at = self.at();
        emit(self.reporter, &mut self.list, id, to, at, node, error);
    }

    /// Tasks whose dependencies completed become pending; tasks with a
    /// failed dependency fail without starting.
    fn settle(&mut self) {
        for id in self.list.unblocked() {
            self.emit(&id, TaskStatus::Pending, None, None);
        }
        for id in self.list.doomed() {
            let dep = self.list.get(&id).and_then(|t| {
                t.blocked_by.iter().find(|d| self.list.get(d).is_none_or(|d| d.status == TaskStatus::Failed)).cloned()
            });
            let why = format!("not started: dependency {} failed", dep.unwrap_or_default());
            self.emit(&id, TaskStatus::Failed, None, Some(why));
        }
    }

    /// Starts pending tasks while `--jobs` and the targets' slots allow.
    fn start_ready(&mut self, tx: &mpsc::UnboundedSender<Msg>) {
        let pending: Vec<String> = self
            .list
            .iter()
            .filter(|t| t.status == TaskStatus::Pending && !self.queued.contains(&t.id))
            .map(|t| t.id.clone())
            .collect();
        for id in pending {
            if self.running >= self.jobs {
                break;
            }
            let placement = self.placements[&id].clone();
            if let Some(why) = &placement.refused {
                self.emit(&id, TaskStatus::Failed, None, Some(format!("not started: {why}")));
                if !self.opts.keep_going {
                    self.stop_starting = true;
                }
                continue;
            }
            let mut usable: Vec<&String> = placement.order.iter().filter(|t| !self.down.contains(*t)).collect();
            if placement.here_as_fallback && usable.iter().any(|t| *t != "local") {
                usable.retain(|t| *t != "local");
            } else if placement.here_as_fallback && !usable.is_empty() && self.warned_fallback.insert(id.clone()) {
                let message =
                    format!("task {id}: none of the nodes its rule prefers could be reached; running it here instead");
                self.reporter.report(&Event::Warning { message });
            }
            if usable.is_empty() {
                self.fail_unplaceable(&id);
                continue;
            }
            let Some(target) =
                usable.into_iter().find(|t| self.busy.get(*t).copied().unwrap_or(0) < self.capacity(t)).cloned()
            else {
                continue;
            };
            self.start(id, target, placement, tx);
        }
    }

    /// How many tasks `target` takes at once (its slots).
    fn capacity(&self, target: &str) -> usize {
        match self.config.node(target) {
            Some(n) => n.slots as usize,
            None => self.config.local.slots.max(1) as usize,
        }
    }

    /// Every target the task may use is down: it fails with what each said.
    fn fail_unplaceable(&mut self, id: &str) {
        let tried = self.last_errors.get(id).map(|e| e.join("; ")).unwrap_or_else(|| "no node may run it".into());
        self.emit(id, TaskStatus::Failed, None, Some(format!("no node could run it: {tried}")));
        if !self.opts.keep_going {
            self.stop_starting = true;
        }
    }

    /// Starts task `id` on `target`; its output and result come back as [`Msg`]s.
    fn start(&mut self, id: String, target: String, placement: Placement, tx: &mpsc::UnboundedSender<Msg>) {
        *self.busy.entry(target.clone()).or_default() += 1;
        self.running += 1;
        // A task a node queues is in progress only once it runs.
        if self.config.node(&target).is_some_and(|n| n.kind() == NodeKind::Slurm) {
            self.queued.insert(id.clone());
        } else {
            self.emit(&id, TaskStatus::InProgress, Some(target.clone()), None);
        }
        let command = self.plan.tasks.iter().find(|t| t.id == id).map(|t| t.command.clone()).unwrap_or_default();
        let spec = RunSpec {
            command,
            cwd: self.opts.cwd.clone(),
            sync: Some(placement.project.is_some()),
            returns: vec![],
            synced_nodes: Some(self.synced.clone()),
            sync_root: self.opts.sync_root.clone(),
        };
        let stopper =
            Stopper { deadline: self.opts.timeout.map(|t| tokio::time::Instant::now() + t), ..self.stopper.clone() };
        let (config, tx) = (self.config.clone(), tx.clone());
        self.set.spawn(async move {
            let mut sink = LineSink {
                id: id.clone(),
                target: target.clone(),
                tx: tx.clone(),
                out: LineSplitter::default(),
                err: LineSplitter::default(),
                out_tail: Tail::new(TASK_CAPTURE_LIMIT),
                err_tail: Tail::new(TASK_CAPTURE_LIMIT),
            };
            let Placement { project, returns, .. } = placement;
            let result = match config.node(&target) {
                Some(node) => {
                    let project = project.as_ref();
                    let attempt = run::NodeAttempt { config: &config, node, spec: &spec, project, returns: &returns };
                    node::attempt(attempt, &mut sink, &stopper).await
                }
                None => Ok(run::attempt_local(&spec, false, &mut sink, &stopper).await),
            };
            let output = (sink.out_tail.capture(), sink.err_tail.capture());
            let _ = tx.send(Msg::Done { id, target, result: Box::new(result), output });
        });
    }

    /// Applies one message from a running task.
    fn apply(&mut self, msg: Msg) {
        match msg {
            Msg::Output { id, stream, line } => self.reporter.report(&Event::TaskOutput { id, stream, line }),
            Msg::Started { id, target } => {
                if self.queued.remove(&id) {
                    self.emit(&id, TaskStatus::InProgress, Some(target), None);
                }
            }
            Msg::Done { id, target, result, output } => {
                self.running -= 1;
                if let Some(b) = self.busy.get_mut(&target) {
                    *b -= 1;
                }
                // Queued, then ended without a start signal: it still ran.
                if self.queued.remove(&id) && result.is_ok() {
                    self.emit(&id, TaskStatus::InProgress, Some(target.clone()), None);
                }
                match *result {
                    Ok(r) => self.finished(id, target, r, output),
                    Err(e) if e.fault != Fault::Unreachable => self.refused_by(id, target, e),
                    Err(e) => self.unreachable(id, target, e),
                }
            }
        }
    }

    /// The command ran (to its end, or until stopped): the task completes or fails.
    fn finished(&mut self, id: String, target: String, r: AttemptResult, output: (Capture, Capture)) {
        let code = match r.status {
            RunStatus::Exited { code } => Some(code),
            _ => None,
        };
        self.results.insert(id.clone(), (code, r.timings, output));
        if r.status.succeeded() {
            *self.completed_on.entry(target.clone()).or_default() += 1;
            self.emit(&id, TaskStatus::Completed, Some(target), None);
            return;
        }
        let why = match &r.status {
            RunStatus::Exited { code } => format!("exit status {code}"),
            RunStatus::Signaled { signal } => format!("killed by signal {signal}"),
            RunStatus::TimedOut => "timed out".to_string(),
            RunStatus::Interrupted => "interrupted".to_string(),
            RunStatus::Transport { error } => error.clone(),
            RunStatus::Lost { error, .. } => error.clone(),
        };
        if let RunStatus::Lost { node, .. } = &r.status {
            // Suspect: no other task goes there in this run.
            self.down.insert(node.clone());
        }
        self.emit(&id, TaskStatus::Failed, Some(target), Some(why));
        if !self.opts.keep_going {
            self.stop_starting = true;
        }
    }

    /// The target could not be reached: it is down for the rest of the run
    /// and the task goes back to pending, to run elsewhere.
    fn unreachable(&mut self, id: String, target: String, e: TransportError) {
        self.down.insert(target.clone());
        self.last_errors.entry(id.clone()).or_default().push(e.to_string());
        self.reporter.report(&Event::Warning { message: format!("{e}; {target} is skipped for the rest of this run") });
        self.emit(&id, TaskStatus::Pending, Some(target), Some(e.to_string()));
    }

    /// A changed host key (or trouble on this machine): the task runs
    /// nowhere, and the node takes no more tasks.
    fn refused_by(&mut self, id: String, target: String, e: TransportError) {
        self.down.insert(target.clone());
        self.emit(&id, TaskStatus::Failed, Some(target), Some(e.to_string()));
        if !self.opts.keep_going {
            self.stop_starting = true;
        }
    }

    /// Whatever never started is failed with the reason.
    fn fail_leftovers(&mut self) {
        let leftover: Vec<String> =
            self.list.iter().filter(|t| !t.status.is_finished()).map(|t| t.id.clone()).collect();
        let why = if self.interrupted {
            "not started: interrupted"
        } else {
            "not started: an earlier task failed (use --keep-going to run the rest)"
        };
        for id in leftover {
            self.emit(&id, TaskStatus::Failed, None, Some(why.into()));
        }
    }

    /// The final report (and the `run_finished` event).
    fn report(mut self) -> ParallelReport {
        let elapsed_ms = self.at();
        let completed = self.list.count(TaskStatus::Completed);
        let failed = self.list.count(TaskStatus::Failed);
        self.reporter.report(&Event::RunFinished { completed, failed, elapsed_ms });
        let not_started = self.list.iter().filter(|t| t.status == TaskStatus::Failed && t.attempts == 0).count();
        let plan = self.plan;
        let inferred: HashMap<&str, &Vec<Inferred>> = plan.tasks.iter().map(|t| (t.id.as_str(), &t.inferred)).collect();
        let commands: HashMap<&str, &str> = plan.tasks.iter().map(|t| (t.id.as_str(), t.command.as_str())).collect();
        let mut results = std::mem::take(&mut self.results);
        let tasks = std::mem::take(&mut self.list)
            .into_vec()
            .into_iter()
            .map(|task| {
                let (exit_code, timings, stdout, stderr) = match results.remove(&task.id) {
                    Some((c, t, (out, err))) => (c, Some(t), Some(out), Some(err)),
                    None => (None, None, None, None),
                };
                TaskReport {
                    command: commands.get(task.id.as_str()).map(|c| c.to_string()).unwrap_or_default(),
                    inferred: inferred.get(task.id.as_str()).map(|v| (*v).clone()).unwrap_or_default(),
                    exit_code,
                    timings,
                    stdout,
                    stderr,
                    task,
                }
            })
            .collect();
        ParallelReport {
            tasks,
            summary: Summary {
                total: plan.tasks.len(),
                completed,
                failed,
                not_started,
                elapsed_ms,
                interrupted: self.interrupted,
                per_node: std::mem::take(&mut self.completed_on),
            },
        }
    }
}

/// Routes every task once, as `distex run` would, from one reading of the
/// load facts: where it may go and what it syncs. Also returns the warning
/// to show once when a task would sync but there is no project.
fn place(config: &Config, plan: &Plan, opts: &ParallelOptions) -> (HashMap<String, Placement>, Option<String>) {
    let facts = crate::state::LoadFacts::read(Default::default());
    let mut placements = HashMap::new();
    let mut warning = None;
    for t in &plan.tasks {
        let decision = crate::route::decide_line(config, &t.command, &facts);
        let spec = RunSpec {
            command: t.command.clone(),
            cwd: opts.cwd.clone(),
            sync: opts.sync,
            returns: vec![],
            synced_nodes: None,
            sync_root: opts.sync_root.clone(),
        };
        let (_, returns) = run::sync_plan(config, &decision, None, &spec);
        let (project, refused) = match run::sync_project(config, &decision, None, &spec) {
            Ok((project, w)) => {
                warning = warning.or(w);
                (project, None)
            }
            Err(why) => (None, Some(why)),
        };
        let order = targets(config, &decision, opts.nodes.as_deref());
        let here_as_fallback = decision.rule.is_some()
            && order.iter().any(|t| t == "local")
            && !run::requirement(config, &decision).is_none_or(|req| config.local.caps.satisfies(req));
        placements.insert(t.id.clone(), Placement { order, here_as_fallback, project, returns, refused });
    }
    (placements, warning)
}

/// Moves a task and tells the reporter.
fn emit(
    reporter: &mut dyn Reporter,
    list: &mut TaskList,
    id: &str,
    to: TaskStatus,
    at_ms: u64,
    node: Option<String>,
    error: Option<String>,
) {
    let from = match (to, &error) {
        (TaskStatus::Failed, Some(e)) => list.fail(id, e.clone(), at_ms),
        _ => list.transition(id, to, at_ms),
    };
    let Some(from) = from else { return };
    if let (Some(n), Some(task)) = (&node, list.get_mut(id)) {
        task.node = Some(n.clone());
    }
    let subject = list.get(id).map(|t| t.subject.clone()).unwrap_or_default();
    reporter.report(&Event::TaskStatusChanged { id: id.to_string(), subject, from, to, at_ms, node, error });
}

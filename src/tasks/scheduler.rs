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
use crate::exec::output::{Capture, LineSplitter, OutputSink, Tail};
use crate::exec::run::{self, AttemptResult, RunSpec, RunStatus, Stopper, SyncedNodes, Timings};
use crate::exec::ssh::TransportError;
use crate::route::Decision;

/// How to run a plan.
#[derive(Debug, Clone, Default)]
pub struct ParallelOptions {
    /// At most this many tasks at once (default: the cluster's total slots).
    pub jobs: Option<usize>,
    /// Keep starting tasks that do not depend on a failed one.
    pub keep_going: bool,
    /// Only use these targets (`local` included by name).
    pub nodes: Option<Vec<String>>,
    /// Sync the project before remote tasks (None: each rule's default).
    pub sync: Option<bool>,
    /// Per-task timeout.
    pub timeout: Option<Duration>,
    /// Where the commands belong locally.
    pub cwd: PathBuf,
}

/// One task in the final report: the shared TaskList shape plus what ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskReport {
    #[serde(flatten)]
    pub task: Task,
    pub command: String,
    /// The command's exit status, when it ran to the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// The end of the task's output (last attempt), bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<Capture>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<Capture>,
    /// Dependencies distex inferred (shared build directories, files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inferred: Vec<Inferred>,
}

/// Totals of a parallel run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    pub total: usize,
    pub completed: usize,
    pub failed: usize,
    /// Failed tasks that never started (a dependency failed, or the run stopped).
    pub not_started: usize,
    pub elapsed_ms: u64,
    pub interrupted: bool,
    /// Tasks completed per target.
    pub per_node: BTreeMap<String, usize>,
}

/// `{"tasks": [...], "summary": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ParallelReport {
    pub tasks: Vec<TaskReport>,
    pub summary: Summary,
}

impl ParallelReport {
    /// 0 all completed, 130 interrupted, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        use crate::error::exit;
        if self.summary.interrupted {
            exit::INTERRUPTED
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
    /// A task a scheduler had queued (Slurm) started running.
    Started {
        id: String,
        target: String,
    },
    Done {
        id: String,
        target: String,
        result: Result<AttemptResult, TransportError>,
        output: (Capture, Capture),
    },
}

/// What a task that ran left behind: exit code, timings, (stdout, stderr).
type Finished = (Option<i32>, Timings, (Capture, Capture));

/// How much of each stream a parallel task's report keeps.
pub const TASK_CAPTURE_LIMIT: usize = 16 * 1024;

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

/// Runs the plan to the end (or until Ctrl-C).
pub async fn run(
    config: Arc<Config>,
    plan: &Plan,
    opts: &ParallelOptions,
    reporter: &mut dyn Reporter,
    cancel: tokio::sync::watch::Receiver<bool>,
) -> ParallelReport {
    let started = Instant::now();
    let at = || started.elapsed().as_millis() as u64;
    let mut list = TaskList::new();
    for t in &plan.tasks {
        list.add(t.id.clone(), subject(&t.command), t.blocked_by());
    }
    reporter.report(&Event::RunStarted { run: run::run_id(), tasks: list.len() });

    let facts = crate::commands::route::facts(Default::default());
    let mut plans: HashMap<String, (Vec<String>, bool, Vec<String>)> = HashMap::new();
    for t in &plan.tasks {
        let decision = crate::commands::route::route(&config, &t.command, &facts);
        let spec = RunSpec {
            command: t.command.clone(),
            cwd: opts.cwd.clone(),
            sync: opts.sync,
            returns: vec![],
            run_id: String::new(),
            synced_nodes: None,
        };
        let (sync, returns) = run::sync_plan(&config, &decision, None, &spec);
        plans.insert(t.id.clone(), (targets(&config, &decision, opts.nodes.as_deref()), sync, returns));
    }
    let capacity = |target: &str| -> usize {
        match config.node(target) {
            Some(n) => n.slots as usize,
            None => config.local.slots.max(1) as usize,
        }
    };
    let jobs = opts.jobs.unwrap_or(usize::MAX).max(1);
    let synced: SyncedNodes = Default::default();
    let stopper = Stopper::new(None, cancel.clone());
    let mut cancel_watch = cancel.clone();
    let mut busy: HashMap<String, usize> = HashMap::new();
    // Tasks handed to a node's own scheduler (Slurm) that have not started
    // yet: still `pending` in the TaskList, but taken.
    let mut queued: HashSet<String> = HashSet::new();
    let mut down: HashSet<String> = HashSet::new();
    let mut running = 0usize;
    let mut stop_starting = false;
    let mut interrupted = false;
    let mut results: HashMap<String, Finished> = HashMap::new();
    let mut completed_on: BTreeMap<String, usize> = BTreeMap::new();
    let mut last_errors: HashMap<String, Vec<String>> = HashMap::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let mut set = tokio::task::JoinSet::new();

    loop {
        for id in list.unblocked() {
            emit(reporter, &mut list, &id, TaskStatus::Pending, at(), None, None);
        }
        for id in list.doomed() {
            let dep = list.get(&id).and_then(|t| {
                t.blocked_by.iter().find(|d| list.get(d).is_none_or(|d| d.status == TaskStatus::Failed)).cloned()
            });
            let why = format!("not started: dependency {} failed", dep.unwrap_or_default());
            emit(reporter, &mut list, &id, TaskStatus::Failed, at(), None, Some(why));
        }
        if !stop_starting {
            let pending: Vec<String> = list
                .iter()
                .filter(|t| t.status == TaskStatus::Pending && !queued.contains(&t.id))
                .map(|t| t.id.clone())
                .collect();
            for id in pending {
                if running >= jobs {
                    break;
                }
                let (order, sync, returns) = plans[&id].clone();
                let usable: Vec<&String> = order.iter().filter(|t| !down.contains(*t)).collect();
                if usable.is_empty() {
                    let tried =
                        last_errors.get(&id).map(|e| e.join("; ")).unwrap_or_else(|| "no node may run it".into());
                    emit(
                        reporter,
                        &mut list,
                        &id,
                        TaskStatus::Failed,
                        at(),
                        None,
                        Some(format!("no node could run it: {tried}")),
                    );
                    if !opts.keep_going {
                        stop_starting = true;
                    }
                    continue;
                }
                let Some(target) =
                    usable.into_iter().find(|t| busy.get(*t).copied().unwrap_or(0) < capacity(t)).cloned()
                else {
                    continue;
                };
                *busy.entry(target.clone()).or_default() += 1;
                running += 1;
                // A task a node queues is in progress only once it runs.
                if config.node(&target).is_some_and(|n| n.kind() == NodeKind::Slurm) {
                    queued.insert(id.clone());
                } else {
                    emit(reporter, &mut list, &id, TaskStatus::InProgress, at(), Some(target.clone()), None);
                }
                let command = plan.tasks.iter().find(|t| t.id == id).map(|t| t.command.clone()).unwrap_or_default();
                let spec = RunSpec {
                    command,
                    cwd: opts.cwd.clone(),
                    sync: Some(sync),
                    returns: vec![],
                    run_id: run::run_id(),
                    synced_nodes: Some(synced.clone()),
                };
                let task_stopper =
                    Stopper { deadline: opts.timeout.map(|t| tokio::time::Instant::now() + t), ..stopper.clone() };
                let (config, tx) = (config.clone(), tx.clone());
                set.spawn(async move {
                    let mut sink = LineSink {
                        id: id.clone(),
                        target: target.clone(),
                        tx: tx.clone(),
                        out: LineSplitter::default(),
                        err: LineSplitter::default(),
                        out_tail: Tail::new(TASK_CAPTURE_LIMIT),
                        err_tail: Tail::new(TASK_CAPTURE_LIMIT),
                    };
                    let result = match config.node(&target) {
                        Some(node) => {
                            crate::exec::node::attempt(&config, node, &spec, sync, &returns, &mut sink, &task_stopper)
                                .await
                        }
                        None => Ok(run::attempt_local(&spec, false, &mut sink, &task_stopper).await),
                    };
                    let output = (sink.out_tail.capture(), sink.err_tail.capture());
                    let _ = tx.send(Msg::Done { id, target, result, output });
                });
            }
        }
        if running == 0 {
            // Nothing runs and nothing could start: done (or stuck behind failures).
            break;
        }
        let msg = tokio::select! {
            msg = rx.recv() => msg,
            changed = cancel_watch.changed(), if !interrupted => {
                if changed.is_ok() && *cancel_watch.borrow() {
                    interrupted = true;
                    stop_starting = true;
                }
                continue;
            }
        };
        let Some(msg) = msg else { break };
        match msg {
            Msg::Output { id, stream, line } => reporter.report(&Event::TaskOutput { id, stream, line }),
            Msg::Started { id, target } => {
                if queued.remove(&id) {
                    emit(reporter, &mut list, &id, TaskStatus::InProgress, at(), Some(target), None);
                }
            }
            Msg::Done { id, target, result, output } => {
                running -= 1;
                if let Some(b) = busy.get_mut(&target) {
                    *b -= 1;
                }
                // Queued, then ended without a start signal: it still ran.
                if queued.remove(&id) && result.is_ok() {
                    emit(reporter, &mut list, &id, TaskStatus::InProgress, at(), Some(target.clone()), None);
                }
                match result {
                    Ok(r) => {
                        let code = match r.status {
                            RunStatus::Exited { code } => Some(code),
                            _ => None,
                        };
                        results.insert(id.clone(), (code, r.timings, output));
                        if r.status.succeeded() {
                            *completed_on.entry(target.clone()).or_default() += 1;
                            emit(reporter, &mut list, &id, TaskStatus::Completed, at(), Some(target), None);
                        } else {
                            let why = match &r.status {
                                RunStatus::Exited { code } => format!("exit status {code}"),
                                RunStatus::Signaled { signal } => format!("killed by signal {signal}"),
                                RunStatus::TimedOut => "timed out".to_string(),
                                RunStatus::Interrupted => "interrupted".to_string(),
                                RunStatus::Transport { error } => error.clone(),
                            };
                            emit(reporter, &mut list, &id, TaskStatus::Failed, at(), Some(target), Some(why));
                            if !opts.keep_going {
                                stop_starting = true;
                            }
                        }
                    }
                    Err(e) => {
                        down.insert(target.clone());
                        last_errors.entry(id.clone()).or_default().push(e.to_string());
                        reporter.report(&Event::Warning {
                            message: format!("{e}; {target} is skipped for the rest of this run"),
                        });
                        emit(reporter, &mut list, &id, TaskStatus::Pending, at(), Some(target), Some(e.to_string()));
                    }
                }
            }
        }
    }
    // Whatever never started is failed with the reason.
    let leftover: Vec<String> = list.iter().filter(|t| !t.status.is_finished()).map(|t| t.id.clone()).collect();
    for id in leftover {
        let why = if interrupted {
            "not started: interrupted"
        } else {
            "not started: an earlier task failed (use --keep-going to run the rest)"
        };
        emit(reporter, &mut list, &id, TaskStatus::Failed, at(), None, Some(why.into()));
    }
    let elapsed_ms = at();
    let completed = list.count(TaskStatus::Completed);
    let failed = list.count(TaskStatus::Failed);
    reporter.report(&Event::RunFinished { completed, failed, elapsed_ms });
    let not_started = list.iter().filter(|t| t.status == TaskStatus::Failed && t.attempts == 0).count();
    let inferred: HashMap<&str, &Vec<Inferred>> = plan.tasks.iter().map(|t| (t.id.as_str(), &t.inferred)).collect();
    let commands: HashMap<&str, &str> = plan.tasks.iter().map(|t| (t.id.as_str(), t.command.as_str())).collect();
    let tasks = list
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
            interrupted,
            per_node: completed_on,
        },
    }
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

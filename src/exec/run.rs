//! One command, end to end: pick the targets in failover order, then for
//! each until one answers: connect (reusing the persistent master), sync
//! the project, run, bring outputs back. Records node health on the way.
//!
//! The rules of failover: a *transport* failure (cannot connect, master
//! died, sync failed, connection lost before the command reported its
//! status) moves the command to the next candidate node, then to this
//! machine if it satisfies the rule's requirement. A command that ran and
//! failed is never retried elsewhere.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::local::{self, LocalOutcome};
use super::output::{Capture, OutputSink};
use super::remote::{self, RemoteOutcome, Stop};
use super::ssh::{self, Master, TransportError};
use super::sync::{self, Project};
use crate::config::{Config, Node, Requirement};
use crate::error::exit;
use crate::route::Decision;
use crate::state::NodeStates;

/// Where an attempt runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'c> {
    Local,
    Remote(&'c Node),
}

impl Target<'_> {
    pub(crate) fn name(&self) -> &str {
        match self {
            Target::Local => "local",
            Target::Remote(n) => &n.name,
        }
    }
}

/// What to run and how.
#[derive(Debug, Clone)]
pub(crate) struct RunSpec {
    pub(crate) command: String,
    /// The local directory the command belongs to.
    pub(crate) cwd: PathBuf,
    /// Sync the project first (None: the rule's default).
    pub(crate) sync: Option<bool>,
    /// Paths to bring back, relative to `cwd` (added to the rule's).
    pub(crate) returns: Vec<String>,
    /// Nodes already synced by this distex process (`distex parallel`
    /// syncs each node once, not once per task).
    pub(crate) synced_nodes: Option<SyncedNodes>,
}

/// Shared record of the nodes a multi-task run has synced.
pub(crate) type SyncedNodes = std::sync::Arc<tokio::sync::Mutex<std::collections::HashSet<String>>>;

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum RunStatus {
    /// It ran and exited with `code` (remote: 128+N when killed by signal N).
    Exited { code: i32 },
    /// It was killed by a signal (local runs only).
    Signaled { signal: i32 },
    /// distex stopped it after `--timeout`.
    TimedOut,
    /// distex stopped it on Ctrl-C.
    Interrupted,
    /// No target could run it; `error` says what happened on each.
    Transport { error: String },
}

impl RunStatus {
    /// The status distex exits with.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            RunStatus::Exited { code } => (*code).clamp(0, 255) as u8,
            RunStatus::Signaled { signal } => (128 + *signal).clamp(0, 255) as u8,
            RunStatus::TimedOut => exit::TIMEOUT,
            RunStatus::Interrupted => exit::INTERRUPTED,
            RunStatus::Transport { .. } => exit::TRANSPORT,
        }
    }

    pub(crate) fn succeeded(&self) -> bool {
        matches!(self, RunStatus::Exited { code: 0 })
    }
}

/// One target that was tried and failed to carry the command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Attempt {
    pub(crate) node: String,
    pub(crate) error: String,
}

/// Milliseconds spent in each phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Timings {
    pub(crate) connect_ms: u64,
    pub(crate) sync_ms: u64,
    pub(crate) run_ms: u64,
    pub(crate) return_ms: u64,
    pub(crate) total_ms: u64,
}

/// The result record of `distex run --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct RunResult {
    /// Where the command ran (`local` for this machine), or was last tried.
    pub(crate) node: String,
    /// Why that target: `forced` (--node), `failover`, or the routing reason.
    pub(crate) why: String,
    pub(crate) rule: Option<String>,
    pub(crate) matched: Option<String>,
    pub(crate) announcement: Option<String>,
    pub(crate) status: RunStatus,
    /// What distex exits with.
    pub(crate) exit_code: u8,
    /// Targets that failed before this one (transport failures).
    pub(crate) failed_attempts: Vec<Attempt>,
    /// Whether the project was synced to the node.
    pub(crate) synced: bool,
    /// Paths brought back.
    pub(crate) returned: Vec<String>,
    pub(crate) timings: Timings,
    pub(crate) stdout: Capture,
    pub(crate) stderr: Capture,
    pub(crate) warnings: Vec<String>,
}

/// Something that says when to stop: the deadline (`--timeout`) or Ctrl-C.
#[derive(Clone)]
pub(crate) struct Stopper {
    pub(crate) deadline: Option<tokio::time::Instant>,
    pub(crate) cancel: tokio::sync::watch::Receiver<bool>,
}

impl Stopper {
    pub(crate) fn new(timeout: Option<Duration>, cancel: tokio::sync::watch::Receiver<bool>) -> Self {
        Stopper { deadline: timeout.map(|t| tokio::time::Instant::now() + t), cancel }
    }

    /// Resolves when the run must stop.
    pub(crate) fn wait(&self) -> impl Future<Output = Stop> + use<> {
        let deadline = self.deadline;
        let mut cancel = self.cancel.clone();
        async move {
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let interrupted = async {
                loop {
                    if *cancel.borrow_and_update() {
                        return;
                    }
                    if cancel.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                () = timeout => Stop::Timeout,
                () = interrupted => Stop::Interrupted,
            }
        }
    }
}

/// The requirement of the rule that routed `decision`, if any.
pub(crate) fn requirement<'c>(config: &'c Config, decision: &Decision) -> Option<&'c Requirement> {
    decision.rule.as_deref().and_then(|r| config.rule(r)).map(|r| &r.requires)
}

/// Targets in the order to try them: the forced or chosen node, the other
/// eligible nodes that meet the requirement (best score first), then this
/// machine if it meets the requirement.
pub(crate) fn failover_order<'c>(config: &'c Config, decision: &Decision, forced: Option<&str>) -> Vec<Target<'c>> {
    let req = requirement(config, decision).cloned().unwrap_or_default();
    if forced == Some("local") || (forced.is_none() && !decision.distribute) {
        return vec![Target::Local];
    }
    let first = forced.or(decision.node.as_deref());
    let mut order: Vec<Target<'c>> = first.and_then(|n| config.node(n)).map(Target::Remote).into_iter().collect();
    let mut others: Vec<_> = decision
        .candidates
        .iter()
        .filter(|c| c.eligible && Some(c.node.as_str()) != first)
        .filter_map(|c| config.node(&c.node).map(|n| (c.score, n)))
        .filter(|(_, n)| n.caps.satisfies(&req))
        .collect();
    others.sort_by(|a, b| a.0.total_cmp(&b.0));
    order.extend(others.into_iter().map(|(_, n)| Target::Remote(n)));
    if config.local.caps.satisfies(&req) {
        order.push(Target::Local);
    }
    order
}

/// Whether the project is synced, and what comes back, for this decision:
/// the matched rule's defaults (a routed `overloaded` command syncs, since
/// it may need the project), then `--sync`/`--no-sync` and `--return`.
pub(crate) fn sync_plan(
    config: &Config,
    decision: &Decision,
    forced: Option<&str>,
    spec: &RunSpec,
) -> (bool, Vec<String>) {
    let rule = decision.rule.as_deref().and_then(|r| config.rule(r));
    let default_sync = match rule {
        Some(r) => r.sync,
        None => forced.is_none() && decision.distribute && decision.sync,
    };
    let mut returns: Vec<String> = rule.map(|r| r.returns.clone()).unwrap_or_default();
    for r in &spec.returns {
        if !returns.contains(r) {
            returns.push(r.clone());
        }
    }
    (spec.sync.unwrap_or(default_sync), returns)
}

/// The outcome of one attempt on one target.
pub(crate) struct AttemptResult {
    pub(crate) status: RunStatus,
    pub(crate) synced: bool,
    pub(crate) returned: Vec<String>,
    pub(crate) warnings: Vec<String>,
    pub(crate) timings: Timings,
}

/// Runs the command on one remote node. A transport failure comes back as
/// `Err`, with the node's health recorded.
pub(crate) async fn attempt_remote(
    config: &Config,
    node: &Node,
    spec: &RunSpec,
    sync: bool,
    returns: &[String],
    sink: &mut dyn OutputSink,
    stopper: &Stopper,
) -> Result<AttemptResult, TransportError> {
    let mut timings = Timings::default();
    let mut warnings = Vec::new();
    let project = Project::find(&spec.cwd, &config.local.name);
    let mut reconnected = false;
    loop {
        let t = Instant::now();
        let master = match ssh::connect(node).await {
            Ok(m) => m,
            Err(e) => return Err(node_down(e)),
        };
        timings.connect_ms += ms(t.elapsed());
        if sync {
            let t = Instant::now();
            let result = match &spec.synced_nodes {
                None => push(&master, &project, &node.workdir).await,
                Some(set) => {
                    // Held while pushing: the node's other tasks wait for this sync.
                    let mut done = set.lock().await;
                    if done.contains(&node.name) {
                        Ok(())
                    } else {
                        let r = push(&master, &project, &node.workdir).await;
                        if r.is_ok() {
                            done.insert(node.name.clone());
                        }
                        r
                    }
                }
            };
            timings.sync_ms += ms(t.elapsed());
            if let Err(message) = result {
                if retry_with_new_master(master, &mut reconnected).await {
                    continue;
                }
                return Err(node_down(TransportError {
                    node: node.name.clone(),
                    message: format!("workspace sync failed: {message}"),
                }));
            }
        }
        let dir = if sync { project.remote_cwd(&node.workdir) } else { ".".to_string() };
        let t = Instant::now();
        let outcome = remote::run(&master, &spec.command, &dir, sink, stopper.wait()).await;
        timings.run_ms += ms(t.elapsed());
        let status = match outcome {
            RemoteOutcome::Exited(code) => RunStatus::Exited { code },
            RemoteOutcome::Stopped(Stop::Timeout) => RunStatus::TimedOut,
            RemoteOutcome::Stopped(Stop::Interrupted) => RunStatus::Interrupted,
            RemoteOutcome::Transport(message) => {
                if retry_with_new_master(master, &mut reconnected).await {
                    continue;
                }
                return Err(node_down(TransportError { node: node.name.clone(), message }));
            }
        };
        record_up(&node.name);
        let mut returned = Vec::new();
        if !returns.is_empty() && !matches!(status, RunStatus::Interrupted) {
            let t = Instant::now();
            let mirror = project.mirror(&node.workdir);
            match sync::rsync(sync::return_args(&project, &mirror, returns, &master.control_socket())).await {
                Ok(()) => returned = returns.to_vec(),
                Err(e) => warnings.push(format!("bringing back {} from {} failed: {e}", returns.join(", "), node.name)),
            }
            timings.return_ms = ms(t.elapsed());
        }
        return Ok(AttemptResult { status, synced: sync, returned, warnings, timings });
    }
}

/// A reused master may have died since its socket was last checked: start
/// a fresh one once before calling the node down.
async fn retry_with_new_master(master: Master, reconnected: &mut bool) -> bool {
    let retry = master.reused && !*reconnected;
    *reconnected = true;
    master.forget().await;
    retry
}

/// Pushes the project under a per-node, per-project lock, so that parallel
/// runs never have two rsyncs writing one mirror.
pub(crate) async fn push(master: &Master, project: &Project, workdir: &str) -> Result<(), String> {
    let mirror = project.mirror(workdir);
    let lock_path =
        master.control_socket().with_file_name(format!("sync-{:08x}.lock", ssh::fnv1a(mirror.as_bytes()) as u32));
    let lock = std::fs::File::create(&lock_path).map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    // An exclusive advisory lock (flock on Unix), released when `lock` drops.
    // As always, a lock that cannot be taken does not stop the push.
    let lock = tokio::task::spawn_blocking(move || {
        let _ = lock.lock();
        lock
    })
    .await
    .map_err(|e| e.to_string())?;
    let result = sync::rsync(sync::push_args(project, &mirror, &master.control_socket())).await;
    drop(lock);
    result
}

/// Runs the command here.
pub(crate) async fn attempt_local(
    spec: &RunSpec,
    inherit: bool,
    sink: &mut dyn OutputSink,
    stopper: &Stopper,
) -> AttemptResult {
    let t = Instant::now();
    let outcome = local::run(&spec.command, &spec.cwd, inherit, sink, stopper.wait()).await;
    let status = match outcome {
        LocalOutcome::Exited(code) => RunStatus::Exited { code },
        LocalOutcome::Signaled(signal) => RunStatus::Signaled { signal },
        LocalOutcome::Stopped(Stop::Timeout) => RunStatus::TimedOut,
        LocalOutcome::Stopped(Stop::Interrupted) => RunStatus::Interrupted,
        LocalOutcome::SpawnFailed(e) => RunStatus::Transport { error: e },
    };
    AttemptResult {
        status,
        synced: false,
        returned: vec![],
        warnings: vec![],
        timings: Timings { run_ms: ms(t.elapsed()), ..Timings::default() },
    }
}

/// Records that a node answered, unless the cache already says so (keeps
/// the hot path free of a locked write per command).
pub(crate) fn record_up(node: &str) {
    let known_up = NodeStates::load().get(node).is_some_and(|h| h.answered);
    if !known_up {
        let _ = NodeStates::record_answer(node, None);
    }
}

pub(crate) fn node_down(e: TransportError) -> TransportError {
    let _ = NodeStates::record_failure(&e.node, &e.message);
    e
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Runs `spec` where `decision` says (or on `forced`), failing over on
/// transport errors. `inherit`: let a local command use our terminal.
#[allow(clippy::too_many_arguments)] // each is a distinct input; a struct would only rename them
pub(crate) async fn execute(
    config: &Config,
    decision: &Decision,
    forced: Option<&str>,
    spec: &RunSpec,
    sink: &mut dyn OutputSink,
    stopper: &Stopper,
    inherit_local: bool,
    on_failover: &mut dyn FnMut(&Attempt, Option<&str>),
) -> RunResult {
    let started = Instant::now();
    let (sync, returns) = sync_plan(config, decision, forced, spec);
    let order = failover_order(config, decision, forced);
    let mut failed = Vec::new();
    // Routing warnings matter only when routing chose the target.
    let mut warnings = if forced.is_none() { decision.warnings.clone() } else { Vec::new() };
    let mut last = Target::Local;
    let mut done: Option<AttemptResult> = None;
    for (i, target) in order.iter().enumerate() {
        last = *target;
        let result = match target {
            // Here the project is already in place: nothing to sync or return.
            Target::Local => Ok(attempt_local(spec, inherit_local, sink, stopper).await),
            Target::Remote(node) => super::node::attempt(config, node, spec, sync, &returns, sink, stopper).await,
        };
        match result {
            Ok(r) => {
                done = Some(r);
                break;
            }
            Err(e) => {
                let attempt = Attempt { node: e.node.clone(), error: e.message.clone() };
                on_failover(&attempt, order.get(i + 1).map(|t| t.name()));
                failed.push(attempt);
            }
        }
    }
    let why = match (forced, failed.is_empty()) {
        (_, false) => "failover".to_string(),
        (Some(_), true) => "forced".to_string(),
        (None, true) => decision.reason.clone(),
    };
    let (status, synced, returned, timings) = match done {
        Some(r) => {
            warnings.extend(r.warnings);
            (r.status, r.synced, r.returned, r.timings)
        }
        None => {
            let tried: Vec<String> = failed.iter().map(|a| format!("{} ({})", a.node, a.error)).collect();
            let mut error = format!("no node could run the command; tried: {}", tried.join("; "));
            let local_tried = order.iter().any(|t| matches!(t, Target::Local));
            if let Some(req) = requirement(config, decision).filter(|_| !local_tried) {
                error.push_str(&format!(
                    ". This machine does not satisfy rule {} ({}), so it was not used",
                    decision.rule.as_deref().unwrap_or("?"),
                    crate::route::describe(req)
                ));
            }
            (RunStatus::Transport { error }, false, vec![], Timings::default())
        }
    };
    let mut timings = timings;
    timings.total_ms = ms(started.elapsed());
    let exit_code = status.exit_code();
    RunResult {
        node: last.name().to_string(),
        why,
        rule: decision.rule.clone(),
        matched: decision.matched.clone(),
        announcement: decision.announcement.clone(),
        status,
        exit_code,
        failed_attempts: failed,
        synced,
        returned,
        timings,
        stdout: Capture::default(),
        stderr: Capture::default(),
        warnings,
    }
}

/// A fresh id for one run: pid, time and a counter.
pub(crate) fn run_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}-{nanos:x}-{n}", std::process::id())
}

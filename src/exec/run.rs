//! One command, end to end: pick the targets in failover order, then for
//! each until one answers: connect (reusing the persistent master), sync
//! the project, run, bring outputs back. Records node health on the way.
//!
//! The rules of failover - a command runs at most once:
//!
//! * a failure before the command was let start (cannot connect, master
//!   died, sync failed, connection lost before the wrapper got `go`) moves
//!   it to the next candidate node, then to this machine when this machine
//!   can run it: it meets the rule's hard requirements (`os`, `features`);
//!   a rule's `roles` are a preference, so a build falls back here, with a
//!   warning, when no builder can be reached;
//! * a connection lost after the command was let start is
//!   [`RunStatus::Lost`]: outcome unknown, never run again, node suspect;
//! * a changed host key stops everything: the command runs nowhere;
//! * a command that ran and failed is never retried elsewhere.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::local::{self, LocalOutcome};
use super::output::{Capture, OutputSink};
use super::remote::{self, RemoteOutcome, Stop};
use super::ssh::{self, Fault, Master, TransportError};
use super::sync::{self, Project, Secrets};
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
    /// The project root to mirror (`--sync-root`), instead of the git
    /// repository around `cwd`.
    pub(crate) sync_root: Option<PathBuf>,
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
    /// distex stopped it on a signal (SIGINT, SIGTERM, SIGHUP).
    Interrupted,
    /// No target could run it; `error` says what happened on each.
    Transport { error: String },
    /// It was started on `node`, then the connection was lost before its
    /// exit status arrived: outcome unknown, not retried, node suspect.
    Lost { node: String, error: String },
}

impl RunStatus {
    /// The status distex exits with.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            RunStatus::Exited { code } => (*code).clamp(0, 255) as u8,
            RunStatus::Signaled { signal } => (128 + *signal).clamp(0, 255) as u8,
            RunStatus::TimedOut => exit::TIMEOUT,
            RunStatus::Interrupted => super::signals::exit_code(),
            RunStatus::Transport { .. } => exit::TRANSPORT,
            RunStatus::Lost { .. } => exit::LOST,
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
    /// Project files that look like secrets and were not synced (see
    /// `sync.include` to send one deliberately).
    #[serde(default)]
    pub(crate) held_back: Vec<String>,
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
    if config.local.caps.satisfies(&hard_part(&req)) {
        order.push(Target::Local);
    }
    order
}

/// The part of a requirement a machine cannot do without: its OS and
/// features. Roles only say where a command is best sent.
pub(crate) fn hard_part(req: &Requirement) -> Requirement {
    Requirement { roles: vec![], ..req.clone() }
}

/// What to mirror for this run: Ok(Some) the project to sync, Ok(None) no
/// sync (with the warning to show, if sync was wanted but is not
/// possible), Err when the command needs the project and there is none.
pub(crate) fn sync_project(
    config: &Config,
    decision: &Decision,
    forced: Option<&str>,
    spec: &RunSpec,
) -> Result<(Option<Project>, Option<String>), String> {
    let (sync, _) = sync_plan(config, decision, forced, spec);
    if !sync {
        return Ok((None, None));
    }
    match Project::resolve(&spec.cwd, spec.sync_root.as_deref(), &config.local.name) {
        Ok(project) => Ok((Some(project), None)),
        Err(why) => {
            let rule_needs = decision.rule.as_deref().and_then(|r| config.rule(r)).is_some_and(|r| r.sync);
            if spec.sync == Some(true) || (spec.sync.is_none() && rule_needs) {
                let by = if spec.sync == Some(true) {
                    "--sync".to_string()
                } else {
                    format!("rule {}", decision.rule.as_deref().unwrap_or("?"))
                };
                Err(format!(
                    "no project to sync ({by} asks for one): {why}. Run it from inside the project's git \
                     repository, name the project with --sync-root DIR, or use --no-sync"
                ))
            } else {
                Ok((None, Some(format!("not syncing: {why} (name a project with --sync-root DIR)"))))
            }
        }
    }
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
    pub(crate) held_back: Vec<String>,
    pub(crate) warnings: Vec<String>,
    pub(crate) timings: Timings,
}

/// What one attempt on a node works with: the command, where, and the
/// project to mirror first (when given) and the paths to bring back.
#[derive(Clone, Copy)]
pub(crate) struct NodeAttempt<'a> {
    pub(crate) config: &'a Config,
    pub(crate) node: &'a Node,
    pub(crate) spec: &'a RunSpec,
    pub(crate) project: Option<&'a Project>,
    pub(crate) returns: &'a [String],
}

/// Runs the command on one remote node, mirroring `project` first when
/// given. A failure before the command was let start comes back as `Err`
/// (with the node's health recorded); once it was let start, the result is
/// `Ok`, [`RunStatus::Lost`] included: it is never run again.
pub(crate) async fn attempt_remote(
    attempt: NodeAttempt<'_>,
    sink: &mut dyn OutputSink,
    stopper: &Stopper,
) -> Result<AttemptResult, TransportError> {
    let NodeAttempt { config, node, spec, project, returns } = attempt;
    let mut timings = Timings::default();
    let mut warnings = Vec::new();
    let mut held_back = Vec::new();
    let mut reconnected = false;
    loop {
        let t = Instant::now();
        let master = ssh::connect(node).await.map_err(node_down)?;
        timings.connect_ms += ms(t.elapsed());
        if let Some(project) = project {
            let t = Instant::now();
            let result = sync_once(config, &master, project, node, spec).await;
            timings.sync_ms += ms(t.elapsed());
            match result {
                Ok(held) => held_back = held,
                Err(message) => {
                    if retry_with_new_master(master, &mut reconnected).await {
                        continue;
                    }
                    return Err(node_down(TransportError::unreachable(
                        &node.name,
                        format!("workspace sync failed: {message}"),
                    )));
                }
            }
        }
        let dir = project.map_or(".".to_string(), |p| p.remote_cwd(&node.workdir));
        let t = Instant::now();
        let outcome = remote::run(&master, &spec.command, &dir, sink, stopper.wait()).await;
        timings.run_ms += ms(t.elapsed());
        let status = match outcome {
            RemoteOutcome::Exited(code) => RunStatus::Exited { code },
            RemoteOutcome::Stopped(Stop::Timeout) => RunStatus::TimedOut,
            RemoteOutcome::Stopped(Stop::Interrupted) => RunStatus::Interrupted,
            RemoteOutcome::NotStarted(message) => {
                if retry_with_new_master(master, &mut reconnected).await {
                    continue;
                }
                return Err(node_down(TransportError::unreachable(&node.name, message)));
            }
            RemoteOutcome::Lost(message) => {
                let error =
                    format!("started on {}, connection lost, outcome unknown, not retried: {message}", node.name);
                let _ = NodeStates::record_suspect(&node.name, &error);
                master.forget().await;
                return Ok(AttemptResult {
                    status: RunStatus::Lost { node: node.name.clone(), error },
                    synced: project.is_some(),
                    returned: vec![],
                    held_back,
                    warnings,
                    timings,
                });
            }
        };
        record_up(&node.name);
        let mut returned = Vec::new();
        if let Some(project) = project.filter(|_| !returns.is_empty() && !matches!(status, RunStatus::Interrupted)) {
            let t = Instant::now();
            let mirror = project.mirror(&node.workdir);
            match sync::rsync(sync::return_args(project, &mirror, returns, &master.control_socket())).await {
                Ok(()) => returned = returns.to_vec(),
                Err(e) => warnings.push(format!("bringing back {} from {} failed: {e}", returns.join(", "), node.name)),
            }
            timings.return_ms = ms(t.elapsed());
        }
        learn_after(config, node, &master, &status, stopper).await;
        return Ok(AttemptResult { status, synced: project.is_some(), returned, held_back, warnings, timings });
    }
}

/// After a command that exited on its own (not stopped by a signal or the
/// timeout; its output is already written), lets the node cache learn the
/// node's platform over the same master when it lacks it. A signal or the
/// deadline arriving meanwhile abandons that at once.
async fn learn_after(config: &Config, node: &Node, master: &Master, status: &RunStatus, stopper: &Stopper) {
    if !matches!(status, RunStatus::Exited { .. }) {
        return;
    }
    tokio::select! {
        () = super::probe::learn_platform(config, node, master) => {}
        _ = stopper.wait() => {}
    }
}

/// Pushes the project to the node unless this distex process already did
/// (`distex parallel` syncs each node once); returns what was held back.
pub(crate) async fn sync_once(
    config: &Config,
    master: &Master,
    project: &Project,
    node: &Node,
    spec: &RunSpec,
) -> Result<Vec<String>, String> {
    match &spec.synced_nodes {
        None => push(config, master, project, node).await,
        Some(set) => {
            // Held while pushing: the node's other tasks wait for this sync.
            let mut done = set.lock().await;
            if done.contains(&node.name) {
                return Ok(vec![]);
            }
            let held = push(config, master, project, node).await?;
            done.insert(node.name.clone());
            Ok(held)
        }
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

/// Pushes the project's file set under a per-node, per-project lock, so
/// that parallel runs never have two rsyncs writing one mirror. Returns
/// the paths held back as secrets.
async fn push(config: &Config, master: &Master, project: &Project, node: &Node) -> Result<Vec<String>, String> {
    let mirror = project.mirror(&node.workdir);
    let key =
        format!("{:08x}", ssh::fnv1a(format!("{}|{mirror}", master.control_socket().display()).as_bytes()) as u32);
    let runtime = master.control_socket().with_file_name("");
    let lock_path = runtime.with_file_name(format!("sync-{key}.lock"));
    let lock =
        crate::state::create_file(&lock_path).map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    let lock = tokio::task::spawn_blocking(move || {
        let _ = lock.lock();
        lock
    })
    .await
    .map_err(|e| e.to_string())?;
    let secrets = Secrets::new(&config.sync.include);
    let root = project.root.clone();
    let set =
        tokio::task::spawn_blocking(move || sync::file_set(&root, &secrets)).await.map_err(|e| e.to_string())??;
    // What was sent to this mirror last time: gone files are deleted there.
    let record = crate::state::checked_state_dir().ok().map(|d| d.join(format!("sync-{}-{key}.list", node.name)));
    let before = record.as_ref().and_then(|r| std::fs::read_to_string(r).ok());
    let list = sync::push_list(&set.files, before.as_deref());
    let list_path = runtime.with_file_name(format!("sync-{key}.files"));
    write_file(&list_path, &list)?;
    let result = sync::rsync(sync::push_args(project, &mirror, &master.control_socket(), &list_path)).await;
    let _ = std::fs::remove_file(&list_path);
    if result.is_ok()
        && let Some(record) = &record
    {
        let _ = write_file(record, set.files.join("\0").as_bytes());
    }
    drop(lock);
    result.map(|()| set.held_back)
}

/// Writes `bytes` to a new file at `path`, never through a symlink.
fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    crate::state::create_file(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
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
        held_back: vec![],
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

/// Records a node that could not be reached. A problem on this machine
/// says nothing about the node.
pub(crate) fn node_down(e: TransportError) -> TransportError {
    if e.fault != Fault::Local {
        let _ = NodeStates::record_failure(&e.node, &e.message);
    }
    e
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// One command as routing placed it: what to run (`spec`), where routing
/// sent it (`decision`) or the node `--node` forced, and the project to
/// mirror first ([`sync_project`]).
#[derive(Clone, Copy)]
pub(crate) struct RoutedRun<'a> {
    pub(crate) config: &'a Config,
    pub(crate) decision: &'a Decision,
    pub(crate) forced: Option<&'a str>,
    pub(crate) spec: &'a RunSpec,
    pub(crate) project: Option<&'a Project>,
}

/// What trying the targets in failover order came to.
struct Tried<'c> {
    /// The last target tried (where it ran, when it did).
    last: Target<'c>,
    /// The targets tried in order, for the error when none could run it.
    order: Vec<Target<'c>>,
    /// The attempt that ran the command, if one did.
    done: Option<AttemptResult>,
    /// A changed host key (or trouble on this machine): tried nowhere else.
    refused: Option<String>,
    /// The transport failures on the way.
    failed: Vec<Attempt>,
    warnings: Vec<String>,
}

/// Runs the command where `run` says, failing over on transport errors.
/// `inherit_local`: let a local command use our terminal.
pub(crate) async fn execute(
    run: RoutedRun<'_>,
    sink: &mut dyn OutputSink,
    stopper: &Stopper,
    inherit_local: bool,
    on_failover: &mut dyn FnMut(&Attempt, Option<&str>),
) -> RunResult {
    let started = Instant::now();
    let tried = try_in_order(run, sink, stopper, inherit_local, on_failover).await;
    result_of(run, tried, started)
}

/// Tries each target in failover order until one runs the command or
/// refuses it; a target that cannot be reached hands it to the next.
async fn try_in_order<'c>(
    run: RoutedRun<'c>,
    sink: &mut dyn OutputSink,
    stopper: &Stopper,
    inherit_local: bool,
    on_failover: &mut dyn FnMut(&Attempt, Option<&str>),
) -> Tried<'c> {
    let RoutedRun { config, decision, forced, spec, project } = run;
    let (_, returns) = sync_plan(config, decision, forced, spec);
    let order = failover_order(config, decision, forced);
    // Routing warnings matter only when routing chose the target.
    let warnings = if forced.is_none() { decision.warnings.clone() } else { Vec::new() };
    let mut tried = Tried { last: Target::Local, order: vec![], done: None, refused: None, failed: vec![], warnings };
    for (i, target) in order.iter().enumerate() {
        tried.last = *target;
        let result = match target {
            // Here the project is already in place: nothing to sync or return.
            Target::Local => {
                if let Some(w) = fallback_warning(config, decision, &tried.failed) {
                    tried.warnings.push(w);
                }
                Ok(attempt_local(spec, inherit_local, sink, stopper).await)
            }
            Target::Remote(node) => {
                let attempt = NodeAttempt { config, node, spec, project, returns: &returns };
                super::node::attempt(attempt, sink, stopper).await
            }
        };
        match result {
            Ok(r) => {
                tried.done = Some(r);
                break;
            }
            Err(e) if e.fault != Fault::Unreachable => {
                // A changed host key, or trouble on this machine: nowhere else.
                tried.failed.push(Attempt { node: e.node.clone(), error: e.message.clone() });
                tried.refused = Some(e.message);
                break;
            }
            Err(e) => {
                let attempt = Attempt { node: e.node.clone(), error: e.message.clone() };
                on_failover(&attempt, order.get(i + 1).map(|t| t.name()));
                tried.failed.push(attempt);
            }
        }
    }
    tried.order = order;
    tried
}

/// The run's record: where and why it ran, its status, or why nothing could run it.
fn result_of(run: RoutedRun<'_>, tried: Tried<'_>, started: Instant) -> RunResult {
    let RoutedRun { config, decision, forced, .. } = run;
    let Tried { last, order, done, refused, failed, mut warnings } = tried;
    let why = match (forced, failed.is_empty()) {
        (_, false) => "failover".to_string(),
        (Some(_), true) => "forced".to_string(),
        (None, true) => decision.reason.clone(),
    };
    let (status, synced, returned, held_back, timings) = match (done, refused) {
        (Some(r), _) => {
            warnings.extend(r.warnings);
            (r.status, r.synced, r.returned, r.held_back, r.timings)
        }
        (None, Some(error)) => (RunStatus::Transport { error }, false, vec![], vec![], Timings::default()),
        (None, None) => {
            let error = no_target_error(config, decision, &order, &failed);
            (RunStatus::Transport { error }, false, vec![], vec![], Timings::default())
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
        held_back,
        timings,
        stdout: Capture::default(),
        stderr: Capture::default(),
        warnings,
    }
}

/// The warning for a command that falls back to this machine after the
/// nodes its rule prefers could not be reached.
fn fallback_warning(config: &Config, decision: &Decision, failed: &[Attempt]) -> Option<String> {
    let req = requirement(config, decision)?;
    if failed.is_empty() || config.local.caps.satisfies(req) {
        return None;
    }
    let nodes: Vec<&str> = failed.iter().map(|a| a.node.as_str()).collect();
    Some(format!(
        "{} could not be reached; running here instead (rule {} prefers {}, and this machine can run it)",
        nodes.join(", "),
        decision.rule.as_deref().unwrap_or("?"),
        crate::route::describe(req)
    ))
}

/// Why no target could run the command, and what to do about it.
fn no_target_error(config: &Config, decision: &Decision, order: &[Target], failed: &[Attempt]) -> String {
    let tried: Vec<String> = failed.iter().map(|a| format!("{} ({})", a.node, a.error)).collect();
    let mut error = if tried.is_empty() {
        "no node may run the command".to_string()
    } else {
        format!("no node could run the command; tried: {}", tried.join("; "))
    };
    let local_tried = order.iter().any(|t| matches!(t, Target::Local));
    if let Some(req) = requirement(config, decision).filter(|_| !local_tried) {
        error.push_str(&format!(
            ". This machine does not satisfy rule {} ({}), so it was not used. Bring a node that does back \
             (`distex nodes --probe` shows which answer), add one to the config, or run it with --node NAME",
            decision.rule.as_deref().unwrap_or("?"),
            crate::route::describe(req)
        ));
    }
    error
}

/// A fresh id for one run: pid, time and a counter.
pub(crate) fn run_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}-{nanos:x}-{n}", std::process::id())
}

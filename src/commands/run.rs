//! `distex run`: route one command (or take `--node`), run it there with
//! failover, and produce a [`RunResult`].

use std::time::Duration;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::exec::output::CaptureSink;
use crate::exec::run::{self, Attempt, RunResult, RunSpec, Stopper};
use crate::exec::sync::check_return_path;

/// The options of one `distex run`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunOptions {
    pub(crate) command: String,
    pub(crate) node: Option<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) sync: Option<bool>,
    pub(crate) returns: Vec<String>,
    /// Capture output for a JSON record instead of streaming it.
    pub(crate) capture: bool,
    /// The project root to mirror (`--sync-root`).
    pub(crate) sync_root: Option<std::path::PathBuf>,
}

/// Checks the options against the configuration before anything runs.
pub(crate) fn validate(config: &Config, opts: &RunOptions) -> Result<()> {
    if let Some(node) = opts.node.as_deref().filter(|n| *n != "local")
        && config.node(node).is_none()
    {
        let known: Vec<&str> = config.nodes.iter().map(|n| n.name.as_str()).collect();
        return Err(Error::Usage(format!(
            "--node {node}: no such node in {}; known nodes: local{}{}",
            config.file.as_ref().map_or("the embedded default config".to_string(), |f| f.display().to_string()),
            if known.is_empty() { "" } else { ", " },
            known.join(", ")
        )));
    }
    for path in &opts.returns {
        check_return_path(path).map_err(Error::Usage)?;
    }
    if opts.command.trim().is_empty() {
        return Err(Error::Usage("nothing to run: give a command after --".into()));
    }
    Ok(())
}

/// Runs the command and returns its result record. Output is streamed to
/// our stdout/stderr unless `opts.capture`; failovers are reported to
/// `on_failover` as they happen.
pub(crate) fn run(
    config: &Config,
    opts: &RunOptions,
    on_failover: &mut dyn FnMut(&Attempt, Option<&str>),
) -> Result<RunResult> {
    validate(config, opts)?;
    let decision = crate::route::decide_line(config, &opts.command, &crate::state::LoadFacts::read(Default::default()));
    let cwd = std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))?;
    let spec = RunSpec {
        command: opts.command.clone(),
        cwd,
        sync: opts.sync,
        returns: opts.returns.clone(),
        synced_nodes: None,
        sync_root: opts.sync_root.clone(),
    };
    // distex's own directories first: refuse before anything runs.
    crate::state::checked_runtime_dir().map_err(Error::Usage)?;
    let (project, sync_warning) =
        run::sync_project(config, &decision, opts.node.as_deref(), &spec).map_err(Error::Usage)?;
    let runtime = crate::exec::runtime().map_err(|e| Error::io("starting the async runtime", e))?;
    runtime.block_on(async {
        let cancel_rx = crate::exec::signals::stop_on_signals();
        let stopper = Stopper::new(opts.timeout, cancel_rx);
        let mut sink = CaptureSink::new(!opts.capture);
        let routed = run::RoutedRun {
            config,
            decision: &decision,
            forced: opts.node.as_deref(),
            spec: &spec,
            project: project.as_ref(),
        };
        let mut result = run::execute(routed, &mut sink, &stopper, !opts.capture, on_failover).await;
        result.warnings.extend(sync_warning);
        result.stdout = sink.stdout.capture();
        result.stderr = sink.stderr.capture();
        Ok(result)
    })
}

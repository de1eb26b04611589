//! `distex parallel` and `distex plan`: from a list of commands (CLI
//! words, or JSON tasks) to a plan, and from a plan to a run.

use std::sync::Arc;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::tasks::Reporter;
use crate::tasks::plan::{self, Plan, TaskSpec};
use crate::tasks::scheduler::{self, ParallelOptions, ParallelReport};

/// Tasks from command-line words: one command each, ids `1`, `2`, ...
pub(crate) fn specs_from_commands(commands: &[String]) -> Vec<TaskSpec> {
    commands
        .iter()
        .enumerate()
        .map(|(i, c)| TaskSpec { id: (i + 1).to_string(), command: c.clone(), depends_on: vec![] })
        .collect()
}

/// Plans `specs`, or explains what is wrong with them.
pub(crate) fn make_plan(specs: &[TaskSpec]) -> Result<Plan> {
    if specs.is_empty() {
        return Err(Error::Usage("no tasks: give commands after -- (one quoted command per argument)".into()));
    }
    plan::plan(specs).map_err(Error::Usage)
}

/// Checks `--nodes` against the configuration.
pub(crate) fn check_nodes(config: &Config, nodes: &[String]) -> Result<()> {
    for n in nodes {
        if n != "local" && config.node(n).is_none() {
            let known: Vec<&str> = config.nodes.iter().map(|n| n.name.as_str()).collect();
            return Err(Error::Usage(format!("--nodes: unknown node {n:?}; known nodes: local, {}", known.join(", "))));
        }
    }
    Ok(())
}

/// Runs the plan, reporting events to `reporter`; Ctrl-C stops it.
pub(crate) fn run(
    config: &Config,
    plan: &Plan,
    opts: &ParallelOptions,
    reporter: &mut dyn Reporter,
) -> Result<ParallelReport> {
    if let Some(nodes) = &opts.nodes {
        check_nodes(config, nodes)?;
    }
    let runtime = crate::exec::runtime().map_err(|e| Error::io("starting the async runtime", e))?;
    let config = Arc::new(config.clone());
    Ok(runtime.block_on(async {
        let rx = crate::exec::signals::stop_on_signals();
        scheduler::run(config, plan, opts, reporter, rx).await
    }))
}

//! Routing: where should a shell command run?
//!
//! Everything here is pure. `shell` parses the command line with a real
//! shell parser into the simple commands it would execute, `wrappers`
//! looks through `sudo`, `env`, `bash -c` and friends, `rules` matches
//! command words against the configured rules, and [`decide()`] applies the
//! decision tree (Linux-only → a Linux node, heavy → a builder, overloaded →
//! the least-loaded node, otherwise local). [`rewrite_plan`] then decides,
//! part by part, which parts of the line run where. `programs` knows how
//! each program reads its own arguments (options with values, aliases,
//! `--version`). Loads and node health come in
//! as plain data ([`LoadFacts`]); nothing here touches the network or disk.

mod decide;
mod programs;
mod rewrite;
mod rules;
mod shell;
mod wrappers;

use crate::config::Config;

pub(crate) use crate::state::LoadFacts;
pub(crate) use decide::{Decision, decide, describe};
pub(crate) use rewrite::{Placement, distex_run, rewrite_plan};
pub(crate) use rules::rule_programs;
pub(crate) use shell::{ParseFailure, sh_quote, simple_commands};
pub(crate) use wrappers::effective_commands;

/// Decides where `line` should run: [`analyze`], [`decide()`], then
/// [`plan_parts`]. A line that is not valid shell matches no rule (and says
/// so in a warning).
pub(crate) fn decide_line(config: &Config, line: &str, facts: &LoadFacts) -> Decision {
    match analyze(line) {
        Ok(commands) => plan_parts(config, line, decide(config, line, &commands, facts), facts),
        Err(failure) => {
            let mut decision = decide(config, line, &[], facts);
            decision.warnings.insert(0, format!("could not parse the command as shell ({failure}); no rule applied"));
            decision
        }
    }
}

/// When a rule sends `line` away, adds which of its parts run where
/// ([`rewrite_plan`]) to `decision`. A plan that keeps the whole line here
/// (a later part uses the routed part's outputs here) turns the decision
/// into a local one, with a warning saying why.
pub(crate) fn plan_parts(config: &Config, line: &str, mut decision: Decision, facts: &LoadFacts) -> Decision {
    let routed_by_rule = decision.node.as_deref().filter(|_| decision.distribute && decision.rule.is_some());
    if let Some(node) = routed_by_rule {
        decision.rewrite = rewrite_plan(config, line, node, facts).map(Box::new);
    }
    if let Some(plan) = decision.rewrite.as_ref().filter(|p| p.placement == Placement::Here) {
        decision.warnings.push(format!("running the whole line here: {}", plan.why.as_deref().unwrap_or_default()));
        decision.distribute = false;
        decision.node = None;
        decision.announcement = None;
        decision.sync = false;
    }
    decision
}

/// The commands a line would run, after looking through wrappers, or why
/// the line could not be understood.
pub(crate) fn analyze(line: &str) -> Result<Vec<Vec<String>>, ParseFailure> {
    Ok(effective_commands(simple_commands(line)?))
}

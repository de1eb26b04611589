//! `distex route`: gather the facts (local load, cached node state) and ask
//! the pure router for a decision.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::route::{self, Decision, LoadFacts};
use crate::state::{NodeStates, now_secs};

/// The local 1-minute load average (`getloadavg(3)`: Linux and macOS).
pub fn local_load() -> Option<f64> {
    let mut loads = [0f64; 3];
    // SAFETY: the buffer holds the 1 value we ask for.
    let n = unsafe { libc::getloadavg(loads.as_mut_ptr(), 1) };
    (n >= 1).then_some(loads[0])
}

/// The facts routing needs, read from this machine and the cache only
/// (never the network).
pub fn facts(assumed: BTreeMap<String, f64>) -> LoadFacts {
    LoadFacts { local_load: local_load(), states: NodeStates::load(), assumed, now: now_secs() }
}

/// Decides where `line` should run, and, when a rule sends it away, which
/// of its parts run where ([`route::rewrite_plan`]).
pub fn route(config: &Config, line: &str, facts: &LoadFacts) -> Decision {
    let mut decision = match route::analyze(line) {
        Ok(commands) => route::decide(config, line, &commands, facts),
        Err(failure) => {
            let mut decision = route::decide(config, line, &[], facts);
            decision.warnings.insert(0, format!("could not parse the command as shell ({failure}); no rule applied"));
            return decision;
        }
    };
    let routed_by_rule = decision.node.as_deref().filter(|_| decision.distribute && decision.rule.is_some());
    if let Some(node) = routed_by_rule {
        decision.rewrite = route::rewrite_plan(config, line, node, facts).map(Box::new);
    }
    if let Some(plan) = decision.rewrite.as_ref().filter(|p| p.placement == route::Placement::Here) {
        // A later part uses the routed part's outputs here: the line stays together, here.
        decision.warnings.push(format!("running the whole line here: {}", plan.why.as_deref().unwrap_or_default()));
        decision.distribute = false;
        decision.node = None;
        decision.announcement = None;
        decision.sync = false;
    }
    decision
}

/// Parses `NODE=LOAD` (as given to `--assume-load`).
pub fn parse_assumed_load(spec: &str) -> Result<(String, f64), String> {
    let (node, load) = spec.split_once('=').ok_or_else(|| format!("expected NODE=LOAD, got {spec:?}"))?;
    let load: f64 = load.trim().parse().map_err(|_| format!("{load:?} is not a number in {spec:?}"))?;
    if !(load.is_finite() && load >= 0.0) {
        return Err(format!("load must be a non-negative number in {spec:?}"));
    }
    Ok((node.trim().to_string(), load))
}

/// Checks that every `--assume-load` node exists.
pub fn check_assumed(config: &Config, assumed: &BTreeMap<String, f64>) -> Result<(), String> {
    for node in assumed.keys() {
        if node != "local" && *node != config.local.name && config.node(node).is_none() {
            let known: Vec<_> = config.nodes.iter().map(|n| n.name.as_str()).collect();
            return Err(format!(
                "--assume-load names unknown node {node:?}; known nodes: local ({}){}{}",
                config.local.name,
                if known.is_empty() { "" } else { ", " },
                known.join(", ")
            ));
        }
    }
    Ok(())
}

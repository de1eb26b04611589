//! `distex route --assume-load`: the overrides' syntax and check. (The facts
//! themselves are read by [`crate::state::LoadFacts::read`]; the decision is
//! [`crate::route::decide_line`].)

use std::collections::BTreeMap;

use crate::config::Config;

/// Parses `NODE=LOAD` (as given to `--assume-load`).
pub(crate) fn parse_assumed_load(spec: &str) -> Result<(String, f64), String> {
    let (node, load) = spec.split_once('=').ok_or_else(|| format!("expected NODE=LOAD, got {spec:?}"))?;
    let load: f64 = load.trim().parse().map_err(|_| format!("{load:?} is not a number in {spec:?}"))?;
    if !(load.is_finite() && load >= 0.0) {
        return Err(format!("load must be a non-negative number in {spec:?}"));
    }
    Ok((node.trim().to_string(), load))
}

/// Checks that every `--assume-load` node exists.
pub(crate) fn check_assumed(config: &Config, assumed: &BTreeMap<String, f64>) -> Result<(), String> {
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

//! `distex nodes`: the cluster as distex sees it, from config and cache.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{Config, Os};
use crate::state::{NodeHealth, NodeStates, now_secs};

/// One machine in `distex nodes` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeInfo {
    pub name: String,
    /// `local` for this machine, `slurm:PARTITION[@LOGIN]` for a Slurm
    /// node, else the ssh destination.
    pub host: String,
    pub os: Os,
    pub features: Vec<String>,
    pub roles: Vec<String>,
    pub slots: u32,
    pub speed: f64,
    /// Last known 1-minute load (live for this machine).
    pub load: Option<f64>,
    pub cores: Option<u32>,
    /// Seconds since the load was measured (0 for this machine).
    pub load_age_secs: Option<u64>,
    /// Whether the node answered the last time it was contacted (null: never tried).
    pub answered: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodesReport {
    pub nodes: Vec<NodeInfo>,
}

/// Builds the report from configuration and the cached states.
pub fn report(config: &Config, states: &NodeStates, local_load: Option<f64>) -> NodesReport {
    let now = now_secs();
    let local = NodeInfo {
        name: config.local.name.clone(),
        host: "local".into(),
        os: config.local.caps.os,
        features: config.local.caps.features.clone(),
        roles: config.local.caps.roles.clone(),
        slots: config.local.slots,
        speed: config.local.speed,
        load: local_load,
        cores: Some(crate::config::cores()),
        load_age_secs: local_load.map(|_| 0),
        answered: Some(true),
        error: None,
    };
    let remote = config.nodes.iter().map(|n| {
        let h: Option<&NodeHealth> = states.get(&n.name);
        NodeInfo {
            name: n.name.clone(),
            // A Slurm node shows its partition (and login node, if any).
            host: match &n.slurm {
                Some(s) => format!("slurm:{}{}", s.partition, n.ssh_host().map_or(String::new(), |h| format!("@{h}"))),
                None => n.host.clone(),
            },
            os: n.caps.os,
            features: n.caps.features.clone(),
            roles: n.caps.roles.clone(),
            slots: n.slots,
            speed: n.speed,
            load: h.and_then(|h| h.load1),
            cores: h.and_then(|h| h.cores),
            load_age_secs: h.and_then(|h| h.load_at).map(|at| now.saturating_sub(at)),
            answered: h.map(|h| h.answered),
            error: h.and_then(|h| h.error.clone()),
        }
    });
    NodesReport { nodes: std::iter::once(local).chain(remote).collect() }
}

//! The cluster as distex sees it (`distex nodes`): the configuration joined
//! with what the node cache remembers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::nodes::{NodeHealth, NodeStates, Platform, now_secs};
use crate::config::{Config, Os};

/// One machine in `distex nodes` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct NodeInfo {
    pub(crate) name: String,
    /// `local` for this machine, `slurm:PARTITION[@LOGIN]` for a Slurm
    /// node, else the ssh destination.
    pub(crate) host: String,
    pub(crate) os: Os,
    pub(crate) features: Vec<String>,
    pub(crate) roles: Vec<String>,
    pub(crate) slots: u32,
    pub(crate) speed: f64,
    /// Last known 1-minute load (live for this machine).
    pub(crate) load: Option<f64>,
    pub(crate) cores: Option<u32>,
    /// Seconds since the load was measured (0 for this machine).
    pub(crate) load_age_secs: Option<u64>,
    /// Whether the node answered the last time it was contacted (null: never tried).
    pub(crate) answered: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// System, CPU architecture and the rules' programs found on the node
    /// user's PATH, from the last `distex nodes --probe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) platform: Option<Platform>,
}

/// `distex nodes` output: this machine first, then the configured nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct NodesReport {
    pub(crate) nodes: Vec<NodeInfo>,
}

impl NodesReport {
    /// The report as of now: this machine's live load and the node cache.
    pub(crate) fn read(config: &Config) -> NodesReport {
        Self::build(config, &NodeStates::load(), crate::sys::load_average())
    }

    /// Builds the report from configuration and the cached states.
    pub(crate) fn build(config: &Config, states: &NodeStates, local_load: Option<f64>) -> NodesReport {
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
            platform: None,
        };
        let remote = config.nodes.iter().map(|n| {
            let h: Option<&NodeHealth> = states.get(&n.name);
            NodeInfo {
                name: n.name.clone(),
                // A Slurm node shows its partition (and login node, if any).
                host: match &n.slurm {
                    Some(s) => {
                        format!("slurm:{}{}", s.partition, n.ssh_host().map_or(String::new(), |h| format!("@{h}")))
                    }
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
                platform: h.and_then(|h| h.platform.clone()),
            }
        });
        NodesReport { nodes: std::iter::once(local).chain(remote).collect() }
    }
}

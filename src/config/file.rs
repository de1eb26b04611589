//! The on-disk TOML format, exactly as users write it.
//!
//! These structs mirror `cluster.toml` one to one and reject unknown keys,
//! so a typo (`slot = 4`) is an error naming the key instead of a silently
//! ignored line. [`super::load`] turns them into the effective [`super::Config`].

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use super::model::{HookMode, HostKeyChecking, NodeKind, Os, Requirement};

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// The `cluster.toml` file.
pub struct ClusterFile {
    /// This machine; every key is optional (detected when omitted).
    #[serde(default)]
    #[schemars(with = "Option<LocalTable>")]
    pub local: Option<Spanned<LocalTable>>,
    /// Remote machines reachable over SSH.
    #[serde(default)]
    #[schemars(with = "Vec<NodeTable>")]
    pub node: Vec<Spanned<NodeTable>>,
    /// Routing rules; a rule named like a built-in one replaces it.
    #[serde(default)]
    #[schemars(with = "Vec<RuleTable>")]
    pub rule: Vec<Spanned<RuleTable>>,
    #[serde(default)]
    pub routing: Option<RoutingTable>,
    #[serde(default)]
    pub announce: Option<AnnounceTable>,
    #[serde(default)]
    pub hook: Option<HookTable>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalTable {
    pub name: Option<String>,
    pub os: Option<Os>,
    pub features: Option<Vec<String>>,
    pub roles: Option<Vec<String>>,
    pub slots: Option<u32>,
    pub speed: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeTable {
    pub name: String,
    /// How distex reaches the node: `"ssh"` (the default) or `"slurm"`.
    #[serde(default)]
    pub kind: NodeKind,
    /// The ssh destination; for a Slurm node, its login node (omitted:
    /// Slurm's commands run on this machine).
    pub host: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    pub ssh_config: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub os: Os,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    pub slots: Option<u32>,
    pub speed: Option<f64>,
    pub label: Option<String>,
    pub workdir: Option<String>,
    #[serde(default)]
    pub host_key_checking: HostKeyChecking,
    pub connect_timeout: Option<u64>,
    /// The distex binary on the node, run as the built-in summary's worker
    /// by `distex process --nodes` (default: `distex` on the node's PATH).
    pub distex: Option<String>,
    /// Slurm only (required there): the partition jobs are submitted to.
    pub partition: Option<String>,
    /// Slurm only: `--account` for every job.
    pub account: Option<String>,
    /// Slurm only: `--qos` for every job.
    pub qos: Option<String>,
    /// Slurm only: `--time` for every job (`MM`, `HH:MM:SS`, `D-HH:MM`...).
    pub time_limit: Option<String>,
    /// Slurm only: more options for every job, e.g. `["--mem=4G"]`.
    pub sbatch_args: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleTable {
    pub name: String,
    pub commands: Option<Vec<String>>,
    pub requires: Option<Requirement>,
    pub announce: Option<String>,
    pub sync: Option<bool>,
    pub returns: Option<Vec<String>>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingTable {
    pub overload_threshold: Option<f64>,
    pub unhealthy_for: Option<u64>,
    pub load_max_age: Option<u64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnounceTable {
    #[serde(default)]
    pub speak: bool,
    pub command: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HookTable {
    #[serde(default)]
    pub mode: HookMode,
    #[serde(default)]
    pub auto_approve: bool,
}

fn yes() -> bool {
    true
}

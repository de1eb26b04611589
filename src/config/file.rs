//! The on-disk TOML format, exactly as users write it.
//!
//! These structs mirror `cluster.toml` one to one and reject unknown keys,
//! so a typo (`slot = 4`) is an error naming the key instead of a silently
//! ignored line. [`super::load()`] turns them into the effective [`super::Config`].

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use super::model::{HookMode, HostKeyChecking, NodeKind, Os, Requirement};

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
/// The `cluster.toml` file.
pub(crate) struct ClusterFile {
    /// This machine; every key is optional (detected when omitted).
    #[serde(default)]
    #[schemars(with = "Option<LocalTable>")]
    pub(crate) local: Option<Spanned<LocalTable>>,
    /// Remote machines reachable over SSH.
    #[serde(default)]
    #[schemars(with = "Vec<NodeTable>")]
    pub(crate) node: Vec<Spanned<NodeTable>>,
    /// Routing rules; a rule named like a built-in one replaces it.
    #[serde(default)]
    #[schemars(with = "Vec<RuleTable>")]
    pub(crate) rule: Vec<Spanned<RuleTable>>,
    #[serde(default)]
    pub(crate) routing: Option<RoutingTable>,
    #[serde(default)]
    pub(crate) announce: Option<AnnounceTable>,
    #[serde(default)]
    pub(crate) hook: Option<HookTable>,
    #[serde(default)]
    pub(crate) sync: Option<SyncTable>,
    /// Defaults of `distex process`.
    #[serde(default)]
    pub(crate) process: Option<ProcessTable>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocalTable {
    pub(crate) name: Option<String>,
    pub(crate) os: Option<Os>,
    pub(crate) features: Option<Vec<String>>,
    pub(crate) roles: Option<Vec<String>>,
    pub(crate) slots: Option<u32>,
    pub(crate) speed: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeTable {
    pub(crate) name: String,
    /// How distex reaches the node: `"ssh"` (the default) or `"slurm"`.
    #[serde(default)]
    pub(crate) kind: NodeKind,
    /// The ssh destination; for a Slurm node, its login node (omitted:
    /// Slurm's commands run on this machine).
    pub(crate) host: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) identity_file: Option<PathBuf>,
    pub(crate) ssh_config: Option<PathBuf>,
    pub(crate) known_hosts: Option<PathBuf>,
    pub(crate) os: Os,
    #[serde(default)]
    pub(crate) features: Vec<String>,
    #[serde(default)]
    pub(crate) roles: Vec<String>,
    pub(crate) slots: Option<u32>,
    pub(crate) speed: Option<f64>,
    pub(crate) label: Option<String>,
    pub(crate) workdir: Option<String>,
    #[serde(default)]
    pub(crate) host_key_checking: HostKeyChecking,
    pub(crate) connect_timeout: Option<u64>,
    /// The distex binary on the node, run as the built-in summary's worker
    /// by `distex process --nodes` (default: `distex` on the node's PATH).
    pub(crate) distex: Option<String>,
    /// Slurm only (required there): the partition jobs are submitted to.
    pub(crate) partition: Option<String>,
    /// Slurm only: `--account` for every job.
    pub(crate) account: Option<String>,
    /// Slurm only: `--qos` for every job.
    pub(crate) qos: Option<String>,
    /// Slurm only: `--time` for every job (`MM`, `HH:MM:SS`, `D-HH:MM`...).
    pub(crate) time_limit: Option<String>,
    /// Slurm only: more options for every job, e.g. `["--mem=4G"]`.
    pub(crate) sbatch_args: Option<Vec<String>>,
    /// Slurm only: directories this machine and the compute nodes mount at
    /// the same path (besides `workdir`, which counts only without a login
    /// `host`), e.g. `["/scratch"]`: `distex process` reads input files
    /// there in place, as byte ranges.
    pub(crate) shared: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleTable {
    pub(crate) name: String,
    pub(crate) commands: Option<Vec<String>>,
    /// A regular expression matched against each command's words joined by
    /// spaces, anchored at the program name (`'^terraform (plan|apply)\b'`).
    pub(crate) pattern: Option<String>,
    pub(crate) requires: Option<Requirement>,
    pub(crate) announce: Option<String>,
    pub(crate) sync: Option<bool>,
    pub(crate) returns: Option<Vec<String>>,
    #[serde(default = "yes")]
    pub(crate) enabled: bool,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoutingTable {
    pub(crate) overload_threshold: Option<f64>,
    pub(crate) unhealthy_for: Option<u64>,
    pub(crate) load_max_age: Option<u64>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnnounceTable {
    #[serde(default)]
    pub(crate) speak: bool,
    pub(crate) command: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HookTable {
    #[serde(default)]
    pub(crate) mode: HookMode,
    #[serde(default)]
    pub(crate) auto_approve: bool,
}

/// `[sync]`: what workspace sync may send.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SyncTable {
    /// Paths (relative to the project root; `*` within one component) to
    /// send even though they match the secrets denylist.
    #[serde(default)]
    pub(crate) include: Vec<String>,
}

/// The `[process]` table.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProcessTable {
    /// Variables of distex's environment passed to every region worker (as
    /// if each were given with `--pass-env NAME`); nothing else is passed.
    #[serde(default)]
    pub(crate) pass_env: Vec<String>,
}

fn yes() -> bool {
    true
}

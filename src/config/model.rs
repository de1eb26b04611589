//! The effective cluster configuration: plain data, validated, with defaults
//! filled in. Produced by [`super::load()`]; read by everything else.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An operating system a node runs. Rules can require one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Os {
    Linux,
    Macos,
}

impl Os {
    /// The OS distex itself was compiled for (None on anything else).
    pub(crate) fn current() -> Option<Os> {
        if cfg!(target_os = "linux") {
            Some(Os::Linux)
        } else if cfg!(target_os = "macos") {
            Some(Os::Macos)
        } else {
            None
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Macos => "macos",
        }
    }
}

/// How strictly a node's SSH host key is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum HostKeyChecking {
    /// The key must already be in known_hosts (the default).
    #[default]
    Strict,
    /// Unknown hosts are added on first contact; changed keys are still refused.
    AcceptNew,
}

/// What a rule (or a user) requires of the machine a command runs on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Requirement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) os: Option<Os>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) features: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) roles: Vec<String>,
}

/// What a machine offers; shared by the local machine and remote nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Capabilities {
    pub(crate) os: Os,
    pub(crate) features: Vec<String>,
    pub(crate) roles: Vec<String>,
}

impl Capabilities {
    /// True when this machine meets every part of `req`.
    pub(crate) fn satisfies(&self, req: &Requirement) -> bool {
        req.os.is_none_or(|os| os == self.os)
            && req.features.iter().all(|f| self.features.contains(f))
            && req.roles.iter().all(|r| self.roles.contains(r))
    }
}

/// The machine distex runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct LocalNode {
    pub(crate) name: String,
    #[serde(flatten)]
    pub(crate) caps: Capabilities,
    /// Concurrent jobs this machine takes (default: its cores).
    pub(crate) slots: u32,
    pub(crate) speed: f64,
}

/// How distex reaches a node and runs commands there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum NodeKind {
    /// A machine reached over SSH (the default).
    #[default]
    Ssh,
    /// A Slurm partition: everything runs through `srun`/`sbatch`, on this
    /// machine or on the login node `host` over SSH.
    Slurm,
}

/// What a Slurm node submits with (`kind = "slurm"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct SlurmSettings {
    /// The partition every job goes to (`--partition`).
    pub(crate) partition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) qos: Option<String>,
    /// Slurm's own time limit (`--time`); distex enforces `--timeout` itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) time_limit: Option<String>,
    /// More options given to every job (`srun` and `sbatch` alike).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) sbatch_args: Vec<String>,
    /// Absolute directories this machine and the compute nodes mount at the
    /// same path, besides `workdir` (input files there are read in place).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) shared: Vec<String>,
}

/// A remote machine reachable over SSH, or a Slurm partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Node {
    pub(crate) name: String,
    /// An ssh destination (host name, address or ~/.ssh/config alias). For
    /// a Slurm node: its login node, or empty when Slurm's commands run on
    /// this machine.
    pub(crate) host: String,
    /// Set for `kind = "slurm"`: the node is a partition of a Slurm cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) slurm: Option<SlurmSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) identity_file: Option<PathBuf>,
    /// Extra ssh_config file for this node (tests, unusual setups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ssh_config: Option<PathBuf>,
    /// known_hosts file to check this node's key against (default: the user's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) known_hosts: Option<PathBuf>,
    #[serde(flatten)]
    pub(crate) caps: Capabilities,
    /// Concurrent jobs the node takes.
    pub(crate) slots: u32,
    /// Relative speed (Nix's speed factor): higher is preferred at equal load.
    pub(crate) speed: f64,
    /// Name used in announcements ("Mac Pro"); defaults to `name`.
    pub(crate) label: String,
    /// Directory on the node under which project mirrors live.
    pub(crate) workdir: String,
    pub(crate) host_key_checking: HostKeyChecking,
    /// Seconds to wait for the SSH connection before calling the node down.
    pub(crate) connect_timeout: u64,
    /// The distex binary on the node (a path, or a name looked up in the
    /// node's PATH): `distex process --nodes` runs it as the built-in
    /// summary's worker.
    pub(crate) distex: String,
}

/// A routing rule: commands it matches and what they require.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Rule {
    pub(crate) name: String,
    /// Command patterns: a program name, optionally followed by subcommand
    /// words (`"cargo build"`, `"python -m pytest"`).
    pub(crate) commands: Vec<String>,
    /// A regular expression matched against each simple command's words
    /// joined by spaces, at the program name (see [`RulePattern`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pattern: Option<RulePattern>,
    pub(crate) requires: Requirement,
    /// Announcement template; `{node}`, `{matched}`, `{Matched}`, `{command}`.
    pub(crate) announce: String,
    /// Whether matching commands need the project synced to the node.
    pub(crate) sync: bool,
    /// Paths (relative to the project) brought back after the command runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) returns: Vec<String>,
    /// Where the rule came from: "built-in" or "FILE:LINE".
    pub(crate) source: String,
}

/// A rule's `pattern`: a compiled regular expression (the `regex` crate's
/// syntax). It is checked when the configuration loads, so a typo is a
/// `file:line` error, never a surprise at routing time. It serializes as
/// its source text.
#[derive(Debug, Clone)]
pub(crate) struct RulePattern(pub(crate) regex::Regex);

impl RulePattern {
    /// The text the user wrote.
    pub(crate) fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The part of `command` (words joined by spaces) the pattern matches,
    /// if the match starts at the program name: a pattern can never match
    /// inside an argument, whether or not it starts with `^`.
    pub(crate) fn matches_at_start<'t>(&self, command: &'t str) -> Option<&'t str> {
        self.0.find(command).filter(|m| m.start() == 0).map(|m| m.as_str())
    }
}

impl PartialEq for RulePattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Serialize for RulePattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RulePattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        regex::Regex::new(&text).map(RulePattern).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for RulePattern {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RulePattern".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

/// Thresholds and lifetimes used by the router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct RoutingSettings {
    /// The local machine is overloaded when 1-minute load / cores exceeds this.
    pub(crate) overload_threshold: f64,
    /// Seconds a node that failed to answer is skipped before being tried again.
    pub(crate) unhealthy_for: u64,
    /// Cached loads older than this many seconds are treated as unknown.
    pub(crate) load_max_age: u64,
}

/// Spoken announcements.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct AnnounceSettings {
    pub(crate) speak: bool,
    /// A TTS program to use instead of the platform's (`say`, `espeak-ng`, `spd-say`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) command: Option<String>,
}

/// What the Claude Code PreToolUse hook does with a command that should be distributed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HookMode {
    /// Rewrite the command to `distex run --node N -- ...` (the default).
    #[default]
    Rewrite,
    /// Leave the command alone; tell Claude where it should run.
    Suggest,
    /// Do nothing.
    Off,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct HookSettings {
    pub(crate) mode: HookMode,
    /// Auto-approve rewritten commands (`permissionDecision: "allow"`). Off by
    /// default: it bypasses Claude Code's own permission rules.
    pub(crate) auto_approve: bool,
}

/// `[sync]` settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct SyncSettings {
    /// Paths sent even though they match the secrets denylist.
    #[serde(default)]
    pub(crate) include: Vec<String>,
}

/// Defaults of `distex process` (the `[process]` table).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct ProcessSettings {
    /// Variables passed to every worker, as with `--pass-env NAME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) pass_env: Vec<String>,
}

/// The whole effective configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Config {
    pub(crate) local: LocalNode,
    pub(crate) nodes: Vec<Node>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) routing: RoutingSettings,
    pub(crate) announce: AnnounceSettings,
    pub(crate) hook: HookSettings,
    /// What workspace sync may send.
    #[serde(default)]
    pub(crate) sync: SyncSettings,
    #[serde(default)]
    pub(crate) process: ProcessSettings,
    /// Where each part came from: `"local.os" -> "detected"`, `"node.macpro51" -> "FILE:8"`.
    pub(crate) sources: Vec<Source>,
    /// The file that was loaded, if any (None: the embedded default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) file: Option<PathBuf>,
}

/// One provenance entry of [`Config::sources`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Source {
    pub(crate) key: String,
    pub(crate) from: String,
}

impl Node {
    /// How distex reaches this node.
    pub(crate) fn kind(&self) -> NodeKind {
        if self.slurm.is_some() { NodeKind::Slurm } else { NodeKind::Ssh }
    }

    /// The host to reach over SSH: always for an SSH node; the login node,
    /// if any, for a Slurm node (None: this machine).
    pub(crate) fn ssh_host(&self) -> Option<&str> {
        (!self.host.is_empty()).then_some(self.host.as_str())
    }
}

impl Config {
    pub(crate) fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub(crate) fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }
}

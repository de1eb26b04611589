//! Command-line flags (clap). This is the only module that knows about clap;
//! [`super::dispatch`] turns these into plain calls.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Route shell commands across your machines, run them there, and process
/// partitioned data in isolated workers.
///
/// distex reads the cluster from --config FILE, $DISTEX_CONFIG,
/// $XDG_CONFIG_HOME/distex/cluster.toml (~/.config/distex/cluster.toml), or
/// falls back to this machine alone. Run `distex config init` to start one.
#[derive(Debug, Parser)]
#[command(
    name = "distex",
    version,
    propagate_version = true,
    max_term_width = 100
)]
#[command(
    after_help = "Exit status: 0 ok; 1 some work failed; 2 usage, config or input error; \
3 process incomplete (a region failed); 124 timed out; 125 no node reachable; \
otherwise the remote command's own status."
)]
pub struct Cli {
    /// Cluster configuration file (default: $DISTEX_CONFIG, then ~/.config/distex/cluster.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decide where a shell command should run (never runs it, never waits on the network).
    ///
    /// Example: distex route -- cargo build --release
    ///          distex route --json 'docker compose up -d && make test'
    Route(RouteArgs),
    /// List nodes with capabilities, last known load and health.
    Nodes(NodesArgs),
    /// Show or create the cluster configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Serve JSON requests from stdin, one object per line, answering one per line.
    ///
    /// Requests: {"op":"route","command":"..."}, {"op":"nodes"}, ... An optional
    /// "id" is echoed back. Bad lines get {"error":{"code","message"}}; the
    /// others are still answered and the exit status is 1.
    Json,
    /// Print the JSON Schema of requests, responses or the config file.
    Schema(SchemaArgs),
    /// Claude Code hooks (run by the plugin's hooks/hooks.json, not by hand).
    #[command(subcommand)]
    Hook(HookCommand),
}

#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// PreToolUse: read Claude Code's tool call on stdin; for a Bash command
    /// that should be distributed, answer with it rewritten to `distex run
    /// --node N -- '...'` (hook.mode = "rewrite"), or a suggestion ("suggest").
    /// Always exits 0 and prints nothing when the command stays local or
    /// anything goes wrong (see hook.log in the state directory).
    PreToolUse,
}

#[derive(Debug, Args)]
pub struct RouteArgs {
    /// Print the decision as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Assume NODE (or `local`) has this 1-minute load, for what-if questions.
    #[arg(long = "assume-load", value_name = "NODE=LOAD")]
    pub assume_load: Vec<String>,
    /// Speak the announcement (also: announce.speak = true in the config).
    #[arg(long)]
    pub speak: bool,
    /// The command line: several words after `--`, or one quoted string.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NodesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Contact every node over SSH (in parallel, short timeout) and refresh the cache.
    #[arg(long)]
    pub probe: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration and where each part came from.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a commented starter file (default: ~/.config/distex/cluster.toml).
    Init {
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        path: Option<PathBuf>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which schema.
    #[arg(value_enum)]
    pub kind: SchemaName,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SchemaName {
    Request,
    Response,
    Config,
}

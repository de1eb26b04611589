//! Command-line flags (clap). This is the only module that knows about clap;
//! [`super::dispatch`] turns these into plain calls.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::values::{self, FormatArg, SplitArg};
use crate::process::input::schema::ColumnType;

/// Route shell commands across your machines, run them there, and process
/// partitioned data in isolated workers.
///
/// distex reads the cluster from --config FILE, $DISTEX_CONFIG,
/// $XDG_CONFIG_HOME/distex/cluster.toml (~/.config/distex/cluster.toml), or
/// falls back to this machine alone. Run `distex config init` to start one.
#[derive(Debug, Parser)]
#[command(name = "distex", version, propagate_version = true, max_term_width = 100)]
#[command(after_help = "Exit status: 0 ok; 1 some work failed; 2 usage, config or input error; \
3 process incomplete (a region failed); 124 timed out; 125 no node reachable; \
otherwise the remote command's own status.")]
pub(crate) struct Cli {
    /// Cluster configuration file (default: $DISTEX_CONFIG, then ~/.config/distex/cluster.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Decide where a shell command should run (never runs it, never waits on the network).
    ///
    /// When a rule sends part of the line away, the answer also says which
    /// parts run where and the line the hook runs instead (`rewrite`): local
    /// parts stay as written, routed ones become `distex run --node N -- ...`.
    /// See docs/routing.md.
    ///
    /// Example: distex route -- cargo build --release
    ///          distex route --json 'docker compose up -d && make test'
    Route(RouteArgs),
    /// List nodes with capabilities, last known load and health, and what the last probe found.
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
    /// Run a command where it belongs: routed (or --node), over SSH with
    /// workspace sync, failing over to the next node on transport errors.
    ///
    /// Example: distex run -- cargo build --release
    ///          distex run --node macpro51 --return target/release/app -- make
    Run(RunArgs),
    /// Run independent commands at once across the cluster, in dependency order.
    ///
    /// Example: distex parallel -- 'cargo test' 'npm test' 'pytest'
    Parallel(ParallelArgs),
    /// Show which commands `parallel` would run together, and why not.
    Plan(PlanArgs),
    /// Remove what distex left: SSH masters and state here, and with --remote the nodes' mirrors.
    ///
    /// Example: distex clean
    ///          distex clean --remote --json
    #[command(verbatim_doc_comment)]
    Clean(CleanArgs),
    /// Claude Code hooks (run by the plugin's hooks/hooks.json, not by hand).
    #[command(subcommand)]
    Hook(HookCommand),
    /// Partition a dataset by region, process each region in an isolated worker, aggregate exactly.
    ///
    /// Examples: distex process --demo
    ///           distex process sales.csv.gz --by region --json
    ///           distex process --regions data/ --processor 'python3 count.py' --retries 2
    #[command(verbatim_doc_comment)]
    Process(Box<ProcessArgs>),
    /// Internal: a built-in worker process (started by `distex process`).
    #[command(name = "__worker", hide = true)]
    Worker {
        /// Which built-in processor.
        kind: String,
    },
    /// Internal: run PROGRAM in the --sandbox container ([--allow-connect HOST:PORT]... -- PROGRAM ARGS).
    #[command(name = "__sandbox", hide = true)]
    Sandbox {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        program: Vec<std::ffi::OsString>,
    },
    /// Internal: run PROGRAM and collect what it daemonizes (--grace SECS -- PROGRAM ARGS).
    #[command(name = "__reap", hide = true)]
    Reap {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        program: Vec<std::ffi::OsString>,
    },
    /// Internal: inside the sandbox, relay --allow-connect endpoints, then run PROGRAM.
    #[command(name = "__relay", hide = true)]
    Relay {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        program: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum HookCommand {
    /// PreToolUse: read Claude Code's tool call on stdin; for a Bash command
    /// that should be distributed, answer with it rewritten to `distex run
    /// --node N -- '...'` (hook.mode = "rewrite"), or a suggestion ("suggest").
    /// A command that the user's Claude Code deny or ask rules match (any
    /// part) is left alone; one their allow rules allow is allowed rewritten.
    /// Always exits 0 and prints nothing when the command stays local or
    /// anything goes wrong (see hook.log in the state directory); a broken
    /// config or "no nodes" is told to the user once per session.
    PreToolUse,
}

#[derive(Debug, Args)]
#[command(after_help = "Exit status: 0 every region and the aggregation completed; 3 some task failed \
(the report says complete: false); 2 usage or input error (nothing was processed).")]
pub(crate) struct ProcessArgs {
    /// Input files (CSV, TSV or JSON Lines, plain or gzip) or named pipes; `-` reads stdin.
    #[arg(value_name = "INPUT")]
    pub(crate) inputs: Vec<PathBuf>,
    /// The column that names each record's region.
    #[arg(long, value_name = "FIELD")]
    pub(crate) by: Option<String>,
    /// Data already split: files, or directories of files, one region per file stem.
    #[arg(long, value_name = "DIR_OR_FILE", num_args = 1..)]
    pub(crate) regions: Vec<PathBuf>,
    /// Process the small dataset embedded in distex (regions A, B and C).
    #[arg(long)]
    pub(crate) demo: bool,
    /// Input format (default: from the file name, else csv).
    #[arg(long, value_enum)]
    pub(crate) format: Option<FormatArg>,
    /// Column types overriding inference, e.g. `zip=text,price=number`.
    #[arg(long, value_name = "COL=TYPE,...", value_parser = values::schema)]
    pub(crate) schema: Vec<Vec<(String, ColumnType)>>,
    /// Shell command run once per region (records on stdin; prints one JSON object).
    #[arg(long, value_name = "CMD")]
    pub(crate) processor: Option<String>,
    /// Shell command combining the region results (JSON on stdin; prints one JSON object).
    #[arg(long, value_name = "CMD")]
    pub(crate) aggregate: Option<String>,
    /// Workers running at once on this machine (default: the number of cores;
    /// 0 with --nodes: all regions go to the nodes).
    #[arg(long, short = 'j', value_name = "N")]
    pub(crate) jobs: Option<usize>,
    /// Extra attempts for a failed region (backoff 100 ms, 200 ms, ...).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) retries: u32,
    /// Stop with an input error once more than N records are rejected.
    #[arg(long, value_name = "N")]
    pub(crate) max_rejects: Option<u64>,
    /// Records longer than this (e.g. 64M) are rejected with their line and
    /// size, without being held in memory [default: 16M].
    #[arg(long, value_name = "SIZE", value_parser = values::size)]
    pub(crate) max_record_size: Option<u64>,
    /// Wall-clock limit per worker attempt: 500ms, 2s, 1.5s, 3m, 1h, or a bare number of seconds.
    #[arg(long, value_name = "DURATION", value_parser = values::timeout)]
    pub(crate) timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when stopping a worker (same syntax as --timeout).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = values::duration)]
    pub(crate) grace: Duration,
    /// Address-space limit per worker (e.g. 512M, 2G).
    #[arg(long, value_name = "SIZE", value_parser = values::size)]
    pub(crate) max_memory: Option<u64>,
    /// CPU-time limit per worker, in seconds.
    #[arg(long, value_name = "SECS")]
    pub(crate) max_cpu_seconds: Option<u64>,
    /// Most a --processor command may print on stdout (default 16M; the
    /// built-in summary workers are not capped).
    #[arg(long, value_name = "SIZE", value_parser = values::size)]
    pub(crate) max_output: Option<u64>,
    /// Open-file limit per worker (default 1024, or the hard limit in force
    /// when lower; a value above the hard limit is refused).
    #[arg(long, value_name = "N")]
    pub(crate) max_open_files: Option<u64>,
    /// Linux: each worker in a bubblewrap container (own namespaces, no network, sees only its
    /// directory and the system's programs); refuses when bubblewrap cannot run here.
    #[arg(long)]
    pub(crate) sandbox: bool,
    /// Pass this variable of distex's environment to every worker (repeatable; also
    /// `pass_env = [...]` in the config's `[process]` table). Nothing else is passed.
    #[arg(long = "pass-env", value_name = "NAME")]
    pub(crate) pass_env: Vec<String>,
    /// With --sandbox: let workers reach this one TCP endpoint (repeatable), e.g. 127.0.0.1:8080.
    #[arg(long = "allow-connect", value_name = "HOST:PORT", requires = "sandbox")]
    pub(crate) allow_connect: Vec<String>,
    /// Keep the run directory (spool files and worker directories; on a Slurm node, the
    /// shared run directory in its workdir).
    #[arg(long)]
    pub(crate) keep_workdirs: bool,
    /// Place region workers on these cluster nodes (comma-separated). A Slurm node takes
    /// every part as one array job, through its login host when it has one (docs/slurm.md).
    #[arg(long, value_name = "NODE,...", value_delimiter = ',')]
    pub(crate) nodes: Vec<String>,
    /// How work is split into workers (with bytes, stdin and gzip are
    /// decompressed to a plain copy first).
    #[arg(long, value_enum, default_value_t = SplitArg::Auto)]
    pub(crate) split: SplitArg,
    /// Target size of each byte range with --split bytes (e.g. 64M). Default: two ranges per
    /// job (per slot of a Slurm node; 8M to 256M), or one per job (up to 1G) when the input's
    /// first rows show thousands of regions.
    #[arg(long, value_name = "SIZE", value_parser = values::size)]
    pub(crate) part_size: Option<u64>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// Print events as JSON Lines while running (then the report as the last line).
    #[arg(long)]
    pub(crate) events: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RouteArgs {
    /// Print the decision as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// Assume NODE (or `local`, or this machine's configured name) has this 1-minute load, for what-if questions.
    #[arg(long = "assume-load", value_name = "NODE=LOAD")]
    pub(crate) assume_load: Vec<String>,
    /// Speak the announcement (also: announce.speak = true in the config).
    #[arg(long)]
    pub(crate) speak: bool,
    /// The command line: several words after `--`, or one quoted string.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Run on this node (`local`: this machine) instead of asking the router. On a Slurm
    /// node (`kind = "slurm"`) the command is one `srun` job (docs/slurm.md).
    #[arg(long, value_name = "NODE")]
    pub(crate) node: Option<String>,
    /// Print one JSON result record (output captured, bounded) instead of streaming.
    #[arg(long)]
    pub(crate) json: bool,
    /// Stop the command (and everything it started) after this long: 500ms, 2s, 1.5s, 3m, 1h, or a bare number of seconds.
    #[arg(long, value_name = "DURATION", value_parser = values::timeout)]
    pub(crate) timeout: Option<Duration>,
    /// Sync the project to the node first (default: the rule's setting).
    #[arg(long, conflicts_with = "no_sync")]
    pub(crate) sync: bool,
    /// Do not sync the project.
    #[arg(long)]
    pub(crate) no_sync: bool,
    /// Mirror this directory as the project (default: the git repository's root; never $HOME or /).
    #[arg(long, value_name = "DIR")]
    pub(crate) sync_root: Option<std::path::PathBuf>,
    /// Bring PATH (relative to the current directory) back after the run, also when it fails.
    #[arg(long = "return", value_name = "PATH")]
    pub(crate) returns: Vec<String>,
    /// The command: several words after `--`, or one quoted string.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ParallelArgs {
    /// Run at most N tasks at once (default: the cluster's total slots).
    #[arg(long, short = 'j', value_name = "N")]
    pub(crate) jobs: Option<usize>,
    /// After a failure, still run every task that does not depend on it.
    #[arg(long)]
    pub(crate) keep_going: bool,
    /// Print {"tasks": [...], "summary": {...}} at the end.
    #[arg(long)]
    pub(crate) json: bool,
    /// Stream events as JSON Lines while running.
    #[arg(long)]
    pub(crate) events: bool,
    /// Only use these targets (comma-separated; `local` is this machine).
    #[arg(long, value_delimiter = ',', value_name = "NODES")]
    pub(crate) nodes: Option<Vec<String>>,
    /// Sync the project to nodes first (default: each rule's setting).
    #[arg(long, conflicts_with = "no_sync")]
    pub(crate) sync: bool,
    /// Never sync the project.
    #[arg(long)]
    pub(crate) no_sync: bool,
    /// Mirror this directory as the project (default: the git repository's root; never $HOME or /).
    #[arg(long, value_name = "DIR")]
    pub(crate) sync_root: Option<std::path::PathBuf>,
    /// Stop any task running longer than this: 500ms, 2s, 1.5s, 3m, 1h, or a bare number of seconds.
    #[arg(long, value_name = "DURATION", value_parser = values::timeout)]
    pub(crate) timeout: Option<Duration>,
    /// Read tasks from a JSON file: {"tasks":[{"id","command","depends_on"}]} (`-`: stdin).
    #[arg(long, value_name = "FILE")]
    pub(crate) file: Option<std::path::PathBuf>,
    /// The commands, one per argument (quote each one).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub(crate) commands: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// Print the plan as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Read tasks from a JSON file (as for `parallel --file`).
    #[arg(long, value_name = "FILE")]
    pub(crate) file: Option<std::path::PathBuf>,
    /// The commands, one per argument.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
    pub(crate) commands: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct NodesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Contact every node (in parallel, short timeout) and refresh the cache: over SSH, load, OS,
    /// CPU architecture, and which of the rules' programs are on the node user's PATH; for a
    /// Slurm node, its partition's state and busy CPUs (sinfo).
    #[arg(long)]
    pub(crate) probe: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Removes only distex's own files: SSH master sockets in the runtime directory, \
nodes.json and hook.log in the state directory, and (--remote) directories named <name>-<8 hex digits> \
directly under each node's workdir. Exit status: 0 done; 1 a node could not be cleaned (the others were).")]
pub(crate) struct CleanArgs {
    /// Also remove the project mirrors on every node (over SSH; a Slurm node without a
    /// login host: in its workdir here).
    #[arg(long)]
    pub(crate) remote: bool,
    /// Print what was removed as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
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
pub(crate) struct SchemaArgs {
    /// Which schema.
    #[arg(value_enum)]
    pub(crate) kind: SchemaName,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SchemaName {
    Request,
    Response,
    Config,
}

//! What `distex process` (and `{"op":"process"}`) accepts, and the checks
//! of those values that need no I/O.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::input::Format;
use super::input::schema::ColumnType;
use super::workers::local::Limits;
use super::workers::relay::Endpoint;

/// Everything `distex process` (and `{"op":"process"}`) accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ProcessOptions {
    /// Input files (`-` is stdin), partitioned by `by`.
    pub(crate) inputs: Vec<PathBuf>,
    /// The key column that names each record's region.
    pub(crate) by: Option<String>,
    /// Already split data: files or directories of files, one region per file stem.
    pub(crate) regions: Vec<PathBuf>,
    /// Use the small dataset embedded in distex (regions A, B, C).
    pub(crate) demo: bool,
    /// Input format; guessed from file names when absent (CSV otherwise).
    pub(crate) format: Option<Format>,
    /// Column types that override inference, by column name.
    pub(crate) schema: BTreeMap<String, ColumnType>,
    /// A shell command run once per region instead of the built-in summary.
    pub(crate) processor: Option<String>,
    /// A shell command that combines every region's result (JSON on stdin).
    pub(crate) aggregate: Option<String>,
    /// Workers run in parallel (default: the number of cores).
    pub(crate) jobs: Option<usize>,
    /// Extra attempts for a failed region, with exponential backoff.
    pub(crate) retries: u32,
    /// Stop with an input error once more records than this are rejected.
    pub(crate) max_rejects: Option<u64>,
    /// Records longer than this many bytes are rejected without being held
    /// in memory (default 16 MiB).
    pub(crate) max_record_size: u64,
    pub(crate) limits: Limits,
    /// Every worker in a bubblewrap container (Linux; see `workers::sandbox`).
    pub(crate) sandbox: bool,
    /// Variables of distex's environment passed to every worker, by name.
    pub(crate) pass_env: Vec<String>,
    /// TCP endpoints (`HOST:PORT`) a sandboxed worker may connect to.
    pub(crate) allow_connect: Vec<String>,
    /// Keep the run directory (spools and work directories) for inspection.
    pub(crate) keep_workdirs: bool,
    /// Cluster nodes to place region workers on as well as this machine.
    pub(crate) nodes: Vec<String>,
    /// How work is split into worker processes.
    pub(crate) split: Split,
    /// Target size of a byte range with `split: bytes` (default: about four
    /// ranges per job, between 8 MiB and 256 MiB).
    pub(crate) part_size: Option<u64>,
}

/// How `distex process` splits the work into isolated workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Split {
    /// `bytes` for the built-in summary of plain CSV/TSV files of 64 MiB or
    /// more, `regions` otherwise.
    #[default]
    Auto,
    /// One worker per region (`process-region-<name>` tasks).
    Regions,
    /// Byte ranges of the input files scanned in parallel (`process-part-<n>`
    /// tasks); built-in summary of plain CSV/TSV files only.
    Bytes,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions {
            inputs: Vec::new(),
            by: None,
            regions: Vec::new(),
            demo: false,
            format: None,
            schema: BTreeMap::new(),
            processor: None,
            aggregate: None,
            jobs: None,
            retries: 0,
            max_rejects: None,
            max_record_size: super::input::DEFAULT_MAX_RECORD,
            limits: Limits::default(),
            sandbox: false,
            pass_env: Vec::new(),
            allow_connect: Vec::new(),
            keep_workdirs: false,
            nodes: Vec::new(),
            split: Split::Auto,
            part_size: None,
        }
    }
}

/// Checks option values that need no I/O.
pub(crate) fn check_options(options: &ProcessOptions) -> std::result::Result<(), String> {
    let l = &options.limits;
    if let Some(t) = l.timeout
        && !(t.is_finite() && t > 0.0)
    {
        return Err(format!("--timeout must be a positive number of seconds, got {t}"));
    }
    if !(l.grace.is_finite() && l.grace >= 0.0) {
        return Err(format!("--grace must be a non-negative number of seconds, got {}", l.grace));
    }
    if options.jobs == Some(0) && options.nodes.is_empty() {
        return Err("--jobs must be at least 1 (0 means \"no local workers\", which needs --nodes)".into());
    }
    if l.max_open_files.is_some_and(|n| n < 16) {
        return Err("--max-open-files must be at least 16".into());
    }
    if options.max_record_size < 1 << 20 {
        return Err("--max-record-size must be at least 1M".into());
    }
    if options.processor.as_deref().is_some_and(|c| c.trim().is_empty()) {
        return Err("--processor is empty".into());
    }
    if options.aggregate.is_some() && options.processor.is_none() {
        return Err("--aggregate needs --processor: the built-in summary aggregates itself".into());
    }
    if !options.allow_connect.is_empty() && !options.sandbox {
        return Err(
            "--allow-connect only means something with --sandbox (without it, workers share this machine's network)"
                .into(),
        );
    }
    for endpoint in &options.allow_connect {
        Endpoint::parse(endpoint)?;
    }
    for name in &options.pass_env {
        check_env_name(name)?;
    }
    Ok(())
}

/// A `--pass-env` name must be a plain variable name.
fn check_env_name(name: &str) -> std::result::Result<(), String> {
    if !crate::config::is_variable_name(name) {
        return Err(format!(
            "--pass-env {name:?} is not a variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    Ok(())
}

/// The `--pass-env` variables with their values in this process's
/// environment; a name that is not set is an error (a processor that
/// needs a key should not start without it).
pub(crate) fn passed_env(options: &ProcessOptions) -> std::result::Result<Vec<(String, String)>, String> {
    let mut passed: Vec<(String, String)> = Vec::new();
    for name in &options.pass_env {
        if passed.iter().any(|(n, _)| n == name) {
            continue;
        }
        match std::env::var(name) {
            Ok(value) => passed.push((name.clone(), value)),
            Err(std::env::VarError::NotPresent) => {
                return Err(format!("--pass-env {name}: {name} is not set in distex's environment"));
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!("--pass-env {name}: the value of {name} is not UTF-8 text"));
            }
        }
    }
    Ok(passed)
}

/// Workers at once on this machine.
pub(crate) fn jobs(options: &ProcessOptions) -> usize {
    options.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1)
}

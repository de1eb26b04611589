//! What `distex process` returns: the report of a run, its per-region
//! entries, the rejected records and the record accounting that always
//! adds up.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::stats::{ColumnMap, ColumnStats};
use crate::tasks::Task;

/// `input_records == processed + rejected + in_failed_regions`, always.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Accounting {
    pub input_records: u64,
    /// Records of regions whose task completed.
    pub processed: u64,
    pub rejected: u64,
    /// Records of regions whose task failed.
    pub in_failed_regions: u64,
}

/// One region in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RegionReport {
    /// The region's task id (absent when byte ranges, not regions, were the tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Records the coordinator sent to the region.
    pub records: u64,
    /// Built-in summary: statistics of every numeric column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<BTreeMap<String, ColumnStats>>")]
    pub stats: Option<ColumnMap>,
    /// `--processor`: the JSON object it printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why the region failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The outcome of `distex process`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProcessReport {
    pub tasks: Vec<Task>,
    pub regions: BTreeMap<String, RegionReport>,
    /// Combined results; null when `aggregate-results` did not complete.
    /// Built-in summary: `{"records", "stats"}`.
    pub totals: Option<Value>,
    pub accounting: Accounting,
    /// The first rejected records (all are counted in `accounting.rejected`).
    pub rejects: Vec<Reject>,
    /// False when any task failed: some records were not processed.
    pub complete: bool,
    pub warnings: Vec<String>,
    /// The run directory, when kept with `keep_workdirs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    pub elapsed_ms: u64,
}

/// A record that was not processed, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reject {
    pub file: String,
    pub line: u64,
    pub reason: String,
}

/// How many rejects are listed (all are counted).
pub const MAX_LISTED_REJECTS: usize = 100;

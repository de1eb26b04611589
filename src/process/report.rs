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
pub(crate) struct Accounting {
    pub(crate) input_records: u64,
    /// Records of regions whose task completed.
    pub(crate) processed: u64,
    pub(crate) rejected: u64,
    /// Records of regions whose task failed.
    pub(crate) in_failed_regions: u64,
}

/// One region in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct RegionReport {
    /// The region's task id (absent when byte ranges, not regions, were the tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) task: Option<String>,
    /// Records the coordinator sent to the region.
    pub(crate) records: u64,
    /// Built-in summary: statistics of every numeric column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<BTreeMap<String, ColumnStats>>")]
    pub(crate) stats: Option<ColumnMap>,
    /// `--processor`: the JSON object it printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<Value>,
    /// Why the region failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// The outcome of `distex process`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct ProcessReport {
    pub(crate) tasks: Vec<Task>,
    pub(crate) regions: BTreeMap<String, RegionReport>,
    /// Combined results; null when `aggregate-results` did not complete.
    /// Built-in summary: `{"records", "stats"}`.
    pub(crate) totals: Option<Value>,
    pub(crate) accounting: Accounting,
    /// The first rejected records (all are counted in `accounting.rejected`).
    pub(crate) rejects: Vec<Reject>,
    /// False when any task failed: some records were not processed.
    pub(crate) complete: bool,
    pub(crate) warnings: Vec<String>,
    /// Processes that left a worker's process group (`setsid`, `setpgrp`)
    /// and were still running when its attempt ended: killed then.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) collected_processes: u64,
    /// The run directory, when kept with `keep_workdirs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) workdir: Option<String>,
    pub(crate) elapsed_ms: u64,
}

/// For serde: leave a count out of the JSON when it is 0.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A record that was not processed, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Reject {
    pub(crate) file: String,
    pub(crate) line: u64,
    pub(crate) reason: String,
}

/// How many rejects are listed (all are counted).
pub(crate) const MAX_LISTED_REJECTS: usize = 100;

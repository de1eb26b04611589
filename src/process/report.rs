//! What `distex process` returns: the report of a run, its per-region
//! entries, the rejected records and the record accounting that always
//! adds up.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
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
    #[schemars(with = "Option<Value>")]
    pub(crate) totals: Option<Totals>,
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

/// What `aggregate-results` combined from every region.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Totals {
    /// The built-in summary: the regions' statistics merged exactly.
    /// JSON: `{"records": .., "regions": .., "stats": {column: {..}}}`.
    Summary {
        /// Records summarised (those of the regions counted).
        records: u64,
        /// Regions counted.
        regions: u64,
        /// Every numeric column's statistics over those regions.
        stats: ColumnMap,
    },
    /// `--processor`: the sum of the regions' results, or the object
    /// `--aggregate` printed; written as it is.
    Result(Value),
}

/// The keys of a summary's JSON, so reading one back knows it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SummaryJson {
    records: u64,
    regions: u64,
    stats: ColumnMap,
}

impl Serialize for Totals {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Totals::Summary { records, regions, stats } => {
                let mut map = serializer.serialize_map(Some(3))?;
                map.serialize_entry("records", records)?;
                map.serialize_entry("regions", regions)?;
                map.serialize_entry("stats", &SortedKeys(stats))?;
                map.end()
            }
            Totals::Result(value) => value.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Totals {
    /// A summary when the object has a summary's keys and types, the
    /// processors' result otherwise.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(match SummaryJson::deserialize(&value) {
            Ok(SummaryJson { records, regions, stats }) => Totals::Summary { records, regions, stats },
            Err(_) => Totals::Result(value),
        })
    }
}

/// The totals' statistics with each column's figures in key order
/// (`count, max, mean, min, stddev, sum`), not in [`ColumnStats`]'s field
/// order as the regions have them: the totals were first written through
/// a `serde_json::Value`, whose objects sort their keys, and the report's
/// bytes stay as they were.
struct SortedKeys<'a>(&'a ColumnMap);

impl Serialize for SortedKeys<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(column, s)| (column, StatsSortedKeys(s))))
    }
}

/// One column's figures in key order (see [`SortedKeys`]).
struct StatsSortedKeys<'a>(&'a ColumnStats);

impl Serialize for StatsSortedKeys<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ColumnStats { count, sum, min, max, mean, stddev } = self.0;
        let mut map = serializer.serialize_map(Some(6))?;
        map.serialize_entry("count", count)?;
        map.serialize_entry("max", max)?;
        map.serialize_entry("mean", mean)?;
        map.serialize_entry("min", min)?;
        map.serialize_entry("stddev", stddev)?;
        map.serialize_entry("sum", sum)?;
        map.end()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary's totals are written as they were when they were built
    /// as a `serde_json::Value`: the same bytes, odd names and figures
    /// included; and they read back as a summary, a processor's totals as
    /// what they are.
    #[test]
    fn totals_write_the_bytes_a_json_value_wrote_and_read_back() {
        let stats = |count: u64, sum: Option<f64>| ColumnStats {
            count,
            sum,
            min: (count > 0).then_some(-1.5e-7),
            max: (count > 0).then_some(1e300),
            mean: (count > 0).then_some(1.0 / 3.0),
            stddev: (count > 1).then_some(f64::MIN_POSITIVE),
        };
        let map = BTreeMap::from([
            ("price".to_string(), stats(7, Some(0.1 + 0.2))),
            ("q\"uote\n\u{1}".into(), stats(1, None)),
            ("ünï".into(), stats(0, Some(0.0))),
        ]);
        let stats = ColumnMap::from(map);
        let totals = Totals::Summary { records: 8, regions: 3, stats: stats.clone() };
        let as_value = serde_json::json!({ "records": 8, "regions": 3, "stats": stats });
        let ours = serde_json::to_string(&totals).unwrap();
        assert_eq!(ours, serde_json::to_string(&as_value).unwrap());
        assert_eq!(serde_json::from_str::<Totals>(&ours).unwrap(), totals);

        let result = serde_json::json!({"stats": {"n": 1}, "records": 2, "regions": ["A"]});
        let totals = Totals::Result(result.clone());
        assert_eq!(serde_json::to_string(&totals).unwrap(), result.to_string());
        let back: Totals = serde_json::from_str(&result.to_string()).unwrap();
        assert_eq!(back, totals, "a processor's totals with a summary's key names stay its own");
    }
}

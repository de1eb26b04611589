//! The facts routing needs, read from this machine and the node cache only
//! (never the network), so that the pure router can take them as data.

use std::collections::BTreeMap;

use super::nodes::{NodeStates, now_secs};

/// Loads and health known at decision time. Plain data: [`LoadFacts::read`]
/// reads the load average and the cache; tests make it up.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadFacts {
    /// This machine's 1-minute load average, if it could be read.
    pub(crate) local_load: Option<f64>,
    /// Cached node health and loads.
    pub(crate) states: NodeStates,
    /// `--assume-load NODE=LOAD` overrides (`local`, or the configured
    /// `[local] name`, for this machine).
    pub(crate) assumed: BTreeMap<String, f64>,
    /// Current Unix time, seconds.
    pub(crate) now: u64,
}

impl LoadFacts {
    /// Reads this machine's load and the node cache, with the `assumed`
    /// overrides on top.
    pub(crate) fn read(assumed: BTreeMap<String, f64>) -> Self {
        LoadFacts { local_load: crate::sys::load_average(), states: NodeStates::load(), assumed, now: now_secs() }
    }
}

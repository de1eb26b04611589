//! The node health and load cache (`nodes.json` in the state directory).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::dirs::{create_file, state_dir};

/// What distex last saw of one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct NodeHealth {
    /// Whether the node answered the last time distex tried it.
    pub(crate) answered: bool,
    /// Unix time (seconds) of that last contact attempt.
    pub(crate) checked_at: u64,
    /// Why it did not answer, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// Set when a command was started there and the connection was lost
    /// before its outcome arrived: the node is avoided like a down one
    /// until it answers again, and the command is not run again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) suspect: bool,
    /// 1-minute load average, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) load1: Option<f64>,
    /// CPU count reported by the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cores: Option<u32>,
    /// Unix time (seconds) the load was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) load_at: Option<u64>,
    /// What `distex nodes --probe` or the last remote run learned of the
    /// node's system and tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) platform: Option<Platform>,
}

/// A node's system and which of the rules' programs its user can run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Platform {
    /// `uname -s`: `Linux`, `Darwin`.
    pub(crate) os: String,
    /// `uname -m`: `x86_64`, `aarch64`, `arm64`. Decides whether files built
    /// there could run here.
    pub(crate) arch: String,
    /// Programs the rules name that are on the node user's PATH.
    #[serde(default)]
    pub(crate) programs: Vec<String>,
    /// Programs the rules name that are not: routing skips the node for them.
    #[serde(default)]
    pub(crate) missing: Vec<String>,
    /// Unix time (seconds) of the probe.
    pub(crate) checked_at: u64,
}

/// All cached node facts, keyed by node name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct NodeStates {
    #[serde(default)]
    pub(crate) nodes: BTreeMap<String, NodeHealth>,
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl NodeStates {
    pub(crate) fn path() -> PathBuf {
        state_dir().join("nodes.json")
    }

    /// Reads the cache; a missing or unreadable cache is an empty one (it is
    /// only a cache: routing must still work without it).
    pub(crate) fn load() -> Self {
        Self::load_from(&Self::path())
    }

    pub(crate) fn load_from(path: &Path) -> Self {
        std::fs::read(path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
    }

    pub(crate) fn get(&self, node: &str) -> Option<&NodeHealth> {
        self.nodes.get(node)
    }

    /// Applies `update` to the cache on disk under an exclusive lock.
    pub(crate) fn update(update: impl FnOnce(&mut NodeStates)) -> std::io::Result<()> {
        let dir = super::dirs::checked_state_dir().map_err(std::io::Error::other)?;
        let path = dir.join("nodes.json");
        let lock = create_file(&dir.join("nodes.lock"))?;
        lock.lock()?;
        let mut states = Self::load_from(&path);
        update(&mut states);
        let tmp = dir.join(format!("nodes.json.{}", std::process::id()));
        let mut file = create_file(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(&states).expect("node states serialize"))?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
        // The lock is released when `lock` is dropped.
    }

    /// Records a successful contact, with the load if it was measured.
    pub(crate) fn record_answer(node: &str, load: Option<(f64, u32)>) -> std::io::Result<()> {
        let now = now_secs();
        Self::update(|s| {
            let entry = s.nodes.entry(node.to_string()).or_default();
            entry.answered = true;
            entry.checked_at = now;
            entry.error = None;
            entry.suspect = false;
            if let Some((load1, cores)) = load {
                entry.load1 = Some(load1);
                entry.cores = Some(cores);
                entry.load_at = Some(now);
            }
        })
    }

    /// Records what a probe learned of a node's system and tools.
    pub(crate) fn record_platform(node: &str, platform: Platform) -> std::io::Result<()> {
        Self::update(|s| s.nodes.entry(node.to_string()).or_default().platform = Some(platform))
    }

    /// Records that a node lost the connection during a command it had
    /// started (outcome unknown).
    pub(crate) fn record_suspect(node: &str, error: &str) -> std::io::Result<()> {
        let now = now_secs();
        Self::update(|s| {
            let entry = s.nodes.entry(node.to_string()).or_default();
            entry.answered = false;
            entry.suspect = true;
            entry.checked_at = now;
            entry.error = Some(error.to_string());
        })
    }

    /// Records that a node could not be reached, and why.
    pub(crate) fn record_failure(node: &str, error: &str) -> std::io::Result<()> {
        let now = now_secs();
        Self::update(|s| {
            let entry = s.nodes.entry(node.to_string()).or_default();
            entry.answered = false;
            entry.checked_at = now;
            entry.error = Some(error.to_string());
        })
    }
}

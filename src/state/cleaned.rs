//! What `distex clean` removed: plain data, built by `commands::clean` and
//! rendered by `report` (so it sits below both, like [`super::NodesReport`]).

use std::path::PathBuf;

use serde::Serialize;

/// What `distex clean` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct CleanReport {
    /// SSH master directories removed (their masters were asked to exit first).
    pub(crate) masters: Vec<PathBuf>,
    /// State files removed.
    pub(crate) state: Vec<PathBuf>,
    /// Per node, with `--remote`.
    pub(crate) nodes: Vec<NodeClean>,
}

/// What was removed on one node.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NodeClean {
    pub(crate) node: String,
    /// Mirror directories removed, as the node names them (home-relative unless absolute).
    pub(crate) removed: Vec<String>,
    /// Why the node could not be cleaned (unreachable, refused workdir...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl CleanReport {
    /// True when every node asked for was cleaned.
    pub(crate) fn complete(&self) -> bool {
        self.nodes.iter().all(|n| n.error.is_none())
    }
}

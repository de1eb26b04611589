//! distex's JSON protocol: the requests `distex json` reads (one object per
//! line), the responses it writes, and their JSON Schemas.
//!
//! Each request names its operation in `op`; an optional `id` (any JSON
//! value) is echoed back so that callers can match answers to questions.
//! A response is the operation's result object with `op` set, or
//! `{"error": {"code", "message"}}` when the line could not be served.
//! New operations are added as variants of [`Request`] and [`Response`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::route::Decision;
use crate::state::NodesReport;

/// `{"op": "route", "command": "cargo build"}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteRequest {
    /// The shell command line to route.
    pub(crate) command: String,
    /// What-if loads: node name (or `local`) to 1-minute load.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) assume_load: BTreeMap<String, f64>,
}

/// `{"op": "nodes"}`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodesRequest {}

/// `{"op": "process", "demo": true}`: the options of `distex process`
/// (see [`crate::process::ProcessOptions`]).
pub(crate) type ProcessRequest = crate::process::ProcessOptions;

/// `{"op": "parallel", "tasks": [{"id": "a", "command": "...", "depends_on": []}]}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ParallelRequest {
    pub(crate) tasks: Vec<crate::tasks::plan::TaskSpec>,
    /// At most this many tasks at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) jobs: Option<usize>,
    /// Run everything that does not depend on a failure.
    #[serde(default)]
    pub(crate) keep_going: bool,
    /// Only these targets (`local` included by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nodes: Option<Vec<String>>,
    /// Sync the project to nodes first (default: each rule's setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sync: Option<bool>,
    /// Per-task timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeout_secs: Option<f64>,
    /// Local directory the commands belong to (default: distex's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cwd: Option<std::path::PathBuf>,
}

/// `{"op": "plan", "tasks": [...]}`: what `parallel` would run together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanRequest {
    pub(crate) tasks: Vec<crate::tasks::plan::TaskSpec>,
}

/// One request line, without its envelope (`id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    Route(RouteRequest),
    Nodes(NodesRequest),
    Parallel(ParallelRequest),
    Plan(PlanRequest),
    // Boxed: the options are much larger than any other request.
    Process(Box<ProcessRequest>),
}

/// The names of every operation, for error messages.
pub(crate) const OPS: &[&str] = &["route", "nodes", "parallel", "plan", "process"];

/// A request line as read: the request plus its optional `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct RequestLine {
    /// Echoed back in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<serde_json::Value>,
    #[serde(flatten)]
    pub(crate) request: Request,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Response {
    Route(Decision),
    Nodes(NodesReport),
    Parallel(crate::tasks::scheduler::ParallelReport),
    Plan(crate::tasks::plan::Plan),
    Process(crate::process::ProcessReport),
}

/// Why a request line was not served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct ErrorBody {
    /// `parse_error` (not JSON), `too_large` (a line over 1 MiB),
    /// `invalid_request` (JSON of the wrong shape), `unknown_op`, `config`,
    /// `usage`, `input`, `io`.
    pub(crate) code: String,
    pub(crate) message: String,
}

/// The body of a response line: a result or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum Outcome {
    Ok(Response),
    Err { error: ErrorBody },
}

/// One response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct ResponseLine {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<serde_json::Value>,
    #[serde(flatten)]
    pub(crate) outcome: Outcome,
}

impl ResponseLine {
    pub(crate) fn error(id: Option<serde_json::Value>, code: &str, message: impl Into<String>) -> Self {
        ResponseLine { id, outcome: Outcome::Err { error: ErrorBody { code: code.into(), message: message.into() } } }
    }

    pub(crate) fn is_error(&self) -> bool {
        matches!(self.outcome, Outcome::Err { .. })
    }
}

/// Which schema `distex schema` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SchemaKind {
    Request,
    Response,
    Config,
}

/// The JSON Schema of a request line, a response line, or `cluster.toml`.
pub(crate) fn schema(kind: SchemaKind) -> serde_json::Value {
    let schema = match kind {
        SchemaKind::Request => schemars::schema_for!(RequestLine),
        SchemaKind::Response => schemars::schema_for!(ResponseLine),
        SchemaKind::Config => schemars::schema_for!(crate::config::ClusterFile),
    };
    serde_json::to_value(schema).expect("schemas serialize")
}

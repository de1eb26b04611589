//! Events emitted by runners, and the [`Reporter`] trait that consumes them.
//!
//! This is the cargo-nextest shape: the code that schedules and runs work
//! never writes to the terminal; it describes what happened, and a reporter
//! (human lines, JSON Lines, a progress bar, nothing at all) renders it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::model::TaskStatus;
use crate::exec::output::Stream;

/// Something that happened during a run. Serialized one per line by `--events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    /// The run began; `tasks` is how many tasks it holds.
    RunStarted { run: String, tasks: usize },
    /// A task changed status (`blocked -> pending`, `pending -> in_progress`, ...).
    TaskStatusChanged {
        id: String,
        subject: String,
        from: TaskStatus,
        to: TaskStatus,
        at_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A line a task printed.
    TaskOutput { id: String, stream: Stream, line: String },
    /// Progress of long work (records read, regions done).
    Progress {
        done: u64,
        total: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        records: Option<u64>,
        elapsed_ms: u64,
    },
    /// A non-fatal problem worth telling the user about.
    Warning { message: String },
    /// The run ended.
    RunFinished { completed: usize, failed: usize, elapsed_ms: u64 },
}

/// Receives events as they happen.
pub(crate) trait Reporter: Send {
    fn report(&mut self, event: &Event);
}

/// A reporter that ignores everything (for `--json` without `--events`).
pub(crate) struct NullReporter;

impl Reporter for NullReporter {
    fn report(&mut self, _event: &Event) {}
}

impl<F: FnMut(&Event) + Send> Reporter for F {
    fn report(&mut self, event: &Event) {
        self(event)
    }
}

//! Tasks and their lifecycle, in the shape of Claude Code's TaskList.
//!
//! A task is `pending` (ready to run), `blocked` (waiting on other tasks),
//! `in_progress`, then `completed` or `failed`. Every change of status is
//! appended to `history` with the time it happened, so a report can show
//! `BLOCKED -> IN_PROGRESS -> COMPLETE` and a test can check that
//! aggregation really started after every region finished.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a task is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TaskStatus {
    Pending,
    Blocked,
    InProgress,
    Completed,
    Failed,
}

impl TaskStatus {
    /// The upper-case label used in human output (`IN_PROGRESS`, `COMPLETE`).
    pub(crate) fn label(self) -> &'static str {
        match self {
            TaskStatus::Pending => "PENDING",
            TaskStatus::Blocked => "BLOCKED",
            TaskStatus::InProgress => "IN_PROGRESS",
            TaskStatus::Completed => "COMPLETE",
            TaskStatus::Failed => "FAILED",
        }
    }

    /// Completed and failed tasks never change again.
    pub(crate) fn is_finished(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Failed)
    }
}

/// One entry of a task's history: the status it entered and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Transition {
    pub(crate) status: TaskStatus,
    /// Milliseconds since the run started.
    pub(crate) at_ms: u64,
}

/// One unit of work: a region to process, a command to run, an aggregation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Task {
    pub(crate) id: String,
    pub(crate) subject: String,
    pub(crate) status: TaskStatus,
    pub(crate) history: Vec<Transition>,
    /// Ids of the tasks that must complete before this one may start.
    pub(crate) blocked_by: Vec<String>,
    /// The node the task ran on (`"local"` for this machine), once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) node: Option<String>,
    /// How many times the task was started (retries and failover included).
    #[serde(default)]
    pub(crate) attempts: u32,
    /// Why the task failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// An ordered collection of tasks with checked status transitions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub(crate) struct TaskList {
    tasks: Vec<Task>,
}

impl TaskList {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a task; it starts `blocked` when it has dependencies, else `pending`.
    pub(crate) fn add(&mut self, id: impl Into<String>, subject: impl Into<String>, blocked_by: Vec<String>) {
        let status = if blocked_by.is_empty() { TaskStatus::Pending } else { TaskStatus::Blocked };
        self.tasks.push(Task {
            id: id.into(),
            subject: subject.into(),
            status,
            history: vec![Transition { status, at_ms: 0 }],
            blocked_by,
            node: None,
            attempts: 0,
            error: None,
        });
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == id)
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut Task> {
        self.tasks.iter_mut().find(|t| t.id == id)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Task> {
        self.tasks.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Moves a task to `status` at `at_ms`, returning the status it left.
    ///
    /// Finished tasks never change: a result that arrives twice (a retried
    /// worker whose first attempt also answered) is ignored, so it is
    /// counted once. Returns `None` when the task is unknown or finished.
    pub(crate) fn transition(&mut self, id: &str, status: TaskStatus, at_ms: u64) -> Option<TaskStatus> {
        let task = self.get_mut(id)?;
        if task.status.is_finished() {
            return None;
        }
        let from = task.status;
        if status == TaskStatus::InProgress {
            task.attempts += 1;
        }
        if from != status {
            task.status = status;
            task.history.push(Transition { status, at_ms });
        }
        Some(from)
    }

    /// Marks a task failed with its reason.
    pub(crate) fn fail(&mut self, id: &str, error: impl Into<String>, at_ms: u64) -> Option<TaskStatus> {
        let from = self.transition(id, TaskStatus::Failed, at_ms)?;
        if let Some(task) = self.get_mut(id) {
            task.error = Some(error.into());
        }
        Some(from)
    }

    /// Ids of blocked tasks whose dependencies have all completed.
    pub(crate) fn unblocked(&self) -> Vec<String> {
        self.tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Blocked)
            .filter(|t| t.blocked_by.iter().all(|dep| self.get(dep).is_some_and(|d| d.status == TaskStatus::Completed)))
            .map(|t| t.id.clone())
            .collect()
    }

    /// Ids of blocked tasks with a dependency that failed: they can never run.
    pub(crate) fn doomed(&self) -> Vec<String> {
        self.tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Blocked)
            .filter(|t| t.blocked_by.iter().any(|dep| self.get(dep).is_none_or(|d| d.status == TaskStatus::Failed)))
            .map(|t| t.id.clone())
            .collect()
    }

    pub(crate) fn count(&self, status: TaskStatus) -> usize {
        self.tasks.iter().filter(|t| t.status == status).count()
    }

    pub(crate) fn into_vec(self) -> Vec<Task> {
        self.tasks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_block_until_complete() {
        let mut list = TaskList::new();
        list.add("1", "process-region-a", vec![]);
        list.add("2", "aggregate-results", vec!["1".into()]);
        assert_eq!(list.get("2").unwrap().status, TaskStatus::Blocked);
        assert!(list.unblocked().is_empty());
        list.transition("1", TaskStatus::InProgress, 1);
        list.transition("1", TaskStatus::Completed, 2);
        assert_eq!(list.unblocked(), vec!["2".to_string()]);
    }

    #[test]
    fn finished_tasks_ignore_late_results() {
        let mut list = TaskList::new();
        list.add("1", "a", vec![]);
        list.transition("1", TaskStatus::InProgress, 1);
        list.transition("1", TaskStatus::Completed, 2);
        assert_eq!(list.transition("1", TaskStatus::Failed, 3), None);
        let task = list.get("1").unwrap();
        assert_eq!(task.status, TaskStatus::Completed);
        assert_eq!(task.history.len(), 3);
        assert_eq!(task.attempts, 1);
    }

    #[test]
    fn failed_dependency_dooms_dependents() {
        let mut list = TaskList::new();
        list.add("a", "a", vec![]);
        list.add("b", "b", vec!["a".into()]);
        list.transition("a", TaskStatus::InProgress, 1);
        list.fail("a", "exit 1", 2);
        assert_eq!(list.doomed(), vec!["b".to_string()]);
        assert_eq!(list.get("a").unwrap().error.as_deref(), Some("exit 1"));
    }
}

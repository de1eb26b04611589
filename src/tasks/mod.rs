//! The TaskList model shared by every runner in distex (`parallel`,
//! `process`), and the events runners emit while they work.
//!
//! Runners never print. They mutate a [`TaskList`] and send [`Event`]s to a
//! [`Reporter`]; reporters (in [`crate::report`]) decide how things look.

mod events;
mod model;
pub(crate) mod plan;
pub(crate) mod scheduler;

pub(crate) use crate::exec::output::Stream;
pub(crate) use events::{Event, NullReporter, Reporter};
pub(crate) use model::{Task, TaskList, TaskStatus};

//! The TaskList model shared by every runner in distex (`parallel`,
//! `process`), and the events runners emit while they work.
//!
//! Runners never print. They mutate a [`TaskList`] and send [`Event`]s to a
//! [`Reporter`]; reporters (in [`crate::report`]) decide how things look.

mod events;
mod model;
pub mod plan;
pub mod scheduler;

pub use crate::exec::output::Stream;
pub use events::{Event, NullReporter, Reporter};
pub use model::{Task, TaskList, TaskStatus, Transition};

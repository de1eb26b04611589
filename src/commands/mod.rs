//! The work behind each subcommand, free of any CLI parsing.
//!
//! The CLI layer builds plain option structs and calls these; the JSON
//! protocol (`distex json`) calls the same functions, so both front ends
//! always agree.

pub(crate) mod json;
pub(crate) mod parallel;
pub(crate) mod route;
pub(crate) mod run;

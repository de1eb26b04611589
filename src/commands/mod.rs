//! The work behind each subcommand, free of any CLI parsing.
//!
//! The CLI layer builds plain option structs and calls these; the JSON
//! protocol (`distex json`) calls the same functions, so both front ends
//! always agree.

pub mod clean;
pub mod json;
pub mod nodes;
pub mod parallel;
pub mod route;
pub mod run;

//! distex: route shell commands across a small cluster, run them there, and
//! process partitioned data in isolated workers.
//!
//! The crate is a binary's library: everything is private to it except
//! [`main`], which `src/main.rs` calls. The modules form a one-way flow,
//! each using only the ones below it (`tests/it/layers.rs` checks this):
//!
//! * `cli` turns command-line flags into plain option structs (the only
//!   module that knows about clap), calls `commands` and picks reporters;
//! * `commands` is the work behind each subcommand, shared by the CLI and
//!   the JSON protocol (`distex json`);
//! * `protocol` holds the JSON request/response types and their schemas, and
//!   `hook` answers Claude Code's PreToolUse hook; both sit at the side;
//! * `report` renders events and results for people and programs;
//! * `process` is `distex process`: one front door (`process::run`) that
//!   chooses between the region path and the byte-range path, over shared
//!   options, input readers, statistics, workers and report types;
//! * `tasks` is the TaskList model, the events runners emit, and the
//!   scheduler of `distex parallel`;
//! * `exec` runs commands locally or over SSH and says where output goes;
//! * `route` is pure: it parses shell commands and decides where they run;
//! * `state` holds what distex remembers between runs (node loads, health)
//!   and reads the facts routing needs; `announce` speaks routing decisions;
//! * `config` loads and validates the cluster description;
//! * `error` (exit codes and the error type) and `sys` (the operating
//!   system's calls that std lacks, behind one `#[cfg]` module) are leaves
//!   every layer may use.

mod announce;
mod cli;
mod commands;
mod config;
mod error;
mod exec;
mod hook;
mod process;
mod protocol;
mod report;
mod route;
mod state;
mod sys;
mod tasks;

pub use cli::main;

//! distex: route shell commands across a small cluster, run them there, and
//! process partitioned data in isolated workers.
//!
//! The crate is layered so that each layer only knows the ones below it:
//!
//! * [`cli`] turns command-line flags into plain option structs (the only
//!   module that knows about clap) and renders results;
//! * [`config`] loads and validates the cluster description;
//! * [`route`] is pure: it parses shell commands and decides where they run;
//! * [`state`] holds what distex remembers between runs (node loads, health);
//! * [`exec`] runs commands locally or over SSH;
//! * [`tasks`] is the TaskList model and the events runners emit;
//! * [`process`] is `distex process`: one front door (`process::run`) that
//!   chooses between the region path and the byte-range path, over shared
//!   options, input readers, statistics, workers and report types;
//! * `sys` holds the operating system's calls that std lacks (libc);
//! * [`hook`] answers Claude Code's PreToolUse hook (routing every Bash call);
//! * [`protocol`] holds the JSON request/response types and their schemas;
//! * [`report`] renders events and results for people and programs.

pub mod announce;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod exec;
pub mod hook;
pub mod process;
pub mod protocol;
pub mod report;
pub mod route;
pub mod state;
mod sys;
pub mod tasks;

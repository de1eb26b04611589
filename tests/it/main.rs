//! distex's integration tests, compiled as one test binary (the shape
//! ripgrep uses): every file next to this one is a module holding the tests
//! of one area, and [`util`] holds what they share (the sandboxed `distex`
//! command, real sshd nodes, the scripted model server, generated data).
//!
//! One binary links once and lets the test harness run every test on the
//! same thread pool. Run a single area or test by its module path:
//!
//! ```text
//! cargo test --test it remote_run::              # every test in remote_run.rs
//! cargo test --test it hook::off_mode -- --exact  # or one test by its full name
//! ```
//!
//! A new test area is a new `<area>.rs` here and a `mod <area>;` line below.

mod util;

mod claude_e2e;
mod clean;
mod cli_basics;
mod hook;
mod layers;
mod node_tools;
mod plan_cli;
mod plugin_launcher;
mod process_faults;
mod process_hostile;
mod process_isolation;
mod process_remote;
mod process_results;
mod process_split;
mod remote_failover;
mod remote_parallel;
mod remote_run;
mod remote_sync;
mod remote_trust;
mod route_table;
mod sandbox;
mod schemas;
mod slurm;
mod sshd_support;

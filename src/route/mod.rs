//! Routing: where should a shell command run?
//!
//! Everything here is pure. `shell` parses the command line with a real
//! shell parser into the simple commands it would execute, `wrappers`
//! looks through `sudo`, `env`, `bash -c` and friends, `rules` matches
//! command words against the configured rules, and [`decide`] applies the
//! decision tree (Linux-only → a Linux node, heavy → a builder, overloaded →
//! the least-loaded node, otherwise local). [`rewrite_plan`] then decides,
//! part by part, which parts of the line run where. `programs` knows how
//! each program reads its own arguments (options with values, aliases,
//! `--version`). Loads and node health come in
//! as plain data ([`LoadFacts`]); nothing here touches the network or disk.

mod decide;
mod programs;
mod rewrite;
mod rules;
mod shell;
mod wrappers;

pub use decide::{Candidate, Decision, LoadFacts, decide, describe};
pub use rewrite::{PartPlace, Placement, Rewrite, distex_run, quote, rewrite_plan};
pub use rules::{RuleMatch, match_rules, rule_programs};
pub use shell::{MAX_NESTING, ParseFailure, nesting_depth, simple_commands};
pub use wrappers::effective_commands;

/// The commands a line would run, after looking through wrappers, or why
/// the line could not be understood.
pub fn analyze(line: &str) -> Result<Vec<Vec<String>>, ParseFailure> {
    Ok(effective_commands(simple_commands(line)?))
}

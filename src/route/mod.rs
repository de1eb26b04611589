//! Routing: where should a shell command run?
//!
//! Everything here is pure. `shell` parses the command line with a real
//! shell parser into the simple commands it would execute, `wrappers`
//! looks through `sudo`, `env`, `bash -c` and friends, `rules` matches
//! command words against the configured rules, and [`decide()`] applies the
//! decision tree (Linux-only → a Linux node, heavy → a builder, overloaded →
//! the least-loaded node, otherwise local). Loads and node health come in
//! as plain data ([`LoadFacts`]); nothing here touches the network or disk.

mod decide;
mod rules;
mod shell;
mod wrappers;

use crate::config::Config;

pub(crate) use crate::state::LoadFacts;
pub(crate) use decide::{Decision, decide, describe};
pub(crate) use shell::{ParseFailure, simple_commands};
pub(crate) use wrappers::effective_commands;

/// Decides where `line` should run: [`analyze`] then [`decide()`]. A line
/// that is not valid shell matches no rule (and says so in a warning).
pub(crate) fn decide_line(config: &Config, line: &str, facts: &LoadFacts) -> Decision {
    match analyze(line) {
        Ok(commands) => decide(config, line, &commands, facts),
        Err(failure) => {
            let mut decision = decide(config, line, &[], facts);
            decision.warnings.insert(0, format!("could not parse the command as shell ({failure}); no rule applied"));
            decision
        }
    }
}

/// The commands a line would run, after looking through wrappers, or why
/// the line could not be understood.
pub(crate) fn analyze(line: &str) -> Result<Vec<Vec<String>>, ParseFailure> {
    Ok(effective_commands(simple_commands(line)?))
}

//! The routing decision tree.
//!
//! 1. A rule matched (the first one in configuration order wins): the
//!    command needs what the rule requires. If this machine has it and is
//!    not overloaded, it stays here; otherwise it goes to the best healthy
//!    node that has it; if none has it, it stays here with a warning.
//! 2. No rule matched, but this machine is overloaded (1-minute load per
//!    core above `routing.overload_threshold`): the least-loaded node.
//! 3. Otherwise: here.
//!
//! "Best" is the lowest `load / slots / speed` (Nix's speed factor), ties
//! broken by configuration order; nodes that also satisfy the other rules
//! the line matched come first.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::rewrite::Rewrite;
use super::rules::{RuleMatch, match_rules};
use super::shell::script;
use super::wrappers::looked_up_program;
use crate::config::{Config, Node, Requirement};
use crate::state::LoadFacts;

/// One node considered for a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Candidate {
    pub(crate) node: String,
    /// Whether the node could take the command.
    pub(crate) eligible: bool,
    /// Load used for ranking (1-minute average), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) load: Option<f64>,
    pub(crate) slots: u32,
    pub(crate) speed: f64,
    /// `load / slots / speed`; lower is better. Unknown load counts as 0.
    pub(crate) score: f64,
    /// Why the node was not eligible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) why_not: Option<String>,
}

/// Where a command should run, and why. The JSON form is distex's contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Decision {
    /// True when the command should run on another node.
    pub(crate) distribute: bool,
    /// The target node when `distribute` is true, else null.
    pub(crate) node: Option<String>,
    /// The rule that decided (`linux_required`, `heavy_computation`, a user
    /// rule), `overloaded`, or `local`.
    pub(crate) reason: String,
    /// The rule that matched, if any (also when the command stays local).
    pub(crate) rule: Option<String>,
    /// The pattern that matched, e.g. `docker` or `cargo build`.
    pub(crate) matched: Option<String>,
    /// The sentence to tell the user, when the command is distributed.
    pub(crate) announcement: Option<String>,
    /// Nodes considered, in configuration order.
    pub(crate) candidates: Vec<Candidate>,
    pub(crate) warnings: Vec<String>,
    /// Whether the project should be synced to the node before running.
    pub(crate) sync: bool,
    /// Paths to bring back after the command (from the rule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) returns: Vec<String>,
    /// Which parts of the line run where, and the line to run instead
    /// (set when a rule sends at least one part away).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rewrite: Option<Box<Rewrite>>,
}

/// Decides where `commands` (the analyzed command line) should run.
pub(crate) fn decide(config: &Config, line: &str, commands: &[Vec<String>], facts: &LoadFacts) -> Decision {
    let matches = match_rules(&config.rules, commands);
    let local_per_core = local_load(config, facts).map(|l| l / f64::from(config.local.slots.max(1)));
    let overloaded = local_per_core.is_some_and(|l| l > config.routing.overload_threshold);
    let mut warnings = Vec::new();
    if overloaded {
        warnings.push(format!(
            "this machine is overloaded: load {:.2} per core > threshold {}",
            local_per_core.unwrap_or_default(),
            config.routing.overload_threshold
        ));
    }
    match matches.first() {
        Some(primary) => by_rule(config, line, primary, &matches[1..], facts, overloaded, warnings),
        None if overloaded => by_load(config, line, facts, local_per_core.unwrap_or_default(), warnings),
        None => Decision { candidates: candidates(config, facts, None, None), ..local("local", warnings) },
    }
}

fn by_rule(
    config: &Config,
    line: &str,
    primary: &RuleMatch,
    others: &[RuleMatch],
    facts: &LoadFacts,
    overloaded: bool,
    mut warnings: Vec<String>,
) -> Decision {
    let rule = primary.rule;
    let local_ok = config.local.caps.satisfies(&rule.requires);
    let program = needed_program(line, primary);
    let candidates = candidates(config, facts, Some(&rule.requires), program.as_deref());
    let also = |node: &Node| others.iter().all(|m| node.caps.satisfies(&m.rule.requires));
    let target = best(config, &candidates, also).filter(|_| !local_ok || overloaded);
    if !local_ok && target.is_none() {
        let lacking = candidates.iter().any(|c| c.why_not.as_deref().is_some_and(|w| w.starts_with("lacks ")));
        warnings.push(match &program {
            Some(program) if lacking => format!(
                "no node that satisfies rule {} ({}) has {program} on its PATH (per `distex nodes --probe`); running on this machine",
                rule.name,
                describe(&rule.requires)
            ),
            _ => format!("no node satisfies rule {} ({}); running on this machine", rule.name, describe(&rule.requires)),
        });
    }
    let mut decision = match target {
        Some(node) => Decision {
            announcement: Some(render(&rule.announce, node, &primary.matched, line)),
            sync: rule.sync,
            returns: rule.returns.clone(),
            ..remote(node, &rule.name, candidates, warnings)
        },
        None => Decision { candidates, ..local(&rule.name, warnings) },
    };
    decision.rule = Some(rule.name.clone());
    decision.matched = Some(primary.matched.clone());
    decision
}

/// The program the matched command needs on the node's PATH: the program
/// the rule matched, when the line looks it up on PATH itself (not through
/// a runner such as `uv run` or `npx`, which finds it elsewhere, and not
/// when it calls a function or alias of that name it defines itself;
/// `command crunch`, `env crunch` or `sudo crunch` still look it up).
fn needed_program(line: &str, matched: &RuleMatch) -> Option<String> {
    let program = matched.command.first()?;
    let script = script(line).ok()?;
    let own = |words: &[String]| words.first().is_some_and(|name| script.defined.contains(name));
    let needs = script.commands.iter().any(|words| !own(words) && looked_up_program(words).as_ref() == Some(program));
    needs.then(|| program.clone())
}

/// The announcement when work moves only because this machine is busy.
const OVERLOADED_ANNOUNCEMENT: &str = "This machine is overloaded; running on {node}.";

fn by_load(config: &Config, line: &str, facts: &LoadFacts, local_per_core: f64, mut warnings: Vec<String>) -> Decision {
    let candidates = candidates(config, facts, None, None);
    let lighter = best(config, &candidates, |_| true)
        .filter(|n| candidates.iter().any(|c| c.node == n.name && c.score < local_per_core));
    match lighter {
        Some(node) => Decision {
            announcement: Some(render(OVERLOADED_ANNOUNCEMENT, node, "", line)),
            sync: true,
            ..remote(node, "overloaded", candidates, warnings)
        },
        None => {
            if !config.nodes.is_empty() {
                warnings.push("no node is less loaded than this machine; running here".to_string());
            }
            Decision { candidates, ..local("local", warnings) }
        }
    }
}

fn remote(node: &Node, reason: &str, candidates: Vec<Candidate>, warnings: Vec<String>) -> Decision {
    Decision {
        distribute: true,
        node: Some(node.name.clone()),
        reason: reason.to_string(),
        candidates,
        ..local(reason, warnings)
    }
}

fn local(reason: &str, warnings: Vec<String>) -> Decision {
    Decision {
        distribute: false,
        node: None,
        reason: reason.to_string(),
        rule: None,
        matched: None,
        announcement: None,
        candidates: vec![],
        warnings,
        sync: false,
        returns: vec![],
        rewrite: None,
    }
}

/// This machine's load: an `--assume-load` for `local` or for its configured name, else the measured one.
fn local_load(config: &Config, facts: &LoadFacts) -> Option<f64> {
    facts.assumed.get("local").or_else(|| facts.assumed.get(&config.local.name)).copied().or(facts.local_load)
}

/// Every configured node with its score and, when it cannot take the
/// command, the reason: it does not meet the rule's requirements, it did
/// not answer lately, or its last probe found no `program` on its PATH.
fn candidates(config: &Config, facts: &LoadFacts, req: Option<&Requirement>, program: Option<&str>) -> Vec<Candidate> {
    config
        .nodes
        .iter()
        .map(|node| {
            let load = node_load(config, facts, node);
            let score = load.unwrap_or(0.0) / f64::from(node.slots) / node.speed;
            let why_not = if req.is_some_and(|r| !node.caps.satisfies(r)) {
                Some(format!("does not satisfy {}", describe(req.unwrap_or(&Requirement::default()))))
            } else {
                unhealthy(config, facts, &node.name).or_else(|| lacks(facts, &node.name, program?))
            };
            Candidate {
                node: node.name.clone(),
                eligible: why_not.is_none(),
                load,
                slots: node.slots,
                speed: node.speed,
                score,
                why_not,
            }
        })
        .collect()
}

fn node_load(config: &Config, facts: &LoadFacts, node: &Node) -> Option<f64> {
    if let Some(&load) = facts.assumed.get(&node.name) {
        return Some(load);
    }
    let health = facts.states.get(&node.name)?;
    let fresh = health.load_at.is_some_and(|at| facts.now.saturating_sub(at) <= config.routing.load_max_age);
    if fresh { health.load1 } else { None }
}

fn unhealthy(config: &Config, facts: &LoadFacts, node: &str) -> Option<String> {
    if facts.assumed.contains_key(node) {
        return None; // an explicit what-if load means "assume it is up"
    }
    let health = facts.states.get(node)?;
    let age = facts.now.saturating_sub(health.checked_at);
    (!health.answered && age < config.routing.unhealthy_for)
        .then(|| format!("did not answer {age}s ago ({})", health.error.as_deref().unwrap_or("unknown error")))
}

/// Why a node cannot run `program`: its last probe did not find it.
fn lacks(facts: &LoadFacts, node: &str, program: &str) -> Option<String> {
    let platform = facts.states.get(node)?.platform.as_ref()?;
    platform.missing.iter().any(|m| m == program).then(|| {
        let age = facts.now.saturating_sub(platform.checked_at);
        format!("lacks {program} on its PATH (probed {age}s ago)")
    })
}

/// The eligible node with the lowest score; nodes for which `prefer` holds
/// come first; ties go to the node listed first in the configuration.
fn best<'c>(config: &'c Config, candidates: &[Candidate], prefer: impl Fn(&Node) -> bool) -> Option<&'c Node> {
    let mut eligible: Vec<(usize, &Candidate)> = candidates.iter().enumerate().filter(|(_, c)| c.eligible).collect();
    eligible.sort_by(|(ia, a), (ib, b)| {
        let pa = !prefer(&config.nodes[*ia]);
        let pb = !prefer(&config.nodes[*ib]);
        pa.cmp(&pb).then(a.score.total_cmp(&b.score)).then(ia.cmp(ib))
    });
    eligible.first().map(|(i, _)| &config.nodes[*i])
}

/// `os=linux, features=[gpu], roles=[builder]`.
pub(crate) fn describe(req: &Requirement) -> String {
    let mut parts = Vec::new();
    if let Some(os) = req.os {
        parts.push(format!("os={}", os.as_str()));
    }
    if !req.features.is_empty() {
        parts.push(format!("features=[{}]", req.features.join(", ")));
    }
    if !req.roles.is_empty() {
        parts.push(format!("roles=[{}]", req.roles.join(", ")));
    }
    if parts.is_empty() { "nothing".to_string() } else { parts.join(", ") }
}

/// Fills an announcement template.
fn render(template: &str, node: &Node, matched: &str, line: &str) -> String {
    let program = matched.split_whitespace().next().unwrap_or("");
    let capitalized: String = {
        let mut chars = program.trim_start_matches("./").chars();
        chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
    };
    let short: String =
        if line.chars().count() > 60 { line.chars().take(57).chain("...".chars()).collect() } else { line.to_string() };
    template
        .replace("{node}", &node.label)
        .replace("{matched}", matched)
        .replace("{Matched}", &capitalized)
        .replace("{command}", &short)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Detected, Os, parse};
    use crate::state::{LoadFacts, NodeStates};

    /// A builder node whose last probe found no `crunch` on its PATH, and a
    /// rule sending `crunch` to builders.
    fn setup() -> (Config, LoadFacts) {
        let detected = Detected { hostname: "here".into(), os: Os::Linux, cores: 2 };
        let text = "[[node]]\nname = \"b1\"\nhost = \"b1.example\"\nos = \"linux\"\nroles = [\"builder\"]\n\n\
                    [[rule]]\nname = \"crunch\"\ncommands = [\"crunch\"]\nrequires = { roles = [\"builder\"] }\n";
        let config = parse(text, None, &detected).expect("valid config");
        // The node cache as a probe leaves it (`nodes.json`).
        let states: NodeStates = serde_json::from_value(serde_json::json!({"nodes": {"b1": {
            "answered": true, "checked_at": 100,
            "platform": {"os": "Linux", "arch": "x86_64", "programs": [], "missing": ["crunch"], "checked_at": 100}
        }}}))
        .expect("a node cache");
        let facts = LoadFacts { local_load: Some(0.0), states, assumed: Default::default(), now: 110 };
        (config, facts)
    }

    #[test]
    fn a_program_the_line_defines_itself_is_not_looked_up_on_path() {
        let (config, facts) = setup();
        let node_of = |line: &str| super::super::decide_line(&config, line, &facts).node;
        // Looked up on PATH: b1 lacks it, so it stays here.
        assert_eq!(node_of("crunch --all"), None);
        // A function or alias of the line itself: nothing to look up.
        assert_eq!(node_of("crunch() { make -j2; }; crunch --all").as_deref(), Some("b1"));
        assert_eq!(node_of("function crunch { make; }\ncrunch").as_deref(), Some("b1"));
        assert_eq!(node_of("alias crunch='make -j2'\ncrunch").as_deref(), Some("b1"));
        // `command` skips functions, and other programs cannot see them: PATH again.
        assert_eq!(node_of("crunch() { :; }; command crunch"), None);
        assert_eq!(node_of("crunch() { :; }; sudo crunch"), None);
        // A function defined in another shell is not this one's.
        assert_eq!(node_of("bash -c 'crunch() { :; }'; crunch"), None);
    }
}

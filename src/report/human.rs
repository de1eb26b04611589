//! Human-readable renderings of routing decisions, node lists and configuration.

use std::fmt::Write;

use crate::config::Config;
use crate::route::Decision;
use crate::state::NodesReport;

/// One line saying where the command goes and why, and, when only some
/// parts of the line move, a second line with what runs instead.
pub(crate) fn decision(d: &Decision, line: &str) -> String {
    let head = super::escape(&decision_head(d, line)).into_owned();
    match d.rewrite.as_deref() {
        Some(plan) if d.distribute && plan.placement == crate::route::Placement::Parts => {
            format!("{head}\n  runs as: {}", super::escape(&plan.command))
        }
        _ => head,
    }
}

/// [`decision`]'s first line, before escaping.
fn decision_head(d: &Decision, line: &str) -> String {
    let why = match (&d.rule, &d.matched) {
        (Some(rule), Some(m)) => format!("rule {rule}, matched {m:?}"),
        _ if d.reason == "overloaded" => "this machine is overloaded".to_string(),
        _ => "no rule matched".to_string(),
    };
    match (&d.node, &d.announcement) {
        (Some(node), Some(text)) if d.distribute => format!("{node} <- {line} ({why}): {text}"),
        (Some(node), None) if d.distribute => format!("{node} <- {line} ({why})"),
        _ if d.rule.is_some() && d.warnings.iter().all(|w| !w.starts_with("no node satisfies")) => {
            format!("local <- {line} ({why}; this machine satisfies it)")
        }
        _ => format!("local <- {line} ({why})"),
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() { "none of the rules' programs".to_string() } else { items.join(", ") }
}

/// A table of nodes.
pub(crate) fn nodes(report: &NodesReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<22} {:<6} {:>5} {:>5} {:>7} {:<10} CAPABILITIES",
        "NODE", "HOST", "OS", "SLOTS", "SPEED", "LOAD", "SEEN"
    );
    for n in &report.nodes {
        let load = n.load.map_or("-".to_string(), |l| format!("{l:.2}"));
        let seen = match (n.answered, n.load_age_secs) {
            (Some(true), Some(age)) => ago(age).to_string(),
            (Some(true), None) => "ok".to_string(),
            (Some(false), _) => "DOWN".to_string(),
            (None, _) => "never".to_string(),
        };
        let caps: Vec<String> = n.roles.iter().map(|r| format!("role:{r}")).chain(n.features.iter().cloned()).collect();
        let _ = writeln!(
            out,
            "{:<16} {:<22} {:<6} {:>5} {:>5} {:>7} {:<10} {}",
            n.name,
            n.host,
            n.os.as_str(),
            n.slots,
            n.speed,
            load,
            seen,
            caps.join(",")
        );
        if let Some(e) = &n.error {
            let _ = writeln!(out, "{:<16} last error: {}", "", super::escape(e));
        }
        if let Some(p) = &n.platform {
            let system = format!("system: {} {}; has: {}", p.os, p.arch, list_or_none(&p.programs));
            let _ = writeln!(out, "{:<16} {}", "", super::escape(&system));
            if !p.missing.is_empty() {
                let lacks = p.missing.join(", ");
                let _ = writeln!(out, "{:<16} lacks: {} (routing skips it for these)", "", super::escape(&lacks));
            }
        }
    }
    out
}

fn ago(secs: u64) -> String {
    match secs {
        0 => "now".to_string(),
        s if s < 120 => format!("{s}s ago"),
        s if s < 7200 => format!("{}m ago", s / 60),
        s => format!("{}h ago", s / 3600),
    }
}

/// The effective configuration, with where each part came from.
pub(crate) fn config(c: &Config) -> String {
    let mut out = String::new();
    let file = c.file.as_ref().map_or("(none: embedded default)".to_string(), |f| f.display().to_string());
    let _ = writeln!(out, "config file: {file}\n");
    let l = &c.local;
    let _ = writeln!(
        out,
        "local {}: os={} slots={} speed={} roles=[{}] features=[{}]",
        l.name,
        l.caps.os.as_str(),
        l.slots,
        l.speed,
        l.caps.roles.join(", "),
        l.caps.features.join(", ")
    );
    for n in &c.nodes {
        let user = n.user.as_ref().map_or(String::new(), |u| format!("{u}@"));
        let port = n.port.map_or(String::new(), |p| format!(":{p}"));
        let _ = writeln!(
            out,
            "node {}: {user}{}{port} os={} slots={} speed={} roles=[{}] features=[{}] host_key_checking={:?}",
            n.name,
            n.host,
            n.caps.os.as_str(),
            n.slots,
            n.speed,
            n.caps.roles.join(", "),
            n.caps.features.join(", "),
            n.host_key_checking
        );
        if let Some(s) = &n.slurm {
            let _ = writeln!(
                out,
                "  slurm: partition={} account={} qos={} time_limit={} sbatch_args=[{}]",
                s.partition,
                s.account.as_deref().unwrap_or("-"),
                s.qos.as_deref().unwrap_or("-"),
                s.time_limit.as_deref().unwrap_or("-"),
                s.sbatch_args.join(" ")
            );
        }
    }
    for r in &c.rules {
        let _ = writeln!(
            out,
            "rule {} [{}]: requires {}; commands: {}",
            r.name,
            r.source,
            crate::route::describe(&r.requires),
            r.commands.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "routing: overload_threshold={} unhealthy_for={}s load_max_age={}s",
        c.routing.overload_threshold, c.routing.unhealthy_for, c.routing.load_max_age
    );
    let _ = writeln!(
        out,
        "announce: speak={}  hook: mode={:?} auto_approve={}",
        c.announce.speak, c.hook.mode, c.hook.auto_approve
    );
    let _ = writeln!(out, "\nsources:");
    for s in &c.sources {
        let _ = writeln!(out, "  {:<28} {}", s.key, s.from);
    }
    out
}

/// `distex clean`: one line per kind of thing removed, one per node.
pub(crate) fn clean(report: &crate::exec::clean::CleanReport) -> String {
    let mut out = String::new();
    let count = |n: usize, what: &str| if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") };
    let _ = writeln!(out, "stopped {}", count(report.masters.len(), "SSH master"));
    let _ = writeln!(out, "removed {}", count(report.state.len(), "state file"));
    for node in &report.nodes {
        match &node.error {
            Some(error) => {
                let _ = writeln!(out, "{}: not cleaned: {error}", node.node);
            }
            None => {
                let _ = writeln!(out, "{}: removed {}", node.node, count(node.removed.len(), "mirror"));
                for dir in &node.removed {
                    let _ = writeln!(out, "  {dir}");
                }
            }
        }
    }
    out
}

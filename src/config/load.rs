//! Finding, reading and validating `cluster.toml`.
//!
//! Lookup order: `--config FILE`, `$DISTEX_CONFIG`,
//! `$XDG_CONFIG_HOME/distex/cluster.toml` (or `~/.config/distex/cluster.toml`),
//! then the embedded default: this machine alone with the built-in rules.
//! [`parse`] is pure (detection results are passed in) so tests can feed it
//! any text; [`load`] does the file system part.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::detect::Detected;
use super::file::{ClusterFile, NodeTable, RuleTable};
use super::model::*;
use crate::error::{Error, Result};

const BUILTIN_RULES: &str = include_str!("builtin_rules.toml");
/// The commented starter file written by `distex config init`.
pub(crate) const STARTER: &str = include_str!("starter.toml");

/// Where the configuration file was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    Flag(PathBuf),
    Env(PathBuf),
    UserDir(PathBuf),
    Embedded,
}

impl Location {
    pub(crate) fn path(&self) -> Option<&Path> {
        match self {
            Location::Flag(p) | Location::Env(p) | Location::UserDir(p) => Some(p),
            Location::Embedded => None,
        }
    }
}

/// The per-user config path: `$XDG_CONFIG_HOME/distex/cluster.toml` or `~/.config/...`.
pub(crate) fn user_config_path() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
    };
    Some(base.join("distex").join("cluster.toml"))
}

/// Decides which file to read, following the documented lookup order.
pub(crate) fn locate(flag: Option<&Path>) -> Location {
    if let Some(path) = flag {
        return Location::Flag(path.to_path_buf());
    }
    if let Some(env) = std::env::var_os("DISTEX_CONFIG").filter(|v| !v.is_empty()) {
        return Location::Env(PathBuf::from(env));
    }
    match user_config_path() {
        Some(path) if path.exists() => Location::UserDir(path),
        _ => Location::Embedded,
    }
}

/// Loads the effective configuration.
pub(crate) fn load(flag: Option<&Path>) -> Result<Config> {
    let location = locate(flag);
    let detected = Detected::probe();
    let Some(path) = location.path() else {
        return parse("", None, &detected);
    };
    let text =
        std::fs::read_to_string(path).map_err(|source| Error::ConfigRead { path: path.to_path_buf(), source })?;
    parse(&text, Some(path), &detected)
}

/// Parses and validates configuration text. `file` names it in errors.
pub(crate) fn parse(text: &str, file: Option<&Path>, detected: &Detected) -> Result<Config> {
    let label = file.map_or_else(|| "<embedded default>".to_string(), |p| p.display().to_string());
    let raw: ClusterFile = deserialize(text, &label)?;
    let builtin: ClusterFile = deserialize(BUILTIN_RULES, "<built-in rules>")?;
    let ctx = Ctx { text, label: &label };
    let mut sources = Vec::new();

    let local = build_local(&raw, detected, &ctx, &mut sources);
    check_local(&local, &raw, &ctx)?;
    let nodes = raw.node.iter().map(|n| build_node(n, &ctx, &mut sources)).collect::<Result<Vec<_>>>()?;
    check_unique_nodes(&raw, &ctx)?;
    let rules = merge_rules(&builtin, &raw, &ctx, &mut sources)?;
    let routing = build_routing(&raw, &ctx)?;
    let announce = raw
        .announce
        .as_ref()
        .map_or_else(AnnounceSettings::default, |a| AnnounceSettings { speak: a.speak, command: a.command.clone() });
    let hook = raw
        .hook
        .as_ref()
        .map_or_else(HookSettings::default, |h| HookSettings { mode: h.mode, auto_approve: h.auto_approve });
    let sync = SyncSettings { include: raw.sync.as_ref().map(|s| s.include.clone()).unwrap_or_default() };
    let process = build_process(&raw, &ctx)?;
    Ok(Config {
        local,
        nodes,
        rules,
        routing,
        announce,
        hook,
        sync,
        process,
        sources,
        file: file.map(Path::to_path_buf),
    })
}

/// Text being parsed plus its name, for turning byte offsets into `file:line:col`.
struct Ctx<'a> {
    text: &'a str,
    label: &'a str,
}

impl Ctx<'_> {
    fn error(&self, offset: usize, key: impl Into<String>, message: impl Into<String>) -> Error {
        let (line, column) = line_col(self.text, offset);
        Error::ConfigInvalid { file: self.label.to_string(), line, column, key: key.into(), message: message.into() }
    }

    fn at(&self, offset: usize) -> String {
        format!("{}:{}", self.label, line_col(self.text, offset).0)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| before[nl + 1..].chars().count()) + 1;
    (line, column)
}

fn deserialize<'de, T: Deserialize<'de>>(text: &'de str, label: &str) -> Result<T> {
    let ctx = Ctx { text, label };
    let de = toml::de::Deserializer::parse(text).map_err(|e| toml_error(&ctx, &e, "(syntax)".into()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        // toml's span-tracking wrapper shows up in paths as a private field name.
        let key = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "")
            .replace("$__serde_spanned_private_value.", "");
        toml_error(&ctx, e.inner(), key)
    })
}

fn toml_error(ctx: &Ctx, err: &toml::de::Error, key: String) -> Error {
    let offset = err.span().map_or(0, |s| s.start);
    let key = if key == "." || key.is_empty() { "(top level)".to_string() } else { key };
    ctx.error(offset, key, err.message().trim().to_string())
}

fn build_local(raw: &ClusterFile, d: &Detected, ctx: &Ctx, sources: &mut Vec<Source>) -> LocalNode {
    let table = raw.local.as_ref().map(|s| s.get_ref());
    let from = |given: bool| {
        if given {
            raw.local.as_ref().map_or_else(String::new, |s| ctx.at(s.span().start))
        } else {
            "detected".to_string()
        }
    };
    let mut note = |key: &str, given: bool| sources.push(Source { key: format!("local.{key}"), from: from(given) });
    let name = table.and_then(|t| t.name.clone());
    note("name", name.is_some());
    let os = table.and_then(|t| t.os);
    note("os", os.is_some());
    let slots = table.and_then(|t| t.slots);
    note("slots", slots.is_some());
    LocalNode {
        name: name.unwrap_or_else(|| d.hostname.clone()),
        caps: Capabilities {
            os: os.unwrap_or(d.os),
            features: table.and_then(|t| t.features.clone()).unwrap_or_default(),
            roles: table.and_then(|t| t.roles.clone()).unwrap_or_default(),
        },
        slots: slots.unwrap_or(d.cores),
        speed: table.and_then(|t| t.speed).unwrap_or(1.0),
    }
}

fn check_local(local: &LocalNode, raw: &ClusterFile, ctx: &Ctx) -> Result<()> {
    let offset = raw.local.as_ref().map_or(0, |s| s.span().start);
    check_slots_speed(local.slots, local.speed, "local", offset, ctx)
}

fn check_slots_speed(slots: u32, speed: f64, key: &str, offset: usize, ctx: &Ctx) -> Result<()> {
    if slots == 0 {
        return Err(ctx.error(offset, format!("{key}.slots"), "must be at least 1"));
    }
    if !(speed.is_finite() && speed > 0.0) {
        return Err(ctx.error(offset, format!("{key}.speed"), "must be a positive number (1.0 is average)"));
    }
    Ok(())
}

/// Node names end up in file names (cache, control sockets) and in the hook's
/// rewritten command, so they are kept to a safe alphabet.
pub(crate) fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "local"
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with(['.', '-'])
}

fn build_node(spanned: &toml::Spanned<NodeTable>, ctx: &Ctx, sources: &mut Vec<Source>) -> Result<Node> {
    let n = spanned.get_ref();
    let offset = spanned.span().start;
    let key = format!("node.{}", n.name);
    if !valid_node_name(&n.name) {
        return Err(ctx.error(
            offset,
            "node.name",
            format!("{:?} is not a usable node name: use letters, digits, '-', '_' or '.', not \"local\"", n.name),
        ));
    }
    let slurm = build_slurm(spanned, &key, ctx)?;
    let host = n.host.clone().unwrap_or_default();
    if slurm.is_none() && n.host.is_none() {
        return Err(ctx.error(
            spanned.span().start,
            format!("{key}.host"),
            "is required for an SSH node: an ssh destination such as \"builder.local\" \
             (or kind = \"slurm\" for a Slurm partition)",
        ));
    }
    if n.host.is_some() && (host.trim().is_empty() || host.starts_with('-')) {
        let what = if slurm.is_some() { "the Slurm login node" } else { "an ssh destination" };
        return Err(ctx.error(
            key_offset(ctx, spanned, "host"),
            format!("{key}.host"),
            format!("must be {what} such as \"builder.local\""),
        ));
    }
    if let Some(d) = &n.distex
        && (d.trim().is_empty() || d.starts_with('-') || d.contains(['\n', '\0']))
    {
        return Err(ctx.error(
            offset,
            format!("{key}.distex"),
            "must be the distex binary on the node: a path such as \"/usr/local/bin/distex\", or \"distex\" to use its PATH",
        ));
    }
    if let Some(w) = &n.workdir
        && let Some(why) = unusable_workdir(w)
    {
        return Err(ctx.error(offset, format!("{key}.workdir"), why));
    }
    let node = Node {
        name: n.name.clone(),
        host,
        slurm,
        user: n.user.clone(),
        port: n.port,
        identity_file: n.identity_file.clone(),
        ssh_config: n.ssh_config.clone(),
        known_hosts: n.known_hosts.clone(),
        caps: Capabilities { os: n.os, features: n.features.clone(), roles: n.roles.clone() },
        slots: n.slots.unwrap_or(1),
        speed: n.speed.unwrap_or(1.0),
        label: n.label.clone().unwrap_or_else(|| n.name.clone()),
        workdir: n.workdir.clone().unwrap_or_else(|| ".cache/distex/work".to_string()),
        host_key_checking: n.host_key_checking,
        connect_timeout: n.connect_timeout.unwrap_or(5).max(1),
        distex: n.distex.clone().unwrap_or_else(|| "distex".to_string()),
    };
    check_slots_speed(node.slots, node.speed, &key, offset, ctx)?;
    sources.push(Source { key, from: ctx.at(offset) });
    Ok(node)
}

/// The offset of `key = ...` inside a table (for errors on its own
/// line), or the table's start when the key is not written there.
fn key_offset<T>(ctx: &Ctx, table: &toml::Spanned<T>, key: &str) -> usize {
    let start = table.span().start.min(ctx.text.len());
    let mut at = start;
    for (i, line) in ctx.text[start..].split_inclusive('\n').enumerate() {
        let trimmed = line.trim_start();
        if i > 0 && trimmed.starts_with('[') {
            break; // the next table
        }
        if trimmed.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')) {
            return at + (line.len() - trimmed.len());
        }
        at += line.len();
    }
    start
}

/// The Slurm part of a node: required and checked for `kind = "slurm"`,
/// refused for an SSH node (a `partition` there is a forgotten `kind`).
fn build_slurm(spanned: &toml::Spanned<NodeTable>, key: &str, ctx: &Ctx) -> Result<Option<SlurmSettings>> {
    let n = spanned.get_ref();
    let slurm_only = [
        ("partition", n.partition.is_some()),
        ("account", n.account.is_some()),
        ("qos", n.qos.is_some()),
        ("time_limit", n.time_limit.is_some()),
        ("sbatch_args", n.sbatch_args.is_some()),
        ("shared", n.shared.is_some()),
    ];
    if n.kind == NodeKind::Ssh {
        if let Some((name, _)) = slurm_only.iter().find(|(_, given)| *given) {
            return Err(ctx.error(
                key_offset(ctx, spanned, name),
                format!("{key}.{name}"),
                "is a Slurm setting: add kind = \"slurm\" to this node, or remove it",
            ));
        }
        return Ok(None);
    }
    let Some(partition) = n.partition.clone() else {
        return Err(ctx.error(
            spanned.span().start,
            format!("{key}.partition"),
            "is required for kind = \"slurm\": the partition to submit to, e.g. partition = \"debug\" (see `sinfo`)",
        ));
    };
    // Names Slurm takes as one word: never empty, never an option.
    let words = [("partition", Some(&partition)), ("account", n.account.as_ref()), ("qos", n.qos.as_ref())];
    for (name, value) in words {
        if let Some(v) = value.filter(|v| v.is_empty() || v.starts_with('-') || v.contains(char::is_whitespace)) {
            return Err(ctx.error(
                key_offset(ctx, spanned, name),
                format!("{key}.{name}"),
                format!("{v:?} is not a Slurm {name} name (one word, not starting with '-')"),
            ));
        }
    }
    if let Some(t) = n.time_limit.as_ref().filter(|t| !valid_time_limit(t)) {
        return Err(ctx.error(
            key_offset(ctx, spanned, "time_limit"),
            format!("{key}.time_limit"),
            format!("{t:?} is not a Slurm time: use MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"),
        ));
    }
    let args = n.sbatch_args.clone().unwrap_or_default();
    if let Some(a) = args.iter().find(|a| !a.starts_with('-') || a.contains('\n')) {
        return Err(ctx.error(
            key_offset(ctx, spanned, "sbatch_args"),
            format!("{key}.sbatch_args"),
            format!("{a:?} is not an option: write each as one string such as \"--mem=4G\""),
        ));
    }
    let shared = n.shared.clone().unwrap_or_default();
    if let Some(d) = shared.iter().find(|d| !d.starts_with('/') || d.contains(['\n', '\0'])) {
        return Err(ctx.error(
            key_offset(ctx, spanned, "shared"),
            format!("{key}.shared"),
            format!(
                "{d:?} is not an absolute directory: list the directories this machine and the compute nodes \
                 mount at the same path, such as \"/scratch\""
            ),
        ));
    }
    Ok(Some(SlurmSettings {
        partition,
        account: n.account.clone(),
        qos: n.qos.clone(),
        time_limit: n.time_limit.clone(),
        sbatch_args: args,
        shared,
    }))
}

/// Slurm's time formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`
/// (digits only), or `UNLIMITED`/`INFINITE`.
fn valid_time_limit(text: &str) -> bool {
    if matches!(text, "UNLIMITED" | "INFINITE") {
        return true;
    }
    let numbers = |part: &str, max: usize| {
        let fields: Vec<&str> = part.split(':').collect();
        fields.len() <= max && fields.iter().all(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
    };
    match text.split_once('-') {
        Some((days, rest)) => numbers(days, 1) && numbers(rest, 3),
        None => numbers(text, 3),
    }
}

/// Why a `workdir` cannot hold project mirrors, if it cannot: distex
/// creates and deletes files below it, so it must name a directory of its
/// own, never the home directory or `/` themselves, nor look like an option.
fn unusable_workdir(workdir: &str) -> Option<String> {
    let trimmed = workdir.trim().trim_end_matches('/');
    let why = if workdir.trim().is_empty() {
        "is empty"
    } else if workdir.starts_with('-') {
        "starts with '-' (it would be read as an option)"
    } else if matches!(trimmed, "" | "~" | "." | "$HOME") {
        "names the home directory or / itself"
    } else if workdir.contains(['\n', '\0']) || workdir.split('/').any(|c| c == "..") {
        "contains a newline, NUL or '..'"
    } else {
        return None;
    };
    Some(format!(
        "{workdir:?} {why}; it must be a directory of distex's own, such as \".cache/distex/work\" (relative to the home directory) or an absolute path"
    ))
}

fn check_unique_nodes(raw: &ClusterFile, ctx: &Ctx) -> Result<()> {
    for (i, node) in raw.node.iter().enumerate() {
        let name = &node.get_ref().name;
        if raw.node[..i].iter().any(|n| &n.get_ref().name == name) {
            return Err(ctx.error(
                node.span().start,
                "node.name",
                format!("node {name:?} is defined twice; node names must be unique"),
            ));
        }
    }
    Ok(())
}

/// Built-in rules, replaced in place by user rules of the same name; new
/// user rules come first, in file order, so they are checked before the
/// built-ins.
fn merge_rules(builtin: &ClusterFile, raw: &ClusterFile, ctx: &Ctx, sources: &mut Vec<Source>) -> Result<Vec<Rule>> {
    let builtin_ctx = Ctx { text: BUILTIN_RULES, label: "<built-in rules>" };
    let mut builtins: Vec<Option<Rule>> = builtin
        .rule
        .iter()
        .map(|r| rule_from(r.get_ref(), None, "built-in".into(), &builtin_ctx, r.span().start).map(Some))
        .collect::<Result<_>>()?;
    let mut added = Vec::new();
    for (i, spanned) in raw.rule.iter().enumerate() {
        let table = spanned.get_ref();
        let offset = spanned.span().start;
        if raw.rule[..i].iter().any(|r| r.get_ref().name == table.name) {
            return Err(ctx.error(offset, "rule.name", format!("rule {:?} is defined twice", table.name)));
        }
        let slot = builtins.iter_mut().find(|b| b.as_ref().is_some_and(|b| b.name == table.name));
        sources.push(Source { key: format!("rule.{}", table.name), from: ctx.at(offset) });
        match slot {
            Some(slot) => {
                let base = slot.take();
                *slot = if table.enabled {
                    Some(rule_from(table, base.as_ref(), ctx.at(offset), ctx, offset)?)
                } else {
                    None
                };
            }
            None if table.enabled => added.push(rule_from(table, None, ctx.at(offset), ctx, offset)?),
            None => {}
        }
    }
    for rule in builtins.iter().flatten() {
        if !sources.iter().any(|s| s.key == format!("rule.{}", rule.name)) {
            sources.push(Source { key: format!("rule.{}", rule.name), from: "built-in".into() });
        }
    }
    added.extend(builtins.into_iter().flatten());
    Ok(added)
}

const PLACEHOLDERS: [&str; 4] = ["node", "matched", "Matched", "command"];

fn rule_from(t: &RuleTable, base: Option<&Rule>, source: String, ctx: &Ctx, offset: usize) -> Result<Rule> {
    let key = format!("rule.{}", t.name);
    if t.name.trim().is_empty() {
        return Err(ctx.error(offset, "rule.name", "a rule needs a non-empty name"));
    }
    let commands = t.commands.clone().or_else(|| base.map(|b| b.commands.clone())).unwrap_or_default();
    let pattern = match &t.pattern {
        Some(text) => {
            // Point at the `pattern` line of this rule, not at its `[[rule]]` header.
            let at = ctx.text.get(offset..).and_then(|t| t.find("pattern")).map_or(offset, |i| offset + i);
            Some(compile_pattern(text).map_err(|e| ctx.error(at, format!("{key}.pattern"), e))?)
        }
        None => base.and_then(|b| b.pattern.clone()),
    };
    if commands.iter().any(|c| c.split_whitespace().next().is_none()) || (commands.is_empty() && pattern.is_none()) {
        return Err(ctx.error(
            offset,
            format!("{key}.commands"),
            "list at least one command pattern, e.g. commands = [\"torchrun\"], or give a pattern = '^terraform (plan|apply)\\b'",
        ));
    }
    let announce = t
        .announce
        .clone()
        .or_else(|| base.map(|b| b.announce.clone()))
        .unwrap_or_else(|| format!("Routing {{matched}} to {{node}} ({}).", t.name));
    check_placeholders(&announce).map_err(|bad| {
        ctx.error(
            offset,
            format!("{key}.announce"),
            format!("unknown placeholder {{{bad}}}; use one of {{node}}, {{matched}}, {{Matched}}, {{command}}"),
        )
    })?;
    Ok(Rule {
        name: t.name.clone(),
        commands,
        pattern,
        requires: t.requires.clone().or_else(|| base.map(|b| b.requires.clone())).unwrap_or_default(),
        announce,
        sync: t.sync.or(base.map(|b| b.sync)).unwrap_or(true),
        returns: t.returns.clone().or_else(|| base.map(|b| b.returns.clone())).unwrap_or_default(),
        source,
    })
}

/// Compiles a rule's `pattern`, explaining what is wrong in words a user can act on.
fn compile_pattern(text: &str) -> std::result::Result<RulePattern, String> {
    if text.trim().is_empty() {
        return Err("is empty; write a regular expression such as '^terraform (plan|apply)\\b'".into());
    }
    regex::RegexBuilder::new(text).size_limit(1 << 20).build().map(RulePattern).map_err(|e| {
        // The crate's message draws a caret under the pattern over several
        // lines; its last line says what is wrong.
        let message = e.to_string();
        let what = message.lines().rev().find_map(|l| l.trim().strip_prefix("error: ")).unwrap_or(message.trim());
        format!("is not a valid regular expression ({what}): {text:?}")
    })
}

fn check_placeholders(template: &str) -> std::result::Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Ok(());
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(name.to_string());
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

fn build_routing(raw: &ClusterFile, ctx: &Ctx) -> Result<RoutingSettings> {
    let t = raw.routing.as_ref();
    let settings = RoutingSettings {
        overload_threshold: t.and_then(|t| t.overload_threshold).unwrap_or(1.0),
        unhealthy_for: t.and_then(|t| t.unhealthy_for).unwrap_or(300),
        load_max_age: t.and_then(|t| t.load_max_age).unwrap_or(600),
    };
    if !(settings.overload_threshold.is_finite() && settings.overload_threshold > 0.0) {
        let offset = ctx.text.find("overload_threshold").unwrap_or(0);
        return Err(ctx.error(
            offset,
            "routing.overload_threshold",
            "must be a positive number of load per core, e.g. 1.0",
        ));
    }
    Ok(settings)
}

/// Whether `name` can name an environment variable passed to a worker:
/// letters, digits and `_`, not starting with a digit.
pub(crate) fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The `[process]` table: every `pass_env` entry must be a variable name.
fn build_process(raw: &ClusterFile, ctx: &Ctx) -> Result<ProcessSettings> {
    let pass_env = raw.process.as_ref().map(|p| p.pass_env.clone()).unwrap_or_default();
    for name in &pass_env {
        if !is_variable_name(name) {
            let offset = ctx.text.find("pass_env").unwrap_or(0);
            return Err(ctx.error(
                offset,
                "process.pass_env",
                format!("{name:?} is not a variable name (letters, digits and _, not starting with a digit)"),
            ));
        }
    }
    Ok(ProcessSettings { pass_env })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detected() -> Detected {
        Detected { hostname: "testhost".into(), os: Os::Macos, cores: 8 }
    }

    fn parse_ok(text: &str) -> Config {
        parse(text, Some(Path::new("cluster.toml")), &detected()).unwrap()
    }

    fn parse_err(text: &str) -> String {
        parse(text, Some(Path::new("cluster.toml")), &detected()).unwrap_err().to_string()
    }

    #[test]
    fn embedded_default_is_local_alone_with_builtin_rules() {
        let c = parse("", None, &detected()).unwrap();
        assert_eq!(c.local.name, "testhost");
        assert_eq!(c.local.slots, 8);
        assert!(c.nodes.is_empty());
        let names: Vec<_> = c.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["linux_required", "macos_required", "heavy_computation"]);
    }

    #[test]
    fn user_rule_overrides_builtin_by_name_and_new_rules_come_first() {
        let c = parse_ok(
            "[[rule]]\nname = \"heavy_computation\"\ncommands = [\"bazel build\"]\n\n[[rule]]\nname = \"gpu\"\ncommands = [\"torchrun\"]\nrequires = { features = [\"gpu\"] }\n",
        );
        let names: Vec<_> = c.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["gpu", "linux_required", "macos_required", "heavy_computation"]);
        let heavy = c.rule("heavy_computation").unwrap();
        assert_eq!(heavy.commands, ["bazel build"]);
        assert_eq!(heavy.requires.roles, ["builder"], "unset keys inherit the built-in's");
        assert_eq!(heavy.source, "cluster.toml:1");
    }

    #[test]
    fn node_distex_defaults_to_the_path_and_is_checked() {
        let node = "[[node]]\nname = \"a\"\nhost = \"h\"\nos = \"linux\"\n";
        assert_eq!(parse_ok(node).node("a").unwrap().distex, "distex");
        let c = parse_ok(&format!("{node}distex = \"/opt/distex/bin/distex\"\n"));
        assert_eq!(c.node("a").unwrap().distex, "/opt/distex/bin/distex");
        let msg = parse_err(&format!("{node}distex = \"-x\"\n"));
        assert!(msg.starts_with("cluster.toml:1:") && msg.contains("node.a.distex"), "{msg}");
    }

    #[test]
    fn slurm_nodes_need_a_partition_and_keep_their_settings() {
        let head = "[[node]]\nname = \"hpc\"\nkind = \"slurm\"\nos = \"linux\"\n";
        let c = parse_ok(&format!(
            "{head}partition = \"debug\"\nqos = \"short\"\ntime_limit = \"1-02:00\"\nsbatch_args = [\"--mem=4G\"]\n"
        ));
        let node = c.node("hpc").unwrap();
        assert_eq!(node.kind(), NodeKind::Slurm);
        assert_eq!(node.ssh_host(), None, "no host: Slurm runs on this machine");
        let slurm = node.slurm.as_ref().unwrap();
        assert_eq!((slurm.partition.as_str(), slurm.qos.as_deref()), ("debug", Some("short")));
        assert_eq!(slurm.sbatch_args, ["--mem=4G"]);
        let msg = parse_err(head);
        assert!(
            msg.starts_with("cluster.toml:1:") && msg.contains("node.hpc.partition") && msg.contains("required"),
            "{msg}"
        );
        let msg = parse_err(&format!("{head}partition = \"debug\"\ntime_limit = \"soon\"\n"));
        assert!(msg.starts_with("cluster.toml:6:") && msg.contains("node.hpc.time_limit"), "{msg}");
        let msg = parse_err(&format!("{head}partition = \"debug\"\nsbatch_args = [\"mem=4G\"]\n"));
        assert!(msg.starts_with("cluster.toml:6:") && msg.contains("--mem=4G"), "{msg}");
        let msg = parse_err(&format!("{head}partition = \"-p x\"\n"));
        assert!(msg.starts_with("cluster.toml:5:") && msg.contains("node.hpc.partition"), "{msg}");
    }

    #[test]
    fn slurm_shared_directories_are_absolute_and_slurm_only() {
        let head = "[[node]]\nname = \"hpc\"\nkind = \"slurm\"\nos = \"linux\"\npartition = \"debug\"\n";
        let c = parse_ok(&format!("{head}shared = [\"/scratch\", \"/home/lab\"]\n"));
        assert_eq!(c.node("hpc").unwrap().slurm.as_ref().unwrap().shared, ["/scratch", "/home/lab"]);
        assert!(parse_ok(head).node("hpc").unwrap().slurm.as_ref().unwrap().shared.is_empty());
        let msg = parse_err(&format!("{head}shared = [\"/scratch\", \"data\"]\n"));
        assert!(
            msg.starts_with("cluster.toml:6:") && msg.contains("node.hpc.shared") && msg.contains("\"data\""),
            "{msg}"
        );
        let msg = parse_err("[[node]]\nname = \"a\"\nhost = \"h\"\nos = \"linux\"\nshared = [\"/scratch\"]\n");
        assert!(msg.starts_with("cluster.toml:5:") && msg.contains("node.a.shared") && msg.contains("kind"), "{msg}");
    }

    #[test]
    fn slurm_settings_on_an_ssh_node_ask_for_kind() {
        let msg = parse_err("[[node]]\nname = \"a\"\nhost = \"h\"\nos = \"linux\"\npartition = \"debug\"\n");
        assert!(msg.starts_with("cluster.toml:5:") && msg.contains("kind = \"slurm\""), "{msg}");
        let msg = parse_err("[[node]]\nname = \"a\"\nos = \"linux\"\n");
        assert!(msg.contains("node.a.host: is required") && msg.contains("kind = \"slurm\""), "{msg}");
        assert!(valid_time_limit("30") && valid_time_limit("2-00:00:00") && valid_time_limit("UNLIMITED"));
        assert!(!valid_time_limit("1:2:3:4") && !valid_time_limit("-1") && !valid_time_limit(""));
    }

    #[test]
    fn disabled_builtin_disappears() {
        let c = parse_ok("[[rule]]\nname = \"linux_required\"\nenabled = false\n");
        assert!(c.rule("linux_required").is_none());
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let msg = parse_err("[[node]]\nname = \"a\"\nhost = \"h\"\nos = \"linux\"\nslot = 4\n");
        assert!(msg.starts_with("cluster.toml:5:"), "{msg}");
        assert!(msg.contains("node[0]"), "{msg}");
        assert!(msg.contains("slot"), "{msg}");
    }

    #[test]
    fn bad_os_value_is_explained() {
        let msg = parse_err("[local]\nos = \"windows\"\n");
        assert!(msg.starts_with("cluster.toml:2:"), "{msg}");
        assert!(msg.contains("local.os"), "{msg}");
        assert!(msg.contains("linux") && msg.contains("macos"), "{msg}");
    }

    #[test]
    fn syntax_error_has_line() {
        let msg = parse_err("[local]\nname = \"x\nos = \"linux\"\n");
        assert!(msg.starts_with("cluster.toml:2:"), "{msg}");
    }

    #[test]
    fn semantic_errors() {
        assert!(
            parse_err("[[node]]\nname=\"a\"\nhost=\"h\"\nos=\"linux\"\nslots=0\n")
                .contains("node.a.slots: must be at least 1")
        );
        assert!(
            parse_err(
                "[[node]]\nname=\"a\"\nhost=\"h\"\nos=\"linux\"\n[[node]]\nname=\"a\"\nhost=\"i\"\nos=\"linux\"\n"
            )
            .contains("cluster.toml:5:")
        );
        assert!(parse_err("[[node]]\nname=\"../x\"\nhost=\"h\"\nos=\"linux\"\n").contains("not a usable node name"));
        assert!(
            parse_err("[[rule]]\nname=\"r\"\ncommands=[\"x\"]\nannounce=\"to {nod}\"\n")
                .contains("unknown placeholder {nod}")
        );
        assert!(parse_err("[[rule]]\nname=\"r\"\n").contains("rule.r.commands"));
        assert!(parse_err("[routing]\noverload_threshold = -1.0\n").contains("cluster.toml:2:"));
    }

    #[test]
    fn rule_patterns_compile_at_load_and_errors_name_the_line() {
        let c = parse_ok("[[rule]]\nname = \"tf\"\npattern = '^terraform (plan|apply)\\b'\n");
        assert_eq!(c.rule("tf").unwrap().pattern.as_ref().unwrap().as_str(), "^terraform (plan|apply)\\b");
        assert!(c.rule("tf").unwrap().commands.is_empty());
        let msg = parse_err("[[rule]]\nname = \"tf\"\ncommands = [\"x\"]\npattern = '^terraform (plan'\n");
        assert!(msg.starts_with("cluster.toml:4:"), "{msg}");
        assert!(msg.contains("rule.tf.pattern") && msg.contains("not a valid regular expression"), "{msg}");
        assert!(parse_err("[[rule]]\nname = \"tf\"\npattern = ''\n").contains("rule.tf.pattern: is empty"));
    }
}

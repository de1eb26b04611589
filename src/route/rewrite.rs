//! Part-level rewriting: each part of a command line runs where its effects
//! belong.
//!
//! `git add -A && git commit -m wip && make` becomes
//! `git add -A && git commit -m wip && distex run --node n1 -- make`: the
//! parts that stay here are exactly the text the user wrote, run here in
//! order (so a file they create exists before the routed part is synced),
//! and only the routed part's words are handed to `distex run`. Its
//! redirections and the pipes around it stay here: in
//! `cargo test 2>&1 | tail -5` only `cargo test` moves.
//!
//! A *part* is one element of a top-level pipeline: a simple command, or a
//! compound one (`( ... )`, `{ ...; }`, `for`, `if`, ...) taken whole. A part
//! is routed when the router, asked about that part alone, sends it to a
//! node because a rule matched.
//!
//! Splitting must never change what the line means, so the line is kept
//! together instead (see [`Placement`]) when:
//! * every part is routed anyway, or routed parts would go to different nodes;
//! * a routed part reads stdin (`cat x | make`, `make < in`, a here-document):
//!   `distex run` gives the remote command no stdin;
//! * a part before a routed one changes the shell's state (`export`,
//!   `source`, `X=1`, `nvm use`, a function definition): the routed part
//!   could depend on it; or a routed part does (`X=$(docker ps -q) && ...`):
//!   the rest of the line could;
//! * a part before a routed one installs the project's dependencies (`npm
//!   ci`, `pip install -e .`, `uv sync`): what it installs is not synced;
//! * a part after a routed one may need its outputs. Parts that cannot
//!   (`git`, `echo`, notifications, `cd`) stay here; parts that put outputs
//!   to use *here* (`make install`, `cp`, `open`) keep the whole line here
//!   (built files are never brought back to run on another platform);
//!   anything else (`./target/release/app`, `ls build/`) keeps the whole
//!   line on the node, where the outputs are.
//!
//! `cd dir && make` keeps the `cd` here: `distex run` maps the working
//! directory it starts in into the node's mirror of the project.

use std::ops::Range;

use brush_parser::SourceSpan;
use brush_parser::ast::{self, Command, CommandPrefixOrSuffixItem, IoFileRedirectKind, IoRedirect, SourceLocation};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::LoadFacts;
use super::decide::decide;
use super::programs::{acts_here, canonical};
use super::shell::{command_words, parse_program, sh_quote};
use super::wrappers::effective_commands;
use crate::config::Config;

/// Where the line runs once rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Placement {
    /// Local parts stay here, routed parts are each wrapped in `distex run`.
    Parts,
    /// The whole line runs on the node, as one `distex run`.
    WholeLine,
    /// The whole line stays here: a later part uses a routed part's outputs here.
    Here,
}

/// One part of the line and where it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct PartPlace {
    /// The part as the user wrote it.
    pub(crate) text: String,
    /// The node it runs on; null when it runs here.
    pub(crate) node: Option<String>,
}

/// How a line is rewritten, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Rewrite {
    pub(crate) placement: Placement,
    /// The line to run instead (the original line when `placement` is `here`).
    pub(crate) command: String,
    /// The node routed parts run on.
    pub(crate) node: String,
    /// Why the line was not split, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) why: Option<String>,
    /// The parts, in order.
    pub(crate) parts: Vec<PartPlace>,
}

/// Decides, part by part, where `line` runs; `line_node` is where the
/// whole line would go. None when no part is routed by a rule (or the line
/// cannot be parsed): the caller keeps its whole-line answer.
pub(crate) fn rewrite_plan(config: &Config, line: &str, line_node: &str, facts: &LoadFacts) -> Option<Rewrite> {
    let program = parse_program(line).ok()?;
    let chars = CharIndex::new(line);
    let mut parts = Vec::new();
    for list in &program.complete_commands {
        collect_parts(list, &chars, line, &mut parts);
    }
    for part in &mut parts {
        let decision = decide(config, &part.text, &part.commands, facts);
        // The node the whole line would go to, when it can take this part,
        // so that the answer names one node throughout.
        let line_node_fits = decision.candidates.iter().any(|c| c.node == line_node && c.eligible);
        part.node = decision
            .node
            .filter(|_| decision.distribute && decision.rule.is_some())
            .map(|node| if line_node_fits { line_node.to_string() } else { node });
    }
    let first_routed = parts.iter().position(|p| p.node.is_some())?;
    let node = parts[first_routed].node.clone()?;
    let places = parts.iter().map(|p| PartPlace { text: p.text.clone(), node: p.node.clone() }).collect();
    let plan = |placement, command: String, why: Option<String>| Rewrite {
        placement,
        command,
        node: node.clone(),
        why,
        parts: places,
    };
    match keep_together(&parts, first_routed) {
        Some((Placement::Here, why)) => Some(plan(Placement::Here, line.to_string(), Some(why))),
        Some((_, why)) => Some(Rewrite {
            node: line_node.to_string(),
            ..plan(Placement::WholeLine, distex_run(line_node, line), Some(why))
        }),
        None => Some(plan(Placement::Parts, splice(line, &parts), None)),
    }
}

/// `distex run --node NODE -- 'COMMAND'`: the command as one shell word.
pub(crate) fn distex_run(node: &str, command: &str) -> String {
    format!("distex run --node {} -- {}", sh_quote(node), sh_quote(command))
}

/// One top-level pipeline element.
#[derive(Debug)]
struct Part {
    /// Byte range of the text that moves when the part is routed.
    span: Range<usize>,
    text: String,
    /// The commands it runs, wrappers looked through.
    commands: Vec<Vec<String>>,
    /// Which and-or list it is in, and whether that list joins only with `&&`.
    list: usize,
    list_all_and: bool,
    /// Its pipeline within the list; parts of one pipeline run together.
    pipeline: usize,
    /// It reads stdin: not first in its pipeline, or `<`, `<<`, `<<<`.
    reads_stdin: bool,
    /// It cannot be cut out cleanly (redirections between its words,
    /// process substitution, no source position).
    tangled: bool,
    /// It changes the shell's state for the parts after it.
    changes_state: bool,
    node: Option<String>,
}

fn collect_parts(list: &ast::CompoundList, chars: &CharIndex, line: &str, out: &mut Vec<Part>) {
    for item in &list.0 {
        let and_or = &item.0;
        let list_index = out.last().map_or(0, |p: &Part| p.list + 1);
        let all_and = and_or.additional.iter().all(|a| matches!(a, ast::AndOr::And(_)));
        let pipelines = std::iter::once(&and_or.first).chain(and_or.additional.iter().map(|a| match a {
            ast::AndOr::And(p) | ast::AndOr::Or(p) => p,
        }));
        for (pipeline_index, pipeline) in pipelines.enumerate() {
            for (position, command) in pipeline.seq.iter().enumerate() {
                out.push(part(command, position > 0, chars, line, list_index, all_and, pipeline_index));
            }
        }
    }
}

fn part(
    command: &Command,
    piped_into: bool,
    chars: &CharIndex,
    line: &str,
    list: usize,
    list_all_and: bool,
    pipeline: usize,
) -> Part {
    let (span, tangled, reads_stdin, changes_state) = match command {
        Command::Simple(simple) => simple_shape(simple, chars),
        Command::Compound(compound, redirects) => {
            let span = compound.location().and_then(|s| chars.range(&s));
            let stdin = redirects.iter().flat_map(|r| &r.0).any(reads_input);
            (span, false, stdin, false)
        }
        Command::Function(_) => (None, true, false, true),
        Command::ExtendedTest(..) => (None, true, false, false),
    };
    let commands = command_words(command).map(effective_commands).unwrap_or_default();
    let changes_state = changes_state || commands.iter().any(|c| changes_shell_state(c));
    // brush-parser's positions are incomplete for some compound commands
    // (an `if` clause spans only its keyword): a span counts only if its
    // text parses on its own as exactly one command.
    let (span, tangled) = match span {
        Some(span) if stands_alone(&line[span.clone()]) => (span, tangled),
        _ => (0..0, true),
    };
    Part {
        text: line[span.clone()].to_string(),
        span,
        commands,
        list,
        list_all_and,
        pipeline,
        reads_stdin: reads_stdin || piped_into,
        tangled,
        changes_state,
        node: None,
    }
}

/// Span of a simple command's words (its redirections excluded), whether
/// it is tangled (a word after a redirection, a process substitution, a
/// word without position), whether it reads stdin, and whether it is
/// assignments only (`X=1`).
fn simple_shape(simple: &ast::SimpleCommand, chars: &CharIndex) -> (Option<Range<usize>>, bool, bool, bool) {
    let prefix = simple.prefix.iter().flat_map(|p| &p.0);
    let suffix = simple.suffix.iter().flat_map(|s| &s.0);
    let name = simple.word_or_name.iter().map(|w| w.location());
    let mut items: Vec<Result<Option<SourceSpan>, &IoRedirect>> = Vec::new();
    for item in prefix.clone() {
        items.push(item_shape(item));
    }
    items.extend(name.map(Ok));
    for item in suffix {
        items.push(item_shape(item));
    }
    let mut spans = Vec::new();
    let (mut tangled, mut stdin, mut redirect_seen) = (false, false, false);
    for item in items {
        match item {
            Err(redirect) => {
                redirect_seen = true;
                stdin |= reads_input(redirect);
            }
            Ok(loc) => match loc.and_then(|l| chars.range(&l)) {
                Some(range) if !redirect_seen => spans.push(range),
                _ => tangled = true,
            },
        }
    }
    let span = spans.first().zip(spans.last()).map(|(a, b)| a.start..b.end);
    (span, tangled, stdin, simple.word_or_name.is_none())
}

/// A word's position, or the redirection it is; a process substitution has no usable position.
fn item_shape(item: &CommandPrefixOrSuffixItem) -> Result<Option<SourceSpan>, &IoRedirect> {
    match item {
        CommandPrefixOrSuffixItem::IoRedirect(r) => Err(r),
        CommandPrefixOrSuffixItem::ProcessSubstitution(..) => Ok(None),
        other => Ok(other.location()),
    }
}

/// Whether `text` is one whole command: one list item, one pipeline, one element.
fn stands_alone(text: &str) -> bool {
    let Ok(program) = parse_program(text) else {
        return false;
    };
    let [list] = program.complete_commands.as_slice() else {
        return false;
    };
    let [item] = list.0.as_slice() else {
        return false;
    };
    item.0.additional.is_empty() && item.0.first.seq.len() == 1
}

fn reads_input(redirect: &IoRedirect) -> bool {
    match redirect {
        IoRedirect::File(fd, kind, _) => {
            matches!(kind, IoFileRedirectKind::Read | IoFileRedirectKind::ReadAndWrite) && fd.is_none_or(|fd| fd == 0)
        }
        IoRedirect::HereDocument(..) | IoRedirect::HereString(..) => true,
        IoRedirect::OutputAndError(..) => false,
    }
}

/// Builtins and shell functions that change what later commands see.
fn changes_shell_state(words: &[String]) -> bool {
    let canon = canonical(words);
    let name = canon.first().map_or("", String::as_str);
    let sub = canon.get(1).map_or("", String::as_str);
    matches!(
        name,
        "export"
            | "source"
            | "."
            | "set"
            | "unset"
            | "alias"
            | "unalias"
            | "declare"
            | "typeset"
            | "local"
            | "readonly"
            | "shopt"
            | "ulimit"
            | "umask"
            | "eval"
            | "exec"
            | "trap"
            | "hash"
            | "enable"
    ) || (matches!(name, "nvm" | "fnm" | "pyenv" | "rbenv" | "jenv" | "sdk")
        && matches!(sub, "use" | "shell" | "local"))
        || (matches!(name, "conda" | "mamba" | "micromamba") && matches!(sub, "activate" | "deactivate"))
        || name == "deactivate"
}

/// Programs that, after a routed part, cannot need its outputs: they stay here.
const INDEPENDENT: &[&str] = &[
    "git",
    "gh",
    "echo",
    "printf",
    "true",
    "false",
    ":",
    "say",
    "notify-send",
    "osascript",
    "terminal-notifier",
    "afplay",
    "paplay",
    "tput",
    "date",
    "sleep",
    "exit",
    "cd",
    "pwd",
    "clear",
    "wait",
    "distex",
];

/// Programs that, after a routed part, put its outputs to use here.
const USES_OUTPUTS_HERE: &[&str] =
    &["open", "xdg-open", "cp", "mv", "install", "ln", "rsync", "scp", "tar", "zip", "unzip", "pbcopy", "sudo"];

/// Why the line must stay together, and where, if it must.
fn keep_together(parts: &[Part], first_routed: usize) -> Option<(Placement, String)> {
    let routed: Vec<&Part> = parts.iter().filter(|p| p.node.is_some()).collect();
    if routed.len() == parts.len() {
        return Some((Placement::WholeLine, "every part of the line belongs on the node".into()));
    }
    if routed.iter().any(|p| p.node != routed[0].node) {
        return Some((Placement::WholeLine, "its parts would go to different nodes; kept together on one".into()));
    }
    if let Some(p) = routed.iter().find(|p| p.reads_stdin) {
        return Some((Placement::WholeLine, format!("`{}` reads its input from this line", p.text)));
    }
    if let Some(p) = routed.iter().find(|p| p.changes_state) {
        return Some((Placement::WholeLine, format!("`{}` sets up the shell for the rest of the line", p.text)));
    }
    if routed.iter().any(|p| p.tangled) {
        return Some((Placement::WholeLine, "a routed part cannot be cut out of the line cleanly".into()));
    }
    let last_routed = parts.iter().rposition(|p| p.node.is_some()).unwrap_or(first_routed);
    if let Some(p) = parts[..last_routed].iter().find(|p| p.node.is_none() && p.changes_state) {
        return Some((Placement::WholeLine, format!("`{}` sets up the shell for the part after it", p.text)));
    }
    if let Some(p) =
        parts[..last_routed].iter().find(|p| p.node.is_none() && p.commands.iter().any(|c| installs_dependencies(c)))
    {
        return Some((
            Placement::WholeLine,
            format!("`{}` installs dependencies the part after it needs (they are not synced)", p.text),
        ));
    }
    let after = |p: &&Part| {
        p.node.is_none()
            && !parts[first_routed..].iter().any(|r| r.node.is_some() && r.list == p.list && r.pipeline == p.pipeline)
    };
    let later: Vec<&Part> = parts[first_routed + 1..].iter().filter(after).collect();
    if let Some(p) = later.iter().find(|p| p.commands.iter().any(|c| uses_outputs_here(c))) {
        return Some((
            Placement::Here,
            format!("`{}` uses what the routed part builds on this machine; built files are not brought back", p.text),
        ));
    }
    if let Some(p) = later.iter().find(|p| !p.commands.iter().all(|c| INDEPENDENT.contains(&canonical(c)[0].as_str())))
    {
        return Some((Placement::WholeLine, format!("`{}` may need the routed part's outputs", p.text)));
    }
    None
}

/// A project dependency install (`npm ci`, `pip install -e .`, `uv sync`,
/// `bundle install`): what it installs (`node_modules`, a venv) is ignored
/// by the sync, so a routed part after it needs it done on the node.
fn installs_dependencies(words: &[String]) -> bool {
    let canon = canonical(words);
    let global = canon.iter().any(|w| w == "-g" || w == "--global" || w == "--user");
    let sub = |i: usize| canon.get(i).map_or("", String::as_str);
    let installs = match sub(0) {
        "npm" | "pnpm" | "bun" => matches!(sub(1), "install" | "ci" | "add"),
        "yarn" => canon.len() == 1 || matches!(sub(1), "install" | "add"),
        "pip" | "poetry" | "pipenv" | "bundle" | "composer" | "conda" | "mamba" => sub(1) == "install",
        "python" => sub(1) == "-m" && sub(2) == "pip" && sub(3) == "install",
        "uv" => sub(1) == "sync" || (sub(1) == "pip" && sub(2) == "install"),
        "go" => sub(1) == "mod" && sub(2) == "download",
        "cargo" => sub(1) == "fetch",
        _ => false,
    };
    installs && !global
}

fn uses_outputs_here(words: &[String]) -> bool {
    let canon = canonical(words);
    acts_here(&canon) || USES_OUTPUTS_HERE.contains(&canon[0].as_str())
}

/// The line with each run of routed parts replaced by a `distex run`.
fn splice(line: &str, parts: &[Part]) -> String {
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < parts.len() {
        let Some(node) = &parts[i].node else {
            i += 1;
            continue;
        };
        // Consecutive routed parts of one all-`&&` list run as one command.
        let mut end = i;
        while end + 1 < parts.len()
            && parts[end + 1].node.as_ref() == Some(node)
            && parts[end + 1].list == parts[i].list
            && parts[i].list_all_and
            && parts[end + 1].pipeline != parts[end].pipeline
            && single_element(parts, end + 1)
            && single_element(parts, end)
        {
            end += 1;
        }
        let span = parts[i].span.start..parts[end].span.end;
        out.push_str(&line[copied..span.start]);
        out.push_str(&distex_run(node, &line[span.clone()]));
        copied = span.end;
        i = end + 1;
    }
    out.push_str(&line[copied..]);
    out
}

/// Whether part `i` is its pipeline's only element.
fn single_element(parts: &[Part], i: usize) -> bool {
    parts.iter().filter(|p| p.list == parts[i].list && p.pipeline == parts[i].pipeline).count() == 1
}

/// brush-parser positions count characters; slicing needs bytes.
struct CharIndex(Vec<usize>);

impl CharIndex {
    fn new(line: &str) -> Self {
        CharIndex(line.char_indices().map(|(b, _)| b).chain(std::iter::once(line.len())).collect())
    }

    fn range(&self, span: &SourceSpan) -> Option<Range<usize>> {
        let start = *self.0.get(span.start.index)?;
        let end = *self.0.get(span.end.index)?;
        (start < end).then_some(start..end)
    }
}

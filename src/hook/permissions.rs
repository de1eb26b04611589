//! The user's own Claude Code permission rules, as the hook must respect them.
//!
//! A rewritten command is a different command: Claude Code judges
//! `distex run --node n1 -- 'rm -f x && make'` by its own rules, and no
//! rule about `rm` matches that. So before rewriting (or suggesting) the
//! hook judges the *original* command itself, with Claude Code's rules and
//! Claude Code's matching:
//!
//! * a **deny** or **ask** rule that matches the command or any part of it
//!   means "leave it alone": no rewrite, no suggestion, no output, so Claude
//!   Code judges the original exactly as it would without distex;
//! * when **allow** rules allow every part (and nothing was denied or asked),
//!   the rewrite gets `permissionDecision: "allow"`: the user already said yes
//!   to this command, and the rewrite runs the same command elsewhere;
//! * otherwise no decision: Claude Code judges the rewritten command.
//!
//! # Where rules come from
//!
//! The `permissions.allow`, `permissions.ask` and `permissions.deny` arrays of
//! every settings file Claude Code reads ([`Locations`]): the user's
//! (`$CLAUDE_CONFIG_DIR/settings.json`, else `~/.claude/settings.json`), the
//! project's (`.claude/settings.json` and `.claude/settings.local.json` in
//! `$CLAUDE_PROJECT_DIR`, else the hook input's `cwd`) and the managed policy
//! (`/etc/claude-code/managed-settings.json` on Linux,
//! `/Library/Application Support/ClaudeCode/managed-settings.json` on macOS).
//! For deny and ask rules the hook also reads the project files of `cwd` and
//! of every parent directory: an extra rule there can only make it step aside.
//! Rules given on Claude Code's command line (`--allowedTools`,
//! `--disallowedTools`) and answers given during the session are invisible to
//! a hook; docs/claude-code.md says what follows.
//!
//! # How a `Bash` rule matches (Claude Code's semantics)
//!
//! * `Bash` or `Bash(*)`: every command;
//! * `Bash(npm run test:*)`: the legacy prefix form: `npm run test` itself or
//!   `npm run test` followed by a space and anything;
//! * a `*` anywhere else is a wildcard for any text (spaces included):
//!   `Bash(* --version)`, `Bash(git * main)`. When the pattern ends in ` *`
//!   and that is its only wildcard, the tail is optional: `Bash(ls *)` matches
//!   `ls` and `ls -la` but not `lsof`. `\*` is a literal star, `\\` a
//!   literal backslash;
//! * anything else must equal the command exactly.
//!
//! A compound command (`&&`, `||`, `;`, `|`, newlines, subshells, `$(...)`)
//! is judged part by part: one denied part denies the whole line, and the
//! whole line is allowed only when every part is. The parts come from the
//! router's shell parser ([`crate::route::simple_commands`]).
//!
//! The hook errs on the side of stepping aside: deny and ask rules are tried
//! against more forms of each part than Claude Code tries (quotes removed,
//! wrappers such as `sudo`, `env`, `timeout` or `bash -c` looked through),
//! and allow rules against fewer (the part as written, without its
//! redirections; a line with `$(...)`, backquotes or `<(...)` is never
//! judged allowed by the hook).

use std::path::{Path, PathBuf};

use brush_parser::ast::{self, Command, CommandPrefixOrSuffixItem};
use serde_json::Value;

/// Which list a rule is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    Allow,
    Ask,
    Deny,
}

impl Behavior {
    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::Allow => "allow",
            Behavior::Ask => "ask",
            Behavior::Deny => "deny",
        }
    }
}

/// One `Bash` rule from one settings file.
#[derive(Debug, Clone, PartialEq)]
pub struct BashRule {
    /// The rule as written, e.g. `Bash(rm:*)`.
    pub written: String,
    /// The settings file it came from.
    pub source: PathBuf,
    pub pattern: Pattern,
}

/// What a `Bash(...)` rule's content matches.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// `Bash`, `Bash()` or `Bash(*)`: every command.
    Any,
    /// No wildcard: the command must be exactly this.
    Exact(String),
    /// `prefix:*`: the prefix alone or followed by a space.
    Prefix(String),
    /// A pattern with unescaped `*`s.
    Wildcard(Wildcard),
}

/// A wildcard pattern, compiled: literal bytes and stars.
#[derive(Debug, Clone, PartialEq)]
pub struct Wildcard {
    pieces: Vec<Piece>,
    /// `ls *` (one star, at the end, after a space) also matches `ls`.
    optional_tail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Piece {
    Byte(u8),
    Star,
}

impl Pattern {
    /// The pattern of a rule's content (what is inside `Bash(...)`).
    pub fn parse(content: &str) -> Pattern {
        let content = content.trim();
        if content.is_empty() || content == "*" {
            return Pattern::Any;
        }
        if let Some(prefix) = content.strip_suffix(":*").filter(|p| !p.is_empty()) {
            return Pattern::Prefix(prefix.to_string());
        }
        let wildcard = Wildcard::compile(content);
        if wildcard.pieces.contains(&Piece::Star) { Pattern::Wildcard(wildcard) } else { Pattern::Exact(content.to_string()) }
    }

    /// Whether `command` (one command or one part of a line) matches.
    pub fn matches(&self, command: &str) -> bool {
        let command = command.trim();
        match self {
            Pattern::Any => true,
            Pattern::Exact(exact) => command == exact,
            Pattern::Prefix(prefix) => {
                command.strip_prefix(prefix.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
            }
            Pattern::Wildcard(wildcard) => wildcard.matches(command),
        }
    }
}

impl Wildcard {
    fn compile(pattern: &str) -> Wildcard {
        let mut pieces = Vec::new();
        let mut bytes = pattern.bytes().peekable();
        while let Some(b) = bytes.next() {
            match (b, bytes.peek()) {
                (b'\\', Some(&next @ (b'*' | b'\\'))) => {
                    bytes.next();
                    pieces.push(Piece::Byte(next));
                }
                (b'*', _) => pieces.push(Piece::Star),
                _ => pieces.push(Piece::Byte(b)),
            }
        }
        let stars = pieces.iter().filter(|p| **p == Piece::Star).count();
        let optional_tail = (stars == 1 && pieces.ends_with(&[Piece::Byte(b' '), Piece::Star])).then(|| {
            let head: Vec<u8> = pieces[..pieces.len() - 2]
                .iter()
                .map(|p| match p {
                    Piece::Byte(b) => *b,
                    Piece::Star => b'*',
                })
                .collect();
            String::from_utf8_lossy(&head).into_owned()
        });
        Wildcard { pieces, optional_tail }
    }

    /// Anchored match of the whole text; a star matches any bytes, newlines
    /// included. Greedy with backtracking to the last star: O(len × pattern).
    fn matches(&self, text: &str) -> bool {
        if self.optional_tail.as_deref() == Some(text) {
            return true;
        }
        let text = text.as_bytes();
        let (mut p, mut t) = (0, 0);
        let mut resume: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.pieces.get(p) {
                Some(Piece::Star) => {
                    resume = Some((p, t));
                    p += 1;
                }
                Some(Piece::Byte(b)) if *b == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match resume {
                    Some((star, from)) => {
                        p = star + 1;
                        t = from + 1;
                        resume = Some((star, from + 1));
                    }
                    None => return false,
                },
            }
        }
        self.pieces[p..].iter().all(|piece| *piece == Piece::Star)
    }
}

/// Parses one entry of a `permissions` array. None for rules about other
/// tools and for malformed entries (`Bash(rm` without its `)`).
pub fn parse_rule(written: &str, source: &Path) -> Option<BashRule> {
    let text = written.trim();
    let (tool, content) = match text.find('(') {
        None => (text, ""),
        Some(open) => (&text[..open], text[open + 1..].strip_suffix(')')?),
    };
    if tool.trim() != "Bash" {
        return None;
    }
    // Parentheses inside the content may be written escaped: `Bash(echo \(x\))`.
    let content = content.replace("\\(", "(").replace("\\)", ")");
    Some(BashRule { written: text.to_string(), source: source.to_path_buf(), pattern: Pattern::parse(&content) })
}

/// Every Bash rule the hook could find, by list.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub allow: Vec<BashRule>,
    pub ask: Vec<BashRule>,
    pub deny: Vec<BashRule>,
}

/// Which settings files to read.
#[derive(Debug, Clone, Default)]
pub struct Locations {
    /// Files whose rules count fully (user, project, managed).
    pub full: Vec<PathBuf>,
    /// Managed policy files (also in `full`): their
    /// `allowManagedPermissionRulesOnly` turns the other files' allow rules off.
    pub managed: Vec<PathBuf>,
    /// Files read only for their deny and ask rules (parent directories).
    pub guard_only: Vec<PathBuf>,
}

impl Locations {
    /// The files Claude Code reads for a session whose project is
    /// `$CLAUDE_PROJECT_DIR` (else `cwd`), plus the project files of `cwd`
    /// and its parents for deny and ask rules.
    pub fn for_session(cwd: Option<&Path>) -> Locations {
        let project = std::env::var_os("CLAUDE_PROJECT_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);
        let project = project.or_else(|| cwd.map(Path::to_path_buf));
        let mut locations = Locations::default();
        if let Some(user) = user_dir() {
            locations.full.push(user.join("settings.json"));
        }
        if let Some(project) = &project {
            locations.full.extend(project_files(project));
        }
        for managed in managed_files() {
            locations.full.push(managed.clone());
            locations.managed.push(managed);
        }
        let starts = [project.as_deref(), cwd].into_iter().flatten();
        for dir in starts.flat_map(Path::ancestors) {
            for file in project_files(dir) {
                if !locations.full.contains(&file) && !locations.guard_only.contains(&file) {
                    locations.guard_only.push(file);
                }
            }
        }
        locations
    }
}

/// `$CLAUDE_CONFIG_DIR`, else `~/.claude`.
fn user_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CLAUDE_CONFIG_DIR").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    Some(PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".claude"))
}

fn project_files(dir: &Path) -> [PathBuf; 2] {
    let claude = dir.join(".claude");
    [claude.join("settings.json"), claude.join("settings.local.json")]
}

/// The managed policy file of this platform. `DISTEX_CLAUDE_MANAGED_SETTINGS`
/// names another file instead (tests; a policy kept elsewhere).
fn managed_files() -> Vec<PathBuf> {
    if let Some(file) = std::env::var_os("DISTEX_CLAUDE_MANAGED_SETTINGS").filter(|v| !v.is_empty()) {
        return vec![PathBuf::from(file)];
    }
    if cfg!(target_os = "macos") {
        vec![PathBuf::from("/Library/Application Support/ClaudeCode/managed-settings.json")]
    } else {
        vec![PathBuf::from("/etc/claude-code/managed-settings.json")]
    }
}

/// Reads every file in `locations`. A missing file is fine; a file that
/// exists but cannot be read or is not JSON is an error naming it: its deny
/// rules are unknown, so the caller must not rewrite anything.
pub fn load(locations: &Locations) -> Result<Rules, String> {
    let mut rules = Rules::default();
    let mut managed_only = false;
    let mut others_allow = Vec::new();
    let files = locations.full.iter().map(|f| (f, true)).chain(locations.guard_only.iter().map(|f| (f, false)));
    for (file, full) in files {
        let Some(settings) = read_settings(file)? else {
            continue;
        };
        let is_managed = locations.managed.contains(file);
        managed_only |= is_managed && settings["allowManagedPermissionRulesOnly"] == Value::Bool(true);
        let permissions = &settings["permissions"];
        rules.deny.extend(rules_in(permissions, "deny", file));
        rules.ask.extend(rules_in(permissions, "ask", file));
        if full {
            let allow = rules_in(permissions, "allow", file);
            if is_managed { rules.allow.extend(allow) } else { others_allow.extend(allow) }
        }
    }
    if !managed_only {
        rules.allow.extend(others_allow);
    }
    Ok(rules)
}

fn read_settings(file: &Path) -> Result<Option<Value>, String> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A directory's parent that is a file, and the like: nothing there.
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(None),
        Err(e) => return Err(format!("cannot read Claude Code settings {}: {e}", file.display())),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("Claude Code settings {} are not valid JSON ({e})", file.display()))
}

fn rules_in(permissions: &Value, list: &str, file: &Path) -> Vec<BashRule> {
    let entries = permissions.get(list).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    entries.iter().filter_map(Value::as_str).filter_map(|written| parse_rule(written, file)).collect()
}

/// The forms of a command line the rules are tried against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parts {
    /// For deny and ask rules: the whole line, and every part in every form.
    pub guard: Vec<String>,
    /// For allow rules: each part as written (redirections left out), or
    /// None when the line has something the hook does not judge allowed.
    pub allow: Option<Vec<String>>,
}

impl Parts {
    /// `simple` and `effective` are the router's parse of `line`
    /// ([`crate::route::simple_commands`] and
    /// [`crate::route::effective_commands`]).
    pub fn of(line: &str, simple: &[Vec<String>], effective: &[Vec<String>]) -> Parts {
        let allow = written_parts(line);
        let mut guard = vec![line.trim().to_string()];
        let words = simple.iter().chain(effective).map(|w| w.join(" "));
        let written = allow.iter().flatten().flat_map(|p| [p.clone(), without_assignments(p)]);
        for form in words.chain(written) {
            if !guard.contains(&form) {
                guard.push(form);
            }
        }
        Parts { guard, allow }
    }
}

/// What the user's rules say about a command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict<'r> {
    /// A deny or ask rule matches `part`: the hook must leave the line alone.
    Guarded { behavior: Behavior, rule: &'r BashRule, part: String },
    /// Every part is allowed; `rules` are the allow rules that did it.
    Allowed { rules: Vec<&'r BashRule> },
    /// No rule decides: Claude Code will judge whatever it is given.
    Undecided,
}

/// Judges `parts` by `rules`: deny, then ask, then allow, as Claude Code does.
pub fn judge<'r>(rules: &'r Rules, parts: &Parts) -> Verdict<'r> {
    for (behavior, list) in [(Behavior::Deny, &rules.deny), (Behavior::Ask, &rules.ask)] {
        for rule in list {
            if let Some(part) = parts.guard.iter().find(|p| rule.pattern.matches(p)) {
                return Verdict::Guarded { behavior, rule, part: part.clone() };
            }
        }
    }
    let Some(allow) = parts.allow.as_ref().filter(|a| !a.is_empty()) else {
        return Verdict::Undecided;
    };
    let mut used: Vec<&BashRule> = Vec::new();
    for part in allow {
        let Some(rule) = rules.allow.iter().find(|r| r.pattern.matches(part)) else {
            return Verdict::Undecided;
        };
        if !used.contains(&rule) {
            used.push(rule);
        }
    }
    Verdict::Allowed { rules: used }
}

/// Each simple command of `line` as written (quotes kept, redirections
/// left out), or None when the line is anything but lists and pipelines of
/// simple commands without substitutions: the cases the hook leaves to
/// Claude Code's own judgement.
fn written_parts(line: &str) -> Option<Vec<String>> {
    if ["$(", "`", "<(", ">("].iter().any(|s| line.contains(s)) {
        return None;
    }
    let options = brush_parser::ParserOptions::default();
    let mut parser = brush_parser::Parser::new(std::io::Cursor::new(line), &options);
    let program = parser.parse_program().ok()?;
    let mut parts = Vec::new();
    for list in &program.complete_commands {
        for item in &list.0 {
            let and_or = &item.0;
            let pipelines = std::iter::once(&and_or.first)
                .chain(and_or.additional.iter().map(|next| match next {
                    ast::AndOr::And(p) | ast::AndOr::Or(p) => p,
                }));
            for pipeline in pipelines {
                for command in &pipeline.seq {
                    let Command::Simple(simple) = command else {
                        return None;
                    };
                    parts.push(written_simple(simple)?);
                }
            }
        }
    }
    Some(parts)
}

/// `FOO=1 make -j8 > log 2>&1` → `FOO=1 make -j8`.
fn written_simple(simple: &ast::SimpleCommand) -> Option<String> {
    let mut words = Vec::new();
    for item in simple.prefix.iter().flat_map(|p| &p.0) {
        push_item(item, &mut words)?;
    }
    if let Some(name) = &simple.word_or_name {
        words.push(name.value.clone());
    }
    for item in simple.suffix.iter().flat_map(|s| &s.0) {
        push_item(item, &mut words)?;
    }
    (!words.is_empty()).then(|| words.join(" "))
}

fn push_item(item: &CommandPrefixOrSuffixItem, words: &mut Vec<String>) -> Option<()> {
    match item {
        CommandPrefixOrSuffixItem::Word(w) => words.push(w.value.clone()),
        CommandPrefixOrSuffixItem::AssignmentWord(_, w) => words.push(w.value.clone()),
        CommandPrefixOrSuffixItem::IoRedirect(_) => {}
        CommandPrefixOrSuffixItem::ProcessSubstitution(..) => return None,
    }
    Some(())
}

/// `FOO=1 BAR=2 make -j8` → `make -j8` (only for deny and ask rules).
fn without_assignments(part: &str) -> String {
    let mut rest = part;
    while let Some((first, tail)) = rest.split_once(' ') {
        let is_assignment = first.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
        if !is_assignment {
            break;
        }
        rest = tail;
    }
    rest.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_parts_keep_quotes_and_drop_redirections() {
        assert_eq!(
            written_parts("FOO=1 make -j8 \"a b\" > log 2>&1 && cat x | tail -5"),
            Some(vec!["FOO=1 make -j8 \"a b\"".to_string(), "cat x".into(), "tail -5".into()])
        );
        assert_eq!(written_parts("make $(nproc)"), None);
        assert_eq!(written_parts("(cd x && make)"), None);
        assert_eq!(written_parts("make 'unterminated"), None);
    }

    #[test]
    fn assignments_are_stripped_for_guards() {
        assert_eq!(without_assignments("FOO=1 BAR=x rm -rf /"), "rm -rf /");
        assert_eq!(without_assignments("make CC=gcc"), "make CC=gcc");
    }
}

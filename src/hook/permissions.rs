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
//! redirections; a line with `$(...)`, backquotes, `<(...)` or a compound
//! command is never judged allowed by the hook). Like Claude Code (checked
//! with the real CLI), a `cd` into the project needs no rule, and allow
//! rules look past harmless wrappers (`timeout 600`, `nice`, `nohup`,
//! `time`, `stdbuf`) and harmless `VAR=value` settings (`HARMLESS_ENV`).

use std::path::{Path, PathBuf};

use brush_parser::ast::{self, Command, CommandPrefixOrSuffixItem};
use serde_json::Value;

/// Which list a stopping rule is in (allow rules never stop a rewrite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behavior {
    Ask,
    Deny,
}

impl Behavior {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Behavior::Ask => "ask",
            Behavior::Deny => "deny",
        }
    }
}

/// One `Bash` rule from one settings file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BashRule {
    /// The rule as written, e.g. `Bash(rm:*)`.
    pub(crate) written: String,
    /// The settings file it came from.
    pub(crate) source: PathBuf,
    pub(crate) pattern: Pattern,
}

/// What a `Bash(...)` rule's content matches.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pattern {
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
pub(crate) struct Wildcard {
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
    pub(crate) fn parse(content: &str) -> Pattern {
        let content = content.trim();
        if content.is_empty() || content == "*" {
            return Pattern::Any;
        }
        if let Some(prefix) = content.strip_suffix(":*").filter(|p| !p.is_empty()) {
            return Pattern::Prefix(prefix.to_string());
        }
        let wildcard = Wildcard::compile(content);
        if wildcard.pieces.contains(&Piece::Star) {
            Pattern::Wildcard(wildcard)
        } else {
            Pattern::Exact(content.to_string())
        }
    }

    /// Whether `command` (one command or one part of a line) matches.
    pub(crate) fn matches(&self, command: &str) -> bool {
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
pub(crate) fn parse_rule(written: &str, source: &Path) -> Option<BashRule> {
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
pub(crate) struct Rules {
    pub(crate) allow: Vec<BashRule>,
    pub(crate) ask: Vec<BashRule>,
    pub(crate) deny: Vec<BashRule>,
}

/// Which settings files to read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Locations {
    /// Files whose rules count fully (user, project, managed).
    pub(crate) full: Vec<PathBuf>,
    /// Managed policy files (also in `full`): their
    /// `allowManagedPermissionRulesOnly` turns the other files' allow rules off.
    pub(crate) managed: Vec<PathBuf>,
    /// Files read only for their deny and ask rules (parent directories).
    pub(crate) guard_only: Vec<PathBuf>,
    /// The session's project directory, when known.
    pub(crate) project: Option<PathBuf>,
}

impl Locations {
    /// The files Claude Code reads for a session whose project is
    /// `$CLAUDE_PROJECT_DIR` (else `cwd`), plus the project files of `cwd`
    /// and its parents for deny and ask rules.
    pub(crate) fn for_session(cwd: Option<&Path>) -> Locations {
        let project = std::env::var_os("CLAUDE_PROJECT_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);
        let project = project.or_else(|| cwd.map(Path::to_path_buf));
        let mut locations = Locations { project: project.clone(), ..Locations::default() };
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
pub(crate) fn load(locations: &Locations) -> Result<Rules, String> {
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
pub(crate) struct Parts {
    /// For deny and ask rules: the whole line, and every part in every form.
    pub(crate) guard: Vec<String>,
    /// For allow rules: each part, or None when the line has something the
    /// hook does not judge allowed.
    pub(crate) allow: Option<Vec<AllowPart>>,
}

/// One part of the line as allow rules see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AllowPart {
    /// The part as written (redirections left out), then without harmless
    /// `VAR=value` prefixes and wrappers (`timeout 60`, `nice`, `nohup`, ...).
    pub(crate) forms: Vec<String>,
    /// Claude Code allows it without any rule: `cd` into a directory of the
    /// project (a relative path without `..`, or an absolute path in it).
    pub(crate) needs_no_rule: bool,
}

impl Parts {
    /// `simple` and `effective` are the router's parse of `line`
    /// ([`crate::route::simple_commands`] and
    /// [`crate::route::effective_commands`]); `project` is the session's
    /// project directory.
    pub(crate) fn of(line: &str, simple: &[Vec<String>], effective: &[Vec<String>], project: Option<&Path>) -> Parts {
        let written = written_parts(line);
        let mut guard = vec![line.trim().to_string()];
        let words = simple.iter().chain(effective).map(|w| w.join(" "));
        let written_forms = written.iter().flatten().flat_map(|p| [p.clone(), without_assignments(p)]);
        // Each form once, in order (a set beside the list: a long line has
        // thousands of parts, and a scan of the list per form was quadratic).
        let mut seen: std::collections::HashSet<String> = guard.iter().cloned().collect();
        for form in words.chain(written_forms) {
            if seen.insert(form.clone()) {
                guard.push(form);
            }
        }
        let allow = written.map(|parts| {
            parts
                .iter()
                .map(|part| AllowPart { forms: allow_forms(part), needs_no_rule: is_cd_within(part, project) })
                .collect()
        });
        Parts { guard, allow }
    }
}

/// What the user's rules say about a command line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict<'r> {
    /// A deny or ask rule matches `part`: the hook must leave the line alone.
    Guarded { behavior: Behavior, rule: &'r BashRule, part: String },
    /// Every part is allowed; `rules` are the allow rules that did it.
    Allowed { rules: Vec<&'r BashRule> },
    /// No rule decides: Claude Code will judge whatever it is given.
    Undecided,
}

/// Judges `parts` by `rules`: deny, then ask, then allow, as Claude Code does.
pub(crate) fn judge<'r>(rules: &'r Rules, parts: &Parts) -> Verdict<'r> {
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
    for part in allow.iter().filter(|p| !p.needs_no_rule) {
        let rule = rules.allow.iter().find(|r| part.forms.iter().any(|form| r.pattern.matches(form)));
        let Some(rule) = rule else {
            return Verdict::Undecided;
        };
        if !used.contains(&rule) {
            used.push(rule);
        }
    }
    if used.is_empty() { Verdict::Undecided } else { Verdict::Allowed { rules: used } }
}

/// Environment settings Claude Code lets an allow rule look past (a short
/// list of harmless ones: never `PATH`, `LD_PRELOAD` and the like).
const HARMLESS_ENV: &[&str] = &[
    "RUST_LOG",
    "RUST_BACKTRACE",
    "CARGO_TERM_COLOR",
    "NODE_ENV",
    "CI",
    "DEBUG",
    "NO_COLOR",
    "FORCE_COLOR",
    "TERM",
    "LANG",
    "LC_ALL",
    "TZ",
    "PYTHONUNBUFFERED",
    "GOOS",
    "GOARCH",
    "CGO_ENABLED",
];

/// `part`, then `part` with harmless prefixes stripped one by one:
/// `RUST_LOG=debug timeout 600 make -j8` → also `timeout 600 make -j8` and
/// `make -j8`.
fn allow_forms(part: &str) -> Vec<String> {
    let mut forms = vec![part.to_string()];
    let mut rest = part;
    while let Some(next) = strip_harmless_prefix(rest) {
        forms.push(next.to_string());
        rest = next;
    }
    forms
}

/// The rest of `part` after one harmless leading assignment or wrapper.
fn strip_harmless_prefix(part: &str) -> Option<&str> {
    let mut words = part.split(' ');
    let first = words.next()?;
    let skip = match first {
        "nohup" | "time" => 1,
        "timeout" => 1 + options_then(&mut words, &["--foreground", "--preserve-status", "--verbose", "-v"], "ks")?,
        "nice" => 1 + options_then_none(&mut words, "n"),
        "stdbuf" => 1 + options_then_none(&mut words, "ioe"),
        _ => {
            let (name, value) = first.split_once('=')?;
            let plain = !value.contains(['$', '`', '"', '\'', '\\']);
            if !(HARMLESS_ENV.contains(&name) && plain) {
                return None;
            }
            1
        }
    };
    let rest = part.splitn(skip + 1, ' ').nth(skip)?;
    (!rest.is_empty()).then_some(rest)
}

/// `timeout`'s options then its duration: how many words they take.
fn options_then<'a>(words: &mut impl Iterator<Item = &'a str>, flags: &[&str], with_value: &str) -> Option<usize> {
    let mut taken = 0;
    while let Some(word) = words.next() {
        taken += 1;
        if flags.contains(&word) || word.starts_with("--kill-after=") || word.starts_with("--signal=") {
            continue;
        }
        let takes_value = word.strip_prefix('-').and_then(|w| w.chars().next()).is_some_and(|c| with_value.contains(c));
        if takes_value {
            if word.len() == 2 {
                words.next()?;
                taken += 1;
            }
            continue;
        }
        let number = word.trim_end_matches(['s', 'm', 'h', 'd']);
        let is_duration = !number.is_empty() && number.parse::<f64>().is_ok_and(|n| n >= 0.0);
        return is_duration.then_some(taken);
    }
    None
}

/// `nice -n 5` / `stdbuf -oL -e 0`: options (letters in `with_value` take a
/// value, attached or next) until the first other word; how many words.
fn options_then_none<'a>(words: &mut impl Iterator<Item = &'a str>, with_value: &str) -> usize {
    let mut taken = 0;
    while let Some(word) = words.next() {
        let Some(option) = word.strip_prefix('-').filter(|o| !o.is_empty()) else {
            break;
        };
        taken += 1;
        let letter = option.chars().next().unwrap_or_default();
        if option.starts_with('-') || letter.is_ascii_digit() || !with_value.contains(letter) {
            continue; // `--adjustment=5`, `-5`, a flag
        }
        if option.len() == 1 && words.next().is_some() {
            taken += 1;
        }
    }
    taken
}

/// `cd sub/dir` (relative, no `..`) or `cd /abs/path` inside `project`:
/// Claude Code lets the Bash tool change into its working directories.
fn is_cd_within(part: &str, project: Option<&Path>) -> bool {
    let Some(dir) = part.strip_prefix("cd ") else {
        return false;
    };
    let plain = !dir.is_empty() && !dir.contains([' ', '$', '~', '`', '"', '\'', '\\', '*', '?', '[', '{']);
    let path = Path::new(dir);
    let no_parent = path.components().all(|c| c != std::path::Component::ParentDir);
    let inside = path.is_relative() || project.is_some_and(|p| path.starts_with(p));
    plain && no_parent && inside
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
            let pipelines = std::iter::once(&and_or.first).chain(and_or.additional.iter().map(|next| match next {
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
        let is_assignment = first
            .split_once('=')
            .is_some_and(|(name, _)| !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
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

    fn matches(rule: &str, command: &str) -> bool {
        parse_rule(rule, Path::new("s.json")).unwrap().pattern.matches(command)
    }

    /// Claude Code's documented semantics, case by case.
    #[test]
    fn bash_rules_match_as_claude_code_matches_them() {
        let cases: &[(&str, &str, bool)] = &[
            // The whole tool.
            ("Bash", "rm -rf /", true),
            ("Bash(*)", "anything at all", true),
            ("Bash()", "ls", true),
            // Exact.
            ("Bash(npm run build)", "npm run build", true),
            ("Bash(npm run build)", "npm run build --prod", false),
            ("Bash(npm run build)", "npm run buil", false),
            ("Bash(npm run build)", "  npm run build ", true),
            // Legacy prefix `:*`: the prefix alone or followed by a space.
            ("Bash(rm:*)", "rm -f x", true),
            ("Bash(rm:*)", "rm", true),
            ("Bash(rm:*)", "rmdir x", false),
            ("Bash(npm run test:*)", "npm run test", true),
            ("Bash(npm run test:*)", "npm run test --watch", true),
            ("Bash(npm run test:*)", "npm run testing", false),
            ("Bash(make:*)", "make who", true),
            ("Bash(make:*)", "cmake ..", false),
            // Wildcards: any text, spaces included, anywhere.
            ("Bash(* --version)", "node --version", true),
            ("Bash(* --version)", "node --version --x", false),
            ("Bash(git * main)", "git checkout main", true),
            ("Bash(git * main)", "git push origin main", true),
            ("Bash(git * main)", "git push origin dev", false),
            ("Bash(npm *)", "npm install", true),
            ("Bash(npm *)", "pnpm install", false),
            // A single trailing ` *` is optional; `ls*` has no word boundary.
            ("Bash(ls *)", "ls", true),
            ("Bash(ls *)", "ls -la", true),
            ("Bash(ls *)", "lsof", false),
            ("Bash(ls*)", "lsof", true),
            ("Bash(ls*)", "ls", true),
            ("Bash(git * *)", "git", false),
            // Escapes: `\*` is a literal star, `\\` a backslash.
            ("Bash(echo \\* *)", "echo * x", true),
            ("Bash(echo \\* *)", "echo x y", false),
            ("Bash(echo \\* *)", "echo *", true),
            // Without an unescaped star the rule is exact, backslash and all.
            ("Bash(echo \\*)", "echo \\*", true),
            ("Bash(echo \\*)", "echo *", false),
            ("Bash(echo a\\\\b *)", "echo a\\b c", true),
            // Escaped parentheses in the content.
            ("Bash(python -c print\\(1\\))", "python -c print(1)", true),
            // Newlines are just text to a wildcard.
            ("Bash(cat *)", "cat <<EOF\nx\nEOF", true),
            // Regex characters are literal.
            ("Bash(a.c *)", "abc x", false),
            ("Bash(a+ *)", "a+ x", true),
        ];
        for (rule, command, expected) in cases {
            assert_eq!(matches(rule, command), *expected, "{rule} vs {command:?}");
        }
    }

    #[test]
    fn other_tools_and_malformed_rules_are_not_bash_rules() {
        for rule in ["Read(./.env)", "WebFetch(domain:x.com)", "Bash(rm", "BashOutput", "mcp__x__y", "Bashx(rm:*)"] {
            assert_eq!(parse_rule(rule, Path::new("s")), None, "{rule}");
        }
    }

    fn rules(allow: &[&str], ask: &[&str], deny: &[&str]) -> Rules {
        let list = |l: &[&str]| l.iter().map(|r| parse_rule(r, Path::new("settings.json")).unwrap()).collect();
        Rules { allow: list(allow), ask: list(ask), deny: list(deny) }
    }

    fn verdict(rules: &Rules, line: &str) -> String {
        let simple = crate::route::simple_commands(line).unwrap();
        let effective = crate::route::effective_commands(simple.clone());
        match judge(rules, &Parts::of(line, &simple, &effective, Some(Path::new("/p")))) {
            Verdict::Guarded { behavior, rule, .. } => format!("{} {}", behavior.as_str(), rule.written),
            Verdict::Allowed { rules } => {
                format!("allow {}", rules.iter().map(|r| r.written.as_str()).collect::<Vec<_>>().join(" "))
            }
            Verdict::Undecided => "undecided".into(),
        }
    }

    /// Compound lines are judged part by part: deny wins over everything,
    /// ask over allow, and allow needs every part.
    #[test]
    fn compound_commands_are_judged_part_by_part() {
        let r = rules(&["Bash"], &[], &["Bash(rm:*)"]);
        assert_eq!(verdict(&r, "rm -f x && make who"), "deny Bash(rm:*)");
        assert_eq!(verdict(&r, "make who; rm -f x"), "deny Bash(rm:*)");
        assert_eq!(verdict(&r, "make who || rm -f x"), "deny Bash(rm:*)");
        assert_eq!(verdict(&r, "make who | rm -f x"), "deny Bash(rm:*)");
        assert_eq!(verdict(&r, "make who\nrm -f x"), "deny Bash(rm:*)");
        assert_eq!(verdict(&r, "(cd x && rm -f y)"), "deny Bash(rm:*)");
        assert_eq!(verdict(&r, "make $(rm -f x)"), "deny Bash(rm:*)");
        assert_eq!(verdict(&r, "echo `rm -f x`"), "deny Bash(rm:*)");
        assert_eq!(verdict(&r, "make who"), "allow Bash");
        // Looking through wrappers and quotes only ever adds guards.
        assert_eq!(verdict(&r, "sudo rm -f x && make"), "deny Bash(rm:*)");
        assert_eq!(verdict(&r, "FOO=1 rm -f x && make"), "deny Bash(rm:*)");
        assert_eq!(verdict(&r, "bash -c 'rm -f x' && make"), "deny Bash(rm:*)");
        assert_eq!(verdict(&r, "'rm' -f x && make"), "deny Bash(rm:*)");
        assert_eq!(verdict(&r, "timeout 5 rm -f x; make"), "deny Bash(rm:*)");
        // Words that only look like the command are not it.
        assert_eq!(verdict(&r, "echo rm -f x && make"), "allow Bash");
    }

    #[test]
    fn ask_beats_allow_and_allow_needs_every_part() {
        let r = rules(&["Bash(make:*)", "Bash(tail *)"], &["Bash(make install)"], &[]);
        assert_eq!(verdict(&r, "make install"), "ask Bash(make install)");
        assert_eq!(verdict(&r, "make who"), "allow Bash(make:*)");
        assert_eq!(verdict(&r, "make who 2>&1 | tail -5"), "allow Bash(make:*) Bash(tail *)");
        assert_eq!(verdict(&r, "make who > log.txt"), "allow Bash(make:*)");
        assert_eq!(verdict(&r, "make who && cargo build"), "undecided");
        // What Claude Code allows without a rule or looks past, as it does.
        assert_eq!(verdict(&r, "cd sub && make who"), "allow Bash(make:*)");
        assert_eq!(verdict(&r, "cd /p/sub && make who"), "allow Bash(make:*)");
        assert_eq!(verdict(&r, "cd /etc && make who"), "undecided");
        assert_eq!(verdict(&r, "cd ../other && make who"), "undecided");
        assert_eq!(verdict(&r, "cd sub"), "undecided");
        assert_eq!(verdict(&r, "timeout 600 make -j8"), "allow Bash(make:*)");
        assert_eq!(verdict(&r, "RUST_LOG=debug nice -n 5 make"), "allow Bash(make:*)");
        // The hook never judges these allowed (Claude Code may still ask).
        assert_eq!(verdict(&r, "make $(nproc)"), "undecided");
        assert_eq!(verdict(&r, "(make who)"), "undecided");
        assert_eq!(verdict(&r, "PATH=/tmp/evil make who"), "undecided");
        assert_eq!(verdict(&rules(&[], &[], &[]), "make who"), "undecided");
    }

    #[test]
    fn the_whole_line_is_tried_too() {
        let r = rules(&["Bash"], &["Bash(make who && *)"], &[]);
        assert_eq!(verdict(&r, "make who && ls"), "ask Bash(make who && *)");
    }

    #[test]
    fn settings_files_are_read_with_managed_only_honoured() {
        let dir = std::env::temp_dir().join(format!("distex-perm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let user = write("user.json", r#"{"permissions":{"allow":["Bash(make:*)","Read"],"deny":["Bash(rm:*)"]}}"#);
        let managed = write("managed.json", r#"{"permissions":{"ask":["Bash(git push:*)"]}}"#);
        let parent = write("parent.json", r#"{"permissions":{"allow":["Bash"],"deny":["Bash(curl:*)"]}}"#);
        let locations = Locations {
            full: vec![user.clone(), managed.clone(), dir.join("missing.json")],
            managed: vec![managed.clone()],
            guard_only: vec![parent.clone()],
            project: None,
        };
        let rules = load(&locations).unwrap();
        let written = |l: &[BashRule]| l.iter().map(|r| r.written.clone()).collect::<Vec<_>>();
        assert_eq!(written(&rules.allow), ["Bash(make:*)"], "a parent directory's allow rules do not count");
        assert_eq!(written(&rules.deny), ["Bash(rm:*)", "Bash(curl:*)"]);
        assert_eq!(written(&rules.ask), ["Bash(git push:*)"]);
        assert_eq!(rules.deny[1].source, parent);
        // A managed policy that keeps only its own rules.
        write("managed.json", r#"{"allowManagedPermissionRulesOnly":true,"permissions":{"allow":["Bash(ls:*)"]}}"#);
        let rules = load(&locations).unwrap();
        assert_eq!(written(&rules.allow), ["Bash(ls:*)"]);
        assert_eq!(written(&rules.deny), ["Bash(rm:*)", "Bash(curl:*)"], "deny rules still count");
        // A file that is not JSON is an error naming it.
        write("user.json", "{ not json");
        let error = load(&locations).unwrap_err();
        assert!(error.contains("user.json") && error.contains("not valid JSON"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn harmless_prefixes_are_looked_past_for_allow_rules() {
        assert_eq!(allow_forms("make -j8"), ["make -j8"]);
        assert_eq!(
            allow_forms("RUST_LOG=debug timeout -k 5 600 make -j8"),
            ["RUST_LOG=debug timeout -k 5 600 make -j8", "timeout -k 5 600 make -j8", "make -j8"]
        );
        assert_eq!(allow_forms("nice -n 5 nohup make"), ["nice -n 5 nohup make", "nohup make", "make"]);
        assert_eq!(allow_forms("stdbuf -oL -e 0 make"), ["stdbuf -oL -e 0 make", "make"]);
        assert_eq!(allow_forms("time make"), ["time make", "make"]);
        // Not harmless: kept whole.
        assert_eq!(allow_forms("PATH=/tmp make"), ["PATH=/tmp make"]);
        assert_eq!(allow_forms("RUST_LOG=$X make"), ["RUST_LOG=$X make"]);
        assert_eq!(allow_forms("timeout make"), ["timeout make"]);
        assert_eq!(allow_forms("nohup"), ["nohup"]);
    }

    #[test]
    fn cd_within_the_project_needs_no_rule() {
        let project = Some(Path::new("/home/me/app"));
        for yes in ["cd sub", "cd sub/dir", "cd ./x", "cd /home/me/app/x"] {
            assert!(is_cd_within(yes, project), "{yes}");
        }
        for no in ["cd", "cd ..", "cd a/../../x", "cd /tmp", "cd ~", "cd $HOME", "cd 'a b'", "cdx y", "cd *"] {
            assert!(!is_cd_within(no, project), "{no}");
        }
        assert!(!is_cd_within("cd /home/me/app/x", None));
    }
}

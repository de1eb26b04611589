//! Shell parsing: from a command line to the simple commands it would run.
//!
//! brush-parser gives us a real bash AST. We walk all of it (lists,
//! pipelines, subshells, brace groups, `if`/`for`/`while`/`case`, function
//! bodies) and collect every simple command as a list of words with quotes
//! removed. Command substitutions (`$(...)`, backticks) and process
//! substitutions found anywhere, in arguments, assignments, redirections or
//! inside double quotes, are parsed in turn, because they run too.
//! Comments never reach us: the parser drops them. A shell fed a script on
//! stdin (`bash <<'EOF' ... EOF`, `bash -s <<< 'make'`) runs that script, so
//! its text is parsed as commands too.
//!
//! The parser is recursive, so a line nested thousands of levels deep
//! (`{ { { ...`, `$($($(...`, `${a:-${a:-...`) would overflow the stack.
//! [`nesting_depth`] measures the nesting with a cheap scan first and such a
//! line is refused as "too deeply nested" before it reaches the parser.

use brush_parser::ast::{self, Command, CommandPrefixOrSuffixItem, CompoundCommand, IoFileRedirectTarget, IoRedirect};
use brush_parser::word::{self, WordPiece, WordPieceWithSource};
use brush_parser::{Parser, ParserOptions};

/// How deep nested `$(...)`/`bash -c` parsing may go before giving up.
pub(crate) const MAX_DEPTH: usize = 16;

/// The deepest bracket/keyword nesting a line may have to be parsed at all.
/// Real command lines stay far below; the parser needs well under 2 MiB of
/// stack (a test thread's) at this depth.
pub(crate) const MAX_NESTING: usize = 100;

/// The shells whose script may come from a `-c` word or from stdin.
pub(crate) const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash"];

/// The line is not valid shell (an unclosed quote, a stray `)`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseFailure(pub String);

impl std::fmt::Display for ParseFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every simple command in `line`, in execution order, as unquoted words.
/// A word whose value is only known at run time (`$CC`) keeps its `$` text.
pub(crate) fn simple_commands(line: &str) -> Result<Vec<Vec<String>>, ParseFailure> {
    Ok(script(line)?.commands)
}

/// What a line runs, and the command names it defines for itself.
pub(crate) struct Script {
    /// Every simple command, as [`simple_commands`] gives them.
    pub(crate) commands: Vec<Vec<String>>,
    /// Names the line defines in its own shell, as functions (`crunch() {
    /// ...; }`, `function crunch { ...; }`) or aliases (`alias crunch=...`):
    /// calling one by that name looks nothing up on PATH. (Definitions
    /// inside `$(...)` or a nested `bash -c` live in another shell and are
    /// not counted.)
    pub(crate) defined: Vec<String>,
}

/// The simple commands of `line` and the names it defines.
pub(crate) fn script(line: &str) -> Result<Script, ParseFailure> {
    let mut commands = Vec::new();
    let functions = walk_line(line, 0, &mut commands)?;
    let aliases = commands
        .iter()
        .filter(|words| words.first().is_some_and(|w| w == "alias"))
        .flat_map(|words| words[1..].iter().filter_map(|a| Some(a.split_once('=')?.0.to_string())));
    let defined = functions.into_iter().chain(aliases).collect();
    Ok(Script { commands, defined })
}

pub(crate) fn collect_line(line: &str, depth: usize, out: &mut Vec<Vec<String>>) -> Result<(), ParseFailure> {
    walk_line(line, depth, out).map(drop)
}

/// Collects the simple commands of `line` into `out`; returns the names of
/// the functions it defines.
fn walk_line(line: &str, depth: usize, out: &mut Vec<Vec<String>>) -> Result<Vec<String>, ParseFailure> {
    if depth > MAX_DEPTH {
        return Err(ParseFailure("command is too deeply nested".into()));
    }
    let program = parse_program(line)?;
    let mut walker = Walker { depth, out, options: ParserOptions::default(), functions: Vec::new() };
    for list in &program.complete_commands {
        walker.list(list)?;
    }
    Ok(walker.functions)
}

/// The parsed line, once it is known to be shallow enough to parse safely.
pub(crate) fn parse_program(line: &str) -> Result<ast::Program, ParseFailure> {
    let depth = nesting_depth(line);
    if depth > MAX_NESTING {
        return Err(ParseFailure(format!(
            "command is too deeply nested ({depth} levels, at most {MAX_NESTING} are analyzed)"
        )));
    }
    let options = ParserOptions::default();
    let mut parser = Parser::new(std::io::Cursor::new(line), &options);
    parser.parse_program().map_err(|e| ParseFailure(e.to_string()))
}

/// The simple commands one parsed command runs (substitutions first), unwrapped.
pub(crate) fn command_words(command: &Command) -> Result<Vec<Vec<String>>, ParseFailure> {
    let mut out = Vec::new();
    Walker { depth: 0, out: &mut out, options: ParserOptions::default(), functions: Vec::new() }.command(command)?;
    Ok(out)
}

/// An upper bound on how deeply `line` nests: brackets and braces (which
/// also open `$(`, `${` and `$((`), and `if`/`case`/loop keywords in
/// command position. Quotes are not looked at, so a string full of brackets
/// counts too: such a line is refused, never mis-parsed.
pub(crate) fn nesting_depth(line: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let bytes = line.as_bytes();
    // Whether the next word would be a command name (where keywords count).
    let mut command_position = true;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'(' | b'{' => depth += 1,
            b')' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if matches!(b, b';' | b'&' | b'|' | b'(' | b')' | b'{' | b'}' | b'\n' | b'`') {
            command_position = true;
        } else if !b.is_ascii_whitespace() {
            let len = bytes[i..].iter().position(|c| c.is_ascii_whitespace() || b";&|(){}`".contains(c));
            let word = &bytes[i..i + len.unwrap_or(bytes.len() - i)];
            if command_position {
                match word {
                    b"if" | b"case" | b"for" | b"while" | b"until" | b"select" => depth += 1,
                    b"fi" | b"esac" | b"done" => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
            command_position = matches!(word, b"then" | b"do" | b"else" | b"elif" | b"if" | b"while" | b"until" | b"!");
            i += word.len();
            max = max.max(depth);
            continue;
        }
        max = max.max(depth);
        i += 1;
    }
    max
}

struct Walker<'a> {
    depth: usize,
    out: &'a mut Vec<Vec<String>>,
    options: ParserOptions,
    /// The names of the functions defined on the way.
    functions: Vec<String>,
}

type Walk = Result<(), ParseFailure>;

impl Walker<'_> {
    fn list(&mut self, list: &ast::CompoundList) -> Walk {
        for item in &list.0 {
            self.pipeline(&item.0.first)?;
            for next in &item.0.additional {
                let (ast::AndOr::And(p) | ast::AndOr::Or(p)) = next;
                self.pipeline(p)?;
            }
        }
        Ok(())
    }

    fn pipeline(&mut self, pipeline: &ast::Pipeline) -> Walk {
        pipeline.seq.iter().try_for_each(|c| self.command(c))
    }

    fn command(&mut self, command: &Command) -> Walk {
        match command {
            Command::Simple(simple) => self.simple(simple),
            Command::Compound(compound, redirects) => {
                self.compound(compound)?;
                redirects.iter().flat_map(|r| &r.0).try_for_each(|r| self.redirect(r))
            }
            Command::Function(def) => {
                self.functions.push(def.fname.value.clone());
                self.compound(&def.body.0)?;
                def.body.1.iter().flat_map(|r| &r.0).try_for_each(|r| self.redirect(r))
            }
            Command::ExtendedTest(_, redirects) => {
                redirects.iter().flat_map(|r| &r.0).try_for_each(|r| self.redirect(r))
            }
        }
    }

    fn compound(&mut self, compound: &CompoundCommand) -> Walk {
        match compound {
            CompoundCommand::Arithmetic(_) | CompoundCommand::ArithmeticForClause(_) => Ok(()),
            CompoundCommand::BraceGroup(g) => self.list(&g.list),
            CompoundCommand::Subshell(s) => self.list(&s.list),
            CompoundCommand::ForClause(f) => {
                for w in f.values.iter().flatten() {
                    self.word_text(&w.value)?;
                }
                self.list(&f.body.list)
            }
            CompoundCommand::CaseClause(c) => {
                self.word_text(&c.value.value)?;
                c.cases.iter().filter_map(|i| i.cmd.as_ref()).try_for_each(|l| self.list(l))
            }
            CompoundCommand::IfClause(i) => {
                self.list(&i.condition)?;
                self.list(&i.then)?;
                for e in i.elses.iter().flatten() {
                    if let Some(cond) = &e.condition {
                        self.list(cond)?;
                    }
                    self.list(&e.body)?;
                }
                Ok(())
            }
            CompoundCommand::WhileClause(w) | CompoundCommand::UntilClause(w) => {
                self.list(&w.0)?;
                self.list(&w.1.list)
            }
            CompoundCommand::Coprocess(c) => self.command(&c.body),
        }
    }

    fn simple(&mut self, simple: &ast::SimpleCommand) -> Walk {
        let mut words = Vec::new();
        let items = simple.prefix.iter().flat_map(|p| &p.0);
        for item in items {
            self.item(item, None)?;
        }
        if let Some(name) = &simple.word_or_name {
            words.push(self.word_text(&name.value)?);
        }
        for item in simple.suffix.iter().flat_map(|s| &s.0) {
            self.item(item, Some(&mut words))?;
        }
        if let Some(script) = self.stdin_script(simple, &words)? {
            // `bash <<'EOF' ... EOF`: the shell runs the document's commands.
            return collect_line(&script, self.depth + 1, self.out);
        }
        if !words.is_empty() {
            // Substitutions found in the words were pushed first: they run
            // before the command itself, which keeps `out` in execution order.
            self.out.push(words);
        }
        Ok(())
    }

    /// The script a shell reads from a here-document or here-string, when
    /// `words` is a shell given no script file and no `-c`.
    fn stdin_script(&mut self, simple: &ast::SimpleCommand, words: &[String]) -> Result<Option<String>, ParseFailure> {
        let Some(name) = words.first().map(|w| w.rsplit('/').next().unwrap_or(w)) else {
            return Ok(None);
        };
        let reads_stdin = SHELLS.contains(&name)
            && words[1..]
                .iter()
                .all(|w| w.starts_with(['-', '+']) && !(w.len() > 1 && !w.starts_with("--") && w.contains('c')));
        if !reads_stdin {
            return Ok(None);
        }
        let items = simple.prefix.iter().flat_map(|p| &p.0).chain(simple.suffix.iter().flat_map(|s| &s.0));
        for item in items {
            match item {
                CommandPrefixOrSuffixItem::IoRedirect(IoRedirect::HereDocument(_, doc)) => {
                    return Ok(Some(doc.doc.value.clone()));
                }
                CommandPrefixOrSuffixItem::IoRedirect(IoRedirect::HereString(_, w)) => {
                    return self.word_text(&w.value).map(Some);
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// A prefix/suffix item: words become arguments (when `words` is given),
    /// substitutions anywhere are parsed as commands of their own.
    fn item(&mut self, item: &CommandPrefixOrSuffixItem, words: Option<&mut Vec<String>>) -> Walk {
        match item {
            CommandPrefixOrSuffixItem::Word(w) => {
                let text = self.word_text(&w.value)?;
                if let Some(words) = words {
                    words.push(text);
                }
                Ok(())
            }
            CommandPrefixOrSuffixItem::AssignmentWord(_, w) => {
                let text = self.word_text(&w.value)?;
                if let Some(words) = words {
                    words.push(text);
                }
                Ok(())
            }
            CommandPrefixOrSuffixItem::IoRedirect(r) => self.redirect(r),
            CommandPrefixOrSuffixItem::ProcessSubstitution(_, sub) => self.list(&sub.list),
        }
    }

    fn redirect(&mut self, redirect: &IoRedirect) -> Walk {
        match redirect {
            IoRedirect::File(_, _, IoFileRedirectTarget::Filename(w) | IoFileRedirectTarget::Duplicate(w)) => {
                self.word_text(&w.value).map(drop)
            }
            IoRedirect::File(_, _, IoFileRedirectTarget::ProcessSubstitution(_, sub)) => self.list(&sub.list),
            IoRedirect::File(_, _, IoFileRedirectTarget::Fd(_)) => Ok(()),
            IoRedirect::HereString(_, w) | IoRedirect::OutputAndError(w, _) => self.word_text(&w.value).map(drop),
            IoRedirect::HereDocument(_, doc) if doc.requires_expansion => {
                let pieces =
                    word::parse_heredoc(&doc.doc.value, &self.options).map_err(|e| ParseFailure(e.to_string()))?;
                self.pieces_text(&pieces).map(drop)
            }
            IoRedirect::HereDocument(..) => Ok(()),
        }
    }

    /// The word with quoting removed; parses any substitutions inside it.
    fn word_text(&mut self, raw: &str) -> Result<String, ParseFailure> {
        let pieces = word::parse(raw, &self.options).map_err(|e| ParseFailure(e.to_string()))?;
        self.pieces_text(&pieces)
    }

    fn pieces_text(&mut self, pieces: &[WordPieceWithSource]) -> Result<String, ParseFailure> {
        let mut text = String::new();
        for piece in pieces {
            match &piece.piece {
                WordPiece::Text(s) | WordPiece::SingleQuotedText(s) | WordPiece::AnsiCQuotedText(s) => text.push_str(s),
                WordPiece::EscapeSequence(s) => text.push_str(s.strip_prefix('\\').unwrap_or(s)),
                WordPiece::DoubleQuotedSequence(inner) | WordPiece::GettextDoubleQuotedSequence(inner) => {
                    text.push_str(&self.pieces_text(inner)?)
                }
                WordPiece::TildeExpansion(_) => text.push('~'),
                WordPiece::ParameterExpansion(_) => text.push('$'),
                WordPiece::CommandSubstitution(inner) | WordPiece::BackquotedCommandSubstitution(inner) => {
                    collect_line(inner, self.depth + 1, self.out)?;
                    text.push_str("$(...)");
                }
                WordPiece::ArithmeticExpression(_) => text.push_str("$((...))"),
            }
        }
        Ok(text)
    }
}

/// Quotes `word` for a POSIX shell so that it stays exactly one word with
/// nothing expanded: wrap it in single quotes (inside which nothing is
/// special) and write each single quote as `'\''` (close, escaped quote,
/// reopen). Plain words such as node names are left bare for readability.
/// This is distex's one shell-quoting function: everything it puts into a
/// shell command line (the rewritten line's `distex run`, the remote
/// wrapper, rsync's arguments, remote workers' arguments, probes) goes
/// through it.
pub(crate) fn sh_quote(word: &str) -> String {
    let plain = !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.,:/@%+=".contains(&b));
    if plain {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn quoting_survives_a_real_shell() {
        for word in ["plain", "two words", "it's", "'", "$HOME `id` \\ \"q\" !x", "", "a\nb"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", sh_quote(word)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), word, "quoted as {}", sh_quote(word));
        }
    }

    fn cmds(line: &str) -> Vec<Vec<String>> {
        simple_commands(line).unwrap()
    }

    #[test]
    fn functions_and_aliases_the_line_defines_are_named() {
        let defined = |line: &str| script(line).unwrap().defined;
        assert_eq!(defined("crunch() { make; }; crunch"), ["crunch"]);
        assert_eq!(defined("function crunch { make; }\ncrunch"), ["crunch"]);
        assert_eq!(defined("if true; then f() { :; }; fi; alias ll='ls -l' g=git; ll"), ["f", "ll", "g"]);
        assert_eq!(defined("crunch --all; alias; echo alias=x"), Vec::<String>::new());
        // Another shell's definitions are not this one's.
        assert_eq!(defined("x=$(f() { :; }; f); bash -c 'g() { :; }; g'"), Vec::<String>::new());
        // The function's body still runs: its commands are listed.
        assert_eq!(script("crunch() { make -j2; }; crunch").unwrap().commands, [vec!["make", "-j2"], vec!["crunch"]]);
    }

    #[test]
    fn quotes_are_removed_and_strings_stay_arguments() {
        assert_eq!(cmds("echo \"docker is great\""), vec![vec!["echo", "docker is great"]]);
        assert_eq!(cmds("'make' -j4"), vec![vec!["make", "-j4"]]);
        assert_eq!(cmds("ma\\ke"), vec![vec!["make"]]);
    }

    #[test]
    fn lists_pipelines_and_substitutions_all_count() {
        let c = cmds("cd x && make | tee log; echo $(docker ps) `uname`");
        let firsts: Vec<_> = c.iter().map(|w| w[0].as_str()).collect();
        assert_eq!(firsts, ["cd", "make", "tee", "docker", "uname", "echo"]);
    }

    #[test]
    fn comments_are_ignored() {
        assert_eq!(cmds("ls # docker ps"), vec![vec!["ls"]]);
    }

    #[test]
    fn deep_nesting_is_refused_before_the_parser_sees_it() {
        let braces = format!("{}true{}", "{ ".repeat(3000), "; }".repeat(3000));
        let subst = format!("echo {}x{}", "$(".repeat(8000), ")".repeat(8000));
        let default = format!("echo {}x{}", "${a:-".repeat(8000), "}".repeat(8000));
        let ifs = format!("{}true{}", "if true; then ".repeat(3000), "; fi".repeat(3000));
        let prose = format!("cat <<EOF\n{}EOF\nmake", "words for this and if that\n".repeat(500));
        assert_eq!(cmds(&prose), vec![vec!["cat"], vec!["make"]], "keywords in prose do not nest");
        for line in [braces, subst, default, ifs] {
            let err = simple_commands(&line).unwrap_err();
            assert!(err.0.contains("too deeply nested"), "{err}");
        }
    }

    #[test]
    fn the_deepest_accepted_line_parses_on_a_small_stack() {
        // Test threads have 2 MiB of stack, less than any main thread.
        let depth = MAX_NESTING - 1;
        let braces = format!("{}make{}", "{ ".repeat(depth), "; }".repeat(depth));
        assert_eq!(cmds(&braces), vec![vec!["make"]]);
        let defaults = format!("echo {}x{}", "${a:-".repeat(depth), "}".repeat(depth));
        assert_eq!(cmds(&defaults), vec![vec!["echo", "$"]]);
        let subst = |n: usize| format!("echo {}make{}", "$(".repeat(n), ")".repeat(n));
        assert_eq!(cmds(&subst(MAX_DEPTH)).len(), MAX_DEPTH + 1);
        let err = simple_commands(&subst(depth)).unwrap_err();
        assert!(err.0.contains("too deeply nested"), "{err}");
    }

    #[test]
    fn a_script_on_a_shells_stdin_runs() {
        assert_eq!(cmds("bash <<'EOF'\ncd x\nmake -j8\nEOF"), vec![vec!["cd", "x"], vec!["make", "-j8"]]);
        assert_eq!(cmds("bash -s <<< 'cargo build'"), vec![vec!["cargo", "build"]]);
        assert_eq!(cmds("cat <<EOF\nmake\nEOF"), vec![vec!["cat"]]);
    }

    #[test]
    fn unclosed_quote_fails() {
        assert!(simple_commands("echo 'oops").is_err());
    }
}

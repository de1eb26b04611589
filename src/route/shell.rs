//! Shell parsing: from a command line to the simple commands it would run.
//!
//! brush-parser gives us a real bash AST. We walk all of it (lists,
//! pipelines, subshells, brace groups, `if`/`for`/`while`/`case`, function
//! bodies) and collect every simple command as a list of words with quotes
//! removed. Command substitutions (`$(...)`, backticks) and process
//! substitutions found anywhere, in arguments, assignments, redirections or
//! inside double quotes, are parsed in turn, because they run too.
//! Comments never reach us: the parser drops them.

use brush_parser::ast::{self, Command, CommandPrefixOrSuffixItem, CompoundCommand, IoFileRedirectTarget, IoRedirect};
use brush_parser::word::{self, WordPiece, WordPieceWithSource};
use brush_parser::{Parser, ParserOptions};

/// How deep nested `$(...)`/`bash -c` parsing may go before giving up.
pub(crate) const MAX_DEPTH: usize = 16;

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
    let mut out = Vec::new();
    collect_line(line, 0, &mut out)?;
    Ok(out)
}

pub(crate) fn collect_line(line: &str, depth: usize, out: &mut Vec<Vec<String>>) -> Result<(), ParseFailure> {
    if depth > MAX_DEPTH {
        return Err(ParseFailure("command nests too deeply".into()));
    }
    let options = ParserOptions::default();
    let mut parser = Parser::new(std::io::Cursor::new(line), &options);
    let program = parser.parse_program().map_err(|e| ParseFailure(e.to_string()))?;
    let mut walker = Walker { depth, out, options };
    for list in &program.complete_commands {
        walker.list(list)?;
    }
    Ok(())
}

struct Walker<'a> {
    depth: usize,
    out: &'a mut Vec<Vec<String>>,
    options: ParserOptions,
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
        if !words.is_empty() {
            // Substitutions found in the words were pushed first: they run
            // before the command itself, which keeps `out` in execution order.
            self.out.push(words);
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cmds(line: &str) -> Vec<Vec<String>> {
        simple_commands(line).unwrap()
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
    fn unclosed_quote_fails() {
        assert!(simple_commands("echo 'oops").is_err());
    }
}

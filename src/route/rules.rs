//! Matching command words against rule patterns.
//!
//! A pattern is a program name plus the words that must follow it:
//! `"cargo build"` matches `cargo +nightly build --release` (options in
//! between are skipped) and `npm run build:prod` (a `:` suffix counts), but
//! never `cat Makefile` or `echo cargo build`: only the command word and its
//! subcommands are compared, never arguments.

use super::wrappers::basename;
use crate::config::Rule;

/// One rule that matched one of the line's commands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RuleMatch<'a> {
    pub(crate) rule: &'a Rule,
    /// The pattern that matched, e.g. `"cargo build"`.
    pub(crate) matched: String,
    /// The command (words) it matched in.
    pub(crate) command: Vec<String>,
}

/// Every rule that matches some command, in rule order (rules earlier in
/// the configuration take precedence). Each rule appears at most once, with
/// its first match in execution order.
pub(crate) fn match_rules<'a>(rules: &'a [Rule], commands: &[Vec<String>]) -> Vec<RuleMatch<'a>> {
    rules
        .iter()
        .filter_map(|rule| {
            commands.iter().find_map(|words| {
                rule.commands.iter().find(|pattern| pattern_matches(pattern, words)).map(|pattern| RuleMatch {
                    rule,
                    matched: pattern.clone(),
                    command: words.clone(),
                })
            })
        })
        .collect()
}

/// Whether `words` (one simple command) runs what `pattern` describes.
pub(crate) fn pattern_matches(pattern: &str, words: &[String]) -> bool {
    let mut pattern_words = pattern.split_whitespace();
    let (Some(program), Some(first)) = (pattern_words.next(), words.first()) else {
        return false;
    };
    if program_name(basename(program)) != program_name(basename(first)) {
        return false;
    }
    let mut rest = words[1..].iter();
    'pattern: for expected in pattern_words {
        for word in rest.by_ref() {
            if word == expected || word.strip_prefix(expected).is_some_and(|s| s.starts_with(':')) {
                continue 'pattern;
            }
            if !(word.starts_with('-') || word.starts_with('+')) {
                return false;
            }
        }
        return false;
    }
    true
}

/// `python3`, `python3.12` and `python` are one program for matching purposes.
fn program_name(name: &str) -> &str {
    let versioned = |base: &'static str| {
        name.strip_prefix(base).is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
    };
    if versioned("python") {
        "python"
    } else if versioned("pip") {
        "pip"
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::pattern_matches;

    fn m(pattern: &str, line: &str) -> bool {
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        pattern_matches(pattern, &words)
    }

    #[test]
    fn subcommands_and_options() {
        assert!(m("cargo build", "cargo +nightly build --release"));
        assert!(!m("cargo build", "cargo check"));
        assert!(m("python -m pytest", "python3.12 -u -m pytest -x"));
        assert!(m("npm run build", "npm run build:prod"));
        assert!(!m("npm run build", "npm run lint"));
        assert!(m("docker", "/usr/bin/docker ps"));
        assert!(m("./gradlew", "./gradlew test"));
        assert!(!m("docker", "docker-compose up"));
        assert!(!m("make", "cmake ."));
    }
}

//! Matching command words against rule patterns.
//!
//! A pattern is a program name plus the words that must follow it:
//! `"cargo build"` matches `cargo +nightly build --release` (options in
//! between are skipped) and `npm run build:prod` (a `:` suffix counts), but
//! never `cat Makefile` or `echo cargo build`: only the command word and its
//! subcommands are compared, never arguments. Both the pattern and the
//! command are first put in their canonical spelling
//! ([`super::programs::canonical`]), so `cargo b -r`, `npm --prefix web run
//! build` and `yarn test` meet `"cargo build"`, `"npm run build"` and
//! `"yarn test"`. A rule's regular expression (`pattern`) is matched against
//! the same canonical words joined by spaces, and only at the program name.
//!
//! Commands that only print something about the tool ([`is_trivial`]) match
//! no rule; commands whose effect belongs here ([`acts_here`]) match only a
//! pattern that names their subcommand.

use super::programs::{acts_here, canonical, is_trivial, program_name};
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
    let canon: Vec<Vec<String>> =
        commands.iter().filter(|c| !is_trivial(c)).map(|c| canonical(c)).filter(|c| !c.is_empty()).collect();
    rules
        .iter()
        .filter_map(|rule| {
            canon.iter().find_map(|words| {
                rule_matches(rule, words).map(|matched| RuleMatch { rule, matched, command: words.clone() })
            })
        })
        .collect()
}

/// The programs the rules name, as looked up on a PATH: what `distex nodes
/// --probe` checks on each node. Project files (`./gradlew`) are left out;
/// a regex pattern counts when it starts with a literal program name
/// (`^terraform ...`).
pub(crate) fn rule_programs(rules: &[Rule]) -> Vec<String> {
    let words = rules.iter().flat_map(|r| r.commands.iter().filter_map(|c| c.split_whitespace().next()));
    let from_patterns = rules.iter().filter_map(|r| {
        let text = r.pattern.as_ref()?.as_str().trim_start_matches('^');
        let name: String = text.chars().take_while(|c| c.is_ascii_alphanumeric() || "-_.+".contains(*c)).collect();
        (!name.is_empty() && !text[name.len()..].starts_with(['*', '?', '{', '|', '[', '(', '.'])).then_some(name)
    });
    let mut programs: Vec<String> =
        words.filter(|w| !w.contains('/')).map(|w| program_name(w).to_string()).chain(from_patterns).collect();
    programs.sort();
    programs.dedup();
    programs
}

/// What in `words` (one canonical command) `rule` matches, if anything.
fn rule_matches(rule: &Rule, words: &[String]) -> Option<String> {
    let by_words = rule.commands.iter().find(|pattern| canonical_pattern_matches(pattern, words)).cloned();
    by_words.or_else(|| {
        let pattern = rule.pattern.as_ref()?;
        pattern.matches_at_start(&words.join(" ")).map(str::to_string)
    })
}

/// Whether `words` (one simple command) runs what `pattern` describes.
#[cfg(test)]
pub(crate) fn pattern_matches(pattern: &str, words: &[String]) -> bool {
    !is_trivial(words) && canonical_pattern_matches(pattern, &canonical(words))
}

fn canonical_pattern_matches(pattern: &str, words: &[String]) -> bool {
    // Cheap test first: most patterns name another program.
    if pattern.split_whitespace().next().map(program_name) != words.first().map(String::as_str) {
        return false;
    }
    let pattern_words: Vec<String> = pattern.split_whitespace().map(String::from).collect();
    // A pattern whose next word is an option (`cmake --build`) names that option: keep it.
    let pattern_words = match pattern_words.get(1) {
        Some(next) if next.starts_with('-') && !pattern_words[0].starts_with("python") => {
            std::iter::once(program_name(&pattern_words[0]).to_string())
                .chain(pattern_words[1..].iter().cloned())
                .collect()
        }
        _ => canonical(&pattern_words),
    };
    let (Some(program), Some(first)) = (pattern_words.first(), words.first()) else {
        return false;
    };
    if program != first || (pattern_words.len() == 1 && acts_here(words)) {
        return false;
    }
    let mut rest = words[1..].iter();
    'pattern: for expected in &pattern_words[1..] {
        for word in rest.by_ref() {
            if word == expected || word.strip_prefix(expected.as_str()).is_some_and(|s| s.starts_with(':')) {
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

#[cfg(test)]
mod program_tests {
    use super::*;
    use crate::config::{Detected, Os, parse};

    #[test]
    fn the_programs_a_probe_checks_come_from_words_and_literal_pattern_heads() {
        let text = "[[rule]]\nname = \"tf\"\npattern = '^terraform (plan|apply)\\b'\n\n[[rule]]\nname = \"any\"\npattern = '^(a|b) x'\n";
        let detected = Detected { hostname: "h".into(), os: Os::Macos, cores: 2 };
        let config = parse(text, None, &detected).unwrap();
        let programs = rule_programs(&config.rules);
        assert!(programs.contains(&"terraform".to_string()), "{programs:?}");
        assert!(programs.contains(&"make".to_string()) && programs.contains(&"python".to_string()), "{programs:?}");
        assert!(!programs.iter().any(|p| p.contains('/') || p.is_empty() || p == "gradlew"), "{programs:?}");
        let tf = config.rule("tf").unwrap();
        let words = |l: &str| vec![l.split_whitespace().map(String::from).collect::<Vec<_>>()];
        assert_eq!(match_rules(std::slice::from_ref(tf), &words("terraform plan -out=x"))[0].matched, "terraform plan");
        assert!(match_rules(std::slice::from_ref(tf), &words("echo terraform plan")).is_empty());
        assert!(match_rules(std::slice::from_ref(tf), &words("terraform planet")).is_empty());
    }
}

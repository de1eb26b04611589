//! Looking through wrappers to the command that really runs.
//!
//! `sudo -u builder env CC=clang nice -n 5 make -j8` runs `make`;
//! `bash -lc 'cd x && cargo build'` runs `cd` and `cargo build`;
//! `npx jest` runs `jest`; `command -v docker` runs nothing at all.
//! Each wrapper is described by the options that take a value, so that an
//! option's value is never mistaken for the command.

use super::shell::{MAX_DEPTH, collect_line};

/// How to skip over one wrapper's own arguments.
struct Wrapper {
    name: &'static str,
    /// Short options (single letters) that consume a value.
    short_with_value: &'static str,
    /// Long options (without `--`) that consume the next word unless written `--opt=value`.
    long_with_value: &'static [&'static str],
    /// `NAME=value` words after the options are environment settings (env, sudo).
    assignments: bool,
    /// The first operand is not the command (timeout's DURATION, taskset's mask).
    leading_operands: usize,
}

const WRAPPERS: &[Wrapper] = &[
    Wrapper {
        name: "sudo",
        short_with_value: "ugCDhprtTU",
        long_with_value: &[
            "user",
            "group",
            "close-from",
            "chdir",
            "host",
            "prompt",
            "role",
            "type",
            "command-timeout",
            "other-user",
        ],
        assignments: true,
        leading_operands: 0,
    },
    Wrapper { name: "doas", short_with_value: "uC", long_with_value: &[], assignments: false, leading_operands: 0 },
    Wrapper {
        name: "env",
        short_with_value: "uC",
        long_with_value: &["unset", "chdir", "default-signal", "ignore-signal", "block-signal"],
        assignments: true,
        leading_operands: 0,
    },
    Wrapper {
        name: "time",
        short_with_value: "fo",
        long_with_value: &["format", "output"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "nice",
        short_with_value: "n",
        long_with_value: &["adjustment"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper { name: "nohup", short_with_value: "", long_with_value: &[], assignments: false, leading_operands: 0 },
    Wrapper {
        name: "timeout",
        short_with_value: "sk",
        long_with_value: &["signal", "kill-after"],
        assignments: false,
        leading_operands: 1,
    },
    Wrapper { name: "command", short_with_value: "", long_with_value: &[], assignments: false, leading_operands: 0 },
    Wrapper { name: "exec", short_with_value: "a", long_with_value: &[], assignments: false, leading_operands: 0 },
    Wrapper { name: "builtin", short_with_value: "", long_with_value: &[], assignments: false, leading_operands: 0 },
    Wrapper {
        name: "stdbuf",
        short_with_value: "ioe",
        long_with_value: &["input", "output", "error"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "ionice",
        short_with_value: "cnp",
        long_with_value: &["class", "classdata", "pid"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper { name: "taskset", short_with_value: "", long_with_value: &[], assignments: false, leading_operands: 1 },
    Wrapper { name: "chronic", short_with_value: "", long_with_value: &[], assignments: false, leading_operands: 0 },
    Wrapper {
        name: "xargs",
        short_with_value: "nILPsdEa",
        long_with_value: &[
            "max-args",
            "replace",
            "max-lines",
            "max-procs",
            "max-chars",
            "delimiter",
            "eof",
            "arg-file",
            "process-slot-var",
        ],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "npx",
        short_with_value: "pc",
        long_with_value: &["package", "call"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper { name: "pnpx", short_with_value: "", long_with_value: &[], assignments: false, leading_operands: 0 },
    Wrapper {
        name: "bunx",
        short_with_value: "p",
        long_with_value: &["package"],
        assignments: false,
        leading_operands: 0,
    },
];

/// Two-word wrappers: `uv run pytest`, `poetry run pytest`, `npm exec jest`.
const RUNNERS: &[(&str, &str)] = &[
    ("uv", "run"),
    ("poetry", "run"),
    ("pipenv", "run"),
    ("hatch", "run"),
    ("pdm", "run"),
    ("bundle", "exec"),
    ("npm", "exec"),
    ("pnpm", "exec"),
    ("pnpm", "dlx"),
    ("yarn", "exec"),
    ("yarn", "dlx"),
];

const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox sh"];

/// The last path component: `/usr/bin/docker` → `docker`.
pub(crate) fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// Replaces each simple command by the command(s) it really runs.
pub(crate) fn effective_commands(commands: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for words in commands {
        unwrap_into(&words, 0, &mut out);
    }
    out
}

fn unwrap_into(words: &[String], depth: usize, out: &mut Vec<Vec<String>>) {
    if words.is_empty() || depth > MAX_DEPTH {
        return;
    }
    let name = basename(&words[0]);
    if let Some(script) = shell_script(name, words) {
        // `bash -c SCRIPT`: the script's commands run. If it does not parse,
        // the shell would fail too; nothing of it counts.
        let mut inner = Vec::new();
        if collect_line(&script, depth + 1, &mut inner).is_ok() {
            for cmd in inner {
                unwrap_into(&cmd, depth + 1, out);
            }
        }
        return;
    }
    if name == "eval" {
        let mut inner = Vec::new();
        if collect_line(&words[1..].join(" "), depth + 1, &mut inner).is_ok() {
            inner.iter().for_each(|cmd| unwrap_into(cmd, depth + 1, out));
        }
        return;
    }
    if name == "env"
        && let Some(script) = env_split_string(words)
    {
        let mut inner = Vec::new();
        if collect_line(&script, depth + 1, &mut inner).is_ok() {
            inner.iter().for_each(|cmd| unwrap_into(cmd, depth + 1, out));
        }
        return;
    }
    if let Some(w) = WRAPPERS.iter().find(|w| w.name == name) {
        if name == "command"
            && words[1..].iter().take_while(|a| a.starts_with('-')).any(|a| a.contains('v') || a.contains('V'))
        {
            return; // `command -v docker` only looks the name up.
        }
        unwrap_into(skip_wrapper(w, &words[1..]), depth + 1, out);
        return;
    }
    if let Some(&(_, sub)) = RUNNERS.iter().find(|(n, _)| *n == name)
        && words.get(1).map(String::as_str) == Some(sub)
    {
        let rest = &words[2..];
        let start = rest.iter().position(|a| !a.starts_with('-')).unwrap_or(rest.len());
        unwrap_into(&rest[start..], depth + 1, out);
        return;
    }
    out.push(words.to_vec());
}

/// Skips a wrapper's options, assignments and leading operands; returns the wrapped command.
fn skip_wrapper<'a>(w: &Wrapper, args: &'a [String]) -> &'a [String] {
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        if arg == "--" {
            i += 1;
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            i += if !long.contains('=') && w.long_with_value.contains(&long) { 2 } else { 1 };
            continue;
        }
        if arg.len() > 1 && arg.starts_with('-') && arg != "-" {
            i += 1 + short_value_count(w, &arg[1..]);
            continue;
        }
        if w.name == "env" && arg == "-" {
            i += 1;
            continue;
        }
        break;
    }
    if w.assignments {
        while i < args.len() && is_assignment(&args[i]) {
            i += 1;
        }
    }
    let i = (i + w.leading_operands).min(args.len());
    &args[i..]
}

/// In `-Eu root`, the `u` takes the next word as its value unless letters follow it.
fn short_value_count(w: &Wrapper, cluster: &str) -> usize {
    if w.name == "nice" && cluster.chars().all(|c| c.is_ascii_digit()) {
        return 0; // `nice -10 cmd`
    }
    for (pos, c) in cluster.char_indices() {
        if w.short_with_value.contains(c) {
            return usize::from(pos + c.len_utf8() == cluster.len());
        }
    }
    0
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// For `bash -c SCRIPT` (any option cluster holding `c`, as in `-lc`), the script.
fn shell_script(name: &str, words: &[String]) -> Option<String> {
    if !SHELLS.contains(&name) {
        return None;
    }
    let mut args = words[1..].iter();
    let mut has_c = false;
    while let Some(arg) = args.next() {
        if arg == "-o" || arg == "+o" {
            args.next();
            continue;
        }
        if arg.starts_with('-') && !arg.starts_with("--") && arg.len() > 1 {
            has_c |= arg[1..].contains('c');
            continue;
        }
        if arg.starts_with("--") {
            continue;
        }
        return has_c.then(|| arg.clone());
    }
    None
}

/// `env -S 'cmd args'` / `env --split-string=...`: the string is a command line.
fn env_split_string(words: &[String]) -> Option<String> {
    let mut args = words[1..].iter();
    while let Some(arg) = args.next() {
        if arg == "-S" || arg == "--split-string" {
            return args.next().cloned();
        }
        if let Some(v) = arg.strip_prefix("--split-string=") {
            return Some(v.to_string());
        }
        if let Some(v) = arg.strip_prefix("-S").filter(|v| !v.is_empty()) {
            return Some(v.to_string());
        }
        if !arg.starts_with('-') {
            break;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(words: &[&str]) -> Vec<Vec<String>> {
        effective_commands(vec![words.iter().map(|s| s.to_string()).collect()])
    }

    #[test]
    fn sudo_env_nice_timeout_are_looked_through() {
        assert_eq!(
            run(&[
                "sudo", "-u", "root", "-E", "env", "A=1", "nice", "-n", "5", "timeout", "-s", "KILL", "60", "make",
                "-j"
            ])[0][0],
            "make"
        );
        assert_eq!(run(&["sudo", "-Eu", "root", "docker", "ps"])[0][0], "docker");
    }

    #[test]
    fn bash_c_is_parsed() {
        let out = run(&["bash", "-lc", "cd x && cargo build"]);
        assert_eq!(out, vec![vec!["cd", "x"], vec!["cargo", "build"]]);
    }

    #[test]
    fn command_v_runs_nothing() {
        assert!(run(&["command", "-v", "docker"]).is_empty());
        assert_eq!(run(&["command", "docker", "ps"])[0][0], "docker");
    }
}

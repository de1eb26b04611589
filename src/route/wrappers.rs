//! Looking through wrappers to the command that really runs.
//!
//! `sudo -u builder env CC=clang nice -n 5 make -j8` runs `make`;
//! `bash -lc 'cd x && cargo build'` runs `cd` and `cargo build`;
//! `npx jest` runs `jest`; `command -v docker` runs nothing at all.
//! Each wrapper is described by the options that take a value, so that an
//! option's value is never mistaken for the command.

use super::shell::{MAX_DEPTH, SHELLS, collect_line};

/// How to skip over one wrapper's own arguments.
struct Wrapper {
    name: &'static str,
    /// The subcommand that makes the program a wrapper: `run` in `uv run`.
    sub: Option<&'static str>,
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
        sub: None,
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
    Wrapper {
        sub: None,
        name: "doas",
        short_with_value: "uC",
        long_with_value: &[],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        sub: None,
        name: "env",
        short_with_value: "uC",
        long_with_value: &["unset", "chdir", "default-signal", "ignore-signal", "block-signal"],
        assignments: true,
        leading_operands: 0,
    },
    Wrapper {
        sub: None,
        name: "time",
        short_with_value: "fo",
        long_with_value: &["format", "output"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        sub: None,
        name: "nice",
        short_with_value: "n",
        long_with_value: &["adjustment"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        sub: None,
        name: "nohup",
        short_with_value: "",
        long_with_value: &[],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        sub: None,
        name: "timeout",
        short_with_value: "sk",
        long_with_value: &["signal", "kill-after"],
        assignments: false,
        leading_operands: 1,
    },
    Wrapper {
        sub: None,
        name: "command",
        short_with_value: "",
        long_with_value: &[],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        sub: None,
        name: "exec",
        short_with_value: "a",
        long_with_value: &[],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        sub: None,
        name: "builtin",
        short_with_value: "",
        long_with_value: &[],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        sub: None,
        name: "stdbuf",
        short_with_value: "ioe",
        long_with_value: &["input", "output", "error"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        sub: None,
        name: "ionice",
        short_with_value: "cnp",
        long_with_value: &["class", "classdata", "pid"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        sub: None,
        name: "taskset",
        short_with_value: "",
        long_with_value: &[],
        assignments: false,
        leading_operands: 1,
    },
    Wrapper {
        sub: None,
        name: "chronic",
        short_with_value: "",
        long_with_value: &[],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        sub: None,
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
        sub: None,
        name: "npx",
        short_with_value: "pc",
        long_with_value: &["package", "call"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        sub: None,
        name: "pnpx",
        short_with_value: "",
        long_with_value: &[],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        sub: None,
        name: "bunx",
        short_with_value: "p",
        long_with_value: &["package"],
        assignments: false,
        leading_operands: 0,
    },
];

/// Two-word wrappers (`uv run pytest`, `poetry run pytest`, `npm exec
/// jest`) and a few more one-word ones (`caffeinate -i make`, `flock
/// /tmp/l make`), each with the options that take a value: in `uv run
/// --with pytest python report.py` the command is `python report.py`.
const RUNNERS: &[Wrapper] = &[
    Wrapper {
        name: "uv",
        sub: Some("run"),
        short_with_value: "pfiPC",
        long_with_value: &[
            "with",
            "with-editable",
            "with-requirements",
            "python",
            "package",
            "extra",
            "group",
            "only-group",
            "no-group",
            "env-file",
            "directory",
            "project",
            "index",
            "default-index",
            "index-url",
            "extra-index-url",
            "find-links",
            "exclude-newer",
            "color",
            "cache-dir",
            "config-file",
            "resolution",
            "prerelease",
            "link-mode",
            "upgrade-package",
            "reinstall-package",
            "keyring-provider",
            "index-strategy",
            "config-setting",
            "refresh-package",
            "python-platform",
            "no-binary-package",
            "no-build-package",
        ],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "uvx",
        sub: None,
        short_with_value: "pfiw",
        long_with_value: &[
            "from",
            "with",
            "with-editable",
            "with-requirements",
            "python",
            "index",
            "index-url",
            "extra-index-url",
            "find-links",
            "directory",
        ],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "poetry",
        sub: Some("run"),
        short_with_value: "CP",
        long_with_value: &["directory", "project"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "pipenv",
        sub: Some("run"),
        short_with_value: "",
        long_with_value: &[],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "hatch",
        sub: Some("run"),
        short_with_value: "",
        long_with_value: &[],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "pdm",
        sub: Some("run"),
        short_with_value: "p",
        long_with_value: &["project"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "rye",
        sub: Some("run"),
        short_with_value: "",
        long_with_value: &["pyproject"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "pixi",
        sub: Some("run"),
        short_with_value: "e",
        long_with_value: &["environment", "manifest-path"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "conda",
        sub: Some("run"),
        short_with_value: "np",
        long_with_value: &["name", "prefix", "cwd"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "mamba",
        sub: Some("run"),
        short_with_value: "np",
        long_with_value: &["name", "prefix", "cwd"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "micromamba",
        sub: Some("run"),
        short_with_value: "np",
        long_with_value: &["name", "prefix", "cwd"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "bundle",
        sub: Some("exec"),
        short_with_value: "",
        long_with_value: &[],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "npm",
        sub: Some("exec"),
        short_with_value: "wc",
        long_with_value: &["package", "call", "workspace", "prefix"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "pnpm",
        sub: Some("exec"),
        short_with_value: "CF",
        long_with_value: &["dir", "filter"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "pnpm",
        sub: Some("dlx"),
        short_with_value: "",
        long_with_value: &["package"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "yarn",
        sub: Some("exec"),
        short_with_value: "",
        long_with_value: &[],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "yarn",
        sub: Some("dlx"),
        short_with_value: "p",
        long_with_value: &["package"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "bun",
        sub: Some("x"),
        short_with_value: "",
        long_with_value: &[],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "op",
        sub: Some("run"),
        short_with_value: "",
        long_with_value: &["env-file", "account"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "aws-vault",
        sub: Some("exec"),
        short_with_value: "",
        long_with_value: &["duration", "region", "mfa-token"],
        assignments: false,
        leading_operands: 1,
    },
    Wrapper {
        name: "direnv",
        sub: Some("exec"),
        short_with_value: "",
        long_with_value: &[],
        assignments: false,
        leading_operands: 1,
    },
    Wrapper {
        name: "dotenv",
        sub: None,
        short_with_value: "efvc",
        long_with_value: &[],
        assignments: false,
        leading_operands: 0,
    },
    // macOS: keep the machine awake (`caffeinate -i make`), run under another architecture (`arch -x86_64 make`).
    Wrapper {
        name: "caffeinate",
        sub: None,
        short_with_value: "tw",
        long_with_value: &[],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "arch",
        sub: None,
        short_with_value: "e",
        long_with_value: &["arch"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "flock",
        sub: None,
        short_with_value: "wEc",
        long_with_value: &["timeout", "conflict-exit-code", "command"],
        assignments: false,
        leading_operands: 1,
    },
    Wrapper {
        name: "setsid",
        sub: None,
        short_with_value: "",
        long_with_value: &[],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "unbuffer",
        sub: None,
        short_with_value: "",
        long_with_value: &[],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "xvfb-run",
        sub: None,
        short_with_value: "nsefpw",
        long_with_value: &["server-num", "server-args", "error-file", "auth-file", "xauth-protocol", "wait"],
        assignments: false,
        leading_operands: 0,
    },
    Wrapper {
        name: "chrt",
        sub: None,
        short_with_value: "",
        long_with_value: &[],
        assignments: false,
        leading_operands: 1,
    },
    Wrapper {
        name: "valgrind",
        sub: None,
        short_with_value: "",
        long_with_value: &[],
        assignments: false,
        leading_operands: 0,
    },
];

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
    if let Some(w) =
        RUNNERS.iter().find(|w| w.name == name && w.sub.is_none_or(|s| words.get(1).is_some_and(|w| w == s)))
    {
        let args = &words[1 + usize::from(w.sub.is_some())..];
        if w.name == "uv"
            && let Some(module) = uv_module(w, args)
        {
            // `uv run -m pytest` runs `python -m pytest`.
            out.push(["python".to_string(), "-m".to_string()].into_iter().chain(module.iter().cloned()).collect());
            return;
        }
        unwrap_into(skip_wrapper(w, args), depth + 1, out);
        return;
    }
    if let Some(bin) = script_or_binary(words) {
        // `yarn jest` runs the `jest` script, or the `jest` binary when there is no such script.
        out.push(words.to_vec());
        unwrap_into(bin, depth + 1, out);
        return;
    }
    out.push(words.to_vec());
}

/// For `uv run [options] -m MODULE args`, `MODULE args`.
fn uv_module<'a>(w: &Wrapper, args: &'a [String]) -> Option<&'a [String]> {
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        if arg == "-m" || arg == "--module" {
            return Some(&args[i + 1..]);
        }
        if !arg.starts_with('-') || arg == "--" {
            return None;
        }
        let takes = match arg.strip_prefix("--") {
            Some(long) => !long.contains('=') && w.long_with_value.contains(&long),
            None => short_value_count(w, &arg[1..]) == 1,
        };
        i += if takes { 2 } else { 1 };
    }
    None
}

/// `yarn jest ...`, `pnpm vitest ...`, `bun x ...`: a word that is not the
/// package manager's own command names a script or, failing that, a
/// binary of the project: the words from that name on.
fn script_or_binary(words: &[String]) -> Option<&[String]> {
    let name = basename(&words[0]);
    if !matches!(name, "yarn" | "pnpm" | "bun") {
        return None;
    }
    let canon = super::programs::canonical(words);
    if canon.get(1).map(String::as_str) != Some("run") {
        return None;
    }
    let script = canon.get(2)?;
    let at = words.iter().skip(1).position(|w| w == script)? + 1;
    Some(&words[at..])
}

/// The program the shell looks up on PATH for `words`, seen through
/// transparent wrappers (`sudo`, `env`, `time`, `nice`, ...) but not through
/// runners (`uv run`, `npx`, `yarn`), which find their program themselves.
pub(crate) fn looked_up_program(words: &[String]) -> Option<String> {
    let mut words = words;
    for _ in 0..MAX_DEPTH {
        let name = basename(words.first()?);
        match WRAPPERS.iter().find(|w| w.name == name) {
            Some(w) if name != "command" || words.len() > 1 => words = skip_wrapper(w, &words[1..]),
            _ => return Some(super::programs::program_name(name).to_string()),
        }
    }
    None
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

//! Claude Code hooks: `distex hook pre-tool-use`.
//!
//! Claude Code runs the PreToolUse hook before every Bash command it is about
//! to execute, so this path has four duties, in this order:
//!
//! 1. **Never break the session.** Unreadable input, a broken config, an
//!    unknown tool, even a bug (panic) all end the same way: exit status 0,
//!    no rewrite — Claude Code then runs the command as it was — and one line
//!    in `hook.log` in distex's state directory saying why. What the user must
//!    know (a broken config, no nodes) is also said once per session as a
//!    `systemMessage` ([`session`]).
//! 2. **Never go around the user's permission rules.** A command that one of
//!    the user's Claude Code deny or ask rules matches (any part of it) is
//!    left alone; one their allow rules allow is allowed once rewritten too
//!    ([`permissions`]).
//! 3. **Be fast.** No async runtime, no network (node health comes from the
//!    cache `distex nodes --probe` and `distex run` keep), one config load,
//!    one parse of the command line; Claude Code's settings files are read
//!    only for a command that would be routed.
//! 4. **Route.** Ask the same router as `distex route`; when it says
//!    "distribute", answer per `hook.mode` ([`respond`]).
//!
//! [`input`] reads Claude Code's JSON, [`respond`] is the pure decision of
//! what to answer, [`log`] is the log file; this module is the I/O edge.

pub(crate) mod input;
pub(crate) mod log;
pub(crate) mod permissions;
pub(crate) mod respond;
pub(crate) mod session;

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use crate::config::{self, Config, HookMode};
use crate::route::{self, Decision};
use permissions::{Locations, Parts, Verdict};
use respond::{HookOutput, Permission};

/// Claude Code's hook input is a few KB; anything far larger is not for us.
const MAX_INPUT: u64 = 4 << 20;

/// Commands longer than this are not routed: the hook answers at once and
/// the command runs here as it was (with a note in the hook log). Parsing
/// and routing take time in proportion to a command's length, and Claude
/// Code waits for the hook before every command: a machine-generated
/// command of megabytes would otherwise take seconds of that budget.
pub(crate) const MAX_ROUTED_COMMAND: usize = 64 << 10;

/// Runs the PreToolUse hook with stdin/stdout; returns the exit status (always 0).
pub(crate) fn pre_tool_use(config_flag: Option<&Path>) -> u8 {
    // A panic must not reach Claude Code as a backtrace or a non-zero status
    // it could misread: log it and let the command run as it was.
    std::panic::set_hook(Box::new(|info| log::append(&format!("internal error (bug in distex): {info}"))));
    let answered = std::panic::catch_unwind(|| answer(config_flag));
    match answered {
        Ok(Ok(Some(output))) => {
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout.write_all(output.as_bytes()).and_then(|()| stdout.flush()) {
                log::append(&format!("cannot write the answer to Claude Code: {e}"));
            }
        }
        Ok(Ok(None)) => {}
        Ok(Err(why)) => log::append(&why),
        Err(_) => {} // already logged by the panic hook
    }
    0
}

/// The whole hook: Ok(None) means "say nothing"; Err is a line for the log.
fn answer(config_flag: Option<&Path>) -> Result<Option<String>, String> {
    let event = read_event()?;
    let Some(command) = event.bash_command() else {
        return Err(format!(
            "ignoring a {:?} call: distex only routes Bash tool calls with a command",
            event.tool_name
        ));
    };
    if command.len() > MAX_ROUTED_COMMAND {
        return Err(format!(
            "a command of {} bytes is longer than the {} KiB the hook routes: left to run here as it was",
            command.len(),
            MAX_ROUTED_COMMAND >> 10
        ));
    }
    let session = event.session_id.as_deref().unwrap_or_default();
    let config = match config::load(config_flag) {
        Ok(config) => config,
        Err(e) => {
            log::append(&format!("config error, command left alone: {e}"));
            let text = format!(
                "distex: its config has an error, so commands run on this machine until it is fixed: {}",
                first_line(&e.to_string())
            );
            return encode(once(session, "config-error", &text));
        }
    };
    if config.hook.mode == HookMode::Off {
        return Ok(None);
    }
    if config.nodes.is_empty() {
        return encode(once(session, "no-nodes", &no_nodes(&config)));
    }
    encode(route_command(&config, &event, command, session))
}

fn read_event() -> Result<input::PreToolUse, String> {
    if std::io::stdin().is_terminal() {
        return Err("stdin is a terminal: `distex hook pre-tool-use` is run by Claude Code with JSON on stdin".into());
    }
    let mut raw = String::new();
    std::io::stdin()
        .take(MAX_INPUT + 1)
        .read_to_string(&mut raw)
        .map_err(|e| format!("cannot read the hook input from stdin: {e}"))?;
    if raw.len() as u64 > MAX_INPUT {
        return Err(format!("ignoring hook input over {} MiB: the command is left to run here", MAX_INPUT >> 20));
    }
    input::parse(&raw).map_err(|e| format!("ignoring unreadable hook input: {e}"))
}

/// Routes `command`, checks the user's permission rules, and builds the answer.
fn route_command(config: &Config, event: &input::PreToolUse, command: &str, session: &str) -> Option<HookOutput> {
    // A line that does not parse is left to Claude Code: no rule could be
    // judged part by part.
    let simple = route::simple_commands(command).ok()?;
    let effective = route::effective_commands(simple.clone());
    let facts = crate::state::LoadFacts::read(Default::default());
    let decision = route::decide(config, command, &effective, &facts);
    // Which parts run where: local parts stay as written (a plan that keeps
    // the whole line here makes the decision local).
    let decision = route::plan_parts(config, command, decision, &facts);
    if !decision.distribute || effective.iter().any(|words| program(words) == "distex") {
        return None;
    }
    // Sent away only because this machine is busy: a suggestion, made only
    // for commands worth moving, once per session (after the rules below).
    let overload_only = decision.rule.is_none();
    if overload_only && !worth_moving(&effective) {
        return None;
    }
    let rewritten = respond::rewritten(&decision, decision.node.as_deref().unwrap_or_default(), command);
    let parts = |project: Option<&Path>| Parts::of(command, &simple, &effective, project);
    let allowed_by = match check_permissions(event, session, &rewritten, parts) {
        Checked::Go { allowed_by } => allowed_by,
        Checked::Stop(answer) => return answer,
    };
    if overload_only && !session::first_time(session, "overload-suggestion") {
        return None;
    }
    let permission =
        Permission { allowed_by: allowed_by.as_deref(), may_approve: event.permission_mode.as_deref() != Some("plan") };
    let reply = respond::respond(&config.hook, event, &decision, permission)?;
    announce(config, &decision, &reply);
    Some(reply)
}

/// What the user's Claude Code rules mean for the hook.
enum Checked {
    /// Go on; `allowed_by` describes the allow rules that allow the command.
    Go { allowed_by: Option<String> },
    /// Stop here with this answer (None: say nothing).
    Stop(Option<HookOutput>),
}

/// Reads the user's Claude Code rules and judges the command's `parts` (made
/// knowing the session's project directory): a deny or ask rule stops the
/// hook silently, and so does a deny rule that matches the `rewritten` line
/// or any part of it (`Bash(distex:*)`: the user does not want distex to run
/// commands; when only some parts move, the rewritten line is a compound
/// command whose `distex run` parts Claude Code judges one by one);
/// settings that cannot be read stop it and are told once per session.
/// Whether the user's allow rules allow the command is judged on the
/// original `parts` only: the rewrite runs those same parts.
fn check_permissions(
    event: &input::PreToolUse,
    session: &str,
    rewritten: &str,
    parts: impl FnOnce(Option<&Path>) -> Parts,
) -> Checked {
    let locations = Locations::for_session(event.cwd.as_deref().map(Path::new));
    let parts = parts(locations.project.as_deref());
    let rules = match permissions::load(&locations) {
        Ok(rules) => rules,
        Err(e) => {
            log::append(&format!("command left alone: {e}"));
            return Checked::Stop(once(
                session,
                "settings-error",
                &format!("distex: routing is off until this is fixed: {e}"),
            ));
        }
    };
    match permissions::judge(&rules, &parts) {
        Verdict::Guarded { behavior, rule, part } => {
            log::append(&format!(
                "left alone for Claude Code to judge: {} rule {} ({}) matches `{}`",
                behavior.as_str(),
                rule.written,
                rule.source.display(),
                respond::one_line(&part, 200)
            ));
            Checked::Stop(None)
        }
        _ if let Some((rule, part)) = denied_rewrite(&rules, rewritten) => {
            log::append(&format!(
                "left alone: deny rule {} ({}) matches `{}` of the rewritten `{}`",
                rule.written,
                rule.source.display(),
                respond::one_line(&part, 200),
                respond::one_line(rewritten, 200)
            ));
            Checked::Stop(None)
        }
        Verdict::Allowed { rules } => {
            let described = rules.iter().map(|r| format!("{} in {}", r.written, r.source.display()));
            Checked::Go { allowed_by: Some(described.collect::<Vec<_>>().join(", ")) }
        }
        Verdict::Undecided => Checked::Go { allowed_by: None },
    }
}

/// The deny rule that matches the `rewritten` line or one of its parts (in
/// every form the hook tries deny rules against), and that part.
fn denied_rewrite<'r>(rules: &'r permissions::Rules, rewritten: &str) -> Option<(&'r permissions::BashRule, String)> {
    let parts = match route::simple_commands(rewritten) {
        Ok(simple) => Parts::of(rewritten, &simple, &route::effective_commands(simple.clone()), None),
        Err(_) => Parts { guard: vec![rewritten.to_string()], allow: None },
    };
    rules.deny.iter().find_map(|rule| parts.guard.iter().find(|p| rule.pattern.matches(p)).map(|p| (rule, p.clone())))
}

/// Speaks only when the command really goes elsewhere (not for a
/// suggestion). Starts the TTS program and returns at once.
fn announce(config: &Config, decision: &Decision, reply: &HookOutput) {
    let rewritten = reply.hook_specific_output.as_ref().is_some_and(|o| o.updated_input.is_some());
    if config.announce.speak
        && rewritten
        && let Some(text) = decision.announcement.as_deref()
        && let Some(warning) = crate::announce::speak(&config.announce, text)
    {
        log::append(&warning);
    }
}

/// The notice, the first time `what` happens in `session`; None after that.
fn once(session: &str, what: &str, text: &str) -> Option<HookOutput> {
    session::first_time(session, what).then(|| respond::notice(text))
}

fn encode(reply: Option<HookOutput>) -> Result<Option<String>, String> {
    let Some(reply) = reply else {
        return Ok(None);
    };
    let json = serde_json::to_string(&reply).map_err(|e| format!("cannot encode the answer: {e}"))?;
    Ok(Some(json + "\n"))
}

fn no_nodes(config: &Config) -> String {
    let source = match &config.file {
        Some(file) => format!("in {}", file.display()),
        None => "(no config file: run `distex config init`)".to_string(),
    };
    format!(
        "distex: no nodes are configured {source}, so every command runs on this machine. \
         Add a [[node]], or set hook.mode = \"off\" to stop this note."
    )
}

fn first_line(text: &str) -> &str {
    text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or(text)
}

/// The program a command runs, without its directory.
fn program(words: &[String]) -> &str {
    words.first().map_or("", |w| w.rsplit('/').next().unwrap_or(w))
}

/// Programs and subcommands that usually run long enough to be worth moving
/// to a less loaded machine (the overload suggestion is only made for these).
const LONG_RUNNING: &[&str] = &[
    "make",
    "gmake",
    "ninja",
    "cmake --build",
    "ctest",
    "meson compile",
    "scons",
    "bazel",
    "bazelisk",
    "buck2",
    "cargo build",
    "cargo test",
    "cargo nextest",
    "cargo bench",
    "cargo check",
    "cargo clippy",
    "cargo doc",
    "go build",
    "go test",
    "go vet",
    "npm run",
    "npm test",
    "npm ci",
    "yarn build",
    "yarn test",
    "pnpm build",
    "pnpm test",
    "pytest",
    "tox",
    "nox",
    "jest",
    "vitest",
    "gradle",
    "gradlew",
    "mvn",
    "mvnw",
    "sbt",
    "rustc",
    "gcc",
    "g++",
    "cc",
    "c++",
    "clang",
    "clang++",
    "javac",
    "tsc",
    "webpack",
    "ffmpeg",
    "latexmk",
    "pdflatex",
    "xelatex",
    "sphinx-build",
    "docker build",
    "podman build",
];

/// Whether some command in the line is one of [`LONG_RUNNING`]: quick
/// read-only commands (`ls`, `git status`, `cat`) never are.
fn worth_moving(commands: &[Vec<String>]) -> bool {
    commands.iter().any(|words| {
        LONG_RUNNING.iter().any(|entry| {
            let mut wanted = entry.split(' ');
            let name = wanted.next().unwrap_or_default();
            program(words).trim_start_matches("./") == name
                && wanted.next().is_none_or(|sub| words.get(1).is_some_and(|w| w == sub))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<Vec<String>> {
        route::analyze(line).unwrap()
    }

    #[test]
    fn only_long_running_commands_are_worth_moving() {
        for line in ["make -j8", "cd x && cargo test", "./gradlew build", "nice -n 5 pytest -x", "npm run build"] {
            assert!(worth_moving(&words(line)), "{line}");
        }
        for line in ["ls -la", "git status", "cat Makefile", "cargo --version", "npm ls", "echo make"] {
            assert!(!worth_moving(&words(line)), "{line}");
        }
    }

    #[test]
    fn the_first_line_of_a_message() {
        assert_eq!(first_line("\n  a: b\n c"), "a: b");
        assert_eq!(first_line(""), "");
    }
}

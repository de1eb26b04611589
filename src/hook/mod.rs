//! Claude Code hooks: `distex hook pre-tool-use`.
//!
//! Claude Code runs the PreToolUse hook before every Bash command it is about
//! to execute, so this path has three duties, in this order:
//!
//! 1. **Never break the session.** Unreadable input, a broken config, an
//!    unknown tool, even a bug (panic) all end the same way: exit status 0,
//!    nothing on stdout — Claude Code then runs the command as it was — and
//!    one line in `hook.log` in distex's state directory saying why.
//! 2. **Be fast.** No async runtime, no network (node health comes from the
//!    cache `distex nodes --probe` and `distex run` keep), one config load,
//!    one parse of the command line.
//! 3. **Route.** Ask the same router as `distex route`; when it says
//!    "distribute", answer per `hook.mode` ([`respond`]).
//!
//! [`input`] reads Claude Code's JSON, [`respond`] is the pure decision of
//! what to answer, [`log`] is the log file; this module is the I/O edge.

pub(crate) mod input;
pub(crate) mod log;
pub(crate) mod respond;

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use crate::config::{self, HookMode};

/// Claude Code's hook input is a few KB; anything far larger is not for us.
const MAX_INPUT: u64 = 4 << 20;

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
    if std::io::stdin().is_terminal() {
        return Err("stdin is a terminal: `distex hook pre-tool-use` is run by Claude Code with JSON on stdin".into());
    }
    let mut raw = String::new();
    std::io::stdin()
        .take(MAX_INPUT)
        .read_to_string(&mut raw)
        .map_err(|e| format!("cannot read the hook input from stdin: {e}"))?;
    let event = input::parse(&raw).map_err(|e| format!("ignoring unreadable hook input: {e}"))?;
    let Some(command) = event.bash_command() else {
        return Err(format!(
            "ignoring a {:?} call: distex only routes Bash tool calls with a command",
            event.tool_name
        ));
    };
    let config = config::load(config_flag).map_err(|e| format!("config error, command left alone: {e}"))?;
    if config.hook.mode == HookMode::Off || config.nodes.is_empty() {
        return Ok(None);
    }
    let decision = crate::route::decide_line(&config, command, &crate::state::LoadFacts::read(Default::default()));
    let Some(reply) = respond::respond(&config.hook, &event, &decision) else {
        return Ok(None);
    };
    // Speak only when the command really goes elsewhere (not for a
    // suggestion). Starts the TTS program and returns at once.
    let rewritten = reply.hook_specific_output.updated_input.is_some();
    if config.announce.speak
        && rewritten
        && let Some(text) = decision.announcement.as_deref()
        && let Some(warning) = crate::announce::speak(&config.announce, text)
    {
        log::append(&warning);
    }
    let json = serde_json::to_string(&reply).map_err(|e| format!("cannot encode the answer: {e}"))?;
    Ok(Some(json + "\n"))
}

//! What the PreToolUse hook answers for a routing decision. Pure: no I/O.
//!
//! Claude Code reads the hook's stdout as
//! `{"hookSpecificOutput": {"hookEventName": "PreToolUse", ...}}` with:
//!
//! * `updatedInput` — the tool input to use instead. distex copies the whole
//!   `tool_input` and replaces only `command`, so `description`, `timeout`,
//!   `run_in_background` and anything newer pass through untouched;
//! * `permissionDecision` — set only when the user opted into
//!   `hook.auto_approve`. Without it, Claude Code's own permission rules
//!   judge the *rewritten* command exactly as they would any other: distex
//!   never widens what a session may run;
//! * `permissionDecisionReason` and `additionalContext` — the text that tells
//!   Claude (and the user) where the command went and why.
//!
//! A command that stays local gets no answer at all (`None`). A command the
//! router sends away only because this machine is overloaded (no rule
//! matched) is suggested, never rewritten: see [`respond`].

use serde::Serialize;
use serde_json::Value;

use super::input::PreToolUse;
use crate::config::{HookMode, HookSettings};
use crate::route::Decision;

/// The JSON object printed on stdout.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HookOutput {
    pub hook_specific_output: PreToolUseOutput,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreToolUseOutput {
    pub hook_event_name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission_decision: Option<&'static str>,
    pub permission_decision_reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_input: Option<Value>,
    pub additional_context: String,
}

/// The answer for `event` given `decision`, or None to leave the command alone.
pub fn respond(settings: &HookSettings, event: &PreToolUse, decision: &Decision) -> Option<HookOutput> {
    let command = event.bash_command()?;
    let node = decision.node.as_deref().filter(|_| decision.distribute)?;
    // Part-level rewrite from the router (local parts stay as written); the whole line otherwise.
    let rewritten = decision.rewrite.as_ref().map_or_else(|| rewrite(node, command), |plan| plan.command.clone());
    let why = why(decision);
    // A command sent away only because this machine is busy matched no rule:
    // it may be `git add`, `rm` or `mkdir`, whose effects must happen here,
    // or something too small to be worth an SSH round trip. Such commands
    // are only ever suggested; rewriting is for rule-matched commands.
    let mode = match settings.mode {
        HookMode::Rewrite if decision.rule.is_none() => HookMode::Suggest,
        mode => mode,
    };
    let output = match mode {
        HookMode::Off => return None,
        HookMode::Rewrite => {
            let mut input = event.tool_input.clone();
            input.insert("command".into(), Value::String(rewritten.clone()));
            PreToolUseOutput {
                hook_event_name: "PreToolUse",
                permission_decision: settings.auto_approve.then_some("allow"),
                permission_decision_reason: format!("distex: {why}; running it on {node} with `{rewritten}`"),
                updated_input: Some(Value::Object(input)),
                additional_context: format!(
                    "distex routed this Bash command to node {node} ({why}). It ran as `{rewritten}`; \
                     the output and exit status are the remote command's. To run something on this \
                     machine instead, use `distex run --node local -- '<command>'`."
                ),
            }
        }
        HookMode::Suggest => PreToolUseOutput {
            hook_event_name: "PreToolUse",
            permission_decision: None,
            permission_decision_reason: format!("distex: {why}; suggests node {node}"),
            updated_input: None,
            additional_context: format!(
                "distex suggests running this command on node {node} ({why}). It ran on this machine \
                 as written; to run it there, use `{rewritten}`."
            ),
        },
    };
    Some(HookOutput { hook_specific_output: output })
}

/// `distex run --node NODE -- 'COMMAND'`: the original line as one shell word.
pub fn rewrite(node: &str, command: &str) -> String {
    format!("distex run --node {} -- {}", quote(node), quote(command))
}

/// Quotes `word` for a POSIX shell so that it stays exactly one word with
/// nothing expanded: wrap it in single quotes (inside which nothing is
/// special) and write each single quote as `'\''` (close, escaped quote,
/// reopen). Plain words such as node names are left bare for readability.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.,:/@%+=".contains(&b));
    if plain {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// "heavy_computation: matched `cargo build`. Heavy compilation detected, ..."
fn why(decision: &Decision) -> String {
    let mut why = match (&decision.rule, &decision.matched) {
        (Some(rule), Some(matched)) => format!("rule {rule} matched `{matched}`"),
        (Some(rule), None) => format!("rule {rule}"),
        _ => format!("reason {}", decision.reason),
    };
    if let Some(announcement) = &decision.announcement {
        why.push_str(": ");
        why.push_str(announcement.trim_end_matches('.'));
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::simple_commands;

    fn event(command: &str) -> PreToolUse {
        let raw = serde_json::json!({
            "hook_event_name": "PreToolUse", "tool_name": "Bash",
            "tool_input": { "command": command, "description": "Build it", "timeout": 600000, "run_in_background": false }
        });
        super::super::input::parse(&raw.to_string()).unwrap()
    }

    fn routed(node: &str) -> Decision {
        Decision {
            distribute: true,
            node: Some(node.into()),
            reason: "heavy_computation".into(),
            rule: Some("heavy_computation".into()),
            matched: Some("cargo build".into()),
            announcement: Some("Heavy compilation detected, offloading to builder node.".into()),
            candidates: vec![],
            warnings: vec![],
            sync: true,
            returns: vec![],
            rewrite: None,
        }
    }

    fn local() -> Decision {
        Decision {
            distribute: false,
            node: None,
            reason: "local".into(),
            rule: None,
            matched: None,
            announcement: None,
            ..routed("x")
        }
    }

    fn settings(mode: HookMode, auto_approve: bool) -> HookSettings {
        HookSettings { mode, auto_approve }
    }

    #[test]
    fn a_local_command_gets_no_answer_in_any_mode() {
        for mode in [HookMode::Rewrite, HookMode::Suggest, HookMode::Off] {
            assert_eq!(respond(&settings(mode, true), &event("ls"), &local()), None);
        }
    }

    #[test]
    fn rewrite_replaces_only_the_command_and_sets_no_permission_decision() {
        let out =
            respond(&settings(HookMode::Rewrite, false), &event("cargo build --release"), &routed("builder")).unwrap();
        let out = out.hook_specific_output;
        assert_eq!(out.hook_event_name, "PreToolUse");
        assert_eq!(out.permission_decision, None);
        let input = out.updated_input.unwrap();
        assert_eq!(input["command"], "distex run --node builder -- 'cargo build --release'");
        assert_eq!(input["description"], "Build it");
        assert_eq!(input["timeout"], 600000);
        assert_eq!(input["run_in_background"], false);
        assert!(out.additional_context.contains("builder"), "{}", out.additional_context);
        assert!(out.additional_context.contains("heavy_computation"), "{}", out.additional_context);
    }

    #[test]
    fn auto_approve_is_the_only_way_to_get_allow() {
        let out = respond(&settings(HookMode::Rewrite, true), &event("cargo build"), &routed("b")).unwrap();
        assert_eq!(out.hook_specific_output.permission_decision, Some("allow"));
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["hookSpecificOutput"]["permissionDecision"], "allow");
        let json = serde_json::to_value(
            respond(&settings(HookMode::Rewrite, false), &event("cargo build"), &routed("b")).unwrap(),
        )
        .unwrap();
        assert!(json["hookSpecificOutput"].get("permissionDecision").is_none(), "{json}");
    }

    #[test]
    fn suggest_only_adds_context() {
        let out = respond(&settings(HookMode::Suggest, true), &event("cargo build"), &routed("builder"))
            .unwrap()
            .hook_specific_output;
        assert_eq!(out.updated_input, None);
        assert_eq!(out.permission_decision, None);
        assert!(
            out.additional_context.contains("distex run --node builder -- 'cargo build'"),
            "{}",
            out.additional_context
        );
    }

    #[test]
    fn off_says_nothing_even_when_routed() {
        assert_eq!(respond(&settings(HookMode::Off, false), &event("cargo build"), &routed("b")), None);
    }

    #[test]
    fn quoting_keeps_any_command_one_word_for_a_real_shell_parser() {
        let lines = [
            "cargo build",
            "echo 'it''s' \"$HOME\" `id` $(whoami) && make -j8 || true; exit 3",
            "printf '%s\\n' \"a'b\" > out.txt 2>&1 | tee x &",
            "don't stop",
            "'",
            "a\nb\ttab *glob* ~user {1,2} !hist #comment",
        ];
        for line in lines {
            let rewritten = rewrite("builder", line);
            let commands = simple_commands(&rewritten).unwrap_or_else(|e| panic!("{rewritten}: {e:?}"));
            assert_eq!(commands.len(), 1, "{rewritten}");
            assert_eq!(commands[0], vec!["distex", "run", "--node", "builder", "--", line], "{rewritten}");
        }
    }

    #[test]
    fn quoting_survives_a_real_shell() {
        for word in ["plain", "two words", "it's", "'", "$HOME `id` \\ \"q\" !x", "", "a\nb"] {
            let out =
                std::process::Command::new("sh").arg("-c").arg(format!("printf %s {}", quote(word))).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), word, "quoted as {}", quote(word));
        }
    }

    #[test]
    fn an_overload_only_decision_is_suggested_not_rewritten() {
        let mut busy = routed("spare");
        busy.reason = "overloaded".into();
        busy.rule = None;
        busy.matched = None;
        let out =
            respond(&settings(HookMode::Rewrite, true), &event("git add -A"), &busy).unwrap().hook_specific_output;
        assert_eq!(out.updated_input, None);
        assert_eq!(out.permission_decision, None, "never auto-approved either");
        assert!(
            out.additional_context.contains("distex suggests running this command on node spare"),
            "{}",
            out.additional_context
        );
    }
}

//! What the PreToolUse hook answers for a routing decision. Pure: no I/O.
//!
//! Claude Code reads the hook's stdout as
//! `{"systemMessage": "...", "hookSpecificOutput": {"hookEventName": "PreToolUse", ...}}`:
//!
//! * `systemMessage` — one line shown to the user (not to Claude): for a
//!   rewritten command, the node, the reason and the original command (or,
//!   when only some parts of the line move, those parts); or a
//!   once-per-session notice ([`notice`]);
//! * `updatedInput` — the tool input to use instead: the router's
//!   part-level plan ([`crate::route::plan_parts`]) when it made one, else the
//!   whole line as one `distex run` ([`rewritten`]). distex copies the whole
//!   `tool_input` and replaces only `command`, so `description`, `timeout`,
//!   `run_in_background` and anything newer pass through untouched;
//! * `permissionDecision` — `"allow"` only when the user's own allow rules
//!   allow the original command ([`Permission::allowed_by`]; the caller has
//!   checked that no deny or ask rule matches any part of it), or when the
//!   user opted into `hook.auto_approve`. Otherwise none: Claude Code judges
//!   the *rewritten* command by the session's rules;
//! * `permissionDecisionReason` — with a decision, why (Claude Code shows it
//!   to the user);
//! * `additionalContext` — what Claude is told: where the command was sent,
//!   why, and what to do if it was refused or could not reach the node.
//!
//! A command that stays local gets no answer at all (`None`). A command the
//! router sends away only because this machine is overloaded (no rule
//! matched) is suggested, never rewritten: see [`respond`].

use serde::Serialize;
use serde_json::Value;

use super::input::PreToolUse;
use crate::config::{HookMode, HookSettings};
use crate::route::{Decision, Placement, distex_run};

/// The JSON object printed on stdout.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HookOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) system_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hook_specific_output: Option<PreToolUseOutput>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PreToolUseOutput {
    pub(crate) hook_event_name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) permission_decision: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) permission_decision_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) updated_input: Option<Value>,
    pub(crate) additional_context: String,
}

/// What the user's own permission rules said about the original command.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Permission<'a> {
    /// The allow rules that allow every part of it, described for the user
    /// (`Bash(make:*) in ~/.claude/settings.json`); None when they do not.
    pub(crate) allowed_by: Option<&'a str>,
    /// False in plan mode, where nothing is approved on the user's behalf.
    pub(crate) may_approve: bool,
}

/// A message for the user alone (a once-per-session notice).
pub(crate) fn notice(text: &str) -> HookOutput {
    HookOutput { system_message: Some(one_line(text, 400)), hook_specific_output: None }
}

/// The answer for `event` given `decision`, or None to leave the command alone.
pub(crate) fn respond(
    settings: &HookSettings,
    event: &PreToolUse,
    decision: &Decision,
    permission: Permission<'_>,
) -> Option<HookOutput> {
    let command = event.bash_command()?;
    let node = decision.node.as_deref().filter(|_| decision.distribute)?;
    let rewritten = rewritten(decision, node, command);
    let routed = routed_parts(decision);
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
            let (permission_decision, permission_decision_reason) = approval(settings, permission, node, command);
            let output = PreToolUseOutput {
                hook_event_name: "PreToolUse",
                permission_decision,
                permission_decision_reason,
                updated_input: Some(Value::Object(input)),
                additional_context: sent_context(node, &why, &rewritten, command, routed.as_deref()),
            };
            let shown = match routed.as_deref() {
                Some(parts) => format!(
                    "distex: sent to {node} ({}): {} (the rest of the line runs here)",
                    short_why(decision),
                    one_line(&parts.join("; "), 160)
                ),
                None => format!("distex: sent to {node} ({}): {}", short_why(decision), one_line(command, 160)),
            };
            return Some(HookOutput { system_message: Some(shown), hook_specific_output: Some(output) });
        }
        HookMode::Suggest => PreToolUseOutput {
            hook_event_name: "PreToolUse",
            permission_decision: None,
            permission_decision_reason: None,
            updated_input: None,
            additional_context: format!(
                "distex suggests running this command on node {node} ({why}). It ran on this machine \
                 as written; to run it there, use `{rewritten}`."
            ),
        },
    };
    Some(HookOutput { system_message: None, hook_specific_output: Some(output) })
}

/// `permissionDecision` and its reason for a rewrite: the user's own allow
/// rules first (their decision, kept), then the `hook.auto_approve` opt-in.
fn approval(
    settings: &HookSettings,
    permission: Permission<'_>,
    node: &str,
    command: &str,
) -> (Option<&'static str>, Option<String>) {
    if !permission.may_approve {
        return (None, None);
    }
    let command = one_line(command, 120);
    match permission.allowed_by {
        Some(rules) => (
            Some("allow"),
            Some(format!("distex: `{command}` is allowed by your Claude Code rules ({rules}); sent to {node}")),
        ),
        None if settings.auto_approve => {
            (Some("allow"), Some(format!("distex: hook.auto_approve allows `{command}` on {node}")))
        }
        None => (None, None),
    }
}

/// The line that runs instead of `command`: the router's part-level plan
/// when it made one (local parts stay as written, routed ones become
/// `distex run`), else the whole line as one `distex run` on `node`.
pub(crate) fn rewritten(decision: &Decision, node: &str, command: &str) -> String {
    decision.rewrite.as_ref().map_or_else(|| distex_run(node, command), |plan| plan.command.clone())
}

/// The parts sent away when only some parts of the line move (None when the
/// whole line moves).
fn routed_parts(decision: &Decision) -> Option<Vec<&str>> {
    let plan = decision.rewrite.as_deref().filter(|p| p.placement == Placement::Parts)?;
    Some(plan.parts.iter().filter(|p| p.node.is_some()).map(|p| p.text.as_str()).collect())
}

/// What Claude is told about a rewritten command; `routed` are the parts
/// sent away when the rest of the line stays here.
fn sent_context(node: &str, why: &str, rewritten: &str, command: &str, routed: Option<&[&str]>) -> String {
    let sent = match routed {
        None => format!(
            "distex sent this Bash command to node {node} ({why}) as `{rewritten}`; its output and exit \
             status are those of the command on {node}."
        ),
        Some(parts) => format!(
            "distex sent part of this Bash command to node {node} ({why}): `{}` ran there, the rest of the \
             line here as written, as `{rewritten}`. The output and exit status are the line's, with those \
             of the sent part coming from {node}.",
            parts.join("`, `")
        ),
    };
    format!(
        "{sent} If the Bash tool refused that command (a permission rule, or the user said no), it ran \
         nowhere: tell the user, who can allow `Bash(distex run:*)` in their Claude Code settings. If a \
         `distex run` exited 125, distex could not run it on a node and its command did not run: its \
         message says why. To run the whole line on this machine instead, use `{}`.",
        distex_run("local", command)
    )
}

/// One line for the user, at most `max` characters.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    flat.chars().take(max.saturating_sub(1)).chain(std::iter::once('…')).collect()
}

/// "rule heavy_computation: `cargo build`" — the short reason for the user.
fn short_why(decision: &Decision) -> String {
    match (&decision.rule, &decision.matched) {
        (Some(rule), Some(matched)) => format!("rule {rule}: `{matched}`"),
        (Some(rule), None) => format!("rule {rule}"),
        _ => decision.reason.clone(),
    }
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

    /// Nothing allowed by the user's rules; approval possible (not plan mode).
    fn open() -> Permission<'static> {
        Permission { allowed_by: None, may_approve: true }
    }

    fn settings(mode: HookMode, auto_approve: bool) -> HookSettings {
        HookSettings { mode, auto_approve }
    }

    #[test]
    fn a_local_command_gets_no_answer_in_any_mode() {
        for mode in [HookMode::Rewrite, HookMode::Suggest, HookMode::Off] {
            assert_eq!(respond(&settings(mode, true), &event("ls"), &local(), open()), None);
        }
    }

    #[test]
    fn rewrite_replaces_only_the_command_and_sets_no_permission_decision() {
        let out =
            respond(&settings(HookMode::Rewrite, false), &event("cargo build --release"), &routed("builder"), open())
                .unwrap();
        let out = out.hook_specific_output.unwrap();
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
    fn auto_approve_allows_without_a_rule_of_the_users() {
        let out = respond(&settings(HookMode::Rewrite, true), &event("cargo build"), &routed("b"), open()).unwrap();
        assert_eq!(out.hook_specific_output.as_ref().unwrap().permission_decision, Some("allow"));
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["hookSpecificOutput"]["permissionDecision"], "allow");
        let json = serde_json::to_value(
            respond(&settings(HookMode::Rewrite, false), &event("cargo build"), &routed("b"), open()).unwrap(),
        )
        .unwrap();
        assert!(json["hookSpecificOutput"].get("permissionDecision").is_none(), "{json}");
    }

    #[test]
    fn suggest_only_adds_context() {
        let out = respond(&settings(HookMode::Suggest, true), &event("cargo build"), &routed("builder"), open())
            .unwrap()
            .hook_specific_output
            .unwrap();
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
        assert_eq!(respond(&settings(HookMode::Off, false), &event("cargo build"), &routed("b"), open()), None);
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
            let rewritten = distex_run("builder", line);
            let commands = simple_commands(&rewritten).unwrap_or_else(|e| panic!("{rewritten}: {e:?}"));
            assert_eq!(commands.len(), 1, "{rewritten}");
            assert_eq!(commands[0], vec!["distex", "run", "--node", "builder", "--", line], "{rewritten}");
        }
    }

    #[test]
    fn an_overload_only_decision_is_suggested_not_rewritten() {
        let mut busy = routed("spare");
        busy.reason = "overloaded".into();
        busy.rule = None;
        busy.matched = None;
        let out = respond(&settings(HookMode::Rewrite, true), &event("git add -A"), &busy, open())
            .unwrap()
            .hook_specific_output
            .unwrap();
        assert_eq!(out.updated_input, None);
        assert_eq!(out.permission_decision, None, "never auto-approved either");
        assert!(
            out.additional_context.contains("distex suggests running this command on node spare"),
            "{}",
            out.additional_context
        );
    }

    #[test]
    fn the_users_own_allow_rule_approves_the_rewrite_and_says_so() {
        let permission = Permission { allowed_by: Some("Bash(make:*) in /h/.claude/settings.json"), may_approve: true };
        let out = respond(&settings(HookMode::Rewrite, false), &event("make who"), &routed("n1"), permission).unwrap();
        let specific = out.hook_specific_output.unwrap();
        assert_eq!(specific.permission_decision, Some("allow"));
        let reason = specific.permission_decision_reason.unwrap();
        assert!(reason.contains("Bash(make:*)") && reason.contains("n1"), "{reason}");
    }

    #[test]
    fn plan_mode_gets_no_approval_even_with_auto_approve_or_a_rule() {
        let permission = Permission { allowed_by: Some("Bash"), may_approve: false };
        let out = respond(&settings(HookMode::Rewrite, true), &event("make who"), &routed("n1"), permission).unwrap();
        let specific = out.hook_specific_output.unwrap();
        assert_eq!(specific.permission_decision, None);
        assert_eq!(specific.permission_decision_reason, None);
        assert!(specific.updated_input.is_some());
    }

    #[test]
    fn a_rewrite_shows_the_user_one_line_with_node_reason_and_command() {
        let out =
            respond(&settings(HookMode::Rewrite, false), &event("cargo build\n  --release"), &routed("n1"), open())
                .unwrap();
        let shown = out.system_message.unwrap();
        assert_eq!(shown, "distex: sent to n1 (rule heavy_computation: `cargo build`): cargo build --release");
        let context = out.hook_specific_output.unwrap().additional_context;
        assert!(context.contains("sent this Bash command to node n1"), "{context}");
        assert!(!context.contains("ran as"), "{context}");
        assert!(context.contains("125") && context.contains("refused"), "{context}");
    }

    #[test]
    fn a_suggestion_shows_the_user_nothing() {
        let out = respond(&settings(HookMode::Suggest, false), &event("cargo build"), &routed("n1"), open()).unwrap();
        assert_eq!(out.system_message, None);
    }

    #[test]
    fn long_commands_are_cut_to_one_line() {
        assert_eq!(one_line("a\n b\tc", 10), "a b c");
        assert_eq!(one_line(&"x".repeat(20), 10), format!("{}…", "x".repeat(9)));
    }
}

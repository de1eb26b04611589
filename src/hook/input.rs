//! Claude Code's PreToolUse hook input (the JSON object on the hook's stdin).
//!
//! Only the fields distex reads are typed; `tool_input` is kept whole as a
//! JSON object so every field distex does not touch (`description`,
//! `timeout`, `run_in_background`, ...) goes back to Claude Code unchanged.

use serde::Deserialize;
use serde_json::{Map, Value};

/// The parts of the hook input distex uses. Unknown fields are ignored:
/// Claude Code adds fields over time (`transcript_path`, `tool_use_id`, ...).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PreToolUse {
    #[serde(default)]
    pub(crate) hook_event_name: Option<String>,
    pub(crate) tool_name: String,
    #[serde(default)]
    pub(crate) tool_input: Map<String, Value>,
    #[serde(default)]
    pub(crate) cwd: Option<String>,
    /// Which session this is: what the hook says once per session is
    /// remembered under it.
    #[serde(default)]
    pub(crate) session_id: Option<String>,
    /// `default`, `plan`, `acceptEdits`, `dontAsk`, `bypassPermissions`, ...
    #[serde(default)]
    pub(crate) permission_mode: Option<String>,
}

impl PreToolUse {
    /// The shell command, when this is a Bash call with a non-empty one.
    pub(crate) fn bash_command(&self) -> Option<&str> {
        if self.tool_name != "Bash" {
            return None;
        }
        self.tool_input.get("command")?.as_str().filter(|c| !c.trim().is_empty())
    }
}

/// Parses the hook input; an event other than PreToolUse is refused.
pub(crate) fn parse(raw: &str) -> Result<PreToolUse, String> {
    let event: PreToolUse = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    match event.hook_event_name.as_deref() {
        None | Some("PreToolUse") => Ok(event),
        Some(other) => Err(format!("hook_event_name is {other:?}, expected \"PreToolUse\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_bash_call_and_keeps_every_tool_input_field() {
        let raw = r#"{"session_id":"s","cwd":"/p","hook_event_name":"PreToolUse","tool_name":"Bash",
            "tool_input":{"command":"cargo build","description":"Build","timeout":60000,"run_in_background":true},
            "tool_use_id":"t","permission_mode":"default"}"#;
        let event = parse(raw).unwrap();
        assert_eq!(event.bash_command(), Some("cargo build"));
        assert_eq!(event.tool_input.len(), 4);
        assert_eq!(event.cwd.as_deref(), Some("/p"));
        assert_eq!(event.session_id.as_deref(), Some("s"));
        assert_eq!(event.permission_mode.as_deref(), Some("default"));
    }

    #[test]
    fn other_tools_and_empty_commands_are_not_bash_commands() {
        let read = parse(r#"{"tool_name":"Read","tool_input":{"file_path":"/x"}}"#).unwrap();
        assert_eq!(read.bash_command(), None);
        let empty = parse(r#"{"tool_name":"Bash","tool_input":{"command":"  "}}"#).unwrap();
        assert_eq!(empty.bash_command(), None);
        let number = parse(r#"{"tool_name":"Bash","tool_input":{"command":5}}"#).unwrap();
        assert_eq!(number.bash_command(), None);
    }

    #[test]
    fn garbage_and_other_events_are_errors() {
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"tool_input":{}}"#).is_err());
        assert!(parse(r#"{"hook_event_name":"PostToolUse","tool_name":"Bash"}"#).is_err());
    }
}

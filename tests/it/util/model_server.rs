//! A scripted stand-in for the Anthropic Messages API, for driving the real
//! Claude Code CLI in tests.
//!
//! [`ModelServer::start`] listens on `127.0.0.1:0` and answers every
//! conversation request (a `POST /v1/messages` that offers tools) with the
//! next [`Turn`] of its script, streamed as server-sent events exactly as the
//! real API streams them: `message_start`, then per content block
//! `content_block_start` / `content_block_delta` (`text_delta` or
//! `input_json_delta`) / `content_block_stop`, then `message_delta` with the
//! stop reason and `message_stop`. When the script runs out it answers with a
//! short final text.
//!
//! Side requests Claude Code makes on its own (requests without tools, such
//! as title or summary generation, `count_tokens`, `HEAD`/`GET` probes) get a
//! harmless answer and never consume a scripted turn. Every request is
//! recorded so a test can assert on what Claude Code sent back: the
//! `tool_result` blocks it produced, their `is_error` flag, the skill text
//! it loaded.
//!
//! Plain `std::net` and one thread per connection: HTTP/1.1 with
//! `Content-Length` or chunked bodies and keep-alive, which is all the CLI
//! needs. Nothing here talks to anything but the process under test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// One scripted model answer.
#[derive(Debug, Clone)]
pub(crate) enum Turn {
    /// Plain text; the turn ends (`stop_reason: end_turn`).
    Text(String),
    /// One tool call (`stop_reason: tool_use`), e.g. `Bash` with `{"command": ...}`.
    ToolUse { name: String, input: Value },
}

impl Turn {
    pub(crate) fn text(text: &str) -> Turn {
        Turn::Text(text.to_string())
    }

    pub(crate) fn bash(command: &str) -> Turn {
        Turn::ToolUse { name: "Bash".into(), input: json!({ "command": command, "description": "scripted command" }) }
    }

    /// A Bash call with Claude Code's own timeout raised to its maximum
    /// (10 minutes), for commands that go over SSH on a busy machine.
    pub(crate) fn slow_bash(command: &str) -> Turn {
        Turn::ToolUse {
            name: "Bash".into(),
            input: json!({ "command": command, "description": "scripted command", "timeout": 600000 }),
        }
    }

    pub(crate) fn tool(name: &str, input: Value) -> Turn {
        Turn::ToolUse { name: name.into(), input }
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    pub(crate) path: String,
    /// The body parsed as JSON (`Value::Null` when empty or not JSON).
    pub(crate) body: Value,
    /// Whether this request was answered from the script.
    pub(crate) scripted: bool,
}

#[derive(Default)]
struct Shared {
    script: Mutex<Vec<Turn>>,
    next: AtomicUsize,
    ids: AtomicUsize,
    log: Mutex<Vec<Recorded>>,
    /// The `tool_use` id sent for each scripted turn, by turn index.
    turn_ids: Mutex<Vec<String>>,
}

/// The running server. It lives as long as the test process; its threads are
/// idle once the CLI under test has exited.
pub(crate) struct ModelServer {
    pub(crate) addr: SocketAddr,
    shared: Arc<Shared>,
}

impl ModelServer {
    /// Starts a server that will answer with `script`, one turn per conversation request.
    pub(crate) fn start(script: Vec<Turn>) -> ModelServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the scripted model server");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared { script: Mutex::new(script), ..Default::default() });
        let accept = Arc::clone(&shared);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = Arc::clone(&accept);
                std::thread::spawn(move || serve_connection(stream, &shared));
            }
        });
        ModelServer { addr, shared }
    }

    /// The value for `ANTHROPIC_BASE_URL`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in order.
    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The conversation requests (those answered from the script or after it).
    pub(crate) fn conversation(&self) -> Vec<Value> {
        self.requests().into_iter().filter(|r| r.scripted).map(|r| r.body).collect()
    }

    /// The tool_use id the server sent in the `n`th conversation answer
    /// (counting from 0), to find that call's result.
    pub(crate) fn tool_use_id_of_turn(&self, n: usize) -> Option<String> {
        self.shared.turn_ids.lock().unwrap().get(n).cloned()
    }

    /// How many scripted turns have been served.
    pub(crate) fn turns_served(&self) -> usize {
        self.shared.next.load(Ordering::SeqCst)
    }

    /// Every `tool_result` block Claude Code sent back, in order, with the
    /// text of its content flattened.
    pub(crate) fn tool_results(&self) -> Vec<ToolResult> {
        // Each conversation request repeats the whole history, so read the last one.
        let Some(last) = self.conversation().pop() else {
            return vec![];
        };
        let mut out = Vec::new();
        for message in last["messages"].as_array().into_iter().flatten() {
            for block in message["content"].as_array().into_iter().flatten() {
                if block["type"] == "tool_result" {
                    out.push(ToolResult {
                        tool_use_id: block["tool_use_id"].as_str().unwrap_or_default().to_string(),
                        content: flatten_text(&block["content"]),
                        is_error: block["is_error"].as_bool().unwrap_or(false),
                    });
                }
            }
        }
        out
    }

    /// Every text Claude Code sent in any conversation request (system
    /// prompts included): for things a subagent (a forked skill) saw.
    pub(crate) fn all_text(&self) -> String {
        let mut text = String::new();
        for body in self.conversation() {
            text.push_str(&flatten_text(&body["system"]));
            text.push('\n');
            for message in body["messages"].as_array().into_iter().flatten() {
                text.push_str(&flatten_text(&message["content"]));
                text.push('\n');
            }
        }
        text
    }

    /// Every tool_result block in any conversation request (subagents'
    /// included), deduplicated by tool_use_id, in order of first appearance.
    pub(crate) fn all_tool_results(&self) -> Vec<ToolResult> {
        let mut out: Vec<ToolResult> = Vec::new();
        for body in self.conversation() {
            for message in body["messages"].as_array().into_iter().flatten() {
                for block in message["content"].as_array().into_iter().flatten() {
                    let id = block["tool_use_id"].as_str().unwrap_or_default();
                    if block["type"] == "tool_result" && !out.iter().any(|r| r.tool_use_id == id) {
                        out.push(ToolResult {
                            tool_use_id: id.to_string(),
                            content: flatten_text(&block["content"]),
                            is_error: block["is_error"].as_bool().unwrap_or(false),
                        });
                    }
                }
            }
        }
        out
    }

    /// All text Claude Code sent in the last conversation request (system
    /// prompt excluded): user messages, tool results, injected context.
    pub(crate) fn last_request_text(&self) -> String {
        let Some(last) = self.conversation().pop() else {
            return String::new();
        };
        let mut text = String::new();
        for message in last["messages"].as_array().into_iter().flatten() {
            text.push_str(&flatten_text(&message["content"]));
            text.push('\n');
        }
        text
    }
}

/// A `tool_result` block as Claude Code sent it.
#[derive(Debug, Clone)]
pub(crate) struct ToolResult {
    pub(crate) tool_use_id: String,
    pub(crate) content: String,
    pub(crate) is_error: bool,
}

/// Text of a content value: a string, or the text parts of an array of blocks
/// (nested tool_result content included).
pub(crate) fn flatten_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b["type"].as_str() {
                Some("text") => b["text"].as_str().unwrap_or_default().to_string(),
                Some("tool_result") => flatten_text(&b["content"]),
                _ => String::new(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut writer = stream;
    while let Some(request) = read_request(&mut reader) {
        let response = answer(&request, shared);
        if writer.write_all(&response).is_err() {
            return;
        }
    }
}

/// Reads one HTTP/1.1 request; None at end of stream or on garbage.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let body = if chunked { read_chunked(reader)? } else { read_exact(reader, length)? };
    Some(Request { method, path, body })
}

fn read_exact(reader: &mut BufReader<TcpStream>, n: usize) -> Option<Vec<u8>> {
    let mut body = vec![0; n];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        let chunk = read_exact(reader, size)?;
        body.extend_from_slice(&chunk);
        let mut crlf = String::new();
        reader.read_line(&mut crlf).ok()?;
        if size == 0 {
            return Some(body);
        }
    }
}

/// Builds the full HTTP response for one request, recording it.
fn answer(request: &Request, shared: &Shared) -> Vec<u8> {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let path = request.path.split('?').next().unwrap_or_default();
    let is_messages = request.method == "POST" && path.ends_with("/v1/messages");
    let is_conversation = is_messages && body["tools"].as_array().is_some_and(|t| !t.is_empty());
    shared.log.lock().unwrap().push(Recorded {
        method: request.method.clone(),
        path: request.path.clone(),
        body: body.clone(),
        scripted: is_conversation,
    });

    if request.method == "POST" && path.ends_with("/count_tokens") {
        return http(200, "application/json", json!({ "input_tokens": 42 }).to_string());
    }
    if !is_messages {
        // HEAD / GET probes and anything else: an empty success.
        return http(200, "application/json", "{}".to_string());
    }
    let turn = if is_conversation {
        let index = shared.next.fetch_add(1, Ordering::SeqCst);
        shared.script.lock().unwrap().get(index).cloned().unwrap_or_else(|| Turn::text("All done."))
    } else {
        Turn::text("ok")
    };
    let id = shared.ids.fetch_add(1, Ordering::SeqCst);
    if is_conversation {
        shared.turn_ids.lock().unwrap().push(tool_use_id(id));
    }
    let model = body["model"].as_str().unwrap_or("claude-scripted").to_string();
    if body["stream"].as_bool().unwrap_or(false) {
        http(200, "text/event-stream", sse(&turn, id, &model))
    } else {
        http(200, "application/json", whole_message(&turn, id, &model).to_string())
    }
}

fn http(status: u16, content_type: &str, body: String) -> Vec<u8> {
    let reason = if status == 200 { "OK" } else { "Error" };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         request-id: req_scripted\r\nconnection: keep-alive\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn usage() -> Value {
    json!({ "input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0 })
}

fn tool_use_id(id: usize) -> String {
    format!("toolu_scripted_{id:04}")
}

/// The content block and stop reason of a turn.
fn block(turn: &Turn, id: usize) -> (Value, &'static str) {
    match turn {
        Turn::Text(text) => (json!({ "type": "text", "text": text }), "end_turn"),
        Turn::ToolUse { name, input } => {
            (json!({ "type": "tool_use", "id": tool_use_id(id), "name": name, "input": input }), "tool_use")
        }
    }
}

fn whole_message(turn: &Turn, id: usize, model: &str) -> Value {
    let (content, stop) = block(turn, id);
    json!({
        "id": format!("msg_scripted_{id:04}"), "type": "message", "role": "assistant", "model": model,
        "content": [content], "stop_reason": stop, "stop_sequence": null, "usage": usage(),
    })
}

/// The server-sent events the real API streams for `turn`.
fn sse(turn: &Turn, id: usize, model: &str) -> String {
    let mut events = Vec::new();
    let mut start = whole_message(turn, id, model);
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    events.push(("message_start", json!({ "type": "message_start", "message": start })));
    let (content, stop) = block(turn, id);
    match turn {
        Turn::Text(text) => {
            events.push((
                "content_block_start",
                json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
            ));
            events.push((
                "content_block_delta",
                json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": text } }),
            ));
        }
        Turn::ToolUse { input, .. } => {
            let mut empty = content.clone();
            empty["input"] = json!({});
            events.push((
                "content_block_start",
                json!({ "type": "content_block_start", "index": 0, "content_block": empty }),
            ));
            // Split the input JSON in two deltas, as the real API sends it in pieces.
            let json_text = input.to_string();
            let cut = json_text.char_indices().nth(json_text.chars().count() / 2).map_or(0, |(i, _)| i);
            for piece in [&json_text[..cut], &json_text[cut..]] {
                events.push(("content_block_delta", json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "input_json_delta", "partial_json": piece } })));
            }
        }
    }
    events.push(("content_block_stop", json!({ "type": "content_block_stop", "index": 0 })));
    events.push(("message_delta", json!({ "type": "message_delta", "delta": { "stop_reason": stop, "stop_sequence": null }, "usage": { "output_tokens": 5 } })));
    events.push(("message_stop", json!({ "type": "message_stop" })));
    events.iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect()
}

//! `distex json`: serve JSON requests, one per line, in order.
//!
//! A bad line (not JSON, wrong shape, unknown op, longer than
//! [`MAX_REQUEST_LINE`]) gets an error object on its own line and the next
//! line is still served; the caller learns from the exit status that
//! something failed. An over-long line is read to its end without being
//! held in memory.

use std::io::{BufRead, Write};

use serde_json::Value;

use super::route;
use crate::config::Config;
use crate::process::input::line::{Line, read_line};
use crate::protocol::{OPS, Request, RequestLine, Response, ResponseLine};

/// Counts of what was served.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Served {
    pub(crate) ok: usize,
    pub(crate) failed: usize,
}

/// The longest request line served (1 MiB): requests are small objects,
/// and a line is parsed whole.
pub(crate) const MAX_REQUEST_LINE: usize = 1 << 20;

/// Reads requests from `input` until EOF, writing one response line each.
pub(crate) fn serve(config: &Config, mut input: impl BufRead, mut output: impl Write) -> std::io::Result<Served> {
    let mut served = Served::default();
    let mut buf = Vec::new();
    for index in 0.. {
        let refused = match read_line(&mut input, &mut buf, MAX_REQUEST_LINE)? {
            Line::End => break,
            Line::TooLong { bytes } => Some((
                "too_large",
                format!(
                    "line {}: a request of {bytes} bytes is longer than the {} MiB a request line may be",
                    index + 1,
                    MAX_REQUEST_LINE >> 20
                ),
            )),
            Line::Read => None,
        };
        let text = std::str::from_utf8(&buf);
        let (line, refused) = match (text, refused) {
            (_, Some(refused)) => ("", Some(refused)),
            (Ok(line), None) => (line.trim_end_matches('\n').trim_end_matches('\r'), None),
            (Err(e), None) => ("", Some(("parse_error", format!("line {}: not valid UTF-8 text ({e})", index + 1)))),
        };
        if let Some((code, message)) = refused {
            write_line(&mut output, &ResponseLine::error(None, code, message))?;
            served.failed += 1;
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let response = answer(config, line, index + 1);
        if response.is_error() {
            served.failed += 1
        } else {
            served.ok += 1
        }
        write_line(&mut output, &response)?;
    }
    Ok(served)
}

fn write_line(output: &mut impl Write, response: &ResponseLine) -> std::io::Result<()> {
    serde_json::to_writer(&mut *output, response)?;
    output.write_all(b"\n")?;
    output.flush()
}

/// Answers one request line (`number` is 1-based, for messages).
pub(crate) fn answer(config: &Config, line: &str, number: usize) -> ResponseLine {
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return ResponseLine::error(None, "parse_error", format!("line {number}: not JSON: {e}")),
    };
    let id = value.get("id").cloned();
    let Some(op) = value.get("op").and_then(Value::as_str).map(str::to_string) else {
        return ResponseLine::error(
            id,
            "invalid_request",
            format!("line {number}: missing \"op\"; one of: {}", OPS.join(", ")),
        );
    };
    if !OPS.contains(&op.as_str()) {
        return ResponseLine::error(
            id,
            "unknown_op",
            format!("line {number}: unknown op {op:?}; one of: {}", OPS.join(", ")),
        );
    }
    let request: RequestLine = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => return ResponseLine::error(id, "invalid_request", format!("line {number}: {op}: {e}")),
    };
    match execute(config, request.request) {
        Ok(response) => ResponseLine { id, outcome: crate::protocol::Outcome::Ok(response) },
        Err((code, message)) => ResponseLine::error(id, code, format!("line {number}: {message}")),
    }
}

fn execute(config: &Config, request: Request) -> Result<Response, (&'static str, String)> {
    match request {
        Request::Route(r) => {
            route::check_assumed(config, &r.assume_load).map_err(|m| ("usage", m))?;
            let facts = crate::state::LoadFacts::read(r.assume_load);
            Ok(Response::Route(crate::route::decide_line(config, &r.command, &facts)))
        }
        Request::Nodes(_) => Ok(Response::Nodes(crate::state::NodesReport::read(config))),
        Request::Plan(r) => {
            super::parallel::make_plan(&r.tasks).map(Response::Plan).map_err(|e| (e.code(), e.to_string()))
        }
        Request::Parallel(r) => parallel(config, r).map(Response::Parallel).map_err(|e| (e.code(), e.to_string())),
        Request::Process(options) if options.inputs.iter().any(|p| p.as_os_str() == "-") => {
            Err(("usage", "process: stdin (\"-\") carries the JSON requests; give files instead".to_string()))
        }
        Request::Process(options) => crate::process::run(&options, config, &mut crate::tasks::NullReporter)
            .map(Response::Process)
            .map_err(|e| (e.code(), e.to_string())),
    }
}

fn parallel(
    config: &Config,
    r: crate::protocol::ParallelRequest,
) -> crate::error::Result<crate::tasks::scheduler::ParallelReport> {
    let plan = super::parallel::make_plan(&r.tasks)?;
    let timeout = match r.timeout_secs {
        Some(t) if t.is_finite() && t > 0.0 => Some(std::time::Duration::from_secs_f64(t)),
        Some(t) => return Err(crate::error::Error::Usage(format!("timeout_secs must be positive, got {t}"))),
        None => None,
    };
    let cwd = match r.cwd {
        Some(c) => c,
        None => std::env::current_dir().map_err(|e| crate::error::Error::io("reading the current directory", e))?,
    };
    let opts = crate::tasks::scheduler::ParallelOptions {
        jobs: r.jobs,
        keep_going: r.keep_going,
        nodes: r.nodes,
        sync: r.sync,
        timeout,
        cwd,
        sync_root: None,
    };
    super::parallel::run(config, &plan, &opts, &mut crate::tasks::NullReporter)
}

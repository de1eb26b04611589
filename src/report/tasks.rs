//! Reporters for task runs (`distex parallel`): the seed's human lines
//! (`[task-id] subject: IN_PROGRESS -> COMPLETE`) and JSON Lines events.

use std::io::Write;

use crate::tasks::plan::Plan;
use crate::tasks::{Event, Reporter, Stream, TaskStatus};

/// Human lines: status changes and prefixed output on stdout, task stderr
/// on stderr, a summary line at the end.
#[derive(Default)]
pub(crate) struct HumanReporter;

impl Reporter for HumanReporter {
    fn report(&mut self, event: &Event) {
        match event {
            Event::TaskStatusChanged { id, subject, from, to, node, error, .. } => {
                // blocked -> pending is bookkeeping, not news.
                if *from == TaskStatus::Blocked && *to == TaskStatus::Pending {
                    return;
                }
                let mut line = format!("[{id}] {subject}: {} -> {}", from.label(), to.label());
                if let Some(n) = node {
                    line.push_str(&format!(" ({n})"));
                }
                if let Some(e) = error {
                    line.push_str(&format!(": {e}"));
                }
                println_flush(&line);
            }
            Event::TaskOutput { id, stream: Stream::Stdout, line } => println_flush(&format!("[{id}] {line}")),
            Event::TaskOutput { id, stream: Stream::Stderr, line } => eprintln!("[{id}] {line}"),
            Event::Warning { message } => eprintln!("distex: warning: {message}"),
            Event::RunFinished { completed, failed, elapsed_ms } => {
                println_flush(&format!(
                    "{} tasks: {completed} completed, {failed} failed in {:.2}s",
                    completed + failed,
                    *elapsed_ms as f64 / 1000.0
                ));
            }
            Event::RunStarted { .. } | Event::Progress { .. } => {}
        }
    }
}

fn println_flush(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// One JSON object per event, per line, on stdout (`--events`).
#[derive(Default)]
pub(crate) struct JsonLinesReporter;

impl Reporter for JsonLinesReporter {
    fn report(&mut self, event: &Event) {
        let _ = super::json::print(event);
    }
}

/// `distex plan` for people: the waves, then why each inferred edge exists.
pub(crate) fn plan(plan: &Plan) -> String {
    let mut out = String::new();
    for (i, wave) in plan.waves.iter().enumerate() {
        out.push_str(&format!("wave {}: {}\n", i + 1, wave.join(", ")));
    }
    for t in &plan.tasks {
        out.push_str(&format!("  [{}] {}\n", t.id, t.command));
        for d in &t.depends_on {
            out.push_str(&format!("      after {d}: depends_on\n"));
        }
        for i in &t.inferred {
            out.push_str(&format!("      after {}: {}\n", i.after, i.reason));
        }
    }
    out
}

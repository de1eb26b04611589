//! The worker pool: `--jobs` threads run units (one isolated worker each,
//! retried with backoff) and the coordinator thread turns what they report
//! into task transitions and events. Only the coordinator touches the
//! [`TaskList`] and the [`Reporter`].

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::ProcessOptions;
use super::worker::{self, Job, Program};
use crate::tasks::{Event, Reporter, TaskList, TaskStatus};

/// One worker to run: a region, or a byte range of a file.
#[derive(Debug, Clone)]
pub struct Unit {
    pub task_id: String,
    pub subject: String,
    pub program: Program,
    pub stdin: PathBuf,
    /// Extra variables (DISTEX_REGION); DISTEX_TASK_ID and DISTEX_ATTEMPT are added.
    pub env: Vec<(String, String)>,
    /// Records it holds, for progress (unknown for byte ranges).
    pub records: Option<u64>,
}

/// What a unit produced: the JSON object a user command printed, or the
/// raw output of a built-in worker (parsed into its type by the caller).
#[derive(Debug, Clone)]
pub enum Output {
    Json(Map<String, Value>),
    Raw(Vec<u8>),
}

pub type Outcome = Result<Output, String>;

/// Where units run: this machine, or a cluster node (`--nodes`), with how
/// many at once.
#[derive(Debug, Clone)]
pub struct Target {
    pub node: Option<crate::config::Node>,
    pub slots: usize,
}

impl Target {
    pub fn name(&self) -> &str {
        self.node.as_ref().map_or("local", |n| n.name.as_str())
    }
}

enum Msg {
    Started { unit: usize, attempt: u32, node: String },
    Retrying { unit: usize, attempt: u32, reason: String, delay: Duration },
    Finished { unit: usize, result: Outcome },
}

/// Runs every unit; returns their outcomes in order and the warnings raised.
pub fn run_units(
    options: &ProcessOptions,
    run_dir: &Path,
    units: &[Unit],
    tasks: &mut TaskList,
    started: Instant,
    reporter: &mut dyn Reporter,
    targets: &[Target],
) -> (Vec<Outcome>, Vec<String>) {
    let ms = || started.elapsed().as_millis() as u64;
    let queue = Arc::new(Mutex::new((0..units.len()).collect::<VecDeque<usize>>()));
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut threads = Vec::new();
    // One thread per slot of every target, all taking units from one queue:
    // a faster target simply takes more of them.
    for target in targets {
        for _ in 0..target.slots.min(units.len()) {
            let (queue, tx, target) = (queue.clone(), tx.clone(), target.clone());
            let (units, options, run_dir) = (units.to_vec(), options.clone(), run_dir.to_path_buf());
            threads.push(std::thread::spawn(move || {
                while let Some(unit) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
                    let result = run_with_retries(&options, &run_dir, unit, &units[unit], &target, &tx);
                    let _ = tx.send(Msg::Finished { unit, result });
                }
            }));
        }
    }
    drop(tx);

    let mut results: Vec<Option<Outcome>> = vec![None; units.len()];
    let mut warnings = Vec::new();
    let (mut done, mut records_done) = (0u64, 0u64);
    for msg in rx {
        match msg {
            Msg::Started { unit, attempt, node } => {
                let id = &units[unit].task_id;
                if let Some(from) = tasks.transition(id, TaskStatus::InProgress, ms()) {
                    if let Some(t) = tasks.get_mut(id) {
                        t.node = Some(node);
                    }
                    if from != TaskStatus::InProgress || attempt == 1 {
                        reporter.report(&status_event(tasks, id, from, None));
                    }
                }
            }
            Msg::Retrying { unit, attempt, reason, delay } => {
                let message = format!(
                    "{} attempt {attempt} failed: {reason}; retrying in {} ms",
                    units[unit].subject,
                    delay.as_millis()
                );
                reporter.report(&Event::Warning { message: message.clone() });
                warnings.push(message);
            }
            Msg::Finished { unit, result } => {
                let id = &units[unit].task_id;
                let from = match &result {
                    Ok(_) => tasks.transition(id, TaskStatus::Completed, ms()),
                    Err(reason) => tasks.fail(id, reason.clone(), ms()),
                };
                // A result for a task that already finished is ignored: counted once.
                if let Some(from) = from {
                    reporter.report(&status_event(tasks, id, from, result.as_ref().err().cloned()));
                    results[unit] = Some(result);
                    done += 1;
                    records_done += units[unit].records.unwrap_or(0);
                    reporter.report(&Event::Progress {
                        done,
                        total: Some(units.len() as u64),
                        records: units[unit].records.map(|_| records_done),
                        elapsed_ms: ms(),
                    });
                }
            }
        }
    }
    for t in threads {
        let _ = t.join();
    }
    let outcomes = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                let reason = "the worker pool stopped before running it".to_string();
                tasks.fail(&units[i].task_id, reason.clone(), ms());
                Err(reason)
            })
        })
        .collect();
    (outcomes, warnings)
}

pub fn status_event(tasks: &TaskList, id: &str, from: TaskStatus, error: Option<String>) -> Event {
    let task = tasks.get(id).expect("known task");
    Event::TaskStatusChanged {
        id: id.to_string(),
        subject: task.subject.clone(),
        from,
        to: task.status,
        at_ms: task.history.last().map_or(0, |h| h.at_ms),
        node: task.node.clone(),
        error,
    }
}

/// Runs one unit with up to `options.retries` extra attempts, each in a
/// fresh work directory.
fn run_with_retries(
    options: &ProcessOptions,
    run_dir: &Path,
    index: usize,
    unit: &Unit,
    target: &Target,
    tx: &mpsc::Sender<Msg>,
) -> Outcome {
    let mut attempt = 1u32;
    loop {
        let _ = tx.send(Msg::Started { unit: index, attempt, node: target.name().to_string() });
        let workdir = run_dir.join(format!("work-{index}-{attempt}"));
        let mut env = unit.env.clone();
        env.push(("DISTEX_TASK_ID".into(), unit.task_id.clone()));
        env.push(("DISTEX_ATTEMPT".into(), attempt.to_string()));
        let job = Job {
            program: unit.program.clone(),
            stdin: unit.stdin.clone(),
            workdir: workdir.clone(),
            env,
            limits: options.limits.clone(),
            sandbox: options.sandbox,
        };
        let ran = match &target.node {
            Some(node) => super::remote::run(node, &job),
            None => worker::run(&job),
        };
        let result = ran.and_then(|out| match &unit.program {
            Program::Shell(_) => worker::parse_output(&out).map(Output::Json),
            Program::Builtin { .. } => Ok(Output::Raw(out)),
        });
        if !options.keep_workdirs {
            worker::remove_dir(&workdir);
        }
        match result {
            Ok(output) => return Ok(output),
            Err(reason) if attempt <= options.retries && !worker::interrupted() => {
                let delay = backoff(attempt);
                let _ = tx.send(Msg::Retrying { unit: index, attempt, reason, delay });
                std::thread::sleep(delay);
                attempt += 1;
            }
            Err(reason) if attempt > 1 => {
                return Err(format!("{reason} (after {attempt} attempts)"));
            }
            Err(reason) => return Err(reason),
        }
    }
}

/// 100 ms, 200 ms, 400 ms, ... capped at 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << (attempt - 1).min(6))).min(Duration::from_secs(5))
}

//! Region workers on a Slurm node (`--nodes hpc` where `hpc` has
//! `kind = "slurm"`): every unit is a task of one `sbatch --array` job.
//!
//! The shared run directory (`WORKDIR/distex-process/<run>/`, on the
//! filesystem the compute nodes share) holds, per unit `i`:
//!
//! * `in-i`: the unit's input (its stdin), copied once;
//! * `task-i.sh`: its attempt, a POSIX script where every value is
//!   single-quoted: a fresh `mktemp -d` directory as cwd, HOME and TMPDIR,
//!   `env -i` with only PATH, LANG and the `DISTEX_*` variables, the
//!   `ulimit`s of `--max-memory` and `--max-cpu-seconds`;
//! * `out-i-A`, `err-i-A`, `status-i-A`: what attempt `A` printed and its
//!   exit status, each renamed into place when complete. The status file is
//!   the source of truth: without an accounting database `sacct` knows
//!   nothing, and `scontrol` forgets a job after `MinJobAge`.
//!
//! `array.sh` runs `task-$SLURM_ARRAY_TASK_ID.sh`. The coordinator follows
//! its tasks with one `squeue --states=all` call per poll (a task shows
//! `in_progress` once Slurm runs it), reads each status file as it
//! appears, and resubmits in one new array the tasks that failed (per
//! `--retries`) or were lost (the job ended, or its node went down, without
//! a status file: not the processor's fault, so not counted as a retry).
//! `--timeout` cancels the one array task; Ctrl-C cancels every array.
//!
//! The built-in summary worker is this distex binary, copied once into
//! `WORKDIR/distex-process/bin/` (the compute nodes are this machine's
//! kind: Slurm's commands run here, so the node has no login `host`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::local::{Program, interrupted};
use super::pool::Unit;
use crate::config::{Node, SlurmSettings};
use crate::process::ProcessOptions;
use crate::route::sh_quote;

/// How often the coordinator asks `squeue`.
const POLL: Duration = Duration::from_millis(250);
/// Polls a task may be missing from `squeue` without a status file before
/// it counts as lost (a status file may land just after its job leaves).
const LOST_AFTER: u32 = 3;

/// What the array reports to the pool, unit by unit.
pub(crate) enum ArrayEvent<T> {
    /// Slurm started attempt `attempt` of `unit`.
    Started { unit: usize, attempt: u32 },
    /// The attempt failed; it is submitted again.
    Retrying { unit: usize, attempt: u32, reason: String },
    /// The attempt was lost (node down, job gone); it is submitted again.
    Lost { unit: usize, attempt: u32, reason: String },
    /// The unit's final outcome.
    Finished { unit: usize, result: Result<T, String> },
}

/// One unit's place in the run.
struct Task {
    attempt: u32,
    /// Attempts that were lost, not failed (they do not use up `--retries`).
    lost: u32,
    job: String,
    started: Option<Instant>,
    /// The last attempt reported as started (a quick task may end
    /// between two polls without ever being seen running).
    announced: u32,
    missing: u32,
    done: bool,
}

/// The array job's shared directory and the Slurm options of the node.
struct Array<'a> {
    node: &'a Node,
    settings: &'a SlurmSettings,
    dir: PathBuf,
    name: String,
    distex: Option<PathBuf>,
    /// Each unit's program (its output cap depends on it).
    programs: Vec<Program>,
}

/// Runs every unit as a task of an `sbatch --array` job on `node`,
/// reporting to `on`; `read` turns a successful task's stdout into its
/// result (a refusal fails the attempt, retried like a non-zero exit).
pub(crate) fn run_array<T>(
    options: &ProcessOptions,
    node: &Node,
    units: &[Unit<T>],
    read: &dyn Fn(usize, Vec<u8>) -> Result<T, String>,
    on: &mut dyn FnMut(ArrayEvent<T>),
) {
    let array = match prepare(node, units) {
        Ok(a) => a,
        Err(e) => {
            for unit in 0..units.len() {
                on(ArrayEvent::Finished { unit, result: Err(format!("node {}: {e}", node.name)) });
            }
            return;
        }
    };
    let mut tasks: Vec<Task> = (0..units.len())
        .map(|_| Task { attempt: 1, lost: 0, job: String::new(), started: None, announced: 0, missing: 0, done: false })
        .collect();
    let all: Vec<usize> = (0..units.len()).collect();
    if let Err(e) = array.submit(options, units, &all, &mut tasks) {
        for unit in all {
            on(ArrayEvent::Finished { unit, result: Err(e.clone()) });
        }
        array.clean_up(options);
        return;
    }
    follow(options, &array, units, &mut tasks, read, on);
    array.clean_up(options);
}

/// The poll loop: one `squeue` per round, then every open task's files.
fn follow<T>(
    options: &ProcessOptions,
    array: &Array,
    units: &[Unit<T>],
    tasks: &mut [Task],
    read: &dyn Fn(usize, Vec<u8>) -> Result<T, String>,
    on: &mut dyn FnMut(ArrayEvent<T>),
) {
    let timeout = options.limits.timeout.map(Duration::from_secs_f64);
    while tasks.iter().any(|t| !t.done) {
        if interrupted() {
            array.cancel_all(tasks);
            for (unit, t) in tasks.iter_mut().enumerate().filter(|(_, t)| !t.done) {
                t.done = true;
                on(ArrayEvent::Finished {
                    unit,
                    result: Err("interrupted; its Slurm array task was cancelled".into()),
                });
            }
            return;
        }
        let states = array.states(tasks);
        let mut again = Vec::new();
        for (unit, task) in tasks.iter_mut().enumerate().filter(|(_, t)| !t.done) {
            let state = states.get(&(task.job.clone(), unit)).map(String::as_str);
            let now = step(options, array, unit, task, state, timeout, read);
            if react(options, array, unit, task, now, on) {
                again.push(unit);
            }
        }
        if !again.is_empty()
            && let Err(e) = array.submit(options, units, &again, tasks)
        {
            for unit in again {
                tasks[unit].done = true;
                on(ArrayEvent::Finished { unit, result: Err(e.clone()) });
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Reports what `step` found; true when the task must be submitted again.
fn react<T>(
    options: &ProcessOptions,
    array: &Array,
    unit: usize,
    task: &mut Task,
    step: Step<T>,
    on: &mut dyn FnMut(ArrayEvent<T>),
) -> bool {
    let ran = matches!(step, Step::Started | Step::Done(_) | Step::Failed(_));
    if ran && task.announced != task.attempt {
        task.announced = task.attempt;
        on(ArrayEvent::Started { unit, attempt: task.attempt });
    }
    match step {
        Step::Wait | Step::Started => false,
        Step::Done(result) => {
            task.done = true;
            on(ArrayEvent::Finished { unit, result });
            false
        }
        Step::Failed(reason) if task.attempt - task.lost <= options.retries && !interrupted() => {
            on(ArrayEvent::Retrying { unit, attempt: task.attempt, reason });
            task.attempt += 1;
            true
        }
        Step::Failed(reason) => {
            task.done = true;
            let reason = if task.attempt > 1 { format!("{reason} (after {} attempts)", task.attempt) } else { reason };
            on(ArrayEvent::Finished { unit, result: Err(reason) });
            false
        }
        Step::Lost(reason) => {
            // Make sure the lost copy never runs after all (at most one
            // live attempt per unit).
            array.cancel_task(&task.job, unit);
            on(ArrayEvent::Lost { unit, attempt: task.attempt, reason });
            task.attempt += 1;
            task.lost += 1;
            true
        }
    }
}

enum Step<T> {
    Wait,
    Started,
    Done(Result<T, String>),
    Failed(String),
    Lost(String),
}

/// What one task's files and Slurm state say now.
fn step<T>(
    options: &ProcessOptions,
    array: &Array,
    unit: usize,
    task: &mut Task,
    state: Option<&str>,
    timeout: Option<Duration>,
    read: &dyn Fn(usize, Vec<u8>) -> Result<T, String>,
) -> Step<T> {
    let files = array.files(unit, task.attempt);
    if let Some(code) = std::fs::read_to_string(&files.status).ok().and_then(|t| t.trim().parse::<i32>().ok()) {
        return finished(options, array, unit, task, code, &files, read);
    }
    match state {
        Some("PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "SUSPENDED" | "RESIZING") => {
            task.missing = 0;
            Step::Wait
        }
        Some("RUNNING" | "CONFIGURING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING") => {
            task.missing = 0;
            let first = task.started.is_none();
            let since = *task.started.get_or_insert_with(Instant::now);
            if timeout.is_some_and(|t| since.elapsed() >= t) {
                array.cancel_task(&task.job, unit);
                return Step::Failed(format!(
                    "timed out after {}s (--timeout) on node {}; its Slurm array task was cancelled",
                    options.limits.timeout.unwrap_or(0.0),
                    array.node.name
                ));
            }
            if first { Step::Started } else { Step::Wait }
        }
        // Ended (or forgotten) without a status file: count a few polls,
        // then it is lost (its node went down, or Slurm cancelled it).
        other => {
            task.missing += 1;
            if task.missing < LOST_AFTER {
                return Step::Wait;
            }
            task.missing = 0;
            task.started = None;
            Step::Lost(format!(
                "its Slurm array task {}_{unit} ended {} without a result on node {}",
                task.job,
                other.map_or("(no longer listed)".to_string(), |s| format!("as {s}")),
                array.node.name
            ))
        }
    }
}

/// A task wrote its status: read what it printed.
fn finished<T>(
    options: &ProcessOptions,
    array: &Array,
    unit: usize,
    task: &mut Task,
    code: i32,
    files: &Files,
    read: &dyn Fn(usize, Vec<u8>) -> Result<T, String>,
) -> Step<T> {
    task.started = None;
    let err = std::fs::read_to_string(&files.err).unwrap_or_default();
    let last = err.lines().rev().find(|l| !l.trim().is_empty()).map(|l| format!(": {}", l.trim())).unwrap_or_default();
    let node = &array.node.name;
    if code != 0 {
        let signal =
            if (129..=192).contains(&code) { format!(" (killed by signal {})", code - 128) } else { String::new() };
        return Step::Failed(format!("exited with status {code}{signal} on node {node}{last}"));
    }
    let cap = match array.programs.get(unit) {
        Some(Program::Shell(_)) => options.limits.max_output,
        _ => u64::MAX,
    };
    if std::fs::metadata(&files.out).is_ok_and(|m| m.len() > cap) {
        return Step::Failed(format!("printed more than {} (--max-output) on node {node}", super::human_bytes(cap)));
    }
    match std::fs::read(&files.out) {
        Ok(bytes) => match read(unit, bytes) {
            Ok(result) => Step::Done(Ok(result)),
            Err(reason) => Step::Failed(reason),
        },
        Err(e) => Step::Failed(format!("cannot read its output {}: {e}", files.out.display())),
    }
}

/// A task's files for one attempt.
struct Files {
    out: PathBuf,
    err: PathBuf,
    status: PathBuf,
}

/// Creates the shared run directory, copies the inputs and, for built-in
/// workers, this distex binary.
fn prepare<'a, U>(node: &'a Node, units: &[Unit<U>]) -> Result<Array<'a>, String> {
    let settings = node.slurm.as_ref().ok_or("not a Slurm node")?;
    if node.ssh_host().is_some() {
        return Err("distex process runs on Slurm nodes whose commands run on this machine (no `host`); \
                    for a login node, run distex there"
            .into());
    }
    let workdir = absolute(&node.workdir);
    let name = format!("distex-{}", crate::exec::run::run_id());
    let dir = workdir.join("distex-process").join(&name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let builtin = units.iter().any(|u| matches!(u.program, Program::Builtin { .. }));
    let distex = if builtin { Some(install_distex(&workdir)?) } else { None };
    for (i, unit) in units.iter().enumerate() {
        let to = dir.join(format!("in-{i}"));
        std::fs::copy(&unit.stdin, &to)
            .map_err(|e| format!("cannot copy {} to {}: {e}", unit.stdin.display(), to.display()))?;
    }
    let entry =
        format!("#!/bin/sh\nexec /bin/sh {}/task-\"$SLURM_ARRAY_TASK_ID\".sh\n", sh_quote(&dir.display().to_string()));
    std::fs::write(dir.join("array.sh"), entry).map_err(|e| format!("cannot write array.sh: {e}"))?;
    let programs = units.iter().map(|u| u.program.clone()).collect();
    Ok(Array { node, settings, dir, name, distex, programs })
}

/// This binary, copied into `WORKDIR/distex-process/bin/distex-VERSION`
/// once (to a temporary name, then renamed: runs at once never see half a
/// file).
fn install_distex(workdir: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let bin = workdir.join("distex-process").join("bin");
    let target = bin.join(format!("distex-{}", env!("CARGO_PKG_VERSION")));
    let me = std::env::current_exe().map_err(|e| format!("cannot find this distex binary: {e}"))?;
    let same_size =
        |a: &Path, b: &Path| std::fs::metadata(a).ok().map(|m| m.len()) == std::fs::metadata(b).ok().map(|m| m.len());
    if target.exists() && same_size(&me, &target) {
        return Ok(target);
    }
    std::fs::create_dir_all(&bin).map_err(|e| format!("cannot create {}: {e}", bin.display()))?;
    let temp = bin.join(format!(".distex-{}", std::process::id()));
    std::fs::copy(&me, &temp).map_err(|e| format!("cannot copy distex to {}: {e}", temp.display()))?;
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    std::fs::rename(&temp, &target).map_err(|e| format!("cannot install {}: {e}", target.display()))?;
    Ok(target)
}

/// A relative workdir is relative to `$HOME`.
fn absolute(workdir: &str) -> PathBuf {
    let dir = workdir.trim_start_matches("~/");
    match std::env::var_os("HOME") {
        Some(home) if !dir.starts_with('/') => PathBuf::from(home).join(dir),
        _ => PathBuf::from(dir),
    }
}

impl Array<'_> {
    fn files(&self, unit: usize, attempt: u32) -> Files {
        Files {
            out: self.dir.join(format!("out-{unit}-{attempt}")),
            err: self.dir.join(format!("err-{unit}-{attempt}")),
            status: self.dir.join(format!("status-{unit}-{attempt}")),
        }
    }

    /// Writes the attempt scripts of `which` and submits them as one array.
    fn submit<U>(
        &self,
        options: &ProcessOptions,
        units: &[Unit<U>],
        which: &[usize],
        tasks: &mut [Task],
    ) -> Result<(), String> {
        for &unit in which {
            let script = self.task_script(options, unit, &units[unit], tasks[unit].attempt);
            let path = self.dir.join(format!("task-{unit}.sh"));
            std::fs::write(&path, script).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        let list: Vec<String> = which.iter().map(usize::to_string).collect();
        let slots = self.node.slots.max(1);
        let mut args = crate::exec::slurm::job_options(self.settings, &self.name);
        args.extend([
            "--parsable".to_string(),
            // distex resubmits lost tasks itself, at once: Slurm's own
            // requeue would hold them back (BeginTime) for minutes.
            "--no-requeue".to_string(),
            format!("--array={}%{slots}", list.join(",")),
            "--output=/dev/null".to_string(),
            format!("--error={}/slurm-%A_%a.err", self.dir.display()),
            format!("--chdir={}", self.dir.display()),
            self.dir.join("array.sh").display().to_string(),
        ]);
        let out = slurm("sbatch", &args)?;
        let job = out.stdout.trim().split(';').next().unwrap_or("").to_string();
        if out.code != Some(0) || job.is_empty() || !job.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("node {}: Slurm refused the array job: {}", self.node.name, out.stderr.trim()));
        }
        for &unit in which {
            tasks[unit].job = job.clone();
            tasks[unit].missing = 0;
        }
        Ok(())
    }

    /// The script of one attempt (see the module doc).
    fn task_script<U>(&self, options: &ProcessOptions, unit: usize, u: &Unit<U>, attempt: u32) -> String {
        let q = |s: &str| sh_quote(s);
        let path = |p: PathBuf| sh_quote(&p.display().to_string());
        let files = self.files(unit, attempt);
        let mut env = vec![format!("DISTEX_TASK_ID={}", q(&u.task_id)), format!("DISTEX_ATTEMPT={attempt}")];
        env.extend(u.env.iter().map(|(k, v)| format!("{k}={}", q(v))));
        let program = match &u.program {
            Program::Builtin { kind, spec } => {
                env.push(format!("DISTEX_WORKER_SPEC={}", q(spec)));
                // `prepare` installed it: a run with a built-in unit has one.
                let distex = self.distex.clone().unwrap_or_else(|| PathBuf::from("distex"));
                format!("{} __worker {}", path(distex), q(kind))
            }
            Program::Shell(command) => format!("/bin/sh -c {}", q(command)),
        };
        let limits = &options.limits;
        let memory = limits.max_memory.map(|b| format!("ulimit -v {}\n  ", b / 1024)).unwrap_or_default();
        let cpu = limits.max_cpu_seconds.map(|s| format!("ulimit -t {s}\n  ")).unwrap_or_default();
        format!(
            "d=$(mktemp -d \"${{TMPDIR:-/tmp}}/distex-worker.XXXXXX\") || exit 125\n\
             mkdir \"$d/home\" \"$d/tmp\" && cd \"$d\" || exit 125\n\
             (\n  {memory}{cpu}ulimit -n {files} 2>/dev/null\n  ulimit -c 0 2>/dev/null\n  \
             exec env -i PATH=\"$PATH\" LANG=\"${{LANG:-C.UTF-8}}\" HOME=\"$d/home\" TMPDIR=\"$d/tmp\" {env} {program}\n\
             ) <{input} >{out}.part 2>{err}\n\
             rc=$?\n\
             cd / && rm -rf \"$d\"\n\
             mv -f {out}.part {out}\n\
             printf '%d\\n' \"$rc\" >{status}.part && mv -f {status}.part {status}\n",
            files = limits.max_open_files.unwrap_or(super::local::DEFAULT_OPEN_FILES),
            env = env.join(" "),
            input = path(self.dir.join(format!("in-{unit}"))),
            out = path(files.out),
            err = path(files.err),
            status = path(files.status),
        )
    }

    /// `(job, array index) -> state` for every job of the run, from one
    /// `squeue --states=all`; a pending range (`123_[4-9%2]`) lists each index.
    fn states(&self, tasks: &[Task]) -> BTreeMap<(String, usize), String> {
        let mut jobs: Vec<&str> = tasks.iter().filter(|t| !t.done).map(|t| t.job.as_str()).collect();
        jobs.sort_unstable();
        jobs.dedup();
        let args = [
            "--noheader".to_string(),
            "--states=all".into(),
            "--format=%i %T".into(),
            format!("--jobs={}", jobs.join(",")),
        ];
        match slurm("squeue", &args) {
            Ok(out) => parse_squeue(&out.stdout),
            Err(_) => BTreeMap::new(),
        }
    }

    fn cancel_task(&self, job: &str, unit: usize) {
        let _ = slurm("scancel", &["--quiet".into(), "--full".into(), format!("{job}_{unit}")]);
    }

    /// Cancels every array of the run and waits (up to 15 s) until squeue
    /// lists none of them as queued or running.
    fn cancel_all(&self, tasks: &[Task]) {
        let started = Instant::now();
        loop {
            let _ = slurm("scancel", &["--quiet".into(), "--full".into(), format!("--name={}", self.name)]);
            let open = self.states(tasks).values().any(|s| !is_final(s));
            if !open || started.elapsed() > Duration::from_secs(15) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn clean_up(&self, options: &ProcessOptions) {
        if !options.keep_workdirs {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// States after which a job never runs again.
fn is_final(state: &str) -> bool {
    matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "CANCELLED"
            | "TIMEOUT"
            | "NODE_FAIL"
            | "PREEMPTED"
            | "OUT_OF_MEMORY"
            | "BOOT_FAIL"
            | "DEADLINE"
    )
}

/// Parses `squeue --format="%i %T"` lines of array jobs.
fn parse_squeue(text: &str) -> BTreeMap<(String, usize), String> {
    let mut states = BTreeMap::new();
    for line in text.lines() {
        let Some((id, state)) = line.trim().split_once(' ') else { continue };
        let Some((job, index)) = id.split_once('_') else { continue };
        let index = index.split('%').next().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
        for part in index.split(',') {
            let (from, to) = part.split_once('-').unwrap_or((part, part));
            let (Ok(from), Ok(to)) = (from.parse::<usize>(), to.split('%').next().unwrap_or("").parse::<usize>())
            else {
                continue;
            };
            for i in from..=to.min(from + 1_000_000) {
                states.insert((job.to_string(), i), state.trim().to_string());
            }
        }
    }
    states
}

/// What a Slurm command printed.
struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn slurm(program: &str, args: &[String]) -> Result<Output, String> {
    let out =
        Command::new(program).args(args).stdin(Stdio::null()).output().map_err(|e| {
            format!("cannot run {program}: {e} (install Slurm's client commands, Debian: slurm-client)")
        })?;
    Ok(Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_give_each_array_index_its_state() {
        let s = parse_squeue("12_[3-5%2] PENDING\n12_1 RUNNING\n12_0 COMPLETED\n13_[7,9] PENDING\n");
        assert_eq!(s.get(&("12".into(), 4)).map(String::as_str), Some("PENDING"));
        assert_eq!(s.get(&("12".into(), 1)).map(String::as_str), Some("RUNNING"));
        assert_eq!(s.get(&("12".into(), 0)).map(String::as_str), Some("COMPLETED"));
        assert_eq!(s.get(&("13".into(), 9)).map(String::as_str), Some("PENDING"));
        assert_eq!(s.get(&("13".into(), 8)), None);
        assert_eq!(s.len(), 7);
    }
}

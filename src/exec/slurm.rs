//! Slurm partitions as nodes (issue 16): one command is one Slurm job of
//! one step, started with `srun`, found and cancelled by its unique name
//! `distex-<run id>`.
//!
//! distex drives Slurm only through its commands (`srun`, `squeue`,
//! `scancel`, `sinfo`), run on this machine or, when the node has a
//! `host`, on that login node over its SSH master. The phases of one run:
//!
//! 1. **mirror** the project into `workdir` (a filesystem the compute
//!    nodes share): rsync over SSH to the login node, or a local rsync
//!    with the same file selection (secrets never copied);
//! 2. **check** that the directory to run in exists (srun's `--chdir` to a
//!    missing directory silently runs in /tmp): here with a `stat`; over
//!    SSH by srun's own session, in front of srun ([`login_line`]), so a
//!    run costs one session there, not two (a workdir missing without a
//!    project is then created with `mkdir -p` and the job submitted again);
//! 3. **submit** with `srun --immediate`: a down partition or an invalid
//!    request fails at once (a transport error, so routing fails over).
//!    "Requested nodes are busy" is often a node still completing its
//!    previous job for a few milliseconds (Slurm schedules nothing on a
//!    completing node), while a queued job waits for the scheduler's next
//!    pass (a second or more): so `--immediate` is tried again after
//!    [`BUSY_RETRY_MS`] before the job is submitted without it and waits in
//!    the queue ("queued, waiting for resources" is shown as progress).
//!    "Insufficient priority" (others are queued first) queues at once.
//!    Nothing ran in a refused attempt, so this never runs the command
//!    twice;
//! 4. **stream** the step's output; the step is [`step_script`] under
//!    `sh -c`, whose pid marker says the command started and whose exit
//!    marker is its status. Both carry a random nonce the script draws on
//!    the node before the command starts; distex learns it from the pid
//!    marker, the first thing the step prints, so nothing the command
//!    prints can forge the exit marker (srun's own `task 0: Exited with
//!    exit code N` lines are dropped as noise). srun's stdin stays
//!    `/dev/null`: a nonce sent through it would reach the task only after
//!    srun's I/O setup (which lingers ~10 ms accepting connections), and
//!    the script would wait for it on every run;
//! 5. **stop** on `--timeout`, Ctrl-C or any signal: `scancel --name` the
//!    job (queued or running), end srun, and wait until `squeue` no longer
//!    lists it, so nothing is left running or queued.

use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::output::{OutputSink, Stream};
use super::probe::ProbeResult;
use super::remote::{Markers, Stop};
use super::run::{self, AttemptResult, NodeAttempt, RunSpec, RunStatus, Stopper, Timings};
use super::ssh::{self, Fault, Master, TransportError};
use super::sync::{self, Project, Secrets};
use crate::config::{Config, Node, SlurmSettings};
use crate::route::sh_quote;

/// The pauses (ms) before each new `--immediate` attempt after Slurm said
/// the nodes are busy; after the last, the job queues. About a second in
/// all, less than the scheduler's pass a queued job waits for.
pub(crate) const BUSY_RETRY_MS: [u64; 5] = [25, 50, 100, 200, 400];

/// How long distex waits for a cancelled job to leave `squeue`.
const CANCEL_WAIT: Duration = Duration::from_secs(15);

/// Where Slurm's commands run: here, or on the login node over SSH (also
/// the transport of `distex process`'s Slurm arrays, in
/// `process/workers/slurm/site.rs`).
pub(crate) enum Submitter {
    Here,
    Login(Master),
}

/// What a finished Slurm command printed.
pub(crate) struct Output {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Submitter {
    pub(crate) async fn connect(node: &Node) -> Result<Submitter, TransportError> {
        match node.ssh_host() {
            None => Ok(Submitter::Here),
            Some(_) => ssh::connect(node).await.map(Submitter::Login),
        }
    }

    /// Runs `argv` to the end (short Slurm commands: squeue, scancel...).
    /// Over SSH, `Err` is a transport failure (ssh could not run it).
    pub(crate) async fn output(&self, argv: &[String]) -> Result<Output, String> {
        self.output_bytes(argv).await.map(Output::from)
    }

    /// [`Submitter::output`] with stdout and stderr as the bytes they were.
    pub(crate) async fn output_bytes(&self, argv: &[String]) -> Result<std::process::Output, String> {
        match self {
            Submitter::Here => {
                let mut cmd = tokio::process::Command::new(&argv[0]);
                cmd.args(&argv[1..]).stdin(Stdio::null()).kill_on_drop(true);
                cmd.output().await.map_err(|e| spawn_error(&argv[0], &e))
            }
            Submitter::Login(master) => {
                let mut cmd = master.session().raw_command(command_line(argv));
                cmd.stdin(openssh::Stdio::null());
                cmd.output().await.map_err(|e| format!("{} over ssh: {e}", argv[0]))
            }
        }
    }

    /// Runs `argv` on the login node with `input` as its stdin (written
    /// while its output is read, so neither side waits on the other): for
    /// scripts too long for a command line (`sh -s`). Only over SSH.
    pub(crate) async fn feed(&self, argv: &[String], input: &[u8]) -> Result<std::process::Output, String> {
        use tokio::io::AsyncWriteExt;
        let Submitter::Login(master) = self else {
            return Err("feed runs on a login node only".into());
        };
        let failed = |e: openssh::Error| format!("{} over ssh: {e}", argv[0]);
        let mut cmd = master.session().raw_command(command_line(argv));
        cmd.stdin(openssh::Stdio::piped()).stdout(openssh::Stdio::piped()).stderr(openssh::Stdio::piped());
        let mut child = cmd.spawn().await.map_err(failed)?;
        let mut stdin = child.stdin().take().ok_or("no stdin pipe")?;
        let write = async move {
            let _ = stdin.write_all(input).await;
            let _ = stdin.shutdown().await;
        };
        let ((), out) = tokio::join!(write, child.wait_with_output());
        out.map_err(failed)
    }
}

impl From<std::process::Output> for Output {
    fn from(out: std::process::Output) -> Output {
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// `argv` as one POSIX shell command line, every word quoted.
fn command_line(argv: &[String]) -> String {
    argv.iter().map(|a| sh_quote(a)).collect::<Vec<_>>().join(" ")
}

fn spawn_error(program: &str, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        format!(
            "{program} not found: install Slurm's client commands (Debian: slurm-client) or set host to a login node"
        )
    } else {
        format!("cannot run {program}: {e}")
    }
}

/// The Slurm job name of a run: how distex finds and cancels it.
pub(crate) fn job_name(run_id: &str) -> String {
    format!("distex-{run_id}")
}

/// The options every job of this node gets (partition, account, qos,
/// time limit, the configured extra options).
pub(crate) fn job_options(s: &SlurmSettings, job: &str) -> Vec<String> {
    let mut args = vec![format!("--job-name={job}"), format!("--partition={}", s.partition)];
    let optional = [("--account", &s.account), ("--qos", &s.qos), ("--time", &s.time_limit)];
    args.extend(optional.iter().filter_map(|(flag, v)| v.as_ref().map(|v| format!("{flag}={v}"))));
    args.extend(s.sbatch_args.iter().cloned());
    args
}

/// `srun` running `command` as one task in `dir`.
pub(crate) fn srun_args(s: &SlurmSettings, job: &str, dir: &str, command: &str, immediate: bool) -> Vec<String> {
    let mut args = vec!["srun".to_string()];
    args.extend(job_options(s, job));
    args.extend(["--nodes=1", "--ntasks=1"].map(String::from));
    args.push(format!("--chdir={dir}"));
    if immediate {
        args.push("--immediate".into());
    }
    args.extend(["sh".to_string(), "-c".to_string(), step_script(command, dir)]);
    args
}

/// The step's script: draw this run's nonce (never on a command line, in
/// the environment or on stdin), announce the pid with it, `cd` into `dir`
/// (srun's `--chdir` would fall back to /tmp), run the command with stdin
/// `/dev/null` and the nonce unset, report its exit status.
///
/// The nonce is a fresh random UUID (122 random bits) read by the shell's
/// own `read` from Linux's `/proc/sys/kernel/random/uuid`, so no process
/// is started for it; elsewhere, 128 bits of `/dev/urandom` through `od`.
pub(crate) fn step_script(command: &str, dir: &str) -> String {
    format!(
        "{{ IFS= read -r n </proc/sys/kernel/random/uuid; }} 2>/dev/null ||\n\
         n=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \\n')\n\
         [ ${{#n}} -ge 32 ] || exit 125\n\
         printf '\\036\\037distex-%s:pid %d\\n' \"$n\" \"$$\" >&2\n\
         if cd -- {dir}; then (unset n; eval {command}) </dev/null; rc=$?; else rc=125; fi\n\
         printf '\\036\\037distex-%s:exit %d\\n' \"$n\" \"$rc\" >&2\n\
         exit \"$rc\"",
        dir = sh_quote(dir),
        command = sh_quote(command)
    )
}

/// The step's pid marker, `\x1e\x1fdistex-NONCE:pid N` with a nonce of
/// 32 to 36 hex digits and dashes: returns the nonce. Only the first
/// marker of a stream is read this way, and nothing the command prints can
/// come before it.
fn start_marker(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?.trim_end_matches('\n');
    let rest = text.strip_prefix("\x1e\x1fdistex-")?;
    let (nonce, pid) = rest.split_once(":pid ")?;
    let random = (32..=36).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    (random && pid.parse::<u32>().is_ok()).then(|| nonce.to_string())
}

/// What [`login_line`] prints when the directory to run in is missing.
const NO_DIR: &str = "\x1e\x1fdistex-no-dir";

/// The command line that runs srun over SSH: first a check that `dir`
/// exists (else [`NO_DIR`] and exit 125, srun never started), then srun
/// in the shell's place. One session instead of a `test -d` of its own.
fn login_line(argv: &[String], dir: &str) -> String {
    format!(
        "[ -d {} ] || {{ printf '\\036\\037distex-no-dir\\n' >&2; exit 125; }}; exec {}",
        sh_quote(dir),
        command_line(argv)
    )
}

/// What one line srun wrote on stderr means.
#[derive(Debug, PartialEq, Eq)]
enum SrunLine {
    /// `srun: job N queued and waiting for resources`.
    Queued,
    /// `srun: job N has been allocated resources`.
    Allocated,
    /// `srun: error: n1: task 0: Exited with exit code 3` and kin: the
    /// status is reported by distex itself.
    TaskEnded,
    /// `--immediate` found the partition up but without free resources.
    Busy(Busy),
    /// The job was refused: down partition, invalid options, limits.
    Refused(String),
    /// slurmctld did not answer within srun's `MessageTimeout` (it is
    /// overloaded, or down): nothing was allocated.
    NoAnswer(String),
    /// [`login_line`]'s check found no directory to run in (srun never ran).
    NoDir,
    /// Another srun message.
    Other,
    /// Not srun's: the command's own stderr.
    Command,
}

fn classify(line: &str) -> SrunLine {
    if line == NO_DIR {
        return SrunLine::NoDir;
    }
    let Some(rest) = line.strip_prefix("srun: ") else {
        return SrunLine::Command;
    };
    if rest.starts_with("job ") && rest.ends_with("queued and waiting for resources") {
        return SrunLine::Queued;
    }
    if rest.starts_with("job ") && rest.ends_with("has been allocated resources") {
        return SrunLine::Allocated;
    }
    if let Some(why) = rest.strip_prefix("error: Unable to allocate resources: ") {
        // Full, or others first in line: worth queueing. Anything else
        // (down partition, invalid request, limits) will not get better. A
        // controller that did not answer refused nothing: it is said so
        // (and, the partition being unusable now, still fails over).
        let why = why.trim().to_string();
        let unanswered = why.contains("Socket timed out") || why.contains("Unable to contact slurm controller");
        return if why.contains("busy") {
            SrunLine::Busy(Busy::Nodes)
        } else if why.contains("insufficient priority") {
            SrunLine::Busy(Busy::Behind)
        } else if unanswered {
            SrunLine::NoAnswer(why)
        } else {
            SrunLine::Refused(why)
        };
    }
    if rest.starts_with("error: ") && rest.contains(": task ") {
        return SrunLine::TaskEnded;
    }
    SrunLine::Other
}

/// Why `--immediate` could not start the job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    /// "Requested nodes are busy": running jobs, or a job completing.
    Nodes,
    /// "Insufficient priority": other jobs are queued first.
    Behind,
}

/// How one srun ended.
enum StepEnd {
    /// The command ran; `status` from its exit marker, else srun's code.
    Ran { status: Option<i32>, srun_code: Option<i32> },
    /// `--immediate` found no free resources: try again, or queue.
    Busy(Busy),
    /// Slurm never started the command; what srun said.
    NotStarted(String),
    /// The directory to run in is missing ([`login_line`]'s check): srun
    /// never ran.
    NoDir,
    /// distex stopped it (and cancelled the job).
    Stopped(Stop),
}

/// srun's stderr, split into the command's lines and srun's messages.
struct StderrFilter {
    /// This run's markers, once the step's pid marker gave the nonce.
    markers: Option<Markers>,
    line: Vec<u8>,
    /// srun's messages from before the command started (the reason, if
    /// it never does).
    said: Vec<String>,
    busy: Option<Busy>,
    /// Why Slurm allocated nothing (the first reason srun gave), said for the user.
    refused: Option<String>,
    no_dir: bool,
}

impl StderrFilter {
    fn new() -> Self {
        StderrFilter { markers: None, line: Vec::new(), said: vec![], busy: None, refused: None, no_dir: false }
    }

    /// Whether the step announced itself: the command started.
    fn started(&self) -> bool {
        self.markers.is_some()
    }

    /// The command's exit status, once its marker arrived.
    fn status(&self) -> Option<i32> {
        self.markers.as_ref().and_then(|m| m.status)
    }

    /// Feeds a chunk; whole lines go to `sink` (or are kept as srun's).
    /// Until the step announced itself every line is srun's or that pid
    /// marker; from then on the bytes go through this run's [`Markers`]
    /// first (the rest of the chunk after the pid marker included).
    fn feed(&mut self, bytes: &[u8], sink: &mut dyn OutputSink) {
        match &mut self.markers {
            Some(markers) => self.line.extend(markers.feed(bytes)),
            None => self.line.extend_from_slice(bytes),
        }
        while let Some(end) = self.line.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.line.drain(..=end).collect();
            match start_marker(&line).filter(|_| !self.started()) {
                Some(nonce) => {
                    let mut markers = Markers::new(&nonce);
                    let rest = std::mem::take(&mut self.line);
                    self.line = markers.feed(&rest);
                    self.markers = Some(markers);
                    sink.started();
                }
                None => self.handle(line, sink),
            }
        }
    }

    fn handle(&mut self, line: Vec<u8>, sink: &mut dyn OutputSink) {
        let text = String::from_utf8_lossy(&line);
        match classify(text.trim_end()) {
            SrunLine::Command => sink.chunk(Stream::Stderr, &line),
            SrunLine::Queued => sink.progress("queued, waiting for resources"),
            SrunLine::Allocated | SrunLine::TaskEnded => {}
            SrunLine::Busy(busy) => self.busy = Some(busy),
            SrunLine::NoDir if !self.started() => self.no_dir = true,
            SrunLine::NoDir => sink.chunk(Stream::Stderr, &line),
            SrunLine::Refused(why) => self.refuse(format!("Slurm refused the job: {why}")),
            SrunLine::NoAnswer(why) => self.refuse(format!(
                "the Slurm controller did not answer in time ({why}): it is overloaded or down; nothing was allocated"
            )),
            SrunLine::Other if self.started() => sink.chunk(Stream::Stderr, &line),
            SrunLine::Other => self.said.push(text.trim_end().to_string()),
        }
    }

    fn finish(&mut self, sink: &mut dyn OutputSink) {
        let mut rest = std::mem::take(&mut self.line);
        rest.extend(self.markers.as_mut().map(Markers::finish).unwrap_or_default());
        if !rest.is_empty() {
            self.handle(rest, sink);
        }
    }

    /// Keeps the first reason srun gave for allocating nothing.
    fn refuse(&mut self, why: String) {
        self.refused.get_or_insert(why);
    }

    /// Why the command never started, in srun's words.
    fn reason(&self) -> String {
        match &self.refused {
            Some(why) => why.clone(),
            None if self.said.is_empty() => "srun ended before the command started".to_string(),
            None => self.said.join("; ").trim_start_matches("srun: ").to_string(),
        }
    }
}

/// Runs one `srun` to its end, or until `stop` (then cancels the job).
async fn step(
    submitter: &Submitter,
    argv: &[String],
    dir: &str,
    job: &str,
    sink: &mut dyn OutputSink,
    stop: &mut Pin<&mut impl Future<Output = Stop>>,
) -> StepEnd {
    let mut filter = StderrFilter::new();
    let spawned = match submitter {
        Submitter::Here => spawn_here(argv).map(Launched::Here),
        Submitter::Login(master) => {
            let mut cmd = master.session().raw_command(login_line(argv, dir));
            cmd.stdin(openssh::Stdio::null()).stdout(openssh::Stdio::piped()).stderr(openssh::Stdio::piped());
            cmd.spawn().await.map(Launched::Login).map_err(|e| format!("cannot start srun over ssh: {e}"))
        }
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return StepEnd::NotStarted(e),
    };
    let Some((mut out, mut err)) = child.pipes() else {
        return StepEnd::NotStarted("srun gave no output pipes".into());
    };
    let (mut out_buf, mut err_buf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        tokio::select! {
            n = out.read(&mut out_buf), if out_open => match n {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => sink.chunk(Stream::Stdout, &out_buf[..n]),
            },
            n = err.read(&mut err_buf), if err_open => match n {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => filter.feed(&err_buf[..n], sink),
            },
            why = stop.as_mut() => {
                drop((out, err));
                cancel(submitter, job).await;
                child.end().await;
                return StepEnd::Stopped(why);
            }
        }
    }
    filter.finish(sink);
    let srun_code = child.wait().await;
    if filter.started() {
        sink.finish();
        StepEnd::Ran { status: filter.status(), srun_code }
    } else if filter.no_dir {
        StepEnd::NoDir
    } else if let Some(busy) = filter.busy {
        StepEnd::Busy(busy)
    } else {
        StepEnd::NotStarted(filter.reason())
    }
}

/// A running srun: a child here, or an ssh session running it.
enum Launched<'m> {
    Here(tokio::process::Child),
    Login(openssh::Child<&'m openssh::Session>),
}

type Pipe<'m> = Box<dyn AsyncRead + Unpin + Send + 'm>;

impl<'m> Launched<'m> {
    fn pipes(&mut self) -> Option<(Pipe<'m>, Pipe<'m>)> {
        match self {
            Launched::Here(c) => Some((Box::new(c.stdout.take()?), Box::new(c.stderr.take()?))),
            Launched::Login(c) => Some((Box::new(c.stdout().take()?), Box::new(c.stderr().take()?))),
        }
    }

    async fn wait(self) -> Option<i32> {
        match self {
            Launched::Here(mut c) => c.wait().await.ok().and_then(|s| s.code()),
            Launched::Login(c) => c.wait().await.ok().and_then(|s| s.code()),
        }
    }

    /// Ends srun after its job was cancelled: SIGTERM (srun cancels its
    /// step), then SIGKILL after 5 s. Over ssh, closing the session does.
    async fn end(self) {
        match self {
            Launched::Here(mut c) => {
                if let Some(pid) = c.id() {
                    // SAFETY: kill(2) on our own child, which has not been reaped.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
                if tokio::time::timeout(Duration::from_secs(5), c.wait()).await.is_err() {
                    let _ = c.kill().await;
                }
            }
            Launched::Login(c) => drop(c),
        }
    }
}

/// Starts srun here, in its own process group (a Ctrl-C at the terminal
/// is distex's to handle), dying with distex even on SIGKILL.
fn spawn_here(argv: &[String]) -> Result<tokio::process::Child, String> {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; it only sets this child's
    // parent-death signal, so srun gets SIGTERM (and cancels its step) if
    // distex dies without cleaning up.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| spawn_error(&argv[0], &e))
}

/// Cancels job `job` (queued or running) and waits until `squeue` no
/// longer lists it, at most [`CANCEL_WAIT`].
async fn cancel(submitter: &Submitter, job: &str) {
    let scancel = ["scancel", "--quiet", "--full", &format!("--name={job}")].map(String::from);
    let squeue = ["squeue", "--noheader", "--format=%i", &format!("--name={job}")].map(String::from);
    let started = Instant::now();
    loop {
        let _ = submitter.output(&scancel).await;
        let listed = submitter.output(&squeue).await.map(|o| !o.stdout.trim().is_empty()).unwrap_or(false);
        if !listed || started.elapsed() > CANCEL_WAIT {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the command on a Slurm node. A transport failure (cannot reach
/// the login node, mirror failed, Slurm refused the job) comes back as
/// `Err`, with the node's health recorded; once the command started, its
/// end is its status, never a transport error (it must not run twice).
pub(crate) async fn attempt(
    attempt: NodeAttempt<'_>,
    sink: &mut dyn OutputSink,
    stopper: &Stopper,
) -> Result<AttemptResult, TransportError> {
    let NodeAttempt { config, node, spec, project, returns } = attempt;
    let settings = node.slurm.as_ref().ok_or_else(|| fail(node, "not a Slurm node".into()))?;
    let mut timings = Timings::default();
    let t = Instant::now();
    let submitter = Submitter::connect(node).await.map_err(run::node_down)?;
    timings.connect_ms = ms(t.elapsed());
    let t = Instant::now();
    let (dir, held_back) = prepare_dir(config, &submitter, node, project, spec).await.map_err(|e| down(node, e))?;
    timings.sync_ms = ms(t.elapsed());
    let t = Instant::now();
    let mut end = submit(&submitter, settings, &dir, &spec.command, sink, stopper).await;
    if matches!(end, StepEnd::NoDir) && project.is_none() {
        // Over SSH, the workdir is created when srun's check finds it missing.
        make_dir(&submitter, &dir).await.map_err(|e| down(node, e))?;
        end = submit(&submitter, settings, &dir, &spec.command, sink, stopper).await;
    }
    timings.run_ms = ms(t.elapsed());
    let mut warnings = Vec::new();
    let status = status_of(end, node, &dir, &mut warnings)?;
    run::record_up(&node.name);
    let mut returned = Vec::new();
    if let Some(project) = project.filter(|_| !returns.is_empty() && !matches!(status, RunStatus::Interrupted)) {
        let t = Instant::now();
        match bring_back(&submitter, project, &node.workdir, returns).await {
            Ok(()) => returned = returns.to_vec(),
            Err(e) => warnings.push(format!("bringing back {} from {} failed: {e}", returns.join(", "), node.name)),
        }
        timings.return_ms = ms(t.elapsed());
    }
    Ok(AttemptResult { status, synced: project.is_some(), returned, held_back, warnings, timings })
}

/// Phases 1 and 2: mirror `project` (or, without one, create the
/// workdir) and, here, check that the directory to run in exists (over
/// SSH, srun's session checks it: [`login_line`]). Returns that directory
/// and the paths held back as secrets.
async fn prepare_dir(
    config: &Config,
    submitter: &Submitter,
    node: &Node,
    project: Option<&Project>,
    spec: &RunSpec,
) -> Result<(String, Vec<String>), String> {
    let here = matches!(submitter, Submitter::Here);
    match project {
        Some(project) => {
            let held = mirror(config, submitter, node, project, spec)
                .await
                .map_err(|e| format!("mirroring the project failed: {e}"))?;
            // The mirror exists, but the subdirectory to run in may not
            // (rsync creates no directory without a file to send).
            let dir = absolute_here(submitter, &project.remote_cwd(&node.workdir));
            if here && !Path::new(&dir).is_dir() {
                return Err(missing_dir(&dir));
            }
            Ok((dir, held))
        }
        None => {
            let dir = absolute_here(submitter, &node.workdir);
            if here {
                make_dir(submitter, &dir).await?;
            }
            Ok((dir, vec![]))
        }
    }
}

/// Phases 3 to 5: submit with `--immediate` (again after each pause of
/// [`BUSY_RETRY_MS`] while the nodes are busy), then queued, and follow
/// the step to its end (or stop it).
async fn submit(
    submitter: &Submitter,
    settings: &SlurmSettings,
    dir: &str,
    command: &str,
    sink: &mut dyn OutputSink,
    stopper: &Stopper,
) -> StepEnd {
    let job = job_name(&run::run_id());
    let stop = stopper.wait();
    tokio::pin!(stop);
    let mut pauses = BUSY_RETRY_MS.iter();
    let mut immediate = true;
    loop {
        let argv = srun_args(settings, &job, dir, command, immediate);
        match step(submitter, &argv, dir, &job, sink, &mut stop).await {
            StepEnd::Busy(busy) if immediate => match pauses.next().filter(|_| busy == Busy::Nodes) {
                // Nothing was submitted: a stop now has nothing to cancel.
                Some(&ms) => tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    why = stop.as_mut() => return StepEnd::Stopped(why),
                },
                None => immediate = false,
            },
            end => return end,
        }
    }
}

/// How the run ended, for the user: the command's status, distex's stop,
/// or a transport error when the command never started.
fn status_of(end: StepEnd, node: &Node, dir: &str, warnings: &mut Vec<String>) -> Result<RunStatus, TransportError> {
    Ok(match end {
        StepEnd::NotStarted(why) => return Err(down(node, why)),
        StepEnd::NoDir => return Err(down(node, missing_dir(dir))),
        StepEnd::Busy(_) => return Err(down(node, "Slurm reported the nodes busy while queueing".into())),
        StepEnd::Stopped(Stop::Timeout) => RunStatus::TimedOut,
        StepEnd::Stopped(Stop::Interrupted) => RunStatus::Interrupted,
        StepEnd::Ran { status: Some(code), .. } => RunStatus::Exited { code },
        StepEnd::Ran { status: None, srun_code } => {
            warnings.push(format!(
                "{}: the step ended without reporting the command's status (killed, or its node failed); srun exited {}",
                node.name,
                srun_code.map_or("by a signal".into(), |c| c.to_string())
            ));
            RunStatus::Exited { code: srun_code.unwrap_or(crate::error::exit::TRANSPORT as i32) }
        }
    })
}

fn fail(node: &Node, message: String) -> TransportError {
    TransportError { node: node.name.clone(), message, fault: Fault::Unreachable }
}

fn down(node: &Node, message: String) -> TransportError {
    run::node_down(fail(node, message))
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Here, a relative workdir is relative to `$HOME` (as on a login node,
/// where commands start in the home directory).
fn absolute_here(submitter: &Submitter, dir: &str) -> String {
    match submitter {
        Submitter::Here => under_home(std::env::var("HOME").ok().as_deref(), dir),
        Submitter::Login(_) => dir.to_string(),
    }
}

/// A node path (`workdir`, or a path in it) as an absolute path where
/// `home` is the home directory: `~/x` and a relative `x` are under
/// `home`; an absolute path, or any path when `home` is unknown, is kept.
pub(crate) fn under_home(home: Option<&str>, path: &str) -> String {
    let path = path.trim_start_matches("~/");
    match home.filter(|h| !h.is_empty()) {
        Some(home) if !path.starts_with('/') => format!("{}/{path}", home.trim_end_matches('/')),
        _ => path.to_string(),
    }
}

/// Creates the workdir a run without sync uses (as the SSH backend's
/// mirror parent is created): parents included, like `mkdir -p`.
async fn make_dir(submitter: &Submitter, dir: &str) -> Result<(), String> {
    let failed = |e: String| format!("cannot create the workdir {dir}: {e}");
    match submitter {
        Submitter::Here => std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string())),
        Submitter::Login(_) => {
            let out = submitter.output(&["mkdir".into(), "-p".into(), "--".into(), dir.into()]).await?;
            (out.code == Some(0)).then_some(()).ok_or_else(|| failed(out.stderr.trim().to_string()))
        }
    }
}

/// Why a run cannot start in `dir`: srun's `--chdir` to a missing
/// directory would run in /tmp instead.
fn missing_dir(dir: &str) -> String {
    format!("the directory to run in, {dir}, does not exist (check workdir, or sync the project)")
}

/// Mirrors the project into the node's workdir: over the login node's
/// master as for an SSH node, or with a local rsync of the same file set
/// (this machine shares the filesystem with the compute nodes). `distex
/// parallel` mirrors once per node and run. Returns the paths held back.
async fn mirror(
    config: &Config,
    submitter: &Submitter,
    node: &Node,
    project: &Project,
    spec: &RunSpec,
) -> Result<Vec<String>, String> {
    if let Submitter::Login(master) = submitter {
        return run::sync_once(config, master, project, node, spec).await;
    }
    let Some(set) = &spec.synced_nodes else {
        return push_here(config, node, project).await;
    };
    let mut done = set.lock().await;
    if done.contains(&node.name) {
        return Ok(vec![]);
    }
    let held = push_here(config, node, project).await?;
    done.insert(node.name.clone());
    Ok(held)
}

/// The local push: git's file set minus secrets ([`sync::file_set`]),
/// under a lock beside the mirror. The list of what was sent is kept
/// beside the mirror too, so files deleted here are deleted there.
async fn push_here(config: &Config, node: &Node, project: &Project) -> Result<Vec<String>, String> {
    let mirror = PathBuf::from(absolute_here(&Submitter::Here, &project.mirror(&node.workdir)));
    std::fs::create_dir_all(&mirror).map_err(|e| format!("cannot create {}: {e}", mirror.display()))?;
    let lock = lock_file(&mirror.with_extension("lock")).await?;
    let secrets = Secrets::new(&config.sync.include);
    let root = project.root.clone();
    let set =
        tokio::task::spawn_blocking(move || sync::file_set(&root, &secrets)).await.map_err(|e| e.to_string())??;
    let record = mirror.with_extension("sent");
    let before = std::fs::read_to_string(&record).ok();
    let list_path = mirror.with_extension("list");
    std::fs::write(&list_path, sync::push_list(&set.files, before.as_deref()))
        .map_err(|e| format!("cannot write {}: {e}", list_path.display()))?;
    let result = sync::rsync(local_push_args(project, &mirror, &list_path)).await;
    let _ = std::fs::remove_file(&list_path);
    if result.is_ok() {
        let _ = std::fs::write(&record, set.files.join("\0"));
    }
    drop(lock);
    result.map(|()| set.held_back)
}

/// Takes an exclusive lock on `path` (created if needed), so two distex
/// processes never write one mirror at once.
async fn lock_file(path: &Path) -> Result<std::fs::File, String> {
    let file = std::fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    tokio::task::spawn_blocking(move || {
        let _ = file.lock();
        file
    })
    .await
    .map_err(|e| e.to_string())
}

/// [`sync::push_args`] for a mirror on this machine: the same files (the
/// NUL-separated `list`), without the ssh transport.
pub(crate) fn local_push_args(project: &Project, mirror: &Path, list: &Path) -> Vec<OsString> {
    let mut args = without_transport(sync::push_args(project, "", Path::new(""), list));
    args.pop(); // the remote destination
    let mut dest = mirror.as_os_str().to_owned();
    dest.push("/");
    args.push(dest);
    args
}

/// Drops the ssh-only options (`-e ssh...`, `--rsync-path`, `--compress`)
/// and the `none:` host prefix from an rsync argument list.
fn without_transport(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut skip_next = false;
    for arg in args {
        let text = arg.to_string_lossy();
        if std::mem::take(&mut skip_next) || text.starts_with("--rsync-path=") || text == "--compress" {
            continue;
        }
        if text == "-e" {
            skip_next = true;
            continue;
        }
        match text.strip_prefix("none:") {
            Some(local) => out.push(OsString::from(local)),
            None => out.push(arg),
        }
    }
    out
}

/// Brings `paths` back from the mirror into the local project.
async fn bring_back(submitter: &Submitter, project: &Project, workdir: &str, paths: &[String]) -> Result<(), String> {
    let mirror = project.mirror(workdir);
    match submitter {
        Submitter::Login(master) => {
            sync::rsync(sync::return_args(project, &mirror, paths, &master.control_socket())).await
        }
        Submitter::Here => {
            let mirror = absolute_here(submitter, &mirror);
            sync::rsync(without_transport(sync::return_args(project, &mirror, paths, Path::new("")))).await
        }
    }
}

/// `distex nodes --probe` for a Slurm node: the partition's state and CPU
/// counts from `sinfo`. Load is the CPUs not idle (allocated, or down),
/// so an idle partition has load 0; a partition that is not up, or whose
/// CPUs are all down, is a node that does not answer.
pub(crate) async fn probe(node: &Node) -> ProbeResult {
    let started = Instant::now();
    let outcome = probe_sinfo(node).await;
    let elapsed_ms = ms(started.elapsed());
    let (answered, load, error) = match outcome {
        Ok((load, cores)) => (true, Some((load, cores)), None),
        Err(e) => (false, None, Some(e)),
    };
    ProbeResult {
        node: node.name.clone(),
        answered,
        load1: load.map(|l| l.0),
        cores: load.map(|l| l.1),
        error,
        platform: None,
        elapsed_ms,
    }
}

async fn probe_sinfo(node: &Node) -> Result<(f64, u32), String> {
    let settings = node.slurm.as_ref().ok_or("not a Slurm node")?;
    let limit = Duration::from_secs(node.connect_timeout + 5);
    let run = async {
        let submitter = Submitter::connect(node).await.map_err(|e| e.message)?;
        let argv = ["sinfo", "--noheader", &format!("--partition={}", settings.partition), "--format=%a %C"];
        submitter.output(&argv.map(String::from)).await
    };
    let out = tokio::time::timeout(limit, run)
        .await
        .map_err(|_| format!("sinfo gave no answer within {}s", limit.as_secs()))??;
    parse_sinfo(&out.stdout).ok_or_else(|| {
        let said = out.stderr.trim();
        if said.is_empty() {
            format!("partition {} not found by sinfo", settings.partition)
        } else {
            format!("sinfo: {said}")
        }
    })?
}

/// Parses `sinfo --format="%a %C"`: availability, then CPUs as
/// allocated/idle/other/total. Returns (busy CPUs, total CPUs), or an
/// error when the partition cannot take work.
fn parse_sinfo(text: &str) -> Option<Result<(f64, u32), String>> {
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    let (avail, cpus) = line.trim().split_once(' ')?;
    let counts: Vec<u32> = cpus.trim().split('/').map(|n| n.parse().ok()).collect::<Option<_>>()?;
    let [allocated, idle, other, total] = counts[..] else { return None };
    if avail != "up" {
        return Some(Err(format!("partition is {avail} (sinfo)")));
    }
    if total == 0 || allocated + idle == 0 {
        return Some(Err(format!("no usable CPUs in the partition ({other} of {total} down or drained; sinfo)")));
    }
    Some(Ok((f64::from(allocated + other), total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SlurmSettings {
        SlurmSettings {
            partition: "debug".into(),
            account: Some("lab".into()),
            qos: None,
            time_limit: Some("10".into()),
            sbatch_args: vec!["--mem=1G".into()],
            shared: vec![],
        }
    }

    #[test]
    fn srun_runs_the_step_script_with_the_node_options() {
        let args = srun_args(&settings(), "distex-1", "/w/p", "echo 'x'", true);
        for must in [
            "--job-name=distex-1",
            "--partition=debug",
            "--account=lab",
            "--time=10",
            "--mem=1G",
            "--chdir=/w/p",
            "--immediate",
        ] {
            assert!(args.contains(&must.to_string()), "missing {must} in {args:?}");
        }
        assert_eq!(args[args.len() - 3..args.len() - 1], ["sh", "-c"]);
        assert!(args.last().unwrap().contains(&sh_quote("echo 'x'")));
        assert!(!srun_args(&settings(), "j", "/w", "true", false).contains(&"--immediate".to_string()));
    }

    #[test]
    fn srun_lines_are_told_from_the_command_s() {
        assert_eq!(classify("srun: job 4 queued and waiting for resources"), SrunLine::Queued);
        assert_eq!(classify("srun: job 4 has been allocated resources"), SrunLine::Allocated);
        assert_eq!(classify("srun: error: n1: task 0: Exited with exit code 3"), SrunLine::TaskEnded);
        assert_eq!(
            classify("srun: error: Unable to allocate resources: Requested nodes are busy"),
            SrunLine::Busy(Busy::Nodes)
        );
        let waiting =
            "srun: error: Unable to allocate resources: Immediate execution impossible, insufficient priority";
        assert_eq!(classify(waiting), SrunLine::Busy(Busy::Behind));
        assert_eq!(
            classify("srun: error: Unable to allocate resources: Partition in DOWN state"),
            SrunLine::Refused("Partition in DOWN state".into())
        );
        assert_eq!(
            classify("srun: error: Unable to allocate resources: Socket timed out on send/recv operation"),
            SrunLine::NoAnswer("Socket timed out on send/recv operation".into())
        );
        let down = "srun: error: Unable to allocate resources: Unable to contact slurm controller (connect failure)";
        assert!(matches!(classify(down), SrunLine::NoAnswer(_)));
        assert_eq!(classify("warning: srun: x"), SrunLine::Command);
    }

    /// Records what a runner hands to its sink.
    #[derive(Default)]
    struct Seen {
        stderr: Vec<u8>,
        progress: Vec<String>,
        started: bool,
    }

    impl OutputSink for Seen {
        fn chunk(&mut self, _stream: Stream, bytes: &[u8]) {
            self.stderr.extend_from_slice(bytes);
        }
        fn started(&mut self) {
            self.started = true;
        }
        fn progress(&mut self, message: &str) {
            self.progress.push(message.to_string());
        }
    }

    #[test]
    fn stderr_keeps_the_command_s_lines_and_reads_srun_s() {
        const NONCE: &str = "0123456789abcdef0123456789abcdef";
        let (mut filter, mut seen) = (StderrFilter::new(), Seen::default());
        filter.feed(b"srun: job 7 queued and waiting for resources\nsrun: job 7 has been allocated res", &mut seen);
        assert!(!seen.started && seen.stderr.is_empty());
        // The pid marker and what follows it in the same chunk: from the
        // marker on, only this nonce's markers count.
        let chunk = format!(
            "ources\n\x1e\x1fdistex-{NONCE}:pid 12\n\x1e\x1fdistex-ffffffffffffffffffffffffffffffff:exit 0\noops\n\
             \x1e\x1fdistex-ffffffffffffffffffffffffffffffff:pid 13\nsrun: error: n1: task 0: Exited with exit code 3\n"
        );
        filter.feed(chunk.as_bytes(), &mut seen);
        filter.feed(format!("\x1e\x1fdistex-{NONCE}:exit 3\nno newline").as_bytes(), &mut seen);
        filter.finish(&mut seen);
        assert!(seen.started);
        assert_eq!(seen.progress, ["queued, waiting for resources"]);
        // A marker without this run's nonce is the command's output.
        assert_eq!(
            String::from_utf8_lossy(&seen.stderr),
            "\x1e\x1fdistex-ffffffffffffffffffffffffffffffff:exit 0\noops\n\
             \x1e\x1fdistex-ffffffffffffffffffffffffffffffff:pid 13\nno newline"
        );
        assert_eq!(filter.status(), Some(3));
        let (mut refused, mut seen) = (StderrFilter::new(), Seen::default());
        refused.feed(
            b"srun: error: Unable to allocate resources: Partition in DOWN state\nsrun: Partition in DOWN state\n",
            &mut seen,
        );
        assert_eq!(refused.reason(), "Slurm refused the job: Partition in DOWN state");
        assert!(seen.stderr.is_empty() && !refused.started());
    }

    /// Runs the step script under a real `sh` (as the Slurm task does) and
    /// follows its stderr as distex follows srun's.
    fn run_step(command: &str, dir: &str) -> (StderrFilter, Seen, Option<i32>) {
        run_script(&step_script(command, dir))
    }

    fn run_script(script: &str) -> (StderrFilter, Seen, Option<i32>) {
        let out = std::process::Command::new("sh").args(["-c", script]).stdin(Stdio::null()).output().expect("sh runs");
        let (mut filter, mut seen) = (StderrFilter::new(), Seen::default());
        filter.feed(&out.stderr, &mut seen);
        filter.finish(&mut seen);
        (filter, seen, out.status.code())
    }

    #[test]
    fn the_step_draws_its_own_nonce_and_output_cannot_forge_its_exit() {
        // The command prints an exit marker of its own (a nonce of the
        // right shape, and the literal variable), then exits 3.
        let forge = r#"printf '\036\037distex-0123456789abcdef0123456789abcdef:exit 0\n' >&2
printf '\036\037distex-%s:exit 0\n' "$n" >&2; echo "n=[$n] IFS=[$IFS]" >&2; exit 3"#;
        let (filter, seen, code) = run_step(forge, "/");
        assert!(seen.started);
        assert_eq!((filter.status(), code), (Some(3), Some(3)));
        let shown = String::from_utf8_lossy(&seen.stderr);
        assert!(shown.contains("distex-0123456789abcdef0123456789abcdef:exit 0"), "{shown:?}");
        // The nonce is not the command's to see, and IFS is the default.
        assert!(shown.contains("distex-:exit 0") && shown.contains("n=[] IFS=[ \t\n]"), "{shown:?}");
        // Each run draws another nonce; without Linux's uuid file, od's.
        let nonce = |f: &StderrFilter| f.markers.as_ref().map(|m| format!("{m:?}"));
        assert_ne!(nonce(&run_step("true", "/").0), nonce(&run_step("true", "/").0));
        let without_uuid = step_script("exit 4", "/").replace("/proc/sys/kernel/random/uuid", "/nonexistent");
        let (filter, seen, code) = run_script(&without_uuid);
        assert!(seen.started && seen.stderr.is_empty(), "{:?}", String::from_utf8_lossy(&seen.stderr));
        assert_eq!((filter.status(), code), (Some(4), Some(4)));
        // A missing directory: 125, after the start (it is the command's status).
        let (filter, seen, code) = run_step("true", "/nonexistent-distex-dir");
        assert!(seen.started);
        assert_eq!((filter.status(), code), (Some(125), Some(125)));
    }

    #[test]
    fn sinfo_gives_busy_and_total_cpus() {
        assert_eq!(parse_sinfo("up 1/3/0/4\n"), Some(Ok((1.0, 4))));
        assert!(matches!(parse_sinfo("down 0/4/0/4\n"), Some(Err(e)) if e.contains("down")));
        assert!(matches!(parse_sinfo("up 0/0/4/4\n"), Some(Err(e)) if e.contains("down or drained")));
        assert_eq!(parse_sinfo(""), None);
    }

    #[test]
    fn node_paths_are_under_the_home_directory_unless_absolute() {
        assert_eq!(under_home(Some("/home/u"), "~/distex"), "/home/u/distex");
        assert_eq!(under_home(Some("/home/u/"), "distex/p-1"), "/home/u/distex/p-1");
        assert_eq!(under_home(Some("/home/u"), "/shared/distex"), "/shared/distex");
        // An unknown home keeps the path (the login shell starts there).
        assert_eq!(under_home(Some(""), "distex"), "distex");
        assert_eq!(under_home(None, "~/distex"), "distex");
    }

    #[test]
    fn local_mirror_keeps_the_selection_without_ssh() {
        let p = Project { root: "/p".into(), subdir: "".into(), origin: "h".into() };
        let args: Vec<String> = local_push_args(&p, Path::new("/w/p-1"), Path::new("/w/p-1.list"))
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&"--files-from=/w/p-1.list".to_string()) && args.contains(&"--from0".to_string()));
        assert!(!args.iter().any(|a| a == "-e" || a.starts_with("--rsync-path") || a.starts_with("ssh ")), "{args:?}");
        assert_eq!(args[args.len() - 2..], ["/p/".to_string(), "/w/p-1/".to_string()]);
    }
}

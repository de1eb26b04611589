//! The array jobs' shared run directory and the Slurm commands that act
//! on it: preparing the directory (inputs, `array.sh`, the distex binary),
//! writing each array's group and attempt scripts and submitting it,
//! polling `squeue` and the parts' files, cancelling. Where the directory
//! is and where the commands run (here, or on a login node over SSH) is
//! the [`Site`]'s business: every file goes in through [`Site::put`],
//! every file comes back through [`Site::poll`].

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::super::local::Program;
use super::super::pool::Unit;
use super::Task;
use super::site::{Content, Limit, Read, Site, Watch};
use super::squeue::{is_final, parse_squeue};
use crate::config::{Node, SlurmSettings};
use crate::process::ProcessOptions;
use crate::route::sh_quote;

/// How much of an attempt's stderr a poll brings back (its last line is
/// the reason a failure gives).
const ERR_TAIL: u64 = 4096;

/// The array jobs' shared directory and the Slurm options of the node.
pub(super) struct Array<'a> {
    pub(super) node: &'a Node,
    pub(super) settings: &'a SlurmSettings,
    pub(super) site: Site,
    pub(super) name: String,
    pub(super) distex: Option<String>,
    /// Each unit's program (its output cap depends on it).
    pub(super) programs: Vec<Program>,
}

/// A part's files for one attempt: names in the run directory.
pub(super) struct Files {
    pub(super) out: String,
    pub(super) err: String,
    pub(super) status: String,
}

/// What one poll saw: each array task's (group's) Slurm state, and the
/// files of the open parts' attempts that wrote their status.
pub(super) struct Seen {
    pub(super) states: BTreeMap<(String, usize), String>,
    /// Whether `squeue` answered. When it did not (the controller is down
    /// or overloaded), a group missing from `states` says nothing: it may
    /// be running, so it must not count towards being lost.
    pub(super) answered: bool,
    pub(super) files: BTreeMap<String, Read>,
}

/// Creates the shared run directory with the inputs and the arrays' entry
/// script and, for built-in workers, finds or installs the distex binary.
pub(super) fn prepare<'a, U>(node: &'a Node, units: &[Unit<U>]) -> Result<Array<'a>, String> {
    let settings = node.slurm.as_ref().ok_or("not a Slurm node")?;
    let name = crate::exec::slurm::job_name(&crate::exec::run::run_id());
    let site = Site::open(node, &name)?;
    let builtin = units.iter().any(|u| matches!(u.program, Program::Builtin { .. }));
    let distex = if builtin { Some(site.distex()?) } else { None };
    let mut files: Vec<(String, Content)> = (units.iter().enumerate())
        .filter(|(_, unit)| !reads_nothing(unit))
        .map(|(i, unit)| (format!("in-{i}"), Content::Copy(unit.stdin.clone())))
        .collect();
    // `array.sh A` runs group `$SLURM_ARRAY_TASK_ID` of array `A`.
    let entry = format!("#!/bin/sh\nexec /bin/sh {}/group-\"$1\"-\"$SLURM_ARRAY_TASK_ID\".sh\n", sh_quote(site.dir()));
    files.push(("array.sh".into(), Content::Bytes(entry.into_bytes())));
    if let Err(e) = site.put(files) {
        site.remove();
        return Err(e);
    }
    let programs = units.iter().map(|u| u.program.clone()).collect();
    Ok(Array { node, settings, site, name, distex, programs })
}

/// A unit whose stdin is `/dev/null` (a byte-range part reads its file
/// in place): nothing to copy, its script reads `/dev/null` itself.
fn reads_nothing<U>(unit: &Unit<U>) -> bool {
    unit.stdin == Path::new("/dev/null")
}

impl Array<'_> {
    pub(super) fn files(&self, unit: usize, attempt: u32) -> Files {
        Files {
            out: format!("out-{unit}-{attempt}"),
            err: format!("err-{unit}-{attempt}"),
            status: format!("status-{unit}-{attempt}"),
        }
    }

    /// Writes the attempt scripts of the parts in `groups` and one script
    /// per group (its parts, one after another), all in one
    /// [`Site::put`], and submits the groups as array number `number`, at
    /// most `throttle` of them running at once. Returns the job id.
    pub(super) fn submit<U>(
        &self,
        options: &ProcessOptions,
        units: &[Unit<U>],
        number: usize,
        groups: &[Vec<usize>],
        throttle: usize,
        tasks: &[Task],
    ) -> Result<String, String> {
        let mut files = Vec::new();
        for (index, parts) in groups.iter().enumerate() {
            let mut group = String::from("#!/bin/sh\n");
            for &unit in parts {
                let script = self.task_script(options, unit, &units[unit], tasks[unit].attempt);
                files.push((format!("task-{unit}.sh"), Content::Bytes(script.into_bytes())));
                group.push_str(&format!("/bin/sh {}\n", sh_quote(&self.site.path(&format!("task-{unit}.sh")))));
            }
            files.push((format!("group-{number}-{index}.sh"), Content::Bytes(group.into_bytes())));
        }
        self.site.put(files)?;
        let mut args = crate::exec::slurm::job_options(self.settings, &self.name);
        args.extend([
            "--parsable".to_string(),
            // distex resubmits lost parts itself, at once: Slurm's own
            // requeue would hold them back (BeginTime) for minutes.
            "--no-requeue".to_string(),
            format!("--array=0-{}%{}", groups.len().saturating_sub(1), throttle.max(1)),
            "--output=/dev/null".to_string(),
            format!("--error={}", self.site.path("slurm-%A_%a.err")),
            format!("--chdir={}", self.site.dir()),
            self.site.path("array.sh"),
            number.to_string(),
        ]);
        args.insert(0, "sbatch".into());
        let out = match self.site.slurm(&args) {
            Ok(out) => out,
            Err(e) => return Err(self.submit_lost(&e, tasks)),
        };
        let job = out.stdout.trim().split(';').next().unwrap_or("").to_string();
        if out.code != Some(0) || job.is_empty() || !job.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("node {}: Slurm refused the array job: {}", self.node.name, out.stderr.trim()));
        }
        Ok(job)
    }

    /// sbatch's answer was lost (its ssh connection broke): Slurm may have
    /// the array anyway. Cancels every job of the run this runner does not
    /// know (never one it follows: each live array has an unsettled part
    /// whose `job` names it), so nothing runs unwatched; says so.
    fn submit_lost(&self, why: &str, tasks: &[Task]) -> String {
        let failed = format!("node {}: submitting the array failed ({why})", self.node.name);
        let args = ["squeue", "--noheader", "--states=all", "--format=%F", &format!("--name={}", self.name)];
        let listed = match self.site.slurm(&args.map(String::from)) {
            Ok(out) if out.code == Some(0) => out.stdout,
            _ => {
                return format!(
                    "{failed}; if Slurm got it, it may run unwatched: cancel it with `scancel --name={}` on {}",
                    self.name, self.node.host
                );
            }
        };
        let mut unknown: Vec<&str> =
            listed.lines().map(str::trim).filter(|id| !id.is_empty() && !tasks.iter().any(|t| t.job == *id)).collect();
        unknown.sort_unstable();
        unknown.dedup();
        for job in &unknown {
            let _ = self.site.slurm(&["scancel".into(), "--quiet".into(), "--full".into(), job.to_string()]);
        }
        if unknown.is_empty() {
            format!("{failed}; Slurm does not have it")
        } else {
            format!("{failed}; Slurm had it as job {}: cancelled", unknown.join(","))
        }
    }

    /// The script of one attempt (see the module doc).
    fn task_script<U>(&self, options: &ProcessOptions, unit: usize, u: &Unit<U>, attempt: u32) -> String {
        let q = |s: &str| sh_quote(s);
        let path = |name: &str| sh_quote(&self.site.path(name));
        let files = self.files(unit, attempt);
        let mut env = vec![format!("DISTEX_TASK_ID={}", q(&u.task_id)), format!("DISTEX_ATTEMPT={attempt}")];
        env.extend(u.env.iter().map(|(k, v)| format!("{k}={}", q(v))));
        let program = match &u.program {
            Program::Builtin { kind, spec } => {
                env.push(format!("DISTEX_WORKER_SPEC={}", q(spec)));
                // `prepare` installed it: a run with a built-in unit has one.
                let distex = self.distex.as_deref().unwrap_or("distex");
                format!("{} __worker {}", q(distex), q(kind))
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
            files = limits.max_open_files.unwrap_or(super::super::local::DEFAULT_OPEN_FILES),
            env = env.join(" "),
            input = if reads_nothing(u) { "/dev/null".to_string() } else { path(&format!("in-{unit}")) },
            out = path(&files.out),
            err = path(&files.err),
            status = path(&files.status),
        )
    }

    /// One poll: every job of the run in one `squeue --states=all` (a
    /// pending range `123_[4-9%2]` lists each index), and the files of
    /// each open part's attempt that wrote its status (a group runs
    /// several parts: each is watched on its own). `Err`: the site could
    /// not be asked (a login node that stayed unreachable).
    pub(super) fn poll(&self, options: &ProcessOptions, tasks: &[Task]) -> Result<Seen, String> {
        // A part waiting to be resubmitted has no attempt out there yet.
        let open = tasks.iter().enumerate().filter(|(_, t)| !t.done && t.group.is_some());
        let watches = open
            .map(|(unit, task)| {
                let files = self.files(unit, task.attempt);
                let cap = match self.programs.get(unit) {
                    // One byte more than allowed says it printed too much.
                    Some(Program::Shell(_)) => options.limits.max_output.saturating_add(1),
                    _ => u64::MAX,
                };
                Watch {
                    when: files.status,
                    read: vec![(files.out, Limit::Whole(cap)), (files.err, Limit::Tail(ERR_TAIL))],
                }
            })
            .collect::<Vec<_>>();
        let polled = self.site.poll(&self.squeue_args(tasks), &watches)?;
        let answered = squeue_answered(polled.squeue.code, &polled.squeue.stderr);
        Ok(Seen { states: parse_squeue(&polled.squeue.stdout), answered, files: polled.files })
    }

    /// `squeue`'s arguments for the run's open jobs.
    fn squeue_args(&self, tasks: &[Task]) -> Vec<String> {
        let mut jobs: Vec<&str> = tasks.iter().filter(|t| !t.done).map(|t| t.job.as_str()).collect();
        jobs.sort_unstable();
        jobs.dedup();
        vec!["--noheader".into(), "--states=all".into(), "--format=%i %T".into(), format!("--jobs={}", jobs.join(","))]
    }

    /// Cancels array task `index` (a group) of `job`. A call ssh could not
    /// make is made once more on a fresh master: its parts are resubmitted
    /// next, and its old task must not run beside the new ones.
    pub(super) fn cancel_task(&self, job: &str, index: usize) {
        let scancel = ["scancel".into(), "--quiet".into(), "--full".into(), format!("{job}_{index}")];
        if self.site.slurm(&scancel).is_err() {
            let _ = self.site.slurm(&scancel);
        }
    }

    /// Why the run gives up after `squeue` failed to answer for `for_`: the
    /// parts may still run, so they are not resubmitted; what to do.
    pub(super) fn squeue_silent(&self, for_: Duration) -> String {
        format!(
            "squeue has not answered for {}s (is slurmctld down or overloaded?); the parts still out there may \
             run: check with `squeue --name={name}`, cancel them with `scancel --name={name}`, and remove the \
             run directory {dir} when they are done",
            for_.as_secs(),
            name = self.name,
            dir = self.site.dir()
        )
    }

    /// Cancels every array of the run and waits (up to 15 s) until squeue
    /// lists none of them as queued or running.
    pub(super) fn cancel_all(&self, tasks: &[Task]) {
        let started = Instant::now();
        let scancel = ["scancel", "--quiet", "--full", &format!("--name={}", self.name)].map(String::from);
        let mut squeue = vec!["squeue".to_string()];
        squeue.extend(self.squeue_args(tasks));
        loop {
            let _ = self.site.slurm(&scancel);
            let listed = self.site.slurm(&squeue).map(|out| parse_squeue(&out.stdout));
            let open = listed.map_or(true, |states| states.values().any(|s| !is_final(s)));
            if !open || started.elapsed() > Duration::from_secs(15) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub(super) fn clean_up(&self, options: &ProcessOptions) {
        if !options.keep_workdirs {
            self.site.remove();
        }
    }
}

/// Whether `squeue` (its exit status and stderr) answered about the run's
/// jobs: it exited 0, or it said only that a job id is not known (Slurm
/// forgot a job after `MinJobAge`: a real answer, the job is gone).
fn squeue_answered(code: Option<i32>, stderr: &str) -> bool {
    code == Some(0) || (code.is_some() && stderr.contains("Invalid job id"))
}

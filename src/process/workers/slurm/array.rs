//! The array job's shared run directory and the Slurm commands that act
//! on it: preparing the directory (inputs, attempt scripts, the distex
//! binary), submitting arrays, asking `squeue`, cancelling.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::super::local::Program;
use super::super::pool::Unit;
use super::Task;
use super::squeue::{is_final, parse_squeue, slurm};
use crate::config::{Node, SlurmSettings};
use crate::process::ProcessOptions;
use crate::route::sh_quote;

/// The array job's shared directory and the Slurm options of the node.
pub(super) struct Array<'a> {
    pub(super) node: &'a Node,
    pub(super) settings: &'a SlurmSettings,
    pub(super) dir: PathBuf,
    pub(super) name: String,
    pub(super) distex: Option<PathBuf>,
    /// Each unit's program (its output cap depends on it).
    pub(super) programs: Vec<Program>,
}

/// A task's files for one attempt.
pub(super) struct Files {
    pub(super) out: PathBuf,
    pub(super) err: PathBuf,
    pub(super) status: PathBuf,
}

/// Creates the shared run directory, copies the inputs and, for built-in
/// workers, this distex binary.
pub(super) fn prepare<'a, U>(node: &'a Node, units: &[Unit<U>]) -> Result<Array<'a>, String> {
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
    for (i, unit) in units.iter().enumerate().filter(|(_, u)| !reads_nothing(u)) {
        let to = dir.join(format!("in-{i}"));
        std::fs::copy(&unit.stdin, &to)
            .map_err(|e| format!("cannot copy {} to {}: {e}", unit.stdin.display(), to.display()))?;
    }
    // `array.sh A` runs group `$SLURM_ARRAY_TASK_ID` of array `A`.
    let entry = format!(
        "#!/bin/sh\nexec /bin/sh {}/group-\"$1\"-\"$SLURM_ARRAY_TASK_ID\".sh\n",
        sh_quote(&dir.display().to_string())
    );
    std::fs::write(dir.join("array.sh"), entry).map_err(|e| format!("cannot write array.sh: {e}"))?;
    let programs = units.iter().map(|u| u.program.clone()).collect();
    Ok(Array { node, settings, dir, name, distex, programs })
}

/// A unit whose stdin is `/dev/null` (a byte-range part reads its file
/// in place): nothing to copy, its script reads `/dev/null` itself.
fn reads_nothing<U>(unit: &Unit<U>) -> bool {
    unit.stdin == Path::new("/dev/null")
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
pub(super) fn absolute(workdir: &str) -> PathBuf {
    let dir = workdir.trim_start_matches("~/");
    match std::env::var_os("HOME") {
        Some(home) if !dir.starts_with('/') => PathBuf::from(home).join(dir),
        _ => PathBuf::from(dir),
    }
}

impl Array<'_> {
    pub(super) fn files(&self, unit: usize, attempt: u32) -> Files {
        Files {
            out: self.dir.join(format!("out-{unit}-{attempt}")),
            err: self.dir.join(format!("err-{unit}-{attempt}")),
            status: self.dir.join(format!("status-{unit}-{attempt}")),
        }
    }

    /// Writes the attempt scripts of the parts in `groups` and one script
    /// per group (its parts, one after another), and submits the groups as
    /// array number `number`, at most `throttle` of them running at once.
    /// Returns the job id.
    pub(super) fn submit<U>(
        &self,
        options: &ProcessOptions,
        units: &[Unit<U>],
        number: usize,
        groups: &[Vec<usize>],
        throttle: usize,
        tasks: &[Task],
    ) -> Result<String, String> {
        let write = |path: &Path, text: String| {
            std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        for (index, parts) in groups.iter().enumerate() {
            let mut script = String::from("#!/bin/sh\n");
            for &unit in parts {
                let path = self.dir.join(format!("task-{unit}.sh"));
                write(&path, self.task_script(options, unit, &units[unit], tasks[unit].attempt))?;
                script.push_str(&format!("/bin/sh {}\n", sh_quote(&path.display().to_string())));
            }
            write(&self.dir.join(format!("group-{number}-{index}.sh")), script)?;
        }
        let mut args = crate::exec::slurm::job_options(self.settings, &self.name);
        args.extend([
            "--parsable".to_string(),
            // distex resubmits lost tasks itself, at once: Slurm's own
            // requeue would hold them back (BeginTime) for minutes.
            "--no-requeue".to_string(),
            format!("--array=0-{}%{}", groups.len().saturating_sub(1), throttle.max(1)),
            "--output=/dev/null".to_string(),
            format!("--error={}/slurm-%A_%a.err", self.dir.display()),
            format!("--chdir={}", self.dir.display()),
            self.dir.join("array.sh").display().to_string(),
            number.to_string(),
        ]);
        let out = slurm("sbatch", &args)?;
        let job = out.stdout.trim().split(';').next().unwrap_or("").to_string();
        if out.code != Some(0) || job.is_empty() || !job.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("node {}: Slurm refused the array job: {}", self.node.name, out.stderr.trim()));
        }
        Ok(job)
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
            files = limits.max_open_files.unwrap_or(super::super::local::DEFAULT_OPEN_FILES),
            env = env.join(" "),
            input = if reads_nothing(u) { "/dev/null".to_string() } else { path(self.dir.join(format!("in-{unit}"))) },
            out = path(files.out),
            err = path(files.err),
            status = path(files.status),
        )
    }

    /// `(job, array index) -> state` for every job of the run, from one
    /// `squeue --states=all`; a pending range (`123_[4-9%2]`) lists each index.
    pub(super) fn states(&self, tasks: &[Task]) -> BTreeMap<(String, usize), String> {
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

    /// Cancels array task `index` (a group) of `job`.
    pub(super) fn cancel_task(&self, job: &str, index: usize) {
        let _ = slurm("scancel", &["--quiet".into(), "--full".into(), format!("{job}_{index}")]);
    }

    /// Cancels every array of the run and waits (up to 15 s) until squeue
    /// lists none of them as queued or running.
    pub(super) fn cancel_all(&self, tasks: &[Task]) {
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

    pub(super) fn clean_up(&self, options: &ProcessOptions) {
        if !options.keep_workdirs {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

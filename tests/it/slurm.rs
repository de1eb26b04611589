//! Slurm partitions as nodes, against a real Slurm cluster the tests start
//! on this machine (tests/support/slurm.rs): `distex run` through `srun`,
//! `--timeout` and SIGTERM cancelling the job, failover from a down
//! partition or a controller that does not answer, a node busy for a
//! moment not queueing the job, `distex parallel`
//! keeping a task pending while Slurm queues it, and `distex process` as
//! array jobs, here or through a login node (a real sshd whose shell finds
//! the cluster): figures, small parts grouped into few array tasks (both
//! ways), retries that never push the run above `slots`, byte ranges of a
//! shared file read in place, lost nodes and connections, `--timeout`,
//! Ctrl-C, the binary rule.

use crate::util as support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::Sandbox;
use support::slurm::SlurmCluster;
use support::sshd::all_processes_matching;

/// Makes `dir` a git repository (distex mirrors what git sees).
fn git_init(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    let ok = std::process::Command::new("git").args(["init", "-q"]).arg(dir).status().unwrap().success();
    assert!(ok, "git init {}", dir.display());
}

/// A sandbox with a project (a git checkout holding `marker.txt`) and a
/// config naming the cluster's partitions `hpc` (debug) and `off` (down).
struct Setup {
    sb: Sandbox,
    cluster: SlurmCluster,
    project: PathBuf,
    workdir: PathBuf,
}

fn setup(nodes: usize, cpus: u32, slots: u32) -> Setup {
    setup_with(nodes, cpus, slots, "")
}

/// [`setup`], with `extra` lines in node `hpc`'s table.
fn setup_with(nodes: usize, cpus: u32, slots: u32, extra: &str) -> Setup {
    let cluster = SlurmCluster::start(nodes, cpus);
    let sb = Sandbox::new();
    let project = sb.path().join("project");
    git_init(&project);
    std::fs::write(project.join("marker.txt"), "mirrored\n").unwrap();
    std::fs::write(project.join(".env"), "SECRET=1\n").unwrap();
    std::fs::create_dir_all(sb.path().join("home")).unwrap();
    let workdir = sb.path().join("shared");
    let config = format!(
        "{}{}",
        cluster.node_table("hpc", "debug", slots, &workdir, extra),
        cluster.node_table("off", "off", 1, &workdir, "")
    );
    sb.write_config(&config);
    Setup { sb, cluster, project, workdir }
}

impl Setup {
    fn distex(&self) -> support::TestCommand {
        self.sb.configured().env("SLURM_CONF", &self.cluster.conf).current_dir(&self.project)
    }

    /// Asserts that Slurm lists no job and no process of `needle` is left.
    fn assert_nothing_left(&self, needle: &str) {
        let jobs = self.cluster.wait_no_jobs(Duration::from_secs(10));
        assert!(jobs.is_empty(), "Slurm still lists {jobs:?}");
        let started = Instant::now();
        while !all_processes_matching(needle).is_empty() && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(all_processes_matching(needle), vec![], "processes left behind");
    }
}

#[test]
fn run_streams_output_and_passes_the_exit_status_through_srun() {
    let s = setup(2, 2, 2);
    let run = s
        .distex()
        .args([
            "run",
            "--node",
            "hpc",
            "--sync",
            "--",
            "cat marker.txt; test -e .env || echo no-secret; echo oops >&2; exit 3",
        ])
        .run()
        .expect_code(3);
    assert_eq!(run.stdout(), "mirrored\nno-secret\n");
    assert_eq!(run.stderr().trim(), "oops", "srun's own lines must not reach the user");
    // A missing program is the shell's 127, not srun's 2.
    let run = s.distex().args(["run", "--node", "hpc", "--sync", "--", "no-such-program-dx"]).run().expect_code(127);
    assert!(run.stderr().contains("no-such-program-dx"), "{}", run.stderr());
    // JSON: where it ran, and the Slurm job is gone afterwards.
    let run = s.distex().args(["run", "--json", "--node", "hpc", "--sync", "--", "pwd"]).run().success();
    let v = run.json();
    assert_eq!(v["node"], "hpc", "{v}");
    let pwd = v["stdout"]["text"].as_str().unwrap().trim().to_string();
    assert!(pwd.starts_with(&s.workdir.display().to_string()), "ran in {pwd}, not the mirror");
    assert!(s.cluster.wait_no_jobs(Duration::from_secs(5)).is_empty());
    // `distex clean --remote` removes the mirror from the workdir here.
    assert!(std::path::Path::new(&pwd).is_dir());
    let clean = s.distex().args(["clean", "--remote", "--json"]).run().success().json();
    // (Both nodes of the config share the workdir: either may report it.)
    let removed: Vec<&serde_json::Value> =
        clean["nodes"].as_array().unwrap().iter().flat_map(|n| n["removed"].as_array().unwrap()).collect();
    assert!(removed.iter().any(|r| r.as_str() == Some(pwd.as_str())), "{clean}");
    assert!(!std::path::Path::new(&pwd).exists());
}

#[test]
fn a_directory_missing_in_the_mirror_is_a_transport_failure_not_a_run_in_tmp() {
    // A subdirectory git does not track: the mirror has no such directory,
    // and srun's --chdir there would silently run in /tmp.
    let s = setup(1, 2, 1);
    let sub = s.project.join("untracked-sub");
    std::fs::create_dir_all(&sub).unwrap();
    let run =
        s.distex().args(["run", "--json", "--node", "hpc", "--sync", "--", "pwd"]).current_dir(&sub).run().success();
    let v = run.json();
    assert_eq!(v["failed_attempts"][0]["node"], "hpc", "{v}");
    let error = v["failed_attempts"][0]["error"].as_str().unwrap();
    assert!(error.contains("untracked-sub") && error.contains("does not exist"), "{error}");
    assert_ne!(v["node"], "hpc", "{v}");
    assert_eq!(v["stdout"]["text"].as_str().unwrap().trim(), sub.display().to_string(), "{v}");
    assert!(s.cluster.jobs().is_empty());
}

#[test]
fn a_down_partition_is_a_transport_failure_that_fails_over() {
    let s = setup(1, 2, 1);
    let run = s.distex().args(["run", "--json", "--node", "off", "--", "echo ran-on-$(hostname)"]).run().success();
    let v = run.json();
    assert_ne!(v["node"], "off", "a down partition must fail over: {v}");
    assert!(v["stdout"]["text"].as_str().unwrap().starts_with("ran-on-"), "it ran once, elsewhere: {v}");
    let failed = &v["failed_attempts"][0];
    assert_eq!(failed["node"], "off", "{v}");
    assert!(failed["error"].as_str().unwrap().contains("Partition in DOWN state"), "{v}");
    // srun returns once the step ended; Slurm forgets the job afterwards
    // (it is listed COMPLETING until slurmd confirmed the cleanup, longer
    // on a loaded machine), so this waits rather than looking once.
    let jobs = s.cluster.wait_no_jobs(Duration::from_secs(10));
    assert!(jobs.is_empty(), "Slurm still lists {jobs:?} after {v}\n{}", s.cluster.logs());
}

#[test]
fn a_controller_that_does_not_answer_is_a_transport_failure_said_as_such() {
    let s = setup(1, 2, 1);
    // srun waits MessageTimeout for slurmctld; its own copy of slurm.conf
    // makes that 2 s here, so the frozen controller is noticed quickly.
    let conf = s.sb.path().join("slurm-impatient.conf");
    let text = std::fs::read_to_string(&s.cluster.conf).unwrap();
    assert!(text.contains("MessageTimeout=30"), "{text}");
    std::fs::write(&conf, text.replace("MessageTimeout=30", "MessageTimeout=2")).unwrap();
    s.cluster.signal_controller(libc::SIGSTOP);
    let run = s
        .distex()
        .env("SLURM_CONF", &conf)
        .args(["run", "--json", "--node", "hpc", "--", "echo ran-on-$(hostname)"])
        .run();
    s.cluster.signal_controller(libc::SIGCONT);
    let v = run.success().json();
    // Not "Slurm refused the job": the controller said nothing at all.
    assert_eq!(v["node"], "local", "{v}");
    assert_eq!(v["stdout"]["text"], format!("ran-on-{}\n", hostname()), "it ran once, here: {v}");
    let failed = &v["failed_attempts"][0];
    assert_eq!(failed["node"], "hpc", "{v}");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("Slurm controller did not answer in time") && error.contains("Socket timed out"), "{v}");
    assert!(!error.contains("refused"), "{v}");
    // Its request reaches the thawed controller late, with srun gone: no job may stay.
    let jobs = s.cluster.wait_no_jobs(Duration::from_secs(10));
    assert!(jobs.is_empty(), "Slurm still lists {jobs:?}");
}

fn hostname() -> String {
    let out = std::process::Command::new("hostname").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn timeout_cancels_the_job_and_leaves_no_process() {
    let s = setup(1, 2, 1);
    let started = Instant::now();
    let run = s.distex().args(["run", "--node", "hpc", "--timeout", "1", "--", "sleep 77.125"]).run().expect_code(124);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(!run.stderr().contains("srun:"), "{}", run.stderr());
    s.assert_nothing_left("sleep 77.125");
}

#[test]
fn sigterm_cancels_a_running_and_a_queued_job() {
    let s = setup(1, 1, 1);
    let mut running = s.distex().args(["run", "--node", "hpc", "--", "sleep 78.25"]).cmd.spawn().unwrap();
    wait_for_jobs(&s.cluster, 1, "RUNNING");
    // The only CPU is taken: the second run queues (and says so).
    let mut queued = s.distex().args(["run", "--node", "hpc", "--", "sleep 78.5"]).cmd;
    queued.stderr(std::process::Stdio::piped());
    let queued = queued.spawn().unwrap();
    wait_for_jobs(&s.cluster, 1, "PENDING");
    for child in [&running, &queued] {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }
    // 128 + SIGTERM: distex stopped on the signal, after cancelling.
    assert_eq!(running.wait().unwrap().code(), Some(143));
    let out = queued.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("queued, waiting for resources"), "{stderr}");
    s.assert_nothing_left("sleep 78.");
}

#[test]
fn a_node_busy_for_a_moment_runs_the_command_without_queueing_it() {
    // One CPU, taken by a job that ends in a moment: `--immediate` is tried
    // again until it is free (a queued job would wait for the scheduler's
    // next pass, and say so).
    let s = setup(1, 1, 1);
    let mut blocker = s.distex().args(["run", "--node", "hpc", "--", "sleep 0.25"]).cmd.spawn().unwrap();
    wait_for_jobs(&s.cluster, 1, "RUNNING");
    let run = s.distex().args(["run", "--node", "hpc", "--", "echo after"]).run().success();
    assert_eq!(run.stdout(), "after\n");
    assert!(!run.stderr().contains("queued"), "{}", run.stderr());
    assert!(blocker.wait().unwrap().success());
    s.assert_nothing_left("sleep 0.25");
}

/// Waits until Slurm lists `n` jobs in `state`.
fn wait_for_jobs(cluster: &SlurmCluster, n: usize, state: &str) {
    let started = Instant::now();
    loop {
        let jobs = cluster.jobs();
        if jobs.iter().filter(|j| j.ends_with(state)).count() >= n {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no {state} job: {jobs:?}\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn parallel_runs_40_tasks_and_shows_queued_ones_as_pending() {
    // 2 nodes x 2 CPUs, but 6 slots: Slurm queues 2 of them at a time.
    let s = setup(2, 2, 6);
    let commands: Vec<String> = (1..=40).map(|i| format!("sleep 0.3; echo task{i}")).collect();
    let run =
        s.distex().args(["parallel", "--events", "--sync", "--nodes", "hpc", "--"]).args(&commands).run().success();
    let events = run.json_lines();
    let mut in_progress = std::collections::HashSet::new();
    let (mut most, mut completed) = (0, 0);
    for e in &events {
        if e["event"] != "task_status_changed" {
            continue;
        }
        let id = e["id"].as_str().unwrap().to_string();
        match (e["from"].as_str().unwrap(), e["to"].as_str().unwrap()) {
            ("pending", "in_progress") => {
                assert_eq!(e["node"], "hpc", "{e}");
                in_progress.insert(id);
            }
            ("in_progress", "completed") => {
                assert!(in_progress.remove(&id), "{id} completed without running");
                completed += 1;
            }
            ("blocked", "pending") => {}
            other => panic!("unexpected transition {other:?}: {e}"),
        }
        most = most.max(in_progress.len());
    }
    assert_eq!(completed, 40);
    assert!(most <= 4, "{most} tasks in progress at once on 4 CPUs: queued tasks must stay pending");
    assert!(most >= 3, "only {most} at once: the cluster was not used in parallel");
    let outputs: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "task_output").collect();
    assert_eq!(outputs.len(), 40, "one line per task");
    assert!(s.cluster.wait_no_jobs(Duration::from_secs(5)).is_empty());
}

#[test]
fn probe_reports_the_partition_state_and_busy_cpus_as_load() {
    let s = setup(2, 2, 2);
    let mut busy = s.cluster.command("srun");
    busy.args(["--partition=debug", "--job-name=blocker", "sleep", "79.5"]);
    // Killed on drop, so a failed assertion below leaves no srun behind.
    let _busy = KillOnDrop(busy.spawn().unwrap());
    wait_for_jobs(&s.cluster, 1, "RUNNING");
    let run = s.distex().args(["nodes", "--probe", "--json"]).run().expect_code(1);
    let v = run.json();
    let probe = |name: &str| v["nodes"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap();
    let (hpc, off) = (probe("hpc"), probe("off"));
    assert_eq!(
        (hpc["answered"].as_bool(), hpc["load"].as_f64(), hpc["cores"].as_u64()),
        (Some(true), Some(1.0), Some(4)),
        "{v}"
    );
    assert_eq!(off["answered"], false, "{v}");
    assert_eq!(hpc["host"], "slurm:debug", "{v}");
    assert!(off["error"].as_str().unwrap().contains("down"), "{v}");
    s.cluster.run("scancel", &["--name=blocker"]);
}

/// A child process that is killed and reaped when dropped, even when the
/// test panics first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Slurm cluster whose commands run on a login node over SSH: a real
/// sshd (node `n1`, `kind = "slurm"`) whose ~/.bashrc exports SLURM_CONF
/// (bash reads it for the commands sshd runs; distex itself has no
/// SLURM_CONF), and a project (a git checkout holding `marker.txt`).
struct Login {
    slurm: SlurmCluster,
    ssh: support::sshd::Cluster,
    sb: Sandbox,
    project: PathBuf,
}

fn login_setup(cpus: u32, slots: u32) -> Login {
    login_setup_with(cpus, slots, "")
}

/// [`login_setup`] with `extra` lines in the node's table.
fn login_setup_with(cpus: u32, slots: u32, extra: &str) -> Login {
    let slurm = SlurmCluster::start(1, cpus);
    let ssh = support::sshd::Cluster::start(1);
    let login = ssh.node("n1");
    let home = login.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(".bashrc"), format!("export SLURM_CONF={}\n", slurm.conf.display())).unwrap();
    let sb = Sandbox::new();
    let project = sb.path().join("project");
    git_init(&project);
    std::fs::write(project.join("marker.txt"), "mirrored\n").unwrap();
    let table = format!("kind = \"slurm\"\npartition = \"debug\"\nslots = {slots}\n{extra}");
    sb.write_config(&ssh.node_table(login, &table));
    Login { slurm, ssh, sb, project }
}

impl Login {
    fn distex(&self) -> support::TestCommand {
        self.sb.configured().current_dir(&self.project)
    }

    /// What `distex process` left in the login node's workdir: the run
    /// directories (`distex-<id>`) and the installed binaries (`bin/...`).
    fn left_in_workdir(&self) -> (Vec<String>, Vec<String>) {
        let base = self.ssh.node("n1").workdir.join("distex-process");
        let names = |dir: PathBuf| -> Vec<String> {
            let entries = std::fs::read_dir(dir).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
            entries.iter().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
        };
        let runs = names(base.clone()).into_iter().filter(|n| n != "bin").collect();
        (runs, names(base.join("bin")))
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        support::sshd::stop_masters(self.sb.path());
    }
}

#[test]
fn a_login_node_over_ssh_mirrors_and_submits() {
    let s = login_setup(2, 2);
    let run = s
        .distex()
        .args(["run", "--node", "n1", "--sync", "--", "cat marker.txt; echo \"$SLURM_JOB_NAME\"; exit 4"])
        .run()
        .expect_code(4);
    let stdout = run.stdout();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "mirrored", "{}", run.stderr());
    assert!(lines[1].starts_with("distex-"), "not a Slurm job: {lines:?}");
    assert_eq!(run.stderr(), "");
    // srun's session checks the directory first: a subdirectory git does
    // not track is missing in the mirror, a transport failure (the command
    // runs here instead, not in /tmp there).
    let sub = s.project.join("untracked-sub");
    std::fs::create_dir_all(&sub).unwrap();
    let distex = || s.sb.configured();
    let login = s.ssh.node("n1");
    let v = distex().current_dir(&sub).args(["run", "--json", "--node", "n1", "--sync", "--", "pwd"]).run().json();
    let error = v["failed_attempts"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("untracked-sub") && error.contains("does not exist"), "{v}");
    assert_eq!(v["stdout"]["text"].as_str().unwrap().trim(), sub.display().to_string(), "{v}");
    // Without a project, a missing workdir is created, then the job runs.
    std::fs::remove_dir_all(&login.workdir).unwrap();
    let run = distex().current_dir(&s.project).args(["run", "--node", "n1", "--no-sync", "--", "pwd"]).run().success();
    assert_eq!(run.stdout().trim(), login.workdir.display().to_string(), "{}", run.stderr());
    assert!(s.slurm.wait_no_jobs(Duration::from_secs(5)).is_empty());
}

/// Counts a region's rows (its stdin holds the header too).
const ROWS: &str = r#"printf '{"rows": %d}\n' "$(($(wc -l) - 1))""#;

#[test]
fn process_through_a_login_node_gives_the_figures_of_a_local_run() {
    let s = login_setup(2, 4);
    regions_csv(&s.project.join("d.csv"), &["north", "south", "east", "west"], 150);
    let through = ["--json", "--jobs", "0", "--nodes", "n1"];
    // The built-in summary: this distex, copied to the login node's workdir.
    let remote = s.distex().args(["process", "d.csv", "--by", "region"]).args(through).run().success().json();
    let local = s.distex().args(["process", "d.csv", "--by", "region", "--json"]).run().success().json();
    assert_eq!(remote["regions"], local["regions"], "the same figures as a local run");
    assert_eq!(support::accounting(&remote), support::accounting(&local));
    assert_eq!(support::accounting(&remote)[0], 600);
    // A --processor needs no binary; --max-output holds through the login node.
    let flood = format!("[ \"$DISTEX_REGION\" = west ] && head -c 300000 /dev/zero; {ROWS}");
    let processor = ["--processor", &flood, "--max-output", "100K", "--retries", "0"];
    let by_region = ["process", "d.csv", "--by", "region"];
    let remote = s.distex().args(by_region).args(through).args(processor).run().expect_code(3).json();
    let local = s.distex().args(by_region).args(["--json"]).args(processor).run().expect_code(3).json();
    for region in ["north", "south", "east"] {
        assert_eq!(remote["regions"][region], local["regions"][region], "{remote:#}");
        assert_eq!(remote["regions"][region]["result"]["rows"], 150, "{remote:#}");
    }
    let error = remote["regions"]["west"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("--max-output") && error.contains("n1"), "{remote:#}");
    assert_eq!(support::accounting(&remote), support::accounting(&local));
    let tasks = remote["tasks"].as_array().unwrap();
    let parts: Vec<&serde_json::Value> = tasks.iter().filter(|t| t["subject"] != "aggregate-results").collect();
    assert_eq!(parts.len(), 4, "{tasks:#?}");
    assert!(parts.iter().all(|t| t["node"] == "n1"), "every part on the Slurm node: {tasks:#?}");
    assert!(s.slurm.wait_no_jobs(Duration::from_secs(5)).is_empty());
    let (runs, bins) = s.left_in_workdir();
    assert_eq!(runs, Vec::<String>::new(), "the run directories on the login node are removed");
    assert_eq!(bins, [format!("distex-{}", env!("CARGO_PKG_VERSION"))], "distex copied itself once");
}

#[test]
fn grouped_parts_and_byte_ranges_through_a_login_node_give_the_figures_of_a_local_run() {
    let data = tempfile::Builder::new().prefix("dx-shared-").tempdir().unwrap();
    let s = login_setup_with(2, 2, &format!("shared = [\"{}\"]", data.path().display()));
    let through = ["--json", "--jobs", "0", "--nodes", "n1"];
    // 60 small regions on 2 slots: 2 array tasks, each part still read
    // from its own status and output files by the poll.
    let names: Vec<String> = (0..60).map(|i| format!("r{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    regions_csv(&s.project.join("d.csv"), &names, 3);
    let by_region = ["process", "d.csv", "--by", "region", "--split", "regions"];
    let remote = s.distex().args(by_region).args(through).arg("--keep-workdirs").run().success().json();
    let local = s.distex().args(by_region).arg("--json").run().success().json();
    assert_eq!(remote["regions"], local["regions"], "the same figures as a local run");
    assert_eq!(support::accounting(&remote), [180, 180, 0, 0]);
    let login_workdir = s.ssh.node("n1").workdir.clone();
    let (runs, tasks) = array_tasks_run(&login_workdir);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!((1..=2).contains(&tasks), "{tasks} array tasks for 60 small regions on 2 slots");
    let statuses = std::fs::read_dir(&runs[0]).unwrap().flatten();
    let statuses = statuses.filter(|e| e.file_name().to_string_lossy().starts_with("status-")).count();
    assert_eq!(statuses, 60, "each part wrote its own status file");
    std::fs::remove_dir_all(&runs[0]).unwrap();
    // A file in a `shared` directory (the same path here and on the
    // cluster) is read in place as byte ranges through the login node.
    let file = data.path().join("big.csv");
    regions_csv(&file, &["north", "south", "east", "west"], 3000);
    let file = file.display().to_string();
    let bytes = ["process", &file, "--by", "region", "--split", "bytes", "--part-size", "20000"];
    let remote = s.distex().args(bytes).args(through).run().success().json();
    let local = s.distex().args(bytes).arg("--json").run().success().json();
    assert_eq!(remote["regions"], local["regions"], "the same figures as a local run");
    assert_eq!(support::accounting(&remote), [12000, 12000, 0, 0]);
    let parts: Vec<&serde_json::Value> =
        remote["tasks"].as_array().unwrap().iter().filter(|t| t["subject"] != "aggregate-results").collect();
    assert!(parts.len() >= 4, "byte ranges: {parts:#?}");
    assert!(parts.iter().all(|t| t["subject"].as_str().unwrap().starts_with("process-part-")), "{parts:#?}");
    assert!(parts.iter().all(|t| t["node"] == "n1"), "{parts:#?}");
    // The login node's workdir is not this machine's: a file outside
    // `shared` is not read in place.
    let run = s.distex().args(["process", "d.csv", "--by", "region", "--split", "bytes"]).args(through).run();
    let err = run.expect_code(2).stderr();
    assert!(err.contains("d.csv") && err.contains("`shared`") && err.contains("login node"), "{err}");
    assert!(s.slurm.wait_no_jobs(Duration::from_secs(5)).is_empty());
    assert_eq!(s.left_in_workdir().0, Vec::<String>::new(), "the run directories are removed");
}

/// Makes the login node say it is another architecture: a `uname` first
/// on its PATH that answers `-m` with riscv64.
fn pretend_riscv(s: &Login) {
    let login = s.ssh.node("n1");
    let bin = login.dir.join("riscv-bin");
    std::fs::create_dir_all(&bin).unwrap();
    support::write_executable(
        &bin.join("uname"),
        "#!/bin/sh\n[ \"$1\" = -m ] && { echo riscv64; exit 0; }\nexec /bin/uname \"$@\"\n",
    );
    let bashrc = login.dir.join("home/.bashrc");
    let text = std::fs::read_to_string(&bashrc).unwrap();
    std::fs::write(&bashrc, format!("{text}export PATH={}:$PATH\n", bin.display())).unwrap();
}

#[test]
fn a_login_node_of_another_architecture_runs_the_node_s_distex() {
    // Its distex is not this version: the run fails, saying what to set.
    let s = login_setup_with(2, 2, "distex = \"/opt/no-such/distex\"");
    pretend_riscv(&s);
    regions_csv(&s.project.join("d.csv"), &["a", "b"], 20);
    let args = ["process", "d.csv", "--by", "region", "--json", "--jobs", "0", "--nodes", "n1"];
    let failed = s.distex().args(args).run();
    assert_ne!(failed.code(), Some(0));
    let error = failed.json()["regions"]["a"]["error"].as_str().unwrap_or_default().to_string();
    for needed in ["node n1", "riscv64", "/opt/no-such/distex", "distex = "] {
        assert!(error.contains(needed), "{needed:?} missing from: {error}");
    }
    assert!(s.slurm.jobs().is_empty(), "nothing was submitted");
    // With the node's distex set to one of this version, it runs that one
    // and copies nothing.
    let s = login_setup_with(2, 2, &format!("distex = \"{}\"", support::DISTEX));
    pretend_riscv(&s);
    regions_csv(&s.project.join("d.csv"), &["a", "b"], 20);
    let remote = s.distex().args(args).run().success().json();
    let local = s.distex().args(["process", "d.csv", "--by", "region", "--json"]).run().success().json();
    assert_eq!(remote["regions"], local["regions"]);
    assert_eq!(s.left_in_workdir(), (vec![], vec![]), "no binary copied to another architecture");
}

#[test]
fn a_lost_login_connection_is_followed_again_without_resubmitting() {
    let mut s = login_setup(2, 4);
    regions_csv(&s.project.join("d.csv"), &["a", "b"], 10);
    let runs = s.sb.path().join("runs");
    let processor =
        format!("printf x >> '{}'; sleep 3; printf '{{\"attempt\": %d}}\\n' \"$DISTEX_ATTEMPT\"", runs.display());
    let mut child = s
        .distex()
        .args(["process", "d.csv", "--by", "region", "--json", "--jobs", "0", "--nodes", "n1"])
        .args(["--processor", &processor])
        .cmd;
    child.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = child.spawn().unwrap();
    wait_for_jobs(&s.slurm, 2, "RUNNING");
    // The login node's sshd dies with every connection, then comes back.
    s.ssh.node_mut("n1").cut();
    std::thread::sleep(Duration::from_millis(500));
    s.ssh.node_mut("n1").restart();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for region in ["a", "b"] {
        assert_eq!(report["regions"][region]["result"]["attempt"], 1, "{region} ran again: {report:#}");
    }
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "xx", "each part ran exactly once");
    assert!(s.slurm.wait_no_jobs(Duration::from_secs(5)).is_empty());
    assert_eq!(s.left_in_workdir().0, Vec::<String>::new(), "the run directory is removed");
}

#[test]
fn a_process_timeout_through_a_login_node_cancels_only_that_task() {
    let s = login_setup(2, 2);
    regions_csv(&s.project.join("d.csv"), &["quick", "slow"], 10);
    let processor = "[ \"$DISTEX_REGION\" = slow ] && exec sleep 81.625; printf '{\"ok\": true}\\n'";
    // (3 s: the quick task must end well within it, even on a loaded machine.)
    let report = s
        .distex()
        .args(["process", "d.csv", "--by", "region", "--json", "--jobs", "0", "--nodes", "n1", "--timeout", "3"])
        .args(["--processor", processor, "--retries", "0"])
        .run()
        .expect_code(3)
        .json();
    assert_eq!(report["regions"]["quick"]["result"]["ok"], true, "{report:#}");
    let slow = report["regions"]["slow"]["error"].as_str().unwrap();
    assert!(slow.contains("timed out") && slow.contains("cancelled"), "{slow}");
    assert!(s.slurm.wait_no_jobs(Duration::from_secs(10)).is_empty(), "the slow task was cancelled");
    assert!(
        support::eventually(Duration::from_secs(5), || all_processes_matching("sleep 81.625").is_empty()),
        "processes left behind: {:?}",
        all_processes_matching("sleep 81.625")
    );
}

#[test]
fn ctrl_c_through_a_login_node_cancels_the_array() {
    let s = login_setup(1, 2);
    regions_csv(&s.project.join("d.csv"), &["a", "b", "c"], 10);
    let mut child = s
        .distex()
        .args(["process", "d.csv", "--by", "region", "--json", "--jobs", "0", "--nodes", "n1"])
        .args(["--processor", "sleep 79.875"])
        .cmd;
    child.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = child.spawn().unwrap();
    wait_for_jobs(&s.slurm, 1, "RUNNING");
    assert_eq!(s.left_in_workdir().0.len(), 1, "the run directory is on the login node");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let jobs = s.slurm.wait_no_jobs(Duration::from_secs(10));
    assert!(jobs.is_empty(), "Slurm still lists {jobs:?}");
    assert!(
        support::eventually(Duration::from_secs(5), || all_processes_matching("sleep 79.875").is_empty()),
        "processes left behind: {:?}",
        all_processes_matching("sleep 79.875")
    );
    assert_eq!(s.left_in_workdir().0, Vec::<String>::new(), "the run directory is removed");
}

/// A CSV of `regions` regions with `rows` numeric rows each.
fn regions_csv(path: &std::path::Path, regions: &[&str], rows: usize) {
    let mut csv = String::from("region,v\n");
    for (r, name) in regions.iter().enumerate() {
        for k in 0..rows {
            csv.push_str(&format!("{name},{}.{}\n", k * (r + 1), k % 7));
        }
    }
    std::fs::write(path, csv).unwrap();
}

/// Prints the region's row count; `fail_once` regions fail their first attempt.
const COUNTING: &str = r#"case "$DISTEX_REGION:$DISTEX_ATTEMPT" in fail_once:1) echo "failing once" >&2; exit 5 ;; esac
sleep "${PAUSE:-0}"
printf '{"rows": %d, "attempt": %d}\n' "$(($(wc -l) - 1))" "$DISTEX_ATTEMPT""#;

#[test]
fn process_through_a_slurm_array_gives_the_figures_of_a_local_run() {
    let s = setup(2, 2, 4);
    let data = s.project.join("d.csv");
    regions_csv(&data, &["north", "south", "east", "west", "mid"], 200);
    let slurm = s
        .distex()
        .args(["process", "d.csv", "--by", "region", "--json", "--jobs", "0", "--nodes", "hpc"])
        .run()
        .success();
    let local = s.distex().args(["process", "d.csv", "--by", "region", "--json"]).run().success();
    let (slurm, local) = (slurm.json(), local.json());
    assert_eq!(slurm["regions"], local["regions"], "the same figures as a local run");
    assert_eq!(support::accounting(&slurm), support::accounting(&local));
    assert_eq!(support::accounting(&slurm)[0], 1000);
    let tasks = slurm["tasks"].as_array().unwrap();
    let parts: Vec<&serde_json::Value> = tasks.iter().filter(|t| t["subject"] != "aggregate-results").collect();
    assert_eq!(parts.len(), 5, "{tasks:#?}");
    assert!(parts.iter().all(|t| t["node"] == "hpc"), "every part on the Slurm node: {tasks:#?}");
    assert!(s.cluster.wait_no_jobs(Duration::from_secs(5)).is_empty());
    let left = std::fs::read_dir(s.workdir.join("distex-process"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != "bin")
        .count();
    assert_eq!(left, 0, "the shared run directory is removed");
}

#[test]
fn a_failing_array_task_is_retried_and_a_node_down_loses_nothing() {
    let s = setup(2, 1, 4);
    regions_csv(&s.project.join("d.csv"), &["a", "b", "fail_once", "c"], 50);
    std::fs::write(s.project.join("count.sh"), COUNTING).unwrap();
    let mut child = s
        .distex()
        .args(["process", "d.csv", "--by", "region", "--json", "--jobs", "0", "--nodes", "hpc", "--retries", "1"])
        .args(["--processor", &format!("PAUSE=2 sh {}", s.project.join("count.sh").display())])
        .cmd;
    child.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = child.spawn().unwrap();
    // Once n2 runs a task, take it down: its task must run again elsewhere.
    let started = Instant::now();
    loop {
        let out = s.cluster.run("squeue", &["--noheader", "--states=RUNNING", "--format=%N"]);
        if String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == "n2") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "n2 never ran a task");
        std::thread::sleep(Duration::from_millis(50));
    }
    let down = s.cluster.run("scontrol", &["update", "nodename=n2", "state=down", "reason=test"]);
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    for region in ["a", "b", "fail_once", "c"] {
        assert_eq!(report["regions"][region]["result"]["rows"], 50, "{region}: {report:#}");
    }
    assert_eq!(report["regions"]["fail_once"]["result"]["attempt"], 2, "retried once: {report:#}");
    assert_eq!(support::accounting(&report), [200, 200, 0, 0]);
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("failing once"), "{warnings}");
    assert!(warnings.contains("not counted as a retry"), "n2's task was not resubmitted: {warnings}");
    assert!(s.cluster.wait_no_jobs(Duration::from_secs(5)).is_empty());
}

#[test]
fn ctrl_c_cancels_the_array() {
    let s = setup(1, 1, 2);
    regions_csv(&s.project.join("d.csv"), &["a", "b", "c"], 10);
    let mut child = s
        .distex()
        .args(["process", "d.csv", "--by", "region", "--json", "--jobs", "0", "--nodes", "hpc"])
        .args(["--processor", "sleep 79.75"])
        .cmd;
    child.stdout(std::process::Stdio::piped());
    let child = child.spawn().unwrap();
    wait_for_jobs(&s.cluster, 1, "RUNNING");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stdout));
    s.assert_nothing_left("sleep 79.75");
}

#[test]
fn a_process_timeout_cancels_only_that_array_task() {
    let s = setup(1, 2, 2);
    regions_csv(&s.project.join("d.csv"), &["quick", "slow"], 10);
    let processor = "[ \"$DISTEX_REGION\" = slow ] && exec sleep 81.5; printf '{\"ok\": true}\\n'";
    let run = s
        .distex()
        .args(["process", "d.csv", "--by", "region", "--json", "--jobs", "0", "--nodes", "hpc", "--timeout", "2"])
        .args(["--processor", processor])
        .run()
        .expect_code(3);
    let report = run.json();
    assert_eq!(report["regions"]["quick"]["result"]["ok"], true, "{report:#}");
    let slow = report["regions"]["slow"]["error"].as_str().unwrap();
    assert!(slow.contains("timed out") && slow.contains("cancelled"), "{slow}");
    assert_eq!(support::accounting(&report), [20, 10, 0, 10]);
    s.assert_nothing_left("sleep 81.5");
}

/// The shared run directories `distex process --keep-workdirs` left in
/// `workdir`, and the array tasks Slurm ran there: Slurm itself opens one
/// `slurm-JOB_INDEX.err` file per array task it starts.
fn array_tasks_run(workdir: &std::path::Path) -> (Vec<PathBuf>, usize) {
    let runs: Vec<PathBuf> = std::fs::read_dir(workdir.join("distex-process"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("distex-")))
        .filter(|p| p.is_dir())
        .collect();
    let tasks = runs
        .iter()
        .flat_map(|r| std::fs::read_dir(r).unwrap().flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with("slurm-"))
        .count();
    (runs, tasks)
}

/// The most tasks in progress at once in an `--events` stream, and how
/// many completed.
fn most_in_progress(events: &[serde_json::Value]) -> (usize, usize) {
    let mut running = std::collections::HashSet::new();
    let (mut most, mut completed) = (0, 0);
    for e in events.iter().filter(|e| e["event"] == "task_status_changed") {
        let id = e["id"].as_str().unwrap().to_string();
        match e["to"].as_str().unwrap() {
            "in_progress" => {
                running.insert(id);
            }
            "completed" | "failed" => {
                running.remove(&id);
                completed += usize::from(e["to"] == "completed");
            }
            _ => {}
        }
        most = most.max(running.len());
    }
    (most, completed)
}

#[test]
fn small_regions_share_array_tasks_and_give_the_figures_of_a_local_run() {
    let s = setup(2, 2, 4);
    let names: Vec<String> = (0..200).map(|i| format!("r{i:03}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    regions_csv(&s.project.join("d.csv"), &names, 3);
    let args = ["process", "d.csv", "--by", "region", "--split", "regions", "--json"];
    let slurm = s.distex().args(args).args(["--jobs", "0", "--nodes", "hpc", "--keep-workdirs", "--events"]).run();
    let slurm = slurm.success();
    let local = s.distex().args(args).run().success().json();
    let events = slurm.json_lines();
    let report = events.last().unwrap();
    assert_eq!(report["regions"], local["regions"], "the same figures as a local run");
    assert_eq!(support::accounting(report), support::accounting(&local));
    assert_eq!(support::accounting(report), [600, 600, 0, 0]);
    let parts: Vec<&serde_json::Value> =
        report["tasks"].as_array().unwrap().iter().filter(|t| t["subject"] != "aggregate-results").collect();
    assert_eq!(parts.len(), 200);
    assert!(parts.iter().all(|t| t["node"] == "hpc" && t["status"] == "completed"), "{parts:#?}");
    // 200 parts, but only a few array tasks: one per slot for so little data.
    let (runs, tasks) = array_tasks_run(&s.workdir);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!((1..=4).contains(&tasks), "{tasks} array tasks for 200 small regions on 4 slots");
    // A group runs its parts one after another: never more in progress
    // than groups.
    let (most, completed) = most_in_progress(&events);
    assert_eq!(completed, 201);
    let trace: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "task_status_changed")
        .map(|e| format!("{} {}->{} {}", e["id"], e["from"], e["to"], e["at_ms"]))
        .collect();
    assert!(most <= 4, "{most} parts in progress at once in 4 groups: {trace:#?}");
    assert!(s.cluster.wait_no_jobs(Duration::from_secs(5)).is_empty());
}

/// Logs `start NS` and `end NS` around each run that does work (the
/// first attempt of a `fail_*` region fails at once), then prints its
/// attempt.
const LOGGING: &str = r#"log="$1"
case "$DISTEX_REGION:$DISTEX_ATTEMPT" in fail_*:1) echo "failing once" >&2; exit 5 ;; esac
echo "start $(date +%s%N)" >>"$log"
sleep 1.5
echo "end $(date +%s%N)" >>"$log"
printf '{"rows": %d, "attempt": %d}\n' "$(($(wc -l) - 1))" "$DISTEX_ATTEMPT""#;

#[test]
fn parts_are_never_resubmitted_while_squeue_cannot_answer() {
    // A real cluster, whose `squeue` (first on distex's PATH) answers like
    // a controller that cannot be reached while `squeue-down` exists. The
    // parts run meanwhile: not being listed must not make them "lost" and
    // run again (a processor may have side effects).
    let s = setup(1, 2, 2);
    regions_csv(&s.project.join("d.csv"), &["north", "south"], 50);
    let bin = s.sb.path().join("fault-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let down = s.sb.path().join("squeue-down");
    support::write_executable(
        &bin.join("squeue"),
        &format!(
            "#!/bin/sh\nif [ -e {down} ]; then\n  echo 'slurm_load_jobs error: Unable to contact slurm controller \
             (connect failure)' >&2\n  exit 1\nfi\nexec {real} \"$@\"\n",
            down = down.display(),
            real = which("squeue").display()
        ),
    );
    std::fs::write(&down, "").unwrap();
    let log = s.workdir.join("starts.log");
    std::fs::create_dir_all(&s.workdir).unwrap();
    let processor = format!("echo \"$DISTEX_REGION\" >>{}; sleep 2; {ROWS}", log.display());
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let run = s
        .distex()
        .env("PATH", path)
        .args(["process", "d.csv", "--by", "region", "--json", "--jobs", "0", "--nodes", "hpc"])
        .args(["--processor", &processor])
        .run()
        .success();
    let report = run.json();
    assert_eq!(report["regions"]["north"]["result"]["rows"], 50, "{report:#}");
    assert_eq!(report["regions"]["south"]["result"]["rows"], 50, "{report:#}");
    let mut starts: Vec<String> = std::fs::read_to_string(&log).unwrap().lines().map(str::to_string).collect();
    starts.sort();
    assert_eq!(starts, ["north", "south"], "each part ran exactly once: {report:#}");
    assert!(s.cluster.wait_no_jobs(Duration::from_secs(5)).is_empty());
}

/// Where `program` is on PATH.
fn which(program: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

#[test]
fn failing_parts_are_retried_alone_and_the_arrays_never_exceed_slots() {
    // 4 CPUs but 2 slots. By size, the two large `fail_*` regions lead
    // two groups and the small ones fill them: [fail_a s1 s3 s5] and
    // [fail_b s2 s4]. Both fail at once; their retries must wait for room,
    // then take only the one slot the shorter group leaves (Slurm starts
    // them when that group ends, while the longer one still runs).
    let s = setup(2, 2, 2);
    let mut csv = String::from("region,v\n");
    for (name, rows) in [("fail_a", 100), ("fail_b", 100), ("s1", 10), ("s2", 10), ("s3", 10), ("s4", 10), ("s5", 10)] {
        csv.extend((0..rows).map(|k| format!("{name},{k}\n")));
    }
    std::fs::write(s.project.join("d.csv"), csv).unwrap();
    std::fs::write(s.project.join("log.sh"), LOGGING).unwrap();
    let log = s.workdir.join("runs.log");
    std::fs::create_dir_all(&s.workdir).unwrap();
    let processor = format!("sh {} {}", s.project.join("log.sh").display(), log.display());
    let run = s
        .distex()
        .args(["process", "d.csv", "--by", "region", "--json", "--jobs", "0", "--nodes", "hpc", "--retries", "1"])
        .args(["--keep-workdirs", "--processor", &processor])
        .run()
        .success();
    let report = run.json();
    for (region, rows, attempt) in [
        ("fail_a", 100, 2),
        ("fail_b", 100, 2),
        ("s1", 10, 1),
        ("s2", 10, 1),
        ("s3", 10, 1),
        ("s4", 10, 1),
        ("s5", 10, 1),
    ] {
        let result = &report["regions"][region]["result"];
        assert_eq!(result["rows"], rows, "{region}: {report:#}");
        assert_eq!(result["attempt"], attempt, "{region}: only the failed parts run again: {report:#}");
    }
    assert_eq!(support::accounting(&report), [250, 250, 0, 0]);
    assert!(report["warnings"].to_string().contains("failing once"), "{report:#}");
    // Two groups, then both retries in one group: the room left was 1.
    assert_eq!(array_tasks_run(&s.workdir).1, 3);
    // At most 2 processors ran at once, and 2 did.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut marks: Vec<(u128, i32)> = text
        .lines()
        .map(|l| {
            let (what, at) = l.split_once(' ').unwrap();
            (at.parse().unwrap(), if what == "start" { 1 } else { -1 })
        })
        .collect();
    assert_eq!(marks.len(), 14, "7 runs did work: {text}");
    marks.sort_by_key(|&(at, delta)| (at, delta));
    let (mut now, mut most) = (0, 0);
    for (_, delta) in marks {
        now += delta;
        most = most.max(now);
    }
    assert_eq!(most, 2, "at most `slots` = 2 parts at once over every array: {text}");
    assert!(s.cluster.wait_no_jobs(Duration::from_secs(5)).is_empty());
}

#[test]
fn a_timeout_in_a_group_resubmits_the_parts_after_it_without_using_retries() {
    // One slot: one group, the largest region (`slow`) first. Its timeout
    // cancels the group, so the two parts after it never ran: they are
    // submitted again, and complete although --retries is 0.
    let s = setup(1, 2, 1);
    let mut csv = String::from("region,v\n");
    for (name, rows) in [("slow", 50), ("quick1", 5), ("quick2", 5)] {
        csv.extend((0..rows).map(|k| format!("{name},{k}\n")));
    }
    std::fs::write(s.project.join("d.csv"), csv).unwrap();
    let processor =
        "[ \"$DISTEX_REGION\" = slow ] && exec sleep 82.5; printf '{\"attempt\": %d}\\n' \"$DISTEX_ATTEMPT\"";
    let run = s
        .distex()
        .args(["process", "d.csv", "--by", "region", "--json", "--jobs", "0", "--nodes", "hpc", "--timeout", "2"])
        .args(["--retries", "0", "--processor", processor])
        .run()
        .expect_code(3);
    let report = run.json();
    let slow = report["regions"]["slow"]["error"].as_str().unwrap();
    assert!(slow.contains("timed out") && slow.contains("cancelled"), "{slow}");
    for quick in ["quick1", "quick2"] {
        assert_eq!(report["regions"][quick]["result"]["attempt"], 2, "{quick} ran once, as attempt 2: {report:#}");
    }
    assert!(report["warnings"].to_string().contains("not counted as a retry"), "{report:#}");
    assert_eq!(support::accounting(&report), [60, 10, 0, 50]);
    s.assert_nothing_left("sleep 82.5");
}

#[test]
fn byte_ranges_of_a_shared_file_are_read_in_place_by_the_array() {
    let data = tempfile::Builder::new().prefix("dx-shared-").tempdir().unwrap();
    let s = setup_with(2, 2, 4, &format!("shared = [\"{}\"]", data.path().display()));
    let names = ["north", "south", "east", "west", "mid", "far", "near"];
    let file = data.path().join("d.csv");
    regions_csv(&file, &names, 3000);
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size > 200_000, "{size}");
    let file = file.display().to_string();
    let args = ["process", &file, "--by", "region", "--split", "bytes", "--part-size", "20000", "--json"];
    let slurm = s.distex().args(args).args(["--jobs", "0", "--nodes", "hpc", "--keep-workdirs"]).run().success();
    let slurm = slurm.json();
    let local = s.distex().args(args).run().success().json();
    let regions = s.distex().args(["process", &file, "--by", "region", "--split", "regions", "--json"]).run();
    let regions = regions.success().json();
    assert_eq!(slurm["regions"], local["regions"], "the same figures as a local run");
    assert_eq!(slurm["totals"], local["totals"]);
    let records = |report: &serde_json::Value| -> Vec<(String, serde_json::Value)> {
        report["regions"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v["records"].clone())).collect()
    };
    assert_eq!(records(&slurm), records(&regions), "and the records of the region path");
    assert_eq!(support::accounting(&slurm), support::accounting(&local));
    assert_eq!(support::accounting(&slurm), [21000, 21000, 0, 0]);
    let parts: Vec<&serde_json::Value> =
        slurm["tasks"].as_array().unwrap().iter().filter(|t| t["subject"] != "aggregate-results").collect();
    assert!(parts.len() >= 8, "byte ranges, not regions: {parts:#?}");
    assert!(parts.iter().all(|t| t["subject"].as_str().unwrap().starts_with("process-part-")), "{parts:#?}");
    assert!(parts.iter().all(|t| t["node"] == "hpc"), "every part on the Slurm node: {parts:#?}");
    // Nothing copied: no input in the shared run directory, none in the
    // local one (no spool, no copy).
    let (runs, tasks) = array_tasks_run(&s.workdir);
    assert!(tasks < parts.len(), "{tasks} array tasks for {} parts", parts.len());
    let copied: u64 = std::fs::read_dir(&runs[0])
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("in-"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(copied, 0, "input copied into the shared run directory");
    let local_dir = PathBuf::from(slurm["workdir"].as_str().unwrap());
    let local_bytes: u64 = walk(&local_dir).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert!(local_bytes < 4096, "{local_bytes} bytes in the local run directory: {:?}", walk(&local_dir));
    assert!(s.cluster.wait_no_jobs(Duration::from_secs(5)).is_empty());
}

#[test]
fn a_symlink_into_a_shared_directory_is_read_at_its_shared_path() {
    let data = tempfile::Builder::new().prefix("dx-shared-").tempdir().unwrap();
    let s = setup_with(1, 2, 2, &format!("shared = [\"{}\"]", data.path().display()));
    let file = data.path().join("d.csv");
    regions_csv(&file, &["north", "south", "east"], 2000);
    // The project names the data through a link that exists only here.
    std::os::unix::fs::symlink(&file, s.project.join("linked.csv")).unwrap();
    let args = ["process", "linked.csv", "--by", "region", "--split", "bytes", "--part-size", "20000", "--json"];
    let slurm = s.distex().args(args).args(["--jobs", "0", "--nodes", "hpc", "--keep-workdirs"]).run().success();
    let local = s.distex().args(args).run().success().json();
    let slurm = slurm.json();
    assert_eq!(slurm["regions"], local["regions"], "the same figures as a local run");
    assert_eq!(support::accounting(&slurm), [6000, 6000, 0, 0]);
    // What the array tasks were told to read: the shared path, never the link.
    let (runs, _) = array_tasks_run(&s.workdir);
    let scripts: String = walk(&runs[0])
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("task-")))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(scripts.contains(&file.display().to_string()), "the shared path: {scripts}");
    assert!(!scripts.contains("linked.csv"), "a link the cluster may not have: {scripts}");
    assert!(s.cluster.wait_no_jobs(Duration::from_secs(5)).is_empty());
}

#[test]
fn byte_ranges_that_fail_on_slurm_are_recounted_here() {
    let data = tempfile::Builder::new().prefix("dx-shared-").tempdir().unwrap();
    let s = setup_with(1, 2, 2, &format!("shared = [\"{}\"]", data.path().display()));
    let file = data.path().join("d.csv");
    regions_csv(&file, &["north", "south", "east"], 2000);
    let file = file.display().to_string();
    // 2 MiB of address space: no scan worker can start, here or there.
    let args = ["process", &file, "--by", "region", "--split", "bytes", "--part-size", "20000", "--json"];
    let limits = ["--max-memory", "2M", "--retries", "0"];
    let slurm = s.distex().args(args).args(limits).args(["--jobs", "0", "--nodes", "hpc"]).run().expect_code(3);
    let slurm = slurm.json();
    let local = s.distex().args(args).args(limits).run().expect_code(3).json();
    assert_eq!(support::accounting(&slurm), [6000, 0, 0, 6000], "every record counted: {slurm:#}");
    assert_eq!(support::accounting(&slurm), support::accounting(&local));
    assert_eq!(slurm["regions"]["north"]["records"], 2000, "{slurm:#}");
    let error = slurm["regions"]["north"]["error"].as_str().unwrap();
    assert!(error.contains("part 1 failed") && error.contains("hpc"), "{error}");
    assert!(s.cluster.wait_no_jobs(Duration::from_secs(5)).is_empty());
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { files.extend(walk(&p)) } else { files.push(p) }
    }
    files
}

#[test]
fn split_bytes_on_slurm_needs_a_shared_file() {
    let s = setup(1, 2, 2);
    regions_csv(&s.project.join("d.csv"), &["a", "b"], 10);
    let run = s
        .distex()
        .args(["process", "d.csv", "--by", "region", "--split", "bytes", "--jobs", "0", "--nodes", "hpc"])
        .run()
        .expect_code(2);
    let err = run.stderr();
    assert!(err.contains("d.csv") && err.contains("shared") && err.contains("hpc"), "{err}");
    assert!(err.contains("--split regions"), "says what to do: {err}");
    assert!(s.cluster.jobs().is_empty(), "nothing submitted");
    // Without --split bytes the same run takes the region path.
    let run = s.distex().args(["process", "d.csv", "--by", "region", "--json", "--jobs", "0", "--nodes", "hpc"]).run();
    assert_eq!(support::accounting(&run.success().json()), [20, 20, 0, 0]);
}

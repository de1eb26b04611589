//! Slurm partitions as nodes, against a real Slurm cluster the tests start
//! on this machine (tests/support/slurm.rs): `distex run` through `srun`,
//! `--timeout` and SIGTERM cancelling the job, failover from a down
//! partition, a node busy for a moment not queueing the job, and `distex
//! parallel` keeping a task pending while Slurm queues it.

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
        cluster.node_table("hpc", "debug", slots, &workdir, ""),
        cluster.node_table("off", "off", 1, &workdir, "")
    );
    sb.write_config(&config);
    Setup { sb, cluster, project, workdir }
}

impl Setup {
    fn distex(&self) -> support::TestCommand {
        self.sb
            .cmd()
            .arg("--config")
            .arg(self.sb.path().join("cluster.toml"))
            .env("SLURM_CONF", &self.cluster.conf)
            .current_dir(&self.project)
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
    let failed = &v["failed_attempts"][0];
    assert_eq!(failed["node"], "off", "{v}");
    assert!(failed["error"].as_str().unwrap().contains("Partition in DOWN state"), "{v}");
    assert!(s.cluster.jobs().is_empty());
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

#[test]
fn a_login_node_over_ssh_mirrors_and_submits() {
    let slurm = SlurmCluster::start(1, 2);
    let ssh = support::sshd::Cluster::start(1);
    let login = ssh.node("n1");
    // The login node finds the cluster through its own environment (bash
    // reads ~/.bashrc for commands sshd runs); distex itself has no SLURM_CONF.
    let home = login.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(".bashrc"), format!("export SLURM_CONF={}\n", slurm.conf.display())).unwrap();
    let sb = Sandbox::new();
    let project = sb.path().join("project");
    git_init(&project);
    std::fs::write(project.join("marker.txt"), "mirrored\n").unwrap();
    sb.write_config(&ssh.node_table(login, "kind = \"slurm\"\npartition = \"debug\""));
    let run = sb
        .cmd()
        .arg("--config")
        .arg(sb.path().join("cluster.toml"))
        .current_dir(&project)
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
    let sub = project.join("untracked-sub");
    std::fs::create_dir_all(&sub).unwrap();
    let distex = || sb.cmd().arg("--config").arg(sb.path().join("cluster.toml"));
    let v = distex().current_dir(&sub).args(["run", "--json", "--node", "n1", "--sync", "--", "pwd"]).run().json();
    let error = v["failed_attempts"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("untracked-sub") && error.contains("does not exist"), "{v}");
    assert_eq!(v["stdout"]["text"].as_str().unwrap().trim(), sub.display().to_string(), "{v}");
    // Without a project, a missing workdir is created, then the job runs.
    std::fs::remove_dir_all(&login.workdir).unwrap();
    let run = distex().current_dir(&project).args(["run", "--node", "n1", "--no-sync", "--", "pwd"]).run().success();
    assert_eq!(run.stdout().trim(), login.workdir.display().to_string(), "{}", run.stderr());
    assert!(slurm.wait_no_jobs(Duration::from_secs(5)).is_empty());
    support::sshd::stop_masters(sb.path());
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

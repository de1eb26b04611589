//! Remote execution you can trust (issue 12), against real sshd nodes:
//! a command runs at most once, nothing distex started outlives it, markers
//! cannot be forged, a changed host key stops everything (`run`,
//! `parallel` and `process --nodes` alike), sync ships the project and
//! nothing else, distex's own directories cannot be hijacked, and odd
//! input gets a clear error. Plus the fallback rules for a node that
//! cannot be reached (issue 14, item 7).

use crate::util as support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::Sandbox;
use support::sshd::{Cluster, all_processes_matching, stop_masters};

/// Starts distex in the background (stdout and stderr captured).
fn spawn(cmd: support::TestCommand) -> Child {
    let mut cmd = cmd.cmd;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().expect("start distex")
}

/// Waits (at most 30 s: a distex that ignores a signal must fail the test,
/// not hang it) for `child` and returns (exit code, stdout, stderr).
fn finish(mut child: Child) -> (Option<i32>, String, String) {
    let done = eventually(30, || child.try_wait().unwrap().is_some());
    if !done {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(done, "distex did not end: {}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Polls `check` for up to `secs` seconds.
fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a process this test started.
    unsafe { libc::kill(pid as i32, sig) };
}

/// A git repository at `dir` holding `files`.
fn git_project(dir: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let ok = Command::new("git").arg("init").arg("-q").arg(dir).status().unwrap().success();
    assert!(ok, "git init {}", dir.display());
}

/// Every file below `dir`, relative, sorted.
fn files_below(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

// ---------------------------------------------------------------- 1. at most once

#[test]
fn a_connection_lost_after_the_start_is_never_run_again() {
    let (sb, _cluster) = Cluster::with_sandbox(2, "", "");
    let log = sb.path().join("starts.log");
    let command = format!("echo start >> {}; sleep 4; echo done-4101", log.display());
    let child = spawn(sb.configured().args(["run", "--json", "--node", "n1", "--", &command]));
    assert!(eventually(10, || lines(&log) == 1), "the command never started");
    stop_masters(sb.path()); // the connection drops mid-command
    let (code, stdout, stderr) = finish(child);
    assert_eq!(code, Some(123), "stdout: {stdout}\nstderr: {stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["status"]["kind"], "lost", "{v}");
    assert_eq!(v["status"]["node"], "n1");
    let error = v["status"]["error"].as_str().unwrap();
    assert!(error.contains("started on n1, connection lost, outcome unknown, not retried"), "{error}");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(lines(&log), 1, "the command ran again (on n2, or here)");
    let nodes = std::fs::read_to_string(sb.path().join("state/nodes.json")).unwrap();
    let nodes: serde_json::Value = serde_json::from_str(&nodes).unwrap();
    assert_eq!(nodes["nodes"]["n1"]["suspect"], true, "{nodes}");
    assert_eq!(nodes["nodes"]["n1"]["answered"], false, "{nodes}");
}

#[test]
fn a_parallel_task_whose_connection_is_lost_is_not_moved() {
    let (sb, _cluster) = Cluster::with_sandbox(2, "slots = 1", "");
    let log = sb.path().join("starts.log");
    let command = format!("echo start >> {}; sleep 4", log.display());
    let child = spawn(sb.configured().args(["parallel", "--json", "--nodes", "n1,n2", "--", &command]));
    assert!(eventually(10, || lines(&log) == 1), "the task never started");
    stop_masters(sb.path());
    let (code, stdout, stderr) = finish(child);
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["tasks"][0]["status"], "failed", "{v}");
    assert!(v["tasks"][0]["error"].as_str().unwrap().contains("outcome unknown"), "{v}");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(lines(&log), 1, "the task ran again elsewhere");
}

// ---------------------------------------------------------------- 2. nothing left running

/// Starts `args`, waits until `marker` runs, sends `sig`, and checks the
/// exit status and that nothing matching `marker` is left on the machine
/// (the nodes are this machine).
fn signal_leaves_nothing(sb: &Sandbox, args: &[&str], marker: &str, sig: i32, code: i32) {
    let child = spawn(sb.configured().args(args));
    assert!(
        eventually(15, || all_processes_matching(marker).iter().any(|(_, c)| c.starts_with("sleep"))),
        "{marker} never started"
    );
    signal(child.id(), sig);
    let (got, stdout, stderr) = finish(child);
    assert_eq!(got, Some(code), "signal {sig}: stdout {stdout}\nstderr {stderr}");
    assert!(
        eventually(6, || all_processes_matching(marker).is_empty()),
        "left running after signal {sig}: {:?}",
        all_processes_matching(marker)
    );
}

#[test]
fn sigint_sigterm_and_sighup_stop_a_remote_command_and_its_children() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "", "");
    for (sig, n) in [(libc::SIGINT, 4201), (libc::SIGTERM, 4202), (libc::SIGHUP, 4203)] {
        let marker = format!("sleep 97.{n}");
        let command = format!("{marker} & {marker}; wait");
        signal_leaves_nothing(&sb, &["run", "--node", "n1", "--", &command], &marker, sig, 128 + sig);
    }
}

#[test]
fn sigint_sigterm_and_sighup_stop_a_local_command_and_its_children() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "", "");
    for (sig, n) in [(libc::SIGINT, 4211), (libc::SIGTERM, 4212), (libc::SIGHUP, 4213)] {
        let marker = format!("sleep 97.{n}");
        let command = format!("{marker} & {marker}; wait");
        signal_leaves_nothing(&sb, &["run", "--node", "local", "--", &command], &marker, sig, 128 + sig);
    }
}

#[test]
fn sigterm_and_sighup_stop_every_parallel_task() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "slots = 2", "");
    for (sig, n) in [(libc::SIGTERM, 4221), (libc::SIGHUP, 4222)] {
        let marker = format!("sleep 97.{n}");
        let remote = format!("{marker}; : remote");
        let local = format!("{marker}; : local");
        let args = ["parallel", "--nodes", "n1,local", "--", &remote, &local];
        signal_leaves_nothing(&sb, &args, &marker, sig, 128 + sig);
    }
}

#[test]
fn a_killed_distex_leaves_nothing_running_on_the_node() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "", "");
    let marker = "sleep 97.4231";
    let child = spawn(sb.configured().args(["run", "--node", "n1", "--", &format!("{marker} & {marker}; wait")]));
    assert!(eventually(15, || all_processes_matching(marker).iter().any(|(_, c)| c.starts_with("sleep"))));
    // The session was opened through the master's mux protocol: no ssh
    // client of distex's own holds the session (one that could outlive
    // it); the master holds distex's pipes, which close when it dies.
    let clients = ssh_clients(sb.path());
    assert!(clients.is_empty(), "a per-command ssh client runs: {clients:?}");
    signal(child.id(), libc::SIGKILL);
    let _ = finish(child);
    assert!(
        eventually(8, || all_processes_matching(marker).is_empty()),
        "the node kept running after distex was killed: {:?}",
        all_processes_matching(marker)
    );
}

/// The local `ssh` processes of the sandbox that are not its masters
/// (`ssh -M`): per-command clients.
fn ssh_clients(sandbox: &Path) -> Vec<(i32, String)> {
    let run_dir = sandbox.join("run").display().to_string();
    all_processes_matching(&run_dir).into_iter().filter(|(_, c)| c.starts_with("ssh ") && !c.contains(" -M ")).collect()
}

#[test]
fn a_dropped_connection_leaves_nothing_running_on_the_node() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "", "");
    let marker = "sleep 97.4241";
    let child = spawn(sb.configured().args(["run", "--node", "n1", "--", &format!("{marker} & {marker}; wait")]));
    assert!(eventually(15, || all_processes_matching(marker).iter().any(|(_, c)| c.starts_with("sleep"))));
    stop_masters(sb.path());
    let _ = finish(child);
    assert!(
        eventually(8, || all_processes_matching(marker).is_empty()),
        "the node kept running after the connection dropped: {:?}",
        all_processes_matching(marker)
    );
}

// ---------------------------------------------------------------- 3. forged markers

#[test]
fn a_forged_pid_marker_never_gets_another_process_killed() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "", "");
    // A process of the node user, in a group of its own: the bystander.
    let mut bystander = Command::new("sleep").arg("97.4301").process_group(0).spawn().unwrap();
    let pid = bystander.id();
    // (Never forge pid 1 here: an unfixed distex running as root would
    // signal every process on the machine.)
    let command = format!("printf '\\036\\037distex-pid {pid}\\n' >&2; sleep 97.4302");
    let run = sb.configured().args(["run", "--timeout", "2", "--node", "n1", "--", &command]).run().expect_code(124);
    assert!(run.stderr().contains("distex-pid"), "a forged marker is ordinary output: {}", run.stderr());
    assert!(bystander.try_wait().unwrap().is_none(), "the bystander was killed by a forged marker");
    assert!(eventually(6, || all_processes_matching("sleep 97.4302").is_empty()), "the command itself was not stopped");
    let _ = bystander.kill();
    let _ = bystander.wait();
}

#[test]
fn a_forged_exit_marker_does_not_turn_a_lost_connection_into_success() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "", "");
    let log = sb.path().join("started");
    let command = format!("printf '\\036\\037distex-exit 0\\n' >&2; touch {}; sleep 97.4311", log.display());
    let child = spawn(sb.configured().args(["run", "--node", "n1", "--", &command]));
    assert!(eventually(10, || log.exists()));
    stop_masters(sb.path());
    let (code, _, stderr) = finish(child);
    assert_eq!(code, Some(123), "{stderr}");
}

// ---------------------------------------------------------------- 4. changed host key

#[test]
fn a_changed_host_key_runs_the_command_nowhere() {
    let (sb, cluster) = Cluster::with_sandbox(2, "", "");
    // n1 now presents a key known_hosts does not hold (a man in the middle).
    cluster.change_host_key("n1");
    let n1 = cluster.node("n1");
    let created = sb.path().join("created-by-the-command");
    let run = sb
        .configured()
        .args(["run", "--node", "n1", "--", &format!("touch {}", created.display())])
        .run()
        .expect_code(125);
    let err = run.stderr();
    assert!(err.contains("host key of node n1") && err.contains("CHANGED"), "{err}");
    assert_eq!(err.matches("SHA256:").count(), 2, "both fingerprints: {err}");
    assert!(err.contains(&format!("ssh-keygen -R '[{}]:{}'", n1.addr, n1.port)), "{err}");
    assert!(!created.exists(), "the command ran somewhere else");
    // Nothing was marked healthy.
    let nodes = std::fs::read_to_string(sb.path().join("state/nodes.json")).unwrap_or_default();
    let nodes: serde_json::Value = serde_json::from_str(&nodes).unwrap_or_default();
    assert_ne!(nodes["nodes"]["n1"]["answered"], true, "{nodes}");
    assert_ne!(nodes["nodes"]["n2"]["answered"], true, "{nodes}");
}

/// The changed-host-key error for `node` as users see it: the node, both
/// fingerprints (the pinned one and the presented one) and the fix.
fn assert_names_the_changed_key(text: &str, cluster: &Cluster, node: &str) {
    let n = cluster.node(node);
    assert!(text.contains(&format!("host key of node {node}")) && text.contains("CHANGED"), "{text}");
    let fingerprints: std::collections::BTreeSet<&str> =
        text.split(|c: char| c.is_whitespace() || c == ',').filter(|w| w.starts_with("SHA256:")).collect();
    assert_eq!(fingerprints.len(), 2, "two different fingerprints: {text}");
    assert!(text.contains(&format!("ssh-keygen -R '[{}]:{}'", n.addr, n.port)), "{text}");
}

/// After a refusal nothing is left on or for `node`: no session on its
/// sshd, no SSH master (or other ssh) talking to its port.
fn assert_nothing_left_for(cluster: &Cluster, node: &str) {
    let n = cluster.node(node);
    let port = format!("{}", n.port);
    let ours = || {
        let mut left = n.processes_matching("");
        left.extend(
            all_processes_matching(&port)
                .into_iter()
                .filter(|(_, c)| c.starts_with("ssh ") && c.split_whitespace().any(|w| w == port)),
        );
        left
    };
    assert!(eventually(10, || ours().is_empty()), "left running for {node}: {:?}", ours());
}

#[test]
fn a_changed_host_key_fails_its_parallel_task_and_moves_nothing() {
    let (sb, cluster) = Cluster::with_sandbox(2, "slots = 1", "");
    let project = sb.path().join("proj");
    git_project(&project, &[("src/main.c", "int main;")]);
    cluster.change_host_key("n1");
    // Each task leaves a file named by the node it ran on and its number.
    let out = sb.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let tasks: Vec<String> =
        (1..=3).map(|i| format!("touch {}/$DISTEX_TEST_NODE-{i}; sleep 0.5", out.display())).collect();
    let mut args = vec!["parallel", "--json", "--sync", "--keep-going", "--nodes", "n1,n2", "--"];
    args.extend(tasks.iter().map(String::as_str));
    let run = sb.configured().args(args).current_dir(&project).run().expect_code(1);
    let v = run.json();
    // Exactly one task went to n1, was refused there and not moved.
    let on_n1: Vec<&serde_json::Value> = v["tasks"].as_array().unwrap().iter().filter(|t| t["node"] == "n1").collect();
    assert_eq!(on_n1.len(), 1, "one task was placed on n1: {v:#}");
    assert_eq!(on_n1[0]["status"], "failed", "{v:#}");
    assert_eq!(on_n1[0]["attempts"], 1, "{v:#}");
    assert_names_the_changed_key(on_n1[0]["error"].as_str().unwrap(), &cluster, "n1");
    // The other tasks ran on n2 (n1 took no more), the refused one nowhere.
    let ran = files_below(&out);
    assert!(ran.iter().all(|f| f.starts_with("n2-")), "a task ran on n1: {ran:?}");
    assert_eq!(ran.len(), 2, "{ran:?} {v:#}");
    let refused = on_n1[0]["id"].as_str().unwrap();
    assert!(!ran.iter().any(|f| f.ends_with(&format!("-{refused}"))), "the refused task ran elsewhere: {ran:?}");
    assert_eq!(v["summary"]["completed"], 2, "{v:#}");
    // Nothing reached n1 (n2 got the project), nothing is left for it.
    assert_eq!(files_below(&cluster.node("n1").workdir), Vec::<String>::new(), "synced to n1");
    assert!(files_below(&cluster.node("n2").workdir).iter().any(|f| f.ends_with("src/main.c")), "n2 got no mirror");
    assert_nothing_left_for(&cluster, "n1");
    let nodes = std::fs::read_to_string(sb.path().join("state/nodes.json")).unwrap_or_default();
    let nodes: serde_json::Value = serde_json::from_str(&nodes).unwrap_or_default();
    assert_ne!(nodes["nodes"]["n1"]["answered"], true, "{nodes}");
    stop_masters(sb.path());
}

#[test]
fn a_changed_host_key_fails_the_regions_of_process_nodes_and_moves_none() {
    let (sb, cluster) = Cluster::with_sandbox(2, "slots = 2", "");
    cluster.change_host_key("n1");
    let regions = ["a", "b", "c", "d", "e", "f"];
    let csv: String =
        std::iter::once("region,v\n".to_string()).chain(regions.iter().map(|r| format!("{r},1\n"))).collect();
    std::fs::write(sb.path().join("d.csv"), csv).unwrap();
    // Each region's worker leaves a file named by its region.
    let out = sb.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let processor = format!("touch {}/\"$DISTEX_REGION\"; echo '{{\"rows\": 1}}'", out.display());
    // `--jobs 0`: no worker here; n1's slots and n2's take the regions.
    let run = sb
        .configured()
        .args(["process", "d.csv", "--by", "region", "--json", "--jobs", "0", "--nodes", "n1,n2", "--retries", "2"])
        .args(["--processor", &processor])
        .run()
        .expect_code(3);
    let report = run.json();
    let tasks: Vec<&serde_json::Value> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["subject"].as_str().unwrap().starts_with("process-region-"))
        .collect();
    assert_eq!(tasks.len(), regions.len(), "{report:#}");
    let refused: Vec<&str> =
        tasks.iter().filter(|t| t["node"] == "n1").map(|t| t["subject"].as_str().unwrap()).collect();
    assert!(!refused.is_empty(), "n1's slots took regions: {report:#}");
    for region in regions {
        let task = tasks.iter().find(|t| t["subject"] == format!("process-region-{region}")).unwrap();
        let ran = out.join(region).exists();
        if task["node"] == "n1" {
            // Refused at once: not retried (--retries 2), not moved, never run.
            assert_eq!(task["status"], "failed", "{task:#}");
            assert_eq!(task["attempts"], 1, "{task:#}");
            assert!(!ran, "region {region} ran although its node refused it");
            assert_names_the_changed_key(report["regions"][region]["error"].as_str().unwrap(), &cluster, "n1");
        } else {
            assert_eq!(task["node"], "n2", "{task:#}");
            assert_eq!(task["status"], "completed", "{task:#}");
            assert!(ran, "region {region} did not run on n2");
        }
    }
    assert!(!report["warnings"].to_string().contains("moving it"), "{}", report["warnings"]);
    assert_eq!(files_below(&cluster.node("n1").workdir), Vec::<String>::new(), "something reached n1");
    assert_nothing_left_for(&cluster, "n1");
    let nodes = sb.configured().args(["nodes", "--json"]).run().success().json();
    let n1 = nodes["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "n1").unwrap().clone();
    assert_ne!(n1["answered"], true, "{nodes:#}");
    stop_masters(sb.path());
}

// ---------------------------------------------------------------- 5. sync ships the project only

#[test]
fn no_mirror_of_the_home_directory_or_outside_a_repository() {
    let (sb, cluster) = Cluster::with_sandbox(1, "", "");
    let home = sb.path().join("home");
    git_project(&home, &[(".git-credentials", "https://u:token@example.com\n"), (".kube/config", "token\n")]);
    let run =
        sb.configured().args(["run", "--sync", "--node", "n1", "--", "true"]).current_dir(&home).run().expect_code(2);
    assert!(run.stderr().contains("not a project") && run.stderr().contains("--sync-root"), "{}", run.stderr());
    let plain = sb.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let run =
        sb.configured().args(["run", "--sync", "--node", "n1", "--", "true"]).current_dir(&plain).run().expect_code(2);
    assert!(run.stderr().contains("not inside a git repository"), "{}", run.stderr());
    assert_eq!(files_below(&cluster.node("n1").workdir), Vec::<String>::new(), "something was mirrored");
    // Naming a root explicitly works.
    std::fs::write(plain.join("data.txt"), "x").unwrap();
    sb.configured()
        .args(["run", "--sync", "--sync-root", ".", "--node", "n1", "--", "cat data.txt"])
        .current_dir(&plain)
        .run()
        .success();
}

#[test]
fn sync_sends_what_git_sees_minus_every_kind_of_secret() {
    let (sb, cluster) = Cluster::with_sandbox(1, "", "[sync]\ninclude = [\"config/dev.env\"]\n");
    let project = sb.path().join("proj");
    let secrets = [
        ".env",
        ".env.production",
        ".envrc",
        ".pgpass",
        ".netrc",
        ".npmrc",
        ".pypirc",
        ".vault-token",
        "infra/terraform.tfstate",
        "infra/terraform.tfstate.backup",
        "prod.tfvars",
        "tls/server.pem",
        "key.PEM",
        "tls/server.key",
        "ID_RSA",
        "deploy/id_ed25519",
        ".aws/credentials",
        ".ssh/config",
        ".gnupg/pubring.kbx",
        ".kube/config",
        ".docker/config.json",
        ".cargo/credentials.toml",
        ".git-credentials",
    ];
    let mut files: Vec<(&str, &str)> = secrets.iter().map(|s| (*s, "secret")).collect();
    files.extend([
        ("src/main.c", "int main;"),
        ("config/dev.env", "let through on purpose"),
        (".gitignore", "*.log\n!keep.log\n/build/\n"),
        ("keep.log", "kept by a negation"),
        ("drop.log", "ignored"),
        ("build/out.o", "ignored"),
        ("sub/.gitignore", "local-only.txt\n"),
        ("sub/local-only.txt", "ignored by a nested .gitignore"),
        ("sub/ok.txt", "sent"),
        ("excluded.txt", "ignored by .git/info/exclude"),
        ("vendor/lib/lib.c", "vendored"),
    ]);
    git_project(&project, &files);
    std::fs::write(project.join(".git/info/exclude"), "excluded.txt\n").unwrap();
    git_project(&project.join("vendor/lib"), &[]);
    std::fs::write(project.join("vendor/lib/.git/config"), "[remote \"origin\"]\nurl = https://token@example.com\n")
        .unwrap();
    let run = sb
        .configured()
        .args(["run", "--json", "--sync", "--node", "n1", "--", "pwd"])
        .current_dir(&project)
        .run()
        .success();
    let v = run.json();
    let mirror = PathBuf::from(v["stdout"]["text"].as_str().unwrap().trim());
    assert!(mirror.starts_with(&cluster.node("n1").workdir), "{mirror:?}");
    let sent = files_below(&mirror);
    assert_eq!(
        sent,
        [".gitignore", "config/dev.env", "keep.log", "src/main.c", "sub/.gitignore", "sub/ok.txt", "vendor/lib/lib.c"],
        "what reached the node"
    );
    let held: Vec<String> =
        v["held_back"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
    for s in secrets {
        assert!(held.iter().any(|h| h == s), "{s} not reported held back: {held:?}");
    }
    assert!(held.iter().any(|h| h.starts_with("vendor/lib/.git")), "{held:?}");
    // A file deleted here disappears from the mirror; the node's own files stay.
    std::fs::remove_file(project.join("sub/ok.txt")).unwrap();
    std::fs::write(mirror.join("node-own.o"), "built there").unwrap();
    sb.configured().args(["run", "--sync", "--node", "n1", "--", "true"]).current_dir(&project).run().success();
    assert!(!mirror.join("sub/ok.txt").exists(), "a deleted file stayed on the mirror");
    assert!(mirror.join("node-own.o").exists(), "the node's own file was deleted");
}

// ---------------------------------------------------------------- 6. private directories

#[test]
fn a_runtime_directory_made_by_another_user_is_refused() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "", "");
    let victim = sb.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let planted = sb.path().join("planted");
    std::fs::create_dir(&planted).unwrap();
    for name in ["n1.lock", "sync.lock", "master", "nodes.lock"] {
        std::os::unix::fs::symlink(&victim, planted.join(name)).unwrap();
    }
    std::fs::set_permissions(&planted, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let chown = Command::new("chown").args(["nobody"]).arg(&planted).status().unwrap();
    assert!(chown.success());
    let run = sb
        .configured()
        .args(["run", "--node", "n1", "--", "true"])
        .env("DISTEX_RUNTIME_DIR", &planted)
        .run()
        .expect_code(2);
    assert!(
        run.stderr().contains("belongs to another user") && run.stderr().contains("DISTEX_RUNTIME_DIR"),
        "{}",
        run.stderr()
    );
    // Ours, but open to everyone: refused too.
    let open = sb.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let run = sb
        .configured()
        .args(["run", "--node", "n1", "--", "true"])
        .env("DISTEX_RUNTIME_DIR", &open)
        .run()
        .expect_code(2);
    assert!(run.stderr().contains("mode is 0777"), "{}", run.stderr());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

// ---------------------------------------------------------------- 7. odd input

#[test]
fn odd_input_gets_a_clear_error() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "", "");
    for huge in ["1e20", "9e18", "1e9h"] {
        let run =
            sb.configured().args(["run", "--timeout", huge, "--node", "local", "--", "true"]).run().expect_code(2);
        assert!(run.stderr().contains("--timeout") && !run.stderr().contains("panicked"), "{huge}: {}", run.stderr());
    }
    let text = std::fs::read_to_string(sb.path().join("cluster.toml")).unwrap();
    for bad in ["", "~", "-rf", "/"] {
        let changed = regex_replace_workdir(&text, bad);
        sb.write_config(&changed);
        let run = sb.configured().args(["route", "--", "ls"]).run().expect_code(2);
        assert!(
            run.stderr().contains("node.n1.workdir") && run.stderr().contains("cluster.toml:"),
            "{bad:?}: {}",
            run.stderr()
        );
    }
}

fn regex_replace_workdir(text: &str, value: &str) -> String {
    text.lines()
        .map(|l| if l.starts_with("workdir = ") { format!("workdir = {value:?}") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_runtime_directory_with_a_quote_still_syncs() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "", "");
    let runtime = sb.path().join("it's \"run\"");
    let project = sb.path().join("proj");
    git_project(&project, &[("data.txt", "synced\n")]);
    let run = sb
        .configured()
        .args(["run", "--sync", "--node", "n1", "--", "cat data.txt"])
        .env("DISTEX_RUNTIME_DIR", &runtime)
        .current_dir(&project)
        .run()
        .success();
    assert_eq!(run.stdout(), "synced\n");
}

#[test]
fn a_node_cannot_plant_a_symlink_out_of_the_project_through_return() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "", "");
    let project = sb.path().join("proj");
    git_project(&project, &[("README", "x")]);
    let command = "mkdir -p out && ln -sfn /etc/hostname out/abs && ln -sfn ../../../../../../etc/hostname out/rel \
                   && echo fine > out/ok.txt && ln -sfn /etc linked";
    let run = sb
        .configured()
        .args(["run", "--sync", "--return", "out", "--return", "linked/hostname", "--node", "n1", "--", command])
        .current_dir(&project)
        .run()
        .success();
    let _ = run;
    assert_eq!(std::fs::read_to_string(project.join("out/ok.txt")).unwrap(), "fine\n");
    assert!(std::fs::symlink_metadata(project.join("out/abs")).is_err(), "absolute link brought back");
    assert!(std::fs::symlink_metadata(project.join("out/rel")).is_err(), "escaping link brought back");
    // A directory on the path that is a link on the node never becomes a link here.
    let linked = std::fs::symlink_metadata(project.join("linked"));
    assert!(linked.is_err() || !linked.unwrap().file_type().is_symlink(), "a link out of the project was planted");
}

// ---------------------------------------------------------------- issue 14.7: unreachable nodes

#[test]
fn a_build_falls_back_here_with_a_warning_when_no_builder_answers() {
    let (sb, mut cluster) = Cluster::with_sandbox(1, "roles = [\"builder\"]", "");
    let project = sb.path().join("proj");
    git_project(&project, &[("Makefile", "all:\n")]);
    cluster.node_mut("n1").kill();
    let run = sb
        .configured()
        .args(["run", "--", "make() { echo \"built on ${DISTEX_TEST_NODE:-here}\"; }; make"])
        .current_dir(&project)
        .run()
        .success();
    assert_eq!(run.stdout(), "built on here\n");
    assert!(
        run.stderr().contains("running here instead") && run.stderr().contains("heavy_computation"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_linux_only_command_with_no_linux_node_reachable_fails_with_the_fix() {
    let (sb, mut cluster) = Cluster::with_sandbox(1, "", "");
    let text = std::fs::read_to_string(sb.path().join("cluster.toml")).unwrap();
    sb.write_config(&text.replacen("os = \"linux\"", "os = \"macos\"", 1)); // [local] comes first
    cluster.node_mut("n1").kill();
    let created = sb.path().join("made");
    let run = sb
        .configured()
        .args(["run", "--", &format!("systemctl() {{ touch {}; }}; systemctl status", created.display())])
        .run()
        .expect_code(125);
    assert!(
        run.stderr().contains("does not satisfy rule linux_required") && run.stderr().contains("--probe"),
        "{}",
        run.stderr()
    );
    assert!(!created.exists());
}

#[test]
fn an_input_that_is_not_a_table_is_never_echoed_in_the_error() {
    let sb = Sandbox::new();
    let secret = sb.path().join("shadow");
    std::fs::write(&secret, "root:$6$s3cr3tHash$abc:19000:0:99999:7:::\ndaemon:*:19000\n").unwrap();
    let request = format!("{{\"op\":\"process\",\"inputs\":[{:?}],\"by\":\"x\"}}\n", secret.display().to_string());
    let run = sb.cmd().arg("json").stdin(&request).expect_code(1);
    let out = format!("{}{}", run.stdout(), run.stderr());
    assert!(out.contains("not in the header") && out.contains("not shown"), "{out}");
    assert!(!out.contains("s3cr3tHash") && !out.contains("root:"), "the file's first line leaked: {out}");
    // A real header is still listed, to help.
    let table = sb.path().join("t.csv");
    std::fs::write(&table, "a,b\n1,2\n").unwrap();
    let run = sb.cmd().args(["process", table.to_str().unwrap(), "--by", "x"]).run().expect_code(2);
    assert!(run.stderr().contains("columns: a, b"), "{}", run.stderr());
}

#[test]
fn parallel_builds_run_here_only_when_no_builder_answers() {
    let (sb, mut cluster) = Cluster::with_sandbox(1, "roles = [\"builder\"]\nslots = 1", "");
    let project = sb.path().join("proj");
    git_project(&project, &[("a/Makefile", "all:\n"), ("b/Makefile", "all:\n")]);
    let task =
        |dir: &str| format!("make() {{ sleep 0.5; echo \"{dir} on ${{DISTEX_TEST_NODE:-here}}\"; }}; make -C {dir}");
    let (a, b) = (task("a"), task("b"));
    // One builder slot, two builds: both wait for the builder; none spills here.
    let run = sb.configured().args(["parallel", "--json", "--", &a, &b]).current_dir(&project).run().success();
    let v = run.json();
    for t in v["tasks"].as_array().unwrap() {
        assert_eq!(t["node"], "n1", "{v}");
    }
    // No builder answers: they run here, with a warning.
    cluster.node_mut("n1").kill();
    let run = sb.configured().args(["parallel", "--", &a, &b]).current_dir(&project).run().success();
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(all.contains("a on here") && all.contains("b on here"), "{all}");
    assert!(all.contains("running it here instead"), "{all}");
}

#[test]
fn a_killed_distex_leaves_nothing_running_here() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "", "");
    let marker = "sleep 97.4251";
    let child = spawn(sb.configured().args(["run", "--node", "local", "--", &format!("{marker} & {marker}; wait")]));
    assert!(eventually(15, || all_processes_matching(marker).iter().any(|(_, c)| c.starts_with("sleep"))));
    signal(child.id(), libc::SIGKILL);
    let _ = finish(child);
    assert!(
        eventually(8, || all_processes_matching(marker).is_empty()),
        "the local command kept running after distex was killed: {:?}",
        all_processes_matching(marker)
    );
}

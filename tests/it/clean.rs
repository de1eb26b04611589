//! `distex clean [--remote]` against a real sshd node: the project mirror on
//! the node, the SSH master here and the state files go; everything that is
//! not distex's own stays.

use crate::util as support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::Sandbox;
use support::sshd::{Cluster, all_processes_matching};

/// The ssh master processes distex started for this sandbox.
fn masters(sandbox: &Sandbox) -> Vec<(i32, String)> {
    let run_dir = sandbox.path().join("run").display().to_string();
    all_processes_matching(&run_dir).into_iter().filter(|(_, cmd)| cmd.starts_with("ssh ")).collect()
}

/// A project synced to n1 once (`distex run --sync`): leaves a mirror on the
/// node, a master and the node cache here.
fn synced_project(sandbox: &Sandbox) {
    let project = sandbox.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("input.txt"), "data\n").unwrap();
    // A git repository: distex syncs a project, never a random directory.
    let git = std::process::Command::new("git").args(["init", "-q"]).arg(&project).status().unwrap();
    assert!(git.success());
    sandbox
        .configured()
        .current_dir(&project)
        .args(["run", "--sync", "--node", "n1", "--", "cat input.txt"])
        .run()
        .success();
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn clean_remote_removes_the_mirrors_the_master_and_the_state_and_nothing_else() {
    let cluster = Cluster::start(1);
    let sandbox = Sandbox::new();
    sandbox.write_config(&cluster.config("", ""));
    synced_project(&sandbox);
    let workdir = &cluster.node("n1").workdir;
    let mirrors = entries(workdir);
    assert_eq!(mirrors.len(), 1, "one mirror after the sync: {mirrors:?}");
    assert!(mirrors[0].starts_with("project-"), "{mirrors:?}");
    // Not distex's: a directory without the mirror shape, a file, a symlink to a mirror-shaped name.
    std::fs::create_dir_all(workdir.join("notes-2024")).unwrap();
    std::fs::write(workdir.join("README"), "mine").unwrap();
    let outside = cluster.dir.path().join("outside-deadbeef");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, workdir.join("link-deadbeef")).unwrap();
    assert!(!masters(&sandbox).is_empty(), "the run left its master running");
    assert!(sandbox.path().join("state/nodes.json").exists());
    std::fs::write(sandbox.path().join("state/unrelated.txt"), "keep").unwrap();

    let run = sandbox.configured().args(["clean", "--remote", "--json"]).run().success();
    let report = run.json();
    let node = &report["nodes"][0];
    assert_eq!(node["node"], "n1", "{report}");
    assert!(node.get("error").is_none(), "{report}");
    let removed = node["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{report}");
    assert!(removed[0].as_str().unwrap().ends_with(&mirrors[0]), "{report}");
    assert_eq!(entries(workdir), vec!["README", "link-deadbeef", "notes-2024"], "only the mirror went");
    assert!(outside.exists());
    assert!(!report["masters"].as_array().unwrap().is_empty(), "{report}");
    assert!(report["state"].as_array().unwrap().iter().any(|p| p.as_str().unwrap().ends_with("nodes.json")));
    assert!(!sandbox.path().join("state/nodes.json").exists());
    assert!(sandbox.path().join("state/unrelated.txt").exists(), "files distex did not write stay");
    let start = Instant::now();
    while !masters(&sandbox).is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(masters(&sandbox), vec![], "the master was asked to exit");
    assert_eq!(entries(&sandbox.path().join("run")), Vec::<String>::new());
}

#[test]
fn clean_without_remote_leaves_the_nodes_alone() {
    let cluster = Cluster::start(1);
    let sandbox = Sandbox::new();
    sandbox.write_config(&cluster.config("", ""));
    synced_project(&sandbox);
    let run = sandbox.configured().args(["clean"]).run().success();
    assert!(run.stdout().contains("stopped 1 SSH master\n"), "{}", run.stdout());
    assert!(run.stdout().contains("state file"), "{}", run.stdout());
    assert_eq!(entries(&cluster.node("n1").workdir).len(), 1, "the mirror stays without --remote");
    // Nothing left to clean: still fine, and says so.
    let again = sandbox.configured().args(["clean"]).run().success();
    assert!(again.stdout().contains("removed 0 state files"), "{}", again.stdout());
}

#[test]
fn an_unreachable_node_is_named_and_the_rest_still_cleaned() {
    let mut cluster = Cluster::start(2);
    let sandbox = Sandbox::new();
    sandbox.write_config(&cluster.config("", ""));
    synced_project(&sandbox);
    sandbox
        .configured()
        .current_dir(sandbox.path().join("project"))
        .args(["run", "--sync", "--node", "n2", "--", "true"])
        .run()
        .success();
    cluster.node_mut("n1").kill();
    let run = sandbox.configured().args(["clean", "--remote"]).run().expect_code(1);
    assert!(run.stdout().contains("n1: not cleaned:"), "{}", run.stdout());
    assert!(run.stdout().contains("n2: removed 1 mirror"), "{}", run.stdout());
    assert!(run.stderr().contains("distex: n1: "), "{}", run.stderr());
    assert!(entries(&cluster.node("n2").workdir).is_empty());
    assert!(!sandbox.path().join("state/nodes.json").exists(), "local state is cleaned anyway");
}

#[test]
fn a_home_workdir_is_refused_not_emptied() {
    let cluster = Cluster::start(1);
    let sandbox = Sandbox::new();
    let config = cluster
        .config("", "")
        .replace(&format!("workdir = \"{}\"", cluster.node("n1").workdir.display()), "workdir = \"~\"");
    sandbox.write_config(&config);
    // Refused when the config is loaded (issue 12), before any node is touched.
    let run = sandbox.configured().args(["clean", "--remote", "--json"]).run().expect_code(2);
    assert!(run.stderr().contains("node.n1.workdir") && run.stderr().contains("home directory"), "{}", run.stderr());
}

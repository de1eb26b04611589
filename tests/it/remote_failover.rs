//! Failover: a node that dies mid-run, a node that hangs (SIGSTOP, so the
//! connection times out), all nodes down; and the health cache that keeps
//! routing away from a dead node.

use crate::util as support;

use std::time::{Duration, Instant};

use support::Sandbox;
use support::sshd::{Cluster, stop_masters};

const RULE: &str =
    "[[rule]]\nname = \"crunch\"\ncommands = [\"crunch\"]\nrequires = { roles = [\"builder\"] }\nsync = false\n";

fn setup(tail: &str) -> (Sandbox, Cluster) {
    let cluster = Cluster::start(2);
    let sandbox = Sandbox::new();
    sandbox.write_config(&cluster.config("roles = [\"builder\"]", tail));
    (sandbox, cluster)
}

#[test]
fn node_killed_mid_run_is_reported_lost_not_run_again() {
    let (sb, mut cluster) = setup(RULE);
    let tag = format!("dx-mid-{}", std::process::id());
    let starts = sb.path().join("starts");
    let cmd = format!("crunch() {{ echo x >> {}; sleep 2; echo finished; }}; crunch # {tag}", starts.display());
    let child =
        sb.configured().args(["run", "--json", "--", &cmd]).cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    // Wait until the command runs on n1, then kill n1's sshd and its sessions.
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.node("n1").processes_matching(&tag).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!cluster.node("n1").processes_matching(&tag).is_empty(), "the command never started on n1");
    cluster.node_mut("n1").kill();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // It had started: at most once means no failover, outcome unknown.
    assert_eq!(out.status.code(), Some(123), "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["node"], "n1", "{v}");
    assert_eq!(v["status"]["kind"], "lost", "{v}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(std::fs::read_to_string(&starts).unwrap().lines().count(), 1, "started once");
    // n1 is now known down: the next command goes straight to n2.
    let v = sb.configured().args(["run", "--json", "--", "crunch() { true; }; crunch"]).run().success().json();
    assert_eq!(v["node"], "n2");
    assert_eq!(v["failed_attempts"].as_array().unwrap().len(), 0, "{v}");
    // `route` reads the same health cache: n1 is out for not answering.
    // (n2 is out too by now, but for another reason: the run there taught
    // distex that `crunch`, a shell function here, is not on n2's PATH.)
    let route = sb.configured().args(["route", "--json", "--", "crunch"]).run().success().json();
    let n1 = route["candidates"].as_array().unwrap().iter().find(|c| c["node"] == "n1").unwrap().clone();
    assert_eq!(n1["eligible"], false, "{route}");
    assert!(n1["why_not"].as_str().unwrap().contains("did not answer"), "{route}");
    stop_masters(sb.path());
}

#[test]
fn hung_node_times_out_and_fails_over() {
    let (sb, cluster) = setup(RULE);
    cluster.node("n1").stop();
    let v = sb.configured().args(["run", "--json", "--", "crunch() { echo ok; }; crunch"]).run().success().json();
    cluster.node("n1").resume();
    assert_eq!(v["node"], "n2", "{v}");
    assert_eq!(v["failed_attempts"][0]["node"], "n1");
    let error = v["failed_attempts"][0]["error"].as_str().unwrap();
    assert!(error.contains("timed out"), "{error}");
    assert_eq!(v["stdout"]["text"], "ok\n");
    // nodes shows n1 as down, with the reason.
    let nodes = sb.configured().args(["nodes"]).run().success().stdout();
    assert!(nodes.contains("DOWN"), "{nodes}");
    // Once it answers a probe again, it is back in rotation.
    let probe = sb.configured().args(["nodes", "--probe", "--json"]).run().success().json();
    let n1 = probe["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "n1").unwrap().clone();
    assert_eq!(n1["answered"], true, "{n1}");
    assert!(n1["load"].is_number() && n1["cores"].as_u64().unwrap() >= 1, "{n1}");
    stop_masters(sb.path());
}

#[test]
fn all_nodes_down_falls_back_to_this_machine_when_it_qualifies() {
    // Local is linux; the rule needs linux: local qualifies.
    let (sb, mut cluster) =
        setup("[[rule]]\nname = \"linuxy\"\ncommands = [\"crunch\"]\nrequires = { os = \"linux\" }\nsync = false\n");
    let text = std::fs::read_to_string(sb.path().join("cluster.toml")).unwrap();
    // Make the local machine overloaded in the router's eyes so it prefers the nodes.
    std::fs::write(
        sb.path().join("cluster.toml"),
        text.replace("overload_threshold = 1000.0", "overload_threshold = 0.000001"),
    )
    .unwrap();
    cluster.node_mut("n1").kill();
    cluster.node_mut("n2").kill();
    let run = sb.configured().args(["run", "--", "crunch() { echo local-ok; }; crunch"]).run().success();
    assert_eq!(run.stdout(), "local-ok\n");
    let err = run.stderr();
    assert!(err.contains("n1") && err.contains("n2") && err.contains("trying local"), "{err}");
}

#[test]
fn a_failing_command_is_not_retried_elsewhere() {
    let (sb, _cluster) = setup(RULE);
    let v = sb.configured().args(["run", "--json", "--", "crunch() { exit 9; }; crunch"]).run().expect_code(9).json();
    assert_eq!(v["node"], "n1");
    assert_eq!(v["failed_attempts"].as_array().unwrap().len(), 0);
    stop_masters(sb.path());
}

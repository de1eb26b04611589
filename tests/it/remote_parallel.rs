//! `distex parallel` across real sshd nodes: slots, dependencies, failover
//! of tasks, and the JSON op.

use crate::util as support;

use support::Sandbox;
use support::sshd::{Cluster, stop_masters};

fn setup(extra: &str) -> (Sandbox, Cluster) {
    let cluster = Cluster::start(2);
    let sandbox = Sandbox::new();
    sandbox.write_config(&cluster.config(extra, ""));
    (sandbox, cluster)
}

/// A task that records how many tasks run at once on its node.
fn counting_task(dir: &str, i: usize) -> String {
    format!(
        "d={dir}/$DISTEX_TEST_NODE; mkdir -p $d; touch $d/t{i}; ls $d | wc -l >> {dir}/seen-$DISTEX_TEST_NODE; sleep 1; rm $d/t{i}; echo task{i}-on-$DISTEX_TEST_NODE"
    )
}

fn task_by_id<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["tasks"].as_array().unwrap().iter().find(|t| t["id"] == id).unwrap()
}

fn at(task: &serde_json::Value, status: &str) -> u64 {
    task["history"].as_array().unwrap().iter().rev().find(|h| h["status"] == status).unwrap()["at_ms"].as_u64().unwrap()
}

#[test]
fn parallel_honours_slots_and_dependencies_across_two_nodes() {
    let (sb, _cluster) = setup("slots = 2");
    let dir = sb.path().join("shared").display().to_string();
    let mut tasks: Vec<serde_json::Value> =
        (1..=6).map(|i| serde_json::json!({"id": format!("t{i}"), "command": counting_task(&dir, i)})).collect();
    let all: Vec<String> = (1..=6).map(|i| format!("t{i}")).collect();
    tasks.push(serde_json::json!({"id": "final", "command": format!("cat {dir}/seen-* | sort -n | tail -1; ls {dir}/n1 {dir}/n2 | grep -c '^t' || true"), "depends_on": all}));
    let file = sb.path().join("tasks.json");
    std::fs::write(&file, serde_json::json!({"tasks": tasks}).to_string()).unwrap();
    let run = sb
        .configured()
        .args(["parallel", "--json", "--no-sync", "--nodes", "n1,n2", "--file"])
        .arg(&file)
        .run()
        .success();
    let v = run.json();
    assert_eq!(v["summary"]["completed"], 7, "{v}");
    // Slots: never more than 2 at once on a node, and both nodes used to the full.
    for node in ["n1", "n2"] {
        let seen = std::fs::read_to_string(format!("{dir}/seen-{node}")).unwrap();
        let max = seen.lines().map(|l| l.trim().parse::<u32>().unwrap()).max().unwrap();
        assert!(max <= 2, "{node} ran {max} tasks at once with 2 slots");
        assert_eq!(max, 2, "{node} never ran 2 tasks at once");
    }
    assert_eq!(v["summary"]["per_node"]["n1"].as_u64().unwrap() + v["summary"]["per_node"]["n2"].as_u64().unwrap(), 7);
    // Dependencies: `final` started after every task completed, and saw none running.
    let final_task = task_by_id(&v, "final");
    let started = at(final_task, "in_progress");
    for id in &all {
        let t = task_by_id(&v, id);
        assert_eq!(t["status"], "completed");
        assert!(at(t, "completed") <= started, "{id} completed after final started");
    }
    assert_eq!(final_task["blocked_by"].as_array().unwrap().len(), 6);
    let history: Vec<&str> =
        final_task["history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect();
    assert_eq!(history, vec!["blocked", "pending", "in_progress", "completed"]);
    stop_masters(sb.path());
}

#[test]
fn human_output_prefixes_lines_and_summarises() {
    let (sb, _cluster) = setup("slots = 1");
    let run = sb
        .configured()
        .args(["parallel", "--no-sync", "--nodes", "n1,n2", "--", "echo one-$DISTEX_TEST_NODE", "echo two"])
        .run()
        .success();
    let out = run.stdout();
    assert!(out.contains("[1] echo one-$DISTEX_TEST_NODE: PENDING -> IN_PROGRESS (n1)"), "{out}");
    assert!(out.contains("[1] one-n1"), "{out}");
    assert!(out.contains("[2] echo two: IN_PROGRESS -> COMPLETE (n2)"), "{out}");
    assert!(out.lines().last().unwrap().starts_with("2 tasks: 2 completed, 0 failed"), "{out}");
    stop_masters(sb.path());
}

#[test]
fn tasks_move_off_a_dead_node() {
    let (sb, mut cluster) = setup("slots = 2");
    cluster.node_mut("n1").kill();
    let run = sb
        .configured()
        .args(["parallel", "--json", "--no-sync", "--nodes", "n1,n2", "--", "echo a", "echo b", "echo c"])
        .run()
        .success();
    let v = run.json();
    for t in v["tasks"].as_array().unwrap() {
        assert_eq!(t["node"], "n2", "{t}");
    }
    assert!(run.stderr().is_empty() || !run.stderr().contains("panicked"));
}

#[test]
fn failure_stops_new_tasks_unless_keep_going() {
    let (sb, _cluster) = setup("slots = 1");
    let v = sb
        .configured()
        .args(["parallel", "--json", "-j", "1", "--nodes", "local", "--", "exit 4", "echo later"])
        .run()
        .expect_code(1)
        .json();
    assert_eq!(task_by_id(&v, "1")["exit_code"], 4);
    assert_eq!(task_by_id(&v, "2")["status"], "failed");
    assert!(task_by_id(&v, "2")["error"].as_str().unwrap().contains("not started"));
    assert_eq!(v["summary"]["not_started"], 1);
    let v = sb
        .configured()
        .args(["parallel", "--json", "-j", "1", "--keep-going", "--nodes", "local", "--", "exit 4", "echo later"])
        .run()
        .expect_code(1)
        .json();
    assert_eq!(task_by_id(&v, "2")["status"], "completed");
}

#[test]
fn json_op_parallel_runs_tasks_and_reports_the_tasklist() {
    let (sb, _cluster) = setup("slots = 2");
    let request = serde_json::json!({
        "op": "parallel", "id": 7, "nodes": ["n1", "n2"], "sync": false,
        "tasks": [
            {"id": "a", "command": "echo A"},
            {"id": "b", "command": "exit 3"},
            {"id": "c", "command": "echo C", "depends_on": ["a"]},
            {"id": "d", "command": "echo D", "depends_on": ["b"]}
        ],
        "keep_going": true
    });
    let plan = serde_json::json!({"op": "plan", "tasks": [{"id": "x", "command": "cargo build"}, {"id": "y", "command": "cargo test"}]});
    let run = sb.configured().arg("json").stdin(&format!("{request}\n{plan}\n")).success();
    let lines = run.json_lines();
    let v = &lines[0];
    assert_eq!(v["op"], "parallel");
    assert_eq!(v["id"], 7);
    assert_eq!(task_by_id(v, "a")["status"], "completed");
    assert_eq!(task_by_id(v, "a")["stdout"]["text"], "A\n", "the JSON op returns each task's output");
    assert_eq!(task_by_id(v, "b")["exit_code"], 3);
    assert_eq!(task_by_id(v, "c")["status"], "completed");
    assert_eq!(task_by_id(v, "d")["status"], "failed");
    assert!(task_by_id(v, "d")["error"].as_str().unwrap().contains("dependency b failed"));
    assert_eq!(v["summary"]["failed"], 2);
    let p = &lines[1];
    assert_eq!(p["op"], "plan");
    assert_eq!(p["waves"], serde_json::json!([["x"], ["y"]]));
    stop_masters(sb.path());
}

#[test]
fn events_stream_as_json_lines() {
    let (sb, _cluster) = setup("slots = 1");
    let run =
        sb.configured().args(["parallel", "--events", "--no-sync", "--nodes", "n1", "--", "echo hi"]).run().success();
    let events = run.json_lines();
    assert_eq!(events.first().unwrap()["event"], "run_started");
    assert!(events.iter().any(|e| e["event"] == "task_output" && e["line"] == "hi" && e["id"] == "1"));
    assert!(events.iter().any(|e| e["event"] == "task_status_changed" && e["to"] == "completed" && e["node"] == "n1"));
    assert_eq!(events.last().unwrap()["event"], "run_finished");
    stop_masters(sb.path());
}

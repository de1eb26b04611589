//! Faults in region processors fail only their own task, the accounting
//! stays exact, the other regions complete, and no process is left behind:
//! a processor that exits 1, segfaults, hangs (timeout), exceeds its memory
//! limit, prints garbage, prints too much, or leaves a grandchild that
//! ignores SIGTERM. Also: retries with backoff, exit status 3.

use crate::util as support;

use serde_json::Value;
use support::Sandbox;

/// One region per fault, plus two healthy ones.
const DATA: &str = "region,v\nexit1,1\nsegv,2\nhang,3\nmemory,4\ngarbage,5\nflood,6\nhang_grandchild,7\nleave_grandchild,8\nok1,9\nok1,10\nok2,11\n";

/// A processor that misbehaves according to its region. Region names are
/// read from the environment, never pasted into the script.
const PROCESSOR: &str = r#"
case "$DISTEX_REGION" in
  exit1) echo "failing on purpose" >&2; exit 1 ;;
  segv) kill -SEGV $$ ;;
  hang) exec sleep 600 ;;
  memory) exec python3 -c 'x = bytearray(800 * 1024 * 1024); print("{}")' ;;
  garbage) echo 'this is not JSON' ;;
  flood) exec yes '{}' ;;
  hang_grandchild) sh -c 'trap "" TERM; while :; do sleep 1; done' & wait ;;
  leave_grandchild) sh -c 'trap "" TERM; exec sleep 600' & echo '{"n": 1}' ;;
  *) n=$(($(wc -l) - 1)); echo "{\"n\": $n}" ;;
esac
"#;

/// Processes whose environment holds `token` (workers inherit DISTEX_* variables).
fn processes_with(token: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|kv| kv == format!("DISTEX_TEST_TOKEN={token}").as_bytes()) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push(format!(
                "{}: {}",
                entry.file_name().to_string_lossy(),
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

#[test]
fn every_fault_fails_only_its_region_and_leaves_nothing_behind() {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("d.csv"), DATA).unwrap();
    std::fs::write(sb.path().join("proc.sh"), PROCESSOR).unwrap();
    let token = format!("faults-{}", std::process::id());
    let proc_cmd = format!("sh {}", sb.path().join("proc.sh").display());
    let run = sb
        .cmd()
        .env("DISTEX_TEST_TOKEN", &token)
        .args(["process", "d.csv", "--by", "region", "--json", "--jobs", "4", "--processor", &proc_cmd])
        .args(["--timeout", "3", "--grace", "0.5", "--max-memory", "300M", "--max-output", "64K"])
        .run()
        .expect_code(3);
    let report = run.json();
    let error = |region: &str| report["regions"][region]["error"].as_str().unwrap_or("").to_string();
    assert!(
        error("exit1").contains("exited with status 1") && error("exit1").contains("failing on purpose"),
        "{}",
        error("exit1")
    );
    assert!(error("segv").contains("SIGSEGV"), "{}", error("segv"));
    assert!(error("hang").contains("timed out after 3s"), "{}", error("hang"));
    assert!(error("hang_grandchild").contains("timed out"), "{}", error("hang_grandchild"));
    assert!(error("memory").contains("--max-memory"), "{}", error("memory"));
    assert!(
        error("garbage").contains("did not print one JSON object") && error("garbage").contains("this is not JSON"),
        "{}",
        error("garbage")
    );
    assert!(error("flood").contains("--max-output"), "{}", error("flood"));
    // A processor that answers but leaves a grandchild behind completes; the grandchild is killed.
    assert_eq!(report["regions"]["leave_grandchild"]["result"]["n"], 1);
    assert_eq!(report["regions"]["ok1"]["result"]["n"], 2);
    assert_eq!(report["regions"]["ok2"]["result"]["n"], 1);

    assert_eq!(support::accounting(&report), [11, 4, 0, 7]);
    assert_eq!(report["complete"], false);
    assert_eq!(report["totals"], Value::Null);
    let tasks = report["tasks"].as_array().unwrap();
    let agg = tasks.iter().find(|t| t["subject"] == "aggregate-results").unwrap();
    assert_eq!(agg["status"], "failed");
    assert!(agg["error"].as_str().unwrap().contains("process-region-segv"));
    assert_eq!(tasks.iter().filter(|t| t["status"] == "completed").count(), 3);

    // Killed processes may take a moment to exit on a busy machine.
    support::eventually(std::time::Duration::from_secs(10), || processes_with(&token).is_empty());
    let left = processes_with(&token);
    assert!(left.is_empty(), "processes left behind: {left:#?}");
}

#[test]
fn retries_rerun_a_failed_region_and_count_it_once() {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("d.csv"), "region,v\nA,1\nA,2\nB,3\n").unwrap();
    // Region A fails on its first two attempts, then succeeds.
    let cmd = r#"if [ "$DISTEX_REGION" = A ] && [ "$DISTEX_ATTEMPT" -lt 3 ]; then exit 7; fi; echo "{\"rows\": $(($(wc -l) - 1)), \"attempt\": $DISTEX_ATTEMPT}""#;
    let run = sb
        .cmd()
        .args(["process", "d.csv", "--by", "region", "--json", "--retries", "2", "--processor", cmd])
        .run()
        .success();
    let report = run.json();
    assert_eq!(report["regions"]["A"]["result"], serde_json::json!({"rows": 2, "attempt": 3}));
    assert_eq!(report["totals"]["rows"], 3, "each region counted once: {}", report["totals"]);
    let a = report["tasks"].as_array().unwrap().iter().find(|t| t["subject"] == "process-region-a").unwrap().clone();
    assert_eq!(a["attempts"], 3);
    assert_eq!(a["status"], "completed");
    assert_eq!(report["warnings"].as_array().unwrap().len(), 2, "{}", report["warnings"]);
    assert!(report["warnings"][0].as_str().unwrap().contains("exited with status 7; retrying in 100 ms"));

    // Without enough retries the region fails, with the number of attempts in the reason.
    let run = sb
        .cmd()
        .args(["process", "d.csv", "--by", "region", "--json", "--retries", "1", "--processor", cmd])
        .run()
        .expect_code(3);
    let report = run.json();
    assert!(report["regions"]["A"]["error"].as_str().unwrap().contains("after 2 attempts"));
    assert_eq!(report["accounting"]["in_failed_regions"], 2);
    assert_eq!(report["accounting"]["processed"], 1);
}

#[test]
fn human_output_shows_failures_and_the_incomplete_total() {
    let sb = Sandbox::new();
    let run = sb
        .cmd()
        .args(["process", "--demo", "--processor", r#"[ "$DISTEX_REGION" = B ] && exit 1; echo '{"ok": 1}'"#])
        .run()
        .expect_code(3);
    let out = run.stdout();
    assert!(out.contains("process-region-b: IN_PROGRESS -> FAILED (exited with status 1)"), "{out}");
    assert!(
        out.contains("[4] aggregate-results: BLOCKED -> FAILED (not run: blocked by failed task(s) process-region-b)"),
        "{out}"
    );
    assert!(out.contains("Region B: FAILED, 9 records not processed"), "{out}");
    assert!(out.contains("Total: not computed (1 of 3 regions failed)"), "{out}");
    assert!(out.contains("Accounting: 30 input records = 21 processed + 0 rejected + 9 in failed regions"), "{out}");
}

#[test]
fn aggregate_command_gets_every_result() {
    let sb = Sandbox::new();
    let agg = r#"python3 -c 'import json,sys; d=json.load(sys.stdin)["regions"]; print(json.dumps({"regions": sorted(d), "rows": sum(r["rows"] for r in d.values())}))'"#;
    let run = sb
        .cmd()
        .args([
            "process",
            "--demo",
            "--json",
            "--processor",
            r#"echo "{\"rows\": $(($(wc -l) - 1))}""#,
            "--aggregate",
            agg,
        ])
        .run()
        .success();
    let report = run.json();
    assert_eq!(report["totals"], serde_json::json!({"regions": ["A", "B", "C"], "rows": 30}));
    // A failing aggregator fails the aggregate task and the run.
    let run = sb
        .cmd()
        .args(["process", "--demo", "--json", "--processor", "echo '{}'", "--aggregate", "exit 4"])
        .run()
        .expect_code(3);
    let report = run.json();
    assert_eq!(report["complete"], false);
    assert_eq!(report["accounting"]["processed"], 30);
    let agg = report["tasks"].as_array().unwrap().iter().find(|t| t["subject"] == "aggregate-results").unwrap().clone();
    assert!(agg["error"].as_str().unwrap().contains("exited with status 4"));
}

#[test]
fn interrupt_terminates_every_worker_group_and_exits_130() {
    let sb = Sandbox::new();
    let token = format!("interrupt-{}", std::process::id());
    // Each region's processor leaves a grandchild that ignores SIGTERM, then hangs.
    let processor = r#"sh -c 'trap "" TERM; exec sleep 600' & exec sleep 600"#;
    let mut cmd = sb
        .cmd()
        .env("DISTEX_TEST_TOKEN", &token)
        .args(["process", "--demo", "--json", "--grace", "0.5", "--processor", processor])
        .cmd;
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    // Wait until the workers run (their grandchildren carry the token too).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while processes_with(&token).len() < 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(processes_with(&token).len() >= 4, "workers did not start: {:?}", processes_with(&token));
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a report is still printed");
    assert_eq!(report["complete"], false);
    assert_eq!(report["accounting"]["in_failed_regions"], 30);
    assert!(report["regions"]["A"]["error"].as_str().unwrap().contains("interrupted"));
    // Killed processes may take a moment to exit on a busy machine.
    support::eventually(std::time::Duration::from_secs(10), || processes_with(&token).is_empty());
    let left = processes_with(&token);
    assert!(left.is_empty(), "processes left behind: {left:#?}");
}

#[test]
fn cpu_and_open_file_limits_apply_to_processors() {
    let sb = Sandbox::new();
    let processor = r#"case "$DISTEX_REGION" in
      A) exec python3 -c 'while True: pass' ;;
      B) exec python3 -c 'fs = [open("/dev/null") for _ in range(200)]; print("{}")' ;;
      *) echo '{"ok": 1}' ;;
    esac"#;
    let run = sb
        .cmd()
        .args(["process", "--demo", "--json", "--max-cpu-seconds", "1", "--max-open-files", "32", "--timeout", "30"])
        .args(["--processor", processor])
        .run()
        .expect_code(3);
    let report = run.json();
    let a = report["regions"]["A"]["error"].as_str().unwrap();
    assert!(a.contains("SIGXCPU") || a.contains("--max-cpu-seconds"), "{a}");
    assert!(!a.contains("timed out"), "the CPU limit, not the timeout, stopped it: {a}");
    let b = report["regions"]["B"]["error"].as_str().unwrap();
    assert!(b.contains("Too many open files"), "{b}");
    assert_eq!(report["regions"]["C"]["result"]["ok"], 1);
    assert_eq!(report["accounting"]["in_failed_regions"], 21);
}

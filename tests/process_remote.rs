//! `distex process --nodes`: region workers on a real sshd node on
//! loopback. The node gets the region's records over the SSH channel and
//! the same contract as a local worker; faults on the node fail only their
//! region, the accounting stays exact, and nothing is left running there.

mod support;

use support::Sandbox;
use support::sshd::{Cluster, all_processes_matching, stop_masters};

fn setup() -> (Sandbox, Cluster) {
    let cluster = Cluster::start(1);
    let sandbox = Sandbox::new();
    // One slot on this machine, two on the node: most regions go remote.
    sandbox.write_config(&cluster.config("slots = 2\n", ""));
    (sandbox, cluster)
}

/// Prints where it ran and what it received, or misbehaves by region.
const PROCESSOR: &str = r#"
case "$DISTEX_REGION" in
  fail) echo "failing on purpose" >&2; exit 3 ;;
  hang) sh -c 'trap "" TERM; exec sleep 600' & exec sleep 600 ;;
esac
rows=$(($(wc -l) - 1))
printf '{"rows": %d, "home_is_private": %s, "secret": "%s", "region_len": %d}\n' \
  "$rows" "$( [ "$HOME" = "$PWD/home" ] && echo true || echo false )" "${SECRET_TOKEN:-}" "${#DISTEX_REGION}"
"#;

#[test]
fn regions_run_on_the_node_with_their_records_and_nothing_is_left_behind() {
    let (sb, cluster) = setup();
    let mut csv = String::from("region,v,note\n");
    let names = ["north", "south", "east", "west", "$(touch pwned) x", "fail", "hang"];
    for (i, name) in names.iter().enumerate() {
        for k in 0..=i {
            csv.push_str(&format!("\"{}\",{k},\"a, \"\"quoted\"\"\nnote\"\n", name.replace('"', "\"\"")));
        }
    }
    std::fs::write(sb.path().join("d.csv"), &csv).unwrap();
    std::fs::write(sb.path().join("proc.sh"), PROCESSOR).unwrap();
    let processor = format!("sh {}", sb.path().join("proc.sh").display());
    let token = format!("remote-proc-{}", std::process::id());
    let run = sb
        .cmd()
        .env("SECRET_TOKEN", "s3cr3t")
        .args(["--config", sb.path().join("cluster.toml").to_str().unwrap()])
        .args(["process", "d.csv", "--by", "region", "--json", "--jobs", "1", "--nodes", "n1"])
        .args(["--processor", &format!("{processor} # {token}"), "--timeout", "5", "--grace", "0.5"])
        .run()
        .expect_code(3);
    let report = run.json();
    let tasks = report["tasks"].as_array().unwrap();
    let on_node = tasks.iter().filter(|t| t["node"] == "n1").count();
    assert!(on_node >= 2, "regions ran on the node: {tasks:#?}");
    // Records arrive intact (quoted newlines included: wc -l counts 2 lines per record).
    for (i, name) in names.iter().enumerate().take(5) {
        let r = &report["regions"][name]["result"];
        assert_eq!(r["rows"], (2 * (i + 1)) as u64, "region {name:?}: {r}");
        assert_eq!(r["home_is_private"], true);
        assert_eq!(r["secret"], "", "the parent's environment must not reach a worker");
        assert_eq!(r["region_len"], name.len() as u64);
    }
    let fail = report["regions"]["fail"]["error"].as_str().unwrap();
    assert!(fail.contains("exited with status 3") && fail.contains("failing on purpose"), "{fail}");
    let hang = report["regions"]["hang"]["error"].as_str().unwrap();
    assert!(hang.contains("timed out"), "{hang}");
    let a = &report["accounting"];
    assert_eq!(a["input_records"], 28);
    assert_eq!(a["processed"], 15);
    assert_eq!(a["in_failed_regions"], 13);
    assert!(!sb.path().join("pwned").exists());
    assert!(!cluster.nodes[0].workdir.join("pwned").exists());
    // Nothing the processors started survives, on the node or here.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let left: Vec<_> = all_processes_matching("sleep 600")
        .into_iter()
        .filter(|(pid, _)| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|e| String::from_utf8_lossy(&e).contains("DISTEX_REGION=hang"))
                .unwrap_or(false)
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    stop_masters(sb.path());
}

#[test]
fn unknown_nodes_and_sandbox_are_refused() {
    let (sb, _cluster) = setup();
    let cfg = sb.path().join("cluster.toml");
    let run = sb
        .cmd()
        .args(["--config", cfg.to_str().unwrap(), "process", "--demo", "--nodes", "nope", "--processor", "cat"])
        .run()
        .expect_code(2);
    assert!(run.stderr().contains("unknown node \"nope\"") && run.stderr().contains("n1"), "{}", run.stderr());
    let run = sb
        .cmd()
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "process",
            "--demo",
            "--nodes",
            "n1",
            "--sandbox",
            "--processor",
            "cat",
        ])
        .run()
        .expect_code(2);
    assert!(run.stderr().contains("--sandbox cannot be enforced on remote nodes"), "{}", run.stderr());
    // The built-in summary stays local, and says so.
    let report = sb
        .cmd()
        .args(["--config", cfg.to_str().unwrap(), "process", "--demo", "--nodes", "n1", "--json"])
        .run()
        .success()
        .json();
    assert!(report["warnings"][0].as_str().unwrap().contains("built-in summary ran on this machine"));
    assert!(report["tasks"].as_array().unwrap().iter().all(|t| t["node"] == "local"));
}

#[test]
fn on_the_node_timeouts_kill_the_whole_group_and_retries_rerun() {
    let (sb, _cluster) = setup();
    let cfg = sb.path().join("cluster.toml");
    // The slow region holds ~5 MB it never reads (more than the SSH channel window): the feed blocks on a full
    // channel, and the timeout must still fire.
    let mut csv = String::from("region,v\nflaky,2\nflaky,3\n");
    for i in 0..400_000 {
        csv.push_str(&format!("slow,{i}.5\n"));
    }
    std::fs::write(sb.path().join("d.csv"), csv).unwrap();
    // `--jobs 0`: no local workers, every region runs on n1.
    let processor = r#"case "$DISTEX_REGION" in
      slow) sh -c 'trap "" TERM; exec sleep 600' & exec sleep 600 ;;
      flaky) [ "$DISTEX_ATTEMPT" -lt 2 ] && exit 9; echo "{\"rows\": $(($(wc -l) - 1))}" ;;
    esac"#;
    let run = sb
        .cmd()
        .args(["--config", cfg.to_str().unwrap(), "process", "d.csv", "--by", "region", "--json"])
        .args(["--jobs", "0", "--nodes", "n1", "--retries", "1", "--timeout", "2", "--processor", processor])
        .run()
        .expect_code(3);
    let report = run.json();
    assert!(
        report["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["subject"] != "aggregate-results")
            .all(|t| t["node"] == "n1")
    );
    assert_eq!(report["regions"]["flaky"]["result"]["rows"], 2);
    let flaky =
        report["tasks"].as_array().unwrap().iter().find(|t| t["subject"] == "process-region-flaky").unwrap().clone();
    assert_eq!(flaky["attempts"], 2);
    assert!(
        report["warnings"][0].as_str().unwrap().contains("exited with status 9 on node n1"),
        "{}",
        report["warnings"]
    );
    let slow = report["regions"]["slow"]["error"].as_str().unwrap();
    assert!(slow.contains("timed out") && slow.contains("node n1"), "{slow}");
    assert_eq!(report["accounting"]["processed"], 2);
    assert_eq!(report["accounting"]["in_failed_regions"], 400_000);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let left: Vec<_> = all_processes_matching("sleep 600")
        .into_iter()
        .filter(|(pid, _)| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|e| String::from_utf8_lossy(&e).contains("DISTEX_REGION=slow"))
                .unwrap_or(false)
        })
        .collect();
    assert!(left.is_empty(), "left behind on the node: {left:?}");
    // --jobs 0 needs somewhere to run.
    sb.cmd().args(["process", "--demo", "--jobs", "0", "--processor", "cat"]).run().expect_code(2);
    stop_masters(sb.path());
}

/// Prints where it ran; the `fail` region fails on purpose (a processor
/// fault, which must stay on its target).
const WHERE: &str = r#"case "$DISTEX_REGION" in fail) echo "failing on purpose" >&2; exit 3 ;; esac
echo "{\"rows\": $(($(wc -l) - 1)), \"attempt\": $DISTEX_ATTEMPT}""#;

#[test]
fn regions_move_off_an_unreachable_node_and_the_node_is_marked_down() {
    let mut cluster = Cluster::start(2);
    let sb = Sandbox::new();
    let cfg = sb.write_config(&cluster.config("slots = 2\n", ""));
    let mut csv = String::from("region,v\n");
    let names = ["a", "b", "c", "d", "e", "fail"];
    for (i, name) in names.iter().enumerate() {
        for k in 0..=i {
            csv.push_str(&format!("{name},{k}\n"));
        }
    }
    std::fs::write(sb.path().join("d.csv"), &csv).unwrap();
    cluster.node_mut("n1").kill();
    let processor = format!("{WHERE} # failover-{}", std::process::id());
    // `--jobs 0`: nothing here is a target of its own; n1 is dead, n2 healthy.
    let run = sb
        .cmd()
        .args(["--config", cfg.to_str().unwrap(), "process", "d.csv", "--by", "region", "--json"])
        .args(["--jobs", "0", "--nodes", "n1,n2", "--retries", "0", "--processor", &processor])
        .run()
        .expect_code(3);
    let report = run.json();
    let tasks: Vec<_> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["subject"].as_str().unwrap().starts_with("process-region-"))
        .cloned()
        .collect();
    assert_eq!(tasks.len(), names.len());
    assert!(tasks.iter().all(|t| t["node"] == "n2"), "every region really ran on n2: {tasks:#?}");
    for (i, name) in names.iter().enumerate().take(5) {
        assert_eq!(report["regions"][name]["result"]["rows"], (i + 1) as u64, "region {name}: {report:#}");
    }
    // A unit that tried n1 first shows the move in its attempts and in a warning.
    let moved: Vec<_> = tasks.iter().filter(|t| t["attempts"] == 2).collect();
    assert!(!moved.is_empty(), "some regions started on n1: {tasks:#?}");
    assert!(tasks.iter().all(|t| t["attempts"] == 1 || t["attempts"] == 2), "{tasks:#?}");
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("node n1: cannot connect") && warnings.contains("moving it to node n2"), "{warnings}");
    // The processor's own failure is not a node fault: it stays on n2, not retried (--retries 0).
    let fail = report["regions"]["fail"]["error"].as_str().unwrap();
    assert!(fail.contains("exited with status 3 on node n2"), "{fail}");
    let a = &report["accounting"];
    assert_eq!(a["input_records"], 21);
    assert_eq!(a["processed"], 15);
    assert_eq!(a["in_failed_regions"], 6);
    assert_eq!(a["rejected"], 0);
    // The node cache (what `distex route` reads) knows n1 is down.
    let nodes = sb.cmd().args(["--config", cfg.to_str().unwrap(), "nodes", "--json"]).run().success().json();
    let node = |name: &str| nodes["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).unwrap().clone();
    assert_eq!(node("n1")["answered"], false, "{nodes:#}");
    assert_eq!(node("n2")["answered"], true, "n2 answered: {nodes:#}");

    // The next run does not knock on n1 again: the cache says it is down.
    let report = sb
        .cmd()
        .args(["--config", cfg.to_str().unwrap(), "process", "d.csv", "--by", "region", "--json"])
        .args(["--jobs", "0", "--nodes", "n1,n2", "--retries", "0", "--processor", &processor])
        .run()
        .expect_code(3)
        .json();
    let regions = report["tasks"].as_array().unwrap().iter().filter(|t| t["subject"] != "aggregate-results");
    assert!(regions.clone().all(|t| t["node"] == "n2" && t["attempts"] == 1), "{report:#}");
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("skipped node(s) n1") && !warnings.contains("cannot connect"), "{warnings}");
    assert_eq!(report["accounting"]["processed"], 15);

    // With every node down, the regions run on this machine.
    cluster.node_mut("n2").kill();
    let report = sb
        .cmd()
        .args(["--config", cfg.to_str().unwrap(), "process", "d.csv", "--by", "region", "--json"])
        .args(["--jobs", "0", "--nodes", "n1,n2", "--retries", "0", "--processor", &processor])
        .run()
        .expect_code(3)
        .json();
    let tasks: Vec<_> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["subject"].as_str().unwrap().starts_with("process-region-"))
        .cloned()
        .collect();
    assert!(tasks.iter().all(|t| t["node"] == "local"), "{tasks:#?}");
    assert_eq!(report["regions"]["e"]["result"]["rows"], 5);
    assert_eq!(report["accounting"]["processed"], 15);
    assert_eq!(report["accounting"]["in_failed_regions"], 6);
    let nodes = sb.cmd().args(["--config", cfg.to_str().unwrap(), "nodes", "--json"]).run().success().json();
    assert!(nodes["nodes"].as_array().unwrap().iter().filter(|n| n["name"] == "n2").all(|n| n["answered"] == false));
    stop_masters(sb.path());
}

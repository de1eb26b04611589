//! `distex process --nodes`: region workers on a real sshd node on
//! loopback. The node gets the region's records over the SSH channel and
//! the same contract as a local worker; faults on the node fail only their
//! region, the accounting stays exact, and nothing is left running there.

use crate::util as support;

use support::sshd::{Cluster, all_processes_matching, stop_masters};
use support::{DISTEX, Sandbox};

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
    let sleep = own_sleep(1);
    std::fs::write(sb.path().join("proc.sh"), PROCESSOR.replace("sleep 600", &sleep)).unwrap();
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
    support::eventually(std::time::Duration::from_secs(10), || region_processes(&sleep, "hang").is_empty());
    let left = region_processes(&sleep, "hang");
    assert!(left.is_empty(), "left behind: {left:?}");
    stop_masters(sb.path());
}

#[test]
fn unknown_nodes_and_byte_splits_are_refused() {
    let (sb, _cluster) = setup();
    let cfg = sb.path().join("cluster.toml");
    let run = sb
        .cmd()
        .args(["--config", cfg.to_str().unwrap(), "process", "--demo", "--nodes", "nope", "--processor", "cat"])
        .run()
        .expect_code(2);
    assert!(run.stderr().contains("unknown node \"nope\"") && run.stderr().contains("n1"), "{}", run.stderr());
    // A byte-range split scans files here: it cannot use nodes.
    let run = sb
        .cmd()
        .args(["--config", cfg.to_str().unwrap(), "process", "--demo", "--nodes", "n1", "--split", "bytes"])
        .run()
        .expect_code(2);
    assert!(run.stderr().contains("--split bytes") && run.stderr().contains("--nodes"), "{}", run.stderr());
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
    let sleep = own_sleep(2);
    let processor = r#"case "$DISTEX_REGION" in
      slow) sh -c 'trap "" TERM; exec sleep 600' & exec sleep 600 ;;
      flaky) [ "$DISTEX_ATTEMPT" -lt 2 ] && exit 9; echo "{\"rows\": $(($(wc -l) - 1))}" ;;
    esac"#
        .replace("sleep 600", &sleep);
    let processor = processor.as_str();
    let run = sb
        .cmd()
        .args(["--config", cfg.to_str().unwrap(), "process", "d.csv", "--by", "region", "--json"])
        .args(["--jobs", "0", "--nodes", "n1", "--retries", "1", "--timeout", "2", "--processor", processor])
        .run()
        .expect_code(3);
    let report = run.json();
    assert!(region_tasks(&report).iter().all(|t| t["node"] == "n1"));
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
    support::eventually(std::time::Duration::from_secs(10), || region_processes(&sleep, "slow").is_empty());
    let left = region_processes(&sleep, "slow");
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
    let tasks = region_tasks(&report);
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
    assert!(warnings.contains("node n1 is marked down") && !warnings.contains("node n2 is marked"), "{warnings}");
    // The processor's own failure is not a node fault: it stays on n2, not retried (--retries 0).
    let fail = report["regions"]["fail"]["error"].as_str().unwrap();
    assert!(fail.contains("exited with status 3 on node n2"), "{fail}");
    assert_eq!(support::accounting(&report), [21, 15, 0, 6]);
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
    assert!(region_tasks(&report).iter().all(|t| t["node"] == "n2" && t["attempts"] == 1), "{report:#}");
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
    let tasks = region_tasks(&report);
    assert!(tasks.iter().all(|t| t["node"] == "local"), "{tasks:#?}");
    assert_eq!(report["regions"]["e"]["result"]["rows"], 5);
    assert_eq!(report["accounting"]["processed"], 15);
    assert_eq!(report["accounting"]["in_failed_regions"], 6);
    let nodes = sb.cmd().args(["--config", cfg.to_str().unwrap(), "nodes", "--json"]).run().success().json();
    assert!(nodes["nodes"].as_array().unwrap().iter().filter(|n| n["name"] == "n2").all(|n| n["answered"] == false));
    stop_masters(sb.path());
}

/// A `cluster.toml` with this machine (2 slots) and one `[[node]]` table per
/// `(node, extra keys)`.
fn config_with(cluster: &Cluster, nodes: &[(&str, &str)]) -> String {
    let mut text = String::from(
        "[local]\nname = \"here\"\nos = \"linux\"\nslots = 2\n\n[routing]\noverload_threshold = 1000.0\n\n",
    );
    for (name, extra) in nodes {
        text.push_str(&cluster.node_table(cluster.node(name), extra));
        text.push('\n');
    }
    text
}

/// The name of a numeric column of [`summary_data`]: it reaches the node
/// in the worker's spec, and must stay data there.
fn hostile_column(dir: &std::path::Path) -> String {
    format!("w'$(touch {}/pwned-col) \"q\"", dir.display())
}

/// Regions of different sizes, quoted fields holding commas, quotes and
/// newlines, values whose float sums depend on the order they are added in
/// (unless summed exactly), empty numeric cells, and a hostile column name.
fn summary_data(dir: &std::path::Path) -> String {
    let mut csv = format!("region,note,v,\"{}\"\n", hostile_column(dir).replace('"', "\"\""));
    for i in 0..600u64 {
        let region = ["north", "south", "east", "west", "$(touch pwned) x"][((i * 3 + i / 7 + i / 97) % 5) as usize];
        let v = match i % 4 {
            0 => format!("{}e15", i % 9 + 1),
            1 => format!("0.{}", i * 7919 % 1000 + 1),
            2 => format!("-{}e15", i % 9 + 1),
            _ => format!("{}.000000001", i),
        };
        let w = if i % 11 == 0 { String::new() } else { format!("{}", i as f64 / 3.0) };
        csv.push_str(&format!("\"{}\",\"a, \"\"b\"\"\nc\",{v},{w}\n", region.replace('"', "\"\"")));
    }
    csv
}

/// Processes matching `pattern` that a worker of `region` started (by the
/// DISTEX_REGION in their environment).
/// `sleep 600.<pid><salt>`: a sleep no other test (in this binary or another
/// run on this machine) starts, so [`region_processes`] finds only this
/// test's processes.
fn own_sleep(salt: u32) -> String {
    format!("sleep 600.{}{salt}", std::process::id())
}

fn region_processes(pattern: &str, region: &str) -> Vec<(i32, String)> {
    let marker = format!("DISTEX_REGION={region}");
    all_processes_matching(pattern)
        .into_iter()
        .filter(|(pid, _)| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|e| String::from_utf8_lossy(&e).contains(&marker))
        })
        .collect()
}

/// Region tasks (not aggregate-results) of a report.
fn region_tasks(report: &serde_json::Value) -> Vec<serde_json::Value> {
    report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["subject"].as_str().unwrap().starts_with("process-region-"))
        .cloned()
        .collect()
}

#[test]
fn summary_regions_run_on_the_node_and_equal_a_local_run_exactly() {
    let cluster = Cluster::start(1);
    let sb = Sandbox::new();
    let cfg = sb.write_config(&config_with(&cluster, &[("n1", &format!("slots = 2\ndistex = \"{DISTEX}\""))]));
    std::fs::write(sb.path().join("d.csv"), summary_data(sb.path())).unwrap();
    let process = |extra: &[&str]| {
        sb.cmd()
            .args(["--config", cfg.to_str().unwrap(), "process", "d.csv", "--by", "region", "--json"])
            .args(extra)
            .run()
            .success()
            .json()
    };
    let local = process(&["--jobs", "2"]);
    assert!(region_tasks(&local).iter().all(|t| t["node"] == "local"));
    assert_eq!(local["accounting"]["input_records"], 600);

    // `--jobs 0`: every summary worker runs on n1 (distex itself, as `distex __worker summary`).
    let remote = process(&["--jobs", "0", "--nodes", "n1"]);
    let tasks = region_tasks(&remote);
    assert_eq!(tasks.len(), 5);
    assert!(tasks.iter().all(|t| t["node"] == "n1" && t["attempts"] == 1), "{tasks:#?}");
    assert_eq!(remote["warnings"], serde_json::json!([]), "{remote:#}");
    assert_eq!(remote["complete"], true);
    // Bit for bit: the JSON numbers are the same text.
    assert_eq!(remote["regions"].to_string(), local["regions"].to_string());
    assert_eq!(remote["totals"].to_string(), local["totals"].to_string());
    assert_eq!(remote["accounting"], local["accounting"]);
    let w = &remote["totals"]["stats"][hostile_column(sb.path())];
    assert_eq!(w["count"], 545, "{remote:#}");

    // Regions shared between this machine and the node merge to the same totals.
    let mixed = process(&["--jobs", "1", "--nodes", "n1"]);
    assert!(region_tasks(&mixed).iter().any(|t| t["node"] == "n1"), "{mixed:#}");
    assert_eq!(mixed["totals"].to_string(), local["totals"].to_string());
    assert_eq!(mixed["regions"].to_string(), local["regions"].to_string());
    assert!(!sb.path().join("pwned").exists() && !sb.path().join("pwned-col").exists());
    stop_masters(sb.path());
}

#[test]
fn summary_regions_move_off_nodes_without_a_usable_distex_and_the_nodes_stay_up() {
    let cluster = Cluster::start(2);
    let sb = Sandbox::new();
    // n1: no distex where its config says; n2: a distex of another version.
    let old = sb.path().join("old-distex");
    support::write_executable(&old, "#!/bin/sh\necho 'distex 0.0.1'\n");
    let missing = sb.path().join("no/such/distex");
    let cfg = sb.write_config(&config_with(
        &cluster,
        &[
            ("n1", &format!("slots = 2\ndistex = \"{}\"", missing.display())),
            ("n2", &format!("slots = 2\ndistex = \"{}\"", old.display())),
        ],
    ));
    std::fs::write(sb.path().join("d.csv"), summary_data(sb.path())).unwrap();
    let args = ["--config", cfg.to_str().unwrap(), "process", "d.csv", "--by", "region", "--json"];
    let local = sb.cmd().args(args).args(["--jobs", "2"]).run().success().json();
    let report = sb.cmd().args(args).args(["--jobs", "0", "--nodes", "n1,n2"]).run().success().json();
    let tasks = region_tasks(&report);
    assert!(tasks.iter().all(|t| t["node"] == "local"), "every region ended up here: {tasks:#?}");
    assert!(tasks.iter().any(|t| t["attempts"] == 2), "some started on a node: {tasks:#?}");
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("node n1 has no usable distex binary")
            && warnings.contains("not found")
            && warnings.contains("distex = \\\"/path/to/distex\\\"` in node n1's [[node]] table"),
        "{warnings}"
    );
    assert!(
        warnings.contains("node n2 has no usable distex binary")
            && warnings.contains("it is distex 0.0.1, not distex "),
        "{warnings}"
    );
    assert!(warnings.contains("moving it to this machine") && !warnings.contains("marked down"), "{warnings}");
    assert_eq!(report["complete"], true);
    assert_eq!(support::accounting(&report), [600, 600, 0, 0]);
    assert_eq!(report["totals"].to_string(), local["totals"].to_string());
    assert_eq!(report["regions"].to_string(), local["regions"].to_string());
    // Both nodes answered: neither is down in the node cache.
    let nodes = sb.cmd().args(["--config", cfg.to_str().unwrap(), "nodes", "--json"]).run().success().json();
    for n in nodes["nodes"].as_array().unwrap().iter().filter(|n| n["name"] != "here") {
        assert_ne!(n["answered"], false, "{nodes:#}");
    }
    stop_masters(sb.path());
}

#[test]
fn a_connection_cut_mid_run_fails_the_started_regions_moves_the_rest_and_leaves_nothing_behind() {
    let mut cluster = Cluster::start(1);
    let sb = Sandbox::new();
    let cfg = sb.write_config(&cluster.config("slots = 2\n", ""));
    let mut csv = String::from("region,v\n");
    let names = ["a", "b", "c", "d"];
    for (i, name) in names.iter().enumerate() {
        for k in 0..=i {
            csv.push_str(&format!("{name},{k}\n"));
        }
    }
    std::fs::write(sb.path().join("d.csv"), &csv).unwrap();
    let started = sb.path().join("started");
    std::fs::create_dir(&started).unwrap();
    // On the node (its work directory is a `mktemp -d` distex-worker.XXXXXX),
    // the processor says where it runs and then blocks in a sleep whose
    // length is this test's marker; here it answers at once.
    let marker = format!("{}.4242", 600 + std::process::id() % 1000);
    let processor = format!(
        r#"case "$(pwd)" in */distex-worker.*) pwd > {started}/"$DISTEX_TASK_ID"; sleep {marker}; exit 0 ;; esac
echo "{{\"rows\": $(($(wc -l) - 1)), \"attempt\": $DISTEX_ATTEMPT}}""#,
        started = started.display()
    );
    // `--jobs 0`: every region starts on n1, two at a time.
    let mut cmd = sb
        .cmd()
        .args(["--config", cfg.to_str().unwrap(), "process", "d.csv", "--by", "region", "--json"])
        .args(["--jobs", "0", "--nodes", "n1", "--processor", &processor])
        .cmd;
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("start distex");
    let on_node = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::fs::read_dir(&started).unwrap().count() < n {
            assert!(std::time::Instant::now() < deadline, "no region started on n1");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    on_node(2);
    // Both of n1's slots are busy: its sshd dies under them.
    cluster.node_mut("n1").cut();
    // At most once: the two regions running on n1 may have run there, so
    // they fail ("outcome unknown, not retried"); the others move here.
    let run = support::Run { output: child.wait_with_output().unwrap() }.expect_code(3);
    let report = run.json();

    let tasks = region_tasks(&report);
    assert_eq!(tasks.len(), names.len());
    let lost: Vec<_> = tasks.iter().filter(|t| t["status"] == "failed").collect();
    assert_eq!(lost.len(), 2, "the two regions running on n1 are lost: {tasks:#?}");
    for t in &lost {
        assert_eq!(t["attempts"], 1, "a region that may have run is never run again: {t:#}");
        assert!(t["error"].as_str().unwrap().contains("outcome unknown, not retried"), "{t:#}");
    }
    let moved: Vec<_> = tasks.iter().filter(|t| t["status"] == "completed").collect();
    assert_eq!(moved.len(), 2, "{tasks:#?}");
    assert!(moved.iter().all(|t| t["node"] == "local"), "{tasks:#?}");
    assert_eq!(report["complete"], false);
    let warnings = report["warnings"].to_string();
    assert_eq!(warnings.matches("node n1 is marked down").count(), 1, "said once: {warnings}");
    // The node cache knows n1 is down.
    let nodes = sb.cmd().args(["--config", cfg.to_str().unwrap(), "nodes", "--json"]).run().success().json();
    let n1 = nodes["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "n1").unwrap().clone();
    assert_eq!(n1["answered"], false, "{nodes:#}");

    // Nothing is left running: not the ssh clients here, not the orphaned
    // workers on the node (their script notices the lost session and kills
    // its process group), and their work directories are gone.
    let dirs: Vec<std::path::PathBuf> = std::fs::read_dir(&started)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap().trim().into())
        .collect();
    assert_eq!(dirs.len(), 2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut left = all_processes_matching(&marker);
    while (!left.is_empty() || dirs.iter().any(|d| d.exists())) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = all_processes_matching(&marker);
    }
    for (pid, _) in &left {
        // SAFETY: kill(2) on a process this test's run started; the test fails below.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    assert!(left.is_empty(), "left behind: {left:#?}");
    for d in &dirs {
        assert!(!d.exists(), "{} was not removed", d.display());
    }
    stop_masters(sb.path());
}

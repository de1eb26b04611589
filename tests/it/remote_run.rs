//! `distex run` against real sshd nodes: output, exit codes, the JSON
//! record, transport failures and failover, timeouts.

use crate::util as support;

use std::time::{Duration, Instant};

use support::sshd::{Cluster, all_processes_matching, stop_masters};

#[test]
fn remote_output_streams_and_exit_status_passes_through() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "", "");
    let run = sb
        .configured()
        .args(["run", "--node", "n1", "--", "echo out; echo err >&2; hostname >/dev/null; exit 3"])
        .run()
        .expect_code(3);
    assert_eq!(run.stdout(), "out\n");
    assert_eq!(run.stderr(), "err\n", "the exit marker must never reach the user");
    // 255 from the command is the command's status, not a transport failure.
    sb.configured().args(["run", "--node", "n1", "--", "exit 255"]).run().expect_code(255);
    // 127 too (openssh would call it "command not found").
    sb.configured().args(["run", "--node", "n1", "--", "no-such-command-xyz"]).run().expect_code(127);
}

#[test]
fn the_remote_side_sees_the_arguments_unmangled() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "", "");
    let run =
        sb.configured().args(["run", "--node", "n1", "--", "printf '%s|' \"it's\" '$HOME' \"a  b\""]).run().success();
    assert_eq!(run.stdout(), "it's|$HOME|a  b|");
}

#[test]
fn json_record_reports_node_status_timings_and_bounded_output() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "", "");
    let run = sb
        .configured()
        .args([
            "run",
            "--json",
            "--node",
            "n1",
            "--",
            "head -c 100000 /dev/zero | tr '\\0' x; echo; echo bye >&2; exit 4",
        ])
        .run()
        .expect_code(4);
    let v = run.json();
    assert_eq!(v["node"], "n1");
    assert_eq!(v["why"], "forced");
    assert_eq!(v["status"]["kind"], "exited");
    assert_eq!(v["status"]["code"], 4);
    assert_eq!(v["exit_code"], 4);
    assert_eq!(v["stdout"]["bytes"], 100001);
    assert_eq!(v["stdout"]["truncated"], true);
    assert!(v["stdout"]["text"].as_str().unwrap().len() <= 64 * 1024);
    assert_eq!(v["stderr"]["text"], "bye\n");
    for key in ["connect_ms", "sync_ms", "run_ms", "return_ms", "total_ms"] {
        assert!(v["timings"][key].is_u64(), "timings.{key} missing: {v}");
    }
}

#[test]
fn routed_commands_go_to_the_matching_node() {
    let (sb, _cluster) = Cluster::with_sandbox(
        2,
        "",
        "[[rule]]\nname = \"gpu\"\ncommands = [\"nvidia-smi\"]\nrequires = { features = [\"gpu\"] }\nsync = false\n",
    );
    // Only n2 has the feature: rewrite its table.
    let text = std::fs::read_to_string(sb.path().join("cluster.toml")).unwrap();
    let text = text.replacen("name = \"n2\"\n", "name = \"n2\"\nfeatures = [\"gpu\"]\n", 1);
    std::fs::write(sb.path().join("cluster.toml"), text).unwrap();
    let run =
        sb.configured().args(["run", "--json", "--", "nvidia-smi() { echo fake-gpu; }; nvidia-smi"]).run().success();
    let v = run.json();
    assert_eq!(v["node"], "n2", "{v}");
    assert_eq!(v["rule"], "gpu");
    assert_eq!(v["stdout"]["text"], "fake-gpu\n");
}

#[test]
fn local_runs_use_the_current_directory() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "", "");
    let dir = sb.path().join("here");
    std::fs::create_dir_all(&dir).unwrap();
    let run =
        sb.configured().current_dir(&dir).args(["run", "--node", "local", "--", "pwd; exit 5"]).run().expect_code(5);
    assert_eq!(run.stdout().trim(), dir.display().to_string());
}

#[test]
fn unreachable_node_is_a_transport_failure_not_the_command_status() {
    let (sb, mut cluster) = Cluster::with_sandbox(
        1,
        "",
        "[[rule]]\nname = \"needs_gpu\"\ncommands = [\"train\"]\nrequires = { features = [\"gpu\"] }\nsync = false\n",
    );
    cluster.node_mut("n1").kill();
    let run = sb.configured().args(["run", "--node", "n1", "--", "train"]).run().expect_code(125);
    let err = run.stderr();
    assert!(err.contains("n1"), "{err}");
    assert!(err.contains("no node could run the command"), "{err}");
    assert!(err.contains("does not satisfy rule needs_gpu"), "{err}");
    // The failure is remembered for routing.
    let nodes = sb.configured().args(["nodes", "--json"]).run().success().json();
    let n1 = nodes["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "n1").unwrap().clone();
    assert_eq!(n1["answered"], false, "{n1}");
}

#[test]
fn unknown_host_key_is_refused_by_default_and_accepted_when_configured() {
    let (sb, cluster) = Cluster::with_sandbox(1, "", "");
    std::fs::write(&cluster.known_hosts, "").unwrap();
    let run = sb.configured().args(["run", "--node", "n1", "--", "true"]).run();
    // n1 refused, then the command fails over to this machine (no rule: local may run it).
    let err = run.stderr();
    assert!(err.contains("host key"), "{err}");
    assert!(err.contains("accept-new"), "{err}");
    let text = std::fs::read_to_string(sb.path().join("cluster.toml")).unwrap();
    std::fs::write(
        sb.path().join("cluster.toml"),
        text.replace("connect_timeout = 2", "connect_timeout = 2\nhost_key_checking = \"accept-new\""),
    )
    .unwrap();
    let run = sb.configured().args(["run", "--json", "--node", "n1", "--", "echo trusted"]).run().success();
    assert_eq!(run.json()["node"], "n1");
    assert!(std::fs::read_to_string(&cluster.known_hosts).unwrap().contains("ssh-ed25519"));
}

#[test]
fn master_persists_across_processes() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "", "");
    let first = sb.configured().args(["run", "--json", "--node", "n1", "--", "true"]).run().success().json();
    let second = sb.configured().args(["run", "--json", "--node", "n1", "--", "true"]).run().success().json();
    assert_eq!(first["node"], "n1");
    // One master process serves both runs: exactly one `ssh ... -M` for this runtime dir.
    let run_dir = sb.path().join("run").display().to_string();
    let masters = all_processes_matching(&run_dir).into_iter().filter(|(_, c)| c.contains(" -M ")).count();
    assert_eq!(masters, 1, "expected one persistent master");
    assert_eq!(second["node"], "n1");
    stop_masters(sb.path());
}

/// A sleep duration no other process on the machine uses, so a test can
/// find exactly its own sleeps in the process table.
fn unique_sleep(salt: u32) -> String {
    format!("300.{salt:03}{}", std::process::id())
}

#[test]
fn timeout_kills_the_whole_remote_process_group() {
    let (sb, _cluster) = Cluster::with_sandbox(1, "", "");
    let (bg, fg) = (unique_sleep(1), unique_sleep(2));
    let started = Instant::now();
    // A background grandchild and a foreground sleep: both must die.
    let cmd = format!("sh -c 'sleep {bg}; echo never' & sleep {fg}");
    let run = sb.configured().args(["run", "--timeout", "1", "--node", "n1", "--", &cmd]).run().expect_code(124);
    assert!(run.stderr().contains("timed out"), "{}", run.stderr());
    assert!(started.elapsed() < Duration::from_secs(60));
    let leftovers =
        || -> Vec<_> { [&bg, &fg].iter().flat_map(|s| all_processes_matching(&format!("sleep {s}"))).collect() };
    support::eventually(Duration::from_secs(10), || leftovers().is_empty());
    let left = leftovers();
    assert!(left.is_empty(), "processes left on the node: {left:?}");
    stop_masters(sb.path());
}

#[test]
fn ctrl_c_kills_the_remote_command() {
    let (sb, cluster) = Cluster::with_sandbox(1, "", "");
    let s = unique_sleep(3);
    let needle = format!("sleep {s}");
    let mut child = sb.configured().args(["run", "--node", "n1", "--", &format!("sleep {s}")]).cmd.spawn().unwrap();
    // Wait until the command itself runs on the node.
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.node("n1").processes_matching(&needle).iter().all(|(_, c)| !c.starts_with("sleep"))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(Instant::now() < deadline, "the command never started on n1");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    support::eventually(Duration::from_secs(10), || all_processes_matching(&needle).is_empty());
    let left = all_processes_matching(&needle);
    assert!(left.is_empty(), "processes left: {left:?}");
    stop_masters(sb.path());
}

#[test]
fn a_dead_master_is_replaced_when_the_node_comes_back() {
    let (sb, mut cluster) = Cluster::with_sandbox(1, "", "");
    sb.configured().args(["run", "--node", "n1", "--", "true"]).run().success();
    // The node restarts: its sessions die, and with them the persistent master.
    cluster.node_mut("n1").kill();
    cluster.node_mut("n1").restart();
    let v = sb.configured().args(["run", "--json", "--node", "n1", "--", "echo again"]).run().success().json();
    assert_eq!(v["node"], "n1", "{v}");
    assert_eq!(v["failed_attempts"].as_array().unwrap().len(), 0, "{v}");
    assert_eq!(v["stdout"]["text"], "again\n");
    stop_masters(sb.path());
}

#[test]
fn probe_measures_every_node_and_records_the_dead_one() {
    let (sb, mut cluster) = Cluster::with_sandbox(2, "", "");
    cluster.node_mut("n2").kill();
    let started = Instant::now();
    let run = sb.configured().args(["nodes", "--probe", "--json"]).run().expect_code(1);
    // Measured during this run: its age (whole seconds) is at most the run's length, rounded up.
    let fresh = started.elapsed().as_secs() + 1;
    let v = run.json();
    let node = |name: &str| v["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).unwrap().clone();
    assert_eq!(node("n1")["answered"], true);
    assert!(node("n1")["load"].as_f64().is_some_and(|l| l >= 0.0));
    assert!(node("n1")["load_age_secs"].as_u64().is_some_and(|age| age <= fresh), "{}", node("n1"));
    assert_eq!(node("n2")["answered"], false);
    assert!(node("n2")["error"].as_str().unwrap().contains("127.0.0."), "{}", node("n2"));
    // The table shows the same.
    let table = sb.configured().args(["nodes"]).run().success().stdout();
    assert!(table.lines().any(|l| l.starts_with("n2") && l.contains("DOWN")), "{table}");
    stop_masters(sb.path());
}

//! The test harness itself: real sshd nodes answer plain `ssh` with the
//! pinned host key and the generated client key, and die with the cluster.

use crate::util as support;

use std::process::Command;

use support::sshd::{Cluster, all_processes_matching};

fn ssh(cluster: &Cluster, node: &str, command: &str) -> std::process::Output {
    let n = cluster.node(node);
    Command::new("ssh")
        .arg("-F")
        .arg(&cluster.ssh_config)
        .arg("-i")
        .arg(&cluster.client_key)
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", cluster.known_hosts.display()))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=2"])
        .arg("-p")
        .arg(n.port.to_string())
        .arg(n.addr.to_string())
        .arg(command)
        .output()
        .unwrap()
}

#[test]
fn nodes_answer_with_pinned_keys_and_are_cleaned_up() {
    let cluster = Cluster::start(2);
    let out = ssh(&cluster, "n1", "echo hello-from-n1");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello-from-n1",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ssh(&cluster, "n2", "true").status.success());
    let config = cluster.dir.path().join("n1/sshd_config").display().to_string();
    assert!(!all_processes_matching(&config).is_empty());
    drop(cluster);
    assert!(all_processes_matching(&config).is_empty(), "sshd left behind");
}

#[test]
fn stopped_node_times_out_and_killed_node_refuses() {
    let mut cluster = Cluster::start(2);
    cluster.node("n1").stop();
    let out = ssh(&cluster, "n1", "true");
    assert_eq!(out.status.code(), Some(255));
    cluster.node("n1").resume();
    assert!(ssh(&cluster, "n1", "true").status.success());
    cluster.node_mut("n2").kill();
    assert_eq!(ssh(&cluster, "n2", "true").status.code(), Some(255));
    cluster.node_mut("n2").restart();
    assert!(ssh(&cluster, "n2", "true").status.success());
}

//! `distex nodes --probe`: ask every node for its load, in parallel, with
//! a short timeout, and record what was seen in the node cache.

use openssh::Stdio;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ssh;
use crate::config::{Config, Node};
use crate::state::NodeStates;

/// Prints the 1-minute load and the CPU count, one per line: Linux reads
/// /proc/loadavg and nproc, macOS asks sysctl.
pub(crate) const LOAD_SCRIPT: &str = "if [ -r /proc/loadavg ]; then read l rest < /proc/loadavg; echo \"$l\"; \
nproc 2>/dev/null || getconf _NPROCESSORS_ONLN; else sysctl -n vm.loadavg | tr -d '{}' | awk '{print $1}'; \
sysctl -n hw.ncpu; fi";

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct ProbeResult {
    pub(crate) node: String,
    pub(crate) answered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) load1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cores: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) elapsed_ms: u64,
}

/// Parses the two lines [`LOAD_SCRIPT`] prints.
pub(crate) fn parse_load(text: &str) -> Option<(f64, u32)> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let load = lines.next()?.parse::<f64>().ok().filter(|l| l.is_finite() && *l >= 0.0)?;
    let cores = lines.next()?.parse::<u32>().ok().filter(|c| *c > 0)?;
    Some((load, cores))
}

/// Probes every node concurrently and records the results.
pub(crate) async fn probe_all(config: &Config) -> Vec<ProbeResult> {
    let mut set = tokio::task::JoinSet::new();
    for (i, node) in config.nodes.iter().enumerate() {
        let node = node.clone();
        set.spawn(async move { (i, super::node::probe(&node).await) });
    }
    let mut results: Vec<(usize, ProbeResult)> = set.join_all().await;
    results.sort_by_key(|(i, _)| *i);
    let results: Vec<ProbeResult> = results.into_iter().map(|(_, r)| r).collect();
    for r in &results {
        let _ = match (r.answered, r.load1, r.cores) {
            (true, Some(l), Some(c)) => NodeStates::record_answer(&r.node, Some((l, c))),
            (true, _, _) => NodeStates::record_answer(&r.node, None),
            (false, _, _) => NodeStates::record_failure(&r.node, r.error.as_deref().unwrap_or("no answer")),
        };
    }
    results
}

pub(crate) async fn probe_one(node: &Node) -> ProbeResult {
    let started = std::time::Instant::now();
    let limit = Duration::from_secs(node.connect_timeout + 3);
    let outcome = tokio::time::timeout(limit, async {
        let master = ssh::connect(node).await.map_err(|e| e.message)?;
        let mut cmd = master.session().raw_command(format!("sh -c {}", super::remote::sh_quote(LOAD_SCRIPT)));
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        let out = cmd.output().await.map_err(|e| format!("probe command failed: {e}"))?;
        Ok::<_, String>(parse_load(&String::from_utf8_lossy(&out.stdout)))
    })
    .await
    .unwrap_or_else(|_| Err(format!("no answer within {}s", limit.as_secs())));
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(load) => ProbeResult {
            node: node.name.clone(),
            answered: true,
            load1: load.map(|l| l.0),
            cores: load.map(|l| l.1),
            error: load.is_none().then(|| "could not read the load (unexpected output)".to_string()),
            elapsed_ms,
        },
        Err(e) => ProbeResult {
            node: node.name.clone(),
            answered: false,
            load1: None,
            cores: None,
            error: Some(e),
            elapsed_ms,
        },
    }
}

//! `distex nodes --probe`: ask every node for its load, its system (`uname
//! -s`, `uname -m`) and which of the programs the rules name are on its
//! user's PATH — all in one ssh command per node, in parallel, with a short
//! timeout — and record what was seen in the node cache, where routing
//! reads it (a node lacking the matched program is skipped). A remote
//! `distex run` learns the same facts after its command finished, over the
//! master it already holds, when the cache has none or they are stale
//! ([`learn_platform`]).

use openssh::Stdio;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ssh::{self, Master};
use crate::config::{Config, Node};
use crate::state::{NodeStates, Platform};

/// Prints the 1-minute load and the CPU count, one per line: Linux reads
/// /proc/loadavg and nproc, macOS asks sysctl.
pub(crate) const LOAD_SCRIPT: &str = "if [ -r /proc/loadavg ]; then read l rest < /proc/loadavg; echo \"$l\"; \
nproc 2>/dev/null || getconf _NPROCESSORS_ONLN; else sysctl -n vm.loadavg | tr -d '{}' | awk '{print $1}'; \
sysctl -n hw.ncpu; fi";

/// The probe's shell script: [`LOAD_SCRIPT`]'s two lines, then `os NAME`,
/// `arch NAME`, and `have P` or `lack P` for each program. Each name is
/// quoted; `python`, `pip` and `make` also count as `python3`, `pip3`, `gmake`.
pub(crate) fn probe_script(programs: &[String]) -> String {
    let mut script = format!("{LOAD_SCRIPT}; echo \"os $(uname -s)\"; echo \"arch $(uname -m)\"");
    for program in programs {
        let quoted = crate::route::sh_quote(program);
        let also = match program.as_str() {
            "python" => " || command -v python3 >/dev/null 2>&1",
            "pip" => " || command -v pip3 >/dev/null 2>&1",
            "make" => " || command -v gmake >/dev/null 2>&1",
            _ => "",
        };
        script.push_str(&format!(
            "; if command -v {quoted} >/dev/null 2>&1{also}; then echo have {quoted}; else echo lack {quoted}; fi"
        ));
    }
    script
}

/// Reads the `os`, `arch`, `have` and `lack` lines of [`probe_script`]'s output.
pub(crate) fn parse_platform(text: &str, checked_at: u64) -> Option<Platform> {
    let mut platform = Platform { checked_at, ..Platform::default() };
    for line in text.lines() {
        match line.trim().split_once(' ') {
            Some(("os", v)) => platform.os = v.trim().to_string(),
            Some(("arch", v)) => platform.arch = v.trim().to_string(),
            Some(("have", v)) => platform.programs.push(v.trim().to_string()),
            Some(("lack", v)) => platform.missing.push(v.trim().to_string()),
            _ => {}
        }
    }
    (!platform.os.is_empty() && !platform.arch.is_empty()).then_some(platform)
}

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
    /// System and tools, when the node answered with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) platform: Option<Platform>,
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
    let script = probe_script(&crate::route::rule_programs(&config.rules));
    let mut set = tokio::task::JoinSet::new();
    for (i, node) in config.nodes.iter().enumerate() {
        let node = node.clone();
        let script = script.clone();
        set.spawn(async move { (i, super::node::probe(&node, &script).await) });
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
        if let Some(platform) = &r.platform {
            let _ = NodeStates::record_platform(&r.node, platform.clone());
        }
    }
    results
}

pub(crate) async fn probe_one(node: &Node, script: &str) -> ProbeResult {
    let started = std::time::Instant::now();
    let limit = Duration::from_secs(node.connect_timeout + 3);
    let outcome = tokio::time::timeout(limit, async {
        let master = ssh::connect(node).await.map_err(|e| e.message)?;
        let text = run_script(&master, script).await?;
        Ok::<_, String>((parse_load(&text), parse_platform(&text, crate::state::now_secs())))
    })
    .await
    .unwrap_or_else(|_| Err(format!("no answer within {}s", limit.as_secs())));
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok((load, platform)) => ProbeResult {
            node: node.name.clone(),
            answered: true,
            load1: load.map(|l| l.0),
            cores: load.map(|l| l.1),
            error: load.is_none().then(|| "could not read the load (unexpected output)".to_string()),
            platform,
            elapsed_ms,
        },
        Err(e) => ProbeResult {
            node: node.name.clone(),
            answered: false,
            load1: None,
            cores: None,
            error: Some(e),
            platform: None,
            elapsed_ms,
        },
    }
}

/// Runs the probe script on the node over an open master (one more
/// session on it, no new handshake) and returns what it printed.
async fn run_script(master: &Master, script: &str) -> Result<String, String> {
    let mut cmd = master.session().raw_command(format!("sh -c {}", crate::route::sh_quote(script)));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let out = cmd.output().await.map_err(|e| format!("probe command failed: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A node's platform facts older than this are learned again by its next
/// remote run.
const PLATFORM_MAX_AGE_SECS: u64 = 24 * 3600;

/// How long a run waits for the platform answer before giving up on it.
const LEARN_LIMIT: Duration = Duration::from_secs(3);

/// Whether the cache should learn `node`'s platform again: never learned,
/// older than a day, or silent on a program the rules now name.
fn platform_stale(node: &str, programs: &[String]) -> bool {
    let states = NodeStates::load();
    let Some(platform) = states.get(node).and_then(|h| h.platform.as_ref()) else {
        return true;
    };
    let age = crate::state::now_secs().saturating_sub(platform.checked_at);
    let unknown = |p: &String| !platform.programs.contains(p) && !platform.missing.contains(p);
    age > PLATFORM_MAX_AGE_SECS || programs.iter().any(unknown)
}

/// Called by a remote run after its command finished on `node`: when the
/// node cache's platform for it is missing or stale, runs the probe script
/// over the master the run already holds (bounded by [`LEARN_LIMIT`]) and
/// records the answer. Best effort: any failure leaves the cache as it was
/// and is reported nowhere; it never changes the run's outcome.
pub(crate) async fn learn_platform(config: &Config, node: &Node, master: &Master) {
    let programs = crate::route::rule_programs(&config.rules);
    if !platform_stale(&node.name, &programs) {
        return;
    }
    let script = probe_script(&programs);
    let Ok(Ok(text)) = tokio::time::timeout(LEARN_LIMIT, run_script(master, &script)).await else {
        return;
    };
    if let Some(platform) = parse_platform(&text, crate::state::now_secs()) {
        let _ = NodeStates::record_platform(&node.name, platform);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_script_runs_in_a_real_shell_and_its_output_parses() {
        let programs = vec!["sh".to_string(), "distex-no-such-tool".to_string(), "it's odd".to_string()];
        let out = std::process::Command::new("sh").arg("-c").arg(probe_script(&programs)).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(parse_load(&text).is_some(), "{text}");
        let platform = parse_platform(&text, 7).unwrap();
        assert_eq!(platform.os, "Linux");
        assert_eq!(platform.programs, ["sh"]);
        assert_eq!(platform.missing, ["distex-no-such-tool", "it's odd"]);
        assert_eq!(platform.checked_at, 7);
    }
}

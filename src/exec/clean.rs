//! `distex clean [--remote]`: remove what distex leaves behind.
//!
//! * **SSH masters**: every persistent master under the runtime directory
//!   is asked to exit (`ssh -S SOCKET -O exit`), then its directory and lock
//!   file are removed. Only entries shaped like distex's own
//!   (`<node>-<8 hex>/`, `<node>-<8 hex>.lock`, openssh's `.ssh-connection*`
//!   leftovers) are touched.
//! * **State**: the node cache and the hook log (and their locks and
//!   rotations) in the state directory; nothing else there.
//! * **Mirrors** (`--remote` only): on every node, over SSH, each directory
//!   directly under the node's `workdir` whose name has the shape of a
//!   project mirror (`<name>-<8 hex digits>`, see
//!   [`crate::exec::sync::Project::mirror`]). A workdir that is the home
//!   directory itself or `/` is refused: mirrors are only removed from a
//!   directory distex owns.
//!
//! Mirrors go first (they need the masters), then the masters, then state.
//! A node that cannot be reached is reported and the rest still cleaned.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, Node};
use crate::exec::ssh;
use crate::route::sh_quote;

/// State files distex writes (prefixes: rotations and temporary copies too).
const STATE_PREFIXES: &[&str] = &["nodes.json", "nodes.lock", "hook.log"];

/// What `distex clean` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct CleanReport {
    /// SSH master directories removed (their masters were asked to exit first).
    pub(crate) masters: Vec<PathBuf>,
    /// State files removed.
    pub(crate) state: Vec<PathBuf>,
    /// Per node, with `--remote`.
    pub(crate) nodes: Vec<NodeClean>,
}

/// What was removed on one node.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NodeClean {
    pub(crate) node: String,
    /// Mirror directories removed, as the node names them (home-relative unless absolute).
    pub(crate) removed: Vec<String>,
    /// Why the node could not be cleaned (unreachable, refused workdir...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl CleanReport {
    /// True when every node asked for was cleaned.
    pub(crate) fn complete(&self) -> bool {
        self.nodes.iter().all(|n| n.error.is_none())
    }
}

/// Cleans up: the nodes' mirrors when `remote`, then masters and state here.
pub(crate) fn clean(config: &Config, remote: bool) -> std::io::Result<CleanReport> {
    let mut report = CleanReport::default();
    if remote {
        let runtime = crate::exec::runtime()?;
        report.nodes = runtime.block_on(clean_nodes(&config.nodes));
    }
    report.masters = stop_masters(&crate::state::runtime_dir());
    report.state = remove_state(&crate::state::state_dir());
    Ok(report)
}

// --- mirrors on the nodes ------------------------------------------------------

async fn clean_nodes(nodes: &[Node]) -> Vec<NodeClean> {
    let mut set = tokio::task::JoinSet::new();
    for (i, node) in nodes.iter().enumerate() {
        let node = node.clone();
        set.spawn(async move { (i, clean_node(&node).await) });
    }
    let mut results = set.join_all().await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

async fn clean_node(node: &Node) -> NodeClean {
    let outcome = match mirror_script(&node.workdir) {
        Err(refused) => Err(refused),
        Ok(script) => run_on(node, script).await,
    };
    match outcome {
        Ok(stdout) => {
            NodeClean { node: node.name.clone(), removed: stdout.lines().map(String::from).collect(), error: None }
        }
        Err(error) => NodeClean { node: node.name.clone(), removed: vec![], error: Some(error) },
    }
}

/// Runs `script` with `sh -c` on the node (here, for a Slurm node
/// without a login `host`: its workdir is on this machine); its stdout, or
/// why it failed.
async fn run_on(node: &Node, script: String) -> Result<String, String> {
    let out = if node.ssh_host().is_none() {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg(&script).stdin(std::process::Stdio::null());
        cmd.output().await.map_err(|e| format!("cannot run the clean-up for {}: {e}", node.name))?
    } else {
        let master = ssh::connect(node).await.map_err(|e| e.message)?;
        let mut cmd = master.session().raw_command(format!("sh -c {}", sh_quote(&script)));
        cmd.stdin(openssh::Stdio::null()).stdout(openssh::Stdio::piped()).stderr(openssh::Stdio::piped());
        cmd.output().await.map_err(|e| format!("cannot run the clean-up on {}: {e}", node.name))?
    };
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("removing mirrors failed: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The shell script that removes the mirrors under `workdir` and prints each
/// one it removed; or why this workdir is refused.
pub(crate) fn mirror_script(workdir: &str) -> Result<String, String> {
    let dir = workdir.trim_start_matches("~/").trim_end_matches('/');
    if dir.is_empty() || matches!(dir, "~" | "." | "/" | "$HOME") {
        return Err(format!(
            "workdir {workdir:?} is not a directory of distex's own; set the node's workdir \
             (default .cache/distex/work) to clean its mirrors"
        ));
    }
    let hex = "[0-9a-f]".repeat(8);
    // `cd` first: a relative workdir is relative to the home directory, as for runs.
    Ok(format!(
        "cd || exit 1; w={dir}; [ -d \"$w\" ] || exit 0; \
         for d in \"$w\"/*-{hex}; do [ -d \"$d\" ] && [ ! -L \"$d\" ] || continue; \
         rm -rf -- \"$d\" || exit 1; printf '%s\\n' \"$d\"; done; rmdir -- \"$w\" 2>/dev/null; exit 0",
        dir = sh_quote(dir),
    ))
}

// --- here ------------------------------------------------------------------------

/// Asks every master under `runtime` to exit and removes distex's entries;
/// returns the master directories removed.
fn stop_masters(runtime: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(runtime) else { return removed };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && (is_master_name(&name) || name.starts_with(".ssh-connection")) {
            let socket = path.join("master");
            if socket.exists() {
                stop_master(&socket);
            }
            if std::fs::remove_dir_all(&path).is_ok() {
                removed.push(path);
            }
        } else if name.strip_suffix(".lock").is_some_and(is_master_name) {
            // A master's start-up lock: part of the master, not reported apart.
            let _ = std::fs::remove_file(&path);
        }
    }
    let _ = std::fs::remove_dir(runtime);
    removed.sort();
    removed
}

/// `<node>-<8 hex>`, as [`ssh::master_dir`] names a master's directory.
fn is_master_name(name: &str) -> bool {
    name.rsplit_once('-')
        .is_some_and(|(node, hash)| !node.is_empty() && hash.len() == 8 && hash.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `ssh -S SOCKET -O exit`: the master closes its connection and exits.
fn stop_master(socket: &Path) {
    let _ = std::process::Command::new("ssh")
        .arg("-S")
        .arg(socket)
        .args(["-O", "exit", "distex-master"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Removes distex's own state files from `dir`.
fn remove_state(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return removed };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = STATE_PREFIXES.iter().any(|p| name.starts_with(p));
        if ours && entry.file_type().is_ok_and(|t| t.is_file()) && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
    removed.sort();
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_names_are_node_dash_eight_hex() {
        assert!(is_master_name("n1-0a1b2c3d"));
        assert!(is_master_name("mac-pro-ffffffff"));
        assert!(!is_master_name("n1-0a1b2c3"));
        assert!(!is_master_name("-0a1b2c3d"));
        assert!(!is_master_name("notes"));
    }

    #[test]
    fn a_home_or_root_workdir_is_refused() {
        for dir in ["", "~", "~/", ".", "/", "$HOME"] {
            assert!(mirror_script(dir).is_err(), "{dir:?}");
        }
        let script = mirror_script("~/.cache/distex/work").unwrap();
        assert!(script.contains("w=.cache/distex/work;"), "{script}");
        assert!(script.contains("/*-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]"), "{script}");
    }

    #[test]
    fn a_workdir_with_quotes_stays_one_word() {
        let script = mirror_script("work'; rm -rf /; '").unwrap();
        assert!(script.contains(r"w='work'\''; rm -rf /; '\'''"), "{script}");
    }
}

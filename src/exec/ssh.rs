//! One persistent, multiplexed SSH master per node (through the `openssh` crate).
//!
//! The master is an `ssh -M` process with `ControlPersist` set to an idle
//! timeout, so it outlives the `distex` process that started it: the next
//! `distex run` finds its control socket under [`state::runtime_dir`] and
//! opens a session over it without a new handshake (a few milliseconds
//! instead of a full key exchange).
//!
//! Layout, per node: `RUNTIME/<node>-<hash>/master` (the socket) and `log`
//! (the master's own ssh log, read when a connection fails). The hash
//! covers everything that changes the connection (host, user, port, keys,
//! known_hosts...), so editing the config never reuses a stale master.
//! Starting a master takes a per-node lock, so parallel distex processes
//! share one master instead of racing to create several.
//!
//! [`state::runtime_dir`]: crate::state::runtime_dir

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};

use crate::config::{HostKeyChecking, Node};
use crate::state::{checked_runtime_dir, create_file, runtime_dir};

/// How long an idle master stays up after its last session closed.
pub(crate) const CONTROL_PERSIST: Duration = Duration::from_secs(600);

/// Why a node could not be reached. Always a transport problem: never the
/// result of the command itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TransportError {
    pub(crate) node: String,
    pub(crate) message: String,
    pub(crate) fault: Fault,
}

/// What kind of transport problem: only [`Fault::Unreachable`] lets the
/// command move to another target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The node is down, slow, or refused us: try the next target.
    Unreachable,
    /// The node's host key is not the one known_hosts holds: a security
    /// event. The command runs nowhere.
    HostKeyChanged,
    /// Something on this machine is wrong (distex's runtime directory):
    /// no other node would fare better.
    Local,
}

impl TransportError {
    /// A node that cannot be reached.
    pub(crate) fn unreachable(node: &str, message: String) -> Self {
        TransportError { node: node.to_string(), message, fault: Fault::Unreachable }
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.node, self.message)
    }
}

/// A live master connection to one node.
pub(crate) struct Master {
    session: Session,
    /// The same master, spoken to directly: its control socket gets the
    /// mux requests (and our pipes' file descriptors) from distex itself,
    /// with no `ssh` client process per command (see [`Master::mux`]).
    mux: Session,
    dir: PathBuf,
    /// True when an already running master was reused (no handshake).
    pub(crate) reused: bool,
}

impl Master {
    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    /// The master through its mux protocol, without an `ssh` client: a
    /// command opened here is a new session channel of the master, exactly
    /// as `ssh -S socket` would open it (no tty, no forwarding, no
    /// environment sent), but without starting that client's process -
    /// most of what a multiplexed `ssh` costs per command. distex's own
    /// pipes are handed to the master, so when distex dies they close and
    /// the node sees the end of stdin as it would with a client.
    pub(crate) fn mux(&self) -> &Session {
        &self.mux
    }

    /// The control socket, for tools that speak ssh themselves (rsync -e).
    pub(crate) fn control_socket(&self) -> PathBuf {
        self.dir.join("master")
    }

    /// Stops a master that failed us (asks it to exit, if it still runs)
    /// and removes its socket, so that the next connect starts a fresh one.
    pub(crate) async fn forget(self) {
        let dir = self.dir.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.session.close()).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Finds the node's running master or starts one.
pub(crate) async fn connect(node: &Node) -> Result<Master, TransportError> {
    let dir = master_dir(node);
    if alive(&dir.join("master")) && checked_runtime_dir().is_ok() {
        return Ok(resume(dir, true));
    }
    let runtime = checked_runtime_dir().map_err(|message| TransportError {
        node: node.name.clone(),
        message,
        fault: Fault::Local,
    })?;
    let lock_path = dir.with_extension("lock");
    let lock =
        create_file(&lock_path).map_err(|e| fail(node, format!("cannot create {}: {e}", lock_path.display())))?;
    let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
        .await
        .map_err(|e| fail(node, e.to_string()))?
        .map_err(|e| fail(node, format!("cannot lock {}: {e}", lock_path.display())))?;
    // Someone else may have started it while we waited for the lock.
    if alive(&dir.join("master")) {
        return Ok(resume(dir, true));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let temp = builder(node, &runtime).launch_master(&node.host).await.map_err(|e| explain(node, &e))?;
    #[allow(deprecated)] // `keep` is the newer name; openssh pins an older tempfile API surface.
    let temp_path = temp.into_path();
    std::fs::rename(&temp_path, &dir)
        .map_err(|e| fail(node, format!("cannot move the control socket into {}: {e}", dir.display())))?;
    drop(lock);
    Ok(resume(dir, false))
}

fn resume(dir: PathBuf, reused: bool) -> Master {
    let (socket, log) = (dir.join("master").into_boxed_path(), dir.join("log").into_boxed_path());
    let session = Session::resume(socket.clone(), Some(log.clone()));
    let mux = Session::resume_mux(socket, Some(log));
    Master { session, mux, dir, reused }
}

/// A master is alive when something accepts connections on its socket.
/// (A master that exited leaves its socket file behind.)
fn alive(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
}

fn builder(node: &Node, runtime: &Path) -> SessionBuilder {
    let mut b = SessionBuilder::default();
    b.control_directory(runtime)
        .control_persist(ControlPersist::IdleFor(
            std::num::NonZeroUsize::new(CONTROL_PERSIST.as_secs() as usize).expect("non-zero"),
        ))
        .known_hosts_check(match node.host_key_checking {
            HostKeyChecking::Strict => KnownHosts::Strict,
            HostKeyChecking::AcceptNew => KnownHosts::Add,
        })
        .connect_timeout(Duration::from_secs(node.connect_timeout))
        .server_alive_interval(Duration::from_secs(5));
    if let Some(user) = &node.user {
        b.user(user.clone());
    }
    if let Some(port) = node.port {
        b.port(port);
    }
    if let Some(key) = &node.identity_file {
        b.keyfile(expand_home(key));
    }
    if let Some(file) = &node.ssh_config {
        b.config_file(expand_home(file));
    }
    if let Some(file) = &node.known_hosts {
        b.user_known_hosts_file(expand_home(file));
    }
    b
}

/// `~/x` in a config path means the user's home.
fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// `RUNTIME/<name>-<hash of the connection parameters>`.
pub(crate) fn master_dir(node: &Node) -> PathBuf {
    let params = format!(
        "{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        node.host, node.user, node.port, node.identity_file, node.ssh_config, node.known_hosts, node.host_key_checking
    );
    let safe: String = node
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .take(24)
        .collect();
    runtime_dir().join(format!("{safe}-{:08x}", fnv1a(params.as_bytes()) as u32))
}

/// A small, stable hash (FNV-1a): enough to tell configurations apart.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

fn fail(node: &Node, message: String) -> TransportError {
    TransportError::unreachable(&node.name, message)
}

/// Turns an ssh failure into an error that says what to do.
fn explain(node: &Node, error: &openssh::Error) -> TransportError {
    let text = error.to_string();
    let detail = std::error::Error::source(error).map(|s| s.to_string()).unwrap_or_default();
    let all = format!("{text} {detail}");
    if all.contains("IDENTIFICATION HAS CHANGED") || all.contains("has changed and you have requested strict") {
        return TransportError {
            node: node.name.clone(),
            message: host_key_changed(node, &all),
            fault: Fault::HostKeyChanged,
        };
    }
    fail(node, explain_unreachable(node, &text, &detail, &all))
}

/// The security error for a node whose host key changed: both
/// fingerprints, and how to accept the new key once it is verified.
fn host_key_changed(node: &Node, ssh_said: &str) -> String {
    let file =
        node.known_hosts.as_ref().map_or_else(|| expand_home(Path::new("~/.ssh/known_hosts")), |p| expand_home(p));
    // known_hosts names non-default ports as `[host]:port`.
    let entry = match node.port {
        Some(p) if p != 22 => format!("[{}]:{p}", node.host),
        _ => node.host.clone(),
    };
    let fingerprint = regex::Regex::new(r"SHA256:[A-Za-z0-9+/=]+").expect("valid regex");
    let presented = fingerprint.find(ssh_said).map_or("(not shown by ssh)".to_string(), |m| m.as_str().to_string());
    let known = std::process::Command::new("ssh-keygen")
        .args(["-l", "-F", &entry, "-f"])
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .and_then(|o| fingerprint.find(&String::from_utf8_lossy(&o.stdout)).map(|m| m.as_str().to_string()))
        .unwrap_or_else(|| "(unreadable)".to_string());
    format!(
        "SECURITY: the host key of node {} ({entry}) has CHANGED: {} holds {known}, the host now presents {presented}. \
         This can be an attack (or the node was reinstalled). The command was not run anywhere. \
         If the change is expected, verify the new key out of band, then remove the old one with \
         `ssh-keygen -R '{entry}' -f {}` and connect again",
        node.name,
        file.display(),
        file.display()
    )
}

/// The sentence for a node that cannot be reached.
fn explain_unreachable(node: &Node, text: &str, detail: &str, all: &str) -> String {
    let target = match node.port {
        Some(p) => format!("{}:{p}", node.host),
        None => node.host.clone(),
    };
    if all.contains("Host key verification failed") || all.contains("host key") && all.contains("verif") {
        let file = node.known_hosts.as_ref().map_or("~/.ssh/known_hosts".to_string(), |p| p.display().to_string());
        return format!(
            "host key of {target} is not trusted (not in {file}, or changed). Verify it, then add it \
             (`ssh-keyscan{} {} >> {file}`), or set host_key_checking = \"accept-new\" for node {} in the config",
            node.port.map_or(String::new(), |p| format!(" -p {p}")),
            node.host,
            node.name
        );
    }
    if all.contains("timed out") || all.contains("Timeout") {
        return format!("connecting to {target} timed out after {}s (connect_timeout)", node.connect_timeout);
    }
    if all.contains("Permission denied") {
        return format!(
            "{target} refused the SSH key (Permission denied); check user and identity_file for node {}",
            node.name
        );
    }
    let detail = detail.trim();
    if detail.is_empty() {
        format!("cannot connect to {target}: {text}")
    } else {
        format!("cannot connect to {target}: {text}: {detail}")
    }
}

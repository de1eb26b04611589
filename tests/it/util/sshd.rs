//! Real SSH nodes for integration tests.
//!
//! [`Cluster::start`] launches one Debian `sshd` per node, each on its own
//! loopback address (127.0.0.2, 127.0.0.3, ...) and a free port, with its
//! own host key, an `authorized_keys` holding a freshly generated client
//! key, and a pinned `known_hosts`. Everything lives in one temporary
//! directory; [`Cluster::config`] writes a `cluster.toml` pointing at the
//! nodes (user, port, identity_file, known_hosts, an empty ssh_config so
//! the developer's own `~/.ssh/config` never leaks in, and a per-node
//! `workdir` inside the temp dir, because the "remote" side is this same
//! machine).
//!
//! Every session on a node sees `DISTEX_TEST_NODE=<name>` (sshd's
//! `SetEnv`), so a test can tell where a command ran, and `HOME` set to the
//! node's own empty home directory: the login shell sshd starts reads that
//! directory's rc files, not the real user's (whose `~/.bashrc` may be slow
//! or take locks), so nodes are hermetic.
//!
//! Failure injection: [`SshNode::kill`] kills the listener *and* every
//! session process it forked (so an existing multiplexed master dies too),
//! [`SshNode::stop`] freezes the listener with SIGSTOP so new connections
//! hang until `ConnectTimeout`, [`SshNode::resume`] thaws it;
//! [`SshNode::cut`] kills only the sshd processes, leaving the commands
//! they ran orphaned on the node, as a dying sshd or dropped connection would;
//! [`Cluster::change_host_key`] makes known_hosts pin another key for a node
//! (what a man in the middle, or a reinstalled node, looks like). Dropping the
//! cluster kills every sshd it started, so no server outlives a test.

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where Debian installs the server (sshd refuses to start from a relative path).
const SSHD: &str = "/usr/sbin/sshd";

/// One running sshd.
pub(crate) struct SshNode {
    pub(crate) name: String,
    pub(crate) addr: Ipv4Addr,
    pub(crate) port: u16,
    /// The node's own directory (host key, sshd_config, log).
    pub(crate) dir: PathBuf,
    /// The directory distex uses as this node's `workdir`.
    pub(crate) workdir: PathBuf,
    child: Option<Child>,
}

/// A set of nodes sharing a client key and a known_hosts file.
pub(crate) struct Cluster {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) nodes: Vec<SshNode>,
    pub(crate) client_key: PathBuf,
    pub(crate) known_hosts: PathBuf,
    pub(crate) ssh_config: PathBuf,
}

/// Spreads concurrent tests over different loopback addresses.
static NEXT_ADDR: AtomicU32 = AtomicU32::new(0);

impl Cluster {
    /// Starts `n` nodes named n1, n2, ...
    /// `n` nodes, and a sandbox whose config (`Cluster::config` with
    /// `node_extra` and `tail`) points at them.
    pub(crate) fn with_sandbox(n: usize, node_extra: &str, tail: &str) -> (super::Sandbox, Cluster) {
        let cluster = Cluster::start(n);
        let sandbox = super::Sandbox::new();
        sandbox.write_config(&cluster.config(node_extra, tail));
        (sandbox, cluster)
    }

    pub(crate) fn start(n: usize) -> Cluster {
        ensure_privsep_dir();
        let dir = tempfile::Builder::new().prefix("dxssh").tempdir_in("/tmp").expect("temp dir");
        let client_key = dir.path().join("client_key");
        keygen(&client_key);
        let public = std::fs::read_to_string(client_key.with_extension("pub")).expect("client public key");
        let ssh_config = dir.path().join("ssh_config");
        std::fs::write(&ssh_config, "# empty: keeps ~/.ssh/config out of the tests\n").unwrap();
        let known_hosts = dir.path().join("known_hosts");
        let mut known = String::new();
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = format!("n{}", i + 1);
            let node_dir = dir.path().join(&name);
            std::fs::create_dir_all(&node_dir).unwrap();
            std::fs::write(node_dir.join("authorized_keys"), &public).unwrap();
            keygen(&node_dir.join("host_key"));
            std::fs::create_dir_all(node_dir.join("home")).unwrap();
            let workdir = node_dir.join("work");
            std::fs::create_dir_all(&workdir).unwrap();
            let mut node = SshNode { name, addr: pick_addr(), port: 0, dir: node_dir, workdir, child: None };
            node.launch();
            let host_pub = std::fs::read_to_string(node.dir.join("host_key.pub")).unwrap();
            let key: Vec<&str> = host_pub.split_whitespace().take(2).collect();
            known.push_str(&format!("[{}]:{} {}\n", node.addr, node.port, key.join(" ")));
            nodes.push(node);
        }
        std::fs::write(&known_hosts, known).unwrap();
        Cluster { dir, nodes, client_key, known_hosts, ssh_config }
    }

    pub(crate) fn node(&self, name: &str) -> &SshNode {
        self.nodes.iter().find(|n| n.name == name).expect("node exists")
    }

    pub(crate) fn node_mut(&mut self, name: &str) -> &mut SshNode {
        self.nodes.iter_mut().find(|n| n.name == name).expect("node exists")
    }

    /// Makes node `name` look like a man in the middle: known_hosts now
    /// pins a freshly generated key for its address, while the node keeps
    /// presenting its own (ssh then says the host key has CHANGED).
    pub(crate) fn change_host_key(&self, name: &str) {
        let node = self.node(name);
        let other = self.dir.path().join(format!("{name}_other_key"));
        keygen(&other);
        let fresh = std::fs::read_to_string(other.with_extension("pub")).expect("the other public key");
        let fresh: Vec<&str> = fresh.split_whitespace().take(2).collect();
        let entry = format!("[{}]:{} ", node.addr, node.port);
        let known = std::fs::read_to_string(&self.known_hosts).expect("known_hosts");
        assert!(known.lines().any(|l| l.starts_with(&entry)), "{name} is not in known_hosts");
        let rewritten: String = known
            .lines()
            .map(|l| if l.starts_with(&entry) { format!("{entry}{}\n", fresh.join(" ")) } else { format!("{l}\n") })
            .collect();
        std::fs::write(&self.known_hosts, rewritten).expect("rewrite known_hosts");
    }

    /// The `[[node]]` table for one node; `extra` is appended verbatim
    /// (e.g. `roles = ["builder"]\nslots = 2`).
    pub(crate) fn node_table(&self, node: &SshNode, extra: &str) -> String {
        format!(
            "[[node]]\nname = \"{name}\"\nhost = \"{addr}\"\nport = {port}\nuser = \"{user}\"\n\
             identity_file = \"{key}\"\nknown_hosts = \"{kh}\"\nssh_config = \"{cfg}\"\n\
             workdir = \"{work}\"\nos = \"linux\"\nconnect_timeout = 2\n{extra}\n",
            name = node.name,
            addr = node.addr,
            port = node.port,
            user = current_user(),
            key = self.client_key.display(),
            kh = self.known_hosts.display(),
            cfg = self.ssh_config.display(),
            work = node.workdir.display(),
        )
    }

    /// A whole `cluster.toml`: `[local]` (linux, no roles), every node with
    /// `node_extra`, then `tail` (rules...). The overload threshold is set
    /// out of reach so that the machine's real load (tests run in
    /// parallel) never changes a decision.
    pub(crate) fn config(&self, node_extra: &str, tail: &str) -> String {
        let mut text = String::from(
            "[local]\nname = \"here\"\nos = \"linux\"\nslots = 2\n\n[routing]\noverload_threshold = 1000.0\n\n",
        );
        for node in &self.nodes {
            text.push_str(&self.node_table(node, node_extra));
            text.push('\n');
        }
        text.push_str(tail);
        text
    }
}

impl SshNode {
    /// Starts (or restarts) sshd on this node's address; picks a free port
    /// the first time and keeps it afterwards.
    fn launch(&mut self) {
        for _attempt in 0..5 {
            if self.port == 0 || self.child.is_none() && !port_free(self.addr, self.port) {
                self.port = free_port(self.addr);
            }
            let config = self.dir.join("sshd_config");
            let mut f = std::fs::File::create(&config).unwrap();
            write!(
                f,
                "ListenAddress {addr}:{port}\nHostKey {dir}/host_key\nAuthorizedKeysFile {dir}/authorized_keys\n\
                 PidFile {dir}/sshd.pid\nPermitRootLogin prohibit-password\nPubkeyAuthentication yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 PrintMotd no\nPrintLastLog no\nMaxSessions 200\nMaxStartups 200\nLogLevel ERROR\n\
                 AcceptEnv LANG\nSetEnv DISTEX_TEST_NODE={name} HOME={dir}/home\n",
                name = self.name,
                addr = self.addr,
                port = self.port,
                dir = self.dir.display()
            )
            .unwrap();
            drop(f);
            let child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(self.dir.join("sshd.log")).unwrap())
                .spawn()
                .expect("start /usr/sbin/sshd (apt-get install openssh-server)");
            self.child = Some(child);
            if self.wait_listening() {
                return;
            }
            self.kill();
            self.port = 0;
        }
        panic!("sshd for {} did not start; see {}", self.name, self.dir.join("sshd.log").display());
    }

    /// Waits until this node's own sshd listens on its address and port.
    ///
    /// Answering a connection is not proof: the port was free when picked,
    /// but another process (another test binary on this machine) may bind it
    /// first, and then our sshd exits while theirs answers. So this waits
    /// for the listening socket to be one of our sshd's own descriptors.
    fn wait_listening(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let Some(child) = self.child.as_mut() else { return false };
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if listener_inode(self.addr, self.port).is_some_and(|inode| holds_socket(child.id(), inode)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The listener's pid, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills sshd and every session process it forked: existing
    /// connections (a multiplexed master included) drop at once.
    ///
    /// Sessions get SIGTERM first and a moment to exit: a login shell
    /// killed outright in the middle of its rc files can leave lock files
    /// behind in the real home directory (pyenv's rehash lock, for one),
    /// which would hang every later shell on this machine.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            let tree = descendants(pid);
            signal(pid, libc::SIGKILL);
            for &p in &tree {
                signal(p, libc::SIGCONT);
                signal(p, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            while tree.iter().any(|&p| alive(p)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            for p in tree {
                signal(p, libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }

    /// Kills this node's sshd - the listener and every sshd process serving
    /// a connection - but not the commands its sessions started: as when
    /// the node's sshd dies, every connection drops at once and the
    /// commands it ran are orphaned on the node (still running, their
    /// stdin at end of file, their stdout and stderr going nowhere).
    pub(crate) fn cut(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            let serving: Vec<i32> =
                descendants(pid).into_iter().filter(|&p| cmdline(p).is_some_and(|c| c.starts_with("sshd"))).collect();
            signal(pid, libc::SIGKILL);
            for p in serving {
                signal(p, libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }

    /// Freezes the listener (SIGSTOP): new connections are accepted by the
    /// kernel but never greeted, so clients hit their connect timeout.
    pub(crate) fn stop(&self) {
        if let Some(pid) = self.pid() {
            signal(pid as i32, libc::SIGSTOP);
        }
    }

    /// Thaws a node frozen by [`SshNode::stop`].
    pub(crate) fn resume(&self) {
        if let Some(pid) = self.pid() {
            signal(pid as i32, libc::SIGCONT);
        }
    }

    /// Starts sshd again after [`SshNode::kill`], on the same address and port.
    pub(crate) fn restart(&mut self) {
        self.launch();
    }

    /// Processes (pid, command line) whose command line contains `needle`,
    /// among the descendants of this node's sshd: what is still running "on
    /// the node".
    pub(crate) fn processes_matching(&self, needle: &str) -> Vec<(i32, String)> {
        let Some(pid) = self.pid() else { return vec![] };
        descendants(pid as i32)
            .into_iter()
            .filter_map(|p| cmdline(p).map(|c| (p, c)))
            .filter(|(_, c)| c.contains(needle))
            .collect()
    }
}

impl Drop for SshNode {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// Every process on the machine whose command line contains `needle`
/// (processes reparented to init escape [`SshNode::processes_matching`]).
pub(crate) fn all_processes_matching(needle: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| p != me)
        .filter_map(|p| cmdline(p).map(|c| (p, c)))
        .filter(|(_, c)| c.contains(needle))
        .collect()
}

/// Stops the persistent SSH masters distex started for a sandbox (they
/// would die with their sshd anyway; this makes it immediate).
pub(crate) fn stop_masters(sandbox: &Path) {
    let run_dir = sandbox.join("run").display().to_string();
    for (pid, cmd) in all_processes_matching(&run_dir) {
        if cmd.starts_with("ssh ") {
            signal(pid, libc::SIGTERM);
        }
    }
}

fn cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    Some(String::from_utf8_lossy(&raw).replace('\0', " ").trim().to_string())
}

fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// All processes below `root` in the process tree.
fn descendants(root: i32) -> Vec<i32> {
    let all: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|p| Some((p, parent(p)?)))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(all.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

fn alive(pid: i32) -> bool {
    // A zombie is as good as dead: its state letter is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) on a pid this test started.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "distex-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen (apt-get install openssh-client)");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

/// sshd insists on its privilege-separation directory.
fn ensure_privsep_dir() {
    let _ = std::fs::create_dir_all("/run/sshd");
}

fn pick_addr() -> Ipv4Addr {
    // 127.0.0.2 .. 127.0.0.250, spread by process and by call.
    let n = NEXT_ADDR.fetch_add(1, Ordering::SeqCst) + std::process::id() % 97;
    Ipv4Addr::new(127, 0, 0, 2 + (n % 248) as u8)
}

fn free_port(addr: Ipv4Addr) -> u16 {
    TcpListener::bind((addr, 0)).expect("bind loopback").local_addr().unwrap().port()
}

/// The inode of the TCP socket listening on `addr:port`, from
/// /proc/net/tcp (addresses there are hex, the IPv4 address in host order).
fn listener_inode(addr: Ipv4Addr, port: u16) -> Option<u64> {
    const LISTEN: &str = "0A";
    let local = format!("{:08X}:{port:04X}", u32::from_ne_bytes(addr.octets()));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&LISTEN))
            .then(|| fields.get(9)?.parse().ok())?
    })
}

/// Whether process `pid` has the socket with this inode open.
fn holds_socket(pid: u32, inode: u64) -> bool {
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()))
        })
        .unwrap_or(false)
}

fn port_free(addr: Ipv4Addr, port: u16) -> bool {
    TcpListener::bind((addr, port)).is_ok()
}

pub(crate) fn current_user() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
        let out = Command::new("id").arg("-un").output().expect("id -un");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

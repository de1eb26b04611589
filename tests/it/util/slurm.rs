//! A real Slurm cluster for integration tests, on this machine.
//!
//! [`SlurmCluster::start`] runs Debian's daemons as root without systemd,
//! everything in one temporary directory: `munged` with a fresh key on a
//! socket in that directory (0755, as munge requires), a generated
//! `slurm.conf` (127.0.0.1, its own ports, no accounting database,
//! `select/cons_tres`, `proctrack/pgid`, `MessageTimeout=30`: the tests
//! share a loaded 2-core machine, and with Slurm's default 10 s a busy
//! slurmctld makes srun give up with "Socket timed out", which a test
//! checking Slurm's own answer would misread), `slurmctld`, and one `slurmd -N
//! nK` per emulated node on its own port. It is ready when `sinfo` shows
//! every node idle (about 0.2 s). Every Slurm command needs `SLURM_CONF`:
//! [`SlurmCluster::conf`] is the value, [`SlurmCluster::command`] sets it.
//!
//! Ports: a block of [`PORTS_PER_CLUSTER`] ports from 17000 up (sshd test
//! nodes use kernel-chosen ephemeral ports, far above), chosen free and
//! claimed with a lock file, so test binaries running at once never share
//! one. Daemons of an earlier run that died without cleaning up (their
//! temp directory is gone) would hold ports with an old munge key: they
//! are found by their command line and stopped first. Dropping the
//! cluster stops its daemons by the PIDs in their pid files.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Ports a cluster uses: controller, and one per slurmd (up to 6 nodes).
pub(crate) const PORTS_PER_CLUSTER: u16 = 8;
const FIRST_PORT: u16 = 17000;
const LAST_PORT: u16 = 19000;
/// Temp directories of test clusters start with this (how stale daemons are found).
const PREFIX: &str = "dxslurm";

/// One running cluster.
pub(crate) struct SlurmCluster {
    pub(crate) dir: tempfile::TempDir,
    /// The `slurm.conf` every command must see (`SLURM_CONF`).
    pub(crate) conf: PathBuf,
    pub(crate) nodes: Vec<String>,
    _port_lock: std::fs::File,
}

impl SlurmCluster {
    /// Starts a cluster of `nodes` nodes (n1, n2...) with `cpus` CPUs
    /// each, in partition `debug` (the default) and partition `off`
    /// (same nodes, state DOWN).
    pub(crate) fn start(nodes: usize, cpus: u32) -> SlurmCluster {
        stop_stale_daemons();
        let dir = tempfile::Builder::new().prefix(PREFIX).tempdir_in("/tmp").expect("temp dir");
        let d = dir.path();
        let names: Vec<String> = (1..=nodes).map(|i| format!("n{i}")).collect();
        for sub in ["munge-sock", "spool-ctl", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        for n in &names {
            std::fs::create_dir_all(d.join(format!("spool-{n}"))).unwrap();
        }
        set_mode(&d.join("munge-sock"), 0o755);
        set_mode(d, 0o755);
        std::fs::write(d.join("owner"), std::process::id().to_string()).unwrap();
        let mut key = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(std::fs::File::open("/dev/urandom").unwrap(), 1024),
            &mut key,
        )
        .unwrap();
        std::fs::write(d.join("munge.key"), key).unwrap();
        set_mode(&d.join("munge.key"), 0o600);
        let (base, lock) = claim_ports();
        let conf = d.join("slurm.conf");
        std::fs::write(&conf, slurm_conf(d, base, &names, cpus)).unwrap();
        let cluster = SlurmCluster { dir, conf, nodes: names, _port_lock: lock };
        cluster.launch();
        cluster
    }

    fn launch(&self) {
        let d = self.dir.path();
        let munged = Command::new("munged")
            .arg(format!("--key-file={}", d.join("munge.key").display()))
            .arg(format!("--socket={}", d.join("munge-sock/munge.socket").display()))
            .arg(format!("--pid-file={}", d.join("munged.pid").display()))
            .arg(format!("--log-file={}", d.join("log/munged.log").display()))
            .arg(format!("--seed-file={}", d.join("munge.seed").display()))
            .arg("-f")
            .output()
            .expect("munged (apt-get install munge)");
        assert!(munged.status.success(), "munged: {}", String::from_utf8_lossy(&munged.stderr));
        self.daemon("slurmctld", &["-c"]);
        for n in &self.nodes {
            self.daemon("slurmd", &["-N", n]);
        }
        self.wait_idle();
    }

    /// Starts a daemon (they fork into the background by themselves).
    fn daemon(&self, program: &str, args: &[&str]) {
        let out = Command::new(program)
            .args(args)
            .arg("-f")
            .arg(&self.conf)
            .env("SLURM_CONF", &self.conf)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e} (apt-get install slurmctld slurmd)"));
        assert!(out.status.success(), "{program} {args:?}: {}\n{}", String::from_utf8_lossy(&out.stderr), self.logs());
    }

    /// Waits until every node is idle in `sinfo` and its slurmd is alive.
    pub(crate) fn wait_idle(&self) {
        let started = Instant::now();
        loop {
            let out = self.command("sinfo").args(["--noheader", "--partition=debug", "--format=%T %D"]).output();
            let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
            let idle = text.trim() == format!("idle {}", self.nodes.len());
            let alive = self.nodes.iter().all(|n| self.pid(&format!("slurmd-{n}.pid")).is_some_and(alive));
            if idle && alive {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "cluster not idle: {text}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A Slurm command that talks to this cluster.
    pub(crate) fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SLURM_CONF", &self.conf);
        cmd
    }

    /// Runs a Slurm command and returns its output.
    pub(crate) fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    /// Every job Slurm still lists (any state squeue shows by default:
    /// pending, running, completing...), as "NAME STATE".
    pub(crate) fn jobs(&self) -> Vec<String> {
        let out = self.run("squeue", &["--noheader", "--format=%j %T"]);
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).filter(|l| !l.trim().is_empty()).collect()
    }

    /// Waits (up to `limit`) until squeue lists no job; returns what it lists.
    pub(crate) fn wait_no_jobs(&self, limit: Duration) -> Vec<String> {
        let started = Instant::now();
        loop {
            let jobs = self.jobs();
            if jobs.is_empty() || started.elapsed() > limit {
                return jobs;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `[[node]]` text for a Slurm node on this cluster.
    pub(crate) fn node_table(&self, name: &str, partition: &str, slots: u32, workdir: &Path, extra: &str) -> String {
        format!(
            "[[node]]\nname = \"{name}\"\nkind = \"slurm\"\npartition = \"{partition}\"\nos = \"linux\"\n\
             slots = {slots}\nworkdir = \"{}\"\n{extra}\n",
            workdir.display()
        )
    }

    fn pid(&self, file: &str) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join(file)).ok()?.trim().parse().ok()
    }

    /// Sends `signal` to slurmctld (SIGSTOP: it stops answering, as an
    /// overloaded controller does; SIGCONT: it answers again).
    pub(crate) fn signal_controller(&self, signal: i32) {
        let pid = self.pid("slurmctld.pid").expect("slurmctld runs");
        self::signal(pid, signal);
    }

    /// The daemons' logs, for failure messages.
    pub(crate) fn logs(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("log")) {
            for e in entries.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                all.push_str(&format!("--- {}\n", e.path().display()));
                all.extend(tail.into_iter().rev().map(|l| format!("{l}\n")));
            }
        }
        all
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        let mut files: Vec<String> = self.nodes.iter().map(|n| format!("slurmd-{n}.pid")).collect();
        files.push("slurmctld.pid".into());
        files.push("munged.pid".into());
        let mut pids: Vec<i32> = files.iter().filter_map(|f| self.pid(f)).collect();
        // A step daemon (slurmstepd) outlives a slurmd stopped under it; it
        // works in this cluster's directory, which is how it is found.
        pids.extend(step_daemons_in(self.dir.path()));
        stop(&pids);
    }
}

/// The slurmstepd processes whose working directory is inside `dir`.
fn step_daemons_in(dir: &Path) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() != "slurmstepd" {
            continue;
        }
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir)) {
            found.push(pid);
        }
    }
    found
}

/// SIGTERM, up to 3 s of grace, then SIGKILL.
fn stop(pids: &[i32]) {
    for &pid in pids {
        signal(pid, libc::SIGTERM);
    }
    let started = Instant::now();
    while pids.iter().any(|&p| alive(p)) && started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pid in pids.iter().filter(|&&p| alive(p)) {
        signal(pid, libc::SIGKILL);
    }
}

/// Daemons whose cluster directory is gone, or whose test process is:
/// left by a run that was killed.
fn stop_stale_daemons() {
    let mut stale = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> = raw.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let program = args.first().map(|a| a.rsplit('/').next().unwrap_or(a).to_string()).unwrap_or_default();
        if !matches!(program.as_str(), "munged" | "slurmctld" | "slurmd") {
            continue;
        }
        let ours = args.iter().find_map(|a| {
            let path = &a[a.find(&format!("/tmp/{PREFIX}"))?..];
            let end = path["/tmp/".len()..].find('/').map_or(path.len(), |i| i + "/tmp/".len());
            Some(PathBuf::from(&path[..end]))
        });
        if ours.is_some_and(|dir| !owner_alive(&dir)) {
            stale.push(pid);
        }
    }
    stop(&stale);
}

/// Whether the test process that started the cluster in `dir` still runs.
fn owner_alive(dir: &Path) -> bool {
    let owner = std::fs::read_to_string(dir.join("owner")).ok().and_then(|t| t.trim().parse().ok());
    owner.is_some_and(alive)
}

/// Finds a free block of ports and holds a lock on it while the cluster lives.
fn claim_ports() -> (u16, std::fs::File) {
    use std::os::fd::AsRawFd;
    let start = FIRST_PORT + (std::process::id() % 200) as u16 * PORTS_PER_CLUSTER;
    let blocks = (LAST_PORT - FIRST_PORT) / PORTS_PER_CLUSTER;
    for i in 0..blocks {
        let base = FIRST_PORT + (start - FIRST_PORT + i * PORTS_PER_CLUSTER) % (LAST_PORT - FIRST_PORT);
        let lock = std::fs::File::create(format!("/tmp/{PREFIX}-ports-{base}.lock")).unwrap();
        // SAFETY: flock on a valid descriptor; held until the file closes.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        if (base..base + PORTS_PER_CLUSTER).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return (base, lock);
        }
    }
    panic!("no free block of {PORTS_PER_CLUSTER} ports between {FIRST_PORT} and {LAST_PORT}");
}

fn slurm_conf(d: &Path, base: u16, nodes: &[String], cpus: u32) -> String {
    let d = d.display();
    let mut text = format!(
        "ClusterName=distex\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort={ctl}\nSlurmdPort={slurmd}\n\
         AuthType=auth/munge\nAuthInfo=socket={d}/munge-sock/munge.socket\nCredType=cred/munge\n\
         StateSaveLocation={d}/spool-ctl\nSlurmdSpoolDir={d}/spool-%n\nSlurmctldPidFile={d}/slurmctld.pid\n\
         SlurmdPidFile={d}/slurmd-%n.pid\nSlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd-%n.log\n\
         SlurmUser=root\nSlurmdUser=root\nProctrackType=proctrack/pgid\nTaskPlugin=task/none\n\
         SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nAccountingStorageType=accounting_storage/none\n\
         JobAcctGatherType=jobacct_gather/none\nJobCompType=jobcomp/none\nSchedulerType=sched/backfill\n\
         ReturnToService=2\nMpiDefault=none\nEnforcePartLimits=ALL\nKillWait=2\nMinJobAge=10\n\
         MessageTimeout=30\n",
        ctl = base,
        slurmd = base + 1,
    );
    for (i, n) in nodes.iter().enumerate() {
        text.push_str(&format!(
            "NodeName={n} NodeHostname=localhost NodeAddr=127.0.0.1 Port={} CPUs={cpus} State=UNKNOWN\n",
            base + 2 + i as u16
        ));
    }
    let list = nodes.join(",");
    text.push_str(&format!("PartitionName=debug Nodes={list} Default=YES MaxTime=INFINITE State=UP\n"));
    text.push_str(&format!("PartitionName=off Nodes={list} MaxTime=INFINITE State=DOWN\n"));
    text
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) on a pid we started.
    unsafe { libc::kill(pid, sig) };
}

//! Where an array's run directory lives and where Slurm's commands run:
//! on this machine (a node without `host`), or on the node's login `host`
//! over its SSH master ([`Submitter`], the one `distex run` uses). One
//! front, [`Site`], in the terms the array runner thinks in: files in the
//! run directory (put there, polled for, removed) and Slurm commands. The
//! runner never asks which one it has.
//!
//! Through a login node the run directory is on the login node's
//! filesystem (which the compute nodes share), and every exchange is one
//! round trip over the master:
//!
//! * **put**: the files are staged in a local temporary directory (inputs
//!   as symlinks to this machine's files) and sent in ONE rsync over the
//!   master (`--copy-links`); rsync writes each file under a temporary
//!   name and renames it, so no task ever reads half a file;
//! * **Slurm commands** (`sbatch`, `scancel`) run in the login node's
//!   shell, every word quoted;
//! * **poll**: ONE `sh -s` call (its script on stdin) runs `squeue`, then prints every watched file
//!   that appeared (an attempt's status) together with the files it brings
//!   (the attempt's output, up to a size; the tail of its stderr), each
//!   framed by its name and length;
//! * **lost connection**: a poll that ssh cannot run is tried again on a
//!   fresh master for [`RECONNECT_FOR`]; nothing is resubmitted meanwhile
//!   (the tasks keep running on the cluster and their files wait in the
//!   run directory). Then the poll fails and the runner gives up the parts
//!   still open, saying how to cancel the array by hand.
//!
//! Every path and value in a remote command line is quoted with
//! [`sh_quote`]; file names are distex's own (`out-3-1`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::super::local::interrupted;
use crate::config::Node;
use crate::exec::slurm::{Output, Submitter};
use crate::exec::sync;
use crate::route::sh_quote;

/// How long a poll keeps trying to reach a login node that stopped
/// answering before the run gives up the parts still open.
pub(super) const RECONNECT_FOR: Duration = Duration::from_secs(60);

/// What a file put into the run directory holds.
pub(super) enum Content {
    Bytes(Vec<u8>),
    /// A copy of this file on this machine.
    Copy(PathBuf),
}

/// How much of a file a poll brings back.
#[derive(Clone, Copy)]
pub(super) enum Limit {
    /// All of it, when it holds at most this many bytes (else only its size).
    Whole(u64),
    /// Its last bytes, at most this many.
    Tail(u64),
}

/// A file the runner waits for, and the files to read once it exists.
pub(super) struct Watch {
    pub(super) when: String,
    pub(super) read: Vec<(String, Limit)>,
}

/// A file a poll brought back.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Read {
    Bytes(Vec<u8>),
    /// Larger than its [`Limit::Whole`]: its size.
    TooBig(u64),
    Missing,
}

/// What one poll saw: `squeue`'s answer, and the files of every watch
/// whose file appeared (the watched file itself included).
pub(super) struct Polled {
    pub(super) squeue: Output,
    pub(super) files: BTreeMap<String, Read>,
}

/// The run directory and the Slurm commands of one array run.
pub(super) struct Site {
    node: Node,
    runtime: tokio::runtime::Runtime,
    /// `None` after a lost connection, until a new master answers.
    submitter: RefCell<Option<Submitter>>,
    login: bool,
    /// `WORKDIR/distex-process`, absolute, as the cluster sees it.
    base: String,
    /// The run directory, `base/<name>`.
    dir: String,
    /// `uname -s` and `uname -m` where Slurm's commands run.
    platform: (String, String),
    /// Set when a poll gave up on the login node: the run directory then
    /// stays (tasks may still run and write there).
    lost: std::cell::Cell<bool>,
}

impl Site {
    /// Connects (for a login node: its SSH master, and one call that says
    /// its home directory and platform) and names the run directory
    /// `WORKDIR/distex-process/<name>`. Creates nothing yet.
    pub(super) fn open(node: &Node, name: &str) -> Result<Site, String> {
        let runtime = crate::exec::runtime().map_err(|e| format!("cannot start the async runtime: {e}"))?;
        let submitter = runtime.block_on(Submitter::connect(node)).map_err(|e| e.message)?;
        let login = matches!(submitter, Submitter::Login(_));
        let (home, platform) = if login {
            let facts = ["sh".to_string(), "-c".into(), FACTS.into()];
            let out = runtime.block_on(submitter.output(&facts))?;
            login_facts(&out.stdout, &node.host)?
        } else {
            let home = std::env::var("HOME").unwrap_or_default();
            (home, crate::sys::platform().unwrap_or_default())
        };
        let workdir = crate::exec::slurm::under_home(Some(&home), &node.workdir);
        let base = format!("{}/distex-process", workdir.trim_end_matches('/'));
        let dir = format!("{base}/{name}");
        let submitter = RefCell::new(Some(submitter));
        Ok(Site { node: node.clone(), runtime, submitter, login, base, dir, platform, lost: Default::default() })
    }

    /// The run directory as the cluster sees it.
    pub(super) fn dir(&self) -> &str {
        &self.dir
    }

    /// The path of file `name` of the run directory, as the cluster sees it.
    pub(super) fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.dir)
    }

    /// Writes `files` (names relative to the run directory) into the run
    /// directory, creating it if needed: here directly, through a login
    /// node in one rsync.
    pub(super) fn put(&self, files: Vec<(String, Content)>) -> Result<(), String> {
        if !self.login {
            let dir = Path::new(&self.dir);
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            for (name, content) in files {
                let to = dir.join(&name);
                match content {
                    Content::Bytes(bytes) => std::fs::write(&to, bytes).map(|_| ()),
                    Content::Copy(from) => std::fs::copy(&from, &to).map(|_| ()),
                }
                .map_err(|e| format!("cannot write {}: {e}", to.display()))?;
            }
            return Ok(());
        }
        // The run directory is staged as a directory of its own (created
        // with this machine's umask, as the local path creates it), so that
        // rsync gives the remote one those permissions, not the temporary
        // parent's.
        let stage = tempfile::Builder::new()
            .prefix("distex-stage")
            .tempdir()
            .map_err(|e| format!("cannot create a staging directory: {e}"))?;
        let name = self.dir.rsplit('/').next().unwrap_or_default();
        let staged = stage.path().join(name);
        std::fs::create_dir(&staged).map_err(|e| format!("cannot create {}: {e}", staged.display()))?;
        for (name, content) in files {
            let to = staged.join(&name);
            match content {
                Content::Bytes(bytes) => std::fs::write(&to, bytes),
                Content::Copy(from) => {
                    std::path::absolute(&from).and_then(|from| std::os::unix::fs::symlink(from, &to))
                }
            }
            .map_err(|e| format!("cannot stage {}: {e}", to.display()))?;
        }
        self.rsync(staged.into_os_string(), &format!("{}/", self.base))
    }

    /// The built-in workers' distex as the compute nodes run it: this
    /// binary, copied once into `WORKDIR/distex-process/bin/distex-VERSION`
    /// when the cluster runs this machine's system and architecture, else
    /// the node's `distex` (checked to be this version).
    pub(super) fn distex(&self) -> Result<String, String> {
        let version = env!("CARGO_PKG_VERSION");
        let me = std::env::current_exe().map_err(|e| format!("cannot find this distex binary: {e}"))?;
        let here = crate::sys::platform().unwrap_or_default();
        if !self.login {
            return install_here(&me, Path::new(&self.base)).map(|p| p.display().to_string());
        }
        if here == self.platform {
            let target = format!("{}/bin/distex-{version}", self.base);
            // rsync skips a binary already there (same size and time) and
            // renames a new one into place: runs at once never see half a file.
            self.rsync(me.into_os_string(), &target)?;
            return Ok(target);
        }
        let configured = &self.node.distex;
        // (`|| exit 1`: ssh reports a remote 127, "not found", as its own failure.)
        let check = format!("{} --version </dev/null 2>&1 || exit 1", sh_quote(configured));
        let check = ["sh".to_string(), "-c".into(), check];
        let said = self.output(&check)?;
        let expected = format!("distex {version}");
        if said.code == Some(0) && said.stdout.trim() == expected {
            return Ok(configured.clone());
        }
        let found = match said.stdout.lines().next() {
            Some(line) if said.code == Some(0) => format!("is {line}, not {expected}"),
            _ => "cannot be run there".to_string(),
        };
        Err(format!(
            "the login node runs {} {} and this distex is built for {} {}, so it cannot copy itself to the cluster, \
             and the node's distex ({configured}) {found}: install distex {version} for the cluster on its shared \
             filesystem and set distex = \"/path/to/distex\" for node {} in the config (or use --processor)",
            self.platform.0, self.platform.1, here.0, here.1, self.node.name
        ))
    }

    /// Runs one Slurm command (`argv[0]` is the program) where Slurm's
    /// commands run. `Err`: it could not be run (or, over SSH, its answer
    /// was lost: it may have run).
    pub(super) fn slurm(&self, argv: &[String]) -> Result<Output, String> {
        let out = self.output(argv);
        if out.is_err() {
            // The next call starts a new master (the old one may be dead).
            self.forget_master();
        }
        out
    }

    /// `squeue` with `squeue_args`, and the files of every watch whose
    /// file exists, in one round trip. `Err` only when the login node
    /// stayed unreachable for [`RECONNECT_FOR`] (or distex was interrupted
    /// while it tried).
    pub(super) fn poll(&self, squeue_args: &[String], watches: &[Watch]) -> Result<Polled, String> {
        if !self.login {
            let mut argv = vec!["squeue".to_string()];
            argv.extend_from_slice(squeue_args);
            let squeue = self.output(&argv)?;
            return Ok(Polled { squeue, files: read_here(Path::new(&self.dir), watches) });
        }
        // The script goes on stdin: one line per open attempt would soon
        // be too long for a command line.
        let (argv, script) = (["sh".to_string(), "-s".into()], poll_script(&self.dir, squeue_args, watches));
        let started = Instant::now();
        loop {
            let answer = self.connected().and_then(|submitter| match &*submitter {
                Some(submitter) => self.runtime.block_on(submitter.feed(&argv, script.as_bytes())),
                None => Err("not connected".into()),
            });
            let last = match answer.and_then(|out| parse_poll(out).ok_or_else(|| "a cut-off answer".to_string())) {
                Ok(polled) => return Ok(polled),
                Err(e) => e,
            };
            if interrupted() {
                return Err(last);
            }
            if started.elapsed() >= RECONNECT_FOR {
                self.lost.set(true);
                return Err(self.lost(&last));
            }
            self.forget_master();
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Why the run gives up on a login node that stopped answering.
    fn lost(&self, last: &str) -> String {
        format!(
            "lost the connection to its login node {} for {}s ({last}); its Slurm array job may still run \
             there: cancel it with `scancel --name={}` on {}, and remove its run directory {} when it is done",
            self.node.host,
            RECONNECT_FOR.as_secs(),
            self.dir.rsplit('/').next().unwrap_or_default(),
            self.node.host,
            self.dir
        )
    }

    /// Removes the run directory (best effort; not after a poll gave up
    /// on the login node).
    pub(super) fn remove(&self) {
        if self.lost.get() {
            return;
        }
        if self.login {
            let _ = self.output(&["rm".into(), "-rf".into(), "--".into(), self.dir.clone()]);
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Runs `argv` where Slurm's commands run, connecting again first if
    /// the last master was lost.
    fn output(&self, argv: &[String]) -> Result<Output, String> {
        self.output_bytes(argv).map(Output::from)
    }

    /// [`Site::output`] as bytes.
    fn output_bytes(&self, argv: &[String]) -> Result<std::process::Output, String> {
        let submitter = self.connected()?;
        self.runtime.block_on(submitter.as_ref().ok_or("not connected")?.output_bytes(argv))
    }

    /// The submitter, connecting again first if the last master was lost.
    fn connected(&self) -> Result<std::cell::RefMut<'_, Option<Submitter>>, String> {
        let mut slot = self.submitter.borrow_mut();
        if slot.is_none() {
            let fresh = self.runtime.block_on(Submitter::connect(&self.node)).map_err(|e| e.message)?;
            *slot = Some(fresh);
        }
        Ok(slot)
    }

    /// Drops a master that failed us, so the next call starts a new one.
    fn forget_master(&self) {
        if let Some(Submitter::Login(master)) = self.submitter.borrow_mut().take() {
            self.runtime.block_on(master.forget());
        }
    }

    /// One rsync of `from` to `to` on the login node, over its master
    /// (creating the directory it goes into first, in the same round trip).
    fn rsync(&self, from: OsString, to: &str) -> Result<(), String> {
        let socket = match &*self.connected()? {
            Some(Submitter::Login(master)) => master.control_socket(),
            _ => return Err("no login node to copy to".into()),
        };
        // `to` ending in `/` is a directory to copy into; else a file.
        let parent = match to.strip_suffix('/') {
            Some(dir) => dir,
            None => to.rsplit_once('/').map_or(".", |(p, _)| p),
        };
        let args: Vec<OsString> = vec![
            "-a".into(),
            "--copy-links".into(),
            "-e".into(),
            sync::rsh(&socket).into(),
            format!("--rsync-path=mkdir -p -- {} && rsync", sh_quote(parent)).into(),
            from,
            format!("none:{to}").into(),
        ];
        self.runtime.block_on(sync::rsync(args)).map_err(|e| format!("copying to the login node failed: {e}"))
    }
}

/// Asks a login node for its home directory, its system (`uname -s`,
/// `uname -m`) and which of Slurm's commands its PATH lacks, one `KEY
/// value` line each (never exiting 127, which ssh reports as its own
/// failure).
const FACTS: &str = "cd && printf 'home %s\\n' \"$(pwd)\"; printf 'os %s\\narch %s\\n' \"$(uname -s)\" \"$(uname -m)\"; \
for c in sbatch squeue scancel; do command -v \"$c\" >/dev/null 2>&1 || printf 'lack %s\\n' \"$c\"; done; exit 0";

/// Reads [`FACTS`]' answer (a chatty shell startup file may print lines
/// of its own): the home directory and the platform.
fn login_facts(text: &str, host: &str) -> Result<(String, (String, String)), String> {
    let value = |key: &str| {
        text.lines().rev().find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' '))).map(str::to_string)
    };
    let lacking: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("lack ")).collect();
    if !lacking.is_empty() {
        return Err(format!(
            "Slurm's commands {} are not on the PATH of the login node {host}: install Slurm's client \
             commands there, or set PATH (and SLURM_CONF) in the shell startup file ssh reads (~/.bashrc)",
            lacking.join(", ")
        ));
    }
    match (value("home"), value("os"), value("arch")) {
        (Some(home), Some(os), Some(arch)) => Ok((home, (os, arch))),
        _ => Err(format!("the login node {host} did not say its home directory and system: {}", text.trim())),
    }
}

/// This binary, copied into `BASE/bin/distex-VERSION` once (to a
/// temporary name, then renamed: runs at once never see half a file).
fn install_here(me: &Path, base: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let bin = base.join("bin");
    let target = bin.join(format!("distex-{}", env!("CARGO_PKG_VERSION")));
    let same_size =
        |a: &Path, b: &Path| std::fs::metadata(a).ok().map(|m| m.len()) == std::fs::metadata(b).ok().map(|m| m.len());
    if target.exists() && same_size(me, &target) {
        return Ok(target);
    }
    std::fs::create_dir_all(&bin).map_err(|e| format!("cannot create {}: {e}", bin.display()))?;
    let temp = bin.join(format!(".distex-{}", std::process::id()));
    std::fs::copy(me, &temp).map_err(|e| format!("cannot copy distex to {}: {e}", temp.display()))?;
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    std::fs::rename(&temp, &target).map_err(|e| format!("cannot install {}: {e}", target.display()))?;
    Ok(target)
}

/// The watches' files, read on this machine.
fn read_here(dir: &Path, watches: &[Watch]) -> BTreeMap<String, Read> {
    use std::io::{Read as _, Seek, SeekFrom};
    let mut files = BTreeMap::new();
    for watch in watches.iter().filter(|w| dir.join(&w.when).exists()) {
        let when = (watch.when.clone(), Limit::Whole(4096));
        for (name, limit) in std::iter::once(&when).chain(&watch.read) {
            let read = std::fs::File::open(dir.join(name)).and_then(|mut file| {
                let size = file.metadata()?.len();
                let mut bytes = Vec::new();
                match *limit {
                    Limit::Whole(most) if size > most => return Ok(Read::TooBig(size)),
                    Limit::Whole(_) => {}
                    Limit::Tail(most) => {
                        file.seek(SeekFrom::Start(size.saturating_sub(most)))?;
                    }
                }
                file.read_to_end(&mut bytes)?;
                Ok(Read::Bytes(bytes))
            });
            files.insert(name.clone(), read.unwrap_or(Read::Missing));
        }
    }
    files
}

/// The login node's side of a poll: `squeue` first (its answer kept until
/// the end), then each watch's files when its file exists, each as a
/// header `\x1eNAME LENGTH` (or `\x1eNAME big SIZE`, `\x1eNAME missing`)
/// and its bytes; last `\x1esqueue STATUS` and squeue's output. (The
/// script itself exits 0: ssh reports a remote 127 or 255 as its own
/// failure.)
fn poll_script(dir: &str, squeue_args: &[String], watches: &[Watch]) -> String {
    let squeue: Vec<String> = squeue_args.iter().map(|a| sh_quote(a)).collect();
    let mut script = format!(
        "whole() {{ if [ -f \"$1\" ]; then n=$(($(wc -c <\"$1\"))); if [ \"$n\" -le \"$2\" ]; then \
         printf '\\036%s %d\\n' \"$1\" \"$n\"; head -c \"$n\" \"$1\"; else printf '\\036%s big %d\\n' \"$1\" \"$n\"; fi; \
         else printf '\\036%s missing\\n' \"$1\"; fi; }}\n\
         tailof() {{ if [ -f \"$1\" ]; then n=$(($(wc -c <\"$1\"))); [ \"$n\" -gt \"$2\" ] && n=$2; \
         printf '\\036%s %d\\n' \"$1\" \"$n\"; tail -c \"$n\" \"$1\"; else printf '\\036%s missing\\n' \"$1\"; fi; }}\n\
         q=$(squeue {} </dev/null); rc=$?\n\
         if cd -- {} 2>/dev/null; then\n",
        squeue.join(" "),
        sh_quote(dir)
    );
    for watch in watches {
        let when = sh_quote(&watch.when);
        let mut reads = vec![format!("whole {when} 4096")];
        for (name, limit) in &watch.read {
            reads.push(match *limit {
                Limit::Whole(most) => format!("whole {} {}", sh_quote(name), most.min(i64::MAX as u64)),
                Limit::Tail(most) => format!("tailof {} {}", sh_quote(name), most.min(i64::MAX as u64)),
            });
        }
        script.push_str(&format!("  if [ -f {when} ]; then {}; fi\n", reads.join("; ")));
    }
    script.push_str("fi\nprintf '\\036squeue %d\\n' \"$rc\"; printf '%s\\n' \"$q\"\n");
    script
}

/// Reads [`poll_script`]'s answer; `None` when it is cut off (the
/// connection broke mid-answer, or the script never ran).
fn parse_poll(out: std::process::Output) -> Option<Polled> {
    let bytes = &out.stdout[..];
    let mut files = BTreeMap::new();
    // Whatever a chatty shell startup file printed comes before the first header.
    let mut at = bytes.iter().position(|&b| b == 0x1e)?;
    loop {
        let rest = bytes.get(at..)?;
        let end = rest.iter().position(|&b| b == b'\n')?;
        let header = std::str::from_utf8(rest.get(1..end)?).ok()?;
        if rest.first() != Some(&0x1e) {
            return None;
        }
        at += end + 1;
        if let Some(code) = header.strip_prefix("squeue ") {
            let squeue = Output {
                code: code.parse().ok(),
                stdout: String::from_utf8_lossy(&bytes[at..]).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            };
            return Some(Polled { squeue, files });
        }
        let mut words = header.split(' ');
        let name = words.next()?.to_string();
        let read = match (words.next()?, words.next()) {
            ("missing", None) => Read::Missing,
            ("big", Some(size)) => Read::TooBig(size.parse().ok()?),
            (length, None) => {
                let length: usize = length.parse().ok()?;
                let content = bytes.get(at..at + length)?.to_vec();
                at += length;
                Read::Bytes(content)
            }
            _ => return None,
        };
        files.insert(name, read);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run directory with one finished attempt (binary output holding
    /// the frame's own bytes, a long stderr) and one too-large output.
    fn run_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("status-0-1"), "0\n").unwrap();
        std::fs::write(d.join("out-0-1"), b"{\"a\": 1}\n\x1eout-9 3\n\xff\n").unwrap();
        std::fs::write(d.join("err-0-1"), format!("{}last line\n", "x".repeat(5000))).unwrap();
        std::fs::write(d.join("status-1-2"), "1\n").unwrap();
        std::fs::write(d.join("out-1-2"), "y".repeat(100)).unwrap();
        dir
    }

    fn watches() -> Vec<Watch> {
        let watch = |unit: &str| Watch {
            when: format!("status-{unit}"),
            read: vec![(format!("out-{unit}"), Limit::Whole(50)), (format!("err-{unit}"), Limit::Tail(10))],
        };
        vec![watch("0-1"), watch("1-2"), watch("2-1")]
    }

    fn expected(files: &BTreeMap<String, Read>) {
        let bytes = |name: &str| match files.get(name) {
            Some(Read::Bytes(b)) => b.clone(),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(bytes("status-0-1"), b"0\n");
        assert_eq!(bytes("out-0-1"), b"{\"a\": 1}\n\x1eout-9 3\n\xff\n");
        assert_eq!(bytes("err-0-1"), b"last line\n");
        assert_eq!(files.get("out-1-2"), Some(&Read::TooBig(100)));
        assert_eq!(files.get("err-1-2"), Some(&Read::Missing));
        assert!(!files.contains_key("status-2-1") && !files.contains_key("out-2-1"), "no status: nothing read");
    }

    /// Runs `script` as the login node would: `sh -s`, the script on stdin.
    fn sh_s(script: &str) -> std::process::Output {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), script).unwrap();
        let stdin = std::fs::File::open(file.path()).unwrap();
        std::process::Command::new("sh").arg("-s").stdin(stdin).output().unwrap()
    }

    #[test]
    fn the_login_node_s_poll_script_frames_the_files_in_a_real_shell() {
        let dir = run_dir();
        let script = poll_script(&dir.path().display().to_string(), &["--version".into()], &watches());
        let polled = parse_poll(sh_s(&format!("echo chatty rc file\n{script}"))).expect("a whole answer");
        expected(&polled.files);
        assert!(polled.squeue.code.is_some(), "squeue's status comes back");
        assert!(parse_poll(sh_s(&format!("{{ {script}}} | head -c 40"))).is_none(), "a cut-off answer is no answer");
    }

    #[test]
    fn here_the_same_files_are_read_directly() {
        let dir = run_dir();
        expected(&read_here(dir.path(), &watches()));
    }

    #[test]
    fn a_login_node_s_facts_are_read_past_a_chatty_startup_file() {
        let (home, platform) = login_facts("Welcome!\nhome /home/u\nos Linux\narch aarch64\n", "login").unwrap();
        assert_eq!((home.as_str(), platform.0.as_str(), platform.1.as_str()), ("/home/u", "Linux", "aarch64"));
        let e = login_facts("home /h\nos Linux\narch x86_64\nlack sbatch\n", "login.hpc").unwrap_err();
        assert!(e.contains("sbatch") && e.contains("login.hpc"), "{e}");
    }
}

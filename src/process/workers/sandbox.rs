//! `--sandbox`: every worker in a bubblewrap (`bwrap`) container, or a refusal.
//!
//! `distex __sandbox [--allow-connect HOST:PORT]... -- PROGRAM ARGS...` is
//! started as the worker, in the worker's directory. It runs PROGRAM under
//! `bwrap` with:
//!
//! * new user, mount, PID, IPC, network, UTS and cgroup namespaces
//!   (`--unshare-all --unshare-user`), no capabilities, no further user
//!   namespaces (`--disable-userns`), a new session (no terminal to inject
//!   keystrokes into), and `--die-with-parent`;
//! * a file system built from nothing: the system's program and library
//!   directories (`/usr`, `/bin`, `/lib*`, `/opt`) and the few `/etc` files
//!   programs need (users, name service, dynamic linker, certificates,
//!   time zones) read-only; the distex binary read-only (at its own path
//!   and at `/run/distex/distex`); a fresh `/proc`
//!   (its own processes only), a minimal `/dev`, an empty `/tmp`; and the
//!   worker's directory, the only place it can write. Its input is its
//!   stdin. The user's home, distex's runtime and state directories, the
//!   host's `/tmp`, `/run` and other regions' data do not exist in there;
//! * an empty network namespace: only a loopback interface, so no TCP or
//!   UDP anywhere, and no abstract Unix sockets outside it.
//!
//! When the worker ends, bwrap's PID 1 ends and the kernel kills every
//! process left in the namespace: nothing a sandboxed worker starts
//! (`setsid`, double forks) can outlive it.
//!
//! `--allow-connect HOST:PORT` opens exactly one TCP endpoint (see
//! [`super::relay`]): this process, outside the sandbox, listens on a Unix
//! socket in `.distex-connect/` of the worker's directory and connects each
//! accepted stream to HOST:PORT; inside, `distex __relay` listens on a
//! loopback address of the sandbox's own network namespace at PORT (for a
//! host name, `/etc/hosts` in the sandbox maps the name to it) and carries
//! each connection to that socket. No other address is reachable.
//!
//! Before a run, the coordinator starts `distex __sandbox -- /bin/true`
//! once ([`check`]): when bubblewrap is missing or cannot create its
//! namespaces here, distex refuses to run with a clear error rather than
//! run with weaker isolation.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::relay;

/// Exit status of `distex __sandbox` when the sandbox could not be set up
/// (bwrap missing or failing before the worker started).
pub(crate) const SETUP_FAILED: u8 = 126;

/// The `/etc` entries a sandboxed program may read: users and groups, name
/// service and resolver settings, the dynamic linker's cache, TLS
/// certificates, time zones and MIME types. Nothing else of `/etc`.
const ETC: &[&str] = &[
    "passwd",
    "group",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "resolv.conf",
    "protocols",
    "services",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "alternatives",
    "localtime",
    "timezone",
    "mime.types",
];

/// System directories bound read-only (or recreated as symlinks into
/// `/usr` on merged-usr systems).
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt"];

/// Entry point of `distex __sandbox [--allow-connect HOST:PORT]... -- PROGRAM ARGS...`.
pub(crate) fn main(args: &[OsString]) -> u8 {
    let (endpoints, command) = match parse_args(args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("distex __sandbox: {e}");
            return 2;
        }
    };
    match run(&endpoints, command) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("distex: sandbox: {e}");
            SETUP_FAILED
        }
    }
}

/// Splits `[--allow-connect HOST:PORT]... -- PROGRAM ARGS...`.
fn parse_args(args: &[OsString]) -> Result<(Vec<relay::Endpoint>, &[OsString]), String> {
    let mut endpoints = Vec::new();
    let mut rest = args;
    loop {
        match rest {
            [flag, value, tail @ ..] if flag == "--allow-connect" => {
                endpoints.push(relay::Endpoint::parse(&value.to_string_lossy())?);
                rest = tail;
            }
            [dashes, tail @ ..] if dashes == "--" => rest = tail,
            _ => break,
        }
    }
    if rest.is_empty() {
        return Err("expected a program to run".into());
    }
    Ok((endpoints, rest))
}

/// Starts the relays, runs the command under bwrap, waits for it.
fn run(endpoints: &[relay::Endpoint], command: &[OsString]) -> Result<u8, String> {
    let dir = std::env::current_dir().map_err(|e| format!("cannot read the working directory: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the distex binary: {e}"))?;
    if cfg!(not(target_os = "linux")) {
        return Err("--sandbox needs Linux (bubblewrap and its namespaces); run without --sandbox to accept \
                    the weaker default isolation (see docs/process.md)"
            .into());
    }
    let bwrap = find_bwrap().ok_or_else(|| {
        "bubblewrap (bwrap) is not installed; install it (Debian/Ubuntu: apt install bubblewrap, \
         Fedora: dnf install bubblewrap), or run without --sandbox to accept the weaker default isolation \
         (see docs/process.md)"
            .to_string()
    })?;
    let (relays, running) = relay::outside(&dir, endpoints)?;
    let mut cmd = Command::new(bwrap);
    cmd.args(bwrap_args(&dir, &exe, &relays));
    if !relays.is_empty() {
        cmd.arg(&exe).arg("__relay");
        for r in &relays {
            cmd.arg("--listen").arg(r.inside.to_string()).arg(&r.socket);
        }
        cmd.arg("--");
    }
    cmd.args(command);
    let status = cmd.status().map_err(|e| format!("cannot start bwrap: {e}"))?;
    running.finish();
    Ok(exit_code(status))
}

/// The exit code of `status` as a shell reports it (128 + N for signal N).
fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => (128 + sig) as u8,
        _ => SETUP_FAILED,
    }
}

/// `bwrap` from PATH (the user's choice of bubblewrap, like any program).
fn find_bwrap() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join("bwrap")).find(|p| p.is_file())
}

/// bwrap's options for a worker whose directory is `dir`.
fn bwrap_args(dir: &Path, exe: &Path, relays: &[relay::Outside]) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |items: &[&OsStr]| a.extend(items.iter().map(|s| s.to_os_string()));
    push(&[
        "--unshare-all".as_ref(),
        "--unshare-user".as_ref(),
        "--disable-userns".as_ref(),
        "--cap-drop".as_ref(),
        "ALL".as_ref(),
        "--die-with-parent".as_ref(),
        "--new-session".as_ref(),
        "--proc".as_ref(),
        "/proc".as_ref(),
        "--dev".as_ref(),
        "/dev".as_ref(),
        "--tmpfs".as_ref(),
        "/tmp".as_ref(),
    ]);
    for sys in SYSTEM_DIRS {
        let path = Path::new(sys);
        match std::fs::read_link(path) {
            // Merged /usr: /bin -> usr/bin and so on.
            Ok(target) => push(&["--symlink".as_ref(), target.as_os_str(), sys.as_ref()]),
            Err(_) if path.is_dir() => push(&["--ro-bind".as_ref(), sys.as_ref(), sys.as_ref()]),
            Err(_) => {}
        }
    }
    for name in ETC {
        let path = Path::new("/etc").join(name);
        push(&["--ro-bind-try".as_ref(), path.as_os_str(), path.as_os_str()]);
    }
    if let Some(hosts) = relays.first().map(|r| r.hosts_file.as_os_str()) {
        push(&["--ro-bind".as_ref(), hosts, "/etc/hosts".as_ref()]);
    }
    // distex itself (built-in workers, the relay), also at a fixed path
    // for the node script, which does not know where the binary is.
    push(&["--ro-bind".as_ref(), exe.as_os_str(), exe.as_os_str()]);
    push(&["--ro-bind".as_ref(), exe.as_os_str(), "/run/distex/distex".as_ref()]);
    push(&["--bind".as_ref(), dir.as_os_str(), dir.as_os_str(), "--chdir".as_ref(), dir.as_os_str()]);
    push(&["--".as_ref()]);
    a
}

/// Checks once, in a throwaway process, that the sandbox can be entered here.
pub(crate) fn check(scratch: &Path) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the distex binary: {e}"))?;
    let out = Command::new(exe)
        .args(["__sandbox", "--", "/bin/true"])
        .current_dir(scratch)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot start the sandbox check: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(&out.stderr);
    let msg = msg.trim().trim_start_matches("distex: sandbox: ");
    Err(format!(
        "--sandbox is not available here: {msg}{}",
        if msg.starts_with("bwrap:") || msg.contains("\nbwrap:") {
            " (bubblewrap needs unprivileged user namespaces: sysctl kernel.unprivileged_userns_clone=1, \
             user.max_user_namespaces > 0; or run without --sandbox to accept the weaker default isolation)"
        } else {
            ""
        }
    ))
}

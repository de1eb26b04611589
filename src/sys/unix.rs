//! The Unix implementation of [`crate::sys`], over `libc`.

use std::io;
use std::time::Duration;

/// The signals distex sends or reports.
pub(crate) use libc::{SIGABRT, SIGKILL, SIGTERM, SIGXCPU};

/// A resource limit of a process (`setrlimit(2)`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// Size of core dumps.
    Core,
    /// Open file descriptors.
    OpenFiles,
    /// Address space, in bytes.
    AddressSpace,
    /// CPU time, in seconds: SIGXCPU at the soft limit, SIGKILL at the hard one.
    CpuSeconds,
}

/// The `RLIMIT_*` constant of a [`Limit`] (a macro: its C type differs
/// between C libraries).
macro_rules! resource {
    ($limit:expr) => {
        match $limit {
            Limit::Core => libc::RLIMIT_CORE,
            Limit::OpenFiles => libc::RLIMIT_NOFILE,
            Limit::AddressSpace => libc::RLIMIT_AS,
            Limit::CpuSeconds => libc::RLIMIT_CPU,
        }
    };
}

/// The hard limit in force for this process (`None`: unlimited). A process
/// may lower its limits but never raise one above the hard limit, so a
/// worker's limits must fit under it.
pub(crate) fn hard_limit(limit: Limit) -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscall writing into a stack value.
    if unsafe { libc::getrlimit(resource!(limit), &mut lim) } != 0 || lim.rlim_max == libc::RLIM_INFINITY {
        return None;
    }
    // rlim_t is u64 on Linux and macOS, but not by definition.
    #[allow(clippy::unnecessary_cast)]
    Some(lim.rlim_max as u64)
}

/// Sets a resource limit of this process (soft and hard). Only a system
/// call: async-signal-safe, so it may run between fork and exec.
pub(crate) fn set_limit(limit: Limit, soft: u64, hard: u64) -> io::Result<()> {
    let resource = resource!(limit);
    let lim = libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t };
    // SAFETY: plain syscall on a stack value.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Linux: this process gets SIGKILL when its parent dies (so a worker dies
/// with distex). Elsewhere nothing. Async-signal-safe.
pub(crate) fn die_with_parent() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
}

/// Linux: this process gets SIGTERM when its parent dies (so that it can
/// still clean up: the worker's reaper). Elsewhere nothing.
pub(crate) fn terminate_with_parent() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    }
}

/// Sends `signal` to every process of group `pgid`; a group already gone
/// (ESRCH) is no error.
pub(crate) fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid addresses a process group.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// True once process `pid` (a child) has exited; it stays a zombie (not
/// reaped) so its pid and process group id stay reserved until it is.
pub(crate) fn exited_unreaped(pid: i32) -> bool {
    // SAFETY: waitid writes into the zeroed siginfo we own.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT);
        rc == 0 && info.si_pid() != 0
    }
}

/// Wakes a waiter the moment a child exits (a Linux pidfd), so short
/// workers are not charged a polling delay; elsewhere it just sleeps.
pub(crate) struct ExitWatch(Option<std::os::fd::OwnedFd>);

impl ExitWatch {
    /// Watches child `pid`.
    pub(crate) fn open(pid: i32) -> ExitWatch {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::FromRawFd;
            // SAFETY: pidfd_open(2) returns a new descriptor we own, or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
            if fd >= 0 {
                // SAFETY: fd is a fresh, valid descriptor.
                return ExitWatch(Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }));
            }
        }
        let _ = pid;
        ExitWatch(None)
    }

    /// Returns when the process exits or after `at_most`, whichever is first.
    pub(crate) fn wait(&self, at_most: Duration) {
        match &self.0 {
            Some(fd) => {
                use std::os::fd::AsRawFd;
                let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: one pollfd we own; a signal or timeout just returns.
                unsafe { libc::poll(&mut p, 1, at_most.as_millis().max(1) as libc::c_int) };
            }
            None => std::thread::sleep(at_most),
        }
    }
}

/// Installs `handler` for SIGINT and SIGTERM. The handler must be
/// async-signal-safe (an atomic store, nothing more).
pub(crate) fn on_interrupt(handler: extern "C" fn(i32)) {
    // SAFETY: installs a handler the caller promises is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as *const () as libc::sighandler_t);
    }
}

/// Linux: makes this process a child subreaper (`PR_SET_CHILD_SUBREAPER`):
/// a descendant whose parent exits is re-parented to this process instead
/// of to init, so a process that daemonized (`setsid`, double fork) can
/// still be found and killed. Elsewhere: an error (not supported).
pub(crate) fn become_subreaper() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// The live children of this process, each with its process group id, read
/// from `/proc/*/stat` (Linux; empty elsewhere). Zombies are included (they
/// still need reaping).
pub(crate) fn children() -> Vec<(i32, i32)> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and
            // parentheses, so the fields are counted after its last `)`.
            let rest = &stat[stat.rfind(')')? + 1..];
            let mut fields = rest.split_whitespace().skip(1);
            let ppid: i32 = fields.next()?.parse().ok()?;
            let pgrp: i32 = fields.next()?.parse().ok()?;
            (ppid == me).then_some((pid, pgrp))
        })
        .collect()
}

/// Sends `signal` to process `pid`; one already gone is no error.
pub(crate) fn signal_process(pid: i32, signal: i32) {
    // SAFETY: kill(2) on one pid.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Reaps one exited child, waiting for it when `block`; `None` when there
/// is none (no children, or none exited yet without `block`).
pub(crate) fn reap_any(block: bool) -> Option<(i32, i32)> {
    let mut status = 0;
    let flags = if block { 0 } else { libc::WNOHANG };
    // SAFETY: waitpid writes the status into our integer.
    let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
    (pid > 0).then_some((pid, status))
}

/// The exit status a shell would report for a raw wait status: the exit
/// code, or 128 + N for death by signal N.
pub(crate) fn shell_status(status: i32) -> i32 {
    if libc::WIFSIGNALED(status) { 128 + libc::WTERMSIG(status) } else { libc::WEXITSTATUS(status) }
}

/// This process's own process group id.
pub(crate) fn own_group() -> i32 {
    // SAFETY: getpgrp cannot fail.
    unsafe { libc::getpgrp() }
}

/// The name of a signal, for messages (`"signal"` when it is not one distex
/// expects a worker to die of).
pub(crate) fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}

/// This machine's 1-minute load average (`getloadavg(3)`), if it can be read.
pub(crate) fn load_average() -> Option<f64> {
    let mut loads = [0f64; 3];
    // SAFETY: the buffer holds the 1 value we ask for.
    let n = unsafe { libc::getloadavg(loads.as_mut_ptr(), 1) };
    (n >= 1).then_some(loads[0])
}

/// This machine's host name (`gethostname(2)`), or `None` when it cannot be read.
pub(crate) fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // on success (the caller's search for NUL also stops at the buffer's end).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// This machine's system and hardware names as `uname -s` and `uname -m`
/// print them (`Linux`, `x86_64`), from `uname(2)`.
pub(crate) fn platform() -> Option<(String, String)> {
    // SAFETY: utsname is plain data (arrays of C chars): all zeroes is valid.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct we own; on failure we read nothing.
    if unsafe { libc::uname(&mut names) } != 0 {
        return None;
    }
    let text = |field: &[libc::c_char]| {
        let bytes: Vec<u8> = field.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Some((text(&names.sysname), text(&names.machine)))
}

/// The real user id of this process (`getuid(2)`).
pub(crate) fn uid() -> u32 {
    // SAFETY: getuid cannot fail and touches no memory of ours.
    unsafe { libc::getuid() }
}

/// Whether any process of group `pgid` is still alive (`kill(-pgid, 0)`).
pub(crate) fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks that the group exists.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

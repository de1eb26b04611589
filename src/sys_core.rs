//! The operating-system calls distex makes outside `process`, in one place.
//!
//! Everything else in distex goes through std or a compiled-in crate; what
//! std does not offer (the load average, the host name, the user id, signals
//! to a whole process group) is wrapped here, once, with its `unsafe` block
//! and the reason it is sound. Each item says which systems it is built for,
//! so that a port to another OS starts by reading this file.
//!
//! (`process` has its own `sys` module; the two are meant to become one.)

/// This machine's 1-minute load average (`getloadavg(3)`), if it can be read.
#[cfg(unix)]
pub(crate) fn load_average() -> Option<f64> {
    let mut loads = [0f64; 3];
    // SAFETY: the buffer holds the 1 value we ask for.
    let n = unsafe { libc::getloadavg(loads.as_mut_ptr(), 1) };
    (n >= 1).then_some(loads[0])
}

/// This machine's host name (`gethostname(2)`), or `None` when it cannot be read.
#[cfg(unix)]
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

/// The real user id of this process (`getuid(2)`).
#[cfg(unix)]
pub(crate) fn uid() -> u32 {
    // SAFETY: getuid cannot fail and touches no memory of ours.
    unsafe { libc::getuid() }
}

/// A signal distex sends to a process group it started.
#[cfg(unix)]
#[derive(Debug, Clone, Copy)]
pub(crate) enum GroupSignal {
    /// SIGTERM: please stop.
    Terminate,
    /// SIGKILL: stop now.
    Kill,
}

/// Sends `signal` to every process in group `pgid` (`kill(-pgid, sig)`).
/// Errors (the group is already gone) are ignored: the goal is that it ends.
#[cfg(unix)]
pub(crate) fn signal_group(pgid: i32, signal: GroupSignal) {
    let sig = match signal {
        GroupSignal::Terminate => libc::SIGTERM,
        GroupSignal::Kill => libc::SIGKILL,
    };
    // SAFETY: kill(2) takes plain integers; the caller created the group.
    unsafe { libc::kill(-pgid, sig) };
}

/// Whether any process of group `pgid` is still alive (`kill(-pgid, 0)`).
#[cfg(unix)]
pub(crate) fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks that the group exists.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

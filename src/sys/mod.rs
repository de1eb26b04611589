//! The operating system's calls that std does not offer, behind one small
//! API: everything that needs `libc` lives here, so the rest of the crate
//! stays safe code that reads as what it does.
//!
//! * [`alloc`]: tuning glibc's allocator for the coordinator of the byte
//!   path (one arena, freed memory kept, heap made resident ahead of need);
//! * resource limits and parent-death signals applied to a worker between
//!   fork and exec ([`set_limit`], [`die_with_parent`]);
//! * process groups: signalling a group, seeing a process exit without
//!   reaping it, waking on its exit ([`ExitWatch`]);
//! * signal handlers that only set a flag ([`on_interrupt`]) and signal
//!   names for messages ([`signal_name`]);
//! * collecting what a worker daemonized: a child subreaper
//!   ([`become_subreaper`]), its [`children`], [`reap_any`];
//! * facts about this machine and user: [`load_average`], [`hostname`],
//!   [`platform`], [`uid`], and whether a process group is alive ([`group_alive`]).
//!
//! distex runs on Unix (Linux and macOS); Linux-only calls say what they do
//! elsewhere.

pub(crate) mod alloc;
#[cfg(unix)]
mod unix;

#[cfg(unix)]
pub(crate) use unix::*;

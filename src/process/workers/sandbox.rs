//! `--sandbox`: Landlock plus a private network namespace, or a refusal.
//!
//! The restrictions are applied by `distex __sandbox -- PROGRAM ARGS...`,
//! a fresh single-threaded process that unshares a user and network
//! namespace (so the worker sees only a loopback interface that is down),
//! restricts itself with Landlock (read and execute anywhere, write only
//! below its working directory and to /dev/null), then execs the worker.
//! Restrictions are inherited across exec and by every descendant.
//!
//! Before a run, the coordinator starts `distex __sandbox -- /bin/true`
//! once: when the kernel cannot enforce both, distex refuses to run with a
//! clear error rather than run with weaker isolation.

use std::ffi::OsString;
use std::path::Path;

/// Entry point of `distex __sandbox -- PROGRAM ARGS...`; returns only on error.
pub(crate) fn main(args: &[OsString]) -> u8 {
    let Some((program, rest)) = args.split_first() else {
        eprintln!("distex __sandbox: expected a program to run");
        return 2;
    };
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("distex: sandbox: cannot read the working directory: {e}");
            return 126;
        }
    };
    if let Err(e) = enter(&cwd) {
        eprintln!("distex: sandbox: {e}");
        return 126;
    }
    use std::os::unix::process::CommandExt;
    let e = std::process::Command::new(program).args(rest).exec();
    eprintln!("distex: sandbox: cannot run {}: {e}", program.to_string_lossy());
    127
}

/// Restricts the current process: private network, writes only below `dir`.
#[cfg(target_os = "linux")]
pub(crate) fn enter(dir: &Path) -> Result<(), String> {
    use landlock::{
        ABI, Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
        path_beneath_rules,
    };
    // This process has a single thread.
    if let Err(e) = crate::sys::unshare_user_and_network() {
        return Err(format!(
            "cannot create a private network namespace ({}); unprivileged user namespaces may be disabled \
             (sysctl kernel.unprivileged_userns_clone / user.max_user_namespaces). Run without --sandbox to accept weaker isolation",
            e
        ));
    }
    let abi = ABI::V3;
    let fail = |e: landlock::RulesetError| {
        format!(
            "Landlock is not available in this kernel ({e}); it needs Linux 6.2 or newer with Landlock enabled. Run without --sandbox to accept weaker isolation"
        )
    };
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(fail)?
        .create()
        .map_err(fail)?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))
        .map_err(fail)?
        .add_rules(path_beneath_rules([dir], AccessFs::from_all(abi)))
        .map_err(fail)?
        .add_rules(path_beneath_rules(["/dev/null"], AccessFs::from_file(abi)))
        .map_err(fail)?
        .restrict_self()
        .map_err(fail)?;
    if status.ruleset != RulesetStatus::FullyEnforced {
        return Err(
            "Landlock could not be fully enforced by this kernel; run without --sandbox to accept weaker isolation"
                .into(),
        );
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn enter(_dir: &Path) -> Result<(), String> {
    Err("--sandbox needs Linux (Landlock and network namespaces); this system has neither. Run without --sandbox to accept weaker isolation".into())
}

/// Checks once, in a throwaway process, that the sandbox can be entered here.
pub(crate) fn check(scratch: &Path) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the distex binary: {e}"))?;
    let out = std::process::Command::new(exe)
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
    Err(format!("--sandbox is not available here: {msg}"))
}

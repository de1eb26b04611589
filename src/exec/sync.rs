//! Workspace sync: mirror the project to a node with rsync over the node's
//! SSH master, and bring outputs back.
//!
//! The argument lists are built by pure functions ([`push_args`],
//! [`return_args`]) so that what is sent, and what never is, can be
//! unit-tested without a network.
//!
//! * The project is the git top level (the nearest ancestor holding
//!   `.git`), else the current directory. Its mirror is
//!   `WORKDIR/<name>-<hash of the local path>`: stable across runs, so
//!   rsync only sends what changed, and distinct for two checkouts with
//!   the same name.
//! * `.gitignore` files and `.distexignore` files are honoured at every
//!   level (rsync dir-merge filters); `.git/` is not sent.
//! * Secrets are never sent ([`SECRET_PATTERNS`]), whatever the ignore
//!   files say.
//! * `--delete` removes files on the mirror that were deleted locally.
//!   Excluded files on the mirror are kept (rsync protects them), so the
//!   node's own `target/` or `node_modules/` survive between runs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::remote::sh_quote;
use super::ssh::fnv1a;

/// File patterns that are never synced to a node (rsync syntax; a pattern
/// without `/` matches at any depth).
pub(crate) const SECRET_PATTERNS: &[&str] = &[
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.keystore",
    "*.jks",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".netrc",
    ".npmrc",
    ".pypirc",
    ".ssh/",
    ".aws/",
    ".gnupg/",
    ".docker/config.json",
    "*.kdbx",
    "credentials.json",
];

/// Where the project lives here and there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Project {
    /// The local project root.
    pub(crate) root: PathBuf,
    /// The current directory relative to `root` (empty at the root).
    pub(crate) subdir: PathBuf,
    /// This machine's name (config `local.name`): part of the mirror's
    /// hash, so two machines syncing the same path never share a mirror.
    pub(crate) origin: String,
}

impl Project {
    /// The project containing `cwd`: the nearest ancestor with `.git`, else `cwd`.
    pub(crate) fn find(cwd: &Path, origin: &str) -> Project {
        let root = cwd.ancestors().find(|d| d.join(".git").exists()).unwrap_or(cwd).to_path_buf();
        let subdir = cwd.strip_prefix(&root).unwrap_or(Path::new("")).to_path_buf();
        Project { root, subdir, origin: origin.to_string() }
    }

    /// The mirror directory on a node, under `workdir` (home-relative
    /// unless absolute): `WORKDIR/<name>-<hash>`.
    pub(crate) fn mirror(&self, workdir: &str) -> String {
        let name: String = self
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root".into())
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
            .collect();
        let hash = fnv1a(format!("{}:{}", self.origin, self.root.display()).as_bytes()) as u32;
        format!("{}/{name}-{hash:08x}", workdir.trim_start_matches("~/").trim_end_matches('/'))
    }

    /// The directory to run in on the node: the mirror plus our subdirectory.
    pub(crate) fn remote_cwd(&self, workdir: &str) -> String {
        let mirror = self.mirror(workdir);
        if self.subdir.as_os_str().is_empty() { mirror } else { format!("{mirror}/{}", self.subdir.display()) }
    }
}

/// `ssh` as rsync should call it: through the master's control socket.
fn rsh(control_socket: &Path) -> String {
    // rsync splits this string on spaces and honours quotes; "none" is the
    // host name rsync appends, ignored once the socket is used, and port 9
    // makes sure no new connection is ever opened if the master is gone.
    format!("ssh -S {} -o BatchMode=yes -p 9", sh_quote(&control_socket.display().to_string()))
}

/// rsync arguments that mirror `project.root` to `mirror` on the node.
pub(crate) fn push_args(project: &Project, mirror: &str, control_socket: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-a", "--delete", "--compress", "--partial"].map(OsString::from).to_vec();
    args.push(OsString::from("-e"));
    args.push(rsh(control_socket).into());
    // Secrets first: an exclude wins over any later include.
    for pattern in SECRET_PATTERNS {
        args.push(format!("--exclude={pattern}").into());
    }
    args.push("--exclude=/.git".into());
    args.push("--filter=:- .gitignore".into());
    args.push("--filter=:- .distexignore".into());
    // The mirror's parent may not exist yet: create it with the same round
    // trip. `cd` first: relative workdirs are relative to $HOME, as for runs.
    args.push(format!("--rsync-path=cd && mkdir -p {} && rsync", sh_quote(mirror)).into());
    let mut src = project.root.clone().into_os_string();
    src.push("/");
    args.push(src);
    args.push(format!("none:{mirror}/").into());
    args
}

/// rsync arguments that bring `paths` (relative to the current directory,
/// i.e. `project.subdir`) back from the mirror into the local project.
pub(crate) fn return_args(project: &Project, mirror: &str, paths: &[String], control_socket: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-a", "--relative", "--compress"].map(OsString::from).to_vec();
    args.push(OsString::from("-e"));
    args.push(rsh(control_socket).into());
    args.push("--rsync-path=cd && rsync".into());
    for path in paths {
        let rel = project.subdir.join(path.trim_start_matches("./"));
        // `/./` tells rsync --relative where the kept part of the path starts.
        args.push(format!("none:{mirror}/./{}", rel.display()).into());
    }
    let mut dest = project.root.clone().into_os_string();
    dest.push("/");
    args.push(dest);
    args
}

/// Checks that a `--return` path stays inside the project.
pub(crate) fn check_return_path(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if p.is_absolute() || p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(format!("--return {path}: must be a relative path inside the project (no leading / or ..)"));
    }
    Ok(())
}

/// Runs rsync; on failure returns its stderr.
pub(crate) async fn rsync(args: Vec<OsString>) -> Result<(), String> {
    let out = tokio::process::Command::new("rsync")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run rsync ({e}); install it (apt-get install rsync / brew install rsync)"))?;
    if out.status.success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&out.stderr);
        let text = text.trim();
        Err(format!("rsync failed ({}): {}", out.status, if text.is_empty() { "no message" } else { text }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(args: &[OsString]) -> Vec<String> {
        args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn project_root_is_the_git_top_level() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let p = Project::find(&dir.path().join("a/b"), "here");
        assert_eq!(p.root, dir.path());
        assert_eq!(p.subdir, Path::new("a/b"));
        assert!(p.remote_cwd("/w").ends_with("/a/b"));
        assert!(p.remote_cwd("~/w/").starts_with("w/"));
    }

    #[test]
    fn push_never_sends_secrets_and_deletes() {
        let p = Project { root: "/p".into(), subdir: "".into(), origin: "h".into() };
        let args = strs(&push_args(&p, "w/p-1", Path::new("/run/x/master")));
        for must in [
            "--delete",
            "--exclude=.env",
            "--exclude=*.pem",
            "--exclude=id_rsa*",
            "--filter=:- .gitignore",
            "--filter=:- .distexignore",
        ] {
            assert!(args.iter().any(|a| a == must), "missing {must} in {args:?}");
        }
        assert_eq!(args[args.len() - 2..], ["/p/".to_string(), "none:w/p-1/".to_string()]);
        let secrets = args.iter().position(|a| a == "--exclude=.env").unwrap();
        let ignores = args.iter().position(|a| a == "--filter=:- .gitignore").unwrap();
        assert!(secrets < ignores, "secret excludes must come first");
    }

    #[test]
    fn returns_are_relative_to_the_current_subdirectory() {
        let p = Project { root: "/p".into(), subdir: "sub".into(), origin: "h".into() };
        let args = strs(&return_args(&p, "w/m", &["out/a.txt".into()], Path::new("/s")));
        assert!(args.contains(&"none:w/m/./sub/out/a.txt".to_string()));
        assert_eq!(args.last().unwrap(), "/p/");
        assert!(check_return_path("../etc").is_err());
        assert!(check_return_path("/etc").is_err());
        assert!(check_return_path("target/release/app").is_ok());
    }
}

//! Workspace sync: mirror the project to a node with rsync over the node's
//! SSH master, and bring outputs back. It ships the project and nothing
//! else.
//!
//! * The project is the git repository around the current directory
//!   ([`Project::resolve`]), or the directory `--sync-root` names. Outside
//!   a repository, or when the repository's root is the home directory or
//!   `/` (a dotfiles repository), there is no project to mirror: distex
//!   says so instead of shipping the home directory.
//! * The file set is what git sees: tracked files plus untracked files git
//!   does not ignore (`git ls-files -co --exclude-standard`), so git's own
//!   ignore semantics hold (negations, nested `.gitignore`,
//!   `.git/info/exclude`, the global excludes file). Nested repositories
//!   are listed the same way from their own root.
//! * `.distexignore` files add ignore rules (git's syntax and semantics)
//!   that only distex reads.
//! * Secrets are never sent, whatever git says ([`SECRET_PATTERNS`],
//!   case-insensitive, any depth), unless the config's `sync.include`
//!   names the path; what was held back is reported.
//! * rsync gets the list (`--files-from`); files sent to this mirror last
//!   time and gone now are listed too and deleted there
//!   (`--delete-missing-args`), while the node's own files (its `target/`,
//!   `node_modules/`) are never touched.
//!
//! The mirror is `WORKDIR/<name>-<hash of the local path>`: stable across
//! runs, so rsync only sends what changed, and distinct for two checkouts
//! with the same name. The argument lists are built by pure functions
//! ([`push_args`], [`return_args`]) so they can be unit-tested.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::ssh::fnv1a;
use crate::route::sh_quote;

/// Paths that are never synced to a node: shell-style globs (`*` within
/// one path component), matched case-insensitively against every
/// component (or run of components, for patterns with `/`) of a path, so
/// `.ssh` holds back `a/.ssh/config` and `*.pem` holds back `KEY.PEM`.
pub(crate) const SECRET_PATTERNS: &[&str] = &[
    ".env*",
    ".envrc",
    ".pgpass",
    ".netrc",
    ".npmrc",
    ".pypirc",
    ".vault-token",
    ".git-credentials",
    "*.tfstate*",
    "*.tfvars",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.keystore",
    "*.jks",
    "*.kdbx",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "credentials.json",
    ".aws",
    ".ssh",
    ".gnupg",
    ".kube",
    ".docker/config.json",
    ".cargo/credentials*",
    ".git",
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
    /// The project containing `cwd`: the directory `sync_root` names, else
    /// the root of the git repository around `cwd`. Err says why there is
    /// no project to mirror.
    pub(crate) fn resolve(cwd: &Path, sync_root: Option<&Path>, origin: &str) -> Result<Project, String> {
        let root = match sync_root {
            Some(dir) => std::fs::canonicalize(dir).map_err(|e| format!("--sync-root {}: {e}", dir.display()))?,
            None => git_root(cwd)?,
        };
        let cwd = std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_path_buf());
        let Ok(subdir) = cwd.strip_prefix(&root).map(Path::to_path_buf) else {
            return Err(format!("--sync-root {}: the current directory is not inside it", root.display()));
        };
        Ok(Project { root, subdir, origin: origin.to_string() })
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

/// The top level of the git repository around `cwd`, unless it is the
/// home directory or `/`.
fn git_root(cwd: &Path) -> Result<PathBuf, String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(cwd)
        .args(["rev-parse", "--show-toplevel"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let root = match out {
        Ok(o) if o.status.success() => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim_end_matches('\n')),
        Ok(_) => return Err(format!("{} is not inside a git repository", cwd.display())),
        Err(e) => return Err(format!("cannot run git ({e}), which decides what the project is")),
    };
    let home = std::env::var_os("HOME").and_then(|h| std::fs::canonicalize(h).ok());
    if root == Path::new("/") || Some(&root) == home.as_ref() {
        return Err(format!(
            "the git repository around {} has its root at {} (a dotfiles repository?), which is not a project",
            cwd.display(),
            root.display()
        ));
    }
    Ok(root)
}

/// What to send, and what was held back as a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FileSet {
    /// Paths relative to the root.
    pub(crate) files: Vec<String>,
    pub(crate) held_back: Vec<String>,
}

/// The secret filter: [`SECRET_PATTERNS`] minus the user's `sync.include`.
pub(crate) struct Secrets {
    deny: Vec<regex::Regex>,
    allow: Vec<regex::Regex>,
}

impl Secrets {
    /// `include`: globs of paths (relative to the project root) to send
    /// even though they look like secrets.
    pub(crate) fn new(include: &[String]) -> Secrets {
        let deny = SECRET_PATTERNS.iter().map(|p| glob_regex(p, false)).collect();
        let allow =
            include.iter().map(|p| glob_regex(p.trim_start_matches("./").trim_end_matches('/'), true)).collect();
        Secrets { deny, allow }
    }

    /// Whether `path` (relative, `/`-separated) must stay here.
    pub(crate) fn holds_back(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        self.deny.iter().any(|r| r.is_match(path)) && !self.allow.iter().any(|r| r.is_match(path))
    }
}

/// A glob as a case-insensitive regex: `anchored` matches the whole path,
/// otherwise any run of whole components.
fn glob_regex(glob: &str, anchored: bool) -> regex::Regex {
    let body: String = glob.split('*').map(regex::escape).collect::<Vec<_>>().join("[^/]*");
    let pattern = if anchored { format!("(?i)^{body}$") } else { format!("(?i)(^|/){body}(/|$)") };
    regex::Regex::new(&pattern).expect("an escaped glob is a valid regex")
}

/// The files of `root` that git sees (or, outside a repository, every
/// file below it), split into what to send and what is held back.
pub(crate) fn file_set(root: &Path, secrets: &Secrets) -> Result<FileSet, String> {
    let mut listed = Vec::new();
    list_files(root, "", &mut listed, 0)?;
    listed.sort();
    listed.dedup();
    let (held_back, files) = listed.into_iter().partition(|p| secrets.holds_back(p));
    Ok(FileSet { files, held_back })
}

/// Lists `dir` (= `root/prefix`): through git when it is inside a
/// repository, else by walking it. Nested repositories are listed from
/// their own root (their `.git` is listed, for the secret filter to hold
/// it back and report it).
fn list_files(root: &Path, prefix: &str, out: &mut Vec<String>, depth: usize) -> Result<(), String> {
    let dir = root.join(prefix);
    if depth > 32 {
        return Ok(());
    }
    let listing = match ls_files(&dir, &["--exclude-standard"]) {
        Ok(listing) => listing,
        Err(why) if why.contains("not a git repository") => return walk(root, prefix, out),
        Err(why) => return Err(why),
    };
    // `.distexignore` files: more ignore rules, with git's semantics, that
    // only distex reads (the files git tracks included).
    let skipped: std::collections::HashSet<String> =
        if listing.iter().any(|e| e == ".distexignore" || e.ends_with("/.distexignore")) {
            ls_files(&dir, &["--ignored", "--exclude-per-directory=.distexignore"])?.into_iter().collect()
        } else {
            Default::default()
        };
    for entry in listing.into_iter().filter(|e| !skipped.contains(e)) {
        let path = format!("{prefix}{entry}");
        if let Some(nested) = path.strip_suffix('/') {
            // An untracked nested repository (git lists only its directory).
            out.push(format!("{nested}/.git"));
            list_files(root, &format!("{nested}/"), out, depth + 1)?;
        } else if root.join(&path).join(".git").exists() {
            // A submodule: its files, from its own index.
            out.push(format!("{path}/.git"));
            list_files(root, &format!("{path}/"), out, depth + 1)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// `git ls-files -z --cached --others` in `dir` with `extra` options:
/// paths relative to `dir`.
fn ls_files(dir: &Path, extra: &[&str]) -> Result<Vec<String>, String> {
    let listing = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["ls-files", "-z", "--cached", "--others"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git ls-files in {}: {e}", dir.display()))?;
    if !listing.status.success() {
        let why = String::from_utf8_lossy(&listing.stderr);
        return Err(format!("git ls-files failed in {}: {}", dir.display(), why.trim()));
    }
    Ok(listing
        .stdout
        .split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect())
}

/// Every file and symlink below `root/prefix` (symlinks not followed).
fn walk(root: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), String> {
    let dir = root.join(prefix);
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}{name}");
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(root, &format!("{path}/"), out)?,
            Ok(_) => out.push(path),
            Err(_) => {}
        }
    }
    Ok(())
}

/// `ssh` as rsync should call it: through the master's control socket.
pub(crate) fn rsh(control_socket: &Path) -> String {
    // rsync splits this string on spaces and honours quotes: inside single
    // quotes, a doubled quote is a quote (rsync's rule, not the shell's).
    // "none" is the host name rsync appends, ignored once the socket is
    // used, and port 9 makes sure no new connection is ever opened if the
    // master is gone.
    let socket = control_socket.display().to_string().replace('\'', "''");
    format!("ssh -S '{socket}' -o BatchMode=yes -p 9")
}

/// rsync arguments that send the files listed (NUL-separated) in
/// `list_file` from `project.root` to `mirror` on the node, deleting there
/// the listed files that no longer exist here.
pub(crate) fn push_args(project: &Project, mirror: &str, control_socket: &Path, list_file: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> =
        ["-a", "--compress", "--partial", "--from0", "--delete-missing-args"].map(OsString::from).to_vec();
    let mut files_from = OsString::from("--files-from=");
    files_from.push(list_file);
    args.push(files_from);
    args.push(OsString::from("-e"));
    args.push(rsh(control_socket).into());
    // The mirror may not exist yet: create it with the same round trip.
    // `cd` first: relative workdirs are relative to $HOME, as for runs.
    args.push(format!("--rsync-path=cd && mkdir -p {} && rsync", sh_quote(mirror)).into());
    let mut src = project.root.clone().into_os_string();
    src.push("/");
    args.push(src);
    args.push(format!("none:{mirror}/").into());
    args
}

/// rsync arguments that bring `paths` (relative to the current directory,
/// i.e. `project.subdir`) back from the mirror into the local project.
/// Symlinks that point outside the mirror (or anywhere absolute) are not
/// brought back (`--safe-links`): a node cannot plant a link here that
/// leads out of the project.
pub(crate) fn return_args(project: &Project, mirror: &str, paths: &[String], control_socket: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-a", "--relative", "--compress", "--safe-links"].map(OsString::from).to_vec();
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

/// The list for one push: this run's files, plus the files sent to the
/// same mirror last time that are gone now (rsync deletes those there).
/// `sent_before` is the previous list, `None` for a first push.
pub(crate) fn push_list(files: &[String], sent_before: Option<&str>) -> Vec<u8> {
    let now: std::collections::HashSet<&str> = files.iter().map(String::as_str).collect();
    let gone = sent_before.into_iter().flat_map(|t| t.split('\0')).filter(|p| !p.is_empty() && !now.contains(p));
    let mut list = Vec::new();
    for path in files.iter().map(String::as_str).chain(gone) {
        list.extend_from_slice(path.as_bytes());
        list.push(0);
    }
    list
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
    fn secrets_are_held_back_at_any_depth_and_in_any_case() {
        let s = Secrets::new(&["config/dev.env".into()]);
        for secret in [
            ".env",
            ".env.local",
            "a/.envrc",
            ".pgpass",
            ".vault-token",
            "infra/terraform.tfstate",
            "infra/terraform.tfstate.backup",
            "prod.tfvars",
            ".cargo/credentials.toml",
            "ID_RSA",
            "keys/key.PEM",
            "vendor/lib/.git/config",
            "vendor/lib/.git",
            ".ssh/known_hosts",
            "x/.kube/config",
            ".docker/config.json",
            ".git-credentials",
        ] {
            assert!(s.holds_back(secret), "{secret} must be held back");
        }
        for fine in ["src/main.rs", "README.md", "docs/keys.md", "environment.txt", "config/dev.env", ".gitignore"] {
            assert!(!s.holds_back(fine), "{fine} must be sent");
        }
    }

    #[test]
    fn a_push_list_deletes_what_was_sent_before_and_is_gone() {
        let list = push_list(&["a".into(), "b".into()], Some("a\0old\0"));
        assert_eq!(list, b"a\0b\0old\0");
        assert_eq!(push_list(&["a".into()], None), b"a\0");
    }

    #[test]
    fn push_sends_the_listed_files_only() {
        let p = Project { root: "/p".into(), subdir: "".into(), origin: "h".into() };
        let args = strs(&push_args(&p, "w/p-1", Path::new("/run/it's/master"), Path::new("/run/l")));
        for must in ["--from0", "--files-from=/run/l", "--delete-missing-args"] {
            assert!(args.iter().any(|a| a == must), "missing {must} in {args:?}");
        }
        assert!(!args.iter().any(|a| a == "--delete" || a == "-r"), "{args:?}");
        assert!(args.contains(&"ssh -S '/run/it''s/master' -o BatchMode=yes -p 9".to_string()), "{args:?}");
        assert_eq!(args[args.len() - 2..], ["/p/".to_string(), "none:w/p-1/".to_string()]);
    }

    #[test]
    fn returns_are_relative_to_the_current_subdirectory() {
        let p = Project { root: "/p".into(), subdir: "sub".into(), origin: "h".into() };
        let args = strs(&return_args(&p, "w/m", &["out/a.txt".into()], Path::new("/s")));
        assert!(args.contains(&"none:w/m/./sub/out/a.txt".to_string()));
        assert!(args.contains(&"--safe-links".to_string()));
        assert_eq!(args.last().unwrap(), "/p/");
        assert!(check_return_path("../etc").is_err());
        assert!(check_return_path("/etc").is_err());
        assert!(check_return_path("target/release/app").is_ok());
    }
}

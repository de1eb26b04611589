//! The plugin's `bin/distex` launcher: finding, installing and running the
//! helper the way Claude Code's Bash tool and hooks call it.
//!
//! A real release build takes minutes, so most tests put a stand-in `cargo`
//! first on PATH: it records its arguments, waits while a `hold` file
//! exists (a build that is still running), leaves a heap of intermediates
//! in its target directory, and "builds" a tiny helper that echoes its
//! arguments with a version taken from a file. The download tests serve a
//! tarball of the real distex binary from an HTTP server on 127.0.0.1.
//! Everything else (the launcher, sh, find, setsid, curl, tar, sha256sum) is
//! real.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A copy of the plugin's launcher in a scratch plugin directory, with
/// source files to compare against and the stand-in cargo.
struct Plugin {
    dir: tempfile::TempDir,
}

impl Plugin {
    fn new() -> Plugin {
        let dir = tempfile::Builder::new().prefix("dxl").tempdir_in("/tmp").unwrap();
        let root = dir.path().join("plugin");
        for sub in ["bin", "src", ".claude-plugin", "release"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        crate::util::copy_file(&repo.join("bin/distex"), &root.join("bin/distex"));
        std::fs::copy(repo.join(".claude-plugin/plugin.json"), root.join(".claude-plugin/plugin.json")).unwrap();
        for file in ["src/main.rs", "Cargo.toml", "Cargo.lock"] {
            std::fs::write(root.join(file), "").unwrap();
        }
        // Sources from long ago: a helper installed now is fresh.
        for file in ["src/main.rs", "Cargo.toml", "Cargo.lock"] {
            assert!(Command::new("touch").args(["-d", "2001-01-01"]).arg(root.join(file)).status().unwrap().success());
        }
        let fake = dir.path().join("fakebin");
        std::fs::create_dir_all(&fake).unwrap();
        std::fs::write(dir.path().join("version"), "v1").unwrap();
        // The helper the stand-in "builds": hook calls are logged and answered
        // with nothing (a command that stays local), the rest echoed.
        std::fs::write(
            dir.path().join("helper.template"),
            format!(
                "#!/bin/sh\nif [ \"$1\" = hook ]; then cat >> '{d}/hook-inputs'; echo >> '{d}/hook-inputs'; exit 0; fi\n\
                 echo \"helper-VERSION: $*\"\n[ \"$1\" = fail ] && exit 2\nexit 0\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        executable(
            &fake.join("cargo"),
            &format!(
                "#!/bin/sh\necho \"$*\" >> '{d}/cargo.log'\necho 'Compiling distex (stand-in)'\n\
                 while [ -e '{d}/hold' ]; do sleep 0.05; done\n\
                 mkdir -p \"$CARGO_TARGET_DIR/release/deps\"\n\
                 head -c 100000 /dev/zero > \"$CARGO_TARGET_DIR/release/deps/intermediate.rlib\"\n\
                 sed \"s/VERSION/$(cat '{d}/version')/\" '{d}/helper.template' > \"$CARGO_TARGET_DIR/release/distex\"\n\
                 chmod +x \"$CARGO_TARGET_DIR/release/distex\"\n",
                d = dir.path().display()
            ),
        );
        Plugin { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("plugin")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The helper the launcher installs when Claude Code gives a data dir.
    fn helper(&self) -> PathBuf {
        self.data().join("bin/distex")
    }

    /// Makes the stand-in cargo wait until [`Plugin::release`] is called.
    fn hold(&self) {
        std::fs::write(self.dir.path().join("hold"), "").unwrap();
    }

    fn release(&self) {
        let _ = std::fs::remove_file(self.dir.path().join("hold"));
    }

    /// Arguments of every cargo call so far.
    fn cargo_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("cargo.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Runs the launcher with a clean environment and the plugin data dir;
    /// `with_cargo` puts the stand-in on PATH.
    fn run(&self, args: &[&str], env: &[(&str, &Path)], with_cargo: bool) -> Output {
        self.run_with_input(args, env, with_cargo, "")
    }

    fn run_with_input(&self, args: &[&str], env: &[(&str, &Path)], with_cargo: bool, input: &str) -> Output {
        let path = if with_cargo {
            format!("{}:/usr/bin:/bin", self.dir.path().join("fakebin").display())
        } else {
            "/usr/bin:/bin".into()
        };
        let mut cmd = Command::new(self.root().join("bin/distex"));
        cmd.args(args)
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.path())
            .env("CLAUDE_PLUGIN_DATA", self.data())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        // A launcher that does not read its input may be gone already.
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
        child.wait_with_output().unwrap()
    }

    /// Waits until an install has finished: the lock is gone and there is
    /// a helper or a failure record. (Replacing an existing helper: wait
    /// for the new one's inode with [`Plugin::wait_for_new_helper`].)
    fn wait_for_install(&self) {
        let lock = self.data().join("build.lock");
        let start = Instant::now();
        let done = || !lock.exists() && (self.helper().exists() || self.data().join("build.failed").exists());
        while !done() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(25));
        }
        assert!(done(), "the install never finished; log:\n{}", self.log());
    }

    fn wait_for_new_helper(&self, old_inode: u64) {
        use std::os::unix::fs::MetadataExt;
        let start = Instant::now();
        let inode = || std::fs::metadata(self.helper()).map(|m| m.ino()).unwrap_or(old_inode);
        while (inode() == old_inode || self.data().join("build.lock").exists())
            && start.elapsed() < Duration::from_secs(60)
        {
            std::thread::sleep(Duration::from_millis(25));
        }
        assert_ne!(inode(), old_inode, "the new helper never came; log:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data().join("build.log")).unwrap_or_default()
    }

    /// Waits until the stand-in cargo has been started once.
    fn wait_for_cargo(&self) {
        let start = Instant::now();
        while self.cargo_calls().is_empty() && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Makes every source newer than the helper.
    fn touch_sources(&self) {
        std::fs::write(self.root().join("src/main.rs"), "// changed").unwrap();
    }
}

fn executable(path: &Path, text: &str) {
    crate::util::write_executable(path, text);
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn hook_input(session: &str) -> String {
    format!(
        r#"{{"session_id":"{session}","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{{"command":"make"}}}}"#
    )
}

/// Sizes of every file under `dir`.
fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            out.extend(files_under(&entry.path()));
        } else {
            out.push((entry.path(), meta.len()));
        }
    }
    out
}

#[test]
fn with_no_helper_a_command_is_answered_at_once_while_it_builds_in_the_background() {
    let plugin = Plugin::new();
    plugin.hold();
    let out = plugin.run(&["nodes"], &[], true);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let log = plugin.data().join("build.log");
    assert!(
        stderr(&out).contains("distex: the helper is being built, started ")
            && stderr(&out).contains(&format!("s ago, log: {}", log.display())),
        "{}",
        stderr(&out)
    );
    // Still building: the next command is answered the same way, and no second build starts.
    std::thread::sleep(Duration::from_millis(300));
    let again = plugin.run(&["nodes"], &[], true);
    assert_eq!(again.status.code(), Some(75), "{}", stderr(&again));
    assert_eq!(plugin.cargo_calls().len(), 1, "{:?}", plugin.cargo_calls());
    assert!(std::fs::read_to_string(&log).unwrap().contains("Compiling distex (stand-in)"));
    plugin.release();
    plugin.wait_for_install();
    let ready = plugin.run(&["nodes"], &[], true);
    assert_eq!(stdout(&ready), "helper-v1: nodes\n", "{}", stderr(&ready));
    assert_eq!(stderr(&ready), "", "a fresh helper is not rebuilt");
    let calls = plugin.cargo_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].starts_with("build --release --locked"), "{calls:?}");
    // The data dir keeps the helper, not the build's intermediates.
    let kept: Vec<String> = files_under(&plugin.data())
        .into_iter()
        .map(|(p, _)| p.strip_prefix(plugin.data()).unwrap().display().to_string())
        .collect();
    assert!(kept.contains(&"bin/distex".to_string()), "{kept:?}");
    assert!(!kept.iter().any(|p| p.ends_with(".rlib") || p.starts_with("work")), "{kept:?}");
    assert!(!plugin.root().join(".helper").exists(), "nothing is installed inside the plugin directory");
}

#[test]
fn a_stale_helper_keeps_running_while_the_new_one_is_built_beside_it_and_renamed_in() {
    let plugin = Plugin::new();
    plugin.run(&["nodes"], &[], true);
    plugin.wait_for_install();
    use std::os::unix::fs::MetadataExt;
    let old_inode = std::fs::metadata(plugin.helper()).unwrap().ino();
    plugin.touch_sources();
    std::fs::write(plugin.dir.path().join("version"), "v2").unwrap();
    plugin.hold();
    // The old helper answers now; the new one builds beside it.
    let out = plugin.run(&["nodes"], &[], true);
    assert_eq!((out.status.code(), stdout(&out)), (Some(0), "helper-v1: nodes\n".to_string()), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(300));
    let during = plugin.run(&["route", "x"], &[], true);
    assert_eq!(stdout(&during), "helper-v1: route x\n");
    assert_eq!(plugin.cargo_calls().len(), 2, "one rebuild, however many commands: {:?}", plugin.cargo_calls());
    plugin.release();
    plugin.wait_for_new_helper(old_inode);
    let after = plugin.run(&["nodes"], &[], true);
    assert_eq!(stdout(&after), "helper-v2: nodes\n", "{}", stderr(&after));
    assert_ne!(std::fs::metadata(plugin.helper()).unwrap().ino(), old_inode, "swapped in by rename, not rewritten");
    assert_eq!(plugin.cargo_calls().len(), 2);
}

#[test]
fn the_exit_status_is_the_helpers() {
    let plugin = Plugin::new();
    plugin.run(&["nodes"], &[], true);
    plugin.wait_for_install();
    let out = plugin.run(&["fail"], &[], true);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn hook_mode_without_a_helper_tells_each_session_once_and_never_fails() {
    let plugin = Plugin::new();
    plugin.hold();
    plugin.run(&["nodes"], &[], true); // a build is running
    plugin.wait_for_cargo();
    let first = plugin.run_with_input(&["hook", "pre-tool-use"], &[], true, &hook_input("s1"));
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let answer: serde_json::Value = serde_json::from_str(&stdout(&first)).expect("one JSON object");
    let message = answer["systemMessage"].as_str().unwrap();
    assert!(message.starts_with("distex: the helper is being built, started "), "{message}");
    assert!(message.contains("run on this machine, unrouted"), "{message}");
    assert!(answer.get("hookSpecificOutput").is_none(), "no decision, no rewrite: {answer}");
    let second = plugin.run_with_input(&["hook", "pre-tool-use"], &[], true, &hook_input("s1"));
    assert_eq!((second.status.code(), stdout(&second)), (Some(0), String::new()), "once per session");
    let other = plugin.run_with_input(&["hook", "pre-tool-use"], &[], true, &hook_input("s2"));
    assert!(stdout(&other).contains("systemMessage"), "another session is told too");
    assert_eq!(plugin.cargo_calls().len(), 1, "the hook never starts a build");
    plugin.release();
    plugin.wait_for_install();
    // Ready now: the session that was told hears so on its next event, once.
    let ready = plugin.run_with_input(&["hook", "pre-tool-use"], &[], true, &hook_input("s1"));
    let answer: serde_json::Value = serde_json::from_str(&stdout(&ready)).unwrap_or_else(|e| panic!("{e}: {ready:?}"));
    assert!(answer["systemMessage"].as_str().unwrap().contains("the helper is ready"), "{answer}");
    let later = plugin.run_with_input(&["hook", "pre-tool-use"], &[], true, &hook_input("s1"));
    assert_eq!(stdout(&later), "", "then the helper answers alone");
    let inputs = std::fs::read_to_string(plugin.dir.path().join("hook-inputs")).unwrap();
    assert_eq!(
        inputs.lines().filter(|l| l.contains(r#""session_id":"s1""#)).count(),
        2,
        "the helper read both inputs whole: {inputs}"
    );
    // A helper that fails (a stale binary exits 2, which would block the command).
    let failing = plugin.dir.path().join("failing");
    executable(&failing, "#!/bin/sh\necho 'distex: unknown subcommand' >&2\nexit 2\n");
    let out = plugin.run_with_input(&["hook", "pre-tool-use"], &[("DISTEX_BIN", &failing)], true, &hook_input("s3"));
    assert_eq!((out.status.code(), stdout(&out)), (Some(0), String::new()), "{}", stderr(&out));
}

#[test]
fn session_start_tells_user_and_claude_and_builds_for_the_bash_tool_to_find() {
    let plugin = Plugin::new();
    plugin.hold();
    let input = r#"{"session_id":"abc-1","hook_event_name":"SessionStart","source":"startup"}"#;
    let out = plugin.run_with_input(&["--plugin-session-start"], &[], true, input);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("SessionStart answers JSON");
    let user = answer["systemMessage"].as_str().unwrap();
    assert!(user.contains("building its helper in the background") && user.contains("build.log"), "{user}");
    assert_eq!(answer["hookSpecificOutput"]["hookEventName"], "SessionStart");
    assert!(answer["hookSpecificOutput"]["additionalContext"].as_str().unwrap().contains("exit status 75"));
    assert_eq!(
        std::fs::read_to_string(plugin.root().join(".plugin-data")).unwrap().trim(),
        plugin.data().to_str().unwrap()
    );
    plugin.release();
    plugin.wait_for_install();
    assert!(plugin.helper().exists(), "the background build never produced the helper:\n{}", plugin.log());
    // The Bash tool has no CLAUDE_PLUGIN_DATA; the launcher finds the helper anyway.
    let mut cmd = Command::new(plugin.root().join("bin/distex"));
    let bare = cmd.arg("nodes").env_clear().env("PATH", "/usr/bin:/bin").output().unwrap();
    assert_eq!(stdout(&bare), "helper-v1: nodes\n", "{}", stderr(&bare));
    // Once installed, session start has nothing to do or say.
    let quiet = plugin.run_with_input(&["--plugin-session-start"], &[], true, input);
    assert_eq!(stdout(&quiet), "");
    assert_eq!(plugin.cargo_calls().len(), 1);
}

#[test]
fn without_cargo_or_a_prebuilt_helper_it_says_what_to_install() {
    let plugin = Plugin::new();
    let out = plugin.run(&["nodes"], &[], false);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("rustup.rs"), "{}", stderr(&out));
    let start = plugin.run_with_input(&["--plugin-session-start"], &[], false, r#"{"session_id":"x"}"#);
    let answer: serde_json::Value = serde_json::from_str(&stdout(&start)).unwrap();
    assert!(answer["systemMessage"].as_str().unwrap().contains("rustup.rs"), "{answer}");
}

#[test]
fn a_failed_build_is_reported_with_its_log_not_retried_on_every_command() {
    let plugin = Plugin::new();
    executable(
        &plugin.dir.path().join("fakebin/cargo"),
        &format!(
            "#!/bin/sh\necho \"$*\" >> '{}/cargo.log'\necho 'error[E0308]: mismatched types'\nexit 101\n",
            plugin.dir.path().display()
        ),
    );
    plugin.run(&["nodes"], &[], true);
    plugin.wait_for_install();
    let out = plugin.run(&["nodes"], &[], true);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("installing the helper failed") && stderr(&out).contains("mismatched types"),
        "{}",
        stderr(&out)
    );
    assert_eq!(plugin.cargo_calls().len(), 1, "{:?}", plugin.cargo_calls());
}

#[test]
fn distex_bin_overrides_everything() {
    let plugin = Plugin::new();
    let own = plugin.dir.path().join("own");
    executable(&own, "#!/bin/sh\necho \"own: $*\"\n");
    let out = plugin.run(&["route", "x"], &[("DISTEX_BIN", &own)], true);
    assert_eq!(stdout(&out), "own: route x\n");
    let start = plugin.run_with_input(&["--plugin-session-start"], &[("DISTEX_BIN", &own)], true, "{}");
    assert_eq!(stdout(&start), "");
    assert!(plugin.cargo_calls().is_empty());
}

// --- the prebuilt helper ------------------------------------------------------

/// The release asset name for this machine, as the launcher computes it.
fn asset_name() -> String {
    let os = if cfg!(target_os = "macos") { "apple-darwin" } else { "unknown-linux-musl" };
    format!("distex-{}-{}-{os}.tar.gz", env!("CARGO_PKG_VERSION"), std::env::consts::ARCH)
}

/// A tarball holding this test's own distex binary, as the release
/// workflow packs it, and its SHA-256. Made once per test process (packing
/// the debug binary takes seconds); nothing of it stays on disk.
fn release_tarball() -> &'static (Vec<u8>, String) {
    static TARBALL: std::sync::OnceLock<(Vec<u8>, String)> = std::sync::OnceLock::new();
    TARBALL.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("dxr").tempdir_in("/tmp").unwrap();
        crate::util::copy_file(Path::new(env!("CARGO_BIN_EXE_distex")), &dir.path().join("distex"));
        let tarball = dir.path().join(asset_name());
        let ok =
            Command::new("tar").arg("-czf").arg(&tarball).arg("-C").arg(dir.path()).arg("distex").status().unwrap();
        assert!(ok.success());
        let out = Command::new("sha256sum").arg(&tarball).output().unwrap();
        let sum = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string();
        (std::fs::read(&tarball).unwrap(), sum)
    })
}

/// A one-file HTTP server on 127.0.0.1: `GET /v<version>/<asset>` gets
/// `body`, anything else 404. Counts the requests it served.
struct Release {
    url: String,
    hits: Arc<AtomicUsize>,
}

fn serve(body: Vec<u8>) -> Release {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let wanted = format!("/v{}/{}", env!("CARGO_PKG_VERSION"), asset_name());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut stream = stream;
            if path == wanted {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
            } else {
                let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
            let _ = reader.read_to_end(&mut Vec::new());
        }
    });
    Release { url, hits }
}

impl Plugin {
    /// Ships release/SHA256SUMS listing `sum` for this machine's asset.
    fn ship_checksum(&self, sum: &str) {
        std::fs::write(
            self.root().join("release/SHA256SUMS"),
            format!("# base-url: https://example.invalid/never-used\n{sum}  {}\n", asset_name()),
        )
        .unwrap();
    }
}

#[test]
fn a_prebuilt_helper_whose_checksum_matches_is_installed_without_cargo() {
    let plugin = Plugin::new();
    let (tarball, sum) = release_tarball();
    plugin.ship_checksum(sum);
    let release = serve(tarball.clone());
    let url = PathBuf::from(&release.url);
    let out = plugin.run(&["--version"], &[("DISTEX_RELEASE_URL", &url)], false);
    assert_eq!(out.status.code(), Some(75), "no cargo, but a release to fetch: {}", stderr(&out));
    plugin.wait_for_install();
    assert_eq!(release.hits.load(Ordering::SeqCst), 1);
    let out = plugin.run(&["--version"], &[("DISTEX_RELEASE_URL", &url)], false);
    assert_eq!(stdout(&out), format!("distex {}\n", env!("CARGO_PKG_VERSION")), "{}\n{}", stderr(&out), plugin.log());
    assert_eq!(
        std::fs::read(plugin.helper()).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_distex")).unwrap(),
        "the installed helper is the released binary"
    );
    assert!(plugin.log().contains("installed the prebuilt helper"), "{}", plugin.log());
    assert!(!plugin.data().join("work").exists(), "the download is not kept");
}

#[test]
fn a_corrupted_download_is_refused_and_removed_then_cargo_builds() {
    let plugin = Plugin::new();
    let (tarball, sum) = release_tarball();
    plugin.ship_checksum(sum);
    let mut tarball = tarball.clone();
    let last = tarball.len() - 1;
    tarball[last] ^= 0xff;
    let release = serve(tarball);
    let url = PathBuf::from(&release.url);
    plugin.run(&["nodes"], &[("DISTEX_RELEASE_URL", &url)], true);
    plugin.wait_for_install();
    assert_eq!(release.hits.load(Ordering::SeqCst), 1);
    let log = plugin.log();
    assert!(log.contains("refused") && log.contains("release/SHA256SUMS says"), "{log}");
    assert!(!plugin.data().join("work").exists(), "the corrupted tarball is removed");
    assert!(!files_under(&plugin.data()).iter().any(|(p, _)| p.to_string_lossy().ends_with(".tar.gz")));
    let out = plugin.run(&["nodes"], &[("DISTEX_RELEASE_URL", &url)], true);
    assert_eq!(stdout(&out), "helper-v1: nodes\n", "cargo built it instead: {log}");
    assert_eq!(plugin.cargo_calls().len(), 1);
}

#[test]
fn a_corrupted_download_without_cargo_leaves_no_helper_and_says_why() {
    let plugin = Plugin::new();
    plugin.ship_checksum(&release_tarball().1);
    let release = serve(b"not a tarball".to_vec());
    let url = PathBuf::from(&release.url);
    plugin.run(&["nodes"], &[("DISTEX_RELEASE_URL", &url)], false);
    plugin.wait_for_install();
    assert!(!plugin.helper().exists());
    let out = plugin.run(&["nodes"], &[("DISTEX_RELEASE_URL", &url)], false);
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr(&out).contains("refused") || stderr(&out).contains("rustup.rs"), "{}", stderr(&out));
    assert!(plugin.log().contains("refused"), "{}", plugin.log());
}

#[test]
fn no_release_server_means_the_cargo_fallback() {
    let plugin = Plugin::new();
    plugin.ship_checksum(&release_tarball().1);
    // Nothing listens on port 1.
    let url = PathBuf::from("http://127.0.0.1:1");
    plugin.run(&["nodes"], &[("DISTEX_RELEASE_URL", &url)], true);
    plugin.wait_for_install();
    assert!(plugin.log().contains("could not download http://127.0.0.1:1/"), "{}", plugin.log());
    let out = plugin.run(&["nodes"], &[("DISTEX_RELEASE_URL", &url)], true);
    assert_eq!(stdout(&out), "helper-v1: nodes\n", "{}", plugin.log());
}

#[test]
fn the_shipped_checksums_are_well_formed() {
    let sums = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("release/SHA256SUMS")).unwrap();
    for line in sums.lines().filter(|l| l.starts_with("# base-url:")) {
        assert!(line.starts_with("# base-url: https://"), "{line}");
    }
    for line in sums.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let mut parts = line.split_whitespace();
        let (sum, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
        assert!(sum.len() == 64 && sum.chars().all(|c| c.is_ascii_hexdigit()), "{line}");
        assert!(name.starts_with("distex-") && name.ends_with(".tar.gz"), "{line}");
    }
}

#[test]
fn a_hook_without_a_helper_or_a_build_starts_the_install_once() {
    let plugin = Plugin::new();
    let out = plugin.run_with_input(&["hook", "pre-tool-use"], &[], true, &hook_input("s9"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("distex: the helper is being built"), "{}", stdout(&out));
    plugin.wait_for_install();
    assert_eq!(plugin.cargo_calls().len(), 1, "{:?}", plugin.cargo_calls());
    assert!(plugin.helper().exists(), "{}", plugin.log());
}

/// The helper is replaced while it runs: writing over a running binary
/// fails with ETXTBSY (or corrupts it), so the launcher installs beside it
/// and renames. The running helper finishes normally; the next command gets
/// the new file.
#[test]
fn a_running_helper_is_replaced_by_rename_not_rewritten() {
    use std::os::unix::fs::MetadataExt;
    let plugin = Plugin::new();
    let (tarball, sum) = release_tarball();
    plugin.ship_checksum(sum);
    let release = serve(tarball.clone());
    let url = PathBuf::from(&release.url);
    plugin.run(&["--version"], &[("DISTEX_RELEASE_URL", &url)], false);
    plugin.wait_for_install();
    let old_inode = std::fs::metadata(plugin.helper()).unwrap().ino();
    // The installed binary itself runs for a while (the launcher execs it).
    let mut running = Command::new(plugin.root().join("bin/distex"))
        .args(["run", "--node", "local", "--", "sleep 2; echo still-here"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", plugin.dir.path())
        .env("CLAUDE_PLUGIN_DATA", plugin.data())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    plugin.touch_sources();
    let out = plugin.run(&["--version"], &[("DISTEX_RELEASE_URL", &url)], false);
    assert_eq!(out.status.code(), Some(0), "the old helper answers meanwhile: {}", stderr(&out));
    plugin.wait_for_new_helper(old_inode);
    assert_eq!(release.hits.load(Ordering::SeqCst), 2);
    let mut text = String::new();
    running.stdout.take().unwrap().read_to_string(&mut text).unwrap();
    assert!(running.wait().unwrap().success());
    assert_eq!(text, "still-here\n", "the running helper was not disturbed");
    assert!(plugin.log().contains("installed the prebuilt helper"), "{}", plugin.log());
    let after = plugin.run(&["--version"], &[("DISTEX_RELEASE_URL", &url)], false);
    assert_eq!(stdout(&after), format!("distex {}\n", env!("CARGO_PKG_VERSION")));
}

/// The detached install can be stopped as documented: `kill -- -PID` with
/// the pid in build.lock ends it and the cargo it runs, and removes the lock
/// and the scratch directory.
#[test]
fn a_stopped_install_leaves_no_process_lock_or_scratch() {
    let plugin = Plugin::new();
    plugin.hold();
    plugin.run(&["nodes"], &[], true);
    plugin.wait_for_cargo();
    let pid: i32 = std::fs::read_to_string(plugin.data().join("build.lock/pid")).unwrap().trim().parse().unwrap();
    let cargo_running = || {
        let out = Command::new("pgrep")
            .args(["-f", &plugin.dir.path().join("fakebin/cargo").display().to_string()])
            .output()
            .unwrap();
        !out.stdout.is_empty()
    };
    assert!(cargo_running(), "the held cargo runs");
    // SAFETY: kill only sends a signal to the install's own process group.
    assert_eq!(unsafe { libc::kill(-pid, libc::SIGTERM) }, 0);
    let start = Instant::now();
    while (plugin.data().join("build.lock").exists() || cargo_running()) && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(!cargo_running(), "cargo outlived the stopped install");
    assert!(!plugin.data().join("build.lock").exists());
    assert!(!plugin.data().join("work").exists());
    assert!(!plugin.helper().exists());
}

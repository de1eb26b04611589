//! The plugin's `bin/distex` launcher: finding, building and running the
//! helper the way Claude Code's Bash tool and hooks call it.
//!
//! A real release build takes minutes, so these tests put a stand-in `cargo`
//! first on PATH: it records its arguments and "builds" a tiny helper that
//! echoes its own. Everything else (the launcher, sh, find, setsid) is real.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A copy of the plugin's launcher in a scratch plugin directory, with
/// source files to compare against and the stand-in cargo.
struct Plugin {
    dir: tempfile::TempDir,
}

impl Plugin {
    fn new() -> Plugin {
        let dir = tempfile::Builder::new().prefix("dxl").tempdir_in("/tmp").unwrap();
        let root = dir.path().join("plugin");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        crate::util::copy_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("bin/distex"), &root.join("bin/distex"));
        for file in ["src/main.rs", "Cargo.toml", "Cargo.lock"] {
            std::fs::write(root.join(file), "").unwrap();
        }
        let fake = dir.path().join("fakebin");
        std::fs::create_dir_all(&fake).unwrap();
        executable(
            &fake.join("cargo"),
            &format!(
                "#!/bin/sh\necho \"$*\" >> '{log}'\necho 'Compiling distex (stand-in) on stdout'\n\
                 mkdir -p \"$CARGO_TARGET_DIR/release\"\n\
                 printf '#!/bin/sh\\necho \"helper: $*\"\\n[ \"$1\" = fail ] && exit 2\\nexit 0\\n' > \"$CARGO_TARGET_DIR/release/distex\"\n\
                 chmod +x \"$CARGO_TARGET_DIR/release/distex\"\n",
                log = dir.path().join("cargo.log").display()
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

    /// Arguments of every cargo call so far.
    fn cargo_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("cargo.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Runs the launcher with a clean environment; `with_cargo` puts the stand-in on PATH.
    fn run(&self, args: &[&str], env: &[(&str, &Path)], with_cargo: bool) -> Output {
        let path = if with_cargo {
            format!("{}:/usr/bin:/bin", self.dir.path().join("fakebin").display())
        } else {
            "/usr/bin:/bin".into()
        };
        let mut cmd = Command::new(self.root().join("bin/distex"));
        cmd.args(args).env_clear().env("PATH", path).env("HOME", self.dir.path()).stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
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

#[test]
fn builds_once_then_execs_and_never_prints_the_build_on_stdout() {
    let plugin = Plugin::new();
    let first = plugin.run(&["route", "--json", "cargo build"], &[], true);
    assert_eq!(stdout(&first), "helper: route --json cargo build\n", "stderr: {}", stderr(&first));
    assert!(first.status.success());
    assert!(stderr(&first).contains("building the helper"), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("Compiling distex (stand-in)"),
        "cargo's output goes to stderr: {}",
        stderr(&first)
    );
    let calls = plugin.cargo_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].starts_with("build --release --locked"), "{calls:?}");
    assert!(
        plugin.root().join("target/release/distex").exists(),
        "without CLAUDE_PLUGIN_DATA the helper lives in <plugin>/target"
    );

    let second = plugin.run(&["nodes"], &[], true);
    assert_eq!(stdout(&second), "helper: nodes\n");
    assert_eq!(stderr(&second), "", "a fresh helper is not rebuilt");
    assert_eq!(plugin.cargo_calls().len(), 1);
}

#[test]
fn rebuilds_when_a_source_is_newer_than_the_helper() {
    let plugin = Plugin::new();
    plugin.run(&["nodes"], &[], true);
    let exe = plugin.root().join("target/release/distex");
    let old = Command::new("touch").args(["-d", "2001-01-01"]).arg(&exe).status().unwrap();
    assert!(old.success());
    let out = plugin.run(&["nodes"], &[], true);
    assert_eq!(stdout(&out), "helper: nodes\n");
    assert_eq!(plugin.cargo_calls().len(), 2, "{:?}", plugin.cargo_calls());
}

#[test]
fn the_exit_status_is_the_helpers() {
    let plugin = Plugin::new();
    let out = plugin.run(&["fail"], &[], true);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn keeps_the_helper_in_the_plugin_data_dir_when_claude_code_gives_one() {
    let plugin = Plugin::new();
    let data = plugin.data();
    let out = plugin.run(&["nodes"], &[("CLAUDE_PLUGIN_DATA", &data)], true);
    assert_eq!(stdout(&out), "helper: nodes\n", "{}", stderr(&out));
    assert!(data.join("target/release/distex").exists());
    assert!(!plugin.root().join("target").exists(), "nothing is built inside the plugin directory");
}

#[test]
fn hook_mode_never_builds_never_fails_and_stays_silent() {
    let plugin = Plugin::new();
    // No helper yet: the command must simply run as it was.
    let out = plugin.run(&["hook", "pre-tool-use"], &[], true);
    assert_eq!((out.status.code(), stdout(&out), stderr(&out)), (Some(0), String::new(), String::new()));
    assert!(plugin.cargo_calls().is_empty(), "the hook must not start a build");
    // A helper that fails (a stale binary exits 2, which would block the command).
    let failing = plugin.dir.path().join("failing");
    executable(&failing, "#!/bin/sh\necho 'distex: unknown subcommand' >&2\nexit 2\n");
    let out = plugin.run(&["hook", "pre-tool-use"], &[("DISTEX_BIN", &failing)], true);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
}

#[test]
fn session_start_builds_in_the_background_for_the_bash_tool_to_find() {
    let plugin = Plugin::new();
    let data = plugin.data();
    let out = plugin.run(&["--plugin-session-start"], &[("CLAUDE_PLUGIN_DATA", &data)], true);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "", "SessionStart stdout would become Claude's context");
    assert_eq!(std::fs::read_to_string(plugin.root().join(".plugin-data")).unwrap().trim(), data.to_str().unwrap());
    // The detached build finishes on its own.
    let exe = data.join("target/release/distex");
    for _ in 0..400 {
        let ready = std::fs::metadata(&exe)
            .is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0);
        if ready {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(exe.exists(), "the background build never produced the helper");
    // The Bash tool has no CLAUDE_PLUGIN_DATA; the launcher finds the helper anyway.
    let out = plugin.run(&["nodes"], &[], true);
    assert_eq!(stdout(&out), "helper: nodes\n", "{}", stderr(&out));
    assert_eq!(plugin.cargo_calls().len(), 1, "no second build: {:?}", plugin.cargo_calls());
    // Once built, session start has nothing to do.
    plugin.run(&["--plugin-session-start"], &[("CLAUDE_PLUGIN_DATA", &data)], true);
    assert_eq!(plugin.cargo_calls().len(), 1);
}

#[test]
fn without_cargo_it_says_what_to_install() {
    let plugin = Plugin::new();
    let out = plugin.run(&["nodes"], &[], false);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("rustup.rs"), "{}", stderr(&out));
}

#[test]
fn distex_bin_overrides_everything() {
    let plugin = Plugin::new();
    let own = plugin.dir.path().join("own");
    executable(&own, "#!/bin/sh\necho \"own: $*\"\n");
    let out = plugin.run(&["route", "x"], &[("DISTEX_BIN", &own)], true);
    assert_eq!(stdout(&out), "own: route x\n");
    assert!(plugin.cargo_calls().is_empty());
}

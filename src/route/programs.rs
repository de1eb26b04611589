//! What a command means, as its program reads its own arguments.
//!
//! Rule patterns name a program and its subcommand (`cargo build`,
//! `npm run build`), but users spell the same command many ways:
//! `cargo b -r`, `npm --prefix web run build`, `pnpm -F web build`,
//! `python3 -X dev -m pytest`, `yarn test`. [`canonical`] rewrites one
//! simple command into a single spelling — the program's bare name, its
//! global options (and their values) dropped, subcommand aliases expanded,
//! package-manager script shortcuts written as `run SCRIPT` — and patterns go
//! through the same function, so `"npm test"` and `npm run test` meet.
//!
//! Two more questions are answered here, both about a command that a rule
//! would otherwise send away:
//! * [`is_trivial`]: it only prints something about the tool (`--version`,
//!   `--help`, `make -n`); syncing a project to print a line is waste;
//! * [`acts_here`]: its effect belongs to this machine (`make install`,
//!   `make clean`, `mvn install` into `~/.m2`, `jest --watch`).
//!
//! Each program is described by the options that take a value, so that a
//! value (`--prefix frontend`) is never mistaken for the subcommand.

use super::wrappers::basename;

/// How one program reads the words before its subcommand.
struct Program {
    name: &'static str,
    /// Short options (letters) that take a value: `-C dir`, `-Cdir`.
    short_with_value: &'static str,
    /// Long options (without `--`) that take the next word unless written `--opt=value`.
    long_with_value: &'static [&'static str],
    /// `(alias, subcommand)`: `("b", "build")` for cargo.
    aliases: &'static [(&'static str, &'static str)],
    /// Package managers that run `package.json` scripts: every word that is
    /// not one of their own commands is a script (or a binary) to run.
    scripts: Option<&'static [&'static str]>,
}

const NO_SCRIPTS: Option<&[&str]> = None;

const PROGRAMS: &[Program] = &[
    Program {
        name: "cargo",
        short_with_value: "ZC",
        long_with_value: &["manifest-path", "config", "color", "explain", "target-dir", "lockfile-path"],
        aliases: &[("b", "build"), ("t", "test"), ("c", "check"), ("r", "run"), ("d", "doc"), ("rm", "remove")],
        scripts: NO_SCRIPTS,
    },
    Program { name: "go", short_with_value: "C", long_with_value: &[], aliases: &[], scripts: NO_SCRIPTS },
    Program {
        name: "npm",
        short_with_value: "wC",
        long_with_value: &["prefix", "workspace", "loglevel", "registry", "userconfig", "cache", "globalconfig"],
        aliases: &[
            ("t", "test"),
            ("tst", "test"),
            ("run-script", "run"),
            ("rum", "run"),
            ("urn", "run"),
            ("i", "install"),
            ("x", "exec"),
        ],
        scripts: Some(&[
            "install",
            "ci",
            "uninstall",
            "update",
            "exec",
            "init",
            "publish",
            "pack",
            "link",
            "audit",
            "outdated",
            "ls",
            "list",
            "view",
            "info",
            "config",
            "cache",
            "version",
            "help",
            "login",
            "logout",
            "whoami",
            "doctor",
            "explain",
            "fund",
            "prune",
            "dedupe",
            "rebuild",
            "root",
            "bin",
            "prefix",
            "search",
            "set",
            "get",
            "pkg",
            "query",
            "owner",
            "access",
            "token",
            "unpublish",
            "deprecate",
            "dist-tag",
            "star",
            "org",
            "team",
            "hook",
            "shrinkwrap",
            "diff",
            "edit",
            "explore",
            "sbom",
            "run",
        ]),
    },
    Program {
        name: "pnpm",
        short_with_value: "CF",
        long_with_value: &[
            "dir",
            "filter",
            "filter-prod",
            "reporter",
            "loglevel",
            "store-dir",
            "workspace-concurrency",
        ],
        aliases: &[("t", "test"), ("tst", "test"), ("run-script", "run"), ("i", "install"), ("rm", "remove")],
        scripts: Some(&[
            "add",
            "install",
            "update",
            "up",
            "remove",
            "link",
            "ln",
            "unlink",
            "import",
            "rebuild",
            "rb",
            "prune",
            "fetch",
            "patch",
            "patch-commit",
            "audit",
            "list",
            "ls",
            "outdated",
            "why",
            "exec",
            "dlx",
            "create",
            "publish",
            "pack",
            "store",
            "env",
            "setup",
            "init",
            "deploy",
            "config",
            "doctor",
            "root",
            "bin",
            "server",
            "licenses",
            "help",
            "run",
            "install-test",
            "it",
            "approve-builds",
            "self-update",
        ]),
    },
    Program {
        name: "yarn",
        short_with_value: "",
        long_with_value: &["cwd", "modules-folder", "cache-folder", "mutex"],
        aliases: &[],
        scripts: Some(&[
            "add",
            "install",
            "remove",
            "upgrade",
            "up",
            "why",
            "info",
            "init",
            "list",
            "cache",
            "config",
            "dlx",
            "exec",
            "workspaces",
            "version",
            "versions",
            "publish",
            "pack",
            "link",
            "unlink",
            "audit",
            "bin",
            "create",
            "global",
            "import",
            "licenses",
            "login",
            "logout",
            "outdated",
            "owner",
            "policies",
            "tag",
            "team",
            "unplug",
            "npm",
            "plugin",
            "node",
            "set",
            "constraints",
            "rebuild",
            "patch",
            "search",
            "dedupe",
            "explain",
            "stage",
            "help",
            "run",
            "autoclean",
            "check",
            "generate-lock-entry",
            "upgrade-interactive",
        ]),
    },
    Program {
        name: "bun",
        short_with_value: "F",
        long_with_value: &["cwd", "filter", "config", "env-file"],
        aliases: &[("i", "install"), ("a", "add"), ("rm", "remove"), ("x", "x")],
        scripts: Some(&[
            "test",
            "build",
            "install",
            "add",
            "remove",
            "update",
            "link",
            "unlink",
            "pm",
            "init",
            "create",
            "upgrade",
            "outdated",
            "publish",
            "x",
            "exec",
            "repl",
            "run",
            "patch",
            "audit",
            "info",
            "why",
            "completions",
            "help",
        ]),
    },
    Program {
        name: "make",
        short_with_value: "CfjlIoWO",
        long_with_value: &[
            "directory",
            "file",
            "makefile",
            "jobs",
            "load-average",
            "include-dir",
            "old-file",
            "what-if",
        ],
        aliases: &[],
        scripts: NO_SCRIPTS,
    },
    Program {
        name: "docker",
        short_with_value: "Hcl",
        long_with_value: &["host", "context", "config", "log-level", "tlscacert", "tlscert", "tlskey"],
        aliases: &[],
        scripts: NO_SCRIPTS,
    },
    Program {
        name: "podman",
        short_with_value: "c",
        long_with_value: &["connection", "root", "runroot", "url", "log-level", "storage-driver"],
        aliases: &[],
        scripts: NO_SCRIPTS,
    },
    Program {
        name: "git",
        short_with_value: "Cc",
        long_with_value: &["git-dir", "work-tree", "namespace"],
        aliases: &[],
        scripts: NO_SCRIPTS,
    },
    Program { name: "meson", short_with_value: "", long_with_value: &[], aliases: &[], scripts: NO_SCRIPTS },
    Program {
        name: "bazel",
        short_with_value: "",
        long_with_value: &["output_base", "output_user_root", "bazelrc"],
        aliases: &[],
        scripts: NO_SCRIPTS,
    },
    Program {
        name: "bazelisk",
        short_with_value: "",
        long_with_value: &["output_base", "output_user_root", "bazelrc"],
        aliases: &[],
        scripts: NO_SCRIPTS,
    },
    Program { name: "dotnet", short_with_value: "", long_with_value: &[], aliases: &[], scripts: NO_SCRIPTS },
    Program { name: "swift", short_with_value: "", long_with_value: &[], aliases: &[], scripts: NO_SCRIPTS },
    Program {
        name: "turbo",
        short_with_value: "",
        long_with_value: &["cwd", "filter", "concurrency"],
        aliases: &[],
        scripts: NO_SCRIPTS,
    },
    Program { name: "nx", short_with_value: "", long_with_value: &[], aliases: &[], scripts: NO_SCRIPTS },
    Program {
        name: "mvn",
        short_with_value: "fsbPpl",
        long_with_value: &["file", "settings", "projects", "activate-profiles", "log-file", "threads"],
        aliases: &[],
        scripts: NO_SCRIPTS,
    },
];

/// Python's options that take a value (`-X dev`, `-W error`); `-m` and `-c` end the options.
const PYTHON_SHORT_WITH_VALUE: &str = "XWQ";

/// The program name used for matching: no directory, and `python3.12`,
/// `python3`, `pip3`, `gmake` are `python`, `pip`, `make`.
pub(crate) fn program_name(word: &str) -> &str {
    let name = basename(word);
    let versioned = |base: &'static str| {
        name.strip_prefix(base).is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
    };
    if versioned("python") {
        "python"
    } else if versioned("pip") {
        "pip"
    } else if name == "gmake" {
        "make"
    } else {
        name
    }
}

/// One simple command in its single canonical spelling (see the module doc).
pub(crate) fn canonical(words: &[String]) -> Vec<String> {
    let Some(first) = words.first() else {
        return Vec::new();
    };
    let name = program_name(first);
    let args = &words[1..];
    if name == "python" {
        return python(args);
    }
    let Some(program) = PROGRAMS.iter().find(|p| p.name == name) else {
        return std::iter::once(name.to_string()).chain(args.iter().cloned()).collect();
    };
    let rest = skip_options(args, program.short_with_value, program.long_with_value);
    let mut out = vec![name.to_string()];
    let Some((sub, after)) = rest.split_first() else {
        return out;
    };
    let sub = program.aliases.iter().find(|(a, _)| a == sub).map_or(sub.as_str(), |(_, full)| full);
    match program.scripts {
        // `yarn workspace web build` runs `build` in one workspace.
        Some(_) if sub == "workspace" && after.len() >= 2 => {
            return canonical(&[vec![first.clone()], after[1..].to_vec()].concat());
        }
        Some(_) if sub == "run" => {
            out.push("run".into());
            out.extend(skip_options(after, "", &[]).iter().cloned());
        }
        Some(own) if !own.contains(&sub) => {
            out.extend(["run".to_string(), sub.to_string()]);
            out.extend(after.iter().cloned());
        }
        _ => {
            out.push(sub.to_string());
            out.extend(after.iter().cloned());
        }
    }
    out
}

/// `python [options] -m MOD args` → `python -m MOD args`; a script keeps its path.
fn python(args: &[String]) -> Vec<String> {
    let mut out = vec!["python".to_string()];
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        if arg == "-m" || arg == "-c" {
            out.extend(args[i..].iter().cloned());
            return out;
        }
        if let Some(module) = arg.strip_prefix("-m").filter(|m| !m.is_empty()) {
            out.extend(["-m".to_string(), module.to_string()]);
            out.extend(args[i + 1..].iter().cloned());
            return out;
        }
        if arg == "--" || !arg.starts_with('-') || arg == "-" {
            break;
        }
        let letters = &arg[1..];
        let takes = letters.len() == 1 && PYTHON_SHORT_WITH_VALUE.contains(letters);
        i += if takes { 2 } else { 1 };
    }
    out.extend(args[i.min(args.len())..].iter().filter(|a| *a != "--").cloned());
    out
}

/// The words after the leading options (`-C dir`, `--prefix=x`, `+nightly`).
pub(crate) fn skip_options<'a>(args: &'a [String], short: &str, long: &[&str]) -> &'a [String] {
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        if arg == "--" {
            return &args[i + 1..];
        }
        if let Some(name) = arg.strip_prefix("--") {
            i += if !name.contains('=') && long.contains(&name) { 2 } else { 1 };
        } else if arg.len() > 1 && (arg.starts_with('-') || arg.starts_with('+')) {
            let cluster = &arg[1..];
            let takes = arg.starts_with('-')
                && cluster
                    .char_indices()
                    .find(|(_, c)| short.contains(*c))
                    .is_some_and(|(at, c)| at + c.len_utf8() == cluster.len());
            i += if takes { 2 } else { 1 };
        } else {
            break;
        }
    }
    &args[i.min(args.len())..]
}

/// Commands that only print something about the tool: `--version`, `--help`,
/// `help ...`, `make -n` (a dry run), `pytest --collect-only`. They stay
/// here whatever the rules say. `words` is the command as written (the
/// canonical form has dropped the options this looks at).
pub(crate) fn is_trivial(words: &[String]) -> bool {
    let Some((first, args)) = words.split_first() else {
        return false;
    };
    let name = program_name(first);
    let canon = canonical(words);
    // A sole `-v` or `-V` is a version only for some programs: `pytest -v`
    // and `ctest -V` are verbose runs.
    let sole = args.len() == 1
        && match args[0].as_str() {
            "-h" | "-version" | "-help" | "version" | "help" => true,
            "-v" => matches!(name, "make" | "docker" | "podman" | "npm" | "yarn" | "pnpm" | "bun" | "node" | "deno"),
            "-V" => !matches!(name, "ctest" | "ninja" | "tox" | "nox"),
            _ => false,
        };
    let help_sub = matches!(canon.get(1).map(String::as_str), Some("help" | "version"));
    // `--help` or `--version` before the second operand: `cargo build --help`, not `docker run img x --help`.
    let mut operands = 0;
    let asks = args.iter().take_while(|a| *a != "--").any(|a| {
        if !a.starts_with(['-', '+']) {
            operands += 1;
        }
        operands <= 1 && (a == "--help" || a == "--version")
    });
    let dry_make = name == "make"
        && args.iter().take_while(|a| *a != "--").any(|a| {
            matches!(a.as_str(), "--dry-run" | "--just-print" | "--recon" | "--question" | "--print-data-base")
                || (a.len() > 1 && a.starts_with('-') && !a.starts_with("--") && dry_make_cluster(&a[1..]))
        });
    let pytest = name == "pytest" || canon.get(1..3).is_some_and(|w| w[0] == "-m" && w[1] == "pytest");
    let collect_only =
        pytest && args.iter().any(|a| matches!(a.as_str(), "--collect-only" | "--co" | "--fixtures" | "--markers"));
    sole || help_sub || asks || dry_make || collect_only
}

/// `-n`, `-q`, `-p` (or a cluster like `-kn`) before any option that takes a value.
fn dry_make_cluster(cluster: &str) -> bool {
    for c in cluster.chars() {
        if matches!(c, 'n' | 'q' | 'p') {
            return true;
        }
        if "CfjlIoWO".contains(c) {
            return false;
        }
    }
    false
}

/// Commands whose effect belongs to this machine or that keep running
/// until someone stops them (`make install`, `make clean`, `mvn install`,
/// `jest --watch`, `npm run dev`). A rule naming only the program
/// (`"make"`) does not send them away; a rule that names the subcommand
/// (`"make install"`) still does.
pub(crate) fn acts_here(canon: &[String]) -> bool {
    let Some((name, args)) = canon.split_first() else {
        return false;
    };
    let watches = args.iter().any(|a| matches!(a.as_str(), "--watch" | "--watchAll" | "-w" if name != "make"))
        || args.first().is_some_and(|a| a == "watch" || a == "dev");
    let operands = || args.iter().filter(|a| !a.starts_with('-') && !a.contains('='));
    let here = |targets: &[&str]| {
        operands().any(|t| targets.iter().any(|p| t == p || (p.ends_with('*') && t.starts_with(&p[..p.len() - 1]))))
    };
    watches
        || match name.as_str() {
            "make" | "ninja" => here(&[
                "install*",
                "uninstall",
                "clean",
                "distclean",
                "mostlyclean",
                "realclean",
                "maintainer-clean",
                "help",
                "run",
                "serve",
                "dev",
                "watch",
                "start",
                "deploy",
                "publish",
                "release",
                "push",
                "fmt",
                "format",
                "docker-push",
                "upload",
                "print-*",
            ]),
            "mvn" | "mvnw" => here(&["install", "deploy", "release:*"]),
            "gradle" | "gradlew" => {
                here(&["install*", "publish*", "run", "bootRun", "clean", "tasks", "help"])
                    || args.iter().any(|a| a == "--stop" || a == "--status")
            }
            "cargo" | "go" => args
                .first()
                .is_some_and(|s| matches!(s.as_str(), "install" | "run" | "clean" | "publish" | "watch" | "get")),
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(line: &str) -> String {
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        canonical(&words).join(" ")
    }

    #[test]
    fn spellings_meet() {
        assert_eq!(c("cargo b -r"), "cargo build -r");
        assert_eq!(c("cargo --manifest-path a/Cargo.toml build"), "cargo build");
        assert_eq!(c("cargo +nightly t"), "cargo test");
        assert_eq!(c("go -C sub build ./..."), "go build ./...");
        assert_eq!(c("npm --prefix frontend run build"), "npm run build");
        assert_eq!(c("npm -w web run build"), "npm run build");
        assert_eq!(c("npm test"), "npm run test");
        assert_eq!(c("npm run test:e2e"), "npm run test:e2e");
        assert_eq!(c("pnpm --filter @acme/web build"), "pnpm run build");
        assert_eq!(c("pnpm install"), "pnpm install");
        assert_eq!(c("yarn test"), "yarn run test");
        assert_eq!(c("yarn workspace web build"), "yarn run build");
        assert_eq!(c("bun test"), "bun test");
        assert_eq!(c("bun run build"), "bun run build");
        assert_eq!(c("python3.12 -X dev -m pytest -q"), "python -m pytest -q");
        assert_eq!(c("python -m pytest"), "python -m pytest");
        assert_eq!(c("/usr/bin/python3 -u scripts/x.py"), "python scripts/x.py");
        assert_eq!(c("make -C build -j 8 all"), "make all");
        assert_eq!(c("terraform plan"), "terraform plan");
    }

    #[test]
    fn trivial_and_local_effects() {
        let t = |l: &str| is_trivial(&l.split_whitespace().map(String::from).collect::<Vec<_>>());
        assert!(
            t("pytest --version") && t("make --version") && t("cargo build --help") && t("make -n") && t("make -kn")
        );
        assert!(t("cargo help build") && t("go version") && t("docker -v"));
        assert!(!t("make -j8") && !t("make -j 4") && !t("cargo build") && !t("docker run img x y --help"));
        assert!(!t("pytest -v") && !t("ctest -V") && t("pytest -V") && t("make -v"));
        let h = |l: &str| acts_here(&canonical(&l.split_whitespace().map(String::from).collect::<Vec<_>>()));
        assert!(h("make install") && h("make clean all") && h("jest --watch"));
        assert!(h("mvn clean install") && h("cargo install ripgrep") && !h("make -j8 all") && !h("mvn package"));
    }
}

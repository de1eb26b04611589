//! Workspace sync with real rsync over the SSH master: what is sent, what
//! never is, deletions, the run directory, and `--return`.

use crate::util as support;

use std::path::Path;

use support::Sandbox;
use support::sshd::{Cluster, stop_masters};

fn setup() -> (Sandbox, Cluster, std::path::PathBuf) {
    let cluster = Cluster::start(1);
    let sandbox = Sandbox::new();
    sandbox.write_config(&cluster.config("roles = [\"builder\"]", "[[rule]]\nname = \"heavy_computation\"\ncommands = [\"make\"]\nrequires = { roles = [\"builder\"] }\nsync = true\nreturns = [\"out/report.txt\"]\n"));
    let project = sandbox.path().join("proj");
    for (path, text) in [
        ("src/main.c", "int main(){}"),
        ("src/sub/deep.txt", "deep"),
        (".gitignore", "/build/\n*.log\n"),
        ("app.log", "ignored by .gitignore"),
        ("build/junk.o", "ignored dir"),
        (".distexignore", "bigdata/\n"),
        ("bigdata/huge.bin", "ignored by .distexignore"),
        (".env", "SECRET=1"),
        (".env.production", "SECRET=2"),
        ("certs/server.pem", "-----BEGIN"),
        ("certs/server.key", "private"),
        ("id_ed25519", "private key"),
        ("gone.txt", "will be deleted"),
    ] {
        let p = project.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    // A real repository: the file set is what git sees.
    let init = std::process::Command::new("git").args(["init", "-q"]).arg(&project).status().unwrap();
    assert!(init.success());
    (sandbox, cluster, project)
}

fn distex(sb: &Sandbox, cwd: &Path) -> support::TestCommand {
    sb.configured().current_dir(cwd)
}

/// The files below `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p.strip_prefix(dir).unwrap().display().to_string()) }
        }
    }
    out.sort();
    out
}

fn mirror(cluster: &Cluster) -> std::path::PathBuf {
    let work = &cluster.node("n1").workdir;
    let dirs: Vec<_> = std::fs::read_dir(work)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("proj-"))
        .collect();
    assert_eq!(dirs.len(), 1, "one stable mirror per project: {dirs:?}");
    dirs[0].clone()
}

#[test]
fn sync_round_trip_keeps_secrets_and_ignored_files_home() {
    let (sb, cluster, project) = setup();
    let run =
        distex(&sb, &project.join("src")).args(["run", "--json", "--", "make() { pwd; ls; }; make"]).run().success();
    let v = run.json();
    assert_eq!(v["node"], "n1", "{v}");
    assert_eq!(v["synced"], true);
    let m = mirror(&cluster);
    // It ran in the mirror's matching subdirectory.
    assert_eq!(v["stdout"]["text"].as_str().unwrap().lines().next().unwrap(), m.join("src").display().to_string());
    let sent = files(&m);
    assert_eq!(
        sent,
        vec![".distexignore", ".gitignore", "gone.txt", "src/main.c", "src/sub/deep.txt"],
        "mirror content"
    );

    // Deletions propagate; remote build outputs (ignored) survive.
    std::fs::remove_file(project.join("gone.txt")).unwrap();
    std::fs::write(m.join("build.log"), "made on the node").unwrap();
    distex(&sb, &project).args(["run", "--", "make() { true; }; make"]).run().success();
    assert!(!m.join("gone.txt").exists(), "a deleted file must disappear from the mirror");
    assert!(m.join("build.log").exists(), "ignored files on the mirror are left alone");
    assert_eq!(mirror(&cluster), m, "same mirror on the next run");
    stop_masters(sb.path());
}

#[test]
fn returned_artifact_arrives_even_when_the_command_fails() {
    let (sb, _cluster, project) = setup();
    // The rule returns out/report.txt; --return adds a directory.
    let run = distex(&sb, &project)
        .args([
            "run",
            "--return",
            "dist",
            "--",
            "make() { mkdir -p out dist/x; echo report > out/report.txt; echo bin > dist/x/app; exit 2; }; make",
        ])
        .run()
        .expect_code(2);
    assert_eq!(std::fs::read_to_string(project.join("out/report.txt")).unwrap(), "report\n", "{}", run.stderr());
    assert_eq!(std::fs::read_to_string(project.join("dist/x/app")).unwrap(), "bin\n");
    // A missing artifact is a warning; the command's status stands.
    let run =
        distex(&sb, &project).args(["run", "--return", "nope.txt", "--", "make() { true; }; make"]).run().success();
    assert!(run.stderr().contains("nope.txt"), "{}", run.stderr());
    // --return outside the project is refused before anything runs.
    distex(&sb, &project).args(["run", "--return", "../x", "--", "make"]).run().expect_code(2);
    stop_masters(sb.path());
}

#[test]
fn no_sync_runs_in_the_home_directory() {
    let (sb, cluster, project) = setup();
    let run =
        distex(&sb, &project).args(["run", "--no-sync", "--json", "--", "make() { echo ok; }; make"]).run().success();
    assert_eq!(run.json()["synced"], false);
    assert!(
        std::fs::read_dir(&cluster.node("n1").workdir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_str()
            .unwrap()
            .starts_with("proj-"))
    );
    stop_masters(sb.path());
}

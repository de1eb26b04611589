//! `distex plan` and the local side of `distex parallel` (no SSH needed).

use crate::util as support;

use support::Sandbox;

#[test]
fn plan_shows_waves_and_why() {
    let sb = Sandbox::new();
    let run = sb
        .cmd()
        .args(["plan", "--", "cargo build", "cargo test", "cd web && npm ci", "echo x > out.txt", "sort a > out.txt"])
        .run()
        .success();
    let out = run.stdout();
    assert!(out.starts_with("wave 1: 1, 3, 4\nwave 2: 2, 5\n"), "{out}");
    assert!(out.contains("after 1: both write the build output directory target/"), "{out}");
    assert!(out.contains("after 4: both write out.txt"), "{out}");
    let v = sb.cmd().args(["plan", "--json", "--", "make -C lib", "cd lib && make"]).run().success().json();
    assert_eq!(v["waves"], serde_json::json!([["1"], ["2"]]));
    assert_eq!(v["tasks"][1]["inferred"][0]["after"], "1");
}

#[test]
fn plan_rejects_cycles_and_unknown_dependencies() {
    let sb = Sandbox::new();
    let file = sb.path().join("t.json");
    std::fs::write(
        &file,
        r#"{"tasks":[{"id":"a","command":"true","depends_on":["b"]},{"id":"b","command":"true","depends_on":["a"]}]}"#,
    )
    .unwrap();
    let run = sb.cmd().args(["plan", "--file"]).arg(&file).run().expect_code(2);
    assert!(run.stderr().contains("cycle"), "{}", run.stderr());
    std::fs::write(&file, r#"{"tasks":[{"id":"a","command":"true","depends_on":["zz"]}]}"#).unwrap();
    let run = sb.cmd().args(["parallel", "--file"]).arg(&file).run().expect_code(2);
    assert!(run.stderr().contains("unknown task \"zz\""), "{}", run.stderr());
    sb.cmd().args(["parallel"]).run().expect_code(2);
}

#[test]
fn local_parallel_runs_dependencies_in_order() {
    let sb = Sandbox::new();
    let file = sb.path().join("t.json");
    std::fs::write(
        &file,
        r#"{"tasks":[
        {"id":"write","command":"sleep 0.2; echo data > f.txt"},
        {"id":"read","command":"cat f.txt","depends_on":["write"]}
    ]}"#,
    )
    .unwrap();
    let run = sb.cmd().args(["parallel", "--file"]).arg(&file).run().success();
    let out = run.stdout();
    assert!(out.contains("[read] data"), "{out}");
    assert!(out.contains("[write] sleep 0.2; echo data > f.txt: IN_PROGRESS -> COMPLETE (local)"), "{out}");
}

#[test]
fn parallel_timeout_fails_the_slow_task_only() {
    let sb = Sandbox::new();
    let v = sb
        .cmd()
        .args([
            "parallel",
            "--json",
            "--keep-going",
            "--timeout",
            "1",
            "--nodes",
            "local",
            "--",
            "sleep 30",
            "echo quick",
        ])
        .run()
        .expect_code(1)
        .json();
    let slow = &v["tasks"][0];
    assert_eq!(slow["status"], "failed");
    assert_eq!(slow["error"], "timed out");
    assert_eq!(v["tasks"][1]["status"], "completed");
    assert_eq!(v["tasks"][1]["stdout"]["text"], "quick\n");
}

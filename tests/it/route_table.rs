//! The routing table: over a hundred command lines and where they must go.
//!
//! Every case runs through the real binary (`distex json`, one request per
//! line, so the whole table costs one process) against a three-node
//! cluster. A third of the cases mention docker, make, pytest, ... only as
//! arguments, strings, file names or comments and must stay local.

use crate::util as support;

use serde_json::{Value, json};
use support::Sandbox;

const CLUSTER: &str = r#"
[local]
name = "laptop"
os = "macos"
slots = 4

[[node]]
name = "macpro51"
host = "macpro51.local"
os = "linux"
features = ["docker", "podman", "apt", "systemd"]
roles = ["builder"]
slots = 12
speed = 2.0
label = "Mac Pro"

[[node]]
name = "studio"
host = "studio.local"
os = "macos"
roles = ["builder"]
slots = 8

[[node]]
name = "gpu"
host = "gpu.local"
os = "linux"
features = ["gpu"]
slots = 4

[[rule]]
name = "gpu_training"
commands = ["python train.py", "torchrun"]
requires = { features = ["gpu"] }
announce = "Sending training to {node}."
"#;

const LINUX: &str = "linux_required";
const HEAVY: &str = "heavy_computation";
const GPU: &str = "gpu_training";

/// (command line, expected node or "local", expected rule or "")
const CASES: &[(&str, &str, &str)] = &[
    // Linux-only commands, however they are wrapped or nested.
    ("docker ps", "macpro51", LINUX),
    ("docker compose up -d", "macpro51", LINUX),
    ("docker-compose build", "macpro51", LINUX),
    ("podman run --rm alpine true", "macpro51", LINUX),
    ("sudo apt-get install -y jq", "macpro51", LINUX),
    ("sudo apt update", "macpro51", LINUX),
    ("yum install gcc", "macpro51", LINUX),
    ("dnf upgrade -y", "macpro51", LINUX),
    ("systemctl restart nginx", "macpro51", LINUX),
    ("journalctl -u nginx -f", "macpro51", LINUX),
    ("sudo -u root systemctl status sshd", "macpro51", LINUX),
    ("/usr/bin/docker images", "macpro51", LINUX),
    ("env DOCKER_HOST=tcp://x docker ps", "macpro51", LINUX),
    ("FOO=1 BAR=2 docker build .", "macpro51", LINUX),
    ("time docker build -t app .", "macpro51", LINUX),
    ("nice -n 10 docker build .", "macpro51", LINUX),
    ("nohup docker run app &", "macpro51", LINUX),
    ("timeout -s KILL 30 docker ps", "macpro51", LINUX),
    ("command docker ps", "macpro51", LINUX),
    ("bash -c 'docker ps'", "macpro51", LINUX),
    ("sh -c \"apt-get update && apt-get install -y curl\"", "macpro51", LINUX),
    ("echo $(docker ps -q)", "macpro51", LINUX),
    ("echo `docker ps -q`", "macpro51", LINUX),
    ("(cd app && docker build .)", "macpro51", LINUX),
    ("{ docker ps; }", "macpro51", LINUX),
    ("docker ps -aq | xargs docker rm", "macpro51", LINUX),
    ("cat ids | sudo xargs -n1 docker stop", "macpro51", LINUX),
    ("if docker info >/dev/null; then echo up; fi", "macpro51", LINUX),
    ("for c in a b; do docker stop $c; done", "macpro51", LINUX),
    ("git pull && docker compose up -d", "macpro51", LINUX),
    ("\"docker\" ps", "macpro51", LINUX),
    ("sudo -E env PATH=$PATH docker ps", "macpro51", LINUX),
    ("eval \"docker ps\"", "macpro51", LINUX),
    ("while true; do journalctl -n 1; sleep 1; done", "macpro51", LINUX),
    ("docker build . && make", "macpro51", LINUX),
    ("diff <(docker ps) saved.txt", "macpro51", LINUX),
    ("X=$(docker ps -q) ls", "macpro51", LINUX),
    // Heavy builds and test suites go to a builder (macpro51 is first).
    ("make", "macpro51", HEAVY),
    ("make -j8 all", "macpro51", HEAVY),
    ("cargo build --release", "macpro51", HEAVY),
    ("cargo +nightly build", "macpro51", HEAVY),
    ("cargo test --workspace", "macpro51", HEAVY),
    ("go build ./...", "macpro51", HEAVY),
    ("npm run build", "macpro51", HEAVY),
    ("npm run build:prod", "macpro51", HEAVY),
    ("pytest -x tests/", "macpro51", HEAVY),
    ("python -m pytest", "macpro51", HEAVY),
    ("python3 -m pytest -q", "macpro51", HEAVY),
    ("jest --coverage", "macpro51", HEAVY),
    ("npx jest", "macpro51", HEAVY),
    ("gradle assemble", "macpro51", HEAVY),
    ("./gradlew test", "macpro51", HEAVY),
    ("cd project && make test", "macpro51", HEAVY),
    ("RUSTFLAGS=-Cdebuginfo=0 cargo build", "macpro51", HEAVY),
    ("bash -lc 'cd x && cargo build'", "macpro51", HEAVY),
    ("uv run pytest", "macpro51", HEAVY),
    ("poetry run pytest -k slow", "macpro51", HEAVY),
    ("sudo make install", "macpro51", HEAVY),
    ("time cargo test", "macpro51", HEAVY),
    ("cmake --build build", "macpro51", HEAVY),
    ("cargo fmt && cargo test 2>&1 | tail -5", "macpro51", HEAVY),
    // A user rule.
    ("python train.py --epochs 3", "gpu", GPU),
    ("torchrun --nproc_per_node 4 train.py", "gpu", GPU),
    // Mentioned only as arguments, strings, file names or comments: local.
    ("echo \"docker is great\"", "local", ""),
    ("cat Makefile", "local", ""),
    ("git commit -m \"fix docker\"", "local", ""),
    ("which docker", "local", ""),
    ("command -v docker", "local", ""),
    ("type docker", "local", ""),
    ("man docker", "local", ""),
    ("ls # docker ps", "local", ""),
    ("echo make", "local", ""),
    ("vim docker-compose.yml", "local", ""),
    ("grep -r pytest .", "local", ""),
    ("cat docker/Dockerfile", "local", ""),
    ("cd make && ls", "local", ""),
    ("rm -rf target/ # cargo build later", "local", ""),
    ("echo 'cargo build'", "local", ""),
    ("printf '%s\\n' \"apt-get install\"", "local", ""),
    ("git log --grep=docker", "local", ""),
    ("brew install docker", "local", ""),
    ("ls /usr/bin/docker", "local", ""),
    ("touch pytest.ini", "local", ""),
    ("code jest.config.js", "local", ""),
    ("open Makefile", "local", ""),
    ("find . -name '*.gradle'", "local", ""),
    ("cp Makefile Makefile.bak", "local", ""),
    ("echo \"$(echo docker)\"", "local", ""),
    ("export CMD=docker", "local", ""),
    ("alias dc=docker-compose", "local", ""),
    ("history | grep make", "local", ""),
    ("cargo check", "local", ""),
    ("cargo fmt", "local", ""),
    ("go vet ./...", "local", ""),
    ("npm run lint", "local", ""),
    ("python train_small.py", "local", ""),
    ("pip install pytest", "local", ""),
    ("npm install jest", "local", ""),
    ("ssh macpro51 docker ps", "local", ""),
    ("docker_cleanup.sh", "local", ""),
    ("./make.sh", "local", ""),
    ("echo \"make -j8\" > build.txt", "local", ""),
    ("cat <<'EOF'\ndocker ps\nEOF", "local", ""),
    ("git stash && git checkout main", "local", ""),
    ("sudo -v", "local", ""),
    ("env | grep DOCKER", "local", ""),
    ("cmake .", "local", ""),
    ("echo apt-get; echo systemctl", "local", ""),
    ("ls -la", "local", ""),
];

/// Sends every case to `distex json` with the local load pinned to zero.
fn route_all(sandbox: &Sandbox, config: &std::path::Path, cases: &[(&str, Value)]) -> Vec<Value> {
    let input: String = cases
        .iter()
        .map(|(cmd, assume)| json!({"op": "route", "command": cmd, "assume_load": assume}).to_string() + "\n")
        .collect();
    let run = sandbox.cmd().arg("--config").arg(config).arg("json").stdin(&input).success();
    let answers = run.json_lines();
    assert_eq!(answers.len(), cases.len(), "one answer per request:\n{}", run.stdout());
    answers
}

#[test]
fn routing_table() {
    let local_commands = CASES.iter().filter(|c| c.1 == "local").count();
    assert!(CASES.len() >= 80 && local_commands * 3 >= CASES.len(), "{} cases, {local_commands} local", CASES.len());

    let sandbox = Sandbox::new();
    let config = sandbox.write_config(CLUSTER);
    let requests: Vec<(&str, Value)> = CASES.iter().map(|c| (c.0, json!({"local": 0.0}))).collect();
    let answers = route_all(&sandbox, &config, &requests);

    let mut failures = Vec::new();
    for ((command, node, rule), answer) in CASES.iter().zip(&answers) {
        let want_node = if *node == "local" { Value::Null } else { json!(node) };
        let want_rule = if rule.is_empty() { Value::Null } else { json!(rule) };
        let ok = answer["op"] == "route"
            && answer["node"] == want_node
            && answer["distribute"] == json!(*node != "local")
            && answer["rule"] == want_rule
            && answer["reason"] == if rule.is_empty() { json!("local") } else { json!(rule) };
        if !ok {
            failures.push(format!("{command:?}: want node={node} rule={rule:?}, got {answer}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

#[test]
fn distributed_answers_carry_match_and_announcement() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_config(CLUSTER);
    let answers = route_all(
        &sandbox,
        &config,
        &[
            ("docker build -t app .", json!({"local": 0})),
            ("cargo build", json!({"local": 0})),
            ("torchrun x", json!({"local": 0})),
        ],
    );
    assert_eq!(answers[0]["matched"], "docker");
    assert_eq!(answers[0]["announcement"], "Routing Docker work to Mac Pro for Linux execution.");
    assert_eq!(answers[0]["sync"], false);
    assert_eq!(answers[1]["matched"], "cargo build");
    assert_eq!(answers[1]["announcement"], "Heavy compilation detected, offloading to Mac Pro.");
    assert_eq!(answers[1]["sync"], true);
    assert_eq!(answers[2]["announcement"], "Sending training to gpu.");
    let candidates = answers[1]["candidates"].as_array().unwrap();
    let eligible: Vec<_> =
        candidates.iter().filter(|c| c["eligible"] == true).map(|c| c["node"].as_str().unwrap()).collect();
    assert_eq!(eligible, ["macpro51", "studio"], "only builders are candidates for a build");
}

#[test]
fn least_loaded_candidate_wins_by_load_per_slot_and_speed() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_config(CLUSTER);
    let answers = route_all(
        &sandbox,
        &config,
        &[
            // macpro51: 24 / 12 slots / speed 2 = 1.0; studio: 4 / 8 / 1 = 0.5.
            ("make", json!({"local": 0, "macpro51": 24, "studio": 4})),
            // macpro51: 12 / 12 / 2 = 0.5; studio: 6 / 8 = 0.75.
            ("make", json!({"local": 0, "macpro51": 12, "studio": 6})),
            // Equal scores: configuration order decides.
            ("make", json!({"local": 0, "macpro51": 12, "studio": 4})),
            // Docker needs Linux only: the idle gpu box beats a busy macpro51.
            ("docker ps", json!({"local": 0, "macpro51": 24, "gpu": 0})),
        ],
    );
    let nodes: Vec<_> = answers.iter().map(|a| a["node"].as_str().unwrap_or("local").to_string()).collect();
    assert_eq!(nodes, ["studio", "macpro51", "macpro51", "gpu"]);
}

#[test]
fn overloaded_machine_sends_plain_commands_to_the_least_loaded_node() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_config(CLUSTER);
    let answers = route_all(
        &sandbox,
        &config,
        &[
            // 8 / 4 slots = 2.0 per core > 1.0: overloaded.
            ("ls -la", json!({"local": 8, "macpro51": 12, "studio": 0, "gpu": 4})),
            ("ls -la", json!({"local": 3})),
            // Every node busier than this machine: stay, with a warning.
            ("ls -la", json!({"local": 8, "macpro51": 100, "studio": 100, "gpu": 100})),
        ],
    );
    assert_eq!(answers[0]["node"], "studio");
    assert_eq!(answers[0]["reason"], "overloaded");
    assert_eq!(answers[0]["rule"], Value::Null);
    assert!(answers[0]["announcement"].as_str().unwrap().contains("studio"));
    assert_eq!(answers[1]["reason"], "local");
    assert_eq!(answers[1]["distribute"], false);
    assert_eq!(answers[2]["distribute"], false);
    let warnings = answers[2]["warnings"].to_string();
    assert!(warnings.contains("overloaded") && warnings.contains("no node is less loaded"), "{warnings}");
}

#[test]
fn local_machine_that_satisfies_the_rule_keeps_the_command() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_config(
        &CLUSTER.replace("os = \"macos\"\nslots = 4", "os = \"linux\"\nslots = 4\nroles = [\"builder\"]"),
    );
    let answers = route_all(
        &sandbox,
        &config,
        &[("docker ps", json!({"local": 0})), ("make", json!({"local": 0})), ("make", json!({"local": 40}))],
    );
    for a in &answers[..2] {
        assert_eq!(a["distribute"], false, "{a}");
        assert!(a["rule"].is_string(), "the matched rule is still reported: {a}");
    }
    assert_eq!(answers[2]["node"], "macpro51", "an overloaded builder still hands builds off: {}", answers[2]);
}

#[test]
fn unsatisfiable_rule_runs_locally_with_a_warning() {
    let sandbox = Sandbox::new();
    let config =
        sandbox.write_config("[local]\nos = \"macos\"\n[[node]]\nname = \"studio\"\nhost = \"s\"\nos = \"macos\"\n");
    let answers = route_all(&sandbox, &config, &[("docker ps", json!({"local": 0}))]);
    assert_eq!(answers[0]["distribute"], false);
    assert_eq!(answers[0]["node"], Value::Null);
    assert_eq!(answers[0]["rule"], "linux_required");
    assert!(
        answers[0]["warnings"].to_string().contains("no node satisfies rule linux_required (os=linux)"),
        "{}",
        answers[0]
    );
}

#[test]
fn nodes_that_did_not_answer_are_skipped_until_they_expire() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_config(CLUSTER);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let state = sandbox.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let cache = json!({"nodes": {
        "macpro51": {"answered": false, "checked_at": now - 10, "error": "connection refused"},
        "studio": {"answered": true, "checked_at": now, "load1": 2.0, "cores": 8, "load_at": now - 5},
    }});
    std::fs::write(state.join("nodes.json"), cache.to_string()).unwrap();
    let answers = route_all(&sandbox, &config, &[("make", json!({"local": 0}))]);
    assert_eq!(answers[0]["node"], "studio", "{}", answers[0]);
    let mac = &answers[0]["candidates"][0];
    assert_eq!(mac["eligible"], false);
    assert!(mac["why_not"].as_str().unwrap().contains("connection refused"));
    assert_eq!(answers[0]["candidates"][1]["load"], 2.0, "cached loads are used");

    // Ten minutes later the failure is old news: macpro51 is tried again.
    let old = json!({"nodes": {"macpro51": {"answered": false, "checked_at": now - 600, "error": "x"}}});
    std::fs::write(state.join("nodes.json"), old.to_string()).unwrap();
    let answers = route_all(&sandbox, &config, &[("make", json!({"local": 0}))]);
    assert_eq!(answers[0]["node"], "macpro51");
}

#[test]
fn unparsable_commands_stay_local_with_a_warning() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_config(CLUSTER);
    let answers = route_all(
        &sandbox,
        &config,
        &[("echo 'unterminated", json!({"local": 0})), ("docker ps )", json!({"local": 0}))],
    );
    for a in &answers {
        assert_eq!(a["distribute"], false, "{a}");
        assert!(a["warnings"].to_string().contains("could not parse"), "{a}");
    }
}

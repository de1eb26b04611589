//! `distex process --sandbox` against a processor that tries every door
//! out (issue 13), checked from outside: listeners that record
//! connections, files, a process the test started, `ps`. The same
//! processor without `--sandbox` shows which doors the documented default
//! leaves open, and that a `setsid` escape is collected and counted. Also:
//! `--pass-env`, `--allow-connect`, the refusal without bubblewrap, a
//! sandboxed worker on an SSH node, and the real `claude` CLI as a
//! sandboxed region processor.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util as support;

use support::Sandbox;
use support::sshd::{Cluster, all_processes_matching, stop_masters};

/// Accepts connections in the background; counts them and keeps what each sent.
struct Recorder {
    count: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn serve<S: Read + Send + 'static>(accept: impl FnMut() -> Option<S> + Send + 'static) -> Recorder {
        let (count, received) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
        let (c, r) = (count.clone(), received.clone());
        let mut accept = accept;
        std::thread::spawn(move || {
            while let Some(mut stream) = accept() {
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut text = String::new();
                    let _ = stream.read_to_string(&mut text);
                    r.lock().unwrap().push(text);
                });
            }
        });
        Recorder { count, received }
    }

    fn tcp(listener: TcpListener) -> Recorder {
        Recorder::serve(move || listener.accept().ok().map(|(s, _)| s))
    }

    fn unix(listener: UnixListener) -> Recorder {
        Recorder::serve(move || listener.accept().ok().map(|(s, _)| s))
    }

    fn connections(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

/// Everything the door-trying processor needs, set up outside distex.
struct Doors {
    sb: Sandbox,
    unix: Recorder,
    unix_path: PathBuf,
    tcp: Recorder,
    tcp_port: u16,
    victim: std::process::Child,
    secret: String,
    key: String,
    outside: PathBuf,
    /// The `sleep` argument the processor daemonizes with `setsid`.
    escape: String,
}

impl Doors {
    fn new(salt: u32) -> Doors {
        let sb = Sandbox::new();
        let unix_path = PathBuf::from(format!("/tmp/dx-door-{}-{salt}.sock", std::process::id()));
        let _ = std::fs::remove_file(&unix_path);
        let unix = Recorder::unix(UnixListener::bind(&unix_path).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp_port = listener.local_addr().unwrap().port();
        let tcp = Recorder::tcp(listener);
        let victim = std::process::Command::new("sleep").arg("600").spawn().unwrap();
        // A fake private key in the user's home (distex runs with HOME = sb/home).
        let key = format!("FAKE-PRIVATE-KEY-{}-{salt}", std::process::id());
        std::fs::create_dir_all(sb.path().join("home/.ssh")).unwrap();
        std::fs::write(sb.path().join("home/.ssh/id_ed25519"), &key).unwrap();
        Doors {
            unix,
            unix_path,
            tcp,
            tcp_port,
            victim,
            secret: format!("coordinator-secret-{}-{salt}", std::process::id()),
            key,
            outside: sb.path().join("outside"),
            escape: format!("6{}.{salt}", std::process::id() % 100000),
            sb,
        }
    }

    /// A processor that tries each door and prints what opened (its own
    /// word, shown in the report; the test believes only what it sees).
    fn processor(&self) -> String {
        format!(
            r#"{escape}python3 -c '
import glob, json, os, socket, signal, sys
res = {{"read": len(sys.stdin.read()) > 0}}
def attempt(name, f):
    try:
        res[name] = f()
    except Exception as e:
        res[name] = "shut: " + type(e).__name__
def unix():
    s = socket.socket(socket.AF_UNIX); s.connect("{unix}"); s.sendall(b"unix from " + os.environ["DISTEX_REGION"].encode()); s.close(); return "open"
def tcp():
    s = socket.create_connection(("127.0.0.1", {port}), timeout=3); s.sendall(b"tcp"); s.close(); return "open"
def key():
    return open("{home}/.ssh/id_ed25519").read()
def signal_victim():
    os.kill({victim}, 0); os.kill({victim}, signal.SIGTERM); return "open"
def environ():
    found = []
    for path in glob.glob("/proc/*/environ"):
        try:
            data = open(path, "rb").read()
        except OSError:
            continue
        for var in data.split(b"\0"):
            if var.startswith(b"DOOR_SECRET="):
                found.append(var.decode())
    return found or "shut"
def write():
    open("{outside}-" + os.environ["DISTEX_REGION"], "w").write("x"); return "open"
for name, f in [("unix", unix), ("tcp", tcp), ("key", key), ("signal", signal_victim), ("environ", environ), ("write", write)]:
    attempt(name, f)
print(json.dumps(res))
'"#,
            escape = escape_line(&self.escape),
            unix = self.unix_path.display(),
            port = self.tcp_port,
            home = self.sb.path().join("home").display(),
            victim = self.victim.id(),
            outside = self.outside.display(),
        )
    }

    fn run(&self, extra: &[&str]) -> serde_json::Value {
        self.sb
            .cmd()
            .env("DOOR_SECRET", &self.secret)
            .args(["process", "--demo", "--json", "--processor", &self.processor()])
            .args(extra)
            .run()
            .success()
            .json()
    }

    fn victim_alive(&mut self) -> bool {
        // A SIGTERM kills `sleep`; give it a moment to be reaped as exited.
        std::thread::sleep(Duration::from_millis(100));
        self.victim.try_wait().unwrap().is_none()
    }

    fn escapes_alive(&self) -> Vec<(i32, String)> {
        all_processes_matching(&format!("sleep {}", self.escape))
    }

    fn written_outside(&self) -> usize {
        ["A", "B", "C"].iter().filter(|r| Path::new(&format!("{}-{r}", self.outside.display())).exists()).count()
    }
}

impl Drop for Doors {
    fn drop(&mut self) {
        let _ = self.victim.kill();
        let _ = self.victim.wait();
        let _ = std::fs::remove_file(&self.unix_path);
    }
}

/// Shell text that daemonizes `sleep ARG` with `setsid` and returns only
/// once it has left the worker's process group (so that the worker cannot
/// end before the escape happened).
fn escape_line(arg: &str) -> String {
    format!(
        "setsid sh -c 'echo > escaped; exec sleep {arg}' </dev/null >/dev/null 2>&1 &\n\
         while [ ! -e escaped ]; do sleep 0.01; done\n"
    )
}

#[test]
fn sandboxed_processors_find_every_door_shut_and_every_region_completes() {
    assert!(support::bwrap_works(), "bubblewrap must be installed and working for this test (.ci/run installs it)");
    let mut doors = Doors::new(1);
    let report = doors.run(&["--sandbox"]);
    assert_eq!(support::accounting(&report), [30, 30, 0, 0], "{report:#}");
    assert_eq!(report["complete"], true);
    let text = report.to_string();
    // Checked from outside, not from the processor's word.
    assert_eq!(doors.unix.connections(), 0, "a sandboxed worker reached a Unix socket in /tmp");
    assert_eq!(doors.tcp.connections(), 0, "a sandboxed worker reached 127.0.0.1");
    assert!(!text.contains(&doors.key), "the key in the user's home was read: {text}");
    assert!(!text.contains(&doors.secret), "distex's environment was read through /proc: {text}");
    assert!(doors.victim_alive(), "a sandboxed worker signalled a process outside its sandbox");
    assert_eq!(doors.written_outside(), 0, "a sandboxed worker wrote outside its directory");
    // The kernel empties a PID namespace as its init ends: soon, not at once.
    support::eventually(Duration::from_secs(5), || doors.escapes_alive().is_empty());
    let left = doors.escapes_alive();
    assert!(left.is_empty(), "a setsid escape outlived its sandbox: {left:?}");
    // And the processor agrees.
    for region in ["A", "B", "C"] {
        let r = &report["regions"][region]["result"];
        for door in ["unix", "tcp", "key", "signal", "write"] {
            assert!(r[door].as_str().is_some_and(|s| s.starts_with("shut")), "{region} {door}: {r}");
        }
        assert_eq!(r["environ"], "shut", "{r}");
        assert_eq!(r["read"], true, "{r}");
    }
}

#[test]
fn without_the_sandbox_the_documented_doors_are_open_and_setsid_escapes_are_collected() {
    let mut doors = Doors::new(2);
    let report = doors.run(&["--jobs", "1"]);
    assert_eq!(support::accounting(&report), [30, 30, 0, 0], "{report:#}");
    let text = report.to_string();
    // Open by default, as docs/process.md says: sockets and the network,
    // files the user can read or write, signals, other processes' /proc.
    assert_eq!(doors.unix.connections(), 3, "{text}");
    let mut got = doors.unix.received();
    got.sort();
    assert_eq!(got, ["unix from A", "unix from B", "unix from C"]);
    assert_eq!(doors.tcp.connections(), 3);
    assert!(text.contains(&doors.key), "{text}");
    assert!(text.contains(&doors.secret), "distex's own environment is readable in /proc: {text}");
    assert!(!doors.victim_alive(), "a worker can signal the user's other processes");
    assert_eq!(doors.written_outside(), 3);
    // Closed: the daemonized sleep of every region was killed when its
    // attempt ended, and the report counts it.
    let left = doors.escapes_alive();
    assert!(left.is_empty(), "a setsid escape outlived its worker: {left:?}");
    assert_eq!(report["collected_processes"], 3, "{report:#}");
    let warnings = report["warnings"].to_string();
    for region in ["A", "B", "C"] {
        assert!(warnings.contains(&format!("region \\\"{region}\\\": 1 process(es) left")), "{warnings}");
    }
}

#[test]
fn a_setsid_escape_is_collected_even_when_the_attempt_times_out() {
    let sb = Sandbox::new();
    let escape = format!("7{}.5", std::process::id() % 100000);
    let report = sb
        .cmd()
        .args(["process", "--demo", "--json", "--timeout", "1", "--grace", "0.2"])
        .args(["--processor", &format!("{}exec sleep 30", escape_line(&escape))])
        .run()
        .expect_code(3)
        .json();
    assert_eq!(support::accounting(&report), [30, 0, 0, 30]);
    assert!(report["regions"]["A"]["error"].as_str().unwrap().contains("timed out"), "{report:#}");
    let left = all_processes_matching(&format!("sleep {escape}"));
    assert!(left.is_empty(), "escaped: {left:?}");
    assert_eq!(report["collected_processes"], 3, "{report:#}");
}

#[test]
fn pass_env_passes_named_variables_and_nothing_else() {
    let sb = Sandbox::new();
    sb.write_config("[process]\npass_env = [\"FROM_CONFIG\"]\n");
    let processor =
        r#"printf '{"flag": "%s", "config": "%s", "other": "%s"}' "$FROM_FLAG" "$FROM_CONFIG" "$NOT_PASSED""#;
    for sandbox in [false, true] {
        let mut cmd = sb
            .cmd()
            .env("FROM_FLAG", "flag-value")
            .env("FROM_CONFIG", "config-value")
            .env("NOT_PASSED", "secret")
            .args(["--config", sb.path().join("cluster.toml").to_str().unwrap()])
            .args(["process", "--demo", "--json", "--pass-env", "FROM_FLAG", "--processor", processor]);
        if sandbox {
            cmd = cmd.arg("--sandbox");
        }
        let report = cmd.run().success().json();
        assert_eq!(
            report["regions"]["B"]["result"],
            serde_json::json!({"flag": "flag-value", "config": "config-value", "other": ""}),
            "sandbox: {sandbox}"
        );
    }
    // A name that is not set is an error before anything runs.
    let run = sb.cmd().args(["process", "--demo", "--pass-env", "UNSET_FOR_SURE_13"]).run().expect_code(2);
    assert!(run.stderr().contains("--pass-env UNSET_FOR_SURE_13: UNSET_FOR_SURE_13 is not set"), "{}", run.stderr());
    let run = sb.cmd().args(["process", "--demo", "--pass-env", "A=B"]).run().expect_code(2);
    assert!(run.stderr().contains("is not a variable name"), "{}", run.stderr());
    // A bad name in the config names the file, line and key.
    let config = sb.write_config("[process]\npass_env = [\"OK\", \"bad-name\"]\n");
    let run = sb.cmd().args(["--config", config.to_str().unwrap(), "process", "--demo"]).run().expect_code(2);
    assert!(
        run.stderr().contains("cluster.toml:2:1: process.pass_env: \"bad-name\" is not a variable name"),
        "{}",
        run.stderr()
    );
}

#[test]
fn allow_connect_opens_exactly_one_endpoint() {
    assert!(support::bwrap_works(), "bubblewrap must be installed and working for this test");
    let sb = Sandbox::new();
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed_port = allowed.local_addr().unwrap().port();
    let allowed = Recorder::tcp(allowed);
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    let other = Recorder::tcp(other);
    let processor = format!(
        r#"python3 -c '
import json, os, socket
res = {{}}
for name, port in [("allowed", {allowed_port}), ("other", {other_port})]:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
        s.sendall(("hello from " + os.environ["DISTEX_REGION"]).encode()); s.close(); res[name] = "open"
    except OSError as e:
        res[name] = "shut"
print(json.dumps(res))
'"#
    );
    let report = sb
        .cmd()
        .args(["process", "--demo", "--json", "--sandbox", "--allow-connect", &format!("127.0.0.1:{allowed_port}")])
        .args(["--processor", &processor])
        .run()
        .success()
        .json();
    assert_eq!(support::accounting(&report), [30, 30, 0, 0]);
    assert!(support::eventually(Duration::from_secs(5), || allowed.received().len() == 3));
    let mut got = allowed.received();
    got.sort();
    assert_eq!(got, ["hello from A", "hello from B", "hello from C"]);
    assert_eq!(other.connections(), 0, "only the allowed endpoint is reachable");
    assert_eq!(report["regions"]["C"]["result"], serde_json::json!({"allowed": "open", "other": "shut"}));
    // It is a sandbox option, and endpoints are checked.
    let run = sb.cmd().args(["process", "--demo", "--allow-connect", "127.0.0.1:1"]).run().expect_code(2);
    assert!(run.stderr().contains("--sandbox"), "{}", run.stderr());
    let run = sb.cmd().args(["process", "--demo", "--sandbox", "--allow-connect", "10.1.2.3:80"]).run().expect_code(2);
    assert!(run.stderr().contains("name the host by its DNS name"), "{}", run.stderr());
}

#[test]
fn sandbox_refuses_when_bubblewrap_is_missing() {
    let sb = Sandbox::new();
    let bin = sb.path().join("bin-without-bwrap");
    std::fs::create_dir_all(&bin).unwrap();
    let run = sb
        .cmd()
        .env("PATH", &bin)
        .args(["process", "--demo", "--sandbox", "--processor", "cat >/dev/null; echo '{}'"])
        .run()
        .expect_code(2);
    let err = run.stderr();
    assert!(
        err.contains("--sandbox is not available here") && err.contains("bubblewrap (bwrap) is not installed"),
        "{err}"
    );
    assert!(run.stdout().is_empty(), "nothing ran: {}", run.stdout());
}

#[test]
fn remote_workers_get_the_same_sandbox_from_the_nodes_distex() {
    assert!(support::bwrap_works(), "bubblewrap must be installed and working for this test");
    let cluster = Cluster::start(1);
    let sb = Sandbox::new();
    sb.write_config(&cluster.config(&format!("slots = 2\ndistex = \"{}\"\n", support::DISTEX), ""));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tcp = Recorder::tcp(listener);
    let outside = sb.path().join("outside");
    let escape = format!("8{}.3", std::process::id() % 100000);
    let processor = format!(
        r#"{escape_line}python3 -c '
import json, os, socket, sys
res = {{"read": len(sys.stdin.read()) > 0, "token": os.environ.get("NODE_TOKEN", ""), "home": os.path.exists("{home}")}}
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3); res["tcp"] = "open"
except OSError:
    res["tcp"] = "shut"
try:
    open("{outside}", "w").write("x"); res["write"] = "open"
except OSError:
    res["write"] = "shut"
print(json.dumps(res))
'"#,
        escape_line = escape_line(&escape),
        home = sb.path().join("home").display(),
        outside = outside.display(),
    );
    let report = sb
        .cmd()
        .env("NODE_TOKEN", "token-for-the-node")
        .args(["--config", sb.path().join("cluster.toml").to_str().unwrap()])
        .args(["process", "--demo", "--json", "--jobs", "0", "--nodes", "n1", "--sandbox"])
        .args(["--pass-env", "NODE_TOKEN", "--processor", &processor])
        .run()
        .success()
        .json();
    assert_eq!(support::accounting(&report), [30, 30, 0, 0], "{report:#}");
    for region in ["A", "B", "C"] {
        assert_eq!(
            report["regions"][region]["result"],
            serde_json::json!({"read": true, "token": "token-for-the-node", "home": false, "tcp": "shut", "write": "shut"}),
            "{report:#}"
        );
    }
    let on_node = report["tasks"].as_array().unwrap().iter().filter(|t| t["node"] == "n1").count();
    assert_eq!(on_node, 3, "{report:#}");
    assert_eq!(tcp.connections(), 0);
    assert!(!outside.exists());
    // The kernel empties a PID namespace as its init ends: soon, not at once.
    support::eventually(Duration::from_secs(5), || all_processes_matching(&format!("sleep {escape}")).is_empty());
    let left = all_processes_matching(&format!("sleep {escape}"));
    assert!(left.is_empty(), "escaped on the node: {left:?}");
    stop_masters(sb.path());
}

#[test]
fn claude_is_a_sandboxed_region_processor_with_its_key_passed_and_one_endpoint_allowed() {
    use support::model_server::{ModelServer, Turn};
    assert!(support::bwrap_works(), "bubblewrap must be installed and working for this test");
    // Skipped loudly without the CLI, except in CI (as the end-to-end tests).
    let Some(claude) = crate::claude_e2e::claude_binary() else { return };
    let server = ModelServer::start(vec![
        Turn::text("{\"summary\": \"region one\"}"),
        Turn::text("{\"summary\": \"region two\"}"),
        Turn::text("{\"summary\": \"region three\"}"),
    ]);
    let sb = Sandbox::new();
    let endpoint = server.addr.to_string();
    let report = sb
        .cmd()
        .env("ANTHROPIC_API_KEY", "sk-ant-dummy-key-for-tests")
        .env("ANTHROPIC_BASE_URL", server.base_url())
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("PATH", format!("{}:/usr/bin:/bin", claude.parent().unwrap().display()))
        .args(["process", "--demo", "--json", "--jobs", "1", "--sandbox", "--allow-connect", &endpoint])
        .args(["--pass-env", "ANTHROPIC_API_KEY", "--pass-env", "ANTHROPIC_BASE_URL"])
        .args(["--pass-env", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "--pass-env", "DISABLE_AUTOUPDATER"])
        .args([
            "--processor",
            "claude -p 'Summarize the sales records on stdin as one JSON object.' --output-format json \
             --model claude-scripted-model",
        ])
        .run()
        .success()
        .json();
    assert_eq!(support::accounting(&report), [30, 30, 0, 0], "{report:#}");
    let mut summaries: Vec<String> = ["A", "B", "C"]
        .iter()
        .map(|r| {
            let result = &report["regions"][*r]["result"];
            assert_eq!(result["type"], "result", "{result}");
            assert_eq!(result["is_error"], false, "{result}");
            result["result"].as_str().unwrap().to_string()
        })
        .collect();
    summaries.sort();
    assert_eq!(
        summaries,
        ["{\"summary\": \"region one\"}", "{\"summary\": \"region three\"}", "{\"summary\": \"region two\"}"]
    );
    // Each region's records reached the model, through the one allowed endpoint.
    let asked = server.conversation().iter().map(|b| b.to_string()).collect::<Vec<_>>().join("\n");
    for region in ["A", "B", "C"] {
        assert!(asked.contains(&format!("{region},")), "region {region}'s records were not in any request");
    }
}

#[test]
fn setsid_escapes_on_a_node_are_collected_by_the_nodes_distex() {
    let cluster = Cluster::start(1);
    let sb = Sandbox::new();
    sb.write_config(&cluster.config(&format!("slots = 2\ndistex = \"{}\"\n", support::DISTEX), ""));
    let escape = format!("9{}.4", std::process::id() % 100000);
    let report = sb
        .cmd()
        .env("NODE_TOKEN", "passed-without-sandbox")
        .args(["--config", sb.path().join("cluster.toml").to_str().unwrap()])
        .args(["process", "--demo", "--json", "--jobs", "0", "--nodes", "n1", "--pass-env", "NODE_TOKEN"])
        .args([
            "--processor",
            &format!("{}cat >/dev/null; printf '{{\"token\": \"%s\"}}' \"$NODE_TOKEN\"", escape_line(&escape)),
        ])
        .run()
        .success()
        .json();
    assert_eq!(support::accounting(&report), [30, 30, 0, 0], "{report:#}");
    assert_eq!(report["regions"]["A"]["result"]["token"], "passed-without-sandbox");
    let left = all_processes_matching(&format!("sleep {escape}"));
    assert!(left.is_empty(), "a setsid escape outlived its worker on the node: {left:?}");
    assert_eq!(report["collected_processes"], 3, "{report:#}");
    stop_masters(sb.path());
}

//! The command line as users meet it: `route`, `config`, `nodes`, `json`,
//! `schema`, their errors and exit codes.

use crate::util as support;

use serde_json::json;
use support::Sandbox;

const NODE: &str = "[[node]]\nname = \"macpro51\"\nhost = \"macpro51.local\"\nos = \"linux\"\nroles = [\"builder\"]\nlabel = \"Mac Pro\"\n";

#[test]
fn route_prints_one_line_or_one_json_object() {
    let sb = Sandbox::new();
    let cfg = sb.write_config(&format!("[local]\nos = \"macos\"\n{NODE}"));
    let human = sb
        .cmd()
        .args(["--config"])
        .arg(&cfg)
        .args(["route", "--assume-load", "local=0", "--", "cargo", "build", "--release"])
        .run()
        .success();
    assert_eq!(human.stdout().lines().count(), 1, "{}", human.stdout());
    assert!(
        human.stdout().starts_with("macpro51 <- cargo build --release (rule heavy_computation"),
        "{}",
        human.stdout()
    );

    let json = sb
        .cmd()
        .arg("--config")
        .arg(&cfg)
        .args(["route", "--json", "--assume-load", "local=0", "docker ps && make"])
        .run()
        .success();
    let v = json.json();
    for key in ["distribute", "node", "reason", "rule", "matched", "announcement", "candidates", "warnings"] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["node"], "macpro51");
    assert_eq!(v["reason"], "linux_required");
}

#[test]
fn embedded_default_routes_everything_locally() {
    let sb = Sandbox::new();
    let v =
        sb.cmd().args(["route", "--json", "--assume-load", "local=0", "--", "cargo", "test"]).run().success().json();
    assert_eq!(v["distribute"], false);
    assert_eq!(v["node"], serde_json::Value::Null);
}

#[test]
fn assume_load_errors_are_usage_errors() {
    let sb = Sandbox::new();
    let r = sb.cmd().args(["route", "--assume-load", "nosuch=1", "ls"]).run().expect_code(2);
    assert!(r.stderr().contains("unknown node \"nosuch\""), "{}", r.stderr());
    let r = sb.cmd().args(["route", "--assume-load", "local=lots", "ls"]).run().expect_code(2);
    assert!(r.stderr().contains("not a number"), "{}", r.stderr());
}

#[test]
fn config_lookup_order_flag_env_user_dir_default() {
    let sb = Sandbox::new();
    let user = sb.path().join("home/.config/distex/cluster.toml");
    std::fs::create_dir_all(user.parent().unwrap()).unwrap();
    std::fs::write(&user, "[local]\nname = \"from-user-dir\"\n").unwrap();
    let env = sb.path().join("env.toml");
    std::fs::write(&env, "[local]\nname = \"from-env\"\n").unwrap();
    let flag = sb.write_config("[local]\nname = \"from-flag\"\n");
    let name = |run: support::Run| run.success().json()["local"]["name"].as_str().unwrap().to_string();

    assert_eq!(name(sb.cmd().args(["config", "show", "--json"]).run()), "from-user-dir");
    let xdg = sb.path().join("xdg");
    std::fs::create_dir_all(xdg.join("distex")).unwrap();
    std::fs::write(xdg.join("distex/cluster.toml"), "[local]\nname = \"from-xdg\"\n").unwrap();
    assert_eq!(name(sb.cmd().env("XDG_CONFIG_HOME", &xdg).args(["config", "show", "--json"]).run()), "from-xdg");
    assert_eq!(name(sb.cmd().env("DISTEX_CONFIG", &env).args(["config", "show", "--json"]).run()), "from-env");
    assert_eq!(
        name(sb.cmd().env("DISTEX_CONFIG", &env).arg("--config").arg(&flag).args(["config", "show", "--json"]).run()),
        "from-flag"
    );
    std::fs::remove_file(&user).unwrap();
    let v = sb.cmd().args(["config", "show", "--json"]).run().success().json();
    assert!(v.get("file").is_none(), "embedded default has no file: {v}");
    assert_eq!(v["rules"].as_array().unwrap().len(), 3, "linux_required, macos_required, heavy_computation");
}

#[test]
fn config_show_says_where_each_part_came_from() {
    let sb = Sandbox::new();
    let cfg = sb.write_config(&format!("[local]\nos = \"macos\"\n\n{NODE}"));
    let v = sb.cmd().arg("--config").arg(&cfg).args(["config", "show", "--json"]).run().success().json();
    let sources: std::collections::HashMap<String, String> = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["key"].as_str().unwrap().to_string(), s["from"].as_str().unwrap().to_string()))
        .collect();
    let file = cfg.display().to_string();
    assert_eq!(sources["local.os"], format!("{file}:1"));
    assert_eq!(sources["local.name"], "detected");
    assert_eq!(sources["node.macpro51"], format!("{file}:4"));
    assert_eq!(sources["rule.linux_required"], "built-in");
    let human = sb.cmd().arg("--config").arg(&cfg).args(["config", "show"]).run().success().stdout();
    assert!(human.contains("node macpro51: macpro51.local os=linux"), "{human}");
    assert!(human.contains(&format!("node.macpro51                {file}:4")), "{human}");
}

#[test]
fn config_init_writes_a_starter_that_loads_and_never_overwrites() {
    let sb = Sandbox::new();
    let path = sb.path().join("new/cluster.toml");
    sb.cmd().args(["config", "init", "--path"]).arg(&path).run().success();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("[[node]]") && text.contains("overload_threshold"));
    sb.cmd().arg("--config").arg(&path).args(["config", "show"]).run().success();
    let again = sb.cmd().args(["config", "init", "--path"]).arg(&path).run().expect_code(2);
    assert!(again.stderr().contains("already exists; pass --force"), "{}", again.stderr());
    sb.cmd().args(["config", "init", "--force", "--path"]).arg(&path).run().success();
    // Default location: ~/.config/distex/cluster.toml.
    sb.cmd().args(["config", "init"]).run().success();
    assert!(sb.path().join("home/.config/distex/cluster.toml").exists());
}

#[test]
fn bad_config_files_name_file_line_and_key() {
    let sb = Sandbox::new();
    let cases: &[(&str, &str)] = &[
        (
            "[[node]]\nname = \"a\"\nhost = \"h\"\nos = \"linux\"\nslot = 4\n",
            ":5:1: node[0].slot: unknown field `slot`",
        ),
        ("[local]\nos = \"windows\"\n", ":2:6: local.os: unknown variant `windows`, expected `linux` or `macos`"),
        ("[local]\nname = \"x\n", ":2:"),
        ("[[node]]\nname = \"a\"\nos = \"linux\"\n", ":1:1: node.a.host: is required for an SSH node"),
        ("[[node]]\nname = \"a\"\nhost = \"h\"\nos = \"linux\"\nslots = 0\n", ":1:1: node.a.slots: must be at least 1"),
        (
            "[[rule]]\nname = \"r\"\ncommands = [\"x\"]\nannounce = \"on {nod}\"\n",
            "rule.r.announce: unknown placeholder {nod}",
        ),
        ("[[node]]\nname = \"a\"\nhost = \"h\"\nos = \"linux\"\nport = 70000\n", ":5:8: node[0].port:"),
        ("[hook]\nmode = \"always\"\n", "hook.mode: unknown variant `always`"),
    ];
    for (text, want) in cases {
        let cfg = sb.write_config(text);
        let r = sb.cmd().arg("--config").arg(&cfg).args(["route", "ls"]).run().expect_code(2);
        let err = r.stderr();
        assert!(
            err.contains(&format!("{}", cfg.display())) && err.contains(want),
            "for {text:?} want {want:?} in:\n{err}"
        );
        assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    }
    let missing = sb.cmd().args(["--config", "/nonexistent/cluster.toml", "route", "ls"]).run().expect_code(2);
    assert!(missing.stderr().contains("cannot read config file /nonexistent/cluster.toml"), "{}", missing.stderr());
}

#[test]
fn json_protocol_answers_every_line_and_reports_failures() {
    let sb = Sandbox::new();
    let cfg = sb.write_config(NODE);
    let input = [
        json!({"op": "route", "command": "make", "id": 1, "assume_load": {"local": 0}}).to_string(),
        "{not json".to_string(),
        json!({"op": "frobnicate", "id": "x"}).to_string(),
        json!({"command": "ls"}).to_string(),
        json!({"op": "route", "id": 5}).to_string(),
        json!({"op": "route", "command": "ls", "assume_load": {"ghost": 1}}).to_string(),
        String::new(),
        json!({"op": "nodes", "id": [7]}).to_string(),
    ]
    .join("\n");
    let run = sb.cmd().arg("--config").arg(&cfg).arg("json").stdin(&input).expect_code(1);
    let lines = run.json_lines();
    assert_eq!(lines.len(), 7, "blank lines are skipped, every other line answered:\n{}", run.stdout());
    assert_eq!(lines[0]["id"], 1);
    assert_eq!(lines[0]["node"], "macpro51");
    assert_eq!(lines[1]["error"]["code"], "parse_error");
    assert!(lines[1]["error"]["message"].as_str().unwrap().starts_with("line 2:"));
    assert_eq!(lines[2]["error"]["code"], "unknown_op");
    assert_eq!(lines[2]["id"], "x");
    assert_eq!(lines[3]["error"]["code"], "invalid_request");
    assert_eq!(lines[4]["error"]["code"], "invalid_request");
    assert!(lines[4]["error"]["message"].as_str().unwrap().contains("command"), "{}", lines[4]);
    assert_eq!(lines[5]["error"]["code"], "usage");
    assert_eq!(lines[6]["op"], "nodes");
    assert_eq!(lines[6]["id"], json!([7]));
    assert_eq!(lines[6]["nodes"][1]["name"], "macpro51");

    let ok = sb.cmd().arg("--config").arg(&cfg).arg("json").stdin("{\"op\":\"nodes\"}\n").success();
    assert_eq!(ok.json_lines().len(), 1);
}

/// A 100 MB request line is refused with an error object (read to its end
/// without being held) and the next line is still answered.
#[test]
fn json_protocol_refuses_an_over_long_line_and_goes_on() {
    let sb = Sandbox::new();
    let cfg = sb.write_config(NODE);
    let mut input = String::from("{\"op\":\"route\",\"id\":1,\"command\":\"");
    input.push_str(&"a".repeat(100 << 20));
    input.push_str("\"}\n");
    input.push_str(&json!({"op": "route", "command": "make", "id": 2, "assume_load": {"local": 0}}).to_string());
    let run = sb.cmd().arg("--config").arg(&cfg).arg("json").stdin(&input).expect_code(1);
    let lines = run.json_lines();
    assert_eq!(lines.len(), 2, "{}", run.stdout());
    assert_eq!(lines[0]["error"]["code"], "too_large", "{}", lines[0]);
    let message = lines[0]["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("line 1:") && message.contains(&(input.find('\n').unwrap() + 1).to_string()),
        "{message}"
    );
    assert_eq!(lines[1]["id"], 2);
    assert_eq!(lines[1]["node"], "macpro51");
}

#[test]
fn nodes_lists_capabilities_and_cached_health() {
    let sb = Sandbox::new();
    let cfg = sb.write_config(NODE);
    let v = sb.cmd().arg("--config").arg(&cfg).args(["nodes", "--json"]).run().success().json();
    assert_eq!(v["nodes"][0]["host"], "local");
    assert_eq!(v["nodes"][1]["name"], "macpro51");
    assert_eq!(v["nodes"][1]["answered"], serde_json::Value::Null, "never contacted");
    let table = sb.cmd().arg("--config").arg(&cfg).arg("nodes").run().success().stdout();
    assert!(table.contains("macpro51") && table.contains("never") && table.contains("role:builder"), "{table}");
}

#[test]
fn usage_errors_exit_2_and_help_explains() {
    let sb = Sandbox::new();
    sb.cmd().arg("route").run().expect_code(2);
    sb.cmd().arg("frobnicate").run().expect_code(2);
    let help = sb.cmd().args(["route", "--help"]).run().success().stdout();
    assert!(help.contains("--assume-load") && help.contains("Example"), "{help}");
}

#[test]
fn speak_starts_tts_without_waiting_and_warns_when_there_is_none() {
    let sb = Sandbox::new();
    // A stand-in TTS program that speaks only once the test releases it (or
    // after 20 s), then records what it was asked to say.
    let said = sb.path().join("said.txt");
    let release = sb.path().join("release");
    let tts = sb.path().join("slow-tts");
    // Written aside and renamed, so the file appears whole, never empty.
    let (said_text, release_text) = (said.display(), release.display());
    support::write_executable(
        &tts,
        &format!(
            "#!/bin/sh\ni=0\nwhile [ ! -e '{release_text}' ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done\n\
             printf '%s' \"$1\" > '{said_text}.tmp'\nmv '{said_text}.tmp' '{said_text}'\n"
        ),
    );
    let cfg = sb.write_config(&format!("[local]\nos = \"macos\"\n[announce]\ncommand = \"{}\"\n{NODE}", tts.display()));
    let v = sb
        .cmd()
        .arg("--config")
        .arg(&cfg)
        .args(["route", "--json", "--speak", "--assume-load", "local=0", "make"])
        .run()
        .success()
        .json();
    assert!(!said.exists(), "distex answered before the announcement was spoken");
    assert_eq!(v["warnings"], json!([]));
    std::fs::write(&release, "").unwrap();
    support::eventually(std::time::Duration::from_secs(30), || said.exists());
    assert_eq!(std::fs::read_to_string(&said).unwrap(), "Heavy compilation detected, offloading to Mac Pro.");

    // No TTS program at all: a warning, and still an answer.
    let cfg = sb.write_config(&format!("[local]\nos = \"macos\"\n{NODE}"));
    let v = sb
        .cmd()
        .env("PATH", "/nonexistent")
        .arg("--config")
        .arg(&cfg)
        .args(["route", "--json", "--speak", "--assume-load", "local=0", "make"])
        .run()
        .success()
        .json();
    assert_eq!(v["node"], "macpro51");
    assert!(v["warnings"].to_string().contains("cannot speak"), "{v}");
}

/// A reader that goes away (`distex ... | head`) ends the output quietly:
/// exit 0, nothing on stderr (no error, no "internal error").
#[test]
fn a_closed_stdout_is_no_error() {
    let sb = Sandbox::new();
    let cfg = sb.write_config(&format!("[local]\nos = \"macos\"\n{NODE}"));
    let cfg = cfg.to_str().unwrap();
    let runs: [&[&str]; 4] = [
        &["process", "--demo"],
        &["process", "--demo", "--json"],
        &["--config", cfg, "route", "--assume-load", "local=0", "--", "make"],
        &["--config", cfg, "config", "show"],
    ];
    for args in runs {
        let run = sb.cmd().args(args).run_with_stdout_closed();
        assert_eq!((run.code(), run.stderr()), (Some(0), String::new()), "{args:?}");
    }
}

/// Every `--timeout` takes one duration syntax; a value out of range is a
/// usage error naming the flag, never a panic.
#[test]
fn every_timeout_takes_one_duration_syntax() {
    let sb = Sandbox::new();
    for bad in ["1e20", "-1", "NaN", "0", "soon", "5d"] {
        let flag = format!("--timeout={bad}");
        for cmd in
            [&["process", "--demo", &flag][..], &["run", &flag, "--", "true"], &["parallel", &flag, "--", "true"]]
        {
            let run = sb.cmd().args(cmd).run().expect_code(2);
            assert!(run.stderr().contains("--timeout"), "{cmd:?}: {}", run.stderr());
            assert!(!run.stderr().contains("internal error"), "{cmd:?}: {}", run.stderr());
        }
    }
    for good in ["500ms", "2s", "1.5s", "3m", "1h", "30", "2.5"] {
        sb.cmd().args(["process", "--demo", "--json", "--timeout", good]).run().success();
        sb.cmd().args(["run", "--node", "local", "--timeout", good, "--", "true"]).run().success();
    }
    sb.cmd().args(["process", "--demo", "--json", "--grace", "250ms"]).run().success();
}

/// `--split`, `--format`, sizes and `--schema` are checked by the parser:
/// a bad value is a usage error naming the flag and the values it takes.
#[test]
fn typed_process_flags_name_the_flag_and_choices() {
    let sb = Sandbox::new();
    let run = sb.cmd().args(["process", "--demo", "--split", "rows"]).run().expect_code(2);
    assert!(run.stderr().contains("--split") && run.stderr().contains("regions"), "{}", run.stderr());
    let run = sb.cmd().args(["process", "--demo", "--format", "xml"]).run().expect_code(2);
    assert!(run.stderr().contains("--format") && run.stderr().contains("jsonl"), "{}", run.stderr());
    let run = sb.cmd().args(["process", "--demo", "--max-memory", "12Q"]).run().expect_code(2);
    assert!(run.stderr().contains("--max-memory"), "{}", run.stderr());
    let run = sb.cmd().args(["process", "--demo", "--schema", "revenue=date"]).run().expect_code(2);
    assert!(run.stderr().contains("--schema") && run.stderr().contains("number or text"), "{}", run.stderr());
    let v = sb
        .cmd()
        .args(["process", "--demo", "--json", "--format", "csv", "--schema", "revenue=number"])
        .run()
        .success()
        .json();
    assert_eq!(v["complete"], true, "{v}");
}

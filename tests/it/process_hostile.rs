//! Hostile data and tight limits (issue 17): a bad record is rejected with
//! its file, line and reason, never a whole region; rlimit defaults fit the
//! hard limits in force; memory stays bounded whatever the input; human
//! output escapes what could make a line read differently from what it is.

use crate::util as support;

use serde_json::Value;
use support::{Sandbox, accounting};

/// The reasons of a report's rejects, with their lines.
fn rejects(report: &Value) -> Vec<(u64, String)> {
    report["rejects"]
        .as_array()
        .expect("rejects")
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["reason"].as_str().unwrap().to_string()))
        .collect()
}

/// A NUL byte in one record's key, another in a text field, and invalid
/// UTF-8 in a third, among good rows: three rejected records with their
/// lines and reasons, every other record of the same regions processed,
/// exit 0, on both splits.
#[test]
fn a_nul_byte_rejects_its_record_not_its_region() {
    let sb = Sandbox::new();
    let mut csv = b"region,v,note\n".to_vec();
    for i in 0..40 {
        csv.extend(format!("{},{i},fine\n", ["A", "B"][i % 2]).as_bytes());
    }
    csv.extend(b"A\0B,100,x\n"); // line 42: NUL in the key
    csv.extend(b"B,200,n\0te\n"); // line 43: NUL in a text field
    csv.extend(b"\"A\",300,\"caf\xff\"\n"); // line 44: not UTF-8
    csv.extend(b"A,7,last\n");
    std::fs::write(sb.path().join("nul.csv"), &csv).unwrap();
    for split in ["regions", "bytes"] {
        let run = sb.cmd().args(["process", "nul.csv", "--by", "region", "--json", "--split", split]).run().success();
        let report = run.json();
        assert_eq!(accounting(&report), [44, 41, 3, 0], "{split}: {report:#}");
        assert_eq!(report["complete"], true, "{split}");
        let names: Vec<&String> = report["regions"].as_object().unwrap().keys().collect();
        assert_eq!(names, ["A", "B"], "{split}");
        assert_eq!(report["regions"]["A"]["records"], 21, "{split}");
        assert_eq!(report["totals"]["stats"]["v"]["sum"].as_f64(), Some(787.0), "{split}");
        let got = rejects(&report);
        assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), [42, 43, 44], "{split}: {got:?}");
        assert!(got[0].1.contains("NUL") && got[0].1.contains("field 1"), "{split}: {got:?}");
        assert!(got[1].1.contains("NUL") && got[1].1.contains("field 3"), "{split}: {got:?}");
        assert!(got[2].1.contains("UTF-8"), "{split}: {got:?}");
    }
}

/// JSON Lines: `\u0000` decodes to a NUL, which no key or text may hold.
#[test]
fn a_nul_in_json_lines_rejects_its_record() {
    let sb = Sandbox::new();
    let lines = "{\"region\":\"A\",\"v\":1}\n{\"region\":\"A\\u0000\",\"v\":2}\n{\"region\":\"B\",\"v\":3}\n";
    std::fs::write(sb.path().join("d.jsonl"), lines).unwrap();
    let report = sb.cmd().args(["process", "d.jsonl", "--by", "region", "--json"]).run().success().json();
    assert_eq!(accounting(&report), [3, 2, 1, 0], "{report:#}");
    assert_eq!(report["complete"], true);
    let got = rejects(&report);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 2);
    assert!(got[0].1.contains("NUL") && got[0].1.contains("region"), "{got:?}");
}

/// `sh -c SCRIPT` with the open-files limit (soft and hard) lowered to
/// 512 first, as in many containers. Root may raise a hard limit again
/// (CAP_SYS_RESOURCE), so as root the capability is dropped (util-linux's
/// `setpriv`) for the limit to bind as it does for everyone else.
fn under_open_files_512(sb: &Sandbox, script: &str) -> support::Run {
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let script = format!("ulimit -n 512 && exec \"$0\" {script}");
    let (program, first): (&str, &[&str]) =
        if root { ("setpriv", &["--bounding-set=-sys_resource", "sh"]) } else { ("sh", &[]) };
    let mut cmd = sandboxed(sb, program);
    cmd.args(first).args(["-c", &script, support::DISTEX]);
    support::TestCommand { cmd }.run()
}

/// `program` (which runs distex) set up as `Sandbox::cmd` sets up distex:
/// the sandbox's environment and directory, no stdin.
fn sandboxed(sb: &Sandbox, program: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    for (key, value) in sb.cmd().cmd.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    cmd.current_dir(sb.path()).stdin(std::process::Stdio::null());
    cmd
}

/// Under a hard limit of 512 open files the default `--max-open-files`
/// (1024) is clamped to it, so the demo completes; asking for more than
/// the hard limit is a usage error naming it.
#[test]
fn rlimit_defaults_fit_under_a_low_hard_limit() {
    let sb = Sandbox::new();
    let run = under_open_files_512(&sb, "process --demo --json").success();
    let report = run.json();
    assert_eq!(report["complete"], true, "{report:#}");
    assert_eq!(accounting(&report), [30, 30, 0, 0]);

    let run = under_open_files_512(&sb, "process --demo --max-open-files 600").expect_code(2);
    let err = run.stderr();
    assert!(err.contains("--max-open-files 600") && err.contains("hard limit") && err.contains("512"), "{err}");
    assert!(run.stdout().is_empty(), "nothing is processed: {}", run.stdout());
}

/// Region names holding a right-to-left override, a zero-width space, an
/// isolate and a terminal escape sequence: escaped visibly in the human
/// report (task lines, region lines, reject reasons), exact in JSON.
#[test]
fn human_output_escapes_what_could_make_a_line_lie() {
    let sb = Sandbox::new();
    let evil = ["A\u{202E}gnp.exe", "B\u{200B}", "C\u{2066}x\u{2069}", "D\u{1b}[31mred\u{1b}[0m"];
    let mut csv = String::from("region,v\n");
    for (i, name) in evil.iter().enumerate() {
        csv.push_str(&format!("{name},{i}\n"));
    }
    csv.push_str("E,\u{202E}12\n"); // line 6: not a number, its reason quotes it
    std::fs::write(sb.path().join("evil.csv"), &csv).unwrap();
    let args = ["process", "evil.csv", "--by", "region", "--schema", "v=number"];
    let human = sb.cmd().args(args).run().success().stdout();
    for raw in ['\u{202E}', '\u{200B}', '\u{2066}', '\u{2069}', '\u{1b}'] {
        assert!(!human.contains(raw), "{raw:?} printed raw:\n{human}");
    }
    for shown in [
        "Region A\\u{202e}gnp.exe: 1 records processed",
        "Region B\\u{200b}: 1 records processed",
        "Region C\\u{2066}x\\u{2069}: 1 records processed",
        "Region D\\u{1b}[31mred\\u{1b}[0m: 1 records processed",
        "process-region-a\\u{202e}gnp.exe",
    ] {
        assert!(human.contains(shown), "{shown} not in:\n{human}");
    }
    let reject = human.lines().find(|l| l.contains("evil.csv:6:")).unwrap_or_else(|| panic!("{human}"));
    assert!(reject.contains("\\u{202e}12"), "{reject}");

    let report = sb.cmd().args(args).arg("--json").run().success().json();
    let names: Vec<&str> = report["regions"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(names, evil, "JSON keeps the names exactly");
}

/// The memory budget of `distex process` (docs/process.md).
const BUDGET_KIB: u64 = 200 * 1024;

/// Runs `distex ARGS` in `sb` under GNU time; returns the run and its peak
/// resident memory in KiB (the largest of distex and its workers).
fn peak_memory(sb: &Sandbox, args: &[&str]) -> (support::Run, u64) {
    let report = sb.path().join("time.txt");
    let mut cmd = sandboxed(sb, "/usr/bin/time");
    cmd.arg("-v").arg("-o").arg(&report).arg(support::DISTEX).args(args);
    let run = support::TestCommand { cmd }.run();
    let text = std::fs::read_to_string(&report).expect("GNU time's report (Debian package `time`)");
    let kib = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes): "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak memory in: {text}"));
    (run, kib)
}

/// Writes `region,v,note` rows: 1000 good rows, then one whose note is
/// `field_mib` MiB of `x` (at line 1002), then 1000 good rows (the first
/// with a quoted line break), then a bad one at line 2004.
fn with_huge_field(path: &std::path::Path, field_mib: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(b"region,v,note\n").unwrap();
    for i in 0..1000 {
        writeln!(f, "A,{i},x").unwrap();
    }
    f.write_all(b"B,5,").unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..field_mib {
        f.write_all(&chunk).unwrap();
    }
    f.write_all(b"\n").unwrap();
    f.write_all(b"B,1,\"two\nlines\"\n").unwrap();
    for i in 1..1000 {
        writeln!(f, "B,{i},y").unwrap();
    }
    f.write_all(b"B,oops,z\n").unwrap();
    f.flush().unwrap();
}

/// What every path must report for [`with_huge_field`]'s data.
fn assert_huge_field_rejected(report: &Value, field_mib: usize, what: &str) {
    assert_eq!(accounting(report), [2002, 2000, 2, 0], "{what}: {report:#}");
    assert_eq!(report["complete"], true, "{what}");
    let got = rejects(report);
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), [1002, 2004], "{what}: {got:?}");
    let size = (field_mib << 20) + "B,5,\n".len();
    assert!(got[0].1.contains(&format!("record of {size} bytes")) && got[0].1.contains("--max-record-size"), "{got:?}");
    assert_eq!(report["regions"]["B"]["records"], 1000, "{what}");
}

/// A CSV with a 300 MB field: that record is rejected with its line and
/// size, every other one is processed, and `distex process` stays within
/// its memory budget on both splits.
#[test]
fn a_300_mb_field_is_rejected_within_the_memory_budget() {
    let sb = Sandbox::new();
    with_huge_field(&sb.path().join("huge.csv"), 300);
    for split in ["regions", "bytes"] {
        let (run, kib) = peak_memory(&sb, &["process", "huge.csv", "--by", "region", "--json", "--split", split]);
        let report = run.success().json();
        assert_huge_field_rejected(&report, 300, split);
        assert!(kib < BUDGET_KIB, "{split}: peak memory {kib} KiB is over the budget of {BUDGET_KIB} KiB");
    }
}

/// `--max-record-size` holds on every reader: a plain file, stdin (read as
/// it comes, or copied for byte ranges), gzip, and JSON Lines.
#[test]
fn oversized_records_are_rejected_on_every_reader_path() {
    let sb = Sandbox::new();
    with_huge_field(&sb.path().join("d.csv"), 3);
    let gz = std::process::Command::new("gzip").args(["-k", "d.csv"]).current_dir(sb.path()).status().unwrap();
    assert!(gz.success());
    let small = ["--max-record-size", "1M", "--by", "region", "--json", "--split"];
    for split in ["regions", "bytes"] {
        for input in ["d.csv", "d.csv.gz"] {
            let run = sb.cmd().args(["process", input]).args(small).arg(split).run().success();
            assert_huge_field_rejected(&run.json(), 3, &format!("{input} {split}"));
        }
        let run = sb.cmd().args(["process", "-"]).args(small).arg(split).stdin_file(sb.path().join("d.csv"));
        assert_huge_field_rejected(&run.success().json(), 3, &format!("stdin {split}"));
    }
    // A quoted field of 2 MiB holding line breaks, commas and doubled
    // quotes: the skip ends where the record ends, and the lines after it
    // are counted right (the bad record is at line 4 + 2 * 65536 + 1).
    let mut quoted = b"region,v,note\nA,1,x\nB,2,\"".to_vec();
    for _ in 0..65536 {
        quoted.extend(b"a,b\n\"\"c,\"\"\nxxxxxxxxxxxxxxxxx");
    }
    quoted.extend(b"\"\nB,3,y\nB,oops,z\nA,4,w\n");
    std::fs::write(sb.path().join("q.csv"), &quoted).unwrap();
    for split in ["regions", "bytes"] {
        let report = sb.cmd().args(["process", "q.csv", "--schema", "v=number"]).args(small).arg(split).run();
        let report = report.success().json();
        assert_eq!(accounting(&report), [5, 3, 2, 0], "{split}: {report:#}");
        let got = rejects(&report);
        assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), [3, 4 + 2 * 65536 + 1], "{split}: {got:?}");
        assert!(got[0].1.contains("--max-record-size"), "{got:?}");
    }
    // The default (16 MiB) lets a 3 MiB record through.
    let report = sb.cmd().args(["process", "d.csv", "--by", "region", "--json"]).run().success().json();
    assert_eq!(accounting(&report), [2002, 2001, 1, 0]);

    let head = "{\"region\":\"B\",\"v\":2,\"pad\":\"";
    let mut jsonl = format!("{{\"region\":\"A\",\"v\":1}}\n{head}").into_bytes();
    jsonl.extend(vec![b'p'; 2 << 20]);
    jsonl.extend(b"\"}\n{\"region\":\"B\",\"v\":3}\n{\"region\":\"B\",\"v\":\"x\"}\n");
    std::fs::write(sb.path().join("d.jsonl"), &jsonl).unwrap();
    let report = sb.cmd().args(["process", "d.jsonl", "--schema", "v=number"]).args(&small[..5]).run();
    let report = report.success().json();
    assert_eq!(accounting(&report), [4, 2, 2, 0], "{report:#}");
    let got = rejects(&report);
    assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 4], "{got:?}");
    let size = head.len() + (2 << 20) + "\"}\n".len();
    assert!(got[0].1.contains(&format!("record of {size} bytes")), "{got:?}");
}

//! `distex process` computes exactly what an independent implementation
//! (Python's csv module, math.fsum and statistics.stdev) computes, on
//! generated data with quoted commas, quotes and newlines, malformed
//! records at known lines, skewed keys and many regions; and it keeps the
//! accounting `input_records == processed + rejected + in_failed_regions`.

use crate::util as support;
use crate::util::process_data as data;

use std::io::Write;

use data::{NUMERIC, Spec};
use serde_json::Value;
use support::Sandbox;

fn regions(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("r{i}")).collect()
}

fn assert_accounting(report: &Value) {
    let a = &report["accounting"];
    let (input, processed, rejected, failed) = (
        a["input_records"].as_u64().unwrap(),
        a["processed"].as_u64().unwrap(),
        a["rejected"].as_u64().unwrap(),
        a["in_failed_regions"].as_u64().unwrap(),
    );
    assert_eq!(input, processed + rejected + failed, "accounting: {a}");
    let per_region: u64 = report["regions"].as_object().unwrap().values().map(|r| r["records"].as_u64().unwrap()).sum();
    assert_eq!(per_region, processed + failed, "region records vs accounting: {a}");
}

#[test]
fn csv_with_malformed_rows_matches_an_independent_computation() {
    let sb = Sandbox::new();
    let names = regions(5);
    let g = data::csv(&Spec { rows: 6000, regions: &names, hot_percent: 0, bad_every: Some(97), seed: 1 });
    let file = sb.path().join("data.csv");
    std::fs::write(&file, &g.bytes).unwrap();

    let run = sb.cmd().args(["process", "data.csv", "--by", "region", "--json", "--jobs", "2"]).run().success();
    let report = run.json();
    let reference = data::reference(&file, "region", NUMERIC, "csv");
    data::assert_matches_reference(&report, &reference, NUMERIC);
    assert_accounting(&report);
    assert_eq!(report["complete"], true);
    assert_eq!(report["accounting"]["input_records"], g.records);
    assert_eq!(report["accounting"]["rejected"], g.bad_lines.len() as u64);
    let lines: Vec<u64> = report["rejects"].as_array().unwrap().iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, g.bad_lines, "rejects are listed with the lines where the bad records start");
    assert_eq!(reference["rejected_lines"].as_array().unwrap().len(), g.bad_lines.len());
    let reasons: Vec<&str> =
        report["rejects"].as_array().unwrap().iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert!(reasons.iter().any(|r| r.contains("fields, the header has 6")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("\"qty\"") && r.contains("not a number")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("missing key")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("UTF-8")), "{reasons:?}");
    assert!(report["rejects"].as_array().unwrap().iter().all(|r| r["file"] == "data.csv"));

    // Totals are the exact merge of the regions.
    let totals = &report["totals"]["stats"]["price"];
    let all: f64 = reference["regions"]
        .as_object()
        .unwrap()
        .values()
        .map(|r| r["stats"]["price"]["count"].as_f64().unwrap())
        .sum();
    assert_eq!(totals["count"].as_f64(), Some(all));

    // The tasks: one per region plus aggregate-results, blocked by all of them
    // and started only after every region finished.
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 6);
    let agg = tasks.iter().find(|t| t["subject"] == "aggregate-results").unwrap();
    assert_eq!(agg["blocked_by"].as_array().unwrap().len(), 5);
    let agg_start = agg["history"].as_array().unwrap().iter().find(|h| h["status"] == "in_progress").unwrap()["at_ms"]
        .as_u64()
        .unwrap();
    for t in tasks.iter().filter(|t| t["subject"] != "aggregate-results") {
        assert_eq!(t["status"], "completed");
        assert!(t["subject"].as_str().unwrap().starts_with("process-region-r"));
        let end = t["history"].as_array().unwrap().last().unwrap()["at_ms"].as_u64().unwrap();
        assert!(end <= agg_start, "aggregation started before {} finished", t["subject"]);
    }
}

#[test]
fn skewed_keys_and_many_regions_match_and_do_not_depend_on_the_split() {
    let sb = Sandbox::new();
    let names = regions(800);
    let g = data::csv(&Spec { rows: 12000, regions: &names, hot_percent: 50, bad_every: None, seed: 2 });
    let file = sb.path().join("many.csv");
    std::fs::write(&file, &g.bytes).unwrap();
    let report = sb.cmd().args(["process", "many.csv", "--by", "region", "--json"]).run().success().json();
    let reference = data::reference(&file, "region", NUMERIC, "csv");
    data::assert_matches_reference(&report, &reference, NUMERIC);
    assert_accounting(&report);
    assert!(report["regions"]["r0"]["records"].as_u64().unwrap() > 5500, "the hot region holds half the rows");

    // The same data split in two gzip files, and read from stdin: same totals, bit for bit.
    let text = String::from_utf8(g.bytes.clone()).unwrap();
    let (header, body) = text.split_once('\n').unwrap();
    let records: Vec<&str> = body.split_inclusive("\n").collect();
    // Split on a record boundary: find a line that starts a record (no open quote).
    let mut cut = records.len() / 3;
    while records[..cut].concat().matches('"').count() % 2 == 1 {
        cut += 1;
    }
    for (name, part) in [("a.csv.gz", records[..cut].concat()), ("b.csv.gz", records[cut..].concat())] {
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(sb.path().join(name)).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(format!("{header}\n{part}").as_bytes()).unwrap();
        gz.finish().unwrap();
    }
    let split = sb.cmd().args(["process", "b.csv.gz", "a.csv.gz", "--by", "region", "--json"]).run().success().json();
    assert_same_stats(&split["totals"]["stats"], &report["totals"]["stats"]);
    for (name, region) in report["regions"].as_object().unwrap() {
        assert_eq!(split["regions"][name]["records"], region["records"]);
        assert_same_stats(&split["regions"][name]["stats"], &region["stats"]);
    }
    let stdin =
        sb.cmd().args(["process", "-", "--by", "region", "--json", "--jobs", "1"]).stdin(&text).success().json();
    assert_same_stats(&stdin["totals"]["stats"], &report["totals"]["stats"]);
}

/// count, sum, min, max and mean bit for bit; the standard deviation (a
/// floating-point merge of Welford states) to 1e-12 relative.
fn assert_same_stats(a: &Value, b: &Value) {
    let (a, b) = (a.as_object().unwrap(), b.as_object().unwrap());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (col, x) in a {
        let y = &b[col];
        for f in ["count", "sum", "min", "max", "mean"] {
            assert_eq!(x[f], y[f], "{f} of {col} depends on how the input was split");
        }
        if let (Some(p), Some(q)) = (x["stddev"].as_f64(), y["stddev"].as_f64()) {
            assert!((p - q).abs() <= 1e-12 * q.abs(), "stddev of {col}: {p} vs {q}");
        } else {
            assert_eq!(x["stddev"], y["stddev"]);
        }
    }
}

#[test]
fn regions_mode_tsv_and_json_lines() {
    let sb = Sandbox::new();
    let dir = sb.path().join("split");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("north.tsv"), "city\tsales\nOslo\t10\nBergen\t2.5\n").unwrap();
    std::fs::write(dir.join("south.tsv"), "city\tsales\nRome\t7\nBari\tx\nNaples\t1\n").unwrap();
    let report =
        sb.cmd().args(["process", "--regions", "split", "--json", "--schema", "sales=number"]).run().success().json();
    assert_eq!(report["regions"]["north"]["stats"]["sales"]["sum"], 12.5);
    assert_eq!(report["regions"]["south"]["records"], 2);
    assert_eq!(report["rejects"][0]["line"], 3);
    assert!(report["rejects"][0]["file"].as_str().unwrap().ends_with("south.tsv"));
    assert_accounting(&report);

    std::fs::write(
        sb.path().join("events.jsonl"),
        "{\"zone\":\"eu\",\"ms\":12}\n{\"zone\":\"us\",\"ms\":3.5}\n{broken\n\n{\"zone\":\"eu\",\"ms\":8,\"extra\":true}\n[1,2]\n{\"ms\":1}\n",
    )
    .unwrap();
    let file = sb.path().join("events.jsonl");
    let report = sb.cmd().args(["process", "events.jsonl", "--by", "zone", "--json"]).run().success().json();
    let reference = data::reference(&file, "zone", "ms", "jsonl");
    data::assert_matches_reference(&report, &reference, "ms");
    let lines: Vec<u64> = report["rejects"].as_array().unwrap().iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [3, 6, 7]);
    assert_eq!(reference["rejected_lines"], serde_json::json!([3, 6, 7]));
    assert_accounting(&report);
}

#[test]
fn demo_prints_the_seed_format() {
    let sb = Sandbox::new();
    let run = sb.cmd().args(["process", "--demo"]).run().success();
    let out = run.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Distributed Processing: COORDINATING");
    let mut task_lines: Vec<&str> = lines[1..5].to_vec();
    task_lines.sort();
    assert_eq!(
        task_lines,
        [
            "[1] process-region-a: IN_PROGRESS -> COMPLETE",
            "[2] process-region-b: IN_PROGRESS -> COMPLETE",
            "[3] process-region-c: IN_PROGRESS -> COMPLETE",
            "[4] aggregate-results: BLOCKED -> IN_PROGRESS -> COMPLETE",
        ]
    );
    assert_eq!(lines[5], "");
    assert_eq!(lines[6], "=== AGGREGATED RESULTS ===");
    assert!(lines[7].starts_with("Region A: 12 records processed; revenue: sum "), "{out}");
    assert!(lines[8].starts_with("Region B: 9 records processed"), "{out}");
    assert!(lines[9].starts_with("Region C: 9 records processed"), "{out}");
    assert!(lines[11].starts_with("Total: 30 records in 3 regions; revenue: sum 31335.75"), "{out}");
    assert!(out.contains("Accounting: 30 input records = 30 processed + 0 rejected + 0 in failed regions"));
    assert!(run.stderr().is_empty(), "no progress output when stderr is not a terminal: {}", run.stderr());
}

/// A processor's totals print as the JSON they are, even when they hold
/// the keys of the built-in summary's totals (`records`, `stats`).
#[test]
fn a_processors_totals_print_as_json_whatever_their_keys() {
    let sb = Sandbox::new();
    let processor = r#"echo '{"stats": {"n": 1}, "records": 2}'"#;
    let run = sb.cmd().args(["process", "--demo", "--processor", processor]).run().success();
    let out = run.stdout();
    assert!(out.contains("\nTotal: {\"records\":6,\"stats\":{\"n\":3}}\n"), "{out}");
}

#[test]
fn events_stream_then_report() {
    let sb = Sandbox::new();
    let run = sb.cmd().args(["process", "--demo", "--events"]).run().success();
    let lines = run.json_lines();
    assert_eq!(lines[0]["event"], "run_started");
    let report = lines.last().unwrap();
    assert_eq!(report["complete"], true);
    let finished = lines.iter().position(|l| l["event"] == "run_finished").unwrap();
    assert_eq!(finished, lines.len() - 2);
    let changes = lines.iter().filter(|l| l["event"] == "task_status_changed").count();
    assert_eq!(
        changes,
        3 * 2 + 2,
        "pending->in_progress->completed per region, blocked->in_progress->completed for aggregation"
    );
}

#[test]
fn usage_and_input_errors_exit_2() {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("d.csv"), "a,b\n1,2\n").unwrap();
    let run = sb.cmd().args(["process", "d.csv", "--by", "region"]).run().expect_code(2);
    assert!(run.stderr().contains("\"region\"") && run.stderr().contains("columns: a, b"), "{}", run.stderr());
    let run = sb.cmd().args(["process", "nope.csv", "--by", "a"]).run().expect_code(2);
    assert!(run.stderr().contains("nope.csv"), "{}", run.stderr());
    sb.cmd().args(["process", "d.csv"]).run().expect_code(2);
    sb.cmd().args(["process"]).run().expect_code(2);
    let run = sb.cmd().args(["process", "--demo", "--timeout=-1"]).run().expect_code(2);
    assert!(run.stderr().contains("--timeout"));

    // --max-rejects stops early when the input is mostly bad.
    let mut bad = String::from("k,v\n");
    for i in 0..50 {
        bad.push_str(&format!("r{},{}\n", i % 3, if i % 2 == 0 { "x" } else { "1" }));
    }
    std::fs::write(sb.path().join("bad.csv"), bad).unwrap();
    let run = sb
        .cmd()
        .args(["process", "bad.csv", "--by", "k", "--schema", "v=number", "--max-rejects", "5"])
        .run()
        .expect_code(2);
    assert!(run.stderr().contains("more than --max-rejects 5"), "{}", run.stderr());
    assert!(run.stderr().contains("bad.csv:2:"), "{}", run.stderr());
}

#[test]
fn json_op_process_takes_the_same_options() {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("d.csv"), "k,v\na,1\na,2\nb,x\nb,4\n").unwrap();
    let input = concat!(
        r#"{"op":"process","id":1,"inputs":["d.csv"],"by":"k","schema":{"v":"number"}}"#,
        "\n",
        r#"{"op":"process","demo":true,"processor":"exit 1","limits":{"timeout":5}}"#,
        "\n",
        r#"{"op":"process","inputs":["-"],"by":"k"}"#,
        "\n",
    );
    let run = sb.cmd().arg("json").stdin(input).expect_code(1);
    let lines = run.json_lines();
    assert_eq!(lines[0]["id"], 1);
    assert_eq!(lines[0]["op"], "process");
    assert_eq!(lines[0]["regions"]["a"]["stats"]["v"]["sum"], 3.0);
    assert_eq!(lines[0]["accounting"]["rejected"], 1);
    assert_eq!(lines[0]["rejects"][0]["line"], 4);
    assert_eq!(lines[1]["complete"], false);
    assert_eq!(lines[1]["accounting"]["in_failed_regions"], 30);
    assert_eq!(lines[2]["error"]["code"], "usage");
    let schema = sb.cmd().args(["schema", "request"]).run().success().stdout();
    assert!(schema.contains("\"process\"") && schema.contains("max_rejects"));
}

#[test]
fn live_progress_only_on_a_terminal() {
    // `script` runs distex on a pseudo-terminal: the progress line appears
    // on stderr (here merged into the terminal), and is erased again.
    let sb = Sandbox::new();
    let shell = format!("{} process --demo", support::DISTEX);
    let out = std::process::Command::new("script")
        .args(["-qec", &shell, "/dev/null"])
        .env("HOME", sb.path())
        .current_dir(sb.path())
        .output()
        .expect("script (util-linux)");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\r\x1b[Ktasks 3/3 done, "), "{text:?}");
    assert!(text.contains("records/s"), "{text:?}");
    assert!(text.contains("[4] aggregate-results: BLOCKED -> IN_PROGRESS -> COMPLETE"));
}

#[test]
fn gzip_region_files_and_json_lines_on_stdin() {
    let sb = Sandbox::new();
    let dir = sb.path().join("gz");
    std::fs::create_dir(&dir).unwrap();
    for (name, body) in [("east", "v\n1\n2\n"), ("west", "v\n10\n\"20\"\n")] {
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(dir.join(format!("{name}.csv.gz"))).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(body.as_bytes()).unwrap();
        gz.finish().unwrap();
    }
    let report = sb.cmd().args(["process", "--regions", "gz", "--json"]).run().success().json();
    assert_eq!(report["regions"]["east"]["stats"]["v"]["sum"], 3.0);
    assert_eq!(report["regions"]["west"]["stats"]["v"]["sum"], 30.0);
    assert_eq!(report["totals"]["stats"]["v"]["count"], 4);

    let lines = "{\"k\":\"x\",\"n\":1}\n{\"k\":\"y\",\"n\":2.5}\n{\"k\":\"x\",\"n\":-4}\n";
    let report =
        sb.cmd().args(["process", "-", "--by", "k", "--format", "jsonl", "--json"]).stdin(lines).success().json();
    assert_eq!(report["regions"]["x"]["stats"]["n"]["sum"], -3.0);
    assert_eq!(report["regions"]["y"]["records"], 1);
    // A user processor gets JSON Lines on stdin, unchanged.
    let report = sb
        .cmd()
        .args([
            "process",
            "-",
            "--by",
            "k",
            "--format",
            "jsonl",
            "--json",
            "--processor",
            "python3 -c 'import sys,json; print(json.dumps({\"lines\": [json.loads(l) for l in sys.stdin]}))'",
        ])
        .stdin(lines)
        .success()
        .json();
    assert_eq!(report["regions"]["x"]["result"]["lines"], serde_json::json!([{"k": "x", "n": 1}, {"k": "x", "n": -4}]));
}

/// A file with a header and no records is a complete run over nothing:
/// exit 0, `aggregate-results` completed, every count zero, on every path.
#[test]
fn a_header_without_records_is_a_complete_empty_run() {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("empty.csv"), "region,qty\n").unwrap();
    for extra in [&["--split", "regions"][..], &["--split", "bytes"], &["--processor", "echo '{}'"]] {
        let mut args = vec!["process", "empty.csv", "--by", "region", "--json"];
        args.extend_from_slice(extra);
        let report = sb.cmd().args(args).run().success().json();
        assert_eq!(report["complete"], true, "{extra:?}: {report}");
        let tasks = report["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 1, "{extra:?}");
        assert_eq!(tasks[0]["subject"], "aggregate-results");
        assert_eq!(tasks[0]["status"], "completed");
        assert_eq!(report["accounting"]["input_records"], 0);
        assert_eq!(report["regions"], serde_json::json!({}));
    }
}

/// Two columns with one name would show the figures of only one of them:
/// every path refuses the input, naming the file, both columns and the
/// name, and nothing runs.
#[test]
fn a_header_naming_two_columns_alike_is_refused_on_every_path() {
    let sb = Sandbox::new();
    // Large enough that `auto` plans byte ranges for it.
    let mut big = String::from("region,v,w, v\n");
    for i in 0..200_000 {
        big.push_str(&format!("r{},{i},{},{}\n", i % 5, i * 2, i * 3));
    }
    std::fs::write(sb.path().join("big.csv"), &big).unwrap();
    std::fs::write(sb.path().join("small.tsv"), "region\tv\tw\tv\nr1\t1\t2\t3\n").unwrap();
    std::fs::create_dir(sb.path().join("split")).unwrap();
    std::fs::write(sb.path().join("split/a.csv"), "v,w\n1,2\n").unwrap();
    std::fs::write(sb.path().join("split/b.csv"), "w,v,w\n1,2,3\n").unwrap();
    let cases: [(&[&str], &str, &str); 6] = [
        (&["big.csv", "--by", "region"], "big.csv", "columns 2 and 4 are both named \"v\""),
        (&["big.csv", "--by", "region", "--split", "bytes"], "big.csv", "columns 2 and 4"),
        (&["big.csv", "--by", "region", "--split", "regions"], "big.csv", "columns 2 and 4"),
        (&["big.csv", "--by", "region", "--processor", "echo '{}'"], "big.csv", "columns 2 and 4"),
        (&["small.tsv", "--by", "region"], "small.tsv", "columns 2 and 4 are both named \"v\""),
        (&["--regions", "split"], "b.csv", "columns 1 and 3 are both named \"w\""),
    ];
    for (args, file, says) in cases {
        let run = sb.cmd().arg("process").args(args).arg("--json").run().expect_code(2);
        let err = run.stderr();
        assert!(err.contains(file) && err.contains("line 1") && err.contains(says), "{args:?}: {err}");
        assert!(err.contains("give every column its own name"), "{args:?}: {err}");
        assert!(run.stdout().is_empty(), "{args:?}: nothing ran, so there is no report: {}", run.stdout());
    }
}

/// Values near the limit of doubles (1.7e308) are numbers like any other:
/// a region whose sum is beyond the range of doubles completes, its sum is
/// null (JSON has no infinity) while its mean, min and max are exact, and
/// the other regions and the totals are unaffected, on every split.
#[test]
fn sums_beyond_the_range_of_doubles_complete_with_a_null_sum() {
    let sb = Sandbox::new();
    let mut csv = String::from("region,v\n");
    for i in 0..30_000 {
        match i % 3 {
            0 => csv.push_str("huge,1.5e308\n"),
            1 => csv.push_str("small,2\n"),
            _ => csv.push_str("neg,-1.5e308\n"),
        }
    }
    std::fs::write(sb.path().join("d.csv"), &csv).unwrap();
    for split in ["regions", "bytes"] {
        let args = ["process", "d.csv", "--by", "region", "--split", split, "--part-size", "65536", "--json"];
        let report = sb.cmd().args(args).run().success().json();
        assert_eq!(report["complete"], true, "{split}: {report}");
        for (region, mean) in [("huge", 1.5e308), ("neg", -1.5e308)] {
            let v = &report["regions"][region]["stats"]["v"];
            assert_eq!(v["count"], 10_000, "{split} {region}: {v}");
            assert_eq!(v["sum"], Value::Null, "{split} {region}: {v}");
            assert_eq!((v["min"].as_f64(), v["max"].as_f64()), (Some(mean), Some(mean)), "{split} {region}: {v}");
            // The exact sum's quotient, rounded twice like any mean (sum, then division).
            let got = v["mean"].as_f64().unwrap();
            assert!(((got - mean) / mean).abs() < 1e-15, "{split} {region}: {v}");
        }
        assert_eq!(report["regions"]["small"]["stats"]["v"]["sum"], 20_000.0, "{split}");
        // The totals: +1.5e308 and -1.5e308 cancel exactly.
        let total = &report["totals"]["stats"]["v"];
        assert_eq!(
            (total["count"].as_u64(), total["sum"].as_f64()),
            (Some(30_000), Some(20_000.0)),
            "{split}: {total}"
        );
        assert_eq!(report["accounting"]["processed"], 30_000);

        let human = sb.cmd().args(&args[..args.len() - 1]).run().success();
        let line = human.stdout().lines().find(|l| l.starts_with("Region huge:")).unwrap_or_default().to_string();
        assert!(line.contains("v: sum beyond the range of doubles, mean 1.4999"), "{split}: {}", human.stdout());
    }
}

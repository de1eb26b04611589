//! The byte-range path of the built-in summary (`--split bytes`): the
//! same results, rejects (with absolute line numbers) and accounting as the
//! region path and the independent reference, tasks that show the ranges
//! that really ran, a safe fallback when quotes make byte ranges unsafe,
//! and exact accounting when range workers fail.

use crate::util as support;
use crate::util::process_data as data;

use data::{NUMERIC, Spec};
use serde_json::Value;
use support::{Sandbox, accounting};

fn generated(sb: &Sandbox, rows: usize, seed: u64) -> (std::path::PathBuf, data::Generated) {
    let names: Vec<String> = (0..7).map(|i| format!("zone-{i}")).collect();
    let g = data::csv(&Spec { rows, regions: &names, hot_percent: 20, bad_every: Some(53), seed });
    let file = sb.path().join("data.csv");
    std::fs::write(&file, &g.bytes).unwrap();
    (file, g)
}

/// `many.csv`: `rows` records `k,v` spread over `regions` regions in turn.
fn write_many_regions(sb: &Sandbox, rows: usize, regions: usize) {
    let mut text = String::from("k,v\n");
    for i in 0..rows {
        text.push_str(&format!("region-{},{}\n", i % regions, i));
    }
    std::fs::write(sb.path().join("many.csv"), &text).unwrap();
}

fn reject_lines(report: &Value) -> Vec<u64> {
    report["rejects"].as_array().unwrap().iter().map(|r| r["line"].as_u64().unwrap()).collect()
}

#[test]
fn byte_ranges_give_the_same_answer_as_regions_and_the_reference() {
    let sb = Sandbox::new();
    let (file, g) = generated(&sb, 4000, 3);
    let bytes = sb
        .cmd()
        .args(["process", "data.csv", "--by", "region", "--json", "--split", "bytes", "--part-size", "8K"])
        .run()
        .success()
        .json();
    let regions =
        sb.cmd().args(["process", "data.csv", "--by", "region", "--json", "--split", "regions"]).run().success().json();
    let reference = data::reference(&file, "region", NUMERIC, "csv");
    data::assert_matches_reference(&bytes, &reference, NUMERIC);

    let tasks = bytes["tasks"].as_array().unwrap();
    assert!(tasks.len() > 20, "an 8K part size gives many parts: {}", tasks.len());
    for (i, t) in tasks[..tasks.len() - 1].iter().enumerate() {
        assert_eq!(t["subject"], format!("process-part-{}", i + 1));
        assert_eq!(t["status"], "completed");
    }
    assert_eq!(tasks.last().unwrap()["subject"], "aggregate-results");
    assert_eq!(bytes["accounting"], regions["accounting"]);
    assert_eq!(bytes["accounting"]["input_records"], g.records);
    assert_eq!(reject_lines(&bytes), g.bad_lines, "absolute line numbers across byte ranges");
    assert_eq!(bytes["rejects"], regions["rejects"]);
    for field in ["count", "sum", "min", "max", "mean"] {
        for col in NUMERIC.split(',') {
            assert_eq!(bytes["totals"]["stats"][col][field], regions["totals"]["stats"][col][field], "{col}.{field}");
        }
    }
    assert_eq!(bytes["totals"]["records"], regions["totals"]["records"]);

    // The human output names the parts.
    let human = sb
        .cmd()
        .args(["process", "data.csv", "--by", "region", "--split", "bytes", "--part-size", "64K"])
        .run()
        .success()
        .stdout();
    assert!(human.contains("[1] process-part-1: IN_PROGRESS -> COMPLETE"), "{human}");
    assert!(human.contains("aggregate-results: BLOCKED -> IN_PROGRESS -> COMPLETE"), "{human}");
    assert!(human.contains("Region zone-0: "), "{human}");
}

#[test]
fn a_stray_quote_falls_back_to_the_region_path() {
    let sb = Sandbox::new();
    let mut text = String::from("k,v,note\n");
    for i in 0..3000 {
        let note = if i == 1500 {
            "5\" screen".to_string()
        } else if i % 7 == 0 {
            "\"a\nb\"".to_string()
        } else {
            "x".to_string()
        };
        text.push_str(&format!("k{},{},{}\n", i % 4, i, note));
    }
    std::fs::write(sb.path().join("q.csv"), &text).unwrap();
    let bytes = sb
        .cmd()
        .args(["process", "q.csv", "--by", "k", "--json", "--split", "bytes", "--part-size", "4K"])
        .run()
        .success()
        .json();
    let regions =
        sb.cmd().args(["process", "q.csv", "--by", "k", "--json", "--split", "regions"]).run().success().json();
    assert!(bytes["warnings"][0].as_str().unwrap().contains("quote inside an unquoted field"), "{}", bytes["warnings"]);
    assert_eq!(bytes["regions"], regions["regions"]);
    assert_eq!(bytes["accounting"]["input_records"], 3000);
}

#[test]
fn failed_parts_keep_the_accounting_exact() {
    let sb = Sandbox::new();
    let (_, g) = generated(&sb, 3000, 4);
    // 2 MiB of address space is too little for any worker to start.
    let run = sb
        .cmd()
        .args([
            "process",
            "data.csv",
            "--by",
            "region",
            "--json",
            "--split",
            "bytes",
            "--part-size",
            "32K",
            "--max-memory",
            "2M",
        ])
        .run()
        .expect_code(3);
    let report = run.json();
    let bad = g.bad_lines.len() as u64;
    assert_eq!(accounting(&report), [g.records, 0, bad, g.records - bad]);
    assert_eq!(report["complete"], false);
    assert_eq!(reject_lines(&report), g.bad_lines);
    for (_, region) in report["regions"].as_object().unwrap() {
        assert!(region["error"].as_str().unwrap().contains("failed"), "{region}");
    }
}

#[test]
fn bytes_split_refuses_what_it_cannot_do() {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("d.csv"), "k,v\na,1\n").unwrap();
    let run =
        sb.cmd().args(["process", "d.csv", "--by", "k", "--split", "bytes", "--processor", "cat"]).run().expect_code(2);
    assert!(run.stderr().contains("built-in summary"), "{}", run.stderr());
    let run = sb.cmd().args(["process", "--demo", "--split", "bytes"]).run().expect_code(2);
    assert!(run.stderr().contains("--split bytes"), "{}", run.stderr());
    // TSV files, several of them, in one run.
    std::fs::write(sb.path().join("a.tsv"), "k\tv\nx\t1\ny\t2\n").unwrap();
    std::fs::write(sb.path().join("b.tsv"), "k\tv\nx\t3\nx\tbad\n").unwrap();
    let report =
        sb.cmd().args(["process", "a.tsv", "b.tsv", "--by", "k", "--json", "--split", "bytes"]).run().success().json();
    assert_eq!(report["regions"]["x"]["stats"]["v"]["sum"], 4.0);
    assert_eq!(report["rejects"][0]["file"], "b.tsv");
    assert_eq!(report["rejects"][0]["line"], 3);
}

/// `--max-output` caps what a user's processor prints, not distex's own
/// workers: a part that summarizes hundreds of regions prints more than a
/// tiny cap and must still complete.
#[test]
fn max_output_does_not_cap_the_built_in_workers() {
    let sb = Sandbox::new();
    write_many_regions(&sb, 3000, 500);
    for split in ["bytes", "regions"] {
        let args = ["process", "many.csv", "--by", "k", "--json", "--split", split, "--max-output", "1K"];
        let report = sb.cmd().args(args).run().success().json();
        assert_eq!(report["complete"], true, "{split}");
        assert_eq!(report["regions"].as_object().unwrap().len(), 500, "{split}");
        assert_eq!(report["accounting"]["processed"], 3000, "{split}");
    }
    // A user processor is still held to it.
    let args = [
        "process",
        "many.csv",
        "--by",
        "k",
        "--json",
        "--max-output",
        "1K",
        "--processor",
        "head -c 2000 /dev/zero | tr '\\0' x; echo",
    ];
    let report = sb.cmd().args(args).run().expect_code(3).json();
    let error = report["tasks"][0]["error"].as_str().unwrap();
    assert!(error.contains("--max-output"), "{error}");
}

/// With more rejects than are listed, both paths list the first ones in
/// input order, whatever kind they are: a missing key among the rows held
/// back to infer types is judged later than a wrong field count after them.
#[test]
fn both_paths_list_the_first_rejects_in_input_order() {
    let sb = Sandbox::new();
    let mut text = String::from("k,v,note\n");
    for i in 0..6000 {
        let line = match i % 7 {
            0 => format!(",{i},x\n"),                 // missing key
            3 => format!("r{},{i},x,extra\n", i % 5), // wrong field count
            _ => format!("r{},{i},x\n", i % 5),
        };
        text.push_str(&line);
    }
    std::fs::write(sb.path().join("r.csv"), &text).unwrap();
    let run = |split: &str| {
        let args = ["process", "r.csv", "--by", "k", "--json", "--split", split, "--part-size", "16K"];
        sb.cmd().args(args).run().success().json()
    };
    let (bytes, regions) = (run("bytes"), run("regions"));
    let lines = reject_lines(&regions);
    assert_eq!(lines.len(), 100, "the list is capped");
    let mut want: Vec<u64> = (0..6000u64).filter(|i| i % 7 == 0 || i % 7 == 3).map(|i| i + 2).collect();
    want.truncate(100);
    assert_eq!(lines, want, "the first 100 rejects, in input order");
    assert_eq!(bytes["rejects"], regions["rejects"]);
    assert_eq!(bytes["accounting"]["rejected"], regions["accounting"]["rejected"]);
}

/// Stdin, named pipes and gzip files are split into byte ranges too,
/// through a plain copy in the run directory: the same figures, rejects (named as the
/// original, at the same lines) and accounting as the plain file, and the
/// copy goes with the run directory.
#[test]
fn stdin_and_gzip_files_are_split_by_bytes_like_a_plain_file() {
    use std::io::Write;
    let sb = Sandbox::new();
    let (_, g) = generated(&sb, 4000, 11);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&g.bytes).unwrap();
    std::fs::write(sb.path().join("data.csv.gz"), gz.finish().unwrap()).unwrap();
    let tmp = sb.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let split = ["--by", "region", "--json", "--split", "bytes", "--part-size", "8K"];
    let run = |input: &str, stdin: Option<&std::path::Path>| {
        let cmd = sb.cmd().env("TMPDIR", &tmp).arg("process").arg(input).args(split);
        let report = match stdin {
            Some(file) => cmd.stdin_file(file).success().json(),
            None => cmd.run().success().json(),
        };
        let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
        assert!(left.is_empty(), "{input}: the run directory and its copy are removed: {left:?}");
        report
    };
    let plain_file = sb.path().join("data.csv");
    let plain = run("data.csv", None);
    // A named pipe, as `<(zcat data.csv.gz)` gives: read once, like stdin.
    let fifo = sb.path().join("pipe.csv");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let writer = {
        let (fifo, bytes) = (fifo.clone(), g.bytes.clone());
        std::thread::spawn(move || std::fs::write(fifo, bytes).unwrap())
    };
    let piped = run("pipe.csv", None);
    writer.join().unwrap();
    let inputs = [("data.csv.gz", run("data.csv.gz", None)), ("-", run("-", Some(&plain_file))), ("pipe.csv", piped)];
    for (input, report) in inputs {
        let tasks = report["tasks"].as_array().unwrap();
        assert!(tasks.len() > 20, "{input}: byte ranges, not regions: {}", tasks.len());
        assert_eq!(tasks[0]["subject"], "process-part-1", "{input}");
        for key in ["regions", "totals", "accounting", "complete"] {
            assert_eq!(report[key], plain[key], "{input}: {key}");
        }
        assert_eq!(reject_lines(&report), g.bad_lines, "{input}");
        assert!(
            report["rejects"].as_array().unwrap().iter().all(|r| r["file"] == input),
            "{input}: {}",
            report["rejects"]
        );
    }

    // A gzip file cut short: refused before anything runs, naming it, on both paths.
    let whole = std::fs::read(sb.path().join("data.csv.gz")).unwrap();
    std::fs::write(sb.path().join("cut.csv.gz"), &whole[..whole.len() / 2]).unwrap();
    for split in ["auto", "regions"] {
        let run = sb
            .cmd()
            .env("TMPDIR", &tmp)
            .args(["process", "cut.csv.gz", "--by", "region", "--json", "--split", split])
            .run()
            .expect_code(2);
        assert!(run.stderr().contains("cut.csv.gz"), "{split}: {}", run.stderr());
        assert!(run.stdout().is_empty(), "{split}: {}", run.stdout());
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "{split}: nothing left behind");
    }
}

/// Under `--split auto` a small file of a few regions runs a task per
/// region, as the seed shows; from dozens of regions in its first rows it
/// is split by bytes, where a worker per region would cost more than the
/// data. Both give the same figures.
#[test]
fn auto_splits_a_small_file_of_many_regions_by_bytes() {
    let sb = Sandbox::new();
    write_many_regions(&sb, 2000, 100);
    let auto = sb.cmd().args(["process", "many.csv", "--by", "k", "--json"]).run().success().json();
    let subjects: Vec<&str> =
        auto["tasks"].as_array().unwrap().iter().map(|t| t["subject"].as_str().unwrap()).collect();
    assert!(subjects.iter().all(|s| s.starts_with("process-part-") || *s == "aggregate-results"), "{subjects:?}");
    let by_region =
        sb.cmd().args(["process", "many.csv", "--by", "k", "--json", "--split", "regions"]).run().success().json();
    assert_eq!(by_region["tasks"].as_array().unwrap().len(), 101);
    assert_eq!(auto["accounting"], by_region["accounting"]);
    assert_eq!(auto["regions"].as_object().unwrap().len(), 100);
    for (name, region) in auto["regions"].as_object().unwrap() {
        let other = &by_region["regions"][name];
        assert_eq!(region["records"], other["records"], "{name}");
        for field in ["count", "sum", "min", "max", "mean"] {
            assert_eq!(region["stats"]["v"][field], other["stats"]["v"][field], "{name} {field}");
        }
    }

    // A few regions: one task per region.
    std::fs::write(sb.path().join("few.csv"), "k,v\na,1\nb,2\nc,3\n").unwrap();
    let few = sb.cmd().args(["process", "few.csv", "--by", "k", "--json"]).run().success().json();
    assert_eq!(few["tasks"][0]["subject"], "process-region-a");
}

//! The JSON report of `distex process --json`: the text serde writes for a
//! [`ProcessReport`], but a large `regions` map is written on several
//! threads. With thousands of regions their entries are most of the report
//! (about 500 bytes and twenty numbers each), and the workers are done by
//! then, so their cores are free.

use std::io::Write;

use serde::Serialize;

use crate::process::stats::ColumnStats;
use crate::process::{ProcessReport, RegionReport};

/// Writes `report` as one line of JSON to stdout.
pub(crate) fn print(report: &ProcessReport) -> std::io::Result<()> {
    // Piece by piece: joining megabytes of regions first would only copy
    // them into fresh memory.
    let mut out = std::io::stdout().lock();
    for piece in pieces(report)? {
        out.write_all(&piece)?;
    }
    out.write_all(b"\n")?;
    out.flush()
}

/// The same bytes as `serde_json::to_vec(report)`.
#[cfg(test)]
pub(crate) fn to_vec(report: &ProcessReport) -> serde_json::Result<Vec<u8>> {
    Ok(pieces(report)?.concat())
}

/// The JSON of `report`, in pieces to write one after the other.
fn pieces(report: &ProcessReport) -> serde_json::Result<Vec<Vec<u8>>> {
    if !super::in_parallel_from(report.regions.len()) {
        return Ok(vec![serde_json::to_vec(report)?]);
    }
    // Every field, in declaration order (a new field fails to compile here).
    let ProcessReport {
        tasks,
        regions,
        totals,
        accounting,
        rejects,
        complete,
        warnings,
        collected_processes,
        workdir,
        elapsed_ms,
    } = report;
    let mut head = b"{".to_vec();
    field(&mut head, "tasks", tasks)?;
    head.extend_from_slice(b",\"regions\":{");
    let mut pieces = vec![head];
    for (i, run) in regions_in_parallel(regions)?.into_iter().enumerate() {
        if i > 0 {
            pieces.push(b",".to_vec());
        }
        pieces.push(run);
    }
    let mut rest = b"}".to_vec();
    field(&mut rest, "totals", totals)?;
    field(&mut rest, "accounting", accounting)?;
    field(&mut rest, "rejects", rejects)?;
    field(&mut rest, "complete", complete)?;
    field(&mut rest, "warnings", warnings)?;
    // Serde skips it when it is 0.
    if *collected_processes > 0 {
        field(&mut rest, "collected_processes", collected_processes)?;
    }
    // Serde skips it when it is `None`.
    if let Some(workdir) = workdir {
        field(&mut rest, "workdir", workdir)?;
    }
    field(&mut rest, "elapsed_ms", elapsed_ms)?;
    rest.push(b'}');
    pieces.push(rest);
    Ok(pieces)
}

/// `"name":value`, after a comma unless it is the first in its object.
fn field<T: Serialize + ?Sized>(out: &mut Vec<u8>, name: &str, value: &T) -> serde_json::Result<()> {
    if out.last().is_some_and(|&b| b != b'{') {
        out.push(b',');
    }
    serde_json::to_writer(&mut *out, name)?;
    out.push(b':');
    serde_json::to_writer(&mut *out, value)
}

/// The entries of `regions` (`"name":{...}`, comma-separated, without the
/// braces) in runs of about equal length, one per thread, in order.
fn regions_in_parallel(regions: &std::collections::BTreeMap<String, RegionReport>) -> serde_json::Result<Vec<Vec<u8>>> {
    let entries: Vec<(&String, &RegionReport)> = regions.iter().collect();
    super::in_parallel(&entries, entries_json).into_iter().collect()
}

fn entries_json(entries: &[(&String, &RegionReport)]) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(entries.len() * 600);
    for (i, (name, region)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        region_json(&mut out, name, region)?;
    }
    Ok(out)
}

/// `"name":{...}`: the bytes serde writes for a region, written without
/// its machinery for maps and structs. The keys are known, so each goes
/// out in one piece with the punctuation around it; names, strings and
/// numbers are still written by serde_json (the same escapes and digits).
fn region_json(out: &mut Vec<u8>, name: &str, region: &RegionReport) -> serde_json::Result<()> {
    // Every field, in declaration order (a new field fails to compile here).
    let RegionReport { task, records, stats, result, error } = region;
    serde_json::to_writer(&mut *out, name)?;
    out.extend_from_slice(b":{");
    if let Some(task) = task {
        out.extend_from_slice(b"\"task\":");
        serde_json::to_writer(&mut *out, task)?;
        out.push(b',');
    }
    out.extend_from_slice(b"\"records\":");
    serde_json::to_writer(&mut *out, records)?;
    if let Some(stats) = stats {
        out.extend_from_slice(b",\"stats\":{");
        for (i, (column, s)) in stats.iter().enumerate() {
            let ColumnStats { count, sum, min, max, mean, stddev } = s;
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut *out, column)?;
            out.extend_from_slice(b":{\"count\":");
            serde_json::to_writer(&mut *out, count)?;
            out.extend_from_slice(b",\"sum\":");
            serde_json::to_writer(&mut *out, sum)?;
            for (key, v) in
                [(&b",\"min\":"[..], min), (b",\"max\":", max), (b",\"mean\":", mean), (b",\"stddev\":", stddev)]
            {
                out.extend_from_slice(key);
                serde_json::to_writer(&mut *out, v)?;
            }
            out.push(b'}');
        }
        out.push(b'}');
    }
    if let Some(result) = result {
        out.extend_from_slice(b",\"result\":");
        serde_json::to_writer(&mut *out, result)?;
    }
    if let Some(error) = error {
        out.extend_from_slice(b",\"error\":");
        serde_json::to_writer(&mut *out, error)?;
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::process::report::{Reject, Totals};
    use crate::process::{Accounting, RegionReport};
    use crate::report::PARALLEL_FROM;
    use crate::tasks::{TaskList, TaskStatus};

    /// Regions of every shape the report has: names that need escaping,
    /// stats with missing figures, processor results, failures.
    fn region(i: usize) -> (String, RegionReport) {
        let name = match i % 5 {
            0 => format!("r{i:05}"),
            1 => format!("quote \" and \\ {i}"),
            2 => format!("ünïcødé\n{i}"),
            3 => format!("ctrl\u{1}{i}"),
            _ => format!("{i}"),
        };
        let stats = |n: u64| ColumnStats {
            count: n,
            sum: Some(n as f64 * 0.1),
            min: (n > 0).then_some(-1.5),
            max: (n > 0).then_some(1e300),
            mean: (n > 0).then_some(1.0 / 3.0),
            stddev: (n > 1).then_some(f64::MIN_POSITIVE),
        };
        let report = RegionReport {
            task: i.is_multiple_of(7).then(|| format!("task-{i}")),
            records: i as u64,
            stats: (!i.is_multiple_of(4)).then(|| {
                let huge = ColumnStats { sum: i.is_multiple_of(3).then_some(f64::MAX), ..stats(2) };
                BTreeMap::from([
                    ("a".to_string(), stats(i as u64 % 3)),
                    ("q\"uote\n".into(), huge),
                    ("z".into(), stats(9)),
                ])
                .into()
            }),
            result: i.is_multiple_of(4).then(|| serde_json::json!({"n": i, "nested": {"x": [1, 2.5, null]}})),
            error: i.is_multiple_of(11).then(|| format!("failed: \"{i}\"")),
        };
        (name, report)
    }

    fn report(regions: usize, workdir: Option<&str>) -> ProcessReport {
        let mut tasks = TaskList::new();
        tasks.add("1", "process-part-1", vec![]);
        tasks.add("2", "aggregate-results", vec!["1".into()]);
        tasks.fail("1", "exited with status 1", 5);
        tasks.transition("2", TaskStatus::Failed, 6);
        ProcessReport {
            tasks: tasks.into_vec(),
            regions: (0..regions).map(region).collect(),
            // Both kinds of totals: the built-in summary's and a processor's.
            totals: Some(match regions % 2 {
                0 => Totals::Summary { records: 12, regions: regions as u64, stats: region(1).1.stats.unwrap() },
                _ => Totals::Result(serde_json::json!({"records": 12, "regions": regions})),
            }),
            accounting: Accounting { input_records: 12, processed: 10, rejected: 1, in_failed_regions: 1 },
            rejects: vec![Reject { file: "a \"b\".csv".into(), line: 3, reason: "wrong field count".into() }],
            complete: false,
            warnings: vec!["a warning".into()],
            collected_processes: 0,
            workdir: workdir.map(String::from),
            elapsed_ms: 42,
        }
    }

    #[test]
    fn writes_what_serde_writes_whatever_the_size() {
        for regions in [0, 3, PARALLEL_FROM - 1, PARALLEL_FROM, 3 * PARALLEL_FROM + 1] {
            for workdir in [None, Some("/tmp/run \"1\"")] {
                let report = report(regions, workdir);
                let ours = to_vec(&report).unwrap();
                let serde = serde_json::to_vec(&report).unwrap();
                assert!(ours == serde, "{regions} regions, workdir {workdir:?}");
                let back: ProcessReport = serde_json::from_slice(&ours).unwrap();
                assert_eq!(back.regions.len(), regions);
            }
        }
    }
}

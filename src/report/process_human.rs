//! Human output of `distex process`, in the seed skill's format:
//!
//! ```text
//! Distributed Processing: COORDINATING
//! [1] process-region-a: IN_PROGRESS -> COMPLETE
//! [4] aggregate-results: BLOCKED -> IN_PROGRESS -> COMPLETE
//!
//! === AGGREGATED RESULTS ===
//! Region A: 10 records; units: ...
//!
//! Total: 30 records in 3 regions; units: ...
//! ```
//!
//! [`ProcessHuman`] renders task lines from events as tasks finish, and a
//! live progress line on stderr when stderr is a terminal; [`results`]
//! renders the final report. Region names come from data, so every label
//! is escaped ([`super::escape`]): a newline in a name cannot forge an
//! output line, nor a bidirectional override reorder one.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;

use super::escape as label;
use crate::process::report::Totals;
use crate::process::stats::ColumnMap;
use crate::process::{ProcessReport, RegionReport};
use crate::tasks::{Event, Reporter, TaskStatus};

/// Renders task transitions as lines on `out`, progress on a terminal.
pub(crate) struct ProcessHuman<W: Write + Send> {
    out: W,
    /// Statuses seen so far per task id.
    seen: HashMap<String, Vec<TaskStatus>>,
    /// Show a live progress line on stderr.
    live: bool,
    progress_shown: bool,
}

impl<W: Write + Send> ProcessHuman<W> {
    pub(crate) fn new(out: W, live: bool) -> Self {
        ProcessHuman { out, seen: HashMap::new(), live, progress_shown: false }
    }

    fn clear_progress(&mut self) {
        if self.progress_shown {
            eprint!("\r\x1b[K");
            self.progress_shown = false;
        }
    }
}

impl<W: Write + Send> Reporter for ProcessHuman<W> {
    fn report(&mut self, event: &Event) {
        match event {
            Event::RunStarted { .. } => {
                self.clear_progress();
                let _ = writeln!(self.out, "Distributed Processing: COORDINATING");
            }
            Event::TaskStatusChanged { id, subject, from, to, error, .. } => {
                let seen = self
                    .seen
                    .entry(id.clone())
                    .or_insert_with(|| if *from == TaskStatus::Pending { vec![] } else { vec![*from] });
                seen.push(*to);
                if to.is_finished() {
                    let path: Vec<&str> = seen.iter().map(|s| s.label()).collect();
                    let mut line = format!("[{}] {}: {}", label(id), label(subject), path.join(" -> "));
                    if let Some(e) = error {
                        let _ = write!(line, " ({})", label(e));
                    }
                    self.clear_progress();
                    let _ = writeln!(self.out, "{line}");
                    let _ = self.out.flush();
                }
            }
            Event::Progress { done, total, records, elapsed_ms } if self.live => {
                let rate = |r: u64| human_count(r as f64 / (*elapsed_ms).max(1) as f64 * 1000.0);
                match (total, records) {
                    // Still reading and partitioning the input.
                    (None, Some(r)) => {
                        eprint!("\r\x1b[Kreading input: {} records, {} records/s", human_count(*r as f64), rate(*r))
                    }
                    (total, records) => {
                        let total = total.map_or("?".to_string(), |t| t.to_string());
                        let speed = records.map(|r| format!(", {} records/s", rate(r))).unwrap_or_default();
                        eprint!("\r\x1b[Ktasks {done}/{total} done{speed}");
                    }
                }
                self.progress_shown = true;
            }
            Event::Warning { message } => {
                self.clear_progress();
                eprintln!("warning: {}", label(message));
            }
            Event::RunFinished { .. } => self.clear_progress(),
            _ => {}
        }
    }
}

/// The results section, after the task lines.
pub(crate) fn results(report: &ProcessReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n=== AGGREGATED RESULTS ===");
    let regions: Vec<(&String, &RegionReport)> = report.regions.iter().collect();
    let runs = super::in_parallel(&regions, |run| {
        let mut lines = String::with_capacity(run.len() * 400);
        region_lines(&mut lines, run);
        lines
    });
    runs.iter().for_each(|run| out.push_str(run));
    let _ = writeln!(out);
    match &report.totals {
        Some(Totals::Summary { records, regions, stats }) => {
            let _ = writeln!(out, "Total: {records} records in {regions} regions{}", stats_text(stats));
        }
        Some(Totals::Result(totals)) => {
            let _ = writeln!(out, "Total: {}", short_json(totals));
        }
        None => {
            let failed = report.regions.values().filter(|r| r.error.is_some()).count();
            let _ = writeln!(out, "Total: not computed ({failed} of {} regions failed)", report.regions.len());
        }
    }
    let a = &report.accounting;
    let _ = writeln!(
        out,
        "Accounting: {} input records = {} processed + {} rejected + {} in failed regions",
        a.input_records, a.processed, a.rejected, a.in_failed_regions
    );
    if a.rejected > 0 {
        let _ = writeln!(out, "Rejected records (first {} of {}):", report.rejects.len().min(10), a.rejected);
        for r in report.rejects.iter().take(10) {
            let _ = writeln!(out, "  {}:{}: {}", label(&r.file), r.line, label(&r.reason));
        }
    }
    if !report.complete {
        let _ = writeln!(out, "INCOMPLETE: some tasks failed; the results above do not cover every record.");
    }
    out
}

/// A line per region: `Region <name>: <records and summary>`.
fn region_lines(out: &mut String, regions: &[(&String, &RegionReport)]) {
    for (name, region) in regions {
        let _ = write!(out, "Region {}: ", label(name));
        match (&region.error, &region.stats, &region.result) {
            (Some(e), _, _) => {
                let _ = write!(out, "FAILED, {} records not processed: {}", region.records, label(e));
            }
            (None, Some(stats), _) => {
                let _ = write!(out, "{} records processed", region.records);
                push_stats(out, stats);
            }
            (None, None, Some(result)) => {
                let _ = write!(out, "{} records processed; result {}", region.records, short_json(result));
            }
            _ => {
                let _ = write!(out, "{} records processed", region.records);
            }
        }
        out.push('\n');
    }
}

fn stats_text(stats: &ColumnMap) -> String {
    let mut out = String::new();
    push_stats(&mut out, stats);
    out
}

/// Appends `; <column>: sum .., mean .., min .., max .., sd ..` for every
/// column. Written in place: with thousands of regions, a string per
/// number would cost more than the numbers.
fn push_stats(out: &mut String, stats: &ColumnMap) {
    for (column, s) in stats.iter() {
        let _ = write!(out, "; {}: sum ", label(column));
        match s.sum {
            Some(sum) => push_num(out, sum),
            None => out.push_str("beyond the range of doubles"),
        }
        for (name, v) in [("mean", s.mean), ("min", s.min), ("max", s.max), ("sd", s.stddev)] {
            if let Some(v) = v {
                let _ = write!(out, ", {name} ");
                push_num(out, v);
            }
        }
    }
}

/// Appends `v` to `out`: integers without decimals, others with up to 4
/// decimals; in scientific notation from 1e21, and below 1e-4 where four
/// decimals would show a value that is not zero as 0 (`1e308`, `2.5e-7`).
fn push_num(out: &mut String, v: f64) {
    if v != 0.0 && !(1e-4..1e21).contains(&v.abs()) {
        let _ = write!(out, "{v:e}");
        return;
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        // What `{v:.0}` prints, without float formatting.
        let sign = if v.is_sign_negative() { "-" } else { "" };
        let _ = write!(out, "{sign}{}", v.abs() as u64);
        return;
    }
    let start = out.len();
    if !push_fixed4(out, v) {
        let _ = write!(out, "{v:.4}");
    }
    let kept = out[start..].trim_end_matches('0').trim_end_matches('.').len();
    out.truncate(start + kept);
}

/// Appends what `format!("{v:.4}")` prints, by integer arithmetic, for a
/// value with a fraction below 2^53 (false, and nothing written, otherwise). Float formatting with a
/// fixed precision often falls back to a slow exact algorithm, which shows
/// with thousands of regions of five figures each. `v` is m·2^e exactly,
/// so v·10^4 is m·10^4 / 2^-e: a quotient and an exact remainder, rounded
/// half to even.
fn push_fixed4(out: &mut String, v: f64) -> bool {
    if !v.is_finite() || v.abs() >= 9_007_199_254_740_992.0 {
        return false;
    }
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1 << 52) - 1);
    let (m, e) = if exp == 0 { (frac, -1074) } else { (frac | 1 << 52, exp - 1075) };
    if e >= 0 {
        return false;
    }
    let shift = e.unsigned_abs();
    let scaled = m as u128 * 10_000;
    // Beyond 127 bits of shift, v·10^4 is far below one half: 0.
    let mut q = if shift < 128 { scaled >> shift } else { 0 };
    if shift < 128 {
        let rem = scaled & ((1u128 << shift) - 1);
        let half = 1u128 << (shift - 1);
        if rem > half || (rem == half && q & 1 == 1) {
            q += 1;
        }
    }
    let sign = if v.is_sign_negative() { "-" } else { "" };
    // In 64 bits where it fits: 128-bit division is a library call.
    let (whole, frac) = match u64::try_from(q) {
        Ok(q) => (q / 10_000, q % 10_000),
        Err(_) => ((q / 10_000) as u64, (q % 10_000) as u64),
    };
    let _ = write!(out, "{sign}{whole}.{frac:04}");
    true
}

/// A JSON value on one line, at most 300 characters, escaped: JSON
/// escapes control characters but leaves bidirectional and invisible ones.
fn short_json(v: &serde_json::Value) -> String {
    let s = v.to_string();
    let s = if s.chars().count() > 300 { format!("{}...", s.chars().take(300).collect::<String>()) } else { s };
    label(&s).into_owned()
}

fn human_count(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::PARALLEL_FROM;

    /// The integer path prints exactly what float formatting prints:
    /// every magnitude, signs, zeros, ties (multiples of 2^-5 end in 5 at
    /// the fifth decimal) and subnormals.
    #[test]
    fn numbers_print_as_float_formatting_does() {
        // Very large and very small ones in scientific notation.
        for (v, want) in [(1e308, "1e308"), (-2.5e21, "-2.5e21"), (2.5e-7, "2.5e-7"), (1e20, "100000000000000000000")] {
            let mut got = String::new();
            push_num(&mut got, v);
            assert_eq!(got, want);
        }
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || crate::process::xorshift(&mut x);
        let mut values = vec![0.0, -0.0, 0.00005, 0.00015, 0.03125, -0.03125, 2.5e-5, 5e-324, -1e-30, 1e15 + 0.5];
        for _ in 0..300_000 {
            let r = next();
            values.push(match r % 4 {
                0 => f64::from_bits(r >> 2),
                1 => (r >> 11) as f64 / (1u64 << (r % 60)) as f64,
                2 => ((r >> 20) % 1_000_000_000) as f64 / 32.0 * if r & 1 == 1 { -1.0 } else { 1.0 },
                _ => ((r >> 8) % 100_000_000) as f64 / 100.0,
            });
        }
        for v in values.into_iter().filter(|v| v.is_finite()) {
            let want = if v != 0.0 && !(1e-4..1e21).contains(&v.abs()) {
                format!("{v:e}")
            } else if v.fract() == 0.0 && v.abs() < 1e15 {
                format!("{v:.0}")
            } else {
                let s = format!("{v:.4}");
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            };
            let mut got = String::from("x");
            push_num(&mut got, v);
            assert_eq!(got[1..], want, "{v:e}");
        }
    }

    /// With thousands of regions the lines are written on several threads;
    /// they come out as one thread writes them: every region once, in
    /// name order, failures and odd names included.
    #[test]
    fn many_regions_print_as_one_thread_prints_them() {
        use std::collections::BTreeMap;

        use crate::process::stats::ColumnStats;
        let stats = |n: u64| ColumnStats {
            count: n,
            sum: Some(n as f64 * 1.25),
            min: Some(-0.5),
            max: (n > 1).then_some(1e9 / 7.0),
            mean: Some(n as f64 / 3.0),
            stddev: (n > 1).then_some(0.1),
        };
        let regions: BTreeMap<String, RegionReport> = (0..2 * PARALLEL_FROM + 3)
            .map(|i| {
                let name = if i % 9 == 0 { format!("odd\nname {i}") } else { format!("r{i:05}") };
                let report = RegionReport {
                    task: None,
                    records: i as u64,
                    stats: (i % 5 != 0).then(|| BTreeMap::from([("v".to_string(), stats(i as u64))]).into()),
                    result: None,
                    error: (i % 5 == 0).then(|| format!("failed {i}")),
                };
                (name, report)
            })
            .collect();
        let entries: Vec<(&String, &RegionReport)> = regions.iter().collect();
        let mut want = String::new();
        region_lines(&mut want, &entries);
        let report = ProcessReport {
            tasks: vec![],
            regions,
            totals: None,
            accounting: Default::default(),
            rejects: vec![],
            complete: false,
            warnings: vec![],
            collected_processes: 0,
            workdir: None,
            elapsed_ms: 0,
        };
        let got = results(&report);
        assert!(got.contains(&format!("=== AGGREGATED RESULTS ===\n{want}\n")), "the lines differ");
        assert_eq!(got.matches("\nRegion ").count(), 2 * PARALLEL_FROM + 3);
        assert!(got.contains("Region odd\\nname 9: 9 records processed; v: sum 11.25, mean 3, min -0.5"));
        assert!(got.contains("Region r00005: FAILED, 5 records not processed: failed 5\n"));
    }
}

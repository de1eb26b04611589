//! Generated datasets for the `distex process` tests: CSV with quoted
//! commas, quotes and newlines, optional skew, and malformed records at
//! known lines (wrong field count, a non-number in a numeric column, an
//! empty key, invalid UTF-8).

use std::path::Path;

/// A deterministic pseudo-random sequence (64-bit LCG).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407))
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub(crate) struct Generated {
    pub(crate) bytes: Vec<u8>,
    /// Lines where malformed records start.
    pub(crate) bad_lines: Vec<u64>,
    /// Records after the header, malformed ones included.
    pub(crate) records: u64,
}

pub(crate) struct Spec<'a> {
    pub(crate) rows: usize,
    pub(crate) regions: &'a [String],
    /// Fraction (0..100) of rows that go to the first region.
    pub(crate) hot_percent: u64,
    /// Put a malformed record every this many rows.
    pub(crate) bad_every: Option<usize>,
    pub(crate) seed: u64,
}

pub(crate) const NUMERIC: &str = "qty,price,weight";

pub(crate) fn csv(spec: &Spec<'_>) -> Generated {
    let mut rng = Rng::new(spec.seed);
    let mut out = Vec::new();
    out.extend_from_slice(b"id,region,qty,price,weight,note\n");
    let mut line: u64 = 2;
    let mut bad_lines = Vec::new();
    let mut bad_kind = 0;
    for i in 0..spec.rows {
        let region = if rng.below(100) < spec.hot_percent {
            &spec.regions[0]
        } else {
            &spec.regions[rng.below(spec.regions.len() as u64) as usize]
        };
        let region = quote(region);
        let qty = rng.below(1000) as i64 - 100;
        let price = format!("{}.{:02}", rng.below(100000), rng.below(100));
        let weight =
            if rng.below(10) == 0 { String::new() } else { format!("{}", rng.below(1_000_000) as f64 / 1000.0) };
        let note = match rng.below(5) {
            0 => "plain".to_string(),
            1 => "\"has, a comma\"".to_string(),
            2 => "\"says \"\"hi\"\", then leaves\"".to_string(),
            3 => "\"two\nlines, and \"\"quotes\"\"\"".to_string(),
            _ => String::new(),
        };
        let bad = spec.bad_every.is_some_and(|n| i % n == n - 1);
        let record: Vec<u8> = if bad {
            bad_lines.push(line);
            bad_kind += 1;
            match bad_kind % 4 {
                0 => format!("{i},{region},{qty},{price}\n").into_bytes(),
                1 => format!("{i},{region},abc,{price},{weight},{note}\n").into_bytes(),
                2 => format!("{i},,{qty},{price},{weight},{note}\n").into_bytes(),
                _ => {
                    let mut r = format!("{i},{region},{qty},{price},{weight},bad").into_bytes();
                    r.extend_from_slice(b"\xff\xfe\n");
                    r
                }
            }
        } else {
            format!("{i},{region},{qty},{price},{weight},{note}\n").into_bytes()
        };
        line += record.iter().filter(|&&b| b == b'\n').count() as u64;
        out.extend_from_slice(&record);
    }
    Generated { bytes: out, bad_lines, records: spec.rows as u64 }
}

/// RFC 4180 quoting when needed.
pub(crate) fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) || field.starts_with(' ') || field.ends_with(' ') {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Runs the independent Python reference on `file`.
pub(crate) fn reference(file: &Path, key: &str, numeric: &str, format: &str) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/util/process_reference.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(file)
        .arg(key)
        .arg(numeric)
        .arg(format)
        .output()
        .expect("python3");
    assert!(out.status.success(), "reference failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("reference JSON")
}

/// Asserts that distex's `--json` report agrees with the reference, column by column.
pub(crate) fn assert_matches_reference(report: &serde_json::Value, reference: &serde_json::Value, numeric: &str) {
    let regions = report["regions"].as_object().expect("regions");
    let expected = reference["regions"].as_object().expect("reference regions");
    assert_eq!(regions.len(), expected.len(), "number of regions");
    for (name, want) in expected {
        let got = regions.get(name).unwrap_or_else(|| panic!("region {name:?} missing from the report"));
        assert_eq!(got["records"], want["records"], "records of region {name:?}");
        for col in numeric.split(',') {
            let (g, w) = (&got["stats"][col], &want["stats"][col]);
            for field in ["count", "sum", "min", "max", "mean"] {
                assert_eq!(
                    g[field].as_f64(),
                    w[field].as_f64(),
                    "{field} of column {col} in region {name:?}: got {g}, want {w}"
                );
            }
            match (g["stddev"].as_f64(), w["stddev"].as_f64()) {
                (Some(a), Some(b)) => {
                    assert!((a - b).abs() <= 1e-9 * b.abs().max(1e-300), "stddev of {col} in {name:?}: {a} vs {b}")
                }
                (a, b) => assert_eq!(a, b, "stddev of {col} in {name:?}"),
            }
        }
    }
}

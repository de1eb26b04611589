//! Per-column statistics that merge exactly, whatever the split.
//!
//! * The sum is exact: [`ExactSum`] keeps a list of non-overlapping partial
//!   sums (Shewchuk's algorithm, as in Python's `math.fsum`), so adding
//!   values in any order or merging accumulators built on any split of the
//!   data gives the same, correctly rounded result.
//! * The variance uses Welford's update per value and Chan et al.'s
//!   pairwise formula to merge two accumulators.
//! * count, min and max are exact by nature.
//!
//! Accumulators travel between worker processes as JSON: serde_json writes
//! f64 with shortest round-trip precision, so nothing is lost on the way.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An exact running sum of f64 values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExactSum {
    /// Non-overlapping partials, increasing in magnitude.
    partials: Vec<f64>,
}

impl ExactSum {
    pub fn add(&mut self, mut x: f64) {
        let mut i = 0;
        for j in 0..self.partials.len() {
            let mut y = self.partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[i] = lo;
                i += 1;
            }
            x = hi;
        }
        self.partials.truncate(i);
        self.partials.push(x);
    }

    pub fn merge(&mut self, other: &ExactSum) {
        for &p in &other.partials {
            self.add(p);
        }
    }

    /// The sum, correctly rounded to the nearest f64.
    pub fn value(&self) -> f64 {
        let p = &self.partials;
        let Some(mut n) = p.len().checked_sub(1) else { return 0.0 };
        let mut hi = p[n];
        let mut lo = 0.0;
        while n > 0 {
            n -= 1;
            let x = hi;
            let y = p[n];
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        // Round half-even correction, as math.fsum does.
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        hi
    }
}

/// The accumulator of one numeric column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accumulator {
    pub count: u64,
    pub sum: ExactSum,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Welford's running mean and sum of squared deviations.
    pub mean: f64,
    pub m2: f64,
}

impl Accumulator {
    pub fn push(&mut self, x: f64) {
        self.count += 1;
        self.sum.add(x);
        self.min = Some(self.min.map_or(x, |m| m.min(x)));
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Chan et al.: combines two accumulators as if all values went into one.
    pub fn merge(&mut self, other: &Accumulator) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        self.mean += delta * nb / n;
        self.m2 += other.m2 + delta * delta * na * nb / n;
        self.count += other.count;
        self.sum.merge(&other.sum);
        self.min = min_opt(self.min, other.min);
        self.max = max_opt(self.max, other.max);
    }

    /// The figures users see.
    pub fn summary(&self) -> ColumnStats {
        let sum = self.sum.value();
        ColumnStats {
            count: self.count,
            sum,
            min: self.min,
            max: self.max,
            mean: (self.count > 0).then(|| sum / self.count as f64),
            stddev: (self.count > 1).then(|| (self.m2.max(0.0) / (self.count - 1) as f64).sqrt()),
        }
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// count, sum, min, max, mean and sample standard deviation of a column.
/// `mean` is the exact sum divided by the count; `stddev` is null below 2 values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ColumnStats {
    pub count: u64,
    pub sum: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub stddev: Option<f64>,
}

/// Accumulators for every numeric column of one region (or of everything).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegionStats {
    pub records: u64,
    pub columns: BTreeMap<String, Accumulator>,
}

impl RegionStats {
    pub fn merge(&mut self, other: &RegionStats) {
        self.records += other.records;
        for (name, acc) in &other.columns {
            self.columns.entry(name.clone()).or_default().merge(acc);
        }
    }

    pub fn summaries(&self) -> BTreeMap<String, ColumnStats> {
        self.columns.iter().map(|(k, v)| (k.clone(), v.summary())).collect()
    }
}

/// Parses a numeric field: optional surrounding spaces, finite numbers only.
/// Empty fields are missing values (`Ok(None)`), not errors.
pub fn parse_number(field: &[u8]) -> Result<Option<f64>, ()> {
    let text = std::str::from_utf8(field).map_err(|_| ())?.trim();
    if text.is_empty() {
        return Ok(None);
    }
    // Fast path for plain integers, the common case in data files.
    if text.len() <= 15 {
        let (neg, digits) = match text.as_bytes()[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            let v = digits.bytes().fold(0i64, |acc, b| acc * 10 + (b - b'0') as i64) as f64;
            return Ok(Some(if neg { -v } else { v }));
        }
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_sum_is_order_independent() {
        let values = [1e100, 1.0, -1e100, 1e-3, 3.0, 0.1, 0.2, -0.3];
        let mut a = ExactSum::default();
        values.iter().for_each(|&v| a.add(v));
        let mut b = ExactSum::default();
        values.iter().rev().for_each(|&v| b.add(v));
        let (mut c, mut d) = (ExactSum::default(), ExactSum::default());
        values[..3].iter().for_each(|&v| c.add(v));
        values[3..].iter().for_each(|&v| d.add(v));
        c.merge(&d);
        assert_eq!(a.value(), b.value());
        assert_eq!(a.value(), c.value());
        assert_eq!(a.value(), 4.001);
    }

    #[test]
    fn chan_merge_matches_single_pass() {
        let values: Vec<f64> = (0..1000).map(|i| ((i * 7919) % 1013) as f64 / 7.0).collect();
        let mut whole = Accumulator::default();
        values.iter().for_each(|&v| whole.push(v));
        let mut left = Accumulator::default();
        let mut right = Accumulator::default();
        values[..313].iter().for_each(|&v| left.push(v));
        values[313..].iter().for_each(|&v| right.push(v));
        left.merge(&right);
        let (w, m) = (whole.summary(), left.summary());
        assert_eq!(w.sum, m.sum);
        assert_eq!((w.min, w.max, w.count), (m.min, m.max, m.count));
        assert!((w.stddev.unwrap() - m.stddev.unwrap()).abs() < 1e-9 * w.stddev.unwrap());
    }

    #[test]
    fn numbers_parse_strictly() {
        assert_eq!(parse_number(b" 42 "), Ok(Some(42.0)));
        assert_eq!(parse_number(b"-1.5e3"), Ok(Some(-1500.0)));
        assert_eq!(parse_number(b""), Ok(None));
        assert!(parse_number(b"inf").is_err());
        assert!(parse_number(b"NaN").is_err());
        assert!(parse_number(b"12abc").is_err());
    }
}

//! Running statistics of the numeric columns of many regions, as a worker
//! reads them: one cache line per region and column.
//!
//! With thousands of regions the accumulators do not fit in the CPU's
//! caches, and every value costs a trip to memory for each line its
//! accumulator spans, so the hot state of a column is packed into exactly
//! 64 bytes ([`Running`]): the count, min and max, shifted sums for the
//! variance, and the exact sum as a 128-bit fixed-point integer.
//!
//! The fixed-point sum is exact. A double is an integer mantissa `m` (53
//! bits) times `2^e`; the column's *unit* `2^u` is chosen from its first
//! non-zero value (see `unit_for`), and a value with `u <= e <= u + 43`
//! is exactly `m << (e - u)` units, below 2^96, so 2^31 of them cannot
//! overflow. A value that does not fit (a much smaller or larger magnitude,
//! with bits below the unit) goes to a cold [`ExactSum`] kept aside, and
//! the two are added when the worker is done: the total is the same exact
//! sum, correctly rounded once, whichever path each value took.

use crate::process::stats::{Accumulator, ExactSum, Figures};

/// Largest shift of a mantissa into the fixed-point sum (see the module docs).
const MAX_SHIFT: i32 = 43;
/// Accumulators reserved at first (4 MB of address space).
const RESERVED: usize = 1 << 16;
/// The unit of a column before its first non-zero value.
const NO_UNIT: i32 = i32::MIN;

/// Mantissa and exponent: `x == m * 2^e` (ignoring the sign).
#[inline(always)]
fn decompose(x: f64) -> (u64, i32) {
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    if exp == 0 { (frac, -1074) } else { (frac | (1u64 << 52), exp - 1075) }
}

/// The unit for a column whose first non-zero value is `x`: the values of
/// a column are mostly of a similar size, and this one's lowest bit sits
/// 21 bits above the unit, leaving room for values 2^21 times finer and
/// 2^22 times coarser. Clamped so that every unit is a representable bit
/// (no subnormal loss) and sums stay far from overflow.
fn unit_for(x: f64) -> i32 {
    (decompose(x).1 - 21).clamp(-1074, 800)
}

/// The hot statistics of one column of one region (see the module docs).
/// 64 bytes, aligned to a cache line.
#[derive(Debug, Clone, Default)]
#[repr(C, align(64))]
pub(crate) struct Running {
    /// The exact sum of the values that fit, in units of the column.
    sum: i128,
    count: u64,
    min: f64,
    max: f64,
    /// Σ(x−K) and Σ(x−K)² around the first value K: the variance without a
    /// division per value, with little cancellation.
    shift: f64,
    s1: f64,
    s2: f64,
}

impl Running {
    /// Adds `x`; false when its exact sum must be kept aside instead,
    /// because it does not fit the fixed-point sum in units of `2^unit`.
    #[inline(always)]
    fn push(&mut self, x: f64, unit: i32) -> bool {
        if self.count == 0 {
            self.shift = x;
            self.min = x;
            self.max = x;
        }
        self.count += 1;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        let d = x - self.shift;
        self.s1 += d;
        self.s2 += d * d;
        let (mut m, e) = decompose(x);
        let mut shift = e - unit;
        if !(0..=MAX_SHIFT).contains(&shift) {
            // Below the unit, a value is still exact in units when its low
            // bits are zero (integers' often are); zero always is.
            if m == 0 {
                return true;
            }
            if shift > 0 || (m.trailing_zeros() as i32) < -shift {
                return false;
            }
            m >>= -shift;
            shift = 0;
        }
        let v = (m as i128) << shift;
        // Negated without a branch when the sign bit is set: (v ^ -1) + 1 = -v.
        let sign = -((x.to_bits() >> 63) as i128);
        match self.sum.checked_add((v ^ sign) - sign) {
            Some(sum) => {
                self.sum = sum;
                true
            }
            None => false,
        }
    }

    fn finish(&self, unit: i32, cold: Option<&ExactSum>) -> Accumulator {
        if self.count == 0 {
            return Accumulator::default();
        }
        let mut sum = cold.cloned().unwrap_or_default();
        add_fixed(&mut sum, self.sum, unit);
        Accumulator::from_figures(self.figures(), sum)
    }

    /// All but the sum: count, min, max, mean and the sum of squared
    /// deviations.
    fn figures(&self) -> Figures {
        if self.count == 0 {
            return Figures::default();
        }
        let n = self.count as f64;
        Figures {
            count: self.count,
            min: Some(self.min),
            max: Some(self.max),
            mean: self.shift + self.s1 / n,
            m2: (self.s2 - self.s1 * self.s1 / n).max(0.0),
        }
    }
}

/// A column of a region as a scan worker prints it (in the byte path's
/// wire format, which reads it through these two methods):
/// its figures, and the digits of its exact sum straight from the
/// fixed-point sum, unless some of its values went to the cold sum.
pub(crate) struct Finished<'a> {
    running: &'a Running,
    unit: i32,
    cold: Option<&'a ExactSum>,
}

impl Finished<'_> {
    /// Its figures but the sum.
    pub(crate) fn figures(&self) -> Figures {
        self.running.figures()
    }

    /// Its exact sum as [`ExactSum::to_digits`] gives it.
    pub(crate) fn sum_digits(&self, out: &mut Vec<u32>) -> (bool, usize) {
        match self.cold {
            Some(_) => self.running.finish(self.unit, self.cold).sum.to_digits(out),
            None => fixed_digits(self.running.sum, self.unit, out),
        }
    }
}

/// [`ExactSum::to_digits`] of `value * 2^unit`: the magnitude's base-2^32
/// digits counted from 2^-1074, without zero digits at either end.
fn fixed_digits(value: i128, unit: i32, out: &mut Vec<u32>) -> (bool, usize) {
    out.clear();
    if value == 0 {
        return (false, 0);
    }
    // `unit` is at least -1074 whenever a value was added (see `unit_for`).
    let p = (unit + 1074) as usize;
    let (word, bit) = (p / 32, (p % 32) as i32);
    let m = value.unsigned_abs();
    // The magnitude shifted left by `bit` spans at most 127 + 31 bits: five digits.
    let digit = |k: i32| {
        let shift = 32 * k - bit;
        (if shift < 0 { m << -shift } else { m.checked_shr(shift as u32).unwrap_or(0) }) as u32
    };
    let digits: [u32; 5] = std::array::from_fn(|k| digit(k as i32));
    let first = digits.iter().position(|&d| d != 0).expect("a non-zero value has a non-zero digit");
    let last = digits.iter().rposition(|&d| d != 0).expect("as above");
    out.extend_from_slice(&digits[first..=last]);
    (value < 0, word + first)
}

/// Adds `value * 2^unit` to `sum`, exactly: in pieces of 43 bits, each an
/// exactly representable double.
fn add_fixed(sum: &mut ExactSum, value: i128, unit: i32) {
    let negative = value < 0;
    let mut magnitude = value.unsigned_abs();
    let mut k = unit;
    while magnitude != 0 {
        let piece = ldexp((magnitude & ((1 << MAX_SHIFT) - 1)) as f64, k);
        sum.add(if negative { -piece } else { piece });
        magnitude >>= MAX_SHIFT;
        k += MAX_SHIFT;
    }
}

/// `x * 2^k` for an integer `x < 2^43` and `-1074 <= k <= 1000`: exact, in
/// two steps by powers of two that are themselves normal doubles.
fn ldexp(x: f64, k: i32) -> f64 {
    let pow2 = |k: i32| f64::from_bits(((k + 1023) as u64) << 52);
    let half = k / 2;
    x * pow2(half) * pow2(k - half)
}

/// The statistics of `width` numeric columns for every region of a worker:
/// region `r`, column slot `c` is `hot[r * width + c]`.
#[derive(Debug, Default)]
pub(crate) struct Columns {
    width: usize,
    hot: Vec<Running>,
    /// Exact sums of the values that did not fit their hot sum, if any.
    cold: Vec<Option<Box<ExactSum>>>,
    units: Vec<i32>,
}

impl Columns {
    pub(crate) fn new(width: usize) -> Self {
        Columns { width, hot: Vec::new(), cold: Vec::new(), units: vec![NO_UNIT; width] }
    }

    /// Makes room for one more region; returns its number.
    pub(crate) fn add_region(&mut self) -> usize {
        if self.hot.len() + self.width > self.hot.capacity() {
            // A buffer aligned to cache lines is not grown in place: every
            // doubling would copy the accumulators into fresh pages. Room
            // for thousands of regions up front costs only address space
            // until they come.
            self.hot.reserve(self.hot.capacity().max(RESERVED));
        }
        let region = self.hot.len() / self.width.max(1);
        self.hot.extend((0..self.width).map(|_| Running::default()));
        self.cold.extend((0..self.width).map(|_| None));
        region
    }

    /// Starts loading `region`'s accumulators into the cache.
    #[inline(always)]
    pub(crate) fn prefetch(&self, region: usize) {
        for acc in &self.hot[region * self.width..(region + 1) * self.width] {
            crate::process::prefetch::prefetch(acc);
        }
    }

    /// Adds one record's values (`None`: missing) to `region`.
    #[inline(always)]
    pub(crate) fn push(&mut self, region: usize, values: &[Option<f64>]) {
        let at = region * self.width;
        for (slot, v) in values.iter().enumerate() {
            let Some(x) = *v else { continue };
            if self.units[slot] == NO_UNIT && x != 0.0 {
                self.units[slot] = unit_for(x);
            }
            if !self.hot[at + slot].push(x, self.units[slot]) {
                self.cold[at + slot].get_or_insert_with(Default::default).add(x);
            }
        }
    }

    /// Values counted in `region`'s first column (0 without columns).
    pub(crate) fn count(&self, region: usize) -> u64 {
        self.hot.get(region * self.width).map_or(0, |acc| acc.count)
    }

    /// Whether there are no columns.
    pub(crate) fn is_empty(&self) -> bool {
        self.width == 0
    }

    /// The columns of `region` as a worker prints them, one per slot.
    pub(crate) fn finished(&self, region: usize) -> impl Iterator<Item = Finished<'_>> + '_ {
        let at = region * self.width;
        (0..self.width).map(move |slot| Finished {
            running: &self.hot[at + slot],
            unit: self.units[slot],
            cold: self.cold[at + slot].as_deref(),
        })
    }

    /// The accumulators of `region`, one per column slot.
    pub(crate) fn finish(&self, region: usize) -> impl Iterator<Item = Accumulator> + '_ {
        let at = region * self.width;
        (0..self.width).map(move |slot| self.hot[at + slot].finish(self.units[slot], self.cold[at + slot].as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_fills_one_cache_line() {
        assert_eq!(std::mem::size_of::<Running>(), 64);
        assert_eq!(std::mem::align_of::<Running>(), 64);
    }

    /// Whatever path each value takes (hot, below the unit, too large,
    /// zero, negative, subnormal), the sum is the exact sum, bit for bit.
    #[test]
    fn sums_are_exact_whichever_path_values_take() {
        let cases: [&[f64]; 6] = [
            &[97196.35, 244.892, -49.0, 0.0, 1e-9, 3.5e15, -97196.35, 0.1, 0.2],
            &[0.0, -0.0, 12.0, 1e300, -1e300, 5e-324, 7.0],
            &[1e-310, 2e-310, -3e-310, 1.0],
            &[1e200, 3.0, -1e200],
            &[-1.5; 1000],
            &[123456789.125, 0.001, 987654321.0, -0.5],
        ];
        for values in cases {
            let mut columns = Columns::new(1);
            let r = columns.add_region();
            let mut reference = ExactSum::default();
            for &v in values {
                columns.push(r, &[Some(v)]);
                reference.add(v);
            }
            let acc = columns.finish(r).next().unwrap();
            assert_eq!(acc.sum.value().to_bits(), reference.value().to_bits(), "{values:?}");
            assert_eq!(acc.count, values.len() as u64);
        }
    }

    /// Values that overflow the hot sum move to the cold one, still exact.
    #[test]
    fn a_hot_sum_that_would_overflow_spills() {
        let mut r = Running::default();
        let mut spilled = 0;
        let x = (1u64 << 52) as f64 * 2f64.powi(43); // the largest shift
        r.sum = i128::MAX - 10;
        if !r.push(x, 0) {
            spilled += 1;
        }
        assert_eq!(spilled, 1);
        assert_eq!(r.sum, i128::MAX - 10);
    }

    /// The digits a worker prints straight from a fixed-point sum are
    /// those of the exact sum it stands for, whatever the value and unit.
    #[test]
    fn fixed_sums_print_the_digits_of_their_exact_sum() {
        let mut x = 0x243f_6a88_85a3_08d3u64;
        let mut next = || crate::process::xorshift(&mut x);
        let mut values = vec![0i128, 1, -1, i128::MAX, i128::MIN + 1, 1 << 64, -(1 << 95), u32::MAX as i128];
        for _ in 0..2000 {
            let bits = next() % 127;
            let v = ((next() as i128) << 64 | next() as i128) >> (127 - bits);
            values.push(v);
        }
        for (i, &value) in values.iter().enumerate() {
            let unit = [-1074, -1073, -1043, -600, -60, -32, -1, 0, 31, 32, 700, 800][i % 12];
            let running = Running { sum: value, count: 1, ..Running::default() };
            let finished = Finished { running: &running, unit, cold: None };
            let (mut fast, mut slow) = (Vec::new(), Vec::new());
            let expected = running.finish(unit, None).sum.to_digits(&mut slow);
            assert_eq!(finished.sum_digits(&mut fast), expected, "{value} at unit {unit}");
            assert_eq!(fast, slow, "{value} at unit {unit}");
        }
    }

    #[test]
    fn mean_and_spread_match_welford() {
        let values: Vec<f64> = (0..5000).map(|i| 1e6 + ((i * 7919) % 1013) as f64 / 7.0).collect();
        let mut w = Accumulator::default();
        let mut columns = Columns::new(1);
        let r = columns.add_region();
        for &v in &values {
            w.push(v);
            columns.push(r, &[Some(v)]);
        }
        let (a, b) = (w.summary(), columns.finish(r).next().unwrap().summary());
        assert_eq!(a.sum, b.sum);
        assert!((a.stddev.unwrap() - b.stddev.unwrap()).abs() < 1e-9 * a.stddev.unwrap());
    }
}

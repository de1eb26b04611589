//! Per-column statistics that merge exactly, whatever the split.
//!
//! * The sum is exact: [`ExactSum`] adds every double exactly into integer
//!   limbs (a fixed-point superaccumulator covering the whole f64 range),
//!   so adding values in any order or merging accumulators built on any
//!   split of the data gives the same total, rounded once, correctly (the
//!   same bits as Python's `math.fsum`).
//! * The variance: workers keep shifted sums per value (see
//!   [`region_columns`]) and hand over the mean and M2 of Welford's
//!   method; Chan et al.'s pairwise formula merges two accumulators.
//! * count, min and max are exact by nature.
//!
//! Numbers are parsed by [`number`], the same way on both paths.
//!
//! Accumulators travel between worker processes as JSON (serde_json writes
//! f64 with shortest round-trip precision, so nothing is lost on the way),
//! or, from byte-range scan workers, in the binary format of
//! [`crate::process::bytes::wire`] (floats as their bits, the sum as its integer digits).

pub(crate) mod number;
pub(crate) mod region_columns;

pub(crate) use number::{parse_number, parse_number_at};

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An exact running sum of f64 values (a "superaccumulator").
///
/// Every finite double is an integer mantissa times a power of two, so it
/// can be added exactly into a fixed-point integer wide enough for the whole
/// f64 range: 66 limbs of 32 bits (held in i64 so carries can wait). Adding
/// is a handful of integer operations, with no rounding at all, so the
/// result cannot depend on the order of the values or on how they were
/// split between workers. [`ExactSum::value`] rounds the exact total once,
/// correctly, to the nearest double.
///
/// Between processes the sum travels as a list of doubles whose exact sum
/// is the total (each limb split into two exactly representable halves).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExactSum {
    /// The limbs most values of a column land in: `window[k]` is limb
    /// `base + k`. Values of similar magnitude touch only a few limbs, so a
    /// small window keeps thousands of accumulators in cache.
    base: u32,
    window: [i64; WINDOW],
    /// All limbs, once a value falls outside the window.
    full: Option<Box<[i64; LIMBS]>>,
    /// Additions since the last carry propagation (each limb can absorb 2^31).
    adds: u32,
}

const LIMBS: usize = 66;
const WINDOW: usize = 8;
/// `base` before the first value.
const NO_BASE: u32 = u32::MAX;

impl Default for ExactSum {
    fn default() -> Self {
        ExactSum { base: NO_BASE, window: [0; WINDOW], full: None, adds: 0 }
    }
}

impl ExactSum {
    #[inline(always)]
    pub(crate) fn add(&mut self, x: f64) {
        let bits = x.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as u32;
        let frac = bits & ((1u64 << 52) - 1);
        // Value = mantissa * 2^(pos - 1074).
        let (mantissa, pos) = if exp == 0 { (frac, 0) } else { (frac | (1u64 << 52), exp - 1) };
        // Where the value's three limbs start in the window; far out of
        // range (wrapping) when below it, or before the first value.
        let k = ((pos >> 5) as usize).wrapping_sub(self.base as usize);
        if k > WINDOW - 3 || self.full.is_some() {
            return self.add_cold(x);
        }
        let v = (mantissa as u128) << (pos & 31);
        // Negated without a branch when the sign bit is set: (l ^ -1) + 1 = -l.
        let sign = 0i64.wrapping_sub((bits >> 63) as i64);
        let limb = |l: i64| (l ^ sign).wrapping_sub(sign);
        self.window[k] += limb((v & 0xffff_ffff) as i64);
        self.window[k + 1] += limb(((v >> 32) & 0xffff_ffff) as i64);
        self.window[k + 2] += limb((v >> 64) as i64);
        self.adds += 1;
        if self.adds >= 1 << 30 {
            self.normalize();
        }
    }

    /// [`ExactSum::add`] of a value outside the window, or the first value
    /// (which places the window).
    #[cold]
    #[inline(never)]
    fn add_cold(&mut self, x: f64) {
        let bits = x.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as usize;
        let frac = bits & ((1u64 << 52) - 1);
        let (mantissa, pos) = if exp == 0 { (frac, 0) } else { (frac | (1u64 << 52), exp - 1) };
        if mantissa == 0 {
            return;
        }
        let v = (mantissa as u128) << (pos & 31);
        let i = pos >> 5;
        let mut l = [(v & 0xffff_ffff) as i64, ((v >> 32) & 0xffff_ffff) as i64, (v >> 64) as i64];
        if (bits >> 63) == 1 {
            l = [-l[0], -l[1], -l[2]];
        }
        if self.base == NO_BASE && self.full.is_none() {
            // Centre the window on the first value.
            self.base = i.saturating_sub(2).min(LIMBS - WINDOW) as u32;
        }
        let base = self.base as usize;
        match &mut self.full {
            None if i >= base && i + 3 <= base + WINDOW => {
                let w = &mut self.window[i - base..i - base + 3];
                w[0] += l[0];
                w[1] += l[1];
                w[2] += l[2];
            }
            _ => self.add_outside(i, l),
        }
        self.adds += 1;
        if self.adds >= 1 << 30 {
            self.normalize();
        }
    }

    /// The rare case of [`ExactSum::add`]: a value outside the window.
    #[cold]
    #[inline(never)]
    fn add_outside(&mut self, i: usize, l: [i64; 3]) {
        let full = self.spill();
        full[i] += l[0];
        full[i + 1] += l[1];
        full[i + 2] += l[2];
    }

    /// Moves the window into the full array (once) and returns it.
    fn spill(&mut self) -> &mut [i64; LIMBS] {
        if self.full.is_none() {
            let mut full = Box::new([0i64; LIMBS]);
            if self.base != NO_BASE {
                let base = self.base as usize;
                full[base..base + WINDOW].copy_from_slice(&self.window);
            }
            self.window = [0; WINDOW];
            self.full = Some(full);
        }
        self.full.as_mut().expect("just set")
    }

    /// Every limb, wherever it is kept.
    fn limbs(&self) -> [i64; LIMBS] {
        match &self.full {
            Some(full) => **full,
            None => {
                let mut all = [0i64; LIMBS];
                if self.base != NO_BASE {
                    let base = self.base as usize;
                    all[base..base + WINDOW].copy_from_slice(&self.window);
                }
                all
            }
        }
    }

    /// Propagates carries so every limb but the last lies in [0, 2^32).
    fn normalize(&mut self) {
        let full = self.spill();
        for i in 0..LIMBS - 1 {
            let carry = full[i] >> 32;
            full[i] -= carry << 32;
            full[i + 1] += carry;
        }
        self.adds = 0;
    }

    pub(crate) fn merge(&mut self, other: &ExactSum) {
        // `adds` bounds every limb by adds * 2^32, so the sum of two bounds
        // says when carries must be propagated before a limb could overflow.
        let safe = (self.adds as u64 + other.adds as u64 + 1) < 1 << 30;
        if safe && self.full.is_none() && other.full.is_none() && self.merge_windows(other) {
            return;
        }
        if !safe {
            self.normalize();
        }
        let theirs = other.limbs();
        let mine = self.spill();
        for (a, b) in mine.iter_mut().zip(theirs.iter()) {
            *a += b;
        }
        self.adds += other.adds + 1;
        if self.adds >= 1 << 30 {
            self.normalize();
        }
    }

    /// [`ExactSum::merge`] of two sums that both fit in their windows,
    /// when the limbs of both fit in one window (the usual case: one
    /// column's values have similar magnitudes in every part), without
    /// moving to the full array. False, and nothing done, otherwise.
    fn merge_windows(&mut self, other: &ExactSum) -> bool {
        if self.base == other.base && self.base != NO_BASE {
            for (a, b) in self.window.iter_mut().zip(&other.window) {
                *a += b;
            }
            self.adds += other.adds + 1;
            return true;
        }
        let Some((their_lo, their_hi)) = other.window_span() else {
            self.adds += other.adds + 1;
            return true;
        };
        let (lo, hi) = match self.window_span() {
            Some((lo, hi)) => (lo.min(their_lo), hi.max(their_hi)),
            None => (their_lo, their_hi),
        };
        if hi - lo >= WINDOW {
            return false;
        }
        let base = window_base(lo, hi);
        if base != self.base as usize {
            let old = std::mem::replace(&mut self.window, [0; WINDOW]);
            if self.base != NO_BASE {
                for (k, &l) in old.iter().enumerate().filter(|(_, l)| **l != 0) {
                    self.window[self.base as usize + k - base] = l;
                }
            }
            self.base = base as u32;
        }
        for (k, &l) in other.window.iter().enumerate().filter(|(_, l)| **l != 0) {
            self.window[other.base as usize + k - base] += l;
        }
        self.adds += other.adds + 1;
        true
    }

    /// The first and last non-zero limbs of the window (`None`: all zero).
    fn window_span(&self) -> Option<(usize, usize)> {
        if self.base == NO_BASE {
            return None;
        }
        let first = self.window.iter().position(|&l| l != 0)?;
        let last = self.window.iter().rposition(|&l| l != 0)?;
        Some((self.base as usize + first, self.base as usize + last))
    }

    /// Doubles whose exact sum is this sum: one per base-2^32 digit of its
    /// magnitude, all of its sign (so none overflows while the sum is
    /// within the range of doubles).
    fn terms(&self) -> Vec<f64> {
        let digits = self.digits();
        let sign = if digits.negative { -1.0 } else { 1.0 };
        let at = |k: usize| 32 * (digits.lo + k) as i32 - 1074;
        digits
            .as_slice()
            .iter()
            .enumerate()
            .filter(|(_, d)| **d != 0)
            .map(|(k, &d)| sign * scale(d as f64, at(k)))
            .collect()
    }

    /// The sum, correctly rounded to the nearest f64 (ties to even);
    /// ±infinity beyond the range of doubles.
    pub(crate) fn value(&self) -> f64 {
        self.value_from_window().unwrap_or_else(|| self.value_from_digits(0))
    }

    /// The sum divided by `count` when the sum itself is beyond the range
    /// of doubles (two values of 1e308): scaled down by an exact power of
    /// two first, divided, and scaled back, so the mean is finite.
    pub(crate) fn mean_beyond_range(&self, count: u64) -> f64 {
        scale(self.value_from_digits(-64) / count as f64, 64)
    }

    /// [`ExactSum::value`] the short way, for the usual sum: at most three
    /// adjacent limbs of the window are non-zero, so the limbs add up
    /// exactly in an i128, which converts to f64 in one correctly rounded
    /// step; scaling by a power of two is then exact when the result is a
    /// normal double. `None` for any other sum.
    fn value_from_window(&self) -> Option<f64> {
        if self.full.is_some() || self.base == NO_BASE {
            return None;
        }
        let (lo, hi) = self.window_span()?;
        if hi - lo > 2 {
            return None;
        }
        let at = lo - self.base as usize;
        let mut v: i128 = 0;
        for (k, &l) in self.window[at..=at + (hi - lo)].iter().enumerate() {
            v = v.checked_add((l as i128).checked_mul(1 << (32 * k))?)?;
        }
        let x = scale(v as f64, 32 * lo as i32 - 1074);
        x.is_normal().then_some(x)
    }

    /// [`ExactSum::value`] of any sum, from the magnitude's digits: the top three (up to 96 bits) go into
    /// an integer whose top 64 bits convert to f64 in one correctly
    /// rounded step, with every lower bit folded into the last one (a
    /// "sticky" bit: it can only break a tie, never make one). Scaling by
    /// a power of two is then exact; a result in the subnormal range is a
    /// multiple of 2^-1074 with at most 52 bits, exact all the way.
    /// `shift` scales the result by 2^shift on the way (exactly).
    fn value_from_digits(&self, shift: i32) -> f64 {
        let digits = self.digits();
        let d = digits.as_slice();
        let n = d.len();
        if n == 0 {
            return 0.0;
        }
        let at = |k: usize| if k < n { d[n - 1 - k] as u128 } else { 0 };
        let m = at(0) << 64 | at(1) << 32 | at(2);
        let lz = m.leading_zeros();
        let norm = m << lz;
        // Below the top three digits: the lowest digit is never zero.
        let sticky = n > 3 || norm as u64 != 0;
        let top = (norm >> 64) as u64 | sticky as u64;
        let exp = 32 * (digits.lo as i32 + n as i32 - 3) - 1074 + 64 - lz as i32 + shift;
        let v = scale(top as f64, exp);
        if digits.negative { -v } else { v }
    }
}

/// x * 2^k, exact for the limb values used here.
fn scale(x: f64, k: i32) -> f64 {
    // Two steps keep every intermediate power of two representable.
    let (a, b) = (k / 2, k - k / 2);
    x * pow2(a) * pow2(b)
}

fn pow2(k: i32) -> f64 {
    if k >= -1022 { f64::from_bits(((k + 1023) as u64) << 52) } else { f64::from_bits(1u64 << (k + 1074)) }
}

/// Shewchuk's non-overlapping partials: doubles whose exact sum is the
/// exact sum of `values`.
fn partials(values: &[f64]) -> Vec<f64> {
    let mut p = raw_partials(values);
    p.retain(|&x| x != 0.0);
    p
}

/// The partials as Shewchuk's algorithm leaves them (the last one may be 0).
fn raw_partials(values: &[f64]) -> Vec<f64> {
    let mut p: Vec<f64> = Vec::new();
    for &v in values {
        let mut x = v;
        let mut i = 0;
        for j in 0..p.len() {
            let mut y = p[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                p[i] = lo;
                i += 1;
            }
            x = hi;
        }
        p.truncate(i);
        p.push(x);
    }
    p
}

/// Shewchuk's exactly rounded sum of a few doubles (as Python's math.fsum):
/// the reference [`ExactSum::value`] is tested against.
#[cfg(test)]
fn fsum(values: &[f64]) -> f64 {
    let p = raw_partials(values);
    let Some(mut n) = p.len().checked_sub(1) else {
        return 0.0;
    };
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
    // Round half-even across partials, as math.fsum does.
    if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
        let y = lo * 2.0;
        let x = hi + y;
        if y == x - hi {
            hi = x;
        }
    }
    hi
}

/// How an [`ExactSum`] travels as JSON between a worker and the coordinator.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum SumJson {
    /// A few non-overlapping doubles whose exact sum is the sum (usually
    /// one to three), as long as the sum is within the range of doubles.
    Partials(Vec<f64>),
    /// Any sum, as [`ExactSum::to_digits`] gives it: for sums beyond the
    /// range of doubles, whose partials would overflow (JSON has no
    /// infinity).
    Digits { negative: bool, lo: usize, digits: Vec<u32> },
}

impl Serialize for ExactSum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let partials = partials(&self.terms());
        if partials.iter().all(|p| p.is_finite()) {
            return SumJson::Partials(partials).serialize(s);
        }
        let mut digits = Vec::new();
        let (negative, lo) = self.to_digits(&mut digits);
        SumJson::Digits { negative, lo, digits }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ExactSum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match SumJson::deserialize(d)? {
            SumJson::Partials(terms) => {
                let mut sum = ExactSum::default();
                for t in terms {
                    if !t.is_finite() {
                        return Err(serde::de::Error::custom("sum terms must be finite"));
                    }
                    sum.add(t);
                }
                Ok(sum)
            }
            SumJson::Digits { negative, lo, digits } => ExactSum::from_digits(negative, lo, &digits)
                .ok_or_else(|| serde::de::Error::custom("a sum out of range")),
        }
    }
}

/// Most base-2^32 digits of a sum's magnitude: the 66 limbs, plus the
/// carries the top limb can hold beyond 32 bits.
pub(crate) const MAX_DIGITS: usize = LIMBS + 1;

impl ExactSum {
    /// The sum as a sign and a magnitude in base 2^32, for the binary
    /// format of part results (`crate::process::bytes::wire`): `(negative, lo)` and the
    /// digits in `out`, so that the sum is ±Σ out\[k\]·2^(32·(lo+k) − 1074).
    /// The first and last digits are non-zero (no digits for zero).
    pub(crate) fn to_digits(&self, out: &mut Vec<u32>) -> (bool, usize) {
        let digits = self.digits();
        out.clear();
        out.extend_from_slice(digits.as_slice());
        (digits.negative, digits.lo)
    }

    /// [`ExactSum::to_digits`], in a fixed array.
    fn digits(&self) -> Digits {
        let mut out = Digits { negative: false, lo: 0, len: 0, d: [0; MAX_DIGITS + 1] };
        let (limbs, start): (&[i64], usize) = match &self.full {
            Some(full) => (&full[..], 0),
            None if self.base == NO_BASE => return out,
            None => (&self.window[..], self.base as usize),
        };
        let Some(first) = limbs.iter().position(|&l| l != 0) else {
            return out;
        };
        let last = limbs.iter().rposition(|&l| l != 0).expect("one is non-zero");
        let limbs = &limbs[first..=last];
        // Propagate carries; a negative carry out of the top means a
        // negative sum: then do it again on the negated limbs.
        let mut carry = carry_digits(limbs, false, &mut out.d);
        out.negative = carry < 0;
        if out.negative {
            carry = carry_digits(limbs, true, &mut out.d);
        }
        let mut n = limbs.len();
        let mut carry = carry as u64;
        while carry != 0 {
            out.d[n] = carry as u32;
            n += 1;
            carry >>= 32;
        }
        let skip = out.d[..n].iter().position(|&d| d != 0).unwrap_or(n);
        let end = out.d[..n].iter().rposition(|&d| d != 0).map_or(skip, |e| e + 1);
        out.d.copy_within(skip..end, 0);
        out.len = end - skip;
        out.lo = start + first + skip;
        out.negative &= out.len > 0;
        out
    }

    /// The sum [`ExactSum::to_digits`] describes; `None` when the digits
    /// lie outside the range of limbs.
    pub(crate) fn from_digits(negative: bool, lo: usize, digits: &[u32]) -> Option<ExactSum> {
        let Some(last) = digits.iter().rposition(|&d| d != 0) else {
            return Some(ExactSum::default());
        };
        if lo + digits.len() > MAX_DIGITS {
            return None;
        }
        if last < WINDOW && lo + last < LIMBS {
            // The usual case: straight into the window.
            let base = window_base(lo, lo + last);
            let mut sum = ExactSum { base: base as u32, adds: 1, ..ExactSum::default() };
            for (k, &d) in digits[..=last].iter().enumerate() {
                sum.window[lo + k - base] = if negative { -(d as i64) } else { d as i64 };
            }
            return Some(sum);
        }
        // Digits above the top limb fold into it (it holds up to 2^62).
        let mut limbs = [0i64; LIMBS];
        for (k, &d) in digits[..=last].iter().enumerate() {
            match lo + k {
                i if i < LIMBS => limbs[i] = d as i64,
                _ if d >= 1 << 30 => return None,
                _ => limbs[LIMBS - 1] += (d as i64) << 32,
            }
        }
        if negative {
            limbs.iter_mut().for_each(|l| *l = -*l);
        }
        let hi = (lo + last).min(LIMBS - 1);
        // Every limb is below 2^32 in size except the top one: `adds`
        // bounds them all (see `merge`).
        let adds = 1 + (limbs[LIMBS - 1].unsigned_abs() >> 32) as u32;
        let mut sum = ExactSum { adds, ..ExactSum::default() };
        if hi - lo < WINDOW {
            let base = window_base(lo, hi);
            sum.base = base as u32;
            sum.window.copy_from_slice(&limbs[base..base + WINDOW]);
        } else {
            sum.full = Some(Box::new(limbs));
        }
        Some(sum)
    }
}

/// Where a window holding limbs `lo..=hi` starts: placed by its top limb,
/// so that sums of similar size (one column's, from several parts) share
/// it and merge window to window.
fn window_base(lo: usize, hi: usize) -> usize {
    debug_assert!(lo <= hi && hi - lo < WINDOW && hi < LIMBS);
    (hi + 1).saturating_sub(WINDOW).min(LIMBS - WINDOW)
}

/// A sum as a sign and a magnitude in base 2^32 (see [`ExactSum::to_digits`]).
struct Digits {
    negative: bool,
    lo: usize,
    len: usize,
    d: [u32; MAX_DIGITS + 1],
}

impl Digits {
    fn as_slice(&self) -> &[u32] {
        &self.d[..self.len]
    }
}

/// Base-2^32 digits of `Σ limbs[k]·2^(32k)` (negated when `negate`) into
/// `out`; returns the carry out of the top, whose sign is the sum's.
fn carry_digits(limbs: &[i64], negate: bool, out: &mut [u32]) -> i64 {
    let mut carry = 0i64;
    for (&l, d) in limbs.iter().zip(out.iter_mut()) {
        let t = if negate { carry - l } else { carry + l };
        *d = t as u32;
        carry = t >> 32;
    }
    carry
}

/// The figures of an [`Accumulator`] but its exact sum.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Figures {
    pub(crate) count: u64,
    pub(crate) min: Option<f64>,
    pub(crate) max: Option<f64>,
    pub(crate) mean: f64,
    pub(crate) m2: f64,
}

/// The accumulator of one numeric column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Accumulator {
    pub(crate) count: u64,
    pub(crate) sum: ExactSum,
    pub(crate) min: Option<f64>,
    pub(crate) max: Option<f64>,
    /// Welford's running mean and sum of squared deviations. They overflow
    /// for values near the limits of doubles; JSON writes that as null,
    /// read back as NaN, which [`Accumulator::summary`] leaves out as it
    /// does the infinity.
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) mean: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) m2: f64,
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl Accumulator {
    #[cfg(test)]
    pub(crate) fn push(&mut self, x: f64) {
        self.count += 1;
        self.sum.add(x);
        self.min = Some(self.min.map_or(x, |m| m.min(x)));
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Chan et al.: combines two accumulators as if all values went into one.
    pub(crate) fn merge(&mut self, other: &Accumulator) {
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

    /// Its figures but the sum.
    pub(crate) fn figures(&self) -> Figures {
        let Accumulator { count, min, max, mean, m2, .. } = *self;
        Figures { count, min, max, mean, m2 }
    }

    /// The accumulator with `figures` and `sum`.
    pub(crate) fn from_figures(figures: Figures, sum: ExactSum) -> Self {
        let Figures { count, min, max, mean, m2 } = figures;
        Accumulator { count, sum, min, max, mean, m2 }
    }

    /// The figures users see. A figure beyond the range of doubles (a sum
    /// of values near 1.8e308, or a spread that large) is left out rather
    /// than shown as infinite: JSON has no infinity.
    pub(crate) fn summary(&self) -> ColumnStats {
        let finite = |v: f64| v.is_finite().then_some(v);
        let sum = self.sum.value();
        let n = self.count;
        ColumnStats {
            count: n,
            sum: finite(sum),
            min: self.min,
            max: self.max,
            mean: (n > 0).then(|| if sum.is_finite() { sum / n as f64 } else { self.sum.mean_beyond_range(n) }),
            stddev: (n > 1 && self.m2.is_finite()).then(|| (self.m2.max(0.0) / (n - 1) as f64).sqrt()),
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
/// `mean` is the exact sum divided by the count; `stddev` is null below 2
/// values; `sum` is null beyond the range of doubles (about ±1.8e308), and
/// `stddev` when computing it overflowed, which only values near that
/// bound can cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct ColumnStats {
    pub(crate) count: u64,
    pub(crate) sum: Option<f64>,
    pub(crate) min: Option<f64>,
    pub(crate) max: Option<f64>,
    pub(crate) mean: Option<f64>,
    pub(crate) stddev: Option<f64>,
}

/// The statistics of a region's numeric columns by column name, in name
/// order; a JSON object like a map. Column names are shared between all
/// regions' maps, so a report of thousands of regions holds one small
/// vector per region instead of a map and a copy of every name.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ColumnMap(Vec<(Arc<str>, ColumnStats)>);

impl ColumnMap {
    /// A map of `entries` in any order, each name once.
    pub(crate) fn new(mut entries: Vec<(Arc<str>, ColumnStats)>) -> Self {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        ColumnMap(entries)
    }

    #[cfg(test)]
    pub(crate) fn get(&self, column: &str) -> Option<&ColumnStats> {
        let at = self.0.binary_search_by(|(name, _)| (**name).cmp(column)).ok()?;
        Some(&self.0[at].1)
    }

    /// Columns and their statistics, in name order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &ColumnStats)> {
        self.0.iter().map(|(name, stats)| (&**name, stats))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<BTreeMap<String, ColumnStats>> for ColumnMap {
    fn from(map: BTreeMap<String, ColumnStats>) -> Self {
        ColumnMap(map.into_iter().map(|(name, stats)| (Arc::from(name), stats)).collect())
    }
}

impl Serialize for ColumnMap {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for ColumnMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, ColumnStats>::deserialize(deserializer).map(ColumnMap::from)
    }
}

/// Accumulators for every numeric column of one region (or of everything).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct RegionStats {
    pub(crate) records: u64,
    pub(crate) columns: BTreeMap<String, Accumulator>,
}

impl RegionStats {
    pub(crate) fn merge(&mut self, other: &RegionStats) {
        self.records += other.records;
        for (name, acc) in &other.columns {
            self.columns.entry(name.clone()).or_default().merge(acc);
        }
    }

    pub(crate) fn summaries(&self) -> ColumnMap {
        ColumnMap(self.columns.iter().map(|(k, v)| (Arc::from(k.as_str()), v.summary())).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::number::{parse_plain_decimal, parse_short_decimal};
    use super::*;

    #[test]
    fn a_column_map_is_a_json_object_in_name_order() {
        let stats = |n: u64| Accumulator { count: n, ..Accumulator::default() }.summary();
        let shared: Arc<str> = Arc::from("b \"quoted\"");
        let map = ColumnMap::new(vec![
            (shared.clone(), stats(2)),
            (Arc::from("a"), stats(1)),
            (Arc::from("a"), stats(7)),
            (Arc::from("c"), stats(3)),
        ]);
        assert_eq!(map.len(), 3, "a name appears once");
        assert_eq!(map.get("a").map(|s| s.count), Some(1), "the first of a name is kept");
        assert_eq!(map.get(&shared).map(|s| s.count), Some(2));
        assert_eq!(map.get("d"), None);
        let as_map: BTreeMap<String, ColumnStats> = map.iter().map(|(name, s)| (name.to_string(), s.clone())).collect();
        let json = serde_json::to_string(&map).unwrap();
        assert_eq!(json, serde_json::to_string(&as_map).unwrap());
        assert_eq!(serde_json::from_str::<ColumnMap>(&json).unwrap(), map);
        assert!(serde_json::from_str::<ColumnMap>("[1]").is_err());
    }

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
        let json = serde_json::to_string(&a).unwrap();
        let back: ExactSum = serde_json::from_str(&json).unwrap();
        assert_eq!(back.value(), a.value());
        // Large negative sums too (their terms used to overflow into NaN,
        // which JSON writes as null).
        for (values, want) in [
            (&[-1e308, -1e308, 1e308, -2.5][..], -1e308),
            (&[-1.7e308, 1e-300], -1.7e308),
            (&[-8e307, -8e307], -1.6e308),
        ] {
            let mut big = ExactSum::default();
            values.iter().for_each(|&v| big.add(v));
            let json = serde_json::to_string(&big).unwrap();
            let back: ExactSum = serde_json::from_str(&json).unwrap();
            assert_eq!(back.value().to_bits(), big.value().to_bits(), "{json}");
            assert_eq!(back.value(), want, "{json}");
        }
    }

    /// The window is placed by the first value: tiny and subnormal first
    /// values (limbs at the very bottom) and negative ones must count too.
    #[test]
    fn exact_sum_counts_tiny_subnormal_and_negative_values() {
        let cases: [&[f64]; 5] = [
            &[5e-324, 1e-300, -5e-324, 2.5e-310, 1.0],
            &[-1e-310, -1e-310, 3e-320],
            &[1e-320],
            &[-0.0, 0.0, -7.25, 1e300, -1e300],
            &[-3.5, 2.0, -1e-5, 12345.678],
        ];
        for values in cases {
            let mut sum = ExactSum::default();
            values.iter().for_each(|&v| sum.add(v));
            assert_eq!(sum.value().to_bits(), fsum(values).to_bits(), "{values:?}");
        }
    }

    #[test]
    fn exact_sum_matches_fsum_on_hard_cases() {
        let cases: Vec<Vec<f64>> = vec![
            vec![0.1, 0.2],
            vec![1e-16, 1.0, 1e16],
            vec![5e-324, 5e-324, -1e-310, 1e-310],
            vec![-0.5, -0.25, 3.75e-5, 1e15, -1e15],
            (0..1000).map(|i| (i as f64) * 0.1 - 37.3).collect(),
        ];
        for values in cases {
            let mut s = ExactSum::default();
            values.iter().for_each(|&v| s.add(v));
            assert_eq!(s.value(), fsum(&values), "{values:?}");
        }
        // No intermediate overflow (where a running f64 sum would give inf or NaN).
        let mut s = ExactSum::default();
        [1e308, 1e308, -1e308].iter().for_each(|&v| s.add(v));
        assert_eq!(s.value(), 1e308);
        let mut s = ExactSum::default();
        [-1e308, -1e308, 1e308, -2.5].iter().for_each(|&v| s.add(v));
        assert_eq!(s.value(), -1e308);
        // Past the largest double: infinite, as IEEE rounding says.
        s.add(-1.7e308);
        s.add(-1e308);
        assert_eq!(s.value(), f64::NEG_INFINITY);
    }

    /// Merges of sums that stay in their windows (or do not) give the
    /// exactly rounded sum of all the values, as fsum does.
    #[test]
    fn merged_sums_are_exact_whatever_their_windows() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| crate::process::xorshift(&mut x) % n;
        for round in 0..3000 {
            let mut all = Vec::new();
            let mut total = ExactSum::default();
            for _ in 0..1 + next(6) {
                let mut part = ExactSum::default();
                // Similar magnitudes (window merges) or, now and then, wild ones.
                let scale = if round % 5 == 0 { pow2(next(400) as i32 - 200) } else { 1.0 };
                for _ in 0..next(8) {
                    let v = (next(2_000_000) as f64 - 1e6) / 100.0 * scale;
                    all.push(v);
                    part.add(v);
                }
                let mut digits = Vec::new();
                let (negative, lo) = part.to_digits(&mut digits);
                total.merge(&ExactSum::from_digits(negative, lo, &digits).unwrap());
            }
            assert_eq!(total.value().to_bits(), fsum(&all).to_bits(), "{all:?}");
        }
    }

    /// The digit-based rounding gives the bits Shewchuk's fsum of the
    /// values gives: tiny, huge, cancelling and tie cases. (Rounding the
    /// sum of the limbs' halves instead, as before, gave NaN for sums
    /// below about -2^1006, whose top limbs' halves overflow.)
    #[test]
    fn value_rounds_like_fsum() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || crate::process::xorshift(&mut x);
        let mut short_ways = 0;
        for round in 0..20000 {
            let mut sum = ExactSum::default();
            let mut values = Vec::new();
            for _ in 0..1 + round % 9 {
                let r = next();
                // Any finite double, or ones a few binades apart, or
                // exact ties: 2^53 + 1 is half way between two doubles.
                let v = match round % 4 {
                    0 => f64::from_bits(r & !(0x7ff << 52) | ((r >> 20) % 2047) << 52),
                    1 => {
                        (r % 1_000_000) as f64 * pow2((r >> 32) as i32 % 80 - 40) * if r & 1 == 1 { -1.0 } else { 1.0 }
                    }
                    2 => [9007199254740992.0, 1.0, -1.0, 2.0, 0.5, 5e-324, -5e-324][(r % 7) as usize],
                    _ => f64::from_bits(r % 0x0040_0000_0000_0000) * if r & 1 == 1 { -1.0 } else { 1.0 },
                };
                values.push(v);
                sum.add(v);
            }
            let want = fsum(&values);
            if want.is_finite() {
                assert_eq!(sum.value().to_bits(), want.to_bits(), "{values:?}");
                assert_eq!(sum.value_from_digits(0).to_bits(), want.to_bits(), "{values:?}");
                short_ways += sum.value_from_window().is_some() as u32;
            }
        }
        assert!(short_ways > 5000, "the short way is taken often: {short_ways}");
    }

    /// A sum beyond the range of doubles travels exactly between
    /// processes (JSON has no infinity), has a finite mean, and is left
    /// out of the figures users see instead of shown as infinite.
    #[test]
    fn a_sum_beyond_the_range_of_doubles_travels_and_has_a_mean() {
        for sign in [1.0, -1.0] {
            let mut acc = Accumulator::default();
            for v in [1e308, 1.7e308, 1.5e308, 3.0] {
                acc.push(sign * v);
            }
            assert_eq!(acc.sum.value(), sign * f64::INFINITY);
            let json = serde_json::to_string(&acc).unwrap();
            assert!(json.contains("\"digits\""), "{json}");
            let back: Accumulator = serde_json::from_str(&json).unwrap();
            let digits = |s: &ExactSum| {
                let mut d = Vec::new();
                (s.to_digits(&mut d), d)
            };
            assert_eq!(digits(&back.sum), digits(&acc.sum), "the same sum, exactly");
            assert_eq!((back.count, back.min, back.max), (acc.count, acc.min, acc.max));
            assert_eq!(back.summary(), acc.summary());
            let mut less = back.clone();
            less.push(sign * -1.7e308);
            less.push(sign * -1.5e308);
            assert_eq!(less.sum.value(), sign * (1e308 + 3.0));
            let figures = acc.summary();
            assert_eq!(figures.sum, None);
            // (4.2e308 + 3) / 4, from the exact sum.
            assert_eq!(figures.mean, Some(sign * 1.05e308));
            assert_eq!(figures.count, 4);
            // The spread overflowed in Welford's update: no stddev rather than a wrong one.
            assert!(!acc.m2.is_finite());
            assert_eq!(figures.stddev, None);
        }
        // An ordinary sum still travels as a few doubles.
        let mut acc = Accumulator::default();
        acc.push(0.1);
        acc.push(0.2);
        let json = serde_json::to_string(&acc.sum).unwrap();
        assert!(json.starts_with('[') && !json.contains("digits"), "{json}");
        assert_eq!(serde_json::from_str::<ExactSum>(&json).unwrap().value(), acc.sum.value());
        assert_eq!(acc.summary().sum, Some(0.30000000000000004));
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
        assert!(parse_number(b"1.2.3").is_err());
        assert!(parse_number(b"-").is_err());
    }

    #[test]
    fn fast_decimal_parse_gives_the_same_bits_as_the_full_parser() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..200_000 {
            crate::process::xorshift(&mut x);
            let digits = (x % 15 + 1) as usize;
            let m = x % 10u64.pow(digits as u32);
            let frac = (x >> 40) as usize % (digits + 1);
            let mut text = format!("{m:0digits$}");
            if frac > 0 && frac < text.len() {
                text.insert(text.len() - frac, '.');
            }
            if x & 1 == 1 {
                text.insert(0, '-');
            }
            let want: f64 = text.parse().unwrap();
            assert_eq!(parse_number(text.as_bytes()), Ok(Some(want)), "{text}");
        }
    }

    #[test]
    fn short_decimals_parse_like_the_full_parser() {
        for text in [
            "1234", "0001", "97196.35", "244.892", "-49.5", "1.000000", "9999.999", "12345678", "0.000001", "-0.0000",
            "1.2.3", "12a4", "1.", ".123", "12.3e", "+123", " 123", "123 ", "1,23", "99999999",
        ] {
            let want = text.parse::<f64>().ok().filter(|_| !text.starts_with('+') && !text.contains(' '));
            let got = parse_plain_decimal(text.as_bytes());
            assert_eq!(got.map(f64::to_bits), want.filter(|_| got.is_some()).map(f64::to_bits), "{text}");
            assert_eq!(
                parse_number(text.as_bytes()).ok().flatten().map(f64::to_bits),
                text.trim().parse::<f64>().ok().map(f64::to_bits),
                "{text}"
            );
        }
        for (text, v) in [("97196.35", 97196.35), ("0244.892", 244.892), ("1234", 1234.0), ("12345678", 12345678.0)] {
            assert_eq!(parse_short_decimal(text.as_bytes()).map(f64::to_bits), Some(f64::to_bits(v)), "{text}");
        }
        for text in ["1.2.3", "12a4", "1.", ".123", "1,23"] {
            assert_eq!(parse_short_decimal(text.as_bytes()), None, "{text}");
        }
    }

    /// `parse_number_at` reads bytes before the field; whatever they are,
    /// it gives the same result, bit for bit, as `parse_number`.
    #[test]
    fn parse_number_at_ignores_what_precedes_the_field() {
        let alphabet = b"0123456789.-+e ,x\"";
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = |n: usize| (crate::process::xorshift(&mut x) % n as u64) as usize;
        for _ in 0..200_000 {
            let len = 1 + next(11);
            let mut buf: Vec<u8> = (0..8 + len).map(|_| alphabet[next(alphabet.len())]).collect();
            // Mostly digits, so that many fields are valid numbers.
            for b in buf[8..].iter_mut() {
                if next(3) > 0 {
                    *b = b'0' + next(10) as u8;
                }
            }
            let field = &buf[8..];
            let got = parse_number_at(&buf, 8, buf.len()).map(|v| v.map(f64::to_bits));
            let want = parse_number(field).map(|v| v.map(f64::to_bits));
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(field));
        }
    }
}

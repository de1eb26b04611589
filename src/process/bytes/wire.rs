//! The binary format of part results: what a `distex __worker scan` prints
//! on stdout and the coordinator reads back ([`encode_regions`], [`decode`]).
//!
//! JSON cost real time with thousands of regions: every accumulator's
//! floats formatted and parsed again, every region a map of column names.
//! This format is a flat little-endian layout written and read in one pass,
//! with the column names once per part and the accumulators in slot order:
//!
//! ```text
//! header   "DXPART" | version: u16 | body length: u64 | checksum: u64
//! body     records, rejected, newlines, odd_quote_records, quotes: u64
//!          flags: u8 (1 = unterminated_last, 2 = stopped)
//!          columns: u32, then each name        (a name: u32 length, UTF-8)
//!          rejects: u32, then each line: u64, reason
//!          regions: u32, then each name, records: u64, and per column:
//!            count: u64, flags: u8 (1 = min, 2 = max, 4 = negative sum),
//!            [min: f64] [max: f64] mean: f64, m2: f64,
//!            sum: lo: u8, n: u8, n digits: u32 (see ExactSum::to_digits)
//! ```
//!
//! Everything is exact: floats travel as their bits, the exact sum as its
//! integer digits. The header makes a truncated, corrupt or foreign output
//! an error that names what is wrong, never a wrong result: the length
//! catches truncation, the checksum corruption, and the reader checks
//! every count against the bytes left.

use super::merge::Regions;
use crate::process::stats::region_columns::Finished;
use crate::process::stats::{Accumulator, ExactSum, Figures, MAX_DIGITS};

/// What a scan worker prints, in this format.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScanResult {
    pub(crate) regions: Regions,
    pub(crate) records: u64,
    pub(crate) rejected: u64,
    /// The first rejects: line relative to the range (1 = its first line), reason.
    pub(crate) rejects: Vec<(u64, String)>,
    /// Line breaks in the range.
    pub(crate) newlines: u64,
    /// Records with an odd number of quotes: boundaries cannot be trusted.
    pub(crate) odd_quote_records: u64,
    /// Quote characters in the range (CSV): every cut must have an even
    /// number before it in its file, or it did not fall on a record boundary.
    pub(crate) quotes: u64,
    /// The last record was ended by the end of the range, not a line break.
    pub(crate) unterminated_last: bool,
    /// Stopped early because of `max_rejects`.
    pub(crate) stopped: bool,
}

const MAGIC: &[u8; 6] = b"DXPART";
const VERSION: u16 = 1;
const HEADER: usize = 6 + 2 + 8 + 8;

/// The bytes a scan worker prints for `result`.
#[cfg(test)]
pub(crate) fn encode(result: &ScanResult) -> Vec<u8> {
    let regions = &result.regions;
    encode_regions(result, &regions.columns, regions.len(), |r| {
        (regions.names[r].as_str(), regions.records[r], regions.accs(r).iter())
    })
}

/// `encode` of `head` (all but its regions) and `n` regions, each given
/// by `region(r)` as its name, records and accumulators in column order:
/// a scan worker encodes its regions straight from its running statistics,
/// without building a [`Regions`] table of thousands of them first.
pub(crate) fn encode_regions<'a, E: Encode, A: Iterator<Item = E>>(
    head: &ScanResult,
    columns: &[String],
    n: usize,
    region: impl Fn(usize) -> (&'a str, u64, A),
) -> Vec<u8> {
    let width = columns.len();
    // About 60 bytes per accumulator: allocate once.
    let mut w = Writer(Vec::with_capacity(HEADER + 256 + n * (32 + 60 * width)));
    w.0.extend_from_slice(&[0; HEADER]);
    for n in [head.records, head.rejected, head.newlines, head.odd_quote_records, head.quotes] {
        w.u64(n);
    }
    w.u8(head.unterminated_last as u8 | (head.stopped as u8) << 1);
    w.u32(width as u32);
    for c in columns {
        w.str(c);
    }
    w.u32(head.rejects.len() as u32);
    for (line, reason) in &head.rejects {
        w.u64(*line);
        w.str(reason);
    }
    w.u32(n as u32);
    let mut digits = Vec::with_capacity(MAX_DIGITS);
    for r in 0..n {
        let (name, records, accs) = region(r);
        w.str(name);
        w.u64(records);
        for acc in accs {
            w.accumulator(&acc, &mut digits);
        }
    }
    let mut out = w.0;
    let body_len = (out.len() - HEADER) as u64;
    let sum = checksum(&out[HEADER..]);
    out[..6].copy_from_slice(MAGIC);
    out[6..8].copy_from_slice(&VERSION.to_le_bytes());
    out[8..16].copy_from_slice(&body_len.to_le_bytes());
    out[16..24].copy_from_slice(&sum.to_le_bytes());
    out
}

/// Reads what a scan worker printed; `Err` says what is wrong with it.
pub(crate) fn decode(bytes: &[u8]) -> Result<ScanResult, String> {
    if bytes.len() < HEADER || &bytes[..6] != MAGIC {
        return Err(format!("it is not a part result (it starts with {})", preview(bytes)));
    }
    let version = u16::from_le_bytes([bytes[6], bytes[7]]);
    if version != VERSION {
        return Err(format!("it is in format version {version}, this distex reads version {VERSION}"));
    }
    let body_len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let body = &bytes[HEADER..];
    if body.len() as u64 != body_len {
        return Err(format!("it is {} bytes long where its header announces {body_len} (truncated?)", body.len()));
    }
    if checksum(body) != u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes")) {
        return Err("its checksum does not match (corrupted on the way)".to_string());
    }
    let mut r = Reader { bytes: body, pos: 0 };
    let result = read_result(&mut r).map_err(|e| format!("{e} at byte {} of its body", r.pos))?;
    if r.pos != body.len() {
        return Err(format!("{} unexpected bytes follow it", body.len() - r.pos));
    }
    Ok(result)
}

fn read_result(r: &mut Reader<'_>) -> Result<ScanResult, String> {
    let mut out = ScanResult {
        records: r.u64()?,
        rejected: r.u64()?,
        newlines: r.u64()?,
        odd_quote_records: r.u64()?,
        quotes: r.u64()?,
        ..ScanResult::default()
    };
    let flags = r.u8()?;
    if flags > 3 {
        return Err(format!("unknown flags {flags:#x}"));
    }
    (out.unterminated_last, out.stopped) = (flags & 1 != 0, flags & 2 != 0);
    let width = r.count(4)?;
    let columns = (0..width).map(|_| r.string()).collect::<Result<Vec<_>, _>>()?;
    let rejects = r.count(12)?;
    out.rejects = (0..rejects).map(|_| Ok((r.u64()?, r.string()?))).collect::<Result<_, String>>()?;
    // A region takes at least 12 bytes, and 27 per column (an empty one).
    let n = r.count(12 + 27 * width)?;
    let mut regions = Regions {
        columns,
        names: Vec::with_capacity(n),
        records: Vec::with_capacity(n),
        accs: Vec::with_capacity(n * width),
    };
    let mut digits = Vec::with_capacity(MAX_DIGITS);
    for _ in 0..n {
        regions.names.push(r.string()?);
        regions.records.push(r.u64()?);
        for _ in 0..width {
            regions.accs.push(r.accumulator(&mut digits)?);
        }
    }
    out.regions = regions;
    Ok(out)
}

/// An accumulator as the format carries it: an [`Accumulator`], or a scan
/// worker's running statistics read without building one.
pub(crate) trait Encode {
    /// Its figures but the sum.
    fn figures(&self) -> Figures;
    /// Its exact sum as [`ExactSum::to_digits`] gives it.
    fn sum_digits(&self, out: &mut Vec<u32>) -> (bool, usize);
}

impl Encode for Finished<'_> {
    fn figures(&self) -> Figures {
        Finished::figures(self)
    }

    fn sum_digits(&self, out: &mut Vec<u32>) -> (bool, usize) {
        Finished::sum_digits(self, out)
    }
}

impl Encode for &Accumulator {
    fn figures(&self) -> Figures {
        Accumulator::figures(self)
    }

    fn sum_digits(&self, out: &mut Vec<u32>) -> (bool, usize) {
        self.sum.to_digits(out)
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }

    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn accumulator(&mut self, acc: &impl Encode, digits: &mut Vec<u32>) {
        let (negative, lo) = acc.sum_digits(digits);
        let Figures { count, min, max, mean, m2 } = acc.figures();
        self.u64(count);
        self.u8(min.is_some() as u8 | (max.is_some() as u8) << 1 | (negative as u8) << 2);
        for v in [min, max].into_iter().flatten() {
            self.f64(v);
        }
        self.f64(mean);
        self.f64(m2);
        self.u8(lo as u8);
        self.u8(digits.len() as u8);
        for &d in digits.iter() {
            self.u32(d);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let b = self.bytes.get(self.pos..self.pos + N).ok_or("it ends early")?;
        self.pos += N;
        Ok(b.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take()?))
    }

    /// A float, bit for bit (a mean or M2 of huge values can overflow).
    fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// A value of the data: finite, as the parser accepts no other.
    fn value(&mut self) -> Result<f64, String> {
        let v = self.f64()?;
        if v.is_finite() { Ok(v) } else { Err(format!("a minimum or maximum that is not finite ({v})")) }
    }

    /// A count of items taking at least `size` bytes each, checked against
    /// the bytes left (so a corrupt count cannot ask for a huge allocation).
    fn count(&mut self, size: usize) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n.saturating_mul(size) > self.bytes.len() - self.pos {
            return Err(format!("a count of {n} items that do not fit in what is left"));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.count(1)?;
        let s = std::str::from_utf8(&self.bytes[self.pos..self.pos + n]).map_err(|_| "a name that is not UTF-8")?;
        self.pos += n;
        Ok(s.to_string())
    }

    fn accumulator(&mut self, digits: &mut Vec<u32>) -> Result<Accumulator, String> {
        let count = self.u64()?;
        let flags = self.u8()?;
        if flags > 7 {
            return Err(format!("unknown accumulator flags {flags:#x}"));
        }
        let min = if flags & 1 != 0 { Some(self.value()?) } else { None };
        let max = if flags & 2 != 0 { Some(self.value()?) } else { None };
        let (mean, m2) = (self.f64()?, self.f64()?);
        let lo = self.u8()? as usize;
        let n = self.u8()? as usize;
        digits.clear();
        for _ in 0..n {
            digits.push(self.u32()?);
        }
        let sum = ExactSum::from_digits(flags & 4 != 0, lo, digits).ok_or("a sum out of range")?;
        Ok(Accumulator { count, sum, min, max, mean, m2 })
    }
}

/// A Fletcher-style checksum of 64-bit words: two additions per 8 bytes,
/// so it costs far less than reading the result does.
fn checksum(bytes: &[u8]) -> u64 {
    let (mut a, mut b) = (0u64, 0u64);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        a = a.wrapping_add(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        b = b.wrapping_add(a);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    a = a.wrapping_add(u64::from_le_bytes(tail) ^ bytes.len() as u64);
    b = b.wrapping_add(a);
    a ^ b.rotate_left(32)
}

/// The first bytes of an unreadable output, as text when they are.
fn preview(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "nothing (it printed nothing)".to_string();
    }
    let head = &bytes[..bytes.len().min(40)];
    match std::str::from_utf8(head) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("bytes {head:02x?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A result with awkward contents: big, tiny, negative and cancelling
    /// sums, a variance that overflows, an empty column, non-ASCII names,
    /// rejects and flags.
    fn sample() -> ScanResult {
        let columns = vec!["qty".to_string(), "prix €".to_string(), "empty".to_string()];
        let series: [&[f64]; 4] = [
            &[1.5, -2.25, 97196.35, 0.1],
            &[1.7e308, -1.7e308, 1e307, 5e-324, -0.0],
            &[-1e-300, -3.0, -7.5e20],
            &[0.1, -0.1, 1e16, -1e16],
        ];
        let mut regions = Regions { columns, ..Regions::default() };
        for (r, values) in series.iter().enumerate() {
            regions.names.push(["north", "süd", "", "a,\"b\"\n"][r].to_string());
            regions.records.push(values.len() as u64 + 3);
            for slot in 0..3 {
                let mut acc = Accumulator::default();
                if slot < 2 {
                    values.iter().for_each(|&v| acc.push(v * [1.0, 0.5][slot]));
                }
                regions.accs.push(acc);
            }
        }
        ScanResult {
            regions,
            records: 19,
            rejected: 2,
            rejects: vec![(3, "region is empty".into()), (17, "qty: \"x\" is not a number".into())],
            newlines: 21,
            odd_quote_records: 0,
            quotes: 8,
            unterminated_last: true,
            stopped: false,
        }
    }

    #[test]
    fn a_result_comes_back_exactly() {
        let result = sample();
        let back = decode(&encode(&result)).unwrap();
        assert_eq!(back.regions.names, result.regions.names);
        assert_eq!(back.regions.columns, result.regions.columns);
        assert_eq!(back.regions.records, result.regions.records);
        for (a, b) in back.regions.accs.iter().zip(&result.regions.accs) {
            // The sum's representation may differ; its value may not.
            assert_eq!((a.count, a.min, a.max), (b.count, b.min, b.max));
            assert_eq!((a.mean.to_bits(), a.m2.to_bits()), (b.mean.to_bits(), b.m2.to_bits()));
            assert_eq!(a.summary(), b.summary());
            assert_eq!(a.sum.value().to_bits(), b.sum.value().to_bits());
        }
        assert_eq!(back.regions.accs[3].sum.value(), 1e307);
        assert!(
            !back.regions.accs[3].mean.is_finite(),
            "an overflowing mean travels as it is (checked bit for bit above)"
        );
        assert_eq!(
            (back.records, back.rejected, back.newlines, back.quotes, back.unterminated_last, back.stopped),
            (19, 2, 21, 8, true, false)
        );
        assert_eq!(back.rejects, result.rejects);
    }

    /// Sums survive the trip whatever their sign and size, and still
    /// merge exactly afterwards.
    #[test]
    fn sums_travel_as_exact_digits() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut digits = Vec::new();
        for round in 0..2000 {
            let mut sum = ExactSum::default();
            let mut values = Vec::new();
            for _ in 0..1 + round % 7 {
                crate::process::xorshift(&mut x);
                let v = f64::from_bits(x & !(0x7ff << 52) | ((x >> 20) % 2047) << 52);
                values.push(v);
                sum.add(v);
            }
            let (negative, lo) = sum.to_digits(&mut digits);
            let back = ExactSum::from_digits(negative, lo, &digits).unwrap();
            assert_eq!(back.value().to_bits(), sum.value().to_bits(), "{values:?}");
            let mut merged = back.clone();
            merged.merge(&sum);
            let mut twice = sum.clone();
            twice.merge(&sum);
            assert_eq!(merged.value().to_bits(), twice.value().to_bits(), "{values:?}");
        }
    }

    /// Whatever happens to the bytes, decoding says so instead of
    /// returning a wrong result.
    /// The smallest results: no regions, or one whose columns are all
    /// empty (accumulators without min or max).
    #[test]
    fn minimal_results_come_back() {
        let empty = ScanResult {
            regions: Regions { columns: vec!["v".into()], ..Regions::default() },
            ..ScanResult::default()
        };
        assert_eq!(decode(&encode(&empty)).unwrap().regions, empty.regions);
        let mut one = empty.clone();
        one.regions.names.push(String::new());
        one.regions.records.push(1);
        one.regions.accs.push(Accumulator::default());
        assert_eq!(decode(&encode(&one)).unwrap().regions, one.regions);
    }

    #[test]
    fn damaged_results_are_refused_with_a_reason() {
        let bytes = encode(&sample());
        let err = |b: &[u8]| decode(b).map(|_| ()).unwrap_err();
        assert!(err(b"this is not JSON\n").contains("not a part result"), "{}", err(b"this is not JSON\n"));
        assert!(err(b"").contains("printed nothing"));
        assert!(err(b"{\"regions\":{}}").contains("not a part result"));
        for cut in [HEADER - 1, HEADER, bytes.len() / 2, bytes.len() - 1] {
            assert!(!err(&bytes[..cut]).is_empty(), "cut at {cut}");
        }
        assert!(err(&bytes[..bytes.len() - 1]).contains("truncated"));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(err(&longer).contains("header announces"));
        for at in (HEADER..bytes.len()).step_by(7) {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            assert!(err(&flipped).contains("checksum"), "byte {at}");
        }
        let mut future = bytes.clone();
        future[6] = 9;
        assert!(err(&future).contains("version 9"));
    }
}

//! Parsing numeric fields fast: plain decimals of up to 19 digits are
//! read eight bytes at a time, anything else by the standard library, so
//! both paths agree on what is a number.

/// Parses a numeric field: optional surrounding spaces, finite numbers only.
/// Empty fields are missing values (`Ok(None)`), not errors.
#[inline]
#[allow(clippy::result_unit_err)]
pub(crate) fn parse_number(field: &[u8]) -> Result<Option<f64>, ()> {
    if let Some(v) = parse_plain_decimal(field) {
        return Ok(Some(v));
    }
    parse_number_slow(field)
}

/// Powers of ten that are exact in f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// `-?digits(.digits)?` with at most 15 significant digits: the mantissa
/// and the power of ten are both exact, so one IEEE division gives the
/// correctly rounded value (Clinger's fast path), the same bits as a full
/// decimal parser. Anything else returns `None` for the slow path.
#[inline]
pub(super) fn parse_plain_decimal(b: &[u8]) -> Option<f64> {
    let (neg, d) = match b.first()? {
        b'-' => (true, &b[1..]),
        _ => (false, b),
    };
    let n = d.len();
    if n == 0 || n > 16 {
        return None;
    }
    if (4..=8).contains(&n)
        && let Some(v) = parse_short_decimal(d)
    {
        return Some(if neg { -v } else { v });
    }
    let mut mantissa: u64 = 0;
    let mut i = 0;
    while i < n {
        let c = d[i].wrapping_sub(b'0');
        if c > 9 {
            break;
        }
        mantissa = mantissa * 10 + c as u64;
        i += 1;
    }
    let int_digits = i;
    let mut frac = 0;
    if i < n {
        // Only `digits.digits` is handled here; the rest goes the slow way.
        if d[i] != b'.' || int_digits == 0 || i + 1 == n {
            return None;
        }
        i += 1;
        while i < n {
            let c = d[i].wrapping_sub(b'0');
            if c > 9 {
                return None;
            }
            mantissa = mantissa * 10 + c as u64;
            i += 1;
        }
        frac = n - int_digits - 1;
    }
    if int_digits + frac > 15 {
        return None;
    }
    let v = mantissa as f64 / POW10[frac];
    Some(if neg { -v } else { v })
}

/// Bytes of '0' in every lane.
const ZEROS: u64 = 0x3030_3030_3030_3030;

/// [`parse_plain_decimal`] of 4 to 8 bytes (no sign) without a loop: the
/// bytes go right-aligned into one word padded with '0' (which leaves the
/// value alone); then see [`decimal_word`]. `None` sends the field to the loop.
#[inline]
pub(super) fn parse_short_decimal(d: &[u8]) -> Option<f64> {
    let n = d.len();
    if !(4..=8).contains(&n) {
        return None;
    }
    // Lane k holds byte k of the padded text: lanes 8-n.. hold `d`.
    let first4 = u32::from_le_bytes(d[..4].try_into().ok()?) as u64;
    let last4 = u32::from_le_bytes(d[n - 4..].try_into().ok()?) as u64;
    let pad = 8 * (8 - n) as u32;
    let low = ((first4 << pad) | (ZEROS & ((1u64 << pad) - 1))) & 0xffff_ffff;
    decimal_word(low | (last4 << 32), n)
}

/// [`parse_number`] of `buf[s..e]` (`s < e`), reading the 8 bytes before
/// `e` so that a plain decimal of up to 8 characters after its sign takes
/// one path whatever its length, with no loop and no copy: the word is
/// loaded whole, the bytes before the field are masked to '0', and
/// `decimal_word` does the rest (when `e >= 8`; else the slow way).
#[inline(always)]
#[allow(clippy::result_unit_err)]
pub(crate) fn parse_number_at(buf: &[u8], s: usize, e: usize) -> Result<Option<f64>, ()> {
    let neg = buf[s] == b'-';
    let n = e - s - neg as usize;
    if (1..=8).contains(&n) && e >= 8 {
        let word = u64::from_le_bytes(buf[e - 8..e].try_into().expect("8 bytes"));
        let keep = u64::MAX << (8 * (8 - n));
        if let Some(v) = decimal_word((word & keep) | (ZEROS & !keep), n) {
            return Ok(Some(if neg { -v } else { v }));
        }
    }
    parse_number(&buf[s..e])
}

/// The value of a decimal of `n` characters right-aligned in `w` (lane k =
/// byte k), the lanes before it '0': the dot is found and squeezed out, all
/// eight lanes are checked to be digits, and the digits are combined
/// pairwise (SWAR). At most 8 significant digits, so one division gives
/// the correctly rounded value, the same bits as the loop. `None` when the
/// text is not `digits` or `digits.digits`.
#[inline(always)]
fn decimal_word(mut w: u64, n: usize) -> Option<f64> {
    // The first '.' lane, if any (exact for the lowest zero lane).
    let t = w ^ 0x2e2e_2e2e_2e2e_2e2e;
    let dots = t.wrapping_sub(0x0101_0101_0101_0101) & !t & 0x8080_8080_8080_8080;
    let mut frac = 0;
    if dots != 0 {
        let p = (dots.trailing_zeros() / 8) as usize;
        // At least one digit before the dot and one after.
        if p <= 8 - n || p == 7 {
            return None;
        }
        frac = 7 - p;
        // Lanes ..p move up one lane over the dot; lane 0 becomes '0'.
        let below = (1u64 << (8 * (p + 1))) - 1;
        w = ((w << 8) & below) | (w & !below) | 0x30;
    }
    let high = 0xf0f0_f0f0_f0f0_f0f0;
    if w & high != ZEROS || w.wrapping_add(0x0606_0606_0606_0606) & high != ZEROS {
        return None;
    }
    let mut v = w - ZEROS;
    v = (v.wrapping_mul(10) + (v >> 8)) & 0x00ff_00ff_00ff_00ff;
    v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_ffff_0000_ffff;
    v = v.wrapping_mul(10000) + (v >> 32);
    let mantissa = (v & 0xffff_ffff) as f64;
    // An integer needs no division (the branch is as regular as the column).
    Some(if frac == 0 { mantissa } else { mantissa / POW10[frac] })
}

fn parse_number_slow(field: &[u8]) -> Result<Option<f64>, ()> {
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

//! Structural indexing of CSV and TSV text, 64 bytes at a time: where every
//! field and record ends, found without looking at the bytes one by one.
//!
//! This is the first stage of a scan worker (the second, in
//! [`super::scan`], reads fields at the offsets found here). For each
//! 64-byte block, one SIMD compare per byte class gives a bit mask of the
//! quotes, delimiters, line breaks and carriage returns in it. Whether a
//! byte lies inside a quoted field is the parity of the quotes before it,
//! which is the *prefix XOR* of the quote mask (bit i = XOR of bits 0..=i),
//! carried from block to block. A delimiter or line break counts only
//! outside quotes. RFC 4180 doubles a quote inside a quoted field (`""`),
//! and a doubled quote flips the parity twice, so it changes nothing.
//!
//! The buffer must start on a record boundary (outside quotes). The index
//! is only as good as the quoting: parity describes valid CSV, and the
//! second stage checks every record holding a quote before trusting it
//! (see `scan::regular_quotes`); anything unusual goes to csv-core.

/// Offsets (into the indexed buffer) found by [`index`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    /// Every delimiter and record-ending line break outside quotes, in order.
    pub(crate) seps: Vec<u32>,
    /// For every record-ending line break: its position in `seps`.
    pub(crate) records: Vec<u32>,
    /// Every quote and carriage return, inside quotes or not, and every
    /// line break inside quotes.
    pub(crate) specials: Vec<u32>,
    /// The start of every 64-byte block holding a byte >= 0x80.
    pub(crate) high_blocks: Vec<u32>,
}

impl Index {
    fn clear(&mut self) {
        self.seps.clear();
        self.records.clear();
        self.specials.clear();
        self.high_blocks.clear();
    }
}

/// Bytes a buffer must have after the indexed range: whole blocks are
/// loaded, and bytes past `to` are masked out.
pub(crate) const PADDING: usize = 64;

/// Indexes `buf[from..to]` (offsets recorded are into `buf`). `buf` must
/// hold at least [`PADDING`] bytes after `to`. `quoting` is false for TSV,
/// where a quote is an ordinary byte.
pub(crate) fn index(buf: &[u8], from: usize, to: usize, delim: u8, quoting: bool, out: &mut Index) {
    assert!(to + PADDING <= buf.len() && from <= to && to <= u32::MAX as usize, "index needs padding");
    out.clear();
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let bits = has!("bmi1") && has!("popcnt");
        // SAFETY (both): the features are available (checked here); bounds asserted above.
        if bits && has!("avx512bw") {
            unsafe { avx512::index(buf, from, to, delim, quoting, out) };
            return;
        }
        if bits && has!("avx2") {
            unsafe { avx2::index(buf, from, to, delim, quoting, out) };
            return;
        }
    }
    index_scalar(buf, from, to, delim, quoting, out);
}

/// Bit i = XOR of bits 0..=i of `x`.
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// Masks of one block of up to 64 bytes.
#[derive(Clone, Copy)]
struct Block {
    quotes: u64,
    delims: u64,
    newlines: u64,
    returns: u64,
    high: u64,
}

/// Carries the quote parity from block to block and records what the block holds.
struct Builder<'a> {
    out: &'a mut Index,
    /// All ones while inside a quoted field at the end of the last block.
    inside: u64,
}

impl Builder<'_> {
    /// Indexes `buf[from..to]`, 64 bytes at a time: `masks(at)` gives the
    /// byte classes of the 64 bytes at `at` (which may run into the
    /// padding: the bits past `to` are cleared here, and quotes when
    /// `quoting` is off).
    #[inline(always)]
    fn run(&mut self, buf: &[u8], from: usize, to: usize, quoting: bool, mut masks: impl FnMut(usize) -> Block) {
        let mut at = from;
        while at < to {
            // The hardware prefetcher stops at page boundaries: ask for the
            // bytes a few blocks ahead (a hint; it never faults).
            if let Some(ahead) = buf.get(at + PREFETCH) {
                crate::process::prefetch::prefetch(ahead);
            }
            let b = masks(at);
            let v = valid(at, to);
            let quotes = if quoting { b.quotes & v } else { 0 };
            let b = Block {
                quotes,
                delims: b.delims & v,
                newlines: b.newlines & v,
                returns: b.returns & v,
                high: b.high & v,
            };
            self.block(at, b);
            at += 64;
        }
    }

    #[inline(always)]
    fn block(&mut self, at: usize, b: Block) {
        let inside = prefix_xor(b.quotes) ^ self.inside;
        self.inside = 0u64.wrapping_sub(inside >> 63);
        let seps = (b.delims | b.newlines) & !inside;
        let ends = b.newlines & !inside;
        let before = self.out.seps.len() as u32;
        push_bits(&mut self.out.seps, at, seps);
        push_record_ends(&mut self.out.records, before, seps, ends);
        push_bits(&mut self.out.specials, at, b.quotes | b.returns | (b.newlines & inside));
        if b.high != 0 {
            self.out.high_blocks.push(at as u32);
        }
    }
}

/// Appends `at + i` for every set bit i of `bits`, in order.
#[inline(always)]
fn push_bits(out: &mut Vec<u32>, at: usize, bits: u64) {
    push_each::<8>(out, bits, |bit| at as u32 + bit.trailing_zeros());
}

/// Appends, for every record-ending line break (a bit of `ends`), its
/// position in `seps` (`before` entries precede the block's).
#[inline(always)]
fn push_record_ends(out: &mut Vec<u32>, before: u32, seps: u64, ends: u64) {
    push_each::<2>(out, ends, |bit| before + (seps & bit.wrapping_sub(1)).count_ones());
}

/// Appends `value(bit)` for every set bit of `bits`, lowest first.
///
/// Written without a loop per bit, whose trip count the CPU could not
/// predict: `ALWAYS` values are always written (those past the real count
/// are garbage beyond the new length; `value` then gets 0), and only the
/// rare block with more set bits loops.
#[inline(always)]
fn push_each<const ALWAYS: usize>(out: &mut Vec<u32>, mut bits: u64, value: impl Fn(u64) -> u32) {
    if bits == 0 {
        return;
    }
    let n = bits.count_ones() as usize;
    out.reserve(64);
    let len = out.len();
    let spare = out.spare_capacity_mut();
    let mut write = |slot: &mut std::mem::MaybeUninit<u32>| {
        let bit = bits & bits.wrapping_neg();
        slot.write(value(bit));
        bits ^= bit;
    };
    spare[..ALWAYS].iter_mut().for_each(&mut write);
    if n > ALWAYS {
        spare[ALWAYS..n].iter_mut().for_each(&mut write);
    }
    // SAFETY: the `n` slots after the old length were written above.
    unsafe { out.set_len(len + n) };
}

/// How far ahead of the block being indexed its bytes are fetched.
const PREFETCH: usize = 2048;

/// Bits of the block at `at` that lie before `to`.
#[inline(always)]
fn valid(at: usize, to: usize) -> u64 {
    if to - at >= 64 { u64::MAX } else { (1u64 << (to - at)) - 1 }
}

/// [`index`] without SIMD: the same masks, built a byte at a time.
fn index_scalar(buf: &[u8], from: usize, to: usize, delim: u8, quoting: bool, out: &mut Index) {
    Builder { out, inside: 0 }.run(buf, from, to, quoting, |at| {
        let mut b = Block { quotes: 0, delims: 0, newlines: 0, returns: 0, high: 0 };
        for (i, &c) in buf[at..at + 64].iter().enumerate() {
            let bit = 1u64 << i;
            match c {
                b'"' if quoting => b.quotes |= bit,
                b'\n' => b.newlines |= bit,
                b'\r' => b.returns |= bit,
                _ if c == delim => b.delims |= bit,
                _ if c >= 0x80 => b.high |= bit,
                _ => {}
            }
        }
        b
    });
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Block, Builder, Index};

    /// The mask of bytes equal to `c` in the 64 bytes `lo`, `hi`.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn eq(lo: __m256i, hi: __m256i, c: __m256i) -> u64 {
        let l = _mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, c)) as u32 as u64;
        let h = _mm256_movemask_epi8(_mm256_cmpeq_epi8(hi, c)) as u32 as u64;
        l | (h << 32)
    }

    #[target_feature(enable = "avx2,bmi1,popcnt")]
    pub(crate) unsafe fn index(buf: &[u8], from: usize, to: usize, delim: u8, quoting: bool, out: &mut Index) {
        let (vq, vd) = (_mm256_set1_epi8(b'"' as i8), _mm256_set1_epi8(delim as i8));
        let (vn, vr) = (_mm256_set1_epi8(b'\n' as i8), _mm256_set1_epi8(b'\r' as i8));
        Builder { out, inside: 0 }.run(buf, from, to, quoting, |at| {
            // SAFETY: `run` asks for blocks that start before `to`, and the
            // caller guarantees 64 bytes of padding after `to`.
            let (lo, hi) = unsafe {
                let p = buf.as_ptr().add(at);
                (_mm256_loadu_si256(p as *const __m256i), _mm256_loadu_si256(p.add(32) as *const __m256i))
            };
            Block {
                quotes: eq(lo, hi, vq),
                delims: eq(lo, hi, vd),
                newlines: eq(lo, hi, vn),
                returns: eq(lo, hi, vr),
                high: _mm256_movemask_epi8(lo) as u32 as u64 | ((_mm256_movemask_epi8(hi) as u32 as u64) << 32),
            }
        });
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Block, Builder, Index};

    /// [`super::index`] with one 64-byte compare per byte class, straight into a mask.
    #[target_feature(enable = "avx512f,avx512bw,bmi1,popcnt")]
    pub(crate) unsafe fn index(buf: &[u8], from: usize, to: usize, delim: u8, quoting: bool, out: &mut Index) {
        let (vq, vd) = (_mm512_set1_epi8(b'"' as i8), _mm512_set1_epi8(delim as i8));
        let (vn, vr) = (_mm512_set1_epi8(b'\n' as i8), _mm512_set1_epi8(b'\r' as i8));
        Builder { out, inside: 0 }.run(buf, from, to, quoting, |at| {
            // SAFETY: `run` asks for blocks that start before `to`, and the
            // caller guarantees 64 bytes of padding after `to`.
            let v = unsafe { _mm512_loadu_si512(buf.as_ptr().add(at) as *const __m512i) };
            Block {
                quotes: _mm512_cmpeq_epi8_mask(v, vq),
                delims: _mm512_cmpeq_epi8_mask(v, vd),
                newlines: _mm512_cmpeq_epi8_mask(v, vn),
                returns: _mm512_cmpeq_epi8_mask(v, vr),
                high: _mm512_movepi8_mask(v),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every implementation this CPU can run gives the same index.
    #[test]
    fn every_implementation_agrees() {
        let text = b"a,\"b,c\",d\r\n\"x\ny\",\"q\"\"r\"\n\xc3\xa9,\"\",,\n".repeat(37);
        let mut buf = text.clone();
        buf.resize(text.len() + PADDING, b',');
        let mut want = Index::default();
        index_scalar(&buf, 3, text.len(), b',', true, &mut want);
        #[cfg(target_arch = "x86_64")]
        for (name, available) in [
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("avx512", std::arch::is_x86_feature_detected!("avx512bw")),
        ] {
            if !available {
                continue;
            }
            let mut got = Index::default();
            // SAFETY: the feature is available; the buffer has its padding.
            unsafe {
                if name == "avx2" {
                    avx2::index(&buf, 3, text.len(), b',', true, &mut got);
                } else {
                    avx512::index(&buf, 3, text.len(), b',', true, &mut got);
                }
            }
            assert_eq!(got, want, "{name}");
        }
    }

    fn indexed(text: &[u8], scalar: bool) -> Index {
        let mut buf = text.to_vec();
        buf.resize(text.len() + PADDING, b'"');
        let mut out = Index::default();
        if scalar {
            index_scalar(&buf, 0, text.len(), b',', true, &mut out);
        } else {
            index(&buf, 0, text.len(), b',', true, &mut out);
        }
        out
    }

    #[test]
    fn separators_outside_quotes_only() {
        let text = b"a,\"b,c\",d\n\"x\ny\",\"q\"\"r\"\n";
        let idx = indexed(text, false);
        // a , "b,c" , d \n "x\ny" , "q""r" \n
        assert_eq!(idx.seps, vec![1, 7, 9, 15, 22]);
        assert_eq!(idx.records, vec![2, 4]);
        assert_eq!(idx.specials.len(), 9, "8 quotes and the line break inside quotes");
        assert!(idx.high_blocks.is_empty());
    }

    /// The SIMD and scalar indexes agree on random CSV-like text, across
    /// block boundaries and with padding that would matter if read.
    #[test]
    fn simd_matches_scalar() {
        let alphabet = b"ab,,\"\n\r\xc3\xa9x";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for len in [0usize, 1, 63, 64, 65, 127, 200, 1000] {
            let text: Vec<u8> = (0..len)
                .map(|_| alphabet[(crate::process::xorshift(&mut x) % alphabet.len() as u64) as usize])
                .collect();
            assert_eq!(indexed(&text, false), indexed(&text, true), "len {len}");
        }
    }
}

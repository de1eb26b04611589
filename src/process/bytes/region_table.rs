//! The region table of a scan worker: raw key bytes to a dense region
//! number, looked up once per record.
//!
//! An open-addressing table (linear probing, at most half full) whose slots
//! hold the first 16 bytes of the key inline, its length and its region
//! number. Most keys are 16 bytes or shorter, so a lookup touches one slot
//! and compares two words, without following a pointer to the key;
//! longer keys compare their tail in an arena. With 10,000 regions the
//! slots take about 770 KB, far less than a `HashMap<Vec<u8>, _>` whose
//! every key is a separate allocation.

/// A key's hash and head words, computed once to fetch its slot ahead and
/// to look it up a few records later.
#[derive(Clone, Copy, Default)]
pub(crate) struct HashedKey {
    hash: u64,
    head: [u64; 2],
}

/// Raw key bytes to region numbers `0..len()`, in order of first sight.
pub(crate) struct RegionTable {
    slots: Vec<Slot>,
    /// Bytes past the 16th of every longer key, back to back.
    tails: Vec<u8>,
    /// `(start, len)` in `tails` of each region's key tail.
    tail_spans: Vec<(usize, usize)>,
    len: usize,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    head: [u64; 2],
    /// Key length + 1; 0 marks an empty slot.
    len_plus_one: u32,
    region: u32,
}

impl Default for RegionTable {
    fn default() -> Self {
        RegionTable { slots: vec![Slot::default(); 16], tails: Vec::new(), tail_spans: Vec::new(), len: 0 }
    }
}

/// The first 16 bytes of `key`, zero-padded, as two words.
#[inline]
fn head(key: &[u8]) -> [u64; 2] {
    let mut buf = [0u8; 16];
    let n = key.len().min(16);
    buf[..n].copy_from_slice(&key[..n]);
    [
        u64::from_le_bytes(buf[..8].try_into().expect("8 bytes")),
        u64::from_le_bytes(buf[8..].try_into().expect("8 bytes")),
    ]
}

/// [`head`] of the key `buf[s..e]` with one 16-byte read: `buf` must hold
/// 16 bytes from `s` (the scan buffer's padding guarantees it).
#[inline(always)]
fn head_at(buf: &[u8], s: usize, e: usize) -> [u64; 2] {
    let n = e - s;
    if n >= 16 {
        return head(&buf[s..e]);
    }
    let word = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
    let mask = |bytes: usize| if bytes >= 8 { u64::MAX } else { (1u64 << (8 * bytes)) - 1 };
    [word(s) & mask(n), word(s + 8) & mask(n.saturating_sub(8))]
}

/// Mixes the head words, the length and any tail into a 64-bit hash whose
/// high bits pick the slot.
#[inline]
fn hash(head: [u64; 2], key: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (head[0] ^ (key.len() as u64).rotate_left(56)).wrapping_mul(K);
    h = (h.rotate_left(29) ^ head[1]).wrapping_mul(K);
    if key.len() > 16 {
        for chunk in key[16..].chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            h = (h.rotate_left(29) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
    }
    h ^ (h >> 31)
}

impl RegionTable {
    /// Number of regions seen.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The region number of `key`, if it was seen.
    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<usize> {
        self.find(head(key), key)
    }

    /// [`RegionTable::get`] of the key `buf[s..e]`, loading its head with
    /// one 16-byte read: `buf` must hold 16 bytes from `s` (the scan
    /// buffer's padding guarantees it), whatever the key's length.
    #[inline(always)]
    pub(crate) fn get_at(&self, buf: &[u8], s: usize, e: usize) -> Option<usize> {
        self.find(head_at(buf, s, e), &buf[s..e])
    }

    /// The key `buf[s..e]` hashed, for [`RegionTable::prefetch_hashed`]
    /// now and [`RegionTable::get_hashed`] later (`buf` as for `get_at`).
    #[inline(always)]
    pub(crate) fn hash_at(&self, buf: &[u8], s: usize, e: usize) -> HashedKey {
        let head = head_at(buf, s, e);
        HashedKey { hash: hash(head, &buf[s..e]), head }
    }

    /// Starts loading the slot where the lookup of `key` will look first.
    #[inline(always)]
    pub(crate) fn prefetch_hashed(&self, key: &HashedKey) {
        crate::process::prefetch::prefetch(&self.slots[(key.hash as usize) & (self.slots.len() - 1)]);
    }

    /// [`RegionTable::get`] of `key`, hashed as `hashed` (by `hash_at`,
    /// perhaps before the table grew: the slot is placed now).
    #[inline(always)]
    pub(crate) fn get_hashed(&self, hashed: &HashedKey, key: &[u8]) -> Option<usize> {
        self.find_from(hashed.hash, hashed.head, key)
    }

    /// The region of `key`, whose head words are `h`.
    #[inline(always)]
    fn find(&self, h: [u64; 2], key: &[u8]) -> Option<usize> {
        self.find_from(hash(h, key), h, key)
    }

    /// [`RegionTable::find`] with the key's hash.
    #[inline(always)]
    fn find_from(&self, hash: u64, h: [u64; 2], key: &[u8]) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let mut i = (hash as usize) & mask;
        loop {
            let slot = self.slots[i];
            if slot.len_plus_one == 0 {
                return None;
            }
            if slot.head == h && slot.len_plus_one as usize == key.len() + 1 && self.tail_matches(slot.region, key) {
                return Some(slot.region as usize);
            }
            i = (i + 1) & mask;
        }
    }

    /// The region number of `key`, and whether it was new.
    #[inline]
    pub(crate) fn get_or_insert(&mut self, key: &[u8]) -> (usize, bool) {
        let h = head(key);
        let mask = self.slots.len() - 1;
        let mut i = (hash(h, key) as usize) & mask;
        loop {
            let slot = self.slots[i];
            if slot.len_plus_one == 0 {
                return (self.insert_at(i, h, key), true);
            }
            if slot.head == h && slot.len_plus_one as usize == key.len() + 1 && self.tail_matches(slot.region, key) {
                return (slot.region as usize, false);
            }
            i = (i + 1) & mask;
        }
    }

    fn tail_matches(&self, region: u32, key: &[u8]) -> bool {
        if key.len() <= 16 {
            return true;
        }
        let (start, len) = self.tail_spans[region as usize];
        self.tails[start..start + len] == key[16..]
    }

    fn insert_at(&mut self, i: usize, h: [u64; 2], key: &[u8]) -> usize {
        let region = self.len;
        self.len += 1;
        let tail = key.get(16..).unwrap_or(&[]);
        self.tail_spans.push((self.tails.len(), tail.len()));
        self.tails.extend_from_slice(tail);
        self.slots[i] = Slot { head: h, len_plus_one: key.len() as u32 + 1, region: region as u32 };
        if self.len * 2 > self.slots.len() {
            self.grow();
        }
        region
    }

    /// Doubles the slots and re-places every key (its bytes are rebuilt
    /// from the head words and the tail).
    fn grow(&mut self) {
        let doubled = vec![Slot::default(); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        let mask = self.slots.len() - 1;
        for slot in old.into_iter().filter(|s| s.len_plus_one != 0) {
            let key = self.key(slot);
            let mut i = (hash(slot.head, &key) as usize) & mask;
            while self.slots[i].len_plus_one != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
    }

    fn key(&self, slot: Slot) -> Vec<u8> {
        let len = slot.len_plus_one as usize - 1;
        let mut key: Vec<u8> = slot.head.iter().flat_map(|w| w.to_le_bytes()).take(len.min(16)).collect();
        let (start, n) = self.tail_spans[slot.region as usize];
        key.extend_from_slice(&self.tails[start..start + n]);
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_dense_numbers_in_order_of_first_sight() {
        let mut table = RegionTable::default();
        let keys: Vec<Vec<u8>> = (0..5000)
            .map(|i| match i % 4 {
                0 => format!("r{i}").into_bytes(),
                1 => format!("a-much-longer-region-name-{i:08}").into_bytes(),
                2 => format!("{i:016}").into_bytes(),
                _ => format!("{i}\0").into_bytes(),
            })
            .collect();
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(table.get(k), None);
            assert_eq!(table.get_or_insert(k), (n, true));
            assert_eq!(table.get(k), Some(n));
        }
        for (n, k) in keys.iter().enumerate().rev() {
            assert_eq!(table.get_or_insert(k), (n, false), "{:?}", String::from_utf8_lossy(k));
        }
        // Zero padding does not make a shorter key equal a longer one.
        let mut t = RegionTable::default();
        assert_eq!(t.get_or_insert(b"ab"), (0, true));
        assert_eq!(t.get_or_insert(b"ab\0"), (1, true));
        assert_eq!(t.get_or_insert(b""), (2, true));
        assert_eq!(t.len(), 3);
    }

    /// A key hashed before the table grew is still found where it lies now.
    #[test]
    fn keys_hashed_before_the_table_grew_are_found() {
        let mut table = RegionTable::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut spans = Vec::new();
        for i in 0..300 {
            let key = if i % 2 == 0 { format!("k{i}") } else { format!("a-key-longer-than-sixteen-{i}") };
            spans.push((buf.len(), buf.len() + key.len()));
            buf.extend(key.as_bytes());
        }
        buf.extend([0u8; 16]);
        for &(s, e) in &spans[..100] {
            table.get_or_insert(&buf[s..e]);
        }
        let hashed: Vec<HashedKey> = spans.iter().map(|&(s, e)| table.hash_at(&buf, s, e)).collect();
        for &(s, e) in &spans[100..200] {
            table.get_or_insert(&buf[s..e]);
        }
        for (i, (&(s, e), key)) in spans.iter().zip(&hashed).enumerate() {
            let expected = (i < 200).then_some(i);
            assert_eq!(table.get_hashed(key, &buf[s..e]), expected, "key {i}");
            assert_eq!(table.get_at(&buf, s, e), expected, "key {i}");
        }
    }
}

//! Merging the per-region accumulators of byte-range parts on the
//! coordinator, as the parts finish.
//!
//! A part's regions are a [`Regions`] table: names in order of first sight
//! and one accumulator per region and numeric column, indexed by slot,
//! with the column names once. Merging looks each region up once in a
//! [`RegionTable`] and merges its accumulators slot by slot; maps keyed by
//! name are only built for the report, once, at the end.
//!
//! The order of merges is fixed, whatever order the parts finish in:
//! Chan's formulas for the variance are exact in theory but not in the
//! last bits of a double, so a different order could change a standard
//! deviation between two runs on the same data. [`TreeMerge`] cuts the
//! parts into contiguous runs, merges each run left to right as soon as
//! its next part is there, and merges the runs left to right at the end.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::keys::RegionTable;
use super::stats::{Accumulator, ColumnMap, RegionStats};

/// Per-region accumulators: region `r`'s accumulator of column `slot` is
/// `accs[r * columns.len() + slot]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Regions {
    /// Names of the numeric columns, in slot order.
    pub columns: Vec<String>,
    /// Region names, in order of first sight.
    pub names: Vec<String>,
    /// Records of each region.
    pub records: Vec<u64>,
    pub accs: Vec<Accumulator>,
}

impl Regions {
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The accumulators of region `r`, in slot order.
    pub fn accs(&self, r: usize) -> &[Accumulator] {
        let width = self.columns.len();
        &self.accs[r * width..(r + 1) * width]
    }

    /// Region numbers in the order of their names.
    pub fn by_name(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_unstable_by(|&a, &b| self.names[a].cmp(&self.names[b]));
        order
    }

    /// The same regions, in the order of their names. Reading thousands of
    /// regions' accumulators by name from a table in order of first sight
    /// is a cache miss each (at 10,000 regions they take 5 MB); once in
    /// order, summarising, totalling and reporting read them front to back.
    pub fn into_sorted_by_name(mut self) -> Regions {
        let order = self.by_name();
        if order.iter().enumerate().all(|(i, &r)| i == r) {
            return self;
        }
        let width = self.columns.len();
        let mut sorted = Regions {
            columns: std::mem::take(&mut self.columns),
            names: Vec::with_capacity(order.len()),
            records: Vec::with_capacity(order.len()),
            accs: Vec::with_capacity(self.accs.len()),
        };
        for (i, &r) in order.iter().enumerate() {
            // Fetched a few regions ahead: their misses overlap.
            if let Some(&ahead) = order.get(i + 4) {
                self.prefetch_accs(ahead);
            }
            sorted.names.push(std::mem::take(&mut self.names[r]));
            sorted.records.push(self.records[r]);
            sorted.accs.extend_from_slice(&self.accs[r * width..(r + 1) * width]);
        }
        sorted
    }

    /// Starts loading region `r`'s accumulators into the cache.
    fn prefetch_accs(&self, r: usize) {
        let accs = self.accs(r);
        let bytes = std::mem::size_of_val(accs);
        let start = accs.as_ptr() as *const u8;
        for offset in (0..bytes).step_by(64) {
            // SAFETY: `offset` stays within the accumulators' bytes.
            super::cache::prefetch(unsafe { &*start.add(offset) });
        }
    }

    /// The figures users see for every region, in `order`, by column name.
    pub fn summaries(&self, order: &[usize]) -> Vec<ColumnMap> {
        // The column names once, shared, in name order.
        let mut columns: Vec<(Arc<str>, usize)> =
            self.columns.iter().enumerate().map(|(slot, c)| (Arc::from(c.as_str()), slot)).collect();
        columns.sort_by(|a, b| a.0.cmp(&b.0));
        columns.dedup_by(|a, b| a.0 == b.0);
        order
            .iter()
            .map(|&r| {
                let accs = self.accs(r);
                ColumnMap::new(columns.iter().map(|(name, slot)| (name.clone(), accs[*slot].summary())).collect())
            })
            .collect()
    }

    /// The regions `order` merged into one, in that order (as
    /// `aggregate::merge_summaries` merges maps: no columns without regions).
    pub fn total(&self, order: impl IntoIterator<Item = usize>) -> RegionStats {
        let mut records = 0;
        let mut accs: Vec<Accumulator> = vec![Accumulator::default(); self.columns.len()];
        let mut any = false;
        for r in order {
            any = true;
            records += self.records[r];
            for (total, acc) in accs.iter_mut().zip(self.accs(r)) {
                total.merge(acc);
            }
        }
        let columns = if any { self.columns.iter().cloned().zip(accs).collect() } else { BTreeMap::new() };
        RegionStats { records, columns }
    }

    /// Every region by name, as maps (for tests and comparisons).
    pub fn to_map(&self) -> BTreeMap<String, RegionStats> {
        (0..self.len())
            .map(|r| {
                let columns = self.columns.iter().cloned().zip(self.accs(r).iter().cloned()).collect();
                (self.names[r].clone(), RegionStats { records: self.records[r], columns })
            })
            .collect()
    }
}

/// A [`Regions`] table that others merge into, with its names indexed.
#[derive(Default)]
pub struct Merged {
    regions: Regions,
    table: RegionTable,
}

impl Merged {
    /// Merges `part` in: a region seen before merges slot by slot, a new
    /// one moves in as it is (the same as merging into an empty one).
    pub fn absorb(&mut self, part: Regions) {
        if self.regions.is_empty() {
            for name in &part.names {
                self.table.get_or_insert(name.as_bytes());
            }
            if self.table.len() == part.len() {
                self.regions = part;
                return;
            }
            // The same name twice in one part (it cannot happen, but it
            // would merge): rebuild below.
            self.table = RegionTable::default();
        }
        let width = part.columns.len();
        debug_assert!(self.regions.is_empty() || self.regions.columns == part.columns);
        if self.regions.is_empty() {
            self.regions.columns = part.columns;
        }
        let mut accs = part.accs.into_iter();
        for (name, records) in part.names.into_iter().zip(part.records) {
            let (r, new) = self.table.get_or_insert(name.as_bytes());
            if new {
                self.regions.names.push(name);
                self.regions.records.push(records);
                self.regions.accs.extend(accs.by_ref().take(width));
                continue;
            }
            self.regions.records[r] += records;
            for (mine, theirs) in
                self.regions.accs[r * width..(r + 1) * width].iter_mut().zip(accs.by_ref().take(width))
            {
                mine.merge(&theirs);
            }
        }
    }

    pub fn into_regions(self) -> Regions {
        self.regions
    }
}

/// Merges `n` parts in a fixed tree as they arrive in any order: runs of
/// `n.div_ceil(runs)` contiguous parts, each merged left to right, then
/// the runs left to right.
pub struct TreeMerge {
    columns: Vec<String>,
    run_len: usize,
    runs: Vec<Run>,
}

struct Run {
    merged: Merged,
    /// The run's parts that arrived out of turn, and failed ones (`None`).
    waiting: Vec<Option<Option<Regions>>>,
    /// The first part of the run not merged yet.
    next: usize,
}

impl TreeMerge {
    pub fn new(n: usize, runs: usize, columns: Vec<String>) -> Self {
        let run_len = n.div_ceil(runs.max(1)).max(1);
        let runs = (0..n.div_ceil(run_len))
            .map(|k| Run {
                merged: Merged::default(),
                waiting: (0..run_len.min(n - k * run_len)).map(|_| None).collect(),
                next: 0,
            })
            .collect();
        TreeMerge { columns, run_len, runs }
    }

    /// Part `i` arrived with its regions, or failed (`None`): merges every
    /// part of its run that is now its turn.
    pub fn add(&mut self, i: usize, part: Option<Regions>) {
        let run = &mut self.runs[i / self.run_len];
        run.waiting[i % self.run_len] = Some(part);
        while let Some(slot) = run.waiting.get_mut(run.next).and_then(Option::take) {
            if let Some(regions) = slot {
                run.merged.absorb(regions);
            }
            run.next += 1;
        }
    }

    /// Merges the runs (and any part still waiting its turn, in order).
    pub fn finish(self) -> Regions {
        let mut total: Option<Merged> = None;
        for mut run in self.runs {
            for regions in run.waiting.drain(run.next..).flatten().flatten() {
                run.merged.absorb(regions);
            }
            // The first run is the start of the total as it is (absorbing
            // it into an empty table would give the same, and index it again).
            match &mut total {
                None => total = Some(run.merged),
                Some(total) => total.absorb(run.merged.into_regions()),
            }
        }
        let total = total.unwrap_or_default();
        let mut regions = total.into_regions();
        if regions.is_empty() {
            regions.columns = self.columns;
        }
        regions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A part of `regions` regions (named from `first`) with two columns.
    fn part(seed: u64, first: usize, regions: usize) -> Regions {
        let mut x = seed | 1;
        let mut out = Regions { columns: vec!["a".into(), "b".into()], ..Regions::default() };
        for r in 0..regions {
            out.names.push(format!("region-{:03}", (first + r * 7) % 50));
            let (mut a, mut b) = (Accumulator::default(), Accumulator::default());
            let n = 1 + r % 5;
            for _ in 0..n {
                crate::process::xorshift(&mut x);
                a.push((x % 100_000) as f64 / 100.0);
                if !x.is_multiple_of(3) {
                    b.push(1e6 + (x >> 40) as f64 / 7.0);
                }
            }
            out.records.push(n as u64);
            out.accs.push(a);
            out.accs.push(b);
        }
        out
    }

    /// What the coordinator did before: every part as a map, merged by
    /// name in the same tree.
    fn by_maps(parts: &[Regions], runs: usize) -> BTreeMap<String, RegionStats> {
        let run_len = parts.len().div_ceil(runs);
        let mut total: BTreeMap<String, RegionStats> = BTreeMap::new();
        for run in parts.chunks(run_len) {
            let mut merged: BTreeMap<String, RegionStats> = BTreeMap::new();
            for p in run {
                for (name, stats) in p.to_map() {
                    merged.entry(name).or_default().merge(&stats);
                }
            }
            for (name, stats) in merged {
                total.entry(name).or_default().merge(&stats);
            }
        }
        total
    }

    fn bits(map: &BTreeMap<String, RegionStats>) -> Vec<(String, u64, Vec<[u64; 6]>)> {
        map.iter()
            .map(|(name, s)| {
                let cols = s
                    .summaries()
                    .iter()
                    .map(|(_, c)| {
                        let f = |v: Option<f64>| v.map_or(u64::MAX, f64::to_bits);
                        [c.count, c.sum.to_bits(), f(c.min), f(c.max), f(c.mean), f(c.stddev)]
                    })
                    .collect();
                (name.clone(), s.records, cols)
            })
            .collect()
    }

    /// Whatever order the parts arrive in, the result is the one merging
    /// maps in the same fixed tree gives, bit for bit.
    #[test]
    fn arrival_order_does_not_change_a_bit() {
        let parts: Vec<Regions> = (0..7).map(|p| part(p * 977 + 5, p as usize * 3, 40)).collect();
        for runs in [1, 2, 3, 7, 9] {
            let want = bits(&by_maps(&parts, runs));
            for order in [[0, 1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1, 0], [3, 0, 6, 1, 5, 2, 4]] {
                let mut tree = TreeMerge::new(parts.len(), runs, vec!["a".into(), "b".into()]);
                for i in order {
                    tree.add(i, Some(parts[i].clone()));
                }
                assert_eq!(bits(&tree.finish().to_map()), want, "runs {runs}, order {order:?}");
            }
        }
    }

    /// Sorting a table by name moves every region with its own records and
    /// accumulators, and leaves a sorted table as it is.
    #[test]
    fn a_table_sorted_by_name_holds_the_same_regions() {
        let mut merged = Merged::default();
        for p in 0..3 {
            merged.absorb(part(p * 31 + 7, p as usize, 45));
        }
        let table = merged.into_regions();
        assert!(table.names.windows(2).any(|w| w[0] > w[1]), "the test starts out of order");
        let sorted = table.clone().into_sorted_by_name();
        assert!(sorted.names.windows(2).all(|w| w[0] < w[1]), "{:?}", sorted.names);
        assert_eq!(sorted.columns, table.columns);
        assert_eq!(sorted.to_map(), table.to_map());
        assert_eq!(sorted.clone().into_sorted_by_name(), sorted);
    }

    #[test]
    fn failed_parts_are_left_out_and_no_parts_leave_the_columns() {
        let parts: Vec<Regions> = (0..4).map(|p| part(p + 1, 0, 10)).collect();
        let mut tree = TreeMerge::new(4, 2, vec!["a".into(), "b".into()]);
        tree.add(1, None);
        for i in [3, 0, 2] {
            tree.add(i, Some(parts[i].clone()));
        }
        let kept = [parts[0].clone(), parts[2].clone(), parts[3].clone()];
        // Runs [0, 1] and [2, 3]: part 1 failed, so the tree is 0 + (2 + 3).
        let mut want = by_maps(&kept[..1], 1);
        for (name, s) in by_maps(&kept[1..], 1) {
            want.entry(name).or_default().merge(&s);
        }
        let got = tree.finish();
        assert_eq!(bits(&got.to_map()), bits(&want));
        assert_eq!(got.total(got.by_name()).records, got.records.iter().sum::<u64>());

        let mut none = TreeMerge::new(2, 2, vec!["a".into()]);
        none.add(0, None);
        none.add(1, None);
        let empty = none.finish();
        assert!(empty.is_empty());
        assert_eq!(empty.columns, ["a"]);
        assert!(empty.total(empty.by_name()).columns.is_empty());
    }
}

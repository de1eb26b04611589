//! Merging the per-region accumulators of byte-range parts on the
//! coordinator, as the parts finish.
//!
//! A part's regions are a [`Regions`] table: names (in name order, as scan
//! workers print them) and one accumulator per region and numeric column,
//! indexed by slot, with the column names once. Merging walks two tables
//! side by side and merges the accumulators of a name slot by slot; maps
//! keyed by name are only built for the report, once, at the end.
//!
//! The order of merges is fixed, whatever order the parts finish in:
//! Chan's formulas for the variance are exact in theory but not in the
//! last bits of a double, so a different order could change a standard
//! deviation between two runs on the same data. [`TreeMerge`] cuts the
//! parts into contiguous runs, merges each run left to right as soon as
//! its next part is there, and merges the runs left to right at the end.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::process::stats::{Accumulator, ColumnMap, RegionStats};

/// Per-region accumulators: region `r`'s accumulator of column `slot` is
/// `accs[r * columns.len() + slot]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Regions {
    /// Names of the numeric columns, in slot order.
    pub(crate) columns: Vec<String>,
    /// Region names, in order of first sight.
    pub(crate) names: Vec<String>,
    /// Records of each region.
    pub(crate) records: Vec<u64>,
    pub(crate) accs: Vec<Accumulator>,
}

impl Regions {
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The accumulators of region `r`, in slot order.
    pub(crate) fn accs(&self, r: usize) -> &[Accumulator] {
        let width = self.columns.len();
        &self.accs[r * width..(r + 1) * width]
    }

    /// Region numbers in the order of their names.
    #[cfg(test)]
    pub(crate) fn by_name(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_unstable_by(|&a, &b| self.names[a].cmp(&self.names[b]));
        order
    }

    /// The same regions, in the order of their names, each name once (a
    /// name seen twice is merged in order of appearance, as merging into an
    /// empty table would). Reading thousands of regions' accumulators by
    /// name from a table in order of first sight is a cache miss each (at
    /// 10,000 regions they take 5 MB); once in order, merging, summarising
    /// and reporting read them front to back.
    pub(crate) fn into_sorted_by_name(mut self) -> Regions {
        if self.names.windows(2).all(|w| w[0] < w[1]) {
            return self;
        }
        // Stable: equal names keep their order of appearance.
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&a, &b| self.names[a].cmp(&self.names[b]));
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
            let accs = self.accs[r * width..(r + 1) * width].iter();
            sorted.push(std::mem::take(&mut self.names[r]), self.records[r], accs.cloned());
        }
        sorted
    }

    /// Appends a region after the last, or merges it into the last when it
    /// has the same name.
    fn push(&mut self, name: String, records: u64, accs: impl Iterator<Item = Accumulator>) {
        let width = self.columns.len();
        if self.names.last() == Some(&name) {
            *self.records.last_mut().expect("a last region") += records;
            let at = self.accs.len() - width;
            for (mine, theirs) in self.accs[at..].iter_mut().zip(accs) {
                mine.merge(&theirs);
            }
        } else {
            self.names.push(name);
            self.records.push(records);
            self.accs.extend(accs);
        }
    }

    /// Merges `part` in: a region seen before merges slot by slot, a new
    /// one moves in as it is (the same as merging into an empty one). With
    /// both tables in name order (scan workers print theirs so; another is
    /// sorted first), merging walks them side by side; the result is in
    /// name order.
    pub(crate) fn absorb(&mut self, part: Regions) {
        let part = part.into_sorted_by_name();
        debug_assert!(self.is_empty() || self.columns == part.columns);
        if self.is_empty() {
            *self = part;
            return;
        }
        let width = part.columns.len();
        if self.names == part.names {
            // The usual case: every part saw every region.
            for (mine, theirs) in self.records.iter_mut().zip(&part.records) {
                *mine += theirs;
            }
            for (mine, theirs) in self.accs.iter_mut().zip(&part.accs) {
                mine.merge(theirs);
            }
            return;
        }
        let mine = std::mem::take(self).into_sorted_by_name();
        let mut merged = Regions {
            columns: mine.columns,
            names: Vec::with_capacity(mine.names.len().max(part.names.len())),
            records: Vec::with_capacity(mine.records.len().max(part.records.len())),
            accs: Vec::with_capacity(mine.accs.len().max(part.accs.len())),
        };
        let mut ours = mine.names.into_iter().zip(mine.records).peekable();
        let mut theirs = part.names.into_iter().zip(part.records).peekable();
        let (mut our_accs, mut their_accs) = (mine.accs.into_iter(), part.accs.into_iter());
        // The smaller name goes first; on a tie ours, then theirs merges into it.
        while let Some(from_ours) = match (ours.peek(), theirs.peek()) {
            (Some(a), Some(b)) => Some(a.0 <= b.0),
            (a, b) => a.map(|_| true).or(b.map(|_| false)),
        } {
            let ((name, records), accs) = if from_ours {
                (ours.next().expect("peeked"), &mut our_accs)
            } else {
                (theirs.next().expect("peeked"), &mut their_accs)
            };
            merged.push(name, records, accs.by_ref().take(width));
        }
        *self = merged;
    }

    /// Starts loading region `r`'s accumulators into the cache.
    fn prefetch_accs(&self, r: usize) {
        let accs = self.accs(r);
        let bytes = std::mem::size_of_val(accs);
        let start = accs.as_ptr() as *const u8;
        for offset in (0..bytes).step_by(64) {
            // SAFETY: `offset` stays within the accumulators' bytes.
            crate::process::prefetch::prefetch(unsafe { &*start.add(offset) });
        }
    }

    /// The figures users see for every region, in table order, by column
    /// name.
    pub(crate) fn summaries(&self) -> Vec<ColumnMap> {
        // The column names once, shared by every region's map.
        let names: Vec<Arc<str>> = self.columns.iter().map(|c| Arc::from(c.as_str())).collect();
        (0..self.len())
            .map(|r| {
                // Last slot first: of a name given to two columns,
                // `ColumnMap::new` keeps the first it sees, and the totals'
                // map (see `total`) the last column.
                let entries = names.iter().zip(self.accs(r)).rev();
                ColumnMap::new(entries.map(|(name, acc)| (name.clone(), acc.summary())).collect())
            })
            .collect()
    }

    /// The regions `order` merged into one, in that order (as
    /// `aggregate::merge_summaries` merges maps: no columns without regions).
    pub(crate) fn total(&self, order: impl IntoIterator<Item = usize>) -> RegionStats {
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

    #[cfg(test)]
    /// Every region by name, as maps (for tests and comparisons).
    pub(crate) fn to_map(&self) -> BTreeMap<String, RegionStats> {
        (0..self.len())
            .map(|r| {
                let columns = self.columns.iter().cloned().zip(self.accs(r).iter().cloned()).collect();
                (self.names[r].clone(), RegionStats { records: self.records[r], columns })
            })
            .collect()
    }
}

/// Merges `n` parts in a fixed tree as they arrive in any order: runs of
/// `n.div_ceil(runs)` contiguous parts, each merged left to right, then
/// the runs left to right.
pub(crate) struct TreeMerge {
    columns: Vec<String>,
    run_len: usize,
    runs: Vec<Run>,
}

struct Run {
    merged: Regions,
    /// The run's parts that arrived out of turn, and failed ones (`None`).
    waiting: Vec<Option<Option<Regions>>>,
    /// The first part of the run not merged yet.
    next: usize,
}

impl TreeMerge {
    pub(crate) fn new(n: usize, runs: usize, columns: Vec<String>) -> Self {
        let run_len = n.div_ceil(runs.max(1)).max(1);
        let runs = (0..n.div_ceil(run_len))
            .map(|k| Run {
                merged: Regions::default(),
                waiting: (0..run_len.min(n - k * run_len)).map(|_| None).collect(),
                next: 0,
            })
            .collect();
        TreeMerge { columns, run_len, runs }
    }

    /// Part `i` arrived with its regions, or failed (`None`): merges every
    /// part of its run that is now its turn.
    pub(crate) fn add(&mut self, i: usize, part: Option<Regions>) {
        let run = &mut self.runs[i / self.run_len];
        run.waiting[i % self.run_len] = Some(part);
        while let Some(slot) = run.waiting.get_mut(run.next).and_then(Option::take) {
            if let Some(regions) = slot {
                run.merged.absorb(regions);
            }
            run.next += 1;
        }
    }

    /// Merges the runs (and any part still waiting its turn, in order);
    /// the regions come out in name order.
    pub(crate) fn finish(self) -> Regions {
        // The first run moves into the empty total as it is.
        let mut regions = Regions::default();
        for mut run in self.runs {
            for part in run.waiting.drain(run.next..).flatten().flatten() {
                run.merged.absorb(part);
            }
            regions.absorb(run.merged);
        }
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
                        [c.count, f(c.sum), f(c.min), f(c.max), f(c.mean), f(c.stddev)]
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
    /// accumulators, merges a name seen twice in order of appearance, and
    /// leaves a sorted table as it is.
    #[test]
    fn a_table_sorted_by_name_holds_the_same_regions() {
        // 60 regions over 50 names: ten of them twice.
        let table = part(7, 3, 60);
        assert!(table.names.windows(2).any(|w| w[0] > w[1]), "the test starts out of order");
        let mut want: BTreeMap<String, RegionStats> = BTreeMap::new();
        for r in 0..table.len() {
            let columns = table.columns.iter().cloned().zip(table.accs(r).iter().cloned()).collect();
            let stats = RegionStats { records: table.records[r], columns };
            want.entry(table.names[r].clone()).or_default().merge(&stats);
        }
        let sorted = table.clone().into_sorted_by_name();
        assert!(sorted.names.windows(2).all(|w| w[0] < w[1]), "{:?}", sorted.names);
        assert_eq!((sorted.len(), &sorted.columns), (50, &table.columns));
        assert_eq!(bits(&sorted.to_map()), bits(&want));
        assert_eq!(sorted.clone().into_sorted_by_name(), sorted);
    }

    /// Of two columns with one name, a region's figures and the totals
    /// both show the last, as a map of columns by name would.
    #[test]
    fn a_name_given_to_two_columns_shows_its_last_in_regions_and_totals() {
        let (mut first, mut last) = (Accumulator::default(), Accumulator::default());
        first.push(1.0);
        last.push(10.0);
        last.push(20.0);
        let table = Regions {
            columns: vec!["v".into(), "v".into()],
            names: vec!["a".into()],
            records: vec![2],
            accs: vec![first, last.clone()],
        };
        let region = &table.summaries()[0];
        assert_eq!(region.len(), 1);
        assert_eq!(region.get("v"), Some(&last.summary()));
        assert_eq!(table.total([0]).summaries().get("v"), Some(&last.summary()));
    }

    /// Merging walks two sorted tables side by side: names in one only,
    /// in both, and the same names in both give what merging maps gives.
    #[test]
    fn merging_sorted_tables_is_merging_maps() {
        let parts = [part(11, 0, 30), part(12, 5, 30), part(13, 0, 30), part(14, 2, 49)];
        for pair in [[0, 1], [0, 2], [1, 3], [3, 0]] {
            let mut got = Regions::default();
            got.absorb(parts[pair[0]].clone());
            got.absorb(parts[pair[1]].clone());
            let two = [parts[pair[0]].clone(), parts[pair[1]].clone()];
            assert!(got.names.windows(2).all(|w| w[0] < w[1]), "{pair:?}");
            assert_eq!(bits(&got.to_map()), bits(&by_maps(&two, 1)), "{pair:?}");
        }
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

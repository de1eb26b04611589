//! Which parts share an array task: the grouping rule, pure (no I/O).
//!
//! Each array task costs Slurm tens of milliseconds (scheduling, launch,
//! prolog and epilog), and each wave of a throttled array waits for a
//! scheduler pass, so thousands of tiny regions as thousands of array
//! tasks spend more time in the scheduler than in the work. A group is
//! one array task that runs its parts one after another; each part keeps
//! its own attempt files, so a failed part is retried alone.
//!
//! The rule, for `n` parts of `total` input bytes on `slots` slots:
//!
//! * one group per slot (`min(n, slots)` groups: never a slot idle for
//!   want of a group), so the array runs in one wave. Measured on Slurm
//!   22.05 with its default scheduler settings (`bench/slurm.sh`): the
//!   array's first tasks started about 3 s after `sbatch`, and each further
//!   wave of a throttled array (`%slots`) waited about 3 s more for a
//!   scheduler pass, whatever the tasks' size: 195 MB as 4 byte ranges on 2
//!   slots took 4.6 to 6.5 s as 4 tasks (two waves), 2.6 to 2.8 s as 2
//!   tasks of 2 ranges (one wave);
//! * more groups, up to `slots x` [`GROUPS_PER_SLOT`], only when each would
//!   otherwise hold more than [`WAVE_BYTES`]: then a group is about that
//!   size, seconds of work against a wave's seconds of waiting, so a slot
//!   that drew quick groups can take more and the slots finish together;
//! * never more groups than parts, nor than [`MAX_GROUPS`].
//!
//! Parts are packed largest first, each into the group with the fewest
//! bytes so far (longest-processing-time first: within 4/3 of the best
//! possible balance), so a large part never queues behind many small ones.

/// Groups per slot at most: with 4, the last groups to finish hold about a
/// quarter of a slot's share, so slots that drew fast groups are not idle
/// for long while the others finish.
pub(super) const GROUPS_PER_SLOT: usize = 4;

/// The input a group holds before more groups (more waves) are worth it:
/// 1 GiB is about ten seconds of the built-in summary's work on one core
/// (it reads about 100 MB/s and more), several times the few seconds a
/// wave of array tasks waits for the scheduler.
pub(super) const WAVE_BYTES: u64 = 1 << 30;

/// At most this many groups in one array: Slurm's default `MaxArraySize`
/// (1001) refuses array indices above 1000.
pub(super) const MAX_GROUPS: usize = 1000;

/// Splits `parts` (each a part's index and its input bytes) into groups
/// for `slots` slots, each group a list of part indices in the order they
/// run (largest first). Every part is in exactly one group; no group is
/// empty.
pub(super) fn groups(parts: &[(usize, u64)], slots: usize) -> Vec<Vec<usize>> {
    let n = parts.len();
    if n == 0 {
        return Vec::new();
    }
    let slots = slots.max(1);
    let total: u64 = parts.iter().map(|&(_, size)| size).fold(0, u64::saturating_add);
    let by_size = usize::try_from(total.div_ceil(WAVE_BYTES)).unwrap_or(usize::MAX);
    let count = by_size.clamp(slots, slots.saturating_mul(GROUPS_PER_SLOT)).min(n).min(MAX_GROUPS);
    let mut order: Vec<(usize, u64)> = parts.to_vec();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    // (bytes so far, parts): the emptiest group takes the next part; among
    // equals the one with fewer parts, so zero-byte parts spread out too.
    let mut bins: Vec<(u64, Vec<usize>)> = vec![(0, Vec::new()); count];
    for (part, size) in order {
        let bin = bins.iter_mut().min_by_key(|(bytes, members)| (*bytes, members.len())).expect("count >= 1");
        bin.0 = bin.0.saturating_add(size);
        bin.1.push(part);
    }
    bins.into_iter().map(|(_, members)| members).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(groups: &[Vec<usize>], parts: &[(usize, u64)]) -> Vec<u64> {
        groups.iter().map(|g| g.iter().map(|&p| parts.iter().find(|x| x.0 == p).unwrap().1).sum()).collect()
    }

    /// Every part exactly once, no group empty.
    fn check_partition(groups: &[Vec<usize>], parts: &[(usize, u64)]) {
        let mut seen: Vec<usize> = groups.iter().flatten().copied().collect();
        seen.sort_unstable();
        let mut want: Vec<usize> = parts.iter().map(|p| p.0).collect();
        want.sort_unstable();
        assert_eq!(seen, want, "every part exactly once");
        assert!(groups.iter().all(|g| !g.is_empty()), "no empty group: {groups:?}");
    }

    #[test]
    fn many_small_parts_make_one_group_per_slot() {
        let parts: Vec<(usize, u64)> = (0..200).map(|i| (i, 1000 + i as u64)).collect();
        let g = groups(&parts, 4);
        check_partition(&g, &parts);
        assert_eq!(g.len(), 4, "small input: one group per slot, not 200 array tasks");
        let s = sizes(&g, &parts);
        let (lo, hi) = (s.iter().min().unwrap(), s.iter().max().unwrap());
        assert!(hi - lo <= 1200, "balanced by size: {s:?}");
    }

    #[test]
    fn large_input_gets_several_groups_per_slot_but_no_more() {
        // 100 parts of 512 MiB (50 GiB) on 4 slots: 16 groups (4 per slot), not 100.
        let parts: Vec<(usize, u64)> = (0..100).map(|i| (i, 512 << 20)).collect();
        let g = groups(&parts, 4);
        check_partition(&g, &parts);
        assert_eq!(g.len(), 4 * GROUPS_PER_SLOT);
        // 20 parts of 512 MiB (10 GiB) on 4 slots: 10 groups of 1 GiB.
        let parts: Vec<(usize, u64)> = (0..20).map(|i| (i, 512 << 20)).collect();
        let g = groups(&parts, 4);
        assert_eq!(g.len(), 10);
        assert!(sizes(&g, &parts).iter().all(|&s| s == WAVE_BYTES));
        // 16 ranges of 64 MB (1 GB) on 8 slots: one wave of 8 groups of 2.
        let parts: Vec<(usize, u64)> = (0..16).map(|i| (i, 64_000_000)).collect();
        let g = groups(&parts, 8);
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), [2; 8]);
    }

    #[test]
    fn fewer_parts_than_slots_run_one_per_group() {
        let parts = [(3, 10), (7, 0), (9, 5)];
        let g = groups(&parts, 8);
        check_partition(&g, &parts);
        assert_eq!(g, [vec![3], vec![9], vec![7]], "largest first, each alone");
        assert!(groups(&[], 4).is_empty());
        // More slots than Slurm takes array indices: at most MAX_GROUPS.
        let many: Vec<(usize, u64)> = (0..5000).map(|i| (i, 10)).collect();
        let g = groups(&many, 4000);
        check_partition(&g, &many);
        assert_eq!(g.len(), MAX_GROUPS);
        assert_eq!(groups(&[(0, 0)], 0), [vec![0]], "zero slots count as one");
    }

    #[test]
    fn a_large_part_does_not_wait_behind_small_ones() {
        // One 1 GiB part and 30 small ones on 2 slots: the large part is
        // alone in its group, the small ones share the other.
        let mut parts: Vec<(usize, u64)> = (0..30).map(|i| (i, 1 << 20)).collect();
        parts.push((30, 1 << 30));
        let g = groups(&parts, 2);
        check_partition(&g, &parts);
        let big = g.iter().find(|grp| grp.contains(&30)).unwrap();
        assert_eq!(big, &vec![30], "{g:?}");
        assert_eq!(g[0][0], 30, "the largest part is placed (and runs) first");
    }

    #[test]
    fn zero_byte_parts_spread_over_the_groups() {
        let parts: Vec<(usize, u64)> = (0..9).map(|i| (i, 0)).collect();
        let g = groups(&parts, 3);
        check_partition(&g, &parts);
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3]);
    }
}

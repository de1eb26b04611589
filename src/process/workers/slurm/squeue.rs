//! What `squeue` prints, read: each array task's state.

use std::collections::BTreeMap;

/// States after which a job never runs again.
pub(super) fn is_final(state: &str) -> bool {
    matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "CANCELLED"
            | "TIMEOUT"
            | "NODE_FAIL"
            | "PREEMPTED"
            | "OUT_OF_MEMORY"
            | "BOOT_FAIL"
            | "DEADLINE"
    )
}

/// Parses `squeue --format="%i %T"` lines of array jobs.
pub(super) fn parse_squeue(text: &str) -> BTreeMap<(String, usize), String> {
    let mut states = BTreeMap::new();
    for line in text.lines() {
        let Some((id, state)) = line.trim().split_once(' ') else { continue };
        let Some((job, index)) = id.split_once('_') else { continue };
        let index = index.split('%').next().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
        for part in index.split(',') {
            let (from, to) = part.split_once('-').unwrap_or((part, part));
            let (Ok(from), Ok(to)) = (from.parse::<usize>(), to.split('%').next().unwrap_or("").parse::<usize>())
            else {
                continue;
            };
            for i in from..=to.min(from + 1_000_000) {
                states.insert((job.to_string(), i), state.trim().to_string());
            }
        }
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_give_each_array_index_its_state() {
        let s = parse_squeue("12_[3-5%2] PENDING\n12_1 RUNNING\n12_0 COMPLETED\n13_[7,9] PENDING\n");
        assert_eq!(s.get(&("12".into(), 4)).map(String::as_str), Some("PENDING"));
        assert_eq!(s.get(&("12".into(), 1)).map(String::as_str), Some("RUNNING"));
        assert_eq!(s.get(&("12".into(), 0)).map(String::as_str), Some("COMPLETED"));
        assert_eq!(s.get(&("13".into(), 9)).map(String::as_str), Some("PENDING"));
        assert_eq!(s.get(&("13".into(), 8)), None);
        assert_eq!(s.len(), 7);
    }
}

//! Rendering results for people ([`human`]) and programs ([`json`]).

pub(crate) mod human;
pub(crate) mod json;
pub(crate) mod process_human;
pub(crate) mod process_json;
pub(crate) mod tasks;

/// Reports with this many regions or more have them rendered on several
/// threads: with thousands of regions their entries are most of the report,
/// and the workers are done by then, so their cores are free.
pub(crate) const PARALLEL_FROM: usize = 2000;

/// Whether `n` regions are rendered on several threads (there are several
/// cores, and that many regions).
pub(crate) fn in_parallel_from(n: usize) -> bool {
    n >= PARALLEL_FROM && threads() >= 2
}

/// `render` of `items`: on this thread when [`in_parallel_from`] says no,
/// else cut into runs of about equal length, one per core, each on its own
/// thread; the runs' results in order.
pub(crate) fn in_parallel<T: Sync, R: Send>(items: &[T], render: impl Fn(&[T]) -> R + Sync) -> Vec<R> {
    if !in_parallel_from(items.len()) {
        return vec![render(items)];
    }
    let run_len = items.len().div_ceil(threads());
    let render = &render;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items.chunks(run_len).map(|run| scope.spawn(move || render(run))).collect();
        handles.into_iter().map(|h| h.join().expect("rendering does not panic")).collect()
    })
}

/// The cores this process may run on.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

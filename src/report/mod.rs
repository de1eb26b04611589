//! Rendering results for people ([`human`]) and programs ([`json`]).

pub mod human;
pub mod json;
pub mod process_human;
pub mod process_json;
pub mod tasks;

/// Reports with this many regions or more have them rendered on several
/// threads: with thousands of regions their entries are most of the report,
/// and the workers are done by then, so their cores are free.
pub const PARALLEL_FROM: usize = 2000;

/// `render` of `items` cut into runs of about equal length, one per core
/// (of `threads`), each on its own thread; the runs' results in order.
pub fn in_parallel<T: Sync, R: Send>(items: &[T], threads: usize, render: impl Fn(&[T]) -> R + Sync) -> Vec<R> {
    let run_len = items.len().div_ceil(threads.max(1)).max(1);
    let render = &render;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items.chunks(run_len).map(|run| scope.spawn(move || render(run))).collect();
        handles.into_iter().map(|h| h.join().expect("rendering does not panic")).collect()
    })
}

/// The number of threads [`in_parallel`] uses: the cores this process may run on.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

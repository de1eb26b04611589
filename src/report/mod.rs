//! Rendering results for people ([`human`]) and programs ([`json`]).

pub(crate) mod human;
pub(crate) mod json;
pub(crate) mod process_human;
pub(crate) mod process_json;
pub(crate) mod tasks;

/// Text from data (region and column names, values, file names, commands,
/// error messages quoting them) made safe to show on a terminal: every
/// character that could make a line read differently from what it holds
/// is written as a visible escape, and everything else is left as it is.
///
/// Escaped: C0 and C1 control characters and DEL (line breaks as `\n`,
/// `\r`, tabs as `\t`, the rest as `\u{1b}`: no terminal escape sequence
/// gets through), bidirectional controls (U+202A-202E, U+2066-2069, U+200E,
/// U+200F, U+061C), zero-width and invisible characters (U+200B-200D,
/// U+2060-2064, U+FEFF, U+00AD, U+034F, Hangul fillers, U+180E), line and
/// paragraph separators (U+2028, U+2029), interlinear annotation controls
/// and tag characters (U+E0000-E007F), all as `\u{202e}`. Backslashes stay
/// as they are, so a command reads as typed. JSON output is never escaped
/// this way: it carries the exact text.
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(hidden) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if hidden(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out.into()
}

/// Whether `c` is one of the characters [`escape`] makes visible.
fn hidden(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

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

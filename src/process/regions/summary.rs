//! The built-in `summary` processor: `distex __worker summary`.
//!
//! It runs in its own isolated process like any processor. It reads one
//! region's records on stdin (in the input's format, header first), computes
//! the record count and, for every numeric column named in its spec, the
//! mergeable accumulators of [`crate::process::stats`], and prints them as one JSON
//! object. The coordinator validated every record already; a value that
//! still does not parse is an error, not a silent skip.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::process::input::{self, Flow, Format, Item, Source};
use crate::process::stats::region_columns::Columns;
use crate::process::stats::{RegionStats, parse_number};

/// What the coordinator tells a summary worker (in DISTEX_WORKER_SPEC).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Spec {
    pub(crate) format: Format,
    /// Names of the numeric columns.
    pub(crate) numeric: Vec<String>,
}

/// Entry point of `distex __worker summary`; returns the exit status.
pub(crate) fn main() -> u8 {
    let spec: Spec = match crate::process::workers::local::spec_from_env() {
        Ok(spec) => spec,
        Err(status) => return status,
    };
    match summarize(&Source::Stdin, &spec) {
        Ok(stats) => {
            let mut out = std::io::stdout().lock();
            let written =
                serde_json::to_writer(&mut out, &stats).is_ok() && out.write_all(b"\n").is_ok() && out.flush().is_ok();
            if written { 0 } else { 1 }
        }
        Err(e) => {
            eprintln!("distex worker: {e}");
            1
        }
    }
}

/// Summarizes every record of `source`.
pub(crate) fn summarize(source: &Source, spec: &Spec) -> Result<RegionStats, String> {
    let mut stats = RegionStats::default();
    // Column index -> accumulator slot; rebuilt when the header changes.
    let slots: std::cell::RefCell<Vec<(usize, usize)>> = Default::default();
    let mut columns = Columns::new(spec.numeric.len());
    columns.add_region();
    let mut values: Vec<Option<f64>> = vec![None; spec.numeric.len()];
    let mut error = None;
    let result = input::read(
        source,
        spec.format,
        &mut |header, _| {
            *slots.borrow_mut() = spec
                .numeric
                .iter()
                .enumerate()
                .filter_map(|(slot, name)| header.iter().position(|h| h == name).map(|col| (col, slot)))
                .collect();
            Ok(())
        },
        &mut |item| match item {
            Item::Row(row) => {
                stats.records += 1;
                values.fill(None);
                for &(col, slot) in slots.borrow().iter() {
                    match row.field(col).map(parse_number) {
                        Some(Ok(v)) => values[slot] = v,
                        None => {}
                        Some(Err(())) => {
                            error = Some(format!("line {}: column {:?} is not a number", row.line, spec.numeric[slot]));
                            return Flow::Stop;
                        }
                    }
                }
                columns.push(0, &values);
                Flow::Continue
            }
            Item::Bad(bad) => {
                error = Some(format!("line {}: {}", bad.line, bad.reason));
                Flow::Stop
            }
        },
    );
    match result {
        Ok(_) => {}
        Err(input::ReadError::Io(e)) => return Err(format!("cannot read stdin: {e}")),
        Err(input::ReadError::Header(m)) if spec.format != Format::Jsonl => return Err(m),
        Err(input::ReadError::Header(_)) => {}
    }
    if let Some(e) = error {
        return Err(e);
    }
    for (name, acc) in spec.numeric.iter().zip(columns.finish(0)) {
        stats.columns.insert(name.clone(), acc);
    }
    Ok(stats)
}

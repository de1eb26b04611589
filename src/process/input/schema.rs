//! What a record must hold, shared by both paths so that they reject
//! exactly the same records with the same reasons: column types (inferred
//! from a sample or given by `--schema`), the key that names a record's
//! region, and the checks of a key and of numeric fields.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Row;
use crate::process::stats::parse_number;

/// Rows sampled to infer column types.
pub(crate) const SAMPLE: usize = 1000;

/// How a column is treated: numbers get statistics and are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ColumnType {
    Number,
    Text,
}

/// Which region a record belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySpec {
    /// The value of this column (`--by`).
    Column(String),
    /// The stem of the file it came from (`--regions`).
    FileStem,
}

/// Infers a column's type from sampled values: numeric when at least 90%
/// of the non-empty values are numbers (and there is one), so that a few
/// bad rows in the sample do not turn a numeric column into text.
pub(crate) fn infer_type<'v>(values: impl Iterator<Item = &'v [u8]>) -> ColumnType {
    let (mut numbers, mut present) = (0usize, 0usize);
    for v in values {
        match parse_number(v) {
            Ok(Some(_)) => (numbers, present) = (numbers + 1, present + 1),
            Err(()) => present += 1,
            Ok(None) => {}
        }
    }
    if numbers > 0 && numbers * 10 >= present * 9 { ColumnType::Number } else { ColumnType::Text }
}

/// The key of a row: the field at `key_index`, which must not be empty.
/// The partitioner and the byte-range scan workers share these checks, so
/// both paths reject exactly the same records with the same reasons.
pub(crate) fn check_key<'r>(
    row: &Row<'r>,
    key_index: Option<usize>,
    key_name: &str,
) -> std::result::Result<&'r [u8], String> {
    let key: &[u8] = match key_index {
        Some(i) => row.field(i).unwrap_or(b""),
        None => return Err(format!("missing key {key_name:?}")),
    };
    if key.iter().all(u8::is_ascii_whitespace) {
        return Err(format!("missing key {key_name:?} (empty value)"));
    }
    Ok(key)
}

/// Every numeric column must hold a number (or nothing).
pub(crate) fn check_numbers(row: &Row<'_>, numeric: &[usize], header: &[String]) -> std::result::Result<(), String> {
    for &i in numeric {
        if let Some(field) = row.field(i)
            && parse_number(field).is_err()
        {
            return Err(format!("column {:?}: {:?} is not a number", header[i], String::from_utf8_lossy(field)));
        }
    }
    Ok(())
}

//! Combining region results into totals.
//!
//! * Built-in summaries merge exactly ([`RegionStats::merge`]).
//! * Results of a user `--processor` are combined field by field: numbers
//!   found at the same path in several regions' objects are summed
//!   (integers exactly, other numbers with an exact f64 sum); everything
//!   else is left out of the totals. A number at a path where another
//!   region has a non-number is left out too, and named in a warning.
//! * `--aggregate 'CMD'` replaces this with the user's own command, run as
//!   an isolated worker (see [`crate::process::workers::local`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::process::stats::{ExactSum, RegionStats};

/// Merges every region's summary into one.
pub(crate) fn merge_summaries<'a>(regions: impl IntoIterator<Item = &'a RegionStats>) -> RegionStats {
    let mut total = RegionStats::default();
    for r in regions {
        total.merge(r);
    }
    total
}

#[derive(Default)]
enum Acc {
    #[default]
    Empty,
    Int(i128),
    Float(ExactSum),
    Object(BTreeMap<String, Acc>),
    /// Text, booleans, arrays or nulls: not summed.
    Other,
    /// A path whose values disagree in kind.
    Mixed,
}

impl Acc {
    fn add(&mut self, v: &Value) {
        *self = match (std::mem::take(self), v) {
            (Acc::Mixed, _) => Acc::Mixed,
            (Acc::Empty, Value::Object(m)) => {
                let mut obj = BTreeMap::new();
                add_object(&mut obj, m);
                Acc::Object(obj)
            }
            (Acc::Object(mut obj), Value::Object(m)) => {
                add_object(&mut obj, m);
                Acc::Object(obj)
            }
            (acc @ (Acc::Empty | Acc::Int(_) | Acc::Float(_)), Value::Number(n)) => add_number(acc, n),
            _ => Acc::Mixed,
        }
    }

    fn into_value(self, path: &str, warnings: &mut Vec<String>) -> Option<Value> {
        match self {
            Acc::Empty | Acc::Other => None,
            Acc::Int(i) => Some(match i64::try_from(i) {
                Ok(v) => Value::from(v),
                Err(_) => Value::from(i as f64),
            }),
            Acc::Float(s) => {
                let sum = s.value();
                if !sum.is_finite() {
                    warnings.push(format!(
                        "field {path:?} sums beyond the range of doubles (about ±1.8e308); null in the totals"
                    ));
                }
                Some(Value::from(sum))
            }
            Acc::Object(obj) => {
                let mut out = Map::new();
                for (k, v) in obj {
                    let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    if let Some(v) = v.into_value(&sub, warnings) {
                        out.insert(k, v);
                    }
                }
                Some(Value::Object(out))
            }
            Acc::Mixed => {
                warnings.push(format!(
                    "field {path:?} is a number in some region results and not in others; left out of the totals"
                ));
                None
            }
        }
    }
}

fn add_object(obj: &mut BTreeMap<String, Acc>, m: &Map<String, Value>) {
    for (k, v) in m {
        match v {
            Value::Number(_) | Value::Object(_) => obj.entry(k.clone()).or_default().add(v),
            // Text, booleans, arrays and nulls are not summed.
            _ => {
                let entry = obj.entry(k.clone()).or_default();
                *entry = match entry {
                    Acc::Empty | Acc::Other => Acc::Other,
                    _ => Acc::Mixed,
                };
            }
        }
    }
}

fn add_number(acc: Acc, n: &serde_json::Number) -> Acc {
    match (acc, n.as_i64()) {
        (Acc::Empty, Some(i)) => Acc::Int(i as i128),
        (Acc::Int(a), Some(i)) => Acc::Int(a + i as i128),
        (acc, _) => {
            let mut sum = match acc {
                Acc::Int(a) => {
                    // Exact: split the integer into two f64-representable halves.
                    let mut s = ExactSum::default();
                    let hi = (a >> 32) as f64 * 4294967296.0;
                    let lo = (a & 0xffff_ffff) as f64;
                    s.add(hi);
                    s.add(lo);
                    s
                }
                Acc::Float(s) => s,
                _ => ExactSum::default(),
            };
            sum.add(n.as_f64().unwrap_or(0.0));
            Acc::Float(sum)
        }
    }
}

/// Sums the numbers found at the same path in every result object.
pub(crate) fn sum_results<'a>(results: impl IntoIterator<Item = &'a Map<String, Value>>) -> (Value, Vec<String>) {
    let mut root = BTreeMap::new();
    for r in results {
        add_object(&mut root, r);
    }
    let mut warnings = Vec::new();
    let value = Acc::Object(root).into_value("", &mut warnings).unwrap_or(Value::Object(Map::new()));
    (value, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sums_numbers_at_the_same_path() {
        let a = json!({"rows": 2, "sales": {"total": 1.5, "max": 3}, "name": "A"});
        let b = json!({"rows": 3, "sales": {"total": 2.25}, "name": "B", "extra": 7});
        let (total, warnings) = sum_results([a.as_object().unwrap(), b.as_object().unwrap()]);
        assert_eq!(total, json!({"rows": 5, "sales": {"total": 3.75, "max": 3}, "extra": 7}));
        assert!(warnings.is_empty());
    }

    #[test]
    fn mixed_kinds_are_left_out_with_a_warning() {
        let a = json!({"v": 1});
        let b = json!({"v": "x"});
        let (total, warnings) = sum_results([a.as_object().unwrap(), b.as_object().unwrap()]);
        assert_eq!(total, json!({}));
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn a_sum_beyond_the_range_of_doubles_is_null_with_a_warning() {
        let a = json!({"big": 1.5e308, "ok": 1.5e308});
        let b = json!({"big": 1e308, "ok": -1e308});
        let (total, warnings) = sum_results([a.as_object().unwrap(), b.as_object().unwrap()]);
        assert_eq!(total, json!({"big": null, "ok": 5e307}));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("\"big\"") && warnings[0].contains("beyond the range"), "{warnings:?}");
    }
}

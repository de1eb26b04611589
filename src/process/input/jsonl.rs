//! Reading JSON Lines: one object per line, its keys the columns (in the
//! order first seen), laid out as fields like a CSV record.

use std::io::{self, Read};

use super::*;

pub(super) fn read_jsonl(
    input: impl Read,
    on_header: &mut OnHeader<'_>,
    on_item: &mut OnItem<'_>,
) -> Result<ReadSummary, ReadError> {
    let mut reader = io::BufReader::with_capacity(1 << 20, input);
    let mut header: Header = Vec::new();
    let mut raw = Vec::new();
    let mut out = Vec::new();
    let mut ends = Vec::new();
    let mut summary = ReadSummary::default();
    let mut line = 0u64;
    loop {
        raw.clear();
        let n = io::BufRead::read_until(&mut reader, b'\n', &mut raw).map_err(ReadError::Io)?;
        if n == 0 {
            break;
        }
        line += 1;
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        summary.records += 1;
        if !raw.ends_with(b"\n") {
            raw.push(b'\n');
        }
        let item = match jsonl_fields(&raw, &mut header, &mut out, &mut ends) {
            Ok(grew) => {
                if grew {
                    on_header(&header, b"").map_err(ReadError::Header)?;
                }
                Item::Row(Row { line, raw: &raw, out: &out, ends: &ends, sep: 0, plain: false })
            }
            Err(reason) => Item::Bad(Bad { line, reason }),
        };
        if on_item(item) == Flow::Stop {
            summary.stopped = true;
            break;
        }
    }
    Ok(summary)
}

/// Lays a JSON object's values out in header order (strings as text,
/// numbers as written, null and missing keys as empty). Returns whether the
/// header grew.
fn jsonl_fields(raw: &[u8], header: &mut Header, out: &mut Vec<u8>, ends: &mut Vec<usize>) -> Result<bool, String> {
    let text = std::str::from_utf8(raw).map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("broken JSON: {e}"))?;
    let serde_json::Value::Object(map) = value else {
        return Err("not a JSON object".to_string());
    };
    let before = header.len();
    for key in map.keys() {
        if !header.iter().any(|h| h == key) {
            header.push(key.clone());
        }
    }
    out.clear();
    ends.clear();
    for name in header.iter() {
        match map.get(name) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(s)) => out.extend_from_slice(s.as_bytes()),
            Some(serde_json::Value::Number(n)) => out.extend_from_slice(n.to_string().as_bytes()),
            Some(other) => out.extend_from_slice(other.to_string().as_bytes()),
        }
        ends.push(out.len());
    }
    Ok(header.len() != before)
}

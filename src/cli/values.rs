//! Typed flag values, parsed by clap at the edge so that the engine gets
//! plain values and a bad one is a usage error (exit 2) naming the flag:
//!
//! * durations (`--timeout`, `--grace`): `500ms`, `2s`, `1.5s`, `3m`, `1h`,
//!   or a bare number of seconds;
//! * sizes (`--max-memory`, `--max-output`, `--part-size`): `4096`, `512K`,
//!   `64M`, `1.5G`, `2T` (binary units; `KiB`, `MB`... also accepted);
//! * `--schema COLUMN=number|text[,...]`;
//! * `--split` and `--format` as [`ValueEnum`]s mapped onto the engine's
//!   enums, which know nothing of clap.

use std::time::Duration;

use clap::ValueEnum;

use crate::process::input::Format;
use crate::process::input::schema::ColumnType;
use crate::process::options::Split;

/// The duration syntax every `--timeout` shares, for `--help`.
pub(crate) const DURATION_SYNTAX: &str = "500ms, 2s, 1.5s, 3m, 1h, or a bare number of seconds";

/// A duration of at least zero (`--grace`).
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h: {DURATION_SYNTAX})")),
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("{text:?} is not a duration ({DURATION_SYNTAX})"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("{text:?} is not a duration of zero or more"));
    }
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("{text:?} is too long a duration"))
}

/// A duration above zero (every `--timeout`).
pub(crate) fn timeout(text: &str) -> Result<Duration, String> {
    let d = duration(text)?;
    if d.is_zero() {
        return Err(format!("{text:?}: a timeout must be longer than zero"));
    }
    // Deadlines are instants: a much longer timeout would overflow them.
    if d > Duration::from_secs(366 * 24 * 3600) {
        return Err(format!("{text:?}: a timeout must be at most a year"));
    }
    Ok(d)
}

/// Sizes such as `512M`, `2G`, `1.5GiB`, `4096` (bytes).
pub(crate) fn size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("{text:?} is not a size (examples: 512M, 2G, 4096)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (use K, M, G or T)")),
    };
    let bytes = value * factor as f64;
    if bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large a size"));
    }
    Ok(bytes as u64)
}

/// One `--schema` value: `COLUMN=number|text`, several separated by commas.
pub(crate) fn schema(text: &str) -> Result<Vec<(String, ColumnType)>, String> {
    text.split(',')
        .map(|spec| {
            let (name, t) = spec.split_once('=').ok_or_else(|| format!("expected COLUMN=number|text, got {spec:?}"))?;
            let t = match t.trim() {
                "number" | "numeric" => ColumnType::Number,
                "text" | "string" => ColumnType::Text,
                other => return Err(format!("{name}: unknown type {other:?} (number or text)")),
            };
            Ok((name.trim().to_string(), t))
        })
        .collect()
}

/// `--split`: how `distex process` splits the work into workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SplitArg {
    /// bytes for 64 MiB or more, or 64 regions or more in the first rows; regions with SSH
    /// --nodes, and with a Slurm node that does not share the input files
    Auto,
    /// one worker per region
    Regions,
    /// byte ranges of CSV/TSV input, built-in summary only; with --nodes, a Slurm node that
    /// reads the files in place (its `shared` directories, or its workdir without a login host)
    Bytes,
}

impl From<SplitArg> for Split {
    fn from(s: SplitArg) -> Split {
        match s {
            SplitArg::Auto => Split::Auto,
            SplitArg::Regions => Split::Regions,
            SplitArg::Bytes => Split::Bytes,
        }
    }
}

/// `--format`: the input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FormatArg {
    Csv,
    Tsv,
    #[value(alias = "ndjson")]
    Jsonl,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Csv => Format::Csv,
            FormatArg::Tsv => Format::Tsv,
            FormatArg::Jsonl => Format::Jsonl,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_bare_seconds() {
        assert_eq!(timeout("30").unwrap(), Duration::from_secs(30));
        assert_eq!(timeout("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(timeout("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(timeout("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(timeout("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(timeout("3m").unwrap(), Duration::from_secs(180));
        assert_eq!(timeout("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn out_of_range_durations_are_errors_not_panics() {
        for bad in ["0", "-1", "1e20", "1e300h", "NaN", "inf", "soon", "5d", ""] {
            assert!(timeout(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn sizes_and_schemas_parse() {
        assert_eq!(size("4096").unwrap(), 4096);
        assert_eq!(size("512M").unwrap(), 512 << 20);
        assert_eq!(size("1.5GiB").unwrap(), 3 << 29);
        assert!(size("12Q").is_err());
        assert!(size("1e30").is_err());
        assert_eq!(
            schema("a=number, b=text").unwrap(),
            vec![("a".to_string(), ColumnType::Number), (" b".trim().to_string(), ColumnType::Text)]
        );
        assert!(schema("a").is_err());
        assert!(schema("a=date").is_err());
    }
}

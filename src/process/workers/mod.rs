//! Running workers: one isolated process per unit of work, on this machine
//! ([`local`]) or a cluster node ([`node`]), optionally sandboxed
//! ([`sandbox`], with [`relay`] for `--allow-connect`), otherwise with
//! what they daemonize collected ([`reaper`]), scheduled with retries and
//! failover by the [`pool`]; on a Slurm node every unit is a task of one
//! array job ([`slurm`]).

pub(crate) mod local;
pub(crate) mod node;
pub(crate) mod pool;
pub(crate) mod reaper;
pub(crate) mod relay;
pub(crate) mod sandbox;
pub(crate) mod slurm;

/// `1.5 GiB`-style sizes for messages.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

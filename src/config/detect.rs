//! What distex can find out about the local machine without being told.

use super::model::Os;

/// Facts about this machine used to fill in `[local]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Detected {
    pub(crate) hostname: String,
    pub(crate) os: Os,
    pub(crate) cores: u32,
}

impl Detected {
    pub(crate) fn probe() -> Self {
        Detected { hostname: hostname(), os: Os::current().unwrap_or(Os::Linux), cores: cores() }
    }
}

/// Number of CPUs this process may use.
pub(crate) fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

fn hostname() -> String {
    let Some(name) = crate::sys::hostname() else { return "local".to_string() };
    let short = name.split('.').next().unwrap_or("");
    if short.is_empty() { "local".to_string() } else { short.to_string() }
}

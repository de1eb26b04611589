//! What distex remembers between runs: node loads and health.
//!
//! `distex nodes --probe` and every remote run record what they saw here;
//! `distex route` and the hook only ever read it, so routing never waits on
//! the network. The cache is one small JSON file, written atomically under
//! an advisory lock so that parallel runs do not lose each other's updates.

mod dirs;
mod nodes;

pub use dirs::{runtime_dir, state_dir};
pub use nodes::{NodeHealth, NodeStates, Platform, now_secs};

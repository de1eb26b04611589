//! What distex remembers between runs: node loads and health.
//!
//! `distex nodes --probe` and every remote run record what they saw here;
//! `distex route` and the hook only ever read it, so routing never waits on
//! the network. The cache is one small JSON file, written atomically under
//! an advisory lock so that parallel runs do not lose each other's updates.
//!
//! * `nodes` is that cache ([`NodeStates`]);
//! * `facts` reads what routing needs from it and from this machine
//!   ([`LoadFacts::read`]), so that `route` itself stays pure;
//! * `cluster` joins it with the configuration for `distex nodes`
//!   ([`NodesReport`]);
//! * `dirs` says where state and runtime files live.

mod cluster;
mod dirs;
mod facts;
mod nodes;

pub(crate) use cluster::NodesReport;
pub(crate) use dirs::{checked_runtime_dir, checked_state_dir, create_file, runtime_dir, state_dir};
pub(crate) use facts::LoadFacts;
pub(crate) use nodes::{NodeStates, Platform, now_secs};

//! The front every remote node goes through: it picks the backend by the
//! node's kind, so routing, failover and the scheduler treat an SSH
//! machine and a Slurm partition alike (the `openssh` crate's shape: one
//! small front choosing between implementations).
//!
//! * `kind = "ssh"`: [`run::attempt_remote`] and [`probe::probe_one`];
//! * `kind = "slurm"`: [`slurm::attempt`] and [`slurm::probe`].

use super::output::OutputSink;
use super::probe::{self, ProbeResult};
use super::run::{self, AttemptResult, NodeAttempt, Stopper};
use super::slurm;
use super::ssh::TransportError;
use crate::config::{Node, NodeKind};

/// Runs the command on the attempt's node with its backend, mirroring the
/// project first when given; `Err` is a transport failure (the command did not run
/// there; another target may take it).
pub(crate) async fn attempt(
    attempt: NodeAttempt<'_>,
    sink: &mut dyn OutputSink,
    stopper: &Stopper,
) -> Result<AttemptResult, TransportError> {
    match attempt.node.kind() {
        NodeKind::Ssh => run::attempt_remote(attempt, sink, stopper).await,
        NodeKind::Slurm => slurm::attempt(attempt, sink, stopper).await,
    }
}

/// Measures the node's load for `distex nodes --probe` (`script`: the SSH
/// probe's, see [`probe::probe_script`]).
pub(crate) async fn probe(node: &Node, script: &str) -> ProbeResult {
    match node.kind() {
        NodeKind::Ssh => probe::probe_one(node, script).await,
        NodeKind::Slurm => slurm::probe(node).await,
    }
}

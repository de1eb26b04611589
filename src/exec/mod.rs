//! Running commands: locally, and on remote nodes over SSH (issue 3).
//!
//! * [`ssh`] keeps one persistent multiplexed master per node;
//! * [`remote`] runs a command over it inside a killable process group;
//! * [`local`] runs a command here, in its own process group;
//! * [`sync`] mirrors the project with rsync and brings outputs back;
//! * [`output`] is where output goes (terminal, bounded capture, lines);
//! * [`slurm`] runs a command as a Slurm job on a partition (issue 16);
//! * [`node`] is the front choosing a node's backend (SSH or Slurm);
//! * [`run`] ties them together with failover and health recording;
//! * [`signals`] turns SIGINT, SIGTERM and SIGHUP into a stop;
//! * [`probe`] measures node loads for `distex nodes --probe`;
//! * [`clean`] removes what distex left behind (`distex clean`): masters,
//!   state, and with `--remote` the project mirrors on the nodes;
//! * [`runtime`] is the async runtime all of them run on.

pub(crate) mod clean;
pub(crate) mod local;
pub(crate) mod node;
pub(crate) mod output;
pub(crate) mod probe;
pub(crate) mod remote;
pub(crate) mod run;
pub(crate) mod signals;
pub(crate) mod slurm;
pub(crate) mod ssh;
pub(crate) mod sync;

pub(crate) use run::RunStatus;

/// A single-threaded tokio runtime with I/O and timers enabled: what SSH
/// masters, remote commands, probes and the schedulers run on (one per
/// command or worker thread; distex's concurrency is in its child
/// processes, not in tasks).
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

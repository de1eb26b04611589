//! Typed errors and the documented exit codes they map to.
//!
//! Every failure a user can cause or meet is a variant of [`Error`]; the CLI
//! prints its `Display` form (which names the file, line, key or node
//! involved and says what to do) and exits with [`Error::exit_code`].
//! The exit codes are part of distex's contract and listed in the README.

use std::path::PathBuf;

/// Exit codes, shared by every subcommand.
pub(crate) mod exit {
    /// Everything asked for succeeded.
    pub(crate) const OK: u8 = 0;
    /// Some of the work failed: a JSON request line, a parallel task, a command.
    pub(crate) const FAILED: u8 = 1;
    /// Bad usage, configuration or input; nothing was run.
    pub(crate) const USAGE: u8 = 2;
    /// `distex process` finished but at least one region failed (report is incomplete).
    pub(crate) const INCOMPLETE: u8 = 3;
    /// A command was stopped because it exceeded `--timeout`.
    pub(crate) const TIMEOUT: u8 = 124;
    /// The command was started on a node, then the connection was lost before
    /// its exit status arrived: outcome unknown, not retried (at most once).
    pub(crate) const LOST: u8 = 123;
    /// distex could not reach any node able to run the command (transport failure).
    pub(crate) const TRANSPORT: u8 = 125;
    /// Interrupted by the user (Ctrl-C); SIGTERM and SIGHUP give 143 and 129
    /// (128 + the signal's number).
    pub(crate) const INTERRUPTED: u8 = 130;
}

/// Errors that stop a distex command before or while it does its work.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The configuration file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid: syntax, unknown key, bad value.
    #[error("{file}:{line}:{column}: {key}: {message}")]
    ConfigInvalid { file: String, line: usize, column: usize, key: String, message: String },
    /// The user asked for something that cannot work (bad flag combination, unknown node...).
    #[error("{0}")]
    Usage(String),
    /// Input data could not be read or understood.
    #[error("{0}")]
    Input(String),
    /// Filesystem or process trouble that is nobody's fault in particular.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The documented exit code for this error.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Error::ConfigRead { .. } | Error::ConfigInvalid { .. } | Error::Usage(_) | Error::Input(_) => exit::USAGE,
            Error::Io { .. } => exit::FAILED,
        }
    }

    /// A short machine-readable code used in JSON error objects.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Error::ConfigRead { .. } | Error::ConfigInvalid { .. } => "config",
            Error::Usage(_) => "usage",
            Error::Input(_) => "input",
            Error::Io { .. } => "io",
        }
    }

    /// Wraps an I/O error with what distex was doing when it happened.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

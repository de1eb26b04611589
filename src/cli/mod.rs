//! The command-line front end: parse flags, load configuration, call the
//! work in [`crate::commands`], render the result, pick the exit status.

mod args;
mod dispatch;
mod values;

use std::process::ExitCode;

use clap::Parser;

pub(crate) use args::Cli;

use crate::error::exit;

/// Entry point of the `distex` binary.
pub fn main() -> ExitCode {
    install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    match dispatch::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("distex: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// A bug must never show up as a Rust backtrace: say what happened in one
/// line, where, and that it is distex's fault.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".to_string());
        let place = info.location().map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
        eprintln!("distex: internal error: {message}{place}. This is a bug in distex; please report it.");
    }));
}

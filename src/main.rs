//! The `distex` binary: a thin shell around [`distex::cli::main`].
//!
//! Everything interesting lives in the library so that tests, benchmarks and
//! the hook share one implementation. `main` only turns the outcome into a
//! process exit status.

fn main() -> std::process::ExitCode {
    distex::cli::main()
}

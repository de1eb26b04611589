//! The `distex` binary: a thin shell around [`distex::main`].
//!
//! Everything lives in the library crate (`src/lib.rs`), which exports only
//! that entry point; it returns the process exit status.

fn main() -> std::process::ExitCode {
    distex::main()
}

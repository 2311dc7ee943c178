//! The `foxxy-bridge` binary: parse the command line, run, map the outcome to an exit
//! code (0 success, 1 failure, 2 bad usage). Everything else is in the library.

use std::process::ExitCode;

use clap::Parser;
use foxxy_bridge::{
    cli::Cli,
    commands::{self, Outcome, UsageError},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread runs everything: a proxied message then costs no hand-over between
    // threads (docs/performance.md compares it with the multi-threaded runtime).
    // Blocking work (file locks) goes to `spawn_blocking`, which this runtime has as well.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("foxxy-bridge: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(commands::run(cli));
    // Do not wait for blocked stdin reads or detached tasks: everything that matters
    // (children, logs) was ended or flushed by the command itself.
    runtime.shutdown_background();
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failure) => ExitCode::FAILURE,
        Err(error) if error.is::<UsageError>() => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

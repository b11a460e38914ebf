//! `modvm`: exit 0 when every test passed, 1 when a test failed, 2 for usage,
//! configuration or environment errors, 130 when interrupted; `modvm run`
//! passes the guest command's status through.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match modvm::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match modvm::cli::run(cli) {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(_) if modvm::children::interrupted() => ExitCode::from(130),
        Err(e) => {
            eprintln!("modvm: error: {}", modvm::cli::error_text(&e));
            ExitCode::from(2)
        }
    }
}

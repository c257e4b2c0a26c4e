//! The `stratbox` binary: parses arguments, sets up logging, runs a command.

use std::process::ExitCode;

use clap::Parser;
use stratbox::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Run { .. }) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let mut stdout = std::io::stdout();
    match stratbox::cli::run(cli, &mut stdout) {
        Ok(code) => code,
        Err(error) => {
            let error = anyhow::Error::from(error);
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

//! The `starling` binary.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use starling::cli::{Cli, Command};
use starling::commands::{NOT_HEALTHY_EXIT, Verdict};
use starling::{commands, logging, settings};
use starling_agent::{daemon, shutdown_signal};
use starling_client::lab;
use starling_seal::Keyring;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// One line an operator can act on: the error and its causes joined with
/// ": ", skipping causes our own messages already spell out.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Agent(args) => {
            logging::init(&args.logging).map_err(anyhow::Error::msg)?;
            let config = settings::agent(&args)?;
            runtime.block_on(daemon::run(config, shutdown_signal()))?;
        }
        Command::Status(args) => {
            if runtime.block_on(commands::print_status(&args))? == Verdict::NotHealthy {
                return Ok(ExitCode::from(NOT_HEALTHY_EXIT));
            }
        }
        Command::Nodes(args) => runtime.block_on(commands::print_nodes(&args))?,
        Command::Members(args) => runtime.block_on(commands::print_members(&args))?,
        Command::Overlay(args) => runtime.block_on(commands::print_overlay(&args))?,
        Command::History(args) => runtime.block_on(commands::print_history(&args))?,
        Command::Annotate(args) => runtime.block_on(commands::send_annotation(&args))?,
        Command::Probe(args) => {
            logging::init(&args.logging).map_err(anyhow::Error::msg)?;
            let config = settings::probe(&args)?;
            runtime.block_on(starling_probe::run_command(config, shutdown_signal()))?;
        }
        Command::Lab(args) => {
            runtime.block_on(lab::run(&settings::lab(&args), shutdown_signal()))?
        }
        Command::Keygen => println!("{}", Keyring::generate_key()),
    }
    Ok(ExitCode::SUCCESS)
}

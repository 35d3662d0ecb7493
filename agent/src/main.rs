//! The `starling` binary.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use starling_agent::cli::{Cli, Command};
use starling_agent::gossip::Keyring;
use starling_agent::{
    AgentSettings, bench, client, daemon, lab, logging, overlay, shutdown_signal,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
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

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Agent(args) => {
            logging::init(&args.logging).map_err(anyhow::Error::msg)?;
            let settings = AgentSettings::from_args(&args)?;
            runtime.block_on(daemon::run(settings, shutdown_signal()))?;
        }
        Command::Status(args) => runtime.block_on(client::print_status(&args))?,
        Command::Nodes(args) => runtime.block_on(client::print_nodes(&args))?,
        Command::Members(args) => runtime.block_on(client::print_members(&args))?,
        Command::Overlay(args) => runtime.block_on(client::print_overlay(&args))?,
        Command::History(args) => runtime.block_on(client::print_history(&args))?,
        Command::Annotate(args) => runtime.block_on(client::send_annotation(&args))?,
        Command::Probe(args) => {
            logging::init(&args.logging).map_err(anyhow::Error::msg)?;
            runtime.block_on(overlay::run_command(&args, shutdown_signal()))?;
        }
        Command::Lab(args) => runtime.block_on(lab::run(&args, shutdown_signal()))?,
        Command::Keygen => println!("{}", Keyring::generate_key()),
        Command::Bench(args) => runtime.block_on(bench::run(args))?,
    }
    Ok(())
}

//! Logging setup for the binary.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::{LogFormat, LoggingArgs};

/// Install the global subscriber. Logs go to stderr so that stdout stays
/// clean for command output (`starling members --output json`).
pub fn init(args: &LoggingArgs) -> Result<(), String> {
    let filter = EnvFilter::try_new(&args.filter)
        .map_err(|error| format!("--log {:?}: {error}", args.filter))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in log files.
        .with_ansi(std::io::stderr().is_terminal());
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

//! The `starling` binary's library half: the command line (`cli`), the
//! one place flags are checked and turned into each layer's config
//! (`settings`), and the query commands' printing. `main.rs` only
//! dispatches; tests call the same parser and settings.

pub mod cli;
pub mod commands;
pub mod logging;
pub mod settings;
mod tables;

pub use settings::ConfigError;

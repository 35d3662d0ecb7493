//! Command-line interface. Every agent flag also reads an environment
//! variable, so the DaemonSet can pass the downward API (`NODE_NAME`,
//! `HOST_IP`) without a wrapper script.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::gossip::Role;

/// starling: a peer-to-peer health monitor for Kubernetes clusters.
#[derive(Debug, Parser)]
#[command(name = "starling", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node agent: join the gossip cluster and serve the API.
    Agent(Box<AgentArgs>),
    /// Show the gossip membership as one agent sees it.
    Members(MembersArgs),
    /// Run a local cluster of real agents on loopback addresses.
    Lab(LabArgs),
    /// Print a new random gossip key (one line of base64) for
    /// --gossip-key-file.
    Keygen,
    /// Benchmark starling against the systems it replaces, on this machine
    /// (build with `cargo build --release -p starling-agent` first).
    Bench(crate::bench::BenchArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Clone, Debug, Args)]
pub struct AgentArgs {
    /// This node's name, as Kubernetes knows it.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,

    /// Address for gossip: UDP for SWIM, TCP (same port) for push-pull.
    #[arg(long, env = "STARLING_GOSSIP_BIND", default_value = "0.0.0.0:7946")]
    pub gossip_bind: SocketAddr,

    /// The IP other nodes reach this one at. Required when
    /// --gossip-bind is a wildcard address.
    #[arg(long, env = "HOST_IP")]
    pub host_ip: Option<IpAddr>,

    /// Address for the HTTP API and /metrics.
    #[arg(long, env = "STARLING_API_BIND", default_value = "0.0.0.0:7947")]
    pub api_bind: SocketAddr,

    /// The part this node plays.
    #[arg(long, env = "STARLING_ROLE", default_value = "worker", value_parser = parse_role)]
    pub role: Role,

    /// A seed to join, host:port or host (port 7946). Repeatable; the
    /// environment variable takes a comma-separated list.
    #[arg(long = "join", env = "STARLING_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,

    /// A DNS name whose every address is a seed (the DaemonSet's headless
    /// Service), name or name:port. Resolved and retried until one answers.
    #[arg(long, env = "STARLING_JOIN_DNS")]
    pub join_dns: Option<String>,

    /// The cluster keyring: one base64 key of 32 bytes per line, the
    /// first used to send, all accepted (see `starling keygen`).
    #[arg(long, env = "STARLING_GOSSIP_KEY_FILE")]
    pub gossip_key_file: Option<PathBuf>,

    /// Run gossip unencrypted and unauthenticated. Only for experiments.
    #[arg(
        long,
        env = "STARLING_INSECURE_GOSSIP",
        conflicts_with = "gossip_key_file"
    )]
    pub insecure_gossip: bool,

    /// Where the agent keeps its state (its incarnation counter now, its
    /// history later).
    #[arg(long, env = "STARLING_DATA_DIR", default_value = "/var/lib/starling")]
    pub data_dir: PathBuf,

    #[command(flatten)]
    pub logging: LoggingArgs,
}

#[derive(Clone, Debug, Args)]
pub struct LoggingArgs {
    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(
        long = "log",
        env = "STARLING_LOG",
        default_value = "info",
        global = true
    )]
    pub filter: String,

    /// Log format.
    #[arg(
        long,
        env = "STARLING_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(Clone, Debug, Args)]
pub struct MembersArgs {
    /// Any agent's API address (host:port).
    #[arg(long, env = "STARLING_ADDR", default_value = "127.0.0.1:7947")]
    pub addr: String,

    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Clone, Debug, Args)]
pub struct LabArgs {
    /// How many agents to start.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(1..=200))]
    pub nodes: u8,

    /// Loopback address of the first agent; the others count up from it.
    #[arg(long, default_value = "127.0.1.1")]
    pub first_ip: std::net::Ipv4Addr,

    /// Keep the lab's directory (keys, data, logs) after it stops.
    #[arg(long)]
    pub keep: bool,
}

fn parse_role(value: &str) -> Result<Role, String> {
    value.parse()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn agent_flags_parse_with_defaults() {
        let cli = Cli::try_parse_from([
            "starling",
            "agent",
            "--node-name",
            "n1",
            "--join",
            "a:7946",
            "--join",
            "b",
            "--insecure-gossip",
        ])
        .expect("valid arguments");
        let Command::Agent(args) = cli.command else {
            panic!("parsed the agent subcommand")
        };
        assert_eq!(args.join, vec!["a:7946", "b"]);
        assert_eq!(args.gossip_bind, "0.0.0.0:7946".parse().expect("literal"));
        assert_eq!(args.api_bind.port(), 7947);
        assert_eq!(args.role, Role::Worker);
    }

    #[test]
    fn a_key_file_and_insecure_mode_exclude_each_other() {
        let parsed = Cli::try_parse_from([
            "starling",
            "agent",
            "--node-name",
            "n1",
            "--insecure-gossip",
            "--gossip-key-file",
            "/k",
        ]);
        assert!(parsed.is_err());
    }
}

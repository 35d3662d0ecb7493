//! The query commands: ask the agents through the client, print for
//! people (tables) or scripts (`--output json`).

use starling_client::{self as client, ClientError, NodeFilter};
use starling_model::AnnotationRequest;
use starling_model::HistoryQuery;
use starling_seal::KeyringError;

use crate::cli::{AnnotateArgs, HistoryArgs, NodesArgs, Output, QueryArgs};
use crate::tables::{
    history_table, members_table, node_table, nodes_table, overlay_table, status_table,
};

/// The cluster's verdict, as `starling status` reports it in its exit
/// code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    NotHealthy,
}

/// `starling status`'s exit code when an agent answered that the cluster
/// is not healthy: apart from 1 (no answer, or another error) and 2 (bad
/// usage), so a script can tell "not healthy" from "could not ask".
pub const NOT_HEALTHY_EXIT: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("--gossip-key-file: {0}")]
    Key(#[from] KeyringError),
    #[error(
        "writing to the history requires the cluster key: pass --gossip-key-file \
         (or --insecure-gossip if the agents run without keys)"
    )]
    NoKey,
}

/// `starling members`.
pub async fn print_members(args: &QueryArgs) -> Result<(), ClientError> {
    print_as(
        args.output,
        &client::members(&args.addr.list).await?,
        members_table,
    );
    Ok(())
}

/// `starling status`: the verdict, the reasons, and a line per node.
/// Returns the verdict, so the exit code can carry it to scripts.
pub async fn print_status(args: &QueryArgs) -> Result<Verdict, ClientError> {
    let status = client::status(&args.addr.list).await?;
    print_as(args.output, &status, status_table);
    Ok(if status.healthy {
        Verdict::Healthy
    } else {
        Verdict::NotHealthy
    })
}

/// `starling overlay`: the pod network's reachability matrix.
pub async fn print_overlay(args: &QueryArgs) -> Result<(), ClientError> {
    print_as(
        args.output,
        &client::overlay(&args.addr.list).await?,
        overlay_table,
    );
    Ok(())
}

/// `starling nodes [NAME]`.
pub async fn print_nodes(args: &NodesArgs) -> Result<(), ClientError> {
    let addrs = &args.query.addr.list;
    match &args.name {
        None => {
            let filter = NodeFilter {
                status: args.status.clone(),
                node: args.node.clone(),
            };
            print_as(
                args.query.output,
                &client::nodes(addrs, &filter).await?,
                nodes_table,
            )
        }
        Some(name) => print_as(
            args.query.output,
            &client::node(addrs, name).await?,
            node_table,
        ),
    }
    Ok(())
}

/// `starling history`.
pub async fn print_history(args: &HistoryArgs) -> Result<(), ClientError> {
    let filter = HistoryQuery {
        node: args.node.clone(),
        kind: args.kind,
        check: args.check.clone(),
        since_unix_ms: args.since,
        until_unix_ms: args.until,
        cursor: args.cursor.clone(),
        limit: usize::from(args.limit),
    };
    let history = client::history(&args.query.addr.list, &filter).await?;
    print_as(args.query.output, &history, history_table);
    Ok(())
}

/// `starling annotate`.
pub async fn send_annotation(args: &AnnotateArgs) -> Result<(), CommandError> {
    let keyring = args.key.load()?.ok_or(CommandError::NoKey)?;
    let request = AnnotationRequest {
        node: args.node.clone(),
        message: args.message.clone(),
    };
    let ack = client::annotate(&args.addr.list, &keyring, &request).await?;
    println!("recorded as {} #{}", ack.origin, ack.seq);
    Ok(())
}

/// An API answer as pretty JSON for scripts, or as `table` for people.
fn print_as<T: serde::Serialize>(output: Output, response: &T, table: fn(&T) -> String) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(response).expect("API types serialize")
        ),
        Output::Table => print!("{}", table(response)),
    }
}

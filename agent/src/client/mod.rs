//! The CLI side of the API: ask any of the given agents, in turn, until
//! one answers; print for people or scripts.

mod tables;

use std::time::Duration;

use serde::de::DeserializeOwned;
use starling_web::{
    AnnotationAck, ErrorBody, HistoryResponse, MembersResponse, NodeResponse, NodesResponse,
    OverlayResponse, StatusResponse,
};

use crate::cli::{AnnotateArgs, HistoryArgs, NodesArgs, Output, QueryArgs};
use crate::gossip::{Keyring, KeyringError, Purpose};
use crate::replicate::AnnotationRequest;
pub use tables::{
    history_table, members_table, node_table, nodes_table, overlay_table, status_table,
};

/// Bounds how long the CLI waits for one agent before trying the next.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach a starling agent at {addr}: {cause}")]
    Unreachable { addr: String, cause: String },
    #[error("the agent at {addr} answered {status}: {message}")]
    Status {
        addr: String,
        status: reqwest::StatusCode,
        message: String,
    },
    #[error("no starling agent answered ({})", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    NoneAnswered(Vec<ClientError>),
    #[error("--gossip-key-file: {0}")]
    Key(#[from] KeyringError),
    #[error(
        "writing to the history requires the cluster key: pass --gossip-key-file \
         (or --insecure-gossip if the agents run without keys)"
    )]
    NoKey,
}

impl ClientError {
    /// Another agent may answer where this one did not: it was unreachable
    /// or failed (5xx). A refusal of the request itself (4xx) would be the
    /// same everywhere.
    fn another_may_answer(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Status { status, .. } => status.is_server_error(),
            _ => false,
        }
    }
}

/// `GET path` from the first of `addrs` that answers.
async fn get<T: DeserializeOwned>(
    addrs: &[String],
    path: &str,
    query: &[(&str, String)],
) -> Result<T, ClientError> {
    ask(addrs, |client, addr| {
        client.get(format!("http://{addr}{path}")).query(query)
    })
    .await
}

/// Try each agent in turn: the first answer wins. Each failure is reported
/// on stderr as it happens, so a person sees which nodes are gone.
async fn ask<T: DeserializeOwned>(
    addrs: &[String],
    request: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
) -> Result<T, ClientError> {
    // One client for every attempt (its TLS and connection setup is not
    // per address).
    let client = starling_checks::http_client()
        .timeout(TIMEOUT)
        .build()
        .map_err(|error| ClientError::Unreachable {
            addr: addrs.join(","),
            cause: describe(&error),
        })?;
    let mut failures = Vec::new();
    for addr in addrs {
        match send(addr, request(&client, addr)).await {
            Ok(answer) => return Ok(answer),
            Err(error) if error.another_may_answer() && addrs.len() > 1 => {
                eprintln!("{error}; trying the next address");
                failures.push(error);
            }
            Err(error) => return Err(error),
        }
    }
    match failures.len() {
        1 => Err(failures.remove(0)),
        _ => Err(ClientError::NoneAnswered(failures)),
    }
}

async fn send<T: DeserializeOwned>(
    addr: &str,
    request: reqwest::RequestBuilder,
) -> Result<T, ClientError> {
    let unreachable = |error: reqwest::Error| ClientError::Unreachable {
        addr: addr.to_owned(),
        cause: describe(&error),
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&body).map_or(body, |e| e.error);
        return Err(ClientError::Status {
            addr: addr.to_owned(),
            status,
            message,
        });
    }
    response.json().await.map_err(unreachable)
}

/// The innermost cause ("Connection refused"), not reqwest's nested
/// restatements of the URL.
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("no answer within {TIMEOUT:?}");
    }
    starling_checks::innermost_cause(error)
}

pub async fn members(addrs: &[String]) -> Result<MembersResponse, ClientError> {
    get(addrs, "/v1/members", &[]).await
}

pub async fn status(addrs: &[String]) -> Result<StatusResponse, ClientError> {
    get(addrs, "/v1/status", &[]).await
}

pub async fn overlay(addrs: &[String]) -> Result<OverlayResponse, ClientError> {
    get(addrs, "/v1/overlay", &[]).await
}

pub async fn history(args: &HistoryArgs) -> Result<HistoryResponse, ClientError> {
    let mut query: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    let optional = [
        ("node", args.node.clone()),
        ("kind", args.kind.clone()),
        ("check", args.check.clone()),
        ("since", args.since.map(|t| t.to_string())),
        ("until", args.until.map(|t| t.to_string())),
        ("cursor", args.cursor.clone()),
    ];
    query.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
    get(&args.query.addr.list, "/v1/history", &query).await
}

pub async fn annotate(
    addrs: &[String],
    keyring: &Keyring,
    request: &AnnotationRequest,
) -> Result<AnnotationAck, ClientError> {
    let body = crate::replicate::seal_json(keyring, Purpose::Annotation, request);
    ask(addrs, |client, addr| {
        client
            .post(format!("http://{addr}/v1/events"))
            .header("content-type", "application/octet-stream")
            .body(body.clone())
    })
    .await
}

/// `starling members`.
pub async fn print_members(args: &QueryArgs) -> Result<(), ClientError> {
    print_as(args.output, &members(&args.addr.list).await?, members_table);
    Ok(())
}

/// `starling status`: the verdict, the reasons, and a line per node.
pub async fn print_status(args: &QueryArgs) -> Result<(), ClientError> {
    print_as(args.output, &status(&args.addr.list).await?, status_table);
    Ok(())
}

/// `starling overlay`: the pod network's reachability matrix.
pub async fn print_overlay(args: &QueryArgs) -> Result<(), ClientError> {
    print_as(args.output, &overlay(&args.addr.list).await?, overlay_table);
    Ok(())
}

/// `starling nodes [NAME]`.
pub async fn print_nodes(args: &NodesArgs) -> Result<(), ClientError> {
    let addrs = &args.query.addr.list;
    match &args.name {
        None => {
            let nodes: NodesResponse = get(addrs, "/v1/nodes", &[]).await?;
            print_as(args.query.output, &nodes, nodes_table);
        }
        Some(name) => {
            // Path-segment encoding: node names are DNS labels, but a typo
            // must not turn into another path.
            let mut url = reqwest::Url::parse("http://x/v1/nodes/").expect("a literal URL");
            url.path_segments_mut()
                .expect("an http URL has path segments")
                .pop_if_empty()
                .push(name);
            let node: NodeResponse = get(addrs, url.path(), &[]).await?;
            print_as(args.query.output, &node, node_table);
        }
    }
    Ok(())
}

/// `starling history`.
pub async fn print_history(args: &HistoryArgs) -> Result<(), ClientError> {
    print_as(args.query.output, &history(args).await?, history_table);
    Ok(())
}

/// `starling annotate`.
pub async fn send_annotation(args: &AnnotateArgs) -> Result<(), ClientError> {
    let keyring = args.key.load()?.ok_or(ClientError::NoKey)?;
    let request = AnnotationRequest {
        node: args.node.clone(),
        message: args.message.clone(),
    };
    let ack = annotate(&args.addr.list, &keyring, &request).await?;
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

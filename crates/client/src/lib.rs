//! Talking to agents: ask any of the given agents, in turn, until one
//! answers, and decode the API's own types. [`lab`] launches a local
//! cluster of agent processes. No flag parser inside: the CLI, the lab and
//! the benchmarks all call it with plain values.

pub mod lab;

use std::time::Duration;

use serde::de::DeserializeOwned;
use starling_model::{
    AnnotationAck, ErrorBody, HistoryQuery, HistoryResponse, MAX_NODE_LIMIT, MembersResponse,
    NodeResponse, NodesResponse, OverlayResponse, StatusResponse,
};

use starling_model::AnnotationRequest;
use starling_seal::{Keyring, Purpose};

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
    #[error("the node list did not end within {0} pages; narrow it with --status or --node")]
    TooManyPages(usize),
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
        client.get(url(addr, path)).query(query)
    })
    .await
}

/// `path` on the agent at `addr`: `host:port` is plain HTTP, an address
/// that names its scheme (`https://host:port`) keeps it.
fn url(addr: &str, path: &str) -> String {
    if addr.contains("://") {
        format!("{addr}{path}")
    } else {
        format!("http://{addr}{path}")
    }
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

/// Every member, following the pages to the end.
pub async fn members(addrs: &[String]) -> Result<MembersResponse, ClientError> {
    every_page(
        addrs,
        "/v1/members",
        Vec::new(),
        |page: &mut MembersResponse| (&mut page.members, page.next_cursor.take()),
    )
    .await
}

/// Fetch `path` page by page until its `next_cursor` runs out, gathering
/// the items `split` names into the last page's answer.
async fn every_page<T, I>(
    addrs: &[String],
    path: &str,
    filters: Vec<(&'static str, String)>,
    split: impl Fn(&mut T) -> (&mut Vec<I>, Option<String>),
) -> Result<T, ClientError>
where
    T: DeserializeOwned,
{
    let mut cursor: Option<String> = None;
    let mut all = Vec::new();
    for _ in 0..MAX_NODE_PAGES {
        let mut query = filters.clone();
        query.push(("limit", MAX_NODE_LIMIT.to_string()));
        query.extend(cursor.take().map(|cursor| ("cursor", cursor)));
        let mut page: T = get(addrs, path, &query).await?;
        let (items, next) = split(&mut page);
        all.append(items);
        match next {
            Some(next) => cursor = Some(next),
            None => {
                *items = all;
                return Ok(page);
            }
        }
    }
    Err(ClientError::TooManyPages(MAX_NODE_PAGES))
}

pub async fn status(addrs: &[String]) -> Result<StatusResponse, ClientError> {
    get(addrs, "/v1/status", &[]).await
}

pub async fn overlay(addrs: &[String]) -> Result<OverlayResponse, ClientError> {
    get(addrs, "/v1/overlay", &[]).await
}

/// `GET /v1/history` with the same filters the agent parses back.
pub async fn history(
    addrs: &[String],
    query: &HistoryQuery,
) -> Result<HistoryResponse, ClientError> {
    get(addrs, "/v1/history", &query.to_params()).await
}

/// Which nodes `GET /v1/nodes` lists; `None` leaves a filter out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFilter {
    /// A verdict (`healthy`, `degraded`, `unreachable`, `unknown`) or
    /// `unhealthy` for all but healthy.
    pub status: Option<String>,
    /// Only nodes whose name contains this.
    pub node: Option<String>,
}

/// Pages a listing may take: 100,000 nodes at the largest page size.
const MAX_NODE_PAGES: usize = 100;

/// Every node `filter` admits, following the pages to the end.
pub async fn nodes(addrs: &[String], filter: &NodeFilter) -> Result<NodesResponse, ClientError> {
    let filters = [("status", &filter.status), ("node", &filter.node)]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.clone()?)))
        .collect();
    every_page(addrs, "/v1/nodes", filters, |page: &mut NodesResponse| {
        (&mut page.nodes, page.next_cursor.take())
    })
    .await
}

/// `GET /v1/nodes/{name}`.
pub async fn node(addrs: &[String], name: &str) -> Result<NodeResponse, ClientError> {
    // Path-segment encoding: node names are DNS labels, but a typo must
    // not turn into another path.
    let mut url = reqwest::Url::parse("http://x/v1/nodes/").expect("a literal URL");
    url.path_segments_mut()
        .expect("an http URL has path segments")
        .pop_if_empty()
        .push(name);
    get(addrs, url.path(), &[]).await
}

pub async fn annotate(
    addrs: &[String],
    keyring: &Keyring,
    request: &AnnotationRequest,
) -> Result<AnnotationAck, ClientError> {
    let body = starling_seal::seal_json(keyring, Purpose::Annotation, request);
    ask(addrs, |client, addr| {
        client
            .post(url(addr, "/v1/events"))
            .header("content-type", "application/octet-stream")
            .body(body.clone())
    })
    .await
}

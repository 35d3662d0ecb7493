//! The CLI side of the API: query one agent, print for people or scripts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use starling_web::{AnnotationAck, HistoryResponse, MembersResponse, StatusResponse};

use crate::cli::{AnnotateArgs, HistoryArgs, MembersArgs, Output};
use crate::gossip::{Keyring, KeyringError, Purpose};
use crate::replicate::AnnotationRequest;

/// Bounds how long the CLI waits for an agent that does not answer.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach a starling agent at {addr}: {cause}")]
    Unreachable { addr: String, cause: String },
    #[error("the agent at {addr} answered {status}: {body}")]
    Status {
        addr: String,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("--gossip-key-file: {0}")]
    Key(#[from] KeyringError),
    #[error(
        "writing to the history requires the cluster key: pass --gossip-key-file \
         (or --insecure-gossip if the agents run without keys)"
    )]
    NoKey,
}

pub async fn members(addr: &str) -> Result<MembersResponse, ClientError> {
    let client = http_client(addr)?;
    send(addr, client.get(format!("http://{addr}/v1/members"))).await
}

pub async fn status(addr: &str) -> Result<StatusResponse, ClientError> {
    let client = http_client(addr)?;
    send(addr, client.get(format!("http://{addr}/v1/status"))).await
}

pub async fn history(addr: &str, args: &HistoryArgs) -> Result<HistoryResponse, ClientError> {
    let mut query: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    let optional = [
        ("node", args.node.clone()),
        ("kind", args.kind.clone()),
        ("since", args.since.map(|t| t.to_string())),
        ("until", args.until.map(|t| t.to_string())),
    ];
    query.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
    let client = http_client(addr)?;
    send(
        addr,
        client
            .get(format!("http://{addr}/v1/history"))
            .query(&query),
    )
    .await
}

pub async fn annotate(
    addr: &str,
    keyring: &Keyring,
    request: &AnnotationRequest,
) -> Result<AnnotationAck, ClientError> {
    let body = crate::replicate::seal_json(keyring, Purpose::Annotation, request);
    let client = http_client(addr)?;
    send(
        addr,
        client
            .post(format!("http://{addr}/v1/events"))
            .header("content-type", "application/octet-stream")
            .body(body),
    )
    .await
}

fn http_client(addr: &str) -> Result<reqwest::Client, ClientError> {
    starling_checks::http_client()
        .timeout(TIMEOUT)
        .build()
        .map_err(|error| ClientError::Unreachable {
            addr: addr.to_owned(),
            cause: describe(&error),
        })
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
        return Err(ClientError::Status {
            addr: addr.to_owned(),
            status,
            body,
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

/// `starling members`.
pub async fn print_members(args: &MembersArgs) -> Result<(), ClientError> {
    let response = members(&args.addr).await?;
    print_as(args.output, &response, members_table);
    Ok(())
}

/// `starling status`: the verdict, the reasons, and a line per node.
pub async fn print_status(args: &MembersArgs) -> Result<(), ClientError> {
    let response = status(&args.addr).await?;
    print_as(args.output, &response, status_table);
    Ok(())
}

pub fn status_table(response: &StatusResponse) -> String {
    let verdict = if response.healthy {
        "healthy"
    } else {
        "NOT HEALTHY"
    };
    let mut out = format!("cluster: {verdict}\n");
    for reason in &response.reasons {
        out.push_str(&format!("  - {reason}\n"));
    }
    for check in &response.cluster_checks {
        out.push_str(&format!(
            "  {} (cluster, run by {}): {}: {}\n",
            check.check, check.node, check.status, check.message
        ));
    }
    let mut rows = vec![["NODE", "STATUS", "CHECKS"].map(str::to_owned)];
    for node in &response.nodes {
        let checks: Vec<String> = node
            .checks
            .iter()
            .map(|c| format!("{}={}", c.check, c.status))
            .collect();
        rows.push([node.name.clone(), node.status.clone(), checks.join(" ")]);
    }
    out.push_str(&table(&rows));
    let c = &response.counts;
    let side = if response.majority {
        "majority"
    } else {
        "MINORITY"
    };
    out.push_str(&format!(
        "answered by {} ({side} side): {} alive, {} suspect, {} down\n",
        response.answered_by, c.alive, c.suspect, c.down
    ));
    out
}

/// `starling history`.
pub async fn print_history(args: &HistoryArgs) -> Result<(), ClientError> {
    let response = history(&args.addr, args).await?;
    print_as(args.output, &response, history_table);
    Ok(())
}

/// `starling annotate`.
pub async fn send_annotation(args: &AnnotateArgs) -> Result<(), ClientError> {
    let keyring = args.key.load()?.ok_or(ClientError::NoKey)?;
    let request = AnnotationRequest {
        node: args.node.clone(),
        message: args.message.clone(),
    };
    let ack = annotate(&args.addr, &keyring, &request).await?;
    println!("recorded as {} #{}", ack.origin, ack.seq);
    Ok(())
}

pub fn history_table(response: &HistoryResponse) -> String {
    let mut rows = vec![
        [
            "TIME",
            "KIND",
            "NODE",
            "CHECK",
            "CHANGE",
            "MESSAGE",
            "RECORDED BY",
        ]
        .map(str::to_owned),
    ];
    for event in &response.events {
        let at = UNIX_EPOCH + Duration::from_millis(event.at_unix_ms);
        let change = match (&event.old_state, &event.new_state) {
            (Some(old), Some(new)) => format!("{old}→{new}"),
            (None, Some(new)) => new.clone(),
            _ => String::new(),
        };
        rows.push([
            humantime::format_rfc3339_millis(at).to_string(),
            event.kind.clone(),
            event.node.clone(),
            event.check.clone().unwrap_or_default(),
            change,
            event.message.clone(),
            event.observer.clone(),
        ]);
    }
    let mut out = table(&rows);
    out.push_str(&format!(
        "{} events, newest first, answered by {}\n",
        response.events.len(),
        response.answered_by
    ));
    out
}

pub fn members_table(response: &MembersResponse) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut rows = vec![[
        "NAME".to_owned(),
        "STATE".to_owned(),
        "FOR".to_owned(),
        "ADDRESS".to_owned(),
        "ROLE".to_owned(),
        "INCARNATION".to_owned(),
    ]];
    for member in &response.members {
        rows.push([
            member.name.clone(),
            member.state.clone(),
            age(now.saturating_sub(member.since_unix_ms)),
            member.addr.clone(),
            member.role.clone(),
            member.incarnation.to_string(),
        ]);
    }
    let mut out = table(&rows);
    let c = &response.counts;
    out.push_str(&format!(
        "answered by {}: {} alive, {} suspect, {} down, {} left\n",
        response.answered_by, c.alive, c.suspect, c.down, c.left
    ));
    out
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

/// Left-aligned columns two spaces apart, widths by characters.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn age(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

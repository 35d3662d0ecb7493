//! The CLI side of the API: query one agent, print for people or scripts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use starling_web::MembersResponse;

use crate::cli::{MembersArgs, Output};

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
}

pub async fn members(addr: &str) -> Result<MembersResponse, ClientError> {
    let unreachable = |error: reqwest::Error| ClientError::Unreachable {
        addr: addr.to_owned(),
        cause: describe(&error),
    };
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(unreachable)?;
    let url = format!("http://{addr}/v1/members");
    let response = client.get(&url).send().await.map_err(unreachable)?;
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
    let mut cause: &dyn std::error::Error = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// `starling members`.
pub async fn print_members(args: &MembersArgs) -> Result<(), ClientError> {
    let response = members(&args.addr).await?;
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&response).expect("API types serialize")
        ),
        Output::Table => print!("{}", members_table(&response)),
    }
    Ok(())
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
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    let c = &response.counts;
    out.push_str(&format!(
        "answered by {}: {} alive, {} suspect, {} down, {} left\n",
        response.answered_by, c.alive, c.suspect, c.down, c.left
    ));
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

//! One sealed request over HTTP and the sealed bytes of its answer: the
//! transport of anti-entropy pulls, of the aggregator's streams, health
//! tables and forwarded history, and of the overlay probe's reports.
//! Sealing and opening stay with the callers, who know the purposes and
//! what to check.

use std::time::Duration;

/// Why a peer gave no answer to open.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// No connection, or no answer in time.
    #[error("{0}")]
    Unreachable(String),
    /// It answered with an error status (a wrong key, a refused request).
    #[error("refused ({status}): {body}")]
    Refused {
        status: reqwest::StatusCode,
        body: String,
    },
}

/// POST `sealed` to `url`; the answer's sealed bytes. `timeout` is the
/// client's, named in the error when it runs out.
pub async fn post_sealed(
    client: &reqwest::Client,
    url: String,
    sealed: Vec<u8>,
    timeout: Duration,
) -> Result<Vec<u8>, PostError> {
    let unreachable = |error: reqwest::Error| {
        PostError::Unreachable(if error.is_timeout() {
            format!("no answer within {timeout:?}")
        } else {
            crate::innermost_cause(&error)
        })
    };
    let response = client
        .post(url)
        .header("content-type", "application/octet-stream")
        .body(sealed)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(PostError::Refused { status, body });
    }
    Ok(response.bytes().await.map_err(unreachable)?.to_vec())
}

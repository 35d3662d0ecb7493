//! One sealed request to an aggregator and its sealed answer.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use starling_checks::{PostError, post_sealed};
use starling_seal::{Keyring, Purpose};

use crate::wire::{
    HealthReply, HealthRequest, StreamReply, StreamRequest, WindowReply, WindowRequest,
};

/// A stream batch or a health table page is about a megabyte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why an aggregator did not answer usefully.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("{aggregator}: {cause}")]
    Unreachable {
        aggregator: SocketAddr,
        cause: String,
    },
    #[error("{aggregator} refused ({status}): {body}")]
    Refused {
        aggregator: SocketAddr,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("{aggregator} answered something we cannot open: {cause}")]
    BadReply {
        aggregator: SocketAddr,
        cause: String,
    },
    #[error("local history: {0}")]
    Store(#[from] starling_history::StoreError),
}

/// The HTTP client every exchange with an aggregator uses.
pub fn client() -> reqwest::Client {
    starling_checks::agent_client()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .expect("a plain-HTTP client with a preconfigured TLS backend always builds")
}

/// A sealed channel: which purpose each way, and where.
struct Channel {
    path: &'static str,
    request: Purpose,
    reply: Purpose,
}

async fn exchange<Q: Serialize, A: DeserializeOwned>(
    client: &reqwest::Client,
    keyring: &Keyring,
    aggregator: SocketAddr,
    channel: &Channel,
    request: &Q,
) -> Result<A, ExchangeError> {
    let body = starling_seal::seal_json(keyring, channel.request, request);
    let url = format!("http://{aggregator}{}", channel.path);
    let sealed = post_sealed(client, url, body, REQUEST_TIMEOUT)
        .await
        .map_err(|error| match error {
            PostError::Unreachable(cause) => ExchangeError::Unreachable { aggregator, cause },
            PostError::Refused { status, body } => ExchangeError::Refused {
                aggregator,
                status,
                body,
            },
        })?;
    starling_seal::open_json(keyring, channel.reply, sealed).map_err(|error| {
        ExchangeError::BadReply {
            aggregator,
            cause: error.to_string(),
        }
    })
}

const STREAM: Channel = Channel {
    path: "/v1/stream",
    request: Purpose::StreamRequest,
    reply: Purpose::StreamReply,
};

const HEALTH: Channel = Channel {
    path: "/v1/health-table",
    request: Purpose::HealthRequest,
    reply: Purpose::HealthReply,
};

const WINDOW: Channel = Channel {
    path: "/v1/window",
    request: Purpose::WindowRequest,
    reply: Purpose::WindowReply,
};

/// One stream to `aggregator`, as a node's streamer sends it each round.
pub async fn send_stream(
    client: &reqwest::Client,
    keyring: &Keyring,
    aggregator: SocketAddr,
    request: &StreamRequest,
) -> Result<StreamReply, ExchangeError> {
    exchange(client, keyring, aggregator, &STREAM, request).await
}

/// One page of `aggregator`'s health table, as a node's puller asks it.
pub async fn pull_health(
    client: &reqwest::Client,
    keyring: &Keyring,
    aggregator: SocketAddr,
    request: &HealthRequest,
) -> Result<HealthReply, ExchangeError> {
    exchange(client, keyring, aggregator, &HEALTH, request).await
}

/// The newest events of `aggregator`'s log, as a node's window asks them.
pub async fn pull_window(
    client: &reqwest::Client,
    keyring: &Keyring,
    aggregator: SocketAddr,
    request: &WindowRequest,
) -> Result<WindowReply, ExchangeError> {
    exchange(client, keyring, aggregator, &WINDOW, request).await
}

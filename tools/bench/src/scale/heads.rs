//! The HTTP heads around one anti-entropy pull, measured on the real
//! client and server: the simulation counts sealed bodies itself, but the
//! heads are whatever reqwest and hyper write, so they are taken from one
//! real exchange rather than assumed.
//!
//! Two fresh stores agree (neither holds a row), so the real `pull_from`
//! makes exactly the one exchange every idle pull makes: its fingerprint
//! and the answer "same". A proxy between them on loopback keeps the bytes
//! each way; a head ends at the first blank line.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use starling_history::Store;
use starling_replicate::ReplicationMetrics;
use starling_replicate::sim::HttpHeads;
use starling_seal::Keyring;
use starling_web::{AgentView, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::BenchError;

/// Serves `/v1/sync` from a store, as the agent does; nothing else.
struct SyncOnly {
    store: Store,
    keyring: Arc<Keyring>,
    metrics: ReplicationMetrics,
}

impl AgentView for SyncOnly {
    crate::stand_in::quiet_agent!("heads");

    fn sync(&self, sealed: Bytes) -> Reply<Vec<u8>> {
        let (store, keyring, metrics) = (
            self.store.clone(),
            Arc::clone(&self.keyring),
            self.metrics.clone(),
        );
        Box::pin(async move {
            starling_replicate::answer_sync(&store, &keyring, &metrics, sealed).await
        })
    }
}

fn fail(what: &str) -> impl Fn(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io {
        what: format!("measuring the HTTP heads of a sync: {what}"),
        source,
    }
}

pub async fn measure() -> Result<HttpHeads, BenchError> {
    let dir = tempfile::tempdir().map_err(fail("a temporary directory"))?;
    let keyring =
        Arc::new(Keyring::parse(&Keyring::generate_key()).expect("a freshly generated key parses"));
    let asker = crate::history::open(&dir.path().join("asker.db"), "asker")?;
    let answerer = crate::history::open(&dir.path().join("answerer.db"), "answerer")?;
    let view = Arc::new(SyncOnly {
        store: answerer,
        keyring: Arc::clone(&keyring),
        metrics: ReplicationMetrics::default(),
    });
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = TcpListener::bind(loopback).await.map_err(fail("bind"))?;
    let server_addr = server.local_addr().map_err(fail("bind"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(starling_web::serve(server, view, async {
        let _ = stopped.await;
    }));
    let proxy = TcpListener::bind(loopback).await.map_err(fail("bind"))?;
    let proxy_addr = proxy.local_addr().map_err(fail("bind"))?;
    let relay = tokio::spawn(relay_one(proxy, server_addr));
    let pulled =
        starling_replicate::pull_from(&starling_replicate::client(), proxy_addr, &asker, &keyring)
            .await
            .map_err(|error| BenchError::Scale(format!("the measured sync failed: {error}")))?;
    let _ = stop.send(());
    let _ = serving.await;
    let (up, down) = relay
        .await
        .expect("the relay task does not panic")
        .map_err(fail("relay"))?;
    if !pulled.in_sync {
        return Err(BenchError::Scale(
            "two empty stores did not agree in one exchange".to_owned(),
        ));
    }
    Ok(HttpHeads {
        request: head_len(&up)?,
        response: head_len(&down)?,
    })
}

/// The bytes up to and including the blank line that ends an HTTP head.
fn head_len(bytes: &[u8]) -> Result<u64, BenchError> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at as u64 + 4)
        .ok_or_else(|| BenchError::Scale("a sync message without an HTTP head".to_owned()))
}

/// Relay one connection to `server`; what went each way, once both ends
/// closed.
async fn relay_one(proxy: TcpListener, server: SocketAddr) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let (client, _) = proxy.accept().await?;
    let upstream = TcpStream::connect(server).await?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = upstream.into_split();
    let up = tokio::spawn(copy_keeping(client_read, server_write));
    let down = copy_keeping(server_read, client_write).await?;
    let up = up.await.expect("the copy task does not panic")?;
    Ok((up, down))
}

async fn copy_keeping(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = from.read(&mut buf).await?;
        if read == 0 {
            to.shutdown().await?;
            return Ok(kept);
        }
        kept.extend_from_slice(&buf[..read]);
        to.write_all(&buf[..read]).await?;
    }
}

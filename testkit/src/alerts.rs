//! A stand-in for Alertmanager and a webhook receiver: an HTTP server that
//! records every POST (path, headers, JSON body) and answers a status the
//! test sets, so a test can take the receiver "down" (503) and back.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as received.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Received {
    pub path: String,
    /// Lowercase header names.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON, or as a JSON string when it was not JSON.
    pub body: serde_json::Value,
    /// The body as sent, for signatures.
    pub raw: String,
    /// The status answered: 2xx means the sender may consider it delivered.
    pub status: u16,
}

impl Received {
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Debug)]
struct Shared {
    received: Mutex<Vec<Received>>,
    status: Mutex<u16>,
    /// Each request also appended here as a JSON line (for a receiver
    /// process whose test reads the file).
    log: Option<PathBuf>,
}

/// The receiver; stops serving when dropped.
#[derive(Debug)]
pub struct AlertReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl AlertReceiver {
    /// Binds 127.0.0.1 on a free port.
    pub async fn start() -> io::Result<AlertReceiver> {
        AlertReceiver::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), None).await
    }

    /// Binds `addr`; with `log`, every request is also appended to that file.
    pub async fn start_on(addr: SocketAddr, log: Option<PathBuf>) -> io::Result<AlertReceiver> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            status: Mutex::new(200),
            log,
        });
        let app = Router::new()
            .fallback(record)
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "alert receiver stopped serving");
            }
        });
        Ok(AlertReceiver {
            addr,
            shared,
            server,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer every request from now on with `status` (200 by default).
    pub fn answer(&self, status: u16) {
        *self.shared.status.lock().expect("receiver lock") = status;
    }

    /// Every request so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("receiver lock").clone()
    }

    /// The requests answered 2xx to `path`.
    pub fn accepted(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.accepted() && r.path == path)
            .collect()
    }
}

impl Drop for AlertReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Read a receiver process's log: every request, oldest first. A line
/// still being written is skipped.
pub fn read_received_log(path: &std::path::Path) -> Vec<Received> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

async fn record(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let status = *shared.status.lock().expect("receiver lock");
    let raw = String::from_utf8_lossy(&body).into_owned();
    let body =
        serde_json::from_slice(&body).unwrap_or_else(|_| serde_json::Value::String(raw.clone()));
    let received = Received {
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        raw,
        status,
    };
    if let Some(path) = &shared.log {
        let line = serde_json::to_string(&received).expect("a request serializes");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| writeln!(file, "{line}"));
        if let Err(error) = written {
            eprintln!(
                "alert receiver: cannot append to {}: {error}",
                path.display()
            );
        }
    }
    shared
        .received
        .lock()
        .expect("receiver lock")
        .push(received);
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

//! The accept loop: HTTP/1.1 with the limits a node agent needs when a
//! misbehaving client, scanner or overloaded network meets it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::routes::router;
use crate::view::AgentView;

/// A client has this long to send its request headers; a slow-loris
/// connection cannot hold a slot longer. hyper starts it as soon as a
/// connection waits for a request, so it also closes idle keep-alive
/// connections: agents' clients drop theirs sooner (`agent_client`).
const HEADER_READ_TIMEOUT: Duration = starling_model::IDLE_CONNECTION_CLOSE;
/// Connections served at once. Each is cheap, but a bound keeps a flood
/// from exhausting file descriptors the gossip sockets and SQLite need.
const MAX_CONNECTIONS: usize = 512;
/// After shutdown is asked for, in-flight requests get this long.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serve until `shutdown` completes, then let in-flight requests finish
/// (up to `DRAIN_TIMEOUT`).
pub async fn serve(
    listener: TcpListener,
    view: Arc<dyn AgentView>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = TowerToHyperService::new(router(view));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => {
                slot.expect("the connection semaphore is never closed")
            }
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors or a connection reset before
                    // accept: transient, and not the listener's end.
                    tracing::warn!(%error, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP requests still running after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    Ok(())
}

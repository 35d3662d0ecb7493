//! The HTTP surface against a fixed view, over a real socket: what only a
//! connection shows (liveness over the wire, the header-read timeout,
//! graceful shutdown).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use starling_model::{ErrorBody, Member, MembersResponse, StateCounts};
use starling_web::{AgentView, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct FixedView {
    live: AtomicBool,
}

impl AgentView for FixedView {
    fn members(&self) -> MembersResponse {
        MembersResponse {
            answered_by: "n1".into(),
            answered_at_unix_ms: 1,
            counts: StateCounts {
                alive: 1,
                ..StateCounts::default()
            },
            local_health: 0,
            members: vec![Member {
                name: "n1".into(),
                addr: "127.0.0.1:7946".into(),
                incarnation: 3,
                role: "worker".into(),
                api_addr: None,
                probe_addr: None,
                state: "alive".into(),
                since_unix_ms: 1,
            }],
        }
    }

    fn metrics(&self) -> Reply<String> {
        Box::pin(async { Ok("# EOF\n".into()) })
    }

    fn live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

#[tokio::test]
async fn serves_members_metrics_and_liveness() {
    let view = Arc::new(FixedView {
        live: AtomicBool::new(true),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback bind");
    let base = format!("http://{}", listener.local_addr().expect("bound"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(starling_web::serve(listener, view.clone(), async {
        let _ = stopped.await;
    }));
    let client = starling_checks::http_client()
        .build()
        .expect("a plain HTTP client");

    let members: MembersResponse = client
        .get(format!("{base}/v1/members"))
        .send()
        .await
        .expect("reachable")
        .json()
        .await
        .expect("members JSON");
    assert_eq!(members, view.members());

    let metrics = client
        .get(format!("{base}/metrics"))
        .header("accept", "application/openmetrics-text")
        .send()
        .await
        .expect("reachable");
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/openmetrics-text")
    );

    let live = client
        .get(format!("{base}/livez"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(live.status(), 200);
    view.live.store(false, Ordering::SeqCst);
    let dead = client
        .get(format!("{base}/livez"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(dead.status(), 503);

    let missing = client
        .get(format!("{base}/v1/nope"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(missing.status(), 404);
    let body: ErrorBody = missing.json().await.expect("error JSON");
    assert!(!body.error.is_empty());

    stop.send(()).expect("server still running");
    server.await.expect("joins").expect("clean shutdown");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let view = Arc::new(FixedView {
        live: AtomicBool::new(true),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback bind");
    let addr = listener.local_addr().expect("bound");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(starling_web::serve(listener, view, async {
        let _ = stopped.await;
    }));

    let mut slow = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    slow.write_all(b"GET /v1/members HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("writes");
    // The server closes the connection (after answering 408 or not at
    // all) instead of waiting for the rest forever.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the connection was still open after 15 s of incomplete headers"
    );

    stop.send(()).expect("server still running");
    server.await.expect("joins").expect("clean shutdown");
}

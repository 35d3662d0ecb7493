//! The replicated history with real agents in this process on 127.0.0.1:
//! push, pull, restarts, and hostile sync requests.

use std::time::Duration;

use starling_model::AnnotationRequest;

use starling_agent::daemon::{self, RunningAgent};
use starling_client as client;
use starling_history::{
    Event, EventFilter, EventKind, HistoryMetrics, NewEvent, Store, StoreConfig, VersionVector,
};
use starling_model::unix_ms_now;
use starling_seal::{Keyring, Purpose, Stamp, open_json, seal, seal_stamped};

use crate::support::agents;
use agents::{ANY_PORT, AgentProcess, PATIENCE, agent, keyring, sees_alive, settings};

async fn note(agent: &RunningAgent, key: &Keyring, message: &str) -> (String, u64) {
    let request = AnnotationRequest {
        node: None,
        message: message.to_owned(),
    };
    let ack = client::annotate(&[agent.api_addr.to_string()], key, &request)
        .await
        .expect("the agent records the annotation");
    (ack.origin, ack.seq)
}

async fn events(agent: &RunningAgent) -> Vec<Event> {
    agent
        .history
        .events(EventFilter {
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .expect("history readable")
}

async fn holds(agent: &RunningAgent, origin: &str, seq: u64) -> bool {
    events(agent)
        .await
        .iter()
        .any(|e| e.origin == origin && e.seq == seq)
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within {PATIENCE:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotation_reaches_the_other_agent_and_both_record_their_joins() {
    let key = keyring();
    let (a, _da) = agent("a", &key, None).await;
    let (b, _db) = agent("b", &key, Some(a.gossip_addr)).await;
    sees_alive(&a, 1).await;
    let (origin, seq) = note(&a, &key, "maintenance: draining a").await;
    eventually("b holds a's annotation", async || {
        holds(&b, &origin, seq).await
    })
    .await;
    let at_b = events(&b).await;
    let note = at_b
        .iter()
        .find(|e| e.origin == origin && e.seq == seq)
        .expect("held");
    assert_eq!(note.kind, EventKind::Annotation);
    assert_eq!(note.node, "a");
    assert_eq!(note.message, "maintenance: draining a");
    eventually("b holds both joins", async || {
        let joins: Vec<String> = events(&b)
            .await
            .into_iter()
            .filter(|e| e.kind == EventKind::Membership && e.new_state.as_deref() == Some("alive"))
            .map(|e| e.node)
            .collect();
        joins.contains(&"a".to_owned()) && joins.contains(&"b".to_owned())
    })
    .await;
    a.shutdown().await.expect("clean shutdown");
    b.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_in_sync_exchange_one_fingerprint_and_a_row_push_never_carried_is_pulled() {
    let key = keyring();
    let (b, _db) = agent("b", &key, None).await;
    // A bare store with no replication of its own, so every pull is ours.
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("history.db");
    let store = tokio::task::spawn_blocking(move || {
        Store::open(
            &path,
            "reader",
            StoreConfig::default(),
            HistoryMetrics::default(),
        )
    })
    .await
    .expect("opens")
    .expect("opens");
    let http = starling_replicate::client();
    let pull = async || {
        starling_replicate::pull_from(&http, b.api_addr, &store, &key)
            .await
            .expect("b answers the pull")
    };
    let first = pull().await;
    assert!(!first.in_sync && first.rows > 0, "{first:?}");
    let again = pull().await;
    assert!(again.in_sync && again.rows == 0, "{again:?}");
    // A row b recorded without pushing it: only pull can carry it.
    let unpushed = b
        .history
        .record(NewEvent {
            at_unix_ms: unix_ms_now(),
            kind: EventKind::Annotation,
            node: "b".into(),
            check: None,
            old_state: None,
            new_state: None,
            message: "never pushed".into(),
            dedupe_key: None,
        })
        .await
        .expect("recorded");
    let pulled = pull().await;
    assert_eq!(
        (pulled.in_sync, pulled.rows, pulled.batches),
        (false, 1, 1),
        "the one differing slice brought the one row"
    );
    let vector = store.version_vector().await.expect("reads");
    assert_eq!(vector.get(&unpushed.origin), Some(&unpushed.seq));
    assert!(pull().await.in_sync);
    store.close().await;
    b.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_node_catches_up_by_pull_and_a_leave_is_recorded_once() {
    let key = keyring();
    let (a, _da) = agent("a", &key, None).await;
    let mut written = Vec::new();
    for i in 0..50 {
        written.push(note(&a, &key, &format!("before b existed #{i}")).await);
    }
    let (b, _db) = agent("b", &key, Some(a.gossip_addr)).await;
    let (c, _dc) = agent("c", &key, Some(a.gossip_addr)).await;
    eventually(
        "b pulled everything a wrote before it existed",
        async || {
            let held = events(&b).await;
            written
                .iter()
                .all(|(o, s)| held.iter().any(|e| &e.origin == o && e.seq == *s))
        },
    )
    .await;
    sees_alive(&b, 2).await;
    c.shutdown().await.expect("clean shutdown");
    let left = async |agent: &RunningAgent| {
        events(agent)
            .await
            .into_iter()
            .filter(|e| e.node == "c" && e.new_state.as_deref() == Some("left"))
            .count()
    };
    eventually("a and b hold c's leave", async || {
        left(&a).await >= 1 && left(&b).await >= 1
    })
    .await;
    // The fallback recorders wait out their grace; then still one row.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(left(&a).await, 1, "{:#?}", events(&a).await);
    assert_eq!(left(&b).await, 1);
    a.shutdown().await.expect("clean shutdown");
    b.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_keeps_its_history_and_its_sequence_numbers() {
    let key = keyring();
    let data = tempfile::tempdir().expect("temp dir");
    let first = daemon::start(settings("a", &key, ANY_PORT, vec![], &data))
        .await
        .expect("starts");
    let (origin, seq) = note(&first, &key, "before the restart").await;
    first.shutdown().await.expect("clean shutdown");
    let second = daemon::start(settings("a", &key, ANY_PORT, vec![], &data))
        .await
        .expect("restarts on the same data dir");
    assert!(holds(&second, &origin, seq).await, "history kept");
    let (again, next) = note(&second, &key, "after the restart").await;
    assert_eq!(again, origin, "same log");
    // In between: our "left" (first run) and "joined" (second run).
    assert_eq!(next, seq + 3, "no sequence number reused or skipped");
    second.shutdown().await.expect("clean shutdown");
}

/// Everything an agent holds, to show a refused request changed nothing.
async fn snapshot(agent: &RunningAgent) -> (VersionVector, Vec<Event>) {
    (
        agent.history.version_vector().await.expect("vector"),
        events(agent).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sync_and_annotation_requests_get_a_4xx_and_change_nothing() {
    let key = keyring();
    let (a, _da) = agent("a", &key, None).await;
    note(&a, &key, "something to protect").await;
    let before = snapshot(&a).await;
    let http = starling_checks::http_client()
        .build()
        .expect("a plain HTTP client");
    let post = async |path: &str, body: Vec<u8>| {
        let response = http
            .post(format!("http://{}{path}", a.api_addr))
            .body(body)
            .send()
            .await
            .expect("the agent answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        (status, text)
    };
    let sealed = |keyring: &Keyring, purpose, json: &[u8]| {
        seal_stamped(keyring, purpose, Stamp::new(unix_ms_now()), json)
    };
    let unstamped = |keyring: &Keyring, purpose, json: &[u8]| {
        let mut out = Vec::new();
        seal(keyring, purpose, json, &mut out);
        out
    };
    let minute_ago = Stamp::new(unix_ms_now() - 61_000);
    let request = br#"{"vector":{},"max_rows":10}"#;
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "wrong key",
            "/v1/sync",
            sealed(&keyring(), Purpose::SyncRequest, request),
            401,
            "cluster key",
        ),
        (
            "plain JSON",
            "/v1/sync",
            request.to_vec(),
            401,
            "cluster key",
        ),
        (
            "a reply replayed as a request",
            "/v1/sync",
            sealed(&key, Purpose::SyncReply, request),
            401,
            "cluster key",
        ),
        (
            "unstamped, as a release before the stamp sealed it",
            "/v1/sync",
            unstamped(&key, Purpose::SyncRequest, request),
            409,
            "no stamp",
        ),
        (
            "sealed more than a minute ago",
            "/v1/sync",
            seal_stamped(&key, Purpose::SyncRequest, minute_ago, request),
            409,
            "more than 60s",
        ),
        (
            "annotation, sealed more than a minute ago",
            "/v1/events",
            seal_stamped(
                &key,
                Purpose::Annotation,
                minute_ago,
                br#"{"message":"old"}"#,
            ),
            409,
            "more than 60s",
        ),
        (
            "huge body",
            "/v1/sync",
            vec![b'x'; (1 << 20) + 1024],
            413,
            "length limit",
        ),
        (
            "garbage JSON",
            "/v1/sync",
            sealed(&key, Purpose::SyncRequest, b"{\"vector\": [1, 2"),
            400,
            "malformed",
        ),
        (
            "unknown field",
            "/v1/sync",
            sealed(
                &key,
                Purpose::SyncRequest,
                br#"{"vector":{},"max_rows":1,"x":1}"#,
            ),
            400,
            "malformed",
        ),
        (
            "malformed origin",
            "/v1/sync",
            sealed(
                &key,
                Purpose::SyncRequest,
                br#"{"vector":{"'; DROP TABLE events":1},"max_rows":1}"#,
            ),
            400,
            "origin",
        ),
        (
            "a fingerprint cut in no slices",
            "/v1/sync",
            sealed(
                &key,
                Purpose::SyncRequest,
                br#"{"vector":{},"max_rows":1,"fingerprint":{"whole":1,"buckets":0}}"#,
            ),
            400,
            "slices",
        ),
        (
            "rows of a slice past the cut",
            "/v1/sync",
            sealed(
                &key,
                Purpose::SyncRequest,
                br#"{"vector":{},"max_rows":1,"only":{"buckets":4,"slices":[9]}}"#,
            ),
            400,
            "past the last",
        ),
        (
            "annotation, wrong key",
            "/v1/events",
            sealed(&keyring(), Purpose::Annotation, br#"{"message":"forged"}"#),
            401,
            "cluster key",
        ),
        (
            "annotation, empty",
            "/v1/events",
            sealed(&key, Purpose::Annotation, br#"{"message":"  "}"#),
            400,
            "message",
        ),
        (
            "annotation about a node that never was",
            "/v1/events",
            sealed(
                &key,
                Purpose::Annotation,
                br#"{"node":"nosuch","message":"a typo"}"#,
            ),
            404,
            "no node named",
        ),
        (
            "annotation, too long",
            "/v1/events",
            sealed(
                &key,
                Purpose::Annotation,
                format!(r#"{{"message":"{}"}}"#, "x".repeat(600)).as_bytes(),
            ),
            400,
            "message",
        ),
        (
            "annotation, huge",
            "/v1/events",
            vec![b'x'; 20 << 10],
            413,
            "length limit",
        ),
    ];
    for (case, path, body, status, says) in cases {
        let (got, text) = post(path, body).await;
        assert_eq!(got, status, "{case}: {text}");
        assert!(
            text.contains("\"error\""),
            "{case}: JSON error body, got {text}"
        );
        assert!(text.contains(says), "{case}: {text:?} should say {says:?}");
    }
    assert_eq!(
        snapshot(&a).await,
        before,
        "refused requests changed nothing"
    );

    // Origins we never heard of are not an error (the requester can be
    // ahead of us after a partition): answered, named, and ignored.
    let unknown = br#"{"vector":{"ghost#0123456789abcdef":7},"max_rows":10}"#;
    let (status, _) = {
        let response = http
            .post(format!("http://{}/v1/sync", a.api_addr))
            .body(sealed(&key, Purpose::SyncRequest, unknown))
            .send()
            .await
            .expect("answers");
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("body").to_vec();
        let reply: serde_json::Value =
            open_json(&key, Purpose::SyncReply, body).expect("the answer is sealed with our key");
        assert_eq!(
            reply["unknown_origins"],
            serde_json::json!(["ghost#0123456789abcdef"])
        );
        assert!(
            !reply["batch"]["events"]
                .as_array()
                .expect("rows")
                .is_empty()
        );
        (status, ())
    };
    assert_eq!(status, 200);
    assert_eq!(
        snapshot(&a).await,
        before,
        "an answered sync changes nothing either"
    );
    a.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn history_refuses_an_unknown_node_and_an_empty_range_as_nodes_does() {
    let key = keyring();
    let (a, _da) = agent("a", &key, None).await;
    let (b, _db) = agent("b", &key, Some(a.gossip_addr)).await;
    sees_alive(&a, 1).await;
    let http = starling_checks::http_client()
        .build()
        .expect("a plain HTTP client");
    let get = async |query: &str| {
        let response = http
            .get(format!("http://{}/v1/history?{query}", a.api_addr))
            .send()
            .await
            .expect("the agent answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("a body"))
    };
    let (status, text) = get("node=nosuch").await;
    assert_eq!(status, 404, "{text}");
    assert!(
        text.contains("no node named") && text.contains("nosuch"),
        "{text}"
    );
    let (status, text) = get("since=2000&until=1000").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("is not before until"), "{text}");
    // Known nodes answer, with or without events about them yet: this one,
    // and a member gossip knows.
    for node in ["a", "b"] {
        let (status, text) = get(&format!("node={node}")).await;
        assert_eq!(status, 200, "{node}: {text}");
    }
    // An annotation about a member is recorded under its name.
    let request = AnnotationRequest {
        node: Some("b".to_owned()),
        message: "maintenance".to_owned(),
    };
    client::annotate(&[a.api_addr.to_string()], &key, &request)
        .await
        .expect("a note about a member is accepted");
    b.shutdown().await.expect("b stops");
    a.shutdown().await.expect("a stops");
}

/// The request body the real `starling annotate` sends, caught by a
/// listener that answers 503 to it.
async fn capture_annotate(key_file: &std::path::Path, message: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("bound");
    let catch = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("the CLI connects");
        let mut request = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let read = socket.read(&mut chunk).await.expect("reads");
            assert!(read > 0, "the CLI closed before its body arrived");
            request.extend_from_slice(&chunk[..read]);
            let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
            let Some(end) = text.find("\r\n\r\n") else {
                continue;
            };
            let length: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("a content length");
            if request.len() >= end + 4 + length {
                let _ = socket
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                    .await;
                return request[end + 4..end + 4 + length].to_vec();
            }
        }
    });
    let cli = tokio::process::Command::new(crate::support::lab::STARLING)
        .args(["annotate", "--addr", &addr.to_string(), "--gossip-key-file"])
        .arg(key_file)
        .arg(message)
        .output();
    let (body, _) = tokio::join!(catch, cli);
    body.expect("caught the request")
}

/// A captured `starling annotate` request, replayed at once, after the
/// agent restarted (its memory of taken requests gone with the process),
/// and to another agent once the 60 s window passed, is refused each time:
/// one note, not eight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_annotation_is_recorded_once_across_a_restart_and_after_the_window() {
    let key_text = Keyring::generate_key();
    let key = Keyring::parse(&key_text).expect("a generated key parses");
    let (seed, _seed_data) = agent("seed", &key, None).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut target = AgentProcess::start("target", &key_text, seed.gossip_addr, dir.path());
    sees_alive(&seed, 1).await;
    let captured = capture_annotate(&dir.path().join("target.key"), "captured once").await;
    let captured_at = std::time::Instant::now();

    let http = starling_checks::http_client()
        .build()
        .expect("a plain HTTP client");
    let url = format!("http://{}/v1/events", target.api);
    let post = async || {
        let response = http
            .post(&url)
            .body(captured.clone())
            .send()
            .await
            .expect("the agent answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("a body"))
    };
    assert_eq!(post().await.0, 201, "the first delivery is recorded");
    for _ in 0..5 {
        let (status, text) = post().await;
        assert_eq!(status, 409, "{text}");
        assert!(text.contains("already received"), "{text}");
    }
    let notes = async || {
        events(&seed)
            .await
            .iter()
            .filter(|e| e.message == "captured once")
            .count()
    };
    eventually("the note reaches the seed", async || notes().await == 1).await;

    target.restart();
    eventually("the restarted agent answers", async || {
        agents::get(format!("http://{}/readyz", target.api))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let (status, text) = post().await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("before this agent started"), "{text}");
    assert_eq!(
        agents::metric_at(
            target.api,
            "starling_sealed_refused_total{channel=\"annotation\",reason=\"before_memory\"}"
        )
        .await,
        1.0
    );
    // And once the window has passed, whoever receives it: the seed never
    // took it, and refuses it as stale.
    let window = starling_seal::SKEW_WINDOW + Duration::from_secs(1);
    tokio::time::sleep(window.saturating_sub(captured_at.elapsed())).await;
    let stale = http
        .post(format!("http://{}/v1/events", seed.api_addr))
        .body(captured.clone())
        .send()
        .await
        .expect("the seed answers");
    assert_eq!(stale.status().as_u16(), 409);
    let text = stale.text().await.expect("a body");
    assert!(text.contains("more than 60s"), "{text}");
    assert_eq!(notes().await, 1, "one note in the cluster's history");
    drop(target);
    seed.shutdown().await.expect("clean shutdown");
}

//! Every endpoint and every refusal, through the router without a socket
//! (`oneshot`), against a fixed view. JSON shapes are pinned by snapshots:
//! a change to what scripts read shows up in review.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use starling_model::{
    AnnotationAck, ApiError, CheckDetail, CheckSummary, EventKind, HistoryEvent, HistoryQuery,
    HistoryResponse, Member, MembersResponse, NodeCounts, NodeHealth, NodeResponse, NodeStatus,
    NodesResponse, StateCounts, Status, StatusResponse,
};
use starling_web::{AgentView, KuberhealthyState, Reply};

#[path = "kuberhealthy_go.rs"]
mod kuberhealthy_go;
use tower::ServiceExt;

const AT: u64 = 1_795_428_000_000;

/// A cluster of three: `n1` healthy (answering), `n2` degraded by etcd,
/// `n3` down; the scheduler probe (a cluster check) passing.
struct FixedView {
    healthy: bool,
    ready: Result<(), String>,
    /// The last history query the router handed over, parsed.
    asked: Mutex<Option<HistoryQuery>>,
}

impl FixedView {
    fn new() -> Self {
        FixedView {
            healthy: false,
            ready: Ok(()),
            asked: Mutex::new(None),
        }
    }
}

fn check(node: &str, check: &str, status: Status, message: &str) -> CheckSummary {
    CheckSummary {
        check: check.into(),
        node: node.into(),
        status,
        message: message.into(),
        at_unix_ms: AT - 5_000,
    }
}

fn member(name: &str, state: &str, incarnation: u64) -> Member {
    Member {
        name: name.into(),
        addr: format!("10.0.0.{}:7946", &name[1..]),
        incarnation,
        role: "worker".into(),
        api_addr: Some(format!("10.0.0.{}:7947", &name[1..])),
        probe_addr: None,
        state: state.into(),
        since_unix_ms: AT - 60_000,
    }
}

impl AgentView for FixedView {
    fn members(&self) -> MembersResponse {
        MembersResponse {
            answered_by: "n1".into(),
            answered_at_unix_ms: AT,
            counts: StateCounts {
                alive: 2,
                down: 1,
                ..StateCounts::default()
            },
            local_health: 0,
            members_matched: 0,
            next_cursor: None,
            members: vec![
                member("n1", "alive", 3),
                member("n2", "alive", 1),
                member("n3", "down", 2),
            ],
        }
    }

    fn metrics(&self) -> Reply<String> {
        Box::pin(async { Ok("# TYPE starling_up gauge\nstarling_up 1\n# EOF\n".to_owned()) })
    }

    fn live(&self) -> bool {
        true
    }

    fn ready(&self) -> Result<(), String> {
        self.ready.clone()
    }

    fn status(&self) -> Reply<StatusResponse> {
        let healthy = self.healthy;
        Box::pin(async move {
            let mut status = StatusResponse {
                answered_by: "n1".into(),
                answered_at_unix_ms: AT,
                healthy: false,
                reasons: vec![
                    "n2: etcd: 1 of 3 members unhealthy".into(),
                    "n3: gossip: down".into(),
                ],
                counts: StateCounts {
                    alive: 2,
                    down: 1,
                    ..StateCounts::default()
                },
                reasons_omitted: 0,
                majority: true,
                cluster_checks: vec![check("n2", "scheduler", Status::Ok, "scheduled in 120ms")],
                node_counts: NodeCounts::default(),
                nodes_matched: 0,
                next_cursor: None,
                nodes: vec![
                    NodeStatus {
                        name: "n1".into(),
                        status: NodeHealth::Healthy,
                        reasons: vec![],
                        checks: vec![check("n1", "etcd", Status::Ok, "3 members healthy")],
                    },
                    NodeStatus {
                        name: "n2".into(),
                        status: NodeHealth::Degraded,
                        reasons: vec!["etcd: 1 of 3 members unhealthy".into()],
                        checks: vec![check(
                            "n2",
                            "etcd",
                            Status::Critical,
                            "1 of 3 members unhealthy",
                        )],
                    },
                    NodeStatus {
                        name: "n3".into(),
                        status: NodeHealth::Unreachable,
                        reasons: vec!["gossip: down".into()],
                        checks: vec![],
                    },
                ],
            };
            if healthy {
                status.healthy = true;
                status.reasons.clear();
            }
            Ok(status)
        })
    }

    fn node(&self, name: String) -> Reply<NodeResponse> {
        Box::pin(async move {
            if name != "n1" {
                return Err(ApiError::NotFound(format!("no node named {name:?}")));
            }
            Ok(NodeResponse {
                answered_by: "n1".into(),
                answered_at_unix_ms: AT,
                name,
                status: NodeHealth::Healthy,
                reasons: vec![],
                member: Some(member("n1", "alive", 3)),
                checks: vec![CheckDetail {
                    check: "etcd".into(),
                    status: Status::Ok,
                    message: "3 members healthy".into(),
                    at_unix_ms: AT - 5_000,
                    duration_ms: Some(12),
                    details: Some(serde_json::json!({"members": 3, "leader": "etcd-1"})),
                }],
            })
        })
    }

    fn history(&self, query: HistoryQuery) -> Reply<HistoryResponse> {
        *self.asked.lock().expect("not poisoned") = Some(query.clone());
        Box::pin(async move {
            let event = HistoryEvent {
                origin: "n2#00000000000000ab".into(),
                seq: 7,
                observer: "n2".into(),
                at_unix_ms: AT - 5_000,
                kind: EventKind::Check,
                node: "n2".into(),
                check: Some("etcd".into()),
                old_state: Some("ok".into()),
                new_state: Some("critical".into()),
                message: "1 of 3 members unhealthy".into(),
            };
            Ok(HistoryResponse {
                answered_by: "n1".into(),
                answered_at_unix_ms: AT,
                served_by: None,
                incomplete: None,
                next_cursor: (query.limit == 1)
                    .then(|| format!("{}:7:{}", event.at_unix_ms, event.origin)),
                events: vec![event],
            })
        })
    }

    fn annotate(&self, sealed: Bytes) -> Reply<AnnotationAck> {
        Box::pin(async move {
            if sealed.as_ref() == b"sealed" {
                Ok(AnnotationAck {
                    origin: "n1#00000000000000aa".into(),
                    seq: 9,
                })
            } else {
                Err(ApiError::Unauthorized(
                    "does not open under the cluster key".into(),
                ))
            }
        })
    }
}

struct Answer {
    status: StatusCode,
    content_type: String,
    headers: axum::http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not the expected JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn value(&self) -> serde_json::Value {
        self.json()
    }

    /// The `{"error": …}` of a refusal.
    fn error(&self) -> String {
        assert!(
            self.content_type.starts_with("application/json"),
            "errors are JSON: {}",
            self.content_type
        );
        let body: starling_model::ErrorBody = self.json();
        body.error
    }
}

async fn ask_view(view: Arc<FixedView>, method: Method, uri: &str, body: &[u8]) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body.to_vec()))
        .expect("a valid request");
    let response = starling_web::router(view)
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().expect("ascii").to_owned())
        .unwrap_or_default();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    Answer {
        status,
        content_type,
        headers,
        body,
    }
}

async fn get(uri: &str) -> Answer {
    ask_view(Arc::new(FixedView::new()), Method::GET, uri, b"").await
}

#[tokio::test]
async fn status_nodes_and_members_keep_their_shapes() {
    for (uri, name) in [
        ("/v1/status", "status"),
        ("/v1/nodes", "nodes"),
        ("/v1/nodes/n1", "node"),
        ("/v1/members", "members"),
    ] {
        let answer = get(uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}");
        assert!(answer.content_type.starts_with("application/json"));
        insta::assert_json_snapshot!(name, answer.value());
    }
}

#[tokio::test]
async fn an_unknown_node_is_404_naming_it() {
    let answer = get("/v1/nodes/n9").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.error().contains("\"n9\""));
}

#[tokio::test]
async fn history_hands_the_parsed_filters_over_and_pages() {
    let view = Arc::new(FixedView::new());
    let answer = ask_view(
        Arc::clone(&view),
        Method::GET,
        "/v1/history?node=n2&kind=check&check=etcd&since=1000&until=2026-11-23T10:00:00Z&limit=1",
        b"",
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    insta::assert_json_snapshot!("history", answer.value());
    let asked = view.asked.lock().expect("not poisoned").clone();
    let asked = asked.expect("the view was asked");
    assert_eq!(asked.node.as_deref(), Some("n2"));
    assert_eq!(asked.kind, Some(EventKind::Check));
    assert_eq!(asked.check.as_deref(), Some("etcd"));
    assert_eq!(asked.since_unix_ms, Some(1000));
    assert_eq!(asked.until_unix_ms, Some(AT));
    assert_eq!(asked.limit, 1);

    // The cursor a page returns is accepted as the next page's.
    let cursor = answer.value()["next_cursor"]
        .as_str()
        .expect("a full page has a cursor")
        .to_owned();
    let next = ask_view(
        Arc::clone(&view),
        Method::GET,
        &format!("/v1/history?limit=1&cursor={}", cursor.replace('#', "%23")),
        b"",
    )
    .await;
    assert_eq!(next.status, StatusCode::OK);
    let asked = view.asked.lock().expect("not poisoned").clone();
    let cursor = asked.and_then(|q| q.cursor).expect("cursor handed over");
    assert_eq!((cursor.at_unix_ms, cursor.seq), (AT - 5_000, 7));
    assert_eq!(cursor.origin, "n2#00000000000000ab");
}

#[tokio::test]
async fn a_bad_history_filter_is_400_naming_the_parameter() {
    for (query, named) in [
        ("since=yesterday", "since"),
        ("until=soon", "until"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("cursor=nonsense", "cursor"),
        ("colour=red", "colour"),
    ] {
        let answer = get(&format!("/v1/history?{query}")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        let error = answer.error();
        assert!(error.to_lowercase().contains(named), "{query}: {error}");
    }
}

#[tokio::test]
async fn kuberhealthy_v3_clients_decode_json_into_their_own_structs() {
    let answer = get("/json").await;
    assert_eq!(answer.status, StatusCode::OK);
    insta::assert_json_snapshot!("kuberhealthy_v3", answer.value());
    let state: kuberhealthy_go::StateV3 = answer.json();
    assert!(!state.OK);
    assert_eq!(state.CurrentMaster, "n1");
    assert_eq!(state.Errors.len(), 2);
    let etcd = &state.CheckDetails["n2/etcd"];
    assert!(!etcd.ok);
    assert_eq!(
        etcd.errors.as_deref(),
        Some(&["1 of 3 members unhealthy".to_owned()][..])
    );
    assert_eq!(etcd.namespace.as_deref(), Some("starling"));
    assert!(etcd.lastRunUnix.is_some_and(|at| at > 1_600_000_000));
    assert_eq!(etcd.lastFailureUnix, etcd.lastRunUnix);
    assert_eq!(
        etcd.runDuration, None,
        "unknown, so left out as Go's omitempty does"
    );
    assert!(state.CheckDetails["cluster/scheduler"].ok);
    // A node gossip cannot reach is an entry that is not OK, named the
    // same on every request.
    let gossip = &state.CheckDetails["n3/gossip"];
    assert!(!gossip.ok);
    let again: kuberhealthy_go::StateV3 = get("/json?v=3").await.json();
    assert_eq!(
        again.CheckDetails["n3/gossip"].currentUUID,
        gossip.currentUUID
    );
}

#[tokio::test]
async fn kuberhealthy_v2_clients_get_their_shape_with_v_2() {
    let answer = get("/json?v=2").await;
    assert_eq!(answer.status, StatusCode::OK);
    insta::assert_json_snapshot!("kuberhealthy_v2", answer.value());
    let state: kuberhealthy_go::StateV2 = answer.json();
    assert!(!state.OK);
    assert!(state.JobDetails.is_empty());
    let etcd = &state.CheckDetails["n2/etcd"];
    assert!(!etcd.OK);
    assert_eq!(etcd.Node, "n2");
    assert_eq!(etcd.AuthoritativePod, "n1");
    assert!(
        kuberhealthy_go::go_duration(&etcd.RunDuration),
        "{:?} is a Go duration",
        etcd.RunDuration
    );
    let last_run = etcd.LastRun.as_deref().expect("it ran");
    humantime::parse_rfc3339(last_run).expect("RFC 3339 to the second, as metav1.Time");
    // And the typed decoder of this crate agrees.
    let typed: KuberhealthyState = answer.json();
    assert!(!typed.ok);

    let unknown = get("/json?v=7").await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.error().contains("v=3"), "{}", unknown.error());
}

#[tokio::test]
async fn healthz_answers_the_cluster_verdict_by_status_code() {
    let answer = get("/healthz").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.value()["healthy"], false);
    assert_eq!(answer.value()["reasons"][1], "n3: gossip: down");

    let healthy = Arc::new(FixedView {
        healthy: true,
        ..FixedView::new()
    });
    let answer = ask_view(healthy, Method::GET, "/healthz", b"").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.value()["healthy"], true);
}

#[tokio::test]
async fn livez_and_readyz_speak_for_the_agent_not_the_cluster() {
    // The cluster is unhealthy, yet this agent is live and ready.
    assert_eq!(get("/livez").await.status, StatusCode::OK);
    assert_eq!(get("/readyz").await.status, StatusCode::OK);
    let not_ready = Arc::new(FixedView {
        ready: Err("gossip has not joined any seed yet".into()),
        ..FixedView::new()
    });
    let answer = ask_view(not_ready, Method::GET, "/readyz", b"").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.error(), "gossip has not joined any seed yet");
}

#[tokio::test]
async fn metrics_are_openmetrics_to_prometheus_and_classic_text_to_everyone_else() {
    let classic = get("/metrics").await;
    assert_eq!(classic.status, StatusCode::OK);
    assert_eq!(
        classic.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(
        &classic.body[..],
        b"# TYPE starling_up gauge\nstarling_up 1\n"
    );

    let request = Request::builder()
        .uri("/metrics")
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .body(Body::empty())
        .expect("a valid request");
    let response = starling_web::router(Arc::new(FixedView::new()))
        .oneshot(request)
        .await
        .expect("the router is infallible");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/openmetrics-text")
    );
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    assert!(body.ends_with(b"# EOF\n"));
}

#[tokio::test]
async fn the_dashboard_is_one_self_contained_page() {
    let answer = get("/").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.content_type.starts_with("text/html"));
    let policy = answer.headers["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    let page = String::from_utf8(answer.body.to_vec()).expect("UTF-8");
    for outside in ["http://", "https://", "//cdn", "<link", "src=\""] {
        assert!(
            !page.contains(outside),
            "the page must fetch nothing from outside: found {outside:?}"
        );
    }
    for panel in [
        "id=\"verdict\"",
        "id=\"matrix\"",
        "id=\"members\"",
        "id=\"overlay\"",
        "id=\"timeline\"",
    ] {
        assert!(page.contains(panel), "missing {panel}");
    }
}

#[tokio::test]
async fn overlay_without_a_probe_is_a_json_404() {
    let answer = get("/v1/overlay").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.error().contains("overlay probe"));
}

#[tokio::test]
async fn annotations_are_created_or_refused_as_json() {
    let view = Arc::new(FixedView::new());
    let created = ask_view(Arc::clone(&view), Method::POST, "/v1/events", b"sealed").await;
    assert_eq!(created.status, StatusCode::CREATED);
    let ack: AnnotationAck = created.json();
    assert_eq!(ack.seq, 9);

    let forged = ask_view(Arc::clone(&view), Method::POST, "/v1/events", b"forged").await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert!(forged.error().contains("cluster key"));

    let huge = vec![b'x'; 17 << 10];
    let too_big = ask_view(view, Method::POST, "/v1/events", &huge).await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    too_big.error();
}

#[tokio::test]
async fn what_the_view_cannot_do_is_503_and_unknown_routes_are_404_json() {
    // This view keeps no sync state: the trait's default answers.
    let answer = ask_view(
        Arc::new(FixedView::new()),
        Method::POST,
        "/v1/sync",
        b"vector",
    )
    .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    answer.error();

    let answer = get("/v2/status").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.error(), "no such endpoint");

    let answer = ask_view(
        Arc::new(FixedView::new()),
        Method::DELETE,
        "/v1/status",
        b"",
    )
    .await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    answer.error();
}

#[tokio::test]
async fn nodes_and_members_come_in_pages_filtered_by_verdict_and_name() {
    let unhealthy: NodesResponse = get("/v1/nodes?status=unhealthy").await.json();
    let names: Vec<&str> = unhealthy.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["n2", "n3"]);
    assert_eq!(unhealthy.nodes_matched, 2);
    assert_eq!(
        (
            unhealthy.node_counts.healthy,
            unhealthy.node_counts.degraded
        ),
        (1, 1),
        "the counts cover every node whatever the filter"
    );
    let first: StatusResponse = get("/v1/status?limit=2").await.json();
    assert_eq!(first.nodes.len(), 2);
    assert_eq!(first.next_cursor.as_deref(), Some("n2"));
    let rest: NodesResponse = get("/v1/nodes?limit=2&cursor=n2").await.json();
    assert_eq!(rest.nodes.len(), 1);
    assert_eq!(rest.nodes[0].name, "n3");
    assert_eq!(rest.next_cursor, None);
    let named: NodesResponse = get("/v1/nodes?node=3").await.json();
    assert_eq!(named.nodes.len(), 1);
    let down: MembersResponse = get("/v1/members?state=down").await.json();
    assert_eq!(down.members.len(), 1);
    assert_eq!(down.members[0].name, "n3");
    assert_eq!(down.counts.alive, 2, "the counts stay whole");
    for (uri, says) in [
        ("/v1/status?status=sick", "unhealthy"),
        ("/v1/nodes?limit=0", "limit"),
        ("/v1/nodes?limit=1001", "limit"),
        ("/v1/status?page=2", "unknown parameter"),
        ("/v1/members?state=gone", "alive"),
    ] {
        let answer = get(uri).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(answer.error().contains(says), "{uri}: {}", answer.error());
    }
}

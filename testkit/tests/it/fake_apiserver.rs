//! The fake kube-apiserver, driven through kube's real client: if these pass, checks built
//! on `kube::Client` can be tested against it. Every wait is bounded.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Container, Namespace, Node, Pod, PodCondition, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use starling_testkit::FakeApiServer;

/// Upper bound for any single step of a test.
const STEP: Duration = Duration::from_secs(10);

/// Runs `f`, failing the test if it takes longer than [`STEP`].
async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {STEP:?}"))
}

/// Like [`bounded`], for a step that must succeed.
async fn ok<T, E: std::fmt::Debug>(what: &str, f: impl Future<Output = Result<T, E>>) -> T {
    bounded(what, f)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

/// A running fake, a client for it from its kubeconfig, and the kubeconfig's directory.
struct Fixture {
    server: FakeApiServer,
    client: Client,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let server = FakeApiServer::start().await.expect("fake apiserver starts");
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = server.write_kubeconfig(dir.path()).expect("kubeconfig");
    let kubeconfig = Kubeconfig::read_from(&path).expect("kube reads the kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube accepts the kubeconfig");
    let client = Client::try_from(config).expect("client from the kubeconfig");
    Fixture {
        server,
        client,
        _dir: dir,
    }
}

/// A client for `url` built without a kubeconfig, with a read timeout.
fn client_with_timeout(url: &str, read_timeout: Duration) -> Client {
    let mut config = Config::new(url.parse().expect("the fake's URL is a URI"));
    config.read_timeout = Some(read_timeout);
    Client::try_from(config).expect("client from a URL")
}

fn probe_pod(generate_name: &str, app: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name.to_owned()),
            labels: Some([("app".to_owned(), app.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "pause".to_owned(),
                image: Some("registry.k8s.io/pause:3.10".to_owned()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn pod_condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == type_)
}

/// The status (`True`/`False`) of the pod's condition `type_`.
fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a str> {
    pod_condition(pod, type_).map(|c| c.status.as_str())
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

fn is_running(pod: &Pod) -> bool {
    phase(pod) == Some("Running")
}

/// GETs the pod every 20 ms until `done` holds for it; panics after [`STEP`].
async fn poll_pod(pods: &Api<Pod>, name: &str, what: &str, done: impl Fn(&Pod) -> bool) -> Pod {
    bounded(what, async {
        loop {
            let pod = pods.get(name).await.expect("the pod can be read");
            if done(&pod) {
                return pod;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The code and reason of `result`'s `kube::Error::Api`; panics on anything else.
fn api_code<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason.clone()),
        other => panic!("expected kube::Error::Api, got {other:?}"),
    }
}

/// A GET of `path` as text, as the apiserver check does it.
async fn get_text(client: &Client, path: &str) -> Result<String, kube::Error> {
    let request = axum::http::Request::get(path).body(Vec::new());
    let request = request.expect("a GET with a path is a valid request");
    bounded(path, client.request_text(request)).await
}

#[tokio::test]
async fn a_probe_pod_is_created_scheduled_run_listed_and_deleted() {
    let f = fixture().await;
    let namespaces: Api<Namespace> = Api::all(f.client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("starling-probe".to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let created = ok("create ns", namespaces.create(&PostParams::default(), &ns)).await;
    assert!(created.metadata.uid.is_some());
    let again = bounded(
        "create ns again",
        namespaces.create(&PostParams::default(), &ns),
    )
    .await;
    assert_eq!(api_code(again), (409, "AlreadyExists".to_owned()));
    let got = ok("get ns", namespaces.get("starling-probe")).await;
    assert_eq!(got.status.and_then(|s| s.phase).as_deref(), Some("Active"));

    let pods: Api<Pod> = Api::namespaced(f.client.clone(), "starling-probe");
    let pod = probe_pod("starling-probe-", "starling-probe");
    let created = ok("create pod", pods.create(&PostParams::default(), &pod)).await;
    let name = created.metadata.name.clone().expect("a generated name");
    let suffix = name.strip_prefix("starling-probe-").unwrap_or_default();
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    assert!(suffix.len() == 5 && suffix.chars().all(alnum), "{name}");
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(phase(&created), Some("Pending"));

    let scheduled = poll_pod(&pods, &name, "scheduled", |p| {
        condition(p, "PodScheduled") == Some("True")
    })
    .await;
    let spec = scheduled.spec.as_ref().expect("spec");
    assert_eq!(spec.node_name.as_deref(), Some("fake-node"));
    let when =
        pod_condition(&scheduled, "PodScheduled").and_then(|c| c.last_transition_time.as_ref());
    assert!(when.is_some());
    let running = poll_pod(&pods, &name, "running", is_running).await;
    assert_eq!(condition(&running, "Ready"), Some("True"));

    let selected = ListParams::default().labels("app=starling-probe");
    let list = ok("list", pods.list(&selected)).await;
    let names: Vec<_> = list.items.iter().map(|p| p.metadata.name.clone()).collect();
    assert_eq!(names, [Some(name.clone())]);
    let other = ListParams::default().labels("app=something-else");
    let list = ok("list other", pods.list(&other)).await;
    assert!(list.items.is_empty());

    let deleted = ok("delete", pods.delete(&name, &DeleteParams::default())).await;
    let deleted = deleted.left().expect("the deleted pod, not a Status");
    assert_eq!(deleted.metadata.name.as_deref(), Some(name.as_str()));
    assert_eq!(api_code(bounded("get gone", pods.get(&name)).await).0, 404);
    assert!(f.server.pods("starling-probe").is_empty());
    let again = bounded("delete gone", pods.delete(&name, &DeleteParams::default())).await;
    assert_eq!(api_code(again).0, 404);

    let requests = f.server.requests();
    for expected in [
        "POST /api/v1/namespaces".to_owned(),
        "GET /api/v1/namespaces/starling-probe".to_owned(),
        format!("GET /api/v1/namespaces/starling-probe/pods/{name}"),
        "GET /api/v1/namespaces/starling-probe/pods?labelSelector=app%3Dstarling-probe".to_owned(),
        format!("DELETE /api/v1/namespaces/starling-probe/pods/{name}"),
    ] {
        assert!(
            requests.contains(&expected),
            "{expected} not in {requests:#?}"
        );
    }
}

#[tokio::test]
async fn pods_stay_pending_and_unschedulable_while_scheduling_is_off() {
    let f = fixture().await;
    f.server.set_scheduling(false);
    f.server.set_schedule_delay(Duration::ZERO);
    let pods: Api<Pod> = Api::namespaced(f.client.clone(), "default");
    let pod = probe_pod("p-", "p");
    let created = ok("create", pods.create(&PostParams::default(), &pod)).await;
    let name = created.metadata.name.expect("a generated name");
    let pending = poll_pod(&pods, &name, "unschedulable", |p| {
        condition(p, "PodScheduled") == Some("False")
    })
    .await;
    let cond = pod_condition(&pending, "PodScheduled").expect("PodScheduled condition");
    assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(
        cond.message.as_deref(),
        Some("0/1 nodes are available: scheduling disabled by the test")
    );
    // Several scheduler ticks later it is still pending and unbound.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = ok("get", pods.get(&name)).await;
    assert_eq!(phase(&later), Some("Pending"));
    assert!(later.spec.and_then(|s| s.node_name).is_none());

    f.server.set_scheduling(true);
    poll_pod(&pods, &name, "running after scheduling is back", is_running).await;
}

#[tokio::test]
async fn readyz_lists_sub_checks_and_fails_with_one_failing() {
    let f = fixture().await;
    assert_eq!(ok("livez", get_text(&f.client, "/livez")).await, "ok");
    assert_eq!(ok("readyz", get_text(&f.client, "/readyz")).await, "ok");
    let verbose = ok("readyz", get_text(&f.client, "/readyz?verbose")).await;
    assert_eq!(
        verbose,
        "[+]ping ok\n[+]log ok\n[+]etcd ok\n[+]informer-sync ok\n\
         [+]poststarthook/start-apiextensions-controllers ok\n[+]shutdown ok\n\
         readyz check passed\n"
    );

    f.server.fail_readyz_check(Some("etcd"));
    let failed = get_text(&f.client, "/readyz?verbose").await;
    let Err(kube::Error::Api(status)) = failed else {
        panic!("a failing readyz is an API error, got {failed:?}");
    };
    assert_eq!(status.code, 500);
    // Not JSON, so kube puts the whole text in the message.
    let text = status.message;
    let failing = "[+]log ok\n[-]etcd failed: reason withheld\n[+]informer-sync ok";
    assert!(text.contains(failing), "{text}");
    assert!(text.ends_with("readyz check failed"), "{text}");

    f.server.fail_readyz_check(None);
    assert!(get_text(&f.client, "/readyz?verbose").await.is_ok());
    let version = ok("version", f.client.apiserver_version()).await;
    assert_eq!(version.git_version, "v1.34.0");
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let f = fixture().await;
    let namespaces: Api<Namespace> = Api::all(f.client.clone());
    let timed_get = async || {
        let start = Instant::now();
        ok("get", namespaces.get("default")).await;
        start.elapsed()
    };
    f.server.set_latency(Duration::from_millis(400));
    let slow = timed_get().await;
    assert!(slow >= Duration::from_millis(400), "{slow:?}");
    f.server.set_latency(Duration::ZERO);
    let fast = timed_get().await;
    assert!(fast < Duration::from_millis(400), "{fast:?}");
}

#[tokio::test]
async fn the_errors_switch_makes_every_answer_a_500_status() {
    let f = fixture().await;
    let pods: Api<Pod> = Api::namespaced(f.client.clone(), "default");
    f.server.set_errors(true);
    let failed = bounded("list", pods.list(&ListParams::default())).await;
    assert_eq!(api_code(failed), (500, "InternalError".to_owned()));
    assert_eq!(api_code(get_text(&f.client, "/readyz").await).0, 500);
    f.server.set_errors(false);
    ok("list again", pods.list(&ListParams::default())).await;
}

#[tokio::test]
async fn an_unresponsive_server_makes_the_client_time_out() {
    let server = FakeApiServer::start().await.expect("fake apiserver starts");
    let client = client_with_timeout(&server.url(), Duration::from_secs(1));
    let namespaces: Api<Namespace> = Api::all(client);
    server.set_unresponsive(true);
    let start = Instant::now();
    let result = bounded("hung get", namespaces.get("default")).await;
    let took = start.elapsed();
    let error = result.expect_err("no answer means an error");
    assert!(!matches!(error, kube::Error::Api(_)), "{error:?}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let requests = server.requests();
    assert!(requests.contains(&"GET /api/v1/namespaces/default".to_owned()));

    server.set_unresponsive(false);
    ok("get", namespaces.get("default")).await;
}

#[tokio::test]
async fn a_lease_carries_its_holder_and_renew_time() {
    let f = fixture().await;
    let renewed = UNIX_EPOCH + Duration::new(1_760_000_000, 123_456_000);
    f.server
        .set_lease("kube-system", "kube-scheduler", "cp-1_0f3e", renewed);
    let leases: Api<Lease> = Api::namespaced(f.client.clone(), "kube-system");
    let lease = ok("get lease", leases.get("kube-scheduler")).await;
    let spec = lease.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("cp-1_0f3e"));
    let renew = spec.renew_time.expect("renewTime").0;
    assert_eq!(renew.as_microsecond(), 1_760_000_000_123_456);
    let missing = bounded("get missing lease", leases.get("kube-controller-manager")).await;
    assert_eq!(api_code(missing).0, 404);
}

#[tokio::test]
async fn unknown_pods_and_paths_are_404_statuses() {
    let f = fixture().await;
    let pods: Api<Pod> = Api::namespaced(f.client.clone(), "default");
    let missing = bounded("get", pods.get("no-such-pod")).await;
    assert_eq!(api_code(missing), (404, "NotFound".to_owned()));
    let in_missing_ns: Api<Pod> = Api::namespaced(f.client.clone(), "no-such-namespace");
    let pod = probe_pod("x-", "x");
    let created = bounded("create", in_missing_ns.create(&PostParams::default(), &pod)).await;
    assert_eq!(api_code(created).0, 404);
    assert_eq!(
        api_code(get_text(&f.client, "/api/v1/services").await).0,
        404
    );
    let watch = get_text(&f.client, "/api/v1/namespaces/default/pods?watch=true").await;
    assert_eq!(api_code(watch).0, 400);
}

#[tokio::test]
async fn inserted_pods_and_added_nodes_are_served() {
    let f = fixture().await;
    f.server.add_node("fake-node-2");
    let nodes: Api<Node> = Api::all(f.client.clone());
    let list = ok("nodes", nodes.list(&ListParams::default())).await;
    let names: Vec<_> = list
        .items
        .iter()
        .map(|n| n.metadata.name.as_deref())
        .collect();
    assert_eq!(names, [Some("fake-node"), Some("fake-node-2")]);
    let status = list.items[0].status.clone().unwrap_or_default();
    let mut conditions = status.conditions.unwrap_or_default().into_iter();
    let ready = conditions.find(|c| c.type_ == "Ready");
    assert_eq!(ready.map(|c| c.status).as_deref(), Some("True"));

    let mut leftover = probe_pod("leftover-", "starling-probe");
    leftover.metadata.namespace = Some("starling".to_owned());
    f.server.insert_pod(leftover);
    let pods: Api<Pod> = Api::namespaced(f.client.clone(), "starling");
    let selected = ListParams::default().labels("app=starling-probe");
    let list = ok("list", pods.list(&selected)).await;
    assert_eq!(list.items.len(), 1);
    let name = list.items[0].metadata.name.clone().unwrap_or_default();
    assert_eq!(f.server.pods("starling").len(), 1);
    poll_pod(&pods, &name, "leftover running", is_running).await;
}

#[tokio::test]
async fn shutdown_and_drop_free_the_port() {
    let server = FakeApiServer::start().await.expect("starts");
    let addr = server.addr();
    server.shutdown().await;
    std::net::TcpListener::bind(addr).expect("port free right after shutdown");

    let server = FakeApiServer::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .expect("starts");
    let addr = server.addr();
    drop(server);
    let freed = bounded("port freed after drop", async {
        loop {
            if std::net::TcpListener::bind(addr).is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert!(freed.await);
}

//! [`FakeApiServer`]: the handle a test holds; starting, switches, fixtures, inspection,
//! and shutdown on drop.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::state::{Shared, timestamp};
use super::{nodes, objects, pods, routes, scheduler};

/// The bearer token in [`FakeApiServer::write_kubeconfig`]'s kubeconfig. The fake accepts
/// any credentials (or none); the token is there so clients take their real auth path.
pub const FAKE_TOKEN: &str = "starling-fake-token";

/// A fake kube-apiserver on plain HTTP, serving the REST subset starling's checks use, with
/// a fake scheduler and kubelet that move new pods from Pending to Running. For tests only.
///
/// Serves until dropped. Dropping it stops accepting at once, answers requests held by
/// [`set_unresponsive`](Self::set_unresponsive) or [`set_latency`](Self::set_latency) with
/// a 500, closes every connection and stops the scheduler; all of that happens on the Tokio
/// runtime's next turn, so a test that must rebind the same address should await
/// [`shutdown`](Self::shutdown) instead of dropping.
///
/// Every method but `start`, `start_on` and `shutdown` is synchronous and never blocks on
/// the network, so tests call them freely between requests.
#[derive(Debug)]
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// `None` only after [`FakeApiServer::shutdown`] took them.
    server: Option<JoinHandle<()>>,
    scheduler: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// Binds 127.0.0.1 on a free port and serves until dropped; starts the fake scheduler.
    /// Must be called inside a Tokio runtime, which runs the server's tasks.
    pub async fn start() -> io::Result<FakeApiServer> {
        FakeApiServer::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Like [`start`](Self::start), on `addr` (tests in network namespaces pass a lab
    /// address; port 0 picks a free one).
    pub async fn start_on(addr: SocketAddr) -> io::Result<FakeApiServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new());
        let app = routes::router(Arc::clone(&shared));
        let stop = Arc::clone(&shared);
        let server = tokio::spawn(async move {
            // Graceful: on shutdown the listener closes at once and idle connections are
            // closed; requests in flight end because every wait in a handler also watches
            // for shutdown.
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.shut_down().await });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "fake apiserver stopped serving");
            }
        });
        let scheduler = tokio::spawn(scheduler::run(Arc::clone(&shared)));
        tracing::debug!(%addr, "fake apiserver listening");
        Ok(FakeApiServer {
            addr,
            shared,
            server: Some(server),
            scheduler: Some(scheduler),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The cluster URL, `http://127.0.0.1:PORT` (IPv6 addresses in brackets).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes `dir/kubeconfig`: cluster [`url`](Self::url), a user with the static bearer
    /// token [`FAKE_TOKEN`], one context (namespace `default`) set as current. Returns its
    /// path. The file is JSON, which every kubeconfig reader accepts as YAML.
    pub fn write_kubeconfig(&self, dir: &Path) -> io::Result<PathBuf> {
        let path = dir.join("kubeconfig");
        let config = objects::kubeconfig(&self.url(), FAKE_TOKEN);
        let text = serde_json::to_string_pretty(&config)
            .expect("a JSON value built in memory always serializes");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Whether the fake scheduler binds pending pods (on by default). Off, it marks them
    /// `PodScheduled=False`, reason `Unschedulable`, message `0/N nodes are available:
    /// scheduling disabled by the test`, once they are older than the schedule delay.
    pub fn set_scheduling(&self, on: bool) {
        self.shared.lock().switches.scheduling = on;
    }

    /// Time from a pod's creation to its binding (default 200 ms); Running follows 100 ms
    /// after binding. The scheduler looks every 50 ms, so each step may come up to 50 ms
    /// later.
    pub fn set_schedule_delay(&self, delay: Duration) {
        self.shared.lock().switches.schedule_delay = delay;
    }

    /// Makes one `/readyz` sub-check fail (`Some("etcd")`): `/readyz` then answers 500 with
    /// its line `[-]etcd failed: reason withheld` and last line `readyz check failed`.
    /// `None` makes every sub-check pass again. A name that is not among the fake's checks
    /// is listed as an extra failing check.
    pub fn fail_readyz_check(&self, name: Option<&str>) {
        self.shared.lock().switches.failing_readyz = name.map(str::to_owned);
    }

    /// Delay added before every answer from the next request on (zero by default).
    pub fn set_latency(&self, delay: Duration) {
        self.shared.lock().switches.latency = delay;
    }

    /// While on, every request (API, health and version endpoints alike) is answered 500
    /// with a `Status` of reason `InternalError`.
    pub fn set_errors(&self, on: bool) {
        self.shared.lock().switches.errors = on;
    }

    /// While on, connections are accepted and requests read, but nothing is answered.
    /// Switching it off releases the requests already waiting, which are then answered.
    pub fn set_unresponsive(&self, on: bool) {
        self.shared.unresponsive.send_replace(on);
    }

    /// Adds a Ready node (replacing one of the same name). The cluster starts with one,
    /// `fake-node`; pods are bound to the first node.
    pub fn add_node(&self, name: &str) {
        self.shared.lock().add_node(name);
    }

    /// Node `name` as the API would return it now (with the conditions
    /// patched into its status).
    pub fn node(&self, name: &str) -> Option<Node> {
        nodes::get(&self.shared.lock(), name).ok()
    }

    /// Every Event created so far, by namespace and name.
    pub fn events(&self) -> Vec<Event> {
        self.shared.lock().events.values().cloned().collect()
    }

    /// Stores `pod` directly, e.g. a probe pod left over by a "crashed earlier run". Fills
    /// in what the API server would have (namespace `default`, a name from
    /// `generateName`, uid, creation time, resource version, phase `Pending`), creates the
    /// namespace if missing and replaces a pod of the same name. The fake scheduler then
    /// handles it like any other pod.
    pub fn insert_pod(&self, pod: Pod) {
        pods::insert(&mut self.shared.lock(), pod);
    }

    /// The pods of `namespace` as the API would return them now, by name.
    pub fn pods(&self, namespace: &str) -> Vec<Pod> {
        pods::in_namespace(&self.shared.lock(), namespace)
            .cloned()
            .collect()
    }

    /// Creates or replaces the `coordination.k8s.io/v1` Lease `namespace/name` with
    /// `spec.holderIdentity = holder` and `spec.renewTime = renew_time` (a MicroTime, so
    /// microseconds survive). Creates the namespace if missing. Other spec fields stay
    /// unset, so code under test must not rely on them.
    pub fn set_lease(&self, namespace: &str, name: &str, holder: &str, renew_time: SystemTime) {
        let mut state = self.shared.lock();
        state.ensure_namespace(namespace);
        let meta = ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        };
        let lease = Lease {
            metadata: state.new_meta(meta, Some(namespace)),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_owned()),
                renew_time: Some(MicroTime(timestamp(renew_time))),
                ..LeaseSpec::default()
            }),
        };
        state
            .leases
            .insert((namespace.to_owned(), name.to_owned()), lease);
    }

    /// Every request received so far, in order, as `METHOD /path` with `?query` appended
    /// when the query has parameters (percent-encoded as sent, without the empty `&`
    /// pieces kube's client adds), e.g.
    /// `GET /api/v1/namespaces/x/pods/y` or
    /// `GET /api/v1/namespaces/x/pods?labelSelector=app%3Dprobe`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }

    /// Stops the server and waits until it has closed its listener (the address can be
    /// bound again) and every connection, and the scheduler has stopped.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.send_replace(true);
        for task in [self.server.take(), self.scheduler.take()]
            .into_iter()
            .flatten()
        {
            // A task can only fail by panicking, which has been reported already.
            let _ = task.await;
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        // Every task watches this; they end on the runtime's next turn. Aborting as well
        // would cut connections mid-answer and leave them to the runtime's teardown.
        self.shared.shutdown.send_replace(true);
    }
}

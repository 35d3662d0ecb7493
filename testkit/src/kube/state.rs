//! What the fake API server knows: its objects, its switches and its request log, behind
//! one mutex that is never held across an `.await`.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;

use super::objects;

/// Time from a pod's creation to its binding unless a test says otherwise.
pub(super) const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_millis(200);
/// Namespaces of a fresh kubeadm cluster.
const DEFAULT_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];
/// The node every fake cluster starts with.
pub(super) const DEFAULT_NODE: &str = "fake-node";
/// The alphabet the real API server draws `generateName` suffixes from (no vowels, so no
/// words); all of it is lowercase alphanumeric.
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The test's switches; each is read when a request arrives (or at a scheduler tick).
#[derive(Debug)]
pub(super) struct Switches {
    pub scheduling: bool,
    pub schedule_delay: Duration,
    pub failing_readyz: Option<String>,
    pub latency: Duration,
    pub errors: bool,
}

/// A pod with the instants the fake scheduler and kubelet need, which the API does not
/// carry at sub-second precision.
#[derive(Debug)]
pub(super) struct StoredPod {
    pub pod: Pod,
    pub created: Instant,
    /// When the pod got its node; `None` while unbound, or bound but not yet noticed by a
    /// scheduler tick (pods inserted with `spec.nodeName` already set).
    pub bound: Option<Instant>,
}

/// Every object of the fake cluster.
#[derive(Debug)]
pub(super) struct State {
    pub switches: Switches,
    pub namespaces: BTreeMap<String, Namespace>,
    /// Keyed by (namespace, name), so a namespace's pods are a contiguous range.
    pub pods: BTreeMap<(String, String), StoredPod>,
    pub nodes: Vec<Node>,
    pub leases: BTreeMap<(String, String), Lease>,
    /// Keyed by (namespace, name).
    pub events: BTreeMap<(String, String), Event>,
    /// `METHOD /path[?query]` of every request, in arrival order.
    pub requests: Vec<String>,
    /// The cluster-wide resource version: bumped by every change, like etcd's revision.
    revision: u64,
}

impl State {
    fn new() -> State {
        let mut state = State {
            switches: Switches {
                scheduling: true,
                schedule_delay: DEFAULT_SCHEDULE_DELAY,
                failing_readyz: None,
                latency: Duration::ZERO,
                errors: false,
            },
            namespaces: BTreeMap::new(),
            pods: BTreeMap::new(),
            nodes: Vec::new(),
            leases: BTreeMap::new(),
            events: BTreeMap::new(),
            requests: Vec::new(),
            revision: 0,
        };
        for name in DEFAULT_NAMESPACES {
            state.ensure_namespace(name);
        }
        state.add_node(DEFAULT_NODE);
        state
    }

    /// Bumps and returns the resource version for an object that just changed.
    pub fn next_version(&mut self) -> String {
        self.revision += 1;
        self.revision.to_string()
    }

    /// The resource version of a list: the latest change.
    pub fn list_version(&self) -> String {
        self.revision.to_string()
    }

    /// Metadata of a new object: its name, namespace, a fresh uid, creation time and
    /// resource version, and whatever labels and annotations the client sent.
    pub fn new_meta(&mut self, mut meta: ObjectMeta, namespace: Option<&str>) -> ObjectMeta {
        meta.namespace = namespace.map(str::to_owned);
        meta.uid = Some(new_uid());
        meta.creation_timestamp = Some(Time(now()));
        meta.resource_version = Some(self.next_version());
        meta
    }

    /// Creates the namespace `name` (phase `Active`) unless it exists.
    pub fn ensure_namespace(&mut self, name: &str) {
        if !self.namespaces.contains_key(name) {
            let meta = ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            };
            let namespace = objects::active_namespace(self.new_meta(meta, None));
            self.namespaces.insert(name.to_owned(), namespace);
        }
    }

    /// Adds a Ready node named `name`, replacing one of that name.
    pub fn add_node(&mut self, name: &str) {
        let meta = ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        };
        let node = objects::ready_node(self.new_meta(meta, None));
        self.nodes
            .retain(|n| n.metadata.name.as_deref() != Some(name));
        self.nodes.push(node);
    }
}

/// The state shared by the server's handlers, its scheduler and the test's handle.
#[derive(Debug)]
pub(super) struct Shared {
    state: Mutex<State>,
    /// Live, unlike the other switches: requests already waiting are released when it is
    /// switched off.
    pub unresponsive: watch::Sender<bool>,
    /// Set once, when the [`super::FakeApiServer`] is dropped: ends every wait, the
    /// scheduler and the server.
    pub shutdown: watch::Sender<bool>,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            state: Mutex::new(State::new()),
            unresponsive: watch::Sender::new(false),
            shutdown: watch::Sender::new(false),
        }
    }

    /// The state. A handler that panicked while holding the lock leaves plain data behind
    /// that is still worth serving, so a poisoned lock is taken over rather than turning one
    /// bug into a panic in every later request and in the test's own calls.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves once the server is being dropped.
    pub async fn shut_down(&self) {
        let mut rx = self.shutdown.subscribe();
        // An error means the sender is gone, which is shutdown too.
        let _ = rx.wait_for(|&stop| stop).await;
    }

    /// Waits while the unresponsive switch is on; false if the server shut down meanwhile.
    pub async fn wait_responsive(&self) -> bool {
        let mut rx = self.unresponsive.subscribe();
        tokio::select! {
            answered = rx.wait_for(|&hung| !hung) => answered.is_ok(),
            () = self.shut_down() => false,
        }
    }

    /// Sleeps for `delay`; false if the server shut down meanwhile.
    pub async fn sleep(&self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.shut_down() => false,
        }
    }
}

/// The current time as the API's timestamps carry it.
pub(super) fn now() -> Timestamp {
    timestamp(SystemTime::now())
}

/// `time` as a jiff timestamp (k8s-openapi's `Time` and `MicroTime` wrap one). Panics
/// outside the years -9999..=9999, which only a broken test asks for.
pub(super) fn timestamp(time: SystemTime) -> Timestamp {
    let (seconds, nanos) = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => (after.as_secs(), after.subsec_nanos()),
        Err(before) => (
            before.duration().as_secs(),
            before.duration().subsec_nanos(),
        ),
    };
    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
    let nanos = i32::try_from(nanos).expect("sub-second nanoseconds are below 10^9");
    let (seconds, nanos) = if time < UNIX_EPOCH {
        (-seconds, -nanos)
    } else {
        (seconds, nanos)
    };
    Timestamp::new(seconds, nanos).expect("Kubernetes timestamps lie within the years -9999..=9999")
}

/// A random number; std's hasher keys are random per process and differ per `RandomState`,
/// which is plenty for names and uids in tests and needs no extra dependency.
fn random() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// A random `generateName` suffix of five characters, as the real API server appends.
pub(super) fn name_suffix() -> String {
    let mut bits = random();
    let alphabet = u64::try_from(SUFFIX_ALPHABET.len()).expect("a tiny alphabet length fits");
    (0..5)
        .map(|_| {
            let index = usize::try_from(bits % alphabet).expect("an index below 27 fits");
            bits /= alphabet;
            char::from(SUFFIX_ALPHABET[index])
        })
        .collect()
}

/// A random version-4 UUID, formatted as the API server formats `metadata.uid`.
pub(super) fn new_uid() -> String {
    let (high, low) = (random(), random());
    // Version 4 in the third group, the RFC 4122 variant in the fourth.
    let high = (high & !0xf000) | 0x4000;
    let low = (low & !(0xc << 60)) | (0x8 << 60);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_five_lowercase_alphanumerics_and_differ() {
        let a = name_suffix();
        let b = name_suffix();
        assert_eq!(a.len(), 5);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_ne!(a, b, "two suffixes in a row should differ");
    }

    #[test]
    fn uids_look_like_uuid_v4() {
        let uid = new_uid();
        let groups: Vec<&str> = uid.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(groups[2].starts_with('4'), "{uid}");
        assert!("89ab".contains(&groups[3][..1]), "{uid}");
    }

    #[test]
    fn timestamps_round_trip_before_and_after_the_epoch() {
        let after = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(timestamp(after).as_nanosecond(), 1_700_000_000_123_456_789);
        let before = UNIX_EPOCH - Duration::new(10, 500);
        assert_eq!(timestamp(before).as_nanosecond(), -10_000_000_500);
    }
}

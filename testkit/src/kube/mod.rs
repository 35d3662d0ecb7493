//! A fake kube-apiserver for tests of starling's Kubernetes checks: the REST subset they
//! use (health and version endpoints, namespaces, pods, nodes and their status conditions,
//! events, leases) over plain HTTP,
//! with a fake scheduler and kubelet, and switches that inject the failures the checks
//! must detect (a failing `/readyz` sub-check, latency, 500s, a server that never answers,
//! a scheduler that does not schedule).
//!
//! Constraints this module keeps:
//! - it is reached only through kube's real client in tests, so bodies are k8s-openapi
//!   types serialized as the real server serializes them, and every error is a
//!   `metav1.Status`, which the client turns into `kube::Error::Api`;
//! - it listens on the address a test gives it (loopback by default) and nowhere else;
//! - dropping it ends its tasks and connections and frees the port; nothing is left on
//!   disk but the kubeconfig a test asked for, in the test's own directory;
//! - no watches: a watch request is refused with 400, so checks must poll with GET.

mod error;
mod nodes;
mod objects;
mod pods;
mod routes;
mod scheduler;
mod selector;
mod server;
mod state;

pub use server::{FAKE_TOKEN, FakeApiServer};

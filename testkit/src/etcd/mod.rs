//! A real etcd for tests of starling's etcd checks: Debian's `etcd` (3.4, package
//! `etcd-server`) as a single-member cluster on 127.0.0.1, or several members of one,
//! optionally behind the same client-certificate TLS as a kubeadm control plane ([`Pki`]).
//!
//! Constraints this module keeps:
//! - everything listens on loopback only, on ports picked free at start, so parallel tests
//!   and a machine's own etcd (2379/2380/2381) never collide;
//! - all state (data dir, log, certificates) lives in temporary directories that are
//!   removed on drop; the process is killed and reaped on drop, also when a test panics;
//! - an etcd left behind by a killed test process is removed by the next fixture (see
//!   `stale.rs`), as the network lab does with its namespaces.

mod error;
mod pki;
mod server;
mod skip;
mod stale;

pub use error::EtcdError;
pub use pki::Pki;
pub use server::Etcd;
pub use skip::{etcd_installed_or_skip, etcd_or_skip, etcd_with_or_skip};

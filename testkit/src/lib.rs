//! Test-only fixtures for starling.
//!
//! The network-namespace lab ([`NetLab`]) runs real `starling` processes as separate "hosts"
//! joined by a private bridge, and injects faults: partitions and random packet loss with
//! `nft` ([`NetLab::partition`], [`NetLab::loss`]), and delay with `tc netem`
//! ([`NetLab::netem`]) where the kernel has it. Everything it creates lives inside
//! namespaces it owns, so a test never touches the machine's own interfaces, routes or
//! firewall, and `Drop` removes all of it again.
//!
//! # What a machine needs to run lab tests
//!
//! Root (`CAP_SYS_ADMIN` and `CAP_NET_ADMIN`), the Debian packages `iproute2` (`ip`, `tc`)
//! and `nftables` (`nft`), and a kernel with network namespaces, `veth`, `bridge` and
//! `nf_tables` (with the `inet` family and `numgen`, which loss uses). `sch_netem` is
//! optional: without it [`NetLab::netem`] returns [`LabError::Unsupported`] and the tests of
//! delay skip (see [`skip_unsupported`]), even in CI; loss never needs it. Without root, the
//! tools or the required kernel features, [`lab_or_skip`] skips lab tests, or fails them when
//! `STARLING_REQUIRE_NETNS=1` (as CI sets).
//!
//! # etcd
//!
//! [`Etcd`] runs a real single-member etcd on loopback (Debian's `etcd-server`, 3.4), plain
//! or with kubeadm-style client-certificate TLS from a generated [`Pki`]; it can be stopped
//! and restarted on the same ports and data. [`Etcd::start_cluster`] runs several members
//! of one cluster, their write-ahead logs optionally on a [`SlowDisk`]. Without the `etcd` binary, [`etcd_or_skip`]
//! skips etcd tests, or fails them when `STARLING_REQUIRE_ETCD=1` (as `scripts/test` sets).
//!
//! [`SlowDisk`] is a real slow disk for it, as root: an ext4 file system on a loop device
//! whose writes a block-I/O cgroup throttles (in operations or bytes a second, for as long
//! as the [`Throttled`] guard lives) for the processes admitted to it;
//! [`slow_disk_or_skip`] skips without root or loop devices, or fails when
//! `STARLING_REQUIRE_NETNS=1`.
//!
//! # Kubernetes API
//!
//! [`FakeApiServer`] is a fake kube-apiserver on plain HTTP (loopback by default) for tests
//! of the Kubernetes checks through kube's real client: `/livez`, `/readyz?verbose`,
//! `/version`, namespaces, pods (with a fake scheduler that binds them and a fake kubelet
//! that runs them), nodes and leases, and switches for a failing `/readyz` sub-check,
//! latency, 500s, a server that never answers, and a scheduler that does not schedule. It
//! needs nothing installed and never skips.
//!
//! # Metrics
//!
//! [`parse_exposition`] reads a `/metrics` text strictly (syntax and naming conventions), for
//! tests of what an agent exports. [`promtool_or_skip`] hands out Debian's real `promtool`
//! (metrics linter, rule checker and rule unit tests), or skips without it unless
//! `STARLING_REQUIRE_PROMETHEUS=1`; [`prometheus_or_skip`] a real Prometheus server on
//! loopback that scrapes the agents a test names and evaluates rule files.
//!
//! # Alerts
//!
//! [`alertmanager_or_skip`] runs Debian's real Alertmanager on loopback (alone, as one HA
//! replica), and [`amtool_check_config`] checks a configuration with `amtool`.
//! [`AlertReceiver`] records every request an agent sends to Alertmanager or a webhook and
//! answers a status the test chooses (503 to play a receiver that is down);
//! `stl-alert-receiver` is the same as a process for the namespace lab, logging requests to a
//! file the test reads with [`read_received_log`].
//!
//! This crate is a dev-dependency only; it never ships in the product path.

mod alertmanager;
mod alerts;
mod containerd;
mod dns;
mod etcd;
mod exposition;
mod kube;
mod netlab;
mod prometheus;
mod served;
mod slowdisk;
mod smalldisk;
mod tool;
mod wait;

// `self::` because unit tests also see the `kube` client crate (a dev-dependency), which
// would make a bare `kube::` path ambiguous.
pub use self::kube::{FAKE_TOKEN, FakeApiServer};
pub use alertmanager::{Alertmanager, alertmanager_or_skip, amtool_check_config};
pub use alerts::{AlertReceiver, Received, read_received_log};
pub use containerd::{Containerd, PAUSE_IMAGE, containerd_or_skip};
pub use dns::{DnsReply, DnsServer};
pub use etcd::{Etcd, EtcdError, Pki, etcd_installed_or_skip, etcd_or_skip, etcd_with_or_skip};
pub use exposition::{MetricFamily, Sample, parse_exposition};
pub use netlab::{LabError, LabProcess, NetLab, lab_or_skip, skip_or_fail, skip_unsupported};
pub use prometheus::{Prometheus, Promtool, prometheus_or_skip, promtool_or_skip};
pub use served::ServedError;
pub use slowdisk::{SlowDisk, Throttled, slow_disk_or_skip};
pub use smalldisk::{SmallDisk, small_disk_or_skip};
pub use wait::wait_until;

//! The checks against real targets (etcd from Debian's etcd-server,
//! testkit's fake API server, local HTTP and DNS servers, exec plugins,
//! containerd from Debian's containerd),
//! and the runner's timing, as one test binary.

mod etcd;
mod etcd_lag;
mod healthz;
mod kube;
mod node;
mod runner;
mod runtime;
mod tls_server;

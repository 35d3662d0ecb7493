//! The fixtures proven against the real things they stand in for or
//! drive: etcd, the kube client against the fake API server, and the
//! namespace lab. One test binary.

mod etcd;
mod fake_apiserver;
mod netlab;

//! The whole system under test, as one test binary (one link of the crate
//! graph instead of one per file): in-process agents on 127.0.0.1, the
//! `starling` binary as an operator runs it, the manifests in `deploy/`,
//! and real agent processes in network namespaces.

mod support;

mod agents_loopback;
mod aggregation_loopback;
mod alert_loopback;
mod alertmanager;
mod cli;
mod deploy_components;
mod deploy_manifests;
mod history_loopback;
mod lab_loopback;
mod metrics_exposition;
mod netns_aggregators;
mod netns_alerts;
mod netns_checks;
mod netns_cluster;
mod netns_history;
mod netns_overlay;
mod netns_surface;
mod netns_upgrade;
mod node_checks_loopback;
mod node_conditions;
mod overlay_loopback;
mod prometheus_rules;

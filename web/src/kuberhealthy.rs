//! `/json`: the cluster status in the shape of Kuberhealthy's status page,
//! so dashboards and scripts written for Kuberhealthy read starling
//! unchanged.
//!
//! The mapping (also in the README):
//! - `OK`: the cluster verdict of `/v1/status` (`healthy`).
//! - `Errors`: its `reasons`, one string each.
//! - `CheckDetails`: one entry per check result, keyed `NODE/CHECK` for
//!   checks run on every node and `cluster/CHECK` for checks run once for
//!   the cluster; plus `NODE/gossip` for each node gossip cannot reach, so
//!   a dead node is an entry that is not OK rather than a silent absence.
//!   `OK` is false only for critical results (warnings are OK, as in
//!   starling's own verdict); `Errors` holds the message when not OK;
//!   `Namespace` is `starling`; `Node` is the node that ran the check;
//!   `LastRun` is when it ran; `RunDuration` is unknown from the cluster log
//!   and left empty; `AuthoritativePod` is the answering node; `uuid`
//!   names the run (node, check, time).
//! - `JobDetails`: empty (starling has no run-once jobs).
//! - `CurrentMaster`: the answering node (every node answers for all).
//! - `Metadata`: who answered, when, which side of a partition, and the
//!   member counts, as strings.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use starling_model::{CheckSummary, NodeHealth, Status, StatusResponse};

/// Kuberhealthy's `health.State`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KuberhealthyState {
    #[serde(rename = "OK")]
    pub ok: bool,
    #[serde(rename = "Errors")]
    pub errors: Vec<String>,
    #[serde(rename = "CheckDetails")]
    pub check_details: BTreeMap<String, WorkloadDetails>,
    #[serde(rename = "JobDetails")]
    pub job_details: BTreeMap<String, WorkloadDetails>,
    #[serde(rename = "CurrentMaster")]
    pub current_master: String,
    #[serde(rename = "Metadata")]
    pub metadata: BTreeMap<String, String>,
}

/// Kuberhealthy's per-check `WorkloadDetails`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadDetails {
    #[serde(rename = "OK")]
    pub ok: bool,
    #[serde(rename = "Errors")]
    pub errors: Vec<String>,
    #[serde(rename = "RunDuration")]
    pub run_duration: String,
    #[serde(rename = "Namespace")]
    pub namespace: String,
    #[serde(rename = "Node")]
    pub node: String,
    /// RFC 3339; absent when the check never ran (Kuberhealthy's omitempty).
    #[serde(rename = "LastRun", skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    #[serde(rename = "AuthoritativePod")]
    pub authoritative_pod: String,
    #[serde(rename = "uuid")]
    pub uuid: String,
}

const NAMESPACE: &str = "starling";

pub fn from_status(status: &StatusResponse) -> KuberhealthyState {
    let answered_by = &status.answered_by;
    let mut check_details = BTreeMap::new();
    for check in &status.cluster_checks {
        check_details.insert(
            format!("cluster/{}", check.check),
            details(check, answered_by),
        );
    }
    for node in &status.nodes {
        for check in &node.checks {
            check_details.insert(
                format!("{}/{}", node.name, check.check),
                details(check, answered_by),
            );
        }
        if node.status == NodeHealth::Unreachable {
            check_details.insert(
                format!("{}/gossip", node.name),
                WorkloadDetails {
                    ok: false,
                    errors: node.reasons.clone(),
                    run_duration: String::new(),
                    namespace: NAMESPACE.to_owned(),
                    node: node.name.clone(),
                    last_run: Some(rfc3339(status.answered_at_unix_ms)),
                    authoritative_pod: answered_by.clone(),
                    uuid: format!("{}/gossip/{}", node.name, status.answered_at_unix_ms),
                },
            );
        }
    }
    let counts = &status.counts;
    let metadata = [
        ("answered_by", answered_by.clone()),
        ("answered_at", rfc3339(status.answered_at_unix_ms)),
        ("majority", status.majority.to_string()),
        ("members_alive", counts.alive.to_string()),
        ("members_suspect", counts.suspect.to_string()),
        ("members_down", counts.down.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    KuberhealthyState {
        ok: status.healthy,
        errors: status.reasons.clone(),
        check_details,
        job_details: BTreeMap::new(),
        current_master: answered_by.clone(),
        metadata,
    }
}

fn details(check: &CheckSummary, answered_by: &str) -> WorkloadDetails {
    let ok = check.status != Status::Critical;
    WorkloadDetails {
        ok,
        errors: if ok {
            Vec::new()
        } else {
            vec![check.message.clone()]
        },
        run_duration: String::new(),
        namespace: NAMESPACE.to_owned(),
        node: check.node.clone(),
        last_run: Some(rfc3339(check.at_unix_ms)),
        authoritative_pod: answered_by.to_owned(),
        uuid: format!("{}/{}/{}", check.node, check.check, check.at_unix_ms),
    }
}

fn rfc3339(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

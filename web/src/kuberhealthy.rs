//! `/json`: the cluster status in the shape of Kuberhealthy's status page,
//! so dashboards and scripts written for Kuberhealthy read starling
//! unchanged: v3's shape (current Kuberhealthy, `internal/health`) by
//! default, v2's (`pkg/health`, `khstate/v1`) with `?v=2`.
//!
//! The mapping (also in docs/reference.md):
//! - `OK`: the cluster verdict of `/v1/status` (`healthy`); `Errors` its
//!   `reasons`, one string each.
//! - `CheckDetails`: one entry per check result, keyed `NODE/CHECK` for
//!   checks run on every node and `cluster/CHECK` for checks run once for
//!   the cluster; plus `NODE/gossip` for each node gossip cannot reach, so
//!   a dead node is an entry that is not OK rather than a silent absence.
//!   OK is false only for critical results (warnings are OK, as in
//!   starling's own verdict); errors hold the message when not OK. The
//!   run's identity (uuid) is node, check and when it ran; a gossip entry's
//!   is when the node was last heard from, so it stays the same from one
//!   request to the next.
//! - How long a run took is not in the cluster log (it carries status
//!   changes): v3 leaves `runDuration` out (its omitempty), v2 says `0s`,
//!   the one valid duration string for "none".
//! - `CurrentMaster`: the answering node (every node answers for all);
//!   v2's `JobDetails` is empty (starling has no run-once jobs).
//! - `Metadata`: who answered, when, which side of a partition, and the
//!   member counts, as strings.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use starling_model::{CheckSummary, NodeHealth, Status, StatusResponse};

const NAMESPACE: &str = "starling";

/// Which Kuberhealthy a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    V2,
    V3,
}

/// Kuberhealthy v3's `health.State`: Go field names at the top level.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateV3 {
    #[serde(rename = "OK")]
    pub ok: bool,
    #[serde(rename = "Errors")]
    pub errors: Vec<String>,
    #[serde(rename = "CheckDetails")]
    pub check_details: BTreeMap<String, CheckDetailV3>,
    #[serde(rename = "CurrentMaster")]
    pub current_master: String,
    #[serde(rename = "Metadata")]
    pub metadata: BTreeMap<String, String>,
}

/// Kuberhealthy v3's `CheckDetail` (its embedded `HealthCheckStatus`):
/// lowerCamel tags, Unix seconds, everything but `ok` and `currentUUID`
/// left out when empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CheckDetailV3 {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(rename = "currentUUID")]
    pub current_uuid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_unix: Option<i64>,
    #[serde(
        default,
        rename = "lastOKUnix",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_ok_unix: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_unix: Option<i64>,
}

/// Kuberhealthy v2's `health.State`.
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

/// Kuberhealthy v2's per-check `WorkloadDetails`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadDetails {
    #[serde(rename = "OK")]
    pub ok: bool,
    #[serde(rename = "Errors")]
    pub errors: Vec<String>,
    /// A Go duration string (`time.Duration.String()`).
    #[serde(rename = "RunDuration")]
    pub run_duration: String,
    #[serde(rename = "Namespace")]
    pub namespace: String,
    #[serde(rename = "Node")]
    pub node: String,
    /// RFC 3339 to the second, as `metav1.Time` writes it.
    #[serde(rename = "LastRun", skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    #[serde(rename = "AuthoritativePod")]
    pub authoritative_pod: String,
    #[serde(rename = "uuid")]
    pub uuid: String,
}

/// One entry of `CheckDetails`, before it takes a version's shape.
struct Entry {
    ok: bool,
    errors: Vec<String>,
    node: String,
    at_unix_ms: Option<u64>,
    uuid: String,
}

/// `/json` in `version`'s shape.
pub(crate) fn render(status: &StatusResponse, version: Version) -> serde_json::Value {
    let entries = entries(status);
    let answered_by = status.answered_by.clone();
    let json = match version {
        Version::V3 => serde_json::to_value(StateV3 {
            ok: status.healthy,
            errors: status.reasons.clone(),
            check_details: entries
                .into_iter()
                .map(|(key, entry)| (key, v3(entry)))
                .collect(),
            current_master: answered_by,
            metadata: metadata(status),
        }),
        Version::V2 => serde_json::to_value(KuberhealthyState {
            ok: status.healthy,
            errors: status.reasons.clone(),
            check_details: entries
                .into_iter()
                .map(|(key, entry)| (key, v2(entry, &answered_by)))
                .collect(),
            job_details: BTreeMap::new(),
            current_master: answered_by.clone(),
            metadata: metadata(status),
        }),
    };
    json.expect("Kuberhealthy's shapes always serialize")
}

fn entries(status: &StatusResponse) -> BTreeMap<String, Entry> {
    let mut entries = BTreeMap::new();
    for check in &status.cluster_checks {
        entries.insert(format!("cluster/{}", check.check), entry(check));
    }
    for node in &status.nodes {
        for check in &node.checks {
            entries.insert(format!("{}/{}", node.name, check.check), entry(check));
        }
        if node.status == NodeHealth::Unreachable {
            // When it was last heard from: the same on every request.
            let last_heard = node.checks.iter().map(|c| c.at_unix_ms).max();
            entries.insert(
                format!("{}/gossip", node.name),
                Entry {
                    ok: false,
                    errors: node.reasons.clone(),
                    node: node.name.clone(),
                    at_unix_ms: last_heard,
                    uuid: match last_heard {
                        Some(at) => format!("{}/gossip/{at}", node.name),
                        None => format!("{}/gossip", node.name),
                    },
                },
            );
        }
    }
    entries
}

fn entry(check: &CheckSummary) -> Entry {
    let ok = check.status != Status::Critical;
    Entry {
        ok,
        errors: if ok {
            Vec::new()
        } else {
            vec![check.message.clone()]
        },
        node: check.node.clone(),
        at_unix_ms: Some(check.at_unix_ms),
        uuid: format!("{}/{}/{}", check.node, check.check, check.at_unix_ms),
    }
}

fn v3(entry: Entry) -> CheckDetailV3 {
    let at = entry.at_unix_ms.map(|ms| (ms / 1000) as i64);
    CheckDetailV3 {
        ok: entry.ok,
        errors: entry.errors,
        namespace: Some(NAMESPACE.to_owned()),
        current_uuid: entry.uuid,
        last_run_unix: at,
        last_ok_unix: at.filter(|_| entry.ok),
        last_failure_unix: at.filter(|_| !entry.ok),
    }
}

fn v2(entry: Entry, answered_by: &str) -> WorkloadDetails {
    WorkloadDetails {
        ok: entry.ok,
        errors: entry.errors,
        run_duration: "0s".to_owned(),
        namespace: NAMESPACE.to_owned(),
        node: entry.node,
        last_run: entry.at_unix_ms.map(rfc3339_seconds),
        authoritative_pod: answered_by.to_owned(),
        uuid: entry.uuid,
    }
}

fn metadata(status: &StatusResponse) -> BTreeMap<String, String> {
    let counts = &status.counts;
    [
        ("answered_by", status.answered_by.clone()),
        ("answered_at", rfc3339_seconds(status.answered_at_unix_ms)),
        ("majority", status.majority.to_string()),
        ("members_alive", counts.alive.to_string()),
        ("members_suspect", counts.suspect.to_string()),
        ("members_down", counts.down.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn rfc3339_seconds(unix_ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

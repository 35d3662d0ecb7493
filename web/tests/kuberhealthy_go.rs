//! Copies of Kuberhealthy's own Go structs, field for field: the JSON keys
//! of their tags and the types Go's decoder wants, so a test decodes
//! `/json` as a Kuberhealthy client would. Unknown keys are refused, which
//! is stricter than Go (it ignores them, and matches keys regardless of
//! case, so a `RunDuration: ""` lands on v3's `runDuration` and fails).

use std::collections::BTreeMap;

use serde::Deserialize;

/// v3.0.13 `internal/health.State` (no tags: Go field names).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case, dead_code)]
pub struct StateV3 {
    pub OK: bool,
    pub Errors: Vec<String>,
    pub CheckDetails: BTreeMap<String, CheckDetailV3>,
    pub CurrentMaster: String,
    pub Metadata: BTreeMap<String, String>,
}

/// v3.0.13 `internal/health.CheckDetail` with its embedded
/// `api.HealthCheckStatus`; Go's `time.Duration` is integer nanoseconds,
/// times are Unix seconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case, dead_code)]
pub struct CheckDetailV3 {
    pub ok: bool,
    pub errors: Option<Vec<String>>,
    pub consecutiveFailures: Option<i64>,
    pub runDuration: Option<i64>,
    pub namespace: Option<String>,
    pub currentUUID: String,
    pub lastRunUnix: Option<i64>,
    pub successCount: Option<i64>,
    pub failureCount: Option<i64>,
    pub lastOKUnix: Option<i64>,
    pub lastFailureUnix: Option<i64>,
    pub additionalMetadata: Option<String>,
    pub nextRunUnix: Option<i64>,
    pub podName: Option<String>,
    pub timeoutSeconds: Option<i64>,
    pub runIntervalSeconds: Option<i64>,
}

/// v2 `pkg/health.State`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case, dead_code)]
pub struct StateV2 {
    pub OK: bool,
    pub Errors: Vec<String>,
    pub CheckDetails: BTreeMap<String, WorkloadDetailsV2>,
    pub JobDetails: BTreeMap<String, WorkloadDetailsV2>,
    pub CurrentMaster: String,
    pub Metadata: BTreeMap<String, String>,
}

/// v2 `khstate/v1.WorkloadDetails`: `RunDuration` a Go duration string,
/// `LastRun` a `metav1.Time` (RFC 3339 to the second).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(non_snake_case, dead_code)]
pub struct WorkloadDetailsV2 {
    pub OK: bool,
    pub Errors: Option<Vec<String>>,
    pub RunDuration: String,
    pub Namespace: String,
    pub Node: String,
    pub LastRun: Option<String>,
    pub AuthoritativePod: String,
    pub uuid: String,
}

/// Whether `text` parses as Go's `time.ParseDuration` would take it, for
/// the forms `Duration.String()` writes (`0s`, `1.5s`, `1m2.345s`, `300ms`).
pub fn go_duration(text: &str) -> bool {
    if text == "0" || text == "0s" {
        return true;
    }
    let mut rest = text;
    let mut any = false;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u))
        else {
            return false;
        };
        rest = &rest[unit.len()..];
        any = true;
    }
    any
}

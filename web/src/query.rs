//! Query-string parsing: every refusal names the parameter at fault.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use starling_model::{
    ApiError, DEFAULT_HISTORY_LIMIT, DEFAULT_NODE_LIMIT, HistoryCursor, HistoryQuery,
    MAX_HISTORY_LIMIT, MAX_NODE_LIMIT, MEMBER_STATES, MemberPage, NodePage,
};

const HISTORY_PARAMS: [&str; 7] = ["node", "kind", "check", "since", "until", "cursor", "limit"];

const NODE_PARAMS: [&str; 4] = ["status", "node", "cursor", "limit"];

/// `?status=&node=&cursor=&limit=` of `/v1/status` and `/v1/nodes`.
pub(crate) fn node_page(params: &HashMap<String, String>) -> Result<NodePage, ApiError> {
    only_known(params, &NODE_PARAMS)?;
    let text = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    Ok(NodePage {
        status: text("status")
            .map(|status| status.parse())
            .transpose()
            .map_err(|error| ApiError::BadRequest(format!("status: {error}")))?,
        node: text("node"),
        cursor: text("cursor"),
        limit: limit(params, DEFAULT_NODE_LIMIT, MAX_NODE_LIMIT)?,
    })
}

const MEMBER_PARAMS: [&str; 4] = ["state", "node", "cursor", "limit"];

/// `?state=&node=&cursor=&limit=` of `/v1/members`.
pub(crate) fn member_page(params: &HashMap<String, String>) -> Result<MemberPage, ApiError> {
    only_known(params, &MEMBER_PARAMS)?;
    let text = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    let state = text("state");
    if let Some(state) = &state
        && !MEMBER_STATES.contains(&state.as_str())
    {
        return Err(ApiError::BadRequest(format!(
            "state: {state:?} is not one of {}",
            MEMBER_STATES.join(", ")
        )));
    }
    Ok(MemberPage {
        state,
        node: text("node"),
        cursor: text("cursor"),
        limit: limit(params, DEFAULT_NODE_LIMIT, MAX_NODE_LIMIT)?,
    })
}

fn only_known(params: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::BadRequest(format!(
            "unknown parameter {unknown:?} (known: {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

fn limit(params: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, ApiError> {
    match params.get("limit") {
        None => Ok(default),
        Some(value) => match value.parse::<usize>() {
            Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
            _ => Err(ApiError::BadRequest(format!(
                "limit: {value:?} is not a number from 1 to {max}"
            ))),
        },
    }
}

pub(crate) fn history(params: &HashMap<String, String>) -> Result<HistoryQuery, ApiError> {
    only_known(params, &HISTORY_PARAMS)?;
    let text = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    let limit = limit(params, DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT)?;
    let since_unix_ms = time(params, "since")?;
    let until_unix_ms = time(params, "until")?;
    if let (Some(since), Some(until)) = (since_unix_ms, until_unix_ms)
        && since >= until
    {
        return Err(ApiError::BadRequest(format!(
            "since ({since}) is not before until ({until}): the range is empty"
        )));
    }
    Ok(HistoryQuery {
        node: text("node"),
        kind: text("kind")
            .map(|kind| kind.parse())
            .transpose()
            .map_err(|error| ApiError::BadRequest(format!("kind: {error}")))?,
        check: text("check"),
        since_unix_ms,
        until_unix_ms,
        cursor: params
            .get("cursor")
            .map(|value| value.parse::<HistoryCursor>())
            .transpose()
            .map_err(|error| ApiError::BadRequest(format!("cursor: {error}")))?,
        limit,
    })
}

/// A point in time: Unix milliseconds, RFC 3339 (`2026-11-23T10:00:00Z`),
/// or a duration ago (`24h`, `30m`, `7d`).
fn time(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(value) = params.get(name) else {
        return Ok(None);
    };
    if let Ok(unix_ms) = value.parse::<u64>() {
        return Ok(Some(unix_ms));
    }
    let at = humantime::parse_rfc3339_weak(value).ok().or_else(|| {
        let ago = humantime::parse_duration(value).ok()?;
        SystemTime::now().checked_sub(ago)
    });
    at.and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .map(|d| Some(d.as_millis() as u64))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{name}: {value:?} is not Unix milliseconds, RFC 3339 (2026-11-23T10:00:00Z) \
                 or a duration ago (24h)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn filters_parse_and_default() {
        let query = history(&params(&[
            ("node", "n1"),
            ("since", "2026-11-23T10:00:00Z"),
            ("until", "1800000000000"),
        ]))
        .expect("valid filters");
        assert_eq!(query.node.as_deref(), Some("n1"));
        assert_eq!(query.since_unix_ms, Some(1_795_428_000_000));
        assert_eq!(query.until_unix_ms, Some(1_800_000_000_000));
        assert_eq!(query.limit, DEFAULT_HISTORY_LIMIT);
        assert_eq!(query.cursor, None);
    }

    #[test]
    fn a_duration_means_that_long_ago() {
        let query = history(&params(&[("since", "24h")])).expect("a duration");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64;
        let ago = now - query.since_unix_ms.expect("since set");
        assert!(ago.abs_diff(86_400_000) < 5_000, "{ago}");
    }

    #[test]
    fn a_cursor_round_trips_with_colons_in_the_origin() {
        let cursor = HistoryCursor {
            at_unix_ms: 17,
            origin: "node:a#00ff".to_owned(),
            seq: 4,
        };
        let query = history(&params(&[("cursor", &cursor.to_string())])).expect("valid");
        assert_eq!(query.cursor, Some(cursor));
    }

    #[test]
    fn refusals_name_the_parameter() {
        for (pairs, named) in [
            (vec![("since", "yesterday")], "since:"),
            (vec![("until", "x")], "until:"),
            (vec![("limit", "0")], "limit:"),
            (vec![("limit", "100000")], "limit:"),
            (vec![("nodes", "n1")], "\"nodes\""),
            (vec![("cursor", "12:x")], "cursor:"),
            (vec![("cursor", "a:1:n#1")], "cursor:"),
            (vec![("since", "20"), ("until", "10")], "range is empty"),
        ] {
            let refusal = history(&params(&pairs)).expect_err("refused");
            assert!(refusal.to_string().contains(named), "{refusal}");
        }
    }
}

//! Query-string parsing: every refusal names the parameter at fault.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use starling_model::{
    ApiError, DEFAULT_HISTORY_LIMIT, HistoryCursor, HistoryQuery, MAX_HISTORY_LIMIT,
};

const HISTORY_PARAMS: [&str; 7] = ["node", "kind", "check", "since", "until", "cursor", "limit"];

pub(crate) fn history(params: &HashMap<String, String>) -> Result<HistoryQuery, ApiError> {
    if let Some(unknown) = params
        .keys()
        .find(|k| !HISTORY_PARAMS.contains(&k.as_str()))
    {
        return Err(ApiError::BadRequest(format!(
            "unknown parameter {unknown:?} (known: {})",
            HISTORY_PARAMS.join(", ")
        )));
    }
    let text = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    let limit = match params.get("limit") {
        None => DEFAULT_HISTORY_LIMIT,
        Some(value) => match value.parse::<usize>() {
            Ok(limit) if (1..=MAX_HISTORY_LIMIT).contains(&limit) => limit,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit: {value:?} is not a number from 1 to {MAX_HISTORY_LIMIT}"
                )));
            }
        },
    };
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

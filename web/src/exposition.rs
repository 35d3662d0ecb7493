//! The two dialects of the text exposition, chosen by `Accept`.
//!
//! The agent's registry writes OpenMetrics 1.0. Prometheus asks for it,
//! but `promtool check metrics`, `curl` and classic scrapers (client_golang's
//! `expfmt`, older Prometheus, VictoriaMetrics agents configured for it)
//! read the classic format 0.0.4, where a counter's `# TYPE` and `# HELP`
//! name its `_total` sample, `info` is a gauge and there is no `# EOF`.
//! Served OpenMetrics, they see every counter without help text.

use axum::http::HeaderValue;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which text format a scraper gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenMetrics,
    Classic,
}

impl Dialect {
    /// OpenMetrics when `Accept` names it at least as high as the classic
    /// `text/plain`; classic otherwise, as client_golang decides, so that a
    /// bare `curl` or `Accept: */*` gets the format every tool reads.
    pub(crate) fn negotiate(accept: Option<&HeaderValue>) -> Dialect {
        let Some(accept) = accept.and_then(|value| value.to_str().ok()) else {
            return Dialect::Classic;
        };
        let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let quality = parts
                .find_map(|p| p.strip_prefix("q="))
                .and_then(|q| q.parse().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(quality),
                "text/plain" => text = text.max(quality),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Dialect::OpenMetrics
        } else {
            Dialect::Classic
        }
    }

    pub(crate) fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Dialect::OpenMetrics => OPENMETRICS,
            Dialect::Classic => CLASSIC,
        })
    }

    /// `openmetrics` (as the registry writes it) in this dialect.
    pub(crate) fn render(self, openmetrics: String) -> String {
        match self {
            Dialect::OpenMetrics => openmetrics,
            Dialect::Classic => to_classic(&openmetrics),
        }
    }
}

/// OpenMetrics text rewritten in the classic format: a counter family
/// `x` becomes `x_total` in its metadata (its samples already are), an
/// `info` family `x` a gauge `x_info`, `unknown` is `untyped`; `# UNIT`,
/// `_created` samples and `# EOF` have no classic form and go.
fn to_classic(openmetrics: &str) -> String {
    let kinds: std::collections::HashMap<&str, &str> = openmetrics
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("# TYPE ")?.split(' ');
            Some((words.next()?, words.next()?))
        })
        .collect();
    let classic_name = |family: &str| match kinds.get(family) {
        Some(&"counter") => format!("{family}_total"),
        Some(&"info") => format!("{family}_info"),
        _ => family.to_owned(),
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (family, help) = rest.split_once(' ').unwrap_or((rest, ""));
            // OpenMetrics escapes `"` in help text; the classic format
            // escapes only `\` and newlines.
            let help = help.replace("\\\"", "\"");
            out.push_str(&format!("# HELP {} {help}\n", classic_name(family)));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = match kind {
                "info" => "gauge",
                "unknown" => "untyped",
                other => other,
            };
            out.push_str(&format!("# TYPE {} {kind}\n", classic_name(family)));
        } else if is_created_sample(line, &kinds) {
            continue;
        } else {
            // An exemplar (` # {…}`) has no classic form either.
            let sample = line.split_once(" # ").map_or(line, |(sample, _)| sample);
            out.push_str(sample);
            out.push('\n');
        }
    }
    out
}

/// `x_created` of a counter, histogram or summary family `x` (a gauge
/// has no such sample: one of that name is a family of its own).
fn is_created_sample(line: &str, kinds: &std::collections::HashMap<&str, &str>) -> bool {
    let name = line.split(['{', ' ']).next().unwrap_or_default();
    name.strip_suffix("_created")
        .and_then(|family| kinds.get(family))
        .is_some_and(|kind| matches!(*kind, "counter" | "histogram" | "summary"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_the_classic_format() {
        let negotiate =
            |accept: &'static str| Dialect::negotiate(Some(&HeaderValue::from_static(accept)));
        // Prometheus 2.42's scrape header.
        assert_eq!(
            negotiate(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            ),
            Dialect::OpenMetrics
        );
        assert_eq!(negotiate("*/*"), Dialect::Classic);
        assert_eq!(negotiate("text/plain;version=0.0.4"), Dialect::Classic);
        assert_eq!(
            negotiate("text/plain;q=1,application/openmetrics-text;q=0.5"),
            Dialect::Classic
        );
        assert_eq!(
            negotiate("application/openmetrics-text;q=0"),
            Dialect::Classic
        );
        assert_eq!(Dialect::negotiate(None), Dialect::Classic);
    }

    #[test]
    fn a_gauge_named_like_a_created_sample_is_kept() {
        let openmetrics = "# TYPE starling_x gauge\nstarling_x 1\n\
                           # TYPE starling_x_created gauge\nstarling_x_created 2\n# EOF\n";
        assert!(to_classic(openmetrics).contains("\nstarling_x_created 2\n"));
    }

    #[test]
    fn counters_info_and_units_are_rewritten_for_the_classic_format() {
        let openmetrics = "\
# HELP starling_gossip_stalls Times the \\\"gossip\\\" loop stalled.
# TYPE starling_gossip_stalls counter
starling_gossip_stalls_total 3
starling_gossip_stalls_created 1.7e9
# HELP starling_check_duration_seconds How long a run took.
# TYPE starling_check_duration_seconds histogram
# UNIT starling_check_duration_seconds seconds
starling_check_duration_seconds_bucket{le=\"+Inf\",check=\"disk\"} 1
starling_check_duration_seconds_sum{check=\"disk\"} 0.5 # {trace=\"x\"} 0.5
starling_check_duration_seconds_count{check=\"disk\"} 1
# HELP starling_build Build.
# TYPE starling_build info
starling_build_info{version=\"0.1.0\"} 1
# EOF
";
        assert_eq!(
            to_classic(openmetrics),
            "\
# HELP starling_gossip_stalls_total Times the \"gossip\" loop stalled.
# TYPE starling_gossip_stalls_total counter
starling_gossip_stalls_total 3
# HELP starling_check_duration_seconds How long a run took.
# TYPE starling_check_duration_seconds histogram
starling_check_duration_seconds_bucket{le=\"+Inf\",check=\"disk\"} 1
starling_check_duration_seconds_sum{check=\"disk\"} 0.5
starling_check_duration_seconds_count{check=\"disk\"} 1
# HELP starling_build_info Build.
# TYPE starling_build_info gauge
starling_build_info{version=\"0.1.0\"} 1
"
        );
    }
}

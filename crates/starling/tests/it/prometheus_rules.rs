//! The shipped PrometheusRule against the real `promtool` (Debian's
//! `prometheus`): its groups are valid rules, and every alert has unit
//! tests in `tests/prometheus/rules.test.yaml` that pass, including the
//! outage where no agent is on a majority side.

use std::collections::BTreeSet;

use starling_testkit::promtool_or_skip;

use crate::support::manifests::{self, PrometheusRule, deploy, render};

/// The unit tests, next to this crate's tests.
fn rule_tests() -> std::path::PathBuf {
    manifests::repository().join("crates/starling/tests/prometheus/rules.test.yaml")
}

fn shipped_rule() -> PrometheusRule {
    render(&deploy("overlays/prometheus"))
        .into_iter()
        .find(|document| document.kind().1 == "PrometheusRule")
        .expect("the Prometheus overlay ships a PrometheusRule")
        .strict()
}

#[test]
fn every_shipped_alert_has_unit_tests() {
    let shipped: BTreeSet<String> = shipped_rule()
        .spec
        .groups
        .into_iter()
        .flat_map(|group| group.rules)
        .map(|rule| rule.alert)
        .collect();
    let tests = std::fs::read_to_string(rule_tests()).expect("the rule tests");
    let tested: BTreeSet<String> = tests
        .lines()
        .filter_map(|line| line.trim().strip_prefix("alertname: "))
        .map(str::to_owned)
        .collect();
    assert_eq!(shipped, tested);
}

#[test]
fn the_shipped_rules_are_valid_and_pass_their_unit_tests() {
    let Some(promtool) = promtool_or_skip() else {
        return;
    };
    // promtool reads plain rule files: the PrometheusRule's spec is one.
    // JSON is YAML, so serde_json writes it.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rules = dir.path().join("rules.yaml");
    let groups = serde_json::to_string_pretty(&shipped_rule().spec).expect("serialises");
    std::fs::write(&rules, groups).expect("writes the rules");
    let tests = dir.path().join("rules.test.yaml");
    std::fs::copy(rule_tests(), &tests).expect("copies the tests");

    let checked = promtool
        .check_rules(&rules)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool
        .test_rules(&tests)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(tested.contains("SUCCESS"), "{tested}");
}

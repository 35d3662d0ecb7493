//! Label and field selectors, the equality-based subset: `k=v`, `k==v`, `k!=v`, `k`, `!k`,
//! joined by commas. Set-based syntax (`k in (a,b)`) is refused with 400 rather than
//! ignored, so that a test can never pass because the fake listed too much.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::error::ApiError;

/// The pod fields the real API server lets clients select on that the fake supports.
const POD_FIELDS: [&str; 4] = [
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
];

#[derive(Debug, PartialEq)]
enum Op {
    Equals(String),
    NotEquals(String),
    Exists,
    NotExists,
}

#[derive(Debug, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Selector(Vec<Requirement>);

impl Selector {
    /// Parses `text`, the value of a `labelSelector` or `fieldSelector` query parameter.
    pub fn parse(text: &str) -> Result<Selector, ApiError> {
        let unsupported = || {
            ApiError::BadRequest(format!(
                "unable to parse selector {text:?}: the fake apiserver supports only \
                 equality selectors (k=v, k==v, k!=v, k, !k) joined by commas"
            ))
        };
        let mut requirements = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (key, op) = if let Some((key, value)) = term.split_once("!=") {
                (key, Op::NotEquals(value.trim().to_owned()))
            } else if let Some((key, value)) = term.split_once("==") {
                (key, Op::Equals(value.trim().to_owned()))
            } else if let Some((key, value)) = term.split_once('=') {
                (key, Op::Equals(value.trim().to_owned()))
            } else if let Some(key) = term.strip_prefix('!') {
                (key, Op::NotExists)
            } else {
                (term, Op::Exists)
            };
            let key = key.trim();
            let bad = |s: &str| s.is_empty() || s.contains([' ', '(', ')', '=', '!']);
            let value_bad = match &op {
                Op::Equals(v) | Op::NotEquals(v) => v.contains([' ', '(', ')', '=', '!']),
                Op::Exists | Op::NotExists => false,
            };
            if bad(key) || value_bad {
                return Err(unsupported());
            }
            requirements.push(Requirement {
                key: key.to_owned(),
                op,
            });
        }
        Ok(Selector(requirements))
    }

    /// Whether an object whose value for a key is `lookup(key)` (`None`: no such label)
    /// satisfies every requirement.
    fn matches<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0.iter().all(|r| {
            let value = lookup(&r.key);
            match &r.op {
                Op::Equals(want) => value == Some(want.as_str()),
                Op::NotEquals(unwanted) => value != Some(unwanted.as_str()),
                Op::Exists => value.is_some(),
                Op::NotExists => value.is_none(),
            }
        })
    }

    /// Whether `labels` satisfy this label selector.
    pub fn matches_labels(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.matches(|key| labels.and_then(|l| l.get(key)).map(String::as_str))
    }

    /// Refuses a field selector on fields the fake cannot select on, as the real server
    /// refuses unknown ones.
    pub fn check_pod_fields(&self) -> Result<(), ApiError> {
        match self
            .0
            .iter()
            .find(|r| !POD_FIELDS.contains(&r.key.as_str()))
        {
            Some(r) => Err(ApiError::BadRequest(format!(
                "field label not supported: {} (the fake apiserver supports {})",
                r.key,
                POD_FIELDS.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// Whether `pod` satisfies this field selector (see [`Selector::check_pod_fields`]).
    /// Unset fields compare as empty strings, as in the real server.
    pub fn matches_pod_fields(&self, pod: &Pod) -> bool {
        self.matches(|key| {
            let value = match key {
                "metadata.name" => pod.metadata.name.as_deref(),
                "metadata.namespace" => pod.metadata.namespace.as_deref(),
                "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
                "status.phase" => pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                _ => None,
            };
            Some(value.unwrap_or(""))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn equality_selectors_match_labels() {
        let l = labels(&[("app", "probe"), ("tier", "x")]);
        let yes = |s: &str| Selector::parse(s).expect("valid").matches_labels(Some(&l));
        assert!(yes(""));
        assert!(yes("app=probe"));
        assert!(yes("app==probe, tier=x"));
        assert!(yes("app!=web"));
        assert!(yes("missing!=x"));
        assert!(yes("app,!missing"));
        assert!(!yes("app=web"));
        assert!(!yes("app=probe,tier=y"));
        assert!(!yes("missing"));
        assert!(!yes("!app"));
        assert!(
            !Selector::parse("app=probe")
                .expect("valid")
                .matches_labels(None)
        );
    }

    #[test]
    fn set_based_selectors_are_refused() {
        for text in ["app in (a,b)", "app notin (a)", "a=b=c", "=x"] {
            assert!(Selector::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn pod_fields_are_checked() {
        let sel = Selector::parse("spec.nodeName=,status.phase=Pending").expect("valid");
        assert!(sel.check_pod_fields().is_ok());
        let pod = Pod {
            status: Some(k8s_openapi::api::core::v1::PodStatus {
                phase: Some("Pending".to_owned()),
                ..Default::default()
            }),
            ..Pod::default()
        };
        assert!(sel.matches_pod_fields(&pod));
        let bad = Selector::parse("spec.restartPolicy=Always").expect("valid syntax");
        assert!(bad.check_pod_fields().is_err());
    }
}

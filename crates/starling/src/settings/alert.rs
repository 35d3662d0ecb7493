//! Alerting settings, checked: the sinks (from flags and the config file,
//! secrets read once at start) and the timing rules.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use crate::cli::AlertArgs;
use starling_alert::{
    AlertConfig, Backoff, DecideTiming, Secret, Severity, SinkAuth, SinkKind, SinkSpec,
    SourceConfig,
};

/// `--alert-config`'s shape; unknown fields are refused, so a typo does
/// not silently drop a setting.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    sinks: Vec<SinkEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkEntry {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: SinkKind,
    url: String,
    severities: Option<Vec<Severity>>,
    bearer_token_file: Option<PathBuf>,
    basic_auth: Option<BasicAuthEntry>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    hmac_key_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BasicAuthEntry {
    username: String,
    password_file: PathBuf,
}

/// Labels every alert carries already: a static label must not replace
/// one, or Alertmanager's dedup and routing would break.
const RESERVED_LABELS: [&str; 6] = [
    "alertname",
    "severity",
    "alert_key",
    "source",
    "node",
    "check",
];

pub(super) fn alert(args: &AlertArgs) -> Result<AlertConfig, ConfigError> {
    let invalid = |flag, reason: String| ConfigError::Invalid { flag, reason };
    let min: Severity = args
        .alert_min_severity
        .parse()
        .map_err(|reason| invalid("--alert-min-severity", reason))?;
    let flag_severities: Vec<Severity> = [Severity::Warning, Severity::Critical]
        .into_iter()
        .filter(|s| *s >= min)
        .collect();
    let token = read_secret(
        "--alert-webhook-token-file",
        args.alert_webhook_token_file.as_deref(),
    )?;
    let hmac = read_secret(
        "--alert-webhook-hmac-key-file",
        args.alert_webhook_hmac_key_file.as_deref(),
    )?;
    let mut entries: Vec<(&'static str, SinkEntry)> = Vec::new();
    for (flag, kind, urls) in [
        (
            "--alertmanager",
            SinkKind::Alertmanager,
            &args.alertmanagers,
        ),
        ("--alert-webhook", SinkKind::Webhook, &args.webhooks),
    ] {
        for url in urls {
            entries.push((
                flag,
                SinkEntry {
                    name: None,
                    kind,
                    url: url.clone(),
                    severities: Some(flag_severities.clone()),
                    bearer_token_file: None,
                    basic_auth: None,
                    headers: BTreeMap::new(),
                    cert_file: None,
                    key_file: None,
                    hmac_key_file: None,
                    ca_file: None,
                },
            ));
        }
    }
    if let Some(path) = &args.alert_config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid("--alert-config", format!("{}: {e}", path.display())))?;
        let file: ConfigFile = serde_json::from_str(&text)
            .map_err(|e| invalid("--alert-config", format!("{}: {e}", path.display())))?;
        entries.extend(
            file.sinks
                .into_iter()
                .map(|entry| ("--alert-config", entry)),
        );
    }
    let mut sinks = Vec::new();
    let mut names = HashSet::new();
    for (flag, entry) in entries {
        let counted = sinks
            .iter()
            .filter(|s: &&SinkSpec| s.kind == entry.kind)
            .count();
        let name = entry
            .name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", entry.kind.as_str(), counted + 1));
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(invalid(
                flag,
                format!("sink name {name:?}: use letters, digits, - _ ."),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(invalid(flag, format!("two sinks are named {name:?}")));
        }
        let https = entry.url.starts_with("https://");
        if !(https || entry.url.starts_with("http://")) {
            return Err(invalid(
                flag,
                format!("{:?}: expected an http:// or https:// URL", entry.url),
            ));
        }
        if https && entry.ca_file.is_none() {
            return Err(invalid(
                flag,
                format!(
                    "{}: an https sink needs \"ca_file\" (in --alert-config) to verify it, for \
                     instance /etc/ssl/certs/ca-certificates.crt",
                    entry.url
                ),
            ));
        }
        let severities = entry
            .severities
            .unwrap_or_else(|| vec![Severity::Warning, Severity::Critical]);
        if severities.is_empty() {
            return Err(invalid(flag, format!("sink {name:?} takes no severity")));
        }
        let (bearer_token, hmac_key) = match (flag, entry.kind) {
            ("--alert-webhook", _) => (token.clone(), hmac.clone()),
            (_, SinkKind::Webhook) => (
                read_secret(flag, entry.bearer_token_file.as_deref())?,
                read_secret(flag, entry.hmac_key_file.as_deref())?,
            ),
            _ if entry.hmac_key_file.is_some() => {
                return Err(invalid(
                    flag,
                    format!("sink {name:?}: signatures are for webhooks"),
                ));
            }
            _ => (read_secret(flag, entry.bearer_token_file.as_deref())?, None),
        };
        let basic_auth = match &entry.basic_auth {
            Some(basic) => {
                let password = read_secret(flag, Some(&basic.password_file))?
                    .expect("a secret read from a named file");
                Some((basic.username.clone(), password))
            }
            None => None,
        };
        if bearer_token.is_some() && basic_auth.is_some() {
            return Err(invalid(
                flag,
                format!("sink {name:?}: a bearer token or basic auth, not both"),
            ));
        }
        let client_cert = match (entry.cert_file, entry.key_file) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    flag,
                    format!("sink {name:?}: \"cert_file\" and \"key_file\" go together"),
                ));
            }
        };
        sinks.push(SinkSpec {
            name,
            kind: entry.kind,
            url: entry.url,
            severities,
            auth: SinkAuth {
                bearer_token,
                basic_auth,
                headers: entry.headers.into_iter().collect(),
                client_cert,
            },
            hmac_key,
            ca_file: entry.ca_file,
        });
    }
    if !(args.alert_partition_percent > 0.0 && args.alert_partition_percent <= 100.0) {
        return Err(invalid(
            "--alert-partition-percent",
            format!(
                "{} is not a percentage above 0",
                args.alert_partition_percent
            ),
        ));
    }
    if args.alert_resend_interval < Duration::from_secs(1)
        || args.alert_evaluate_interval < Duration::from_millis(100)
    {
        return Err(invalid(
            "--alert-resend-interval",
            "must be at least 1s, and --alert-evaluate-interval at least 100ms".to_owned(),
        ));
    }
    if args.alert_retry_initial.is_zero() || args.alert_retry_initial > args.alert_retry_max {
        return Err(invalid(
            "--alert-retry-initial",
            "must be above zero and at most --alert-retry-max".to_owned(),
        ));
    }
    if args.alert_outbox_max == 0 {
        return Err(invalid(
            "--alert-outbox-max",
            "must be at least 1".to_owned(),
        ));
    }
    let runbook_url = match &args.alert_runbook_url {
        Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => {
            return Err(invalid(
                "--alert-runbook-url",
                format!("{url:?}: expected an http:// or https:// URL"),
            ));
        }
        other => other.clone(),
    };
    Ok(AlertConfig {
        sinks,
        labels: static_labels(&args.alert_labels)?,
        runbook_url,
        sources: SourceConfig {
            suspect_after: args.alert_suspect_after,
            partition_window: args.alert_partition_window,
            partition_fraction: args.alert_partition_percent / 100.0,
        },
        timing: DecideTiming {
            grace: args.alert_grace,
            takeover_after: args.alert_takeover_after,
            flap_window: args.alert_flap_window,
            flap_fires: args.alert_flap_fires as usize,
        },
        evaluate_every: args.alert_evaluate_interval,
        resend_every: args.alert_resend_interval,
        outbox_max: args.alert_outbox_max,
        request_timeout: args.alert_timeout,
        backoff: Backoff {
            initial: args.alert_retry_initial,
            max: args.alert_retry_max,
        },
    })
}

/// `--alert-label NAME=VALUE`s, checked as Alertmanager checks label
/// names.
fn static_labels(given: &[String]) -> Result<BTreeMap<String, String>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        flag: "--alert-label",
        reason,
    };
    let mut labels = BTreeMap::new();
    for label in given.iter().filter(|l| !l.trim().is_empty()) {
        let Some((name, value)) = label.split_once('=') else {
            return Err(invalid(format!("{label:?}: expected NAME=VALUE")));
        };
        let (name, value) = (name.trim(), value.trim());
        let valid_name = name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if name.is_empty() || !valid_name {
            return Err(invalid(format!(
                "{name:?}: a label name is letters, digits and _, not starting with a digit"
            )));
        }
        if RESERVED_LABELS.contains(&name) {
            return Err(invalid(format!(
                "{name:?} is set by starling on every alert; choose another name"
            )));
        }
        if value.is_empty() {
            return Err(invalid(format!("{name:?} has no value")));
        }
        if labels.insert(name.to_owned(), value.to_owned()).is_some() {
            return Err(invalid(format!("{name:?} is given twice")));
        }
    }
    Ok(labels)
}

/// The file's content, trimmed of surrounding whitespace (an editor's
/// trailing newline is not part of a token).
fn read_secret(flag: &'static str, path: Option<&Path>) -> Result<Option<Secret>, ConfigError> {
    let Some(path) = path else {
        return Ok(None);
    };
    let bytes = std::fs::read(path).map_err(|e| ConfigError::Invalid {
        flag,
        reason: format!("{}: {e}", path.display()),
    })?;
    let text = bytes.trim_ascii();
    if text.is_empty() {
        return Err(ConfigError::Invalid {
            flag,
            reason: format!("{} is empty", path.display()),
        });
    }
    Ok(Some(Secret(text.to_vec())))
}

//! Flags of alerting: where alerts go, and when a condition is one.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Alerting. Without a sink (--alertmanager, --alert-webhook or
/// --alert-config) the agent sends no alerts.
#[derive(Clone, Debug, Args)]
pub struct AlertArgs {
    /// Alertmanager base URLs (`/api/v2/alerts` is appended); comma
    /// separated or repeated. Every alert goes to each.
    #[arg(
        long = "alertmanager",
        env = "STARLING_ALERTMANAGERS",
        value_delimiter = ','
    )]
    pub alertmanagers: Vec<String>,

    /// Webhook URLs to POST each alert transition to as JSON; comma
    /// separated or repeated.
    #[arg(
        long = "alert-webhook",
        env = "STARLING_ALERT_WEBHOOKS",
        value_delimiter = ','
    )]
    pub webhooks: Vec<String>,

    /// A file holding a bearer token for the --alert-webhook URLs.
    #[arg(long, env = "STARLING_ALERT_WEBHOOK_TOKEN_FILE")]
    pub alert_webhook_token_file: Option<PathBuf>,

    /// A file holding a key to sign --alert-webhook bodies with
    /// (HMAC-SHA256 in the X-Starling-Signature header).
    #[arg(long, env = "STARLING_ALERT_WEBHOOK_HMAC_KEY_FILE")]
    pub alert_webhook_hmac_key_file: Option<PathBuf>,

    /// The lowest severity sent to the sinks given by flags (warning or
    /// critical); --alert-config sets it per sink.
    #[arg(long, env = "STARLING_ALERT_MIN_SEVERITY", default_value = "warning")]
    pub alert_min_severity: String,

    /// A JSON file of sinks, each with its own routing: {"sinks": [{"type":
    /// "alertmanager"|"webhook", "url": …, "name": …, "severities":
    /// ["critical"], "bearer_token_file": …, "basic_auth": {"username": …,
    /// "password_file": …}, "headers": {"X-Scope-OrgID": …}, "cert_file": …,
    /// "key_file": …, "hmac_key_file": … (webhooks), "ca_file": …}]}. Adds
    /// to the sinks given by flags.
    #[arg(long, env = "STARLING_ALERT_CONFIG")]
    pub alert_config: Option<PathBuf>,

    /// A label on every alert, NAME=VALUE, e.g. cluster=prod-eu, so that
    /// one Alertmanager serving several clusters keeps them apart (and
    /// inhibition can match on it). Comma separated or repeated.
    #[arg(
        long = "alert-label",
        env = "STARLING_ALERT_LABELS",
        value_delimiter = ','
    )]
    pub alert_labels: Vec<String>,

    /// The runbook_url annotation of every alert; {alertname} is replaced
    /// by the alert's name (e.g. https://wiki.example/starling#{alertname}).
    #[arg(long, env = "STARLING_ALERT_RUNBOOK_URL")]
    pub alert_runbook_url: Option<String>,

    /// A member suspect this long (not yet down, not refuted) raises a
    /// warning.
    #[arg(long, env = "STARLING_ALERT_SUSPECT_AFTER", default_value = "10s", value_parser = humantime::parse_duration)]
    pub alert_suspect_after: Duration,

    /// Members declared down within this span of each other were lost at
    /// once (a partition, when they are enough of the cluster). Down and
    /// partition alerts wait until no member was declared down for a third
    /// of it.
    #[arg(long, env = "STARLING_ALERT_PARTITION_WINDOW", default_value = "15s", value_parser = humantime::parse_duration)]
    pub alert_partition_window: Duration,

    /// Percent of the known members that, lost at once (and at least two),
    /// is a partition rather than node failures.
    #[arg(long, env = "STARLING_ALERT_PARTITION_PERCENT", default_value_t = 30.0)]
    pub alert_partition_percent: f64,

    /// Per rank, how long a fallback sender waits for the owner of an
    /// alert to take it.
    #[arg(long, env = "STARLING_ALERT_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub alert_grace: Duration,

    /// An alert taken by a live node but not delivered this long is taken
    /// over by the next node in rank.
    #[arg(long, env = "STARLING_ALERT_TAKEOVER_AFTER", default_value = "5m", value_parser = humantime::parse_duration)]
    pub alert_takeover_after: Duration,

    /// Fires of one alert are counted over this window for flap damping,
    /// and a member's Downs for the node-flapping alert (which resolves
    /// after a whole window without a Down).
    #[arg(long, env = "STARLING_ALERT_FLAP_WINDOW", default_value = "10m", value_parser = humantime::parse_duration)]
    pub alert_flap_window: Duration,

    /// This many fires within --alert-flap-window make an alert flapping:
    /// sent once as such and held firing until quiet for a whole window.
    /// This many Downs of one member within the window raise node-flapping.
    #[arg(long, env = "STARLING_ALERT_FLAP_FIRES", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(2..))]
    pub alert_flap_fires: u32,

    /// Firing alerts are sent to Alertmanager again this often (keep it
    /// below Alertmanager's resolve_timeout, 5m by default).
    #[arg(long, env = "STARLING_ALERT_RESEND_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    pub alert_resend_interval: Duration,

    /// Notices kept in the outbox while sinks fail; beyond it the oldest
    /// are dropped, resolved ones first.
    #[arg(long, env = "STARLING_ALERT_OUTBOX_MAX", default_value_t = 10_000)]
    pub alert_outbox_max: u64,

    /// Each request to a sink gives up after this long (and is retried).
    #[arg(long, env = "STARLING_ALERT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub alert_timeout: Duration,

    /// How often the agent compares what it sees with what was sent.
    #[arg(long, env = "STARLING_ALERT_EVALUATE_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub alert_evaluate_interval: Duration,

    /// The first retry of a failed delivery waits this long; each next
    /// one twice as long, up to --alert-retry-max.
    #[arg(long, env = "STARLING_ALERT_RETRY_INITIAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub alert_retry_initial: Duration,

    /// The longest wait between two attempts at one delivery.
    #[arg(long, env = "STARLING_ALERT_RETRY_MAX", default_value = "5m", value_parser = humantime::parse_duration)]
    pub alert_retry_max: Duration,
}

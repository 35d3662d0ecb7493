//! The agent's side of the overlay: it takes the local probe's reports,
//! publishes the probe's address in gossip, judges every path and the
//! clock, records what changed, and tells the probe whom to ping.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use starling_checks::Status;
use starling_model::ApiError;
use tokio::sync::Mutex;

use super::config::OverlayConfig;
use super::judge::{CLOCK_CHECK, Judge, Judged, Verdict, path_check, path_target};
use super::metrics::OverlayMetrics;
use super::select;
use crate::status::{StatusMetrics, history_row, record_transition};
use starling_gossip::{GossipHandle, MemberState};
use starling_model::Service;
use starling_probe::{PeerReport, ProbeAssignment, ProbeReport, ProbeTarget};
use starling_replicate::{Publisher, refusal};
use starling_seal::open_json;
use starling_seal::seal_json;
use starling_seal::{Keyring, Purpose};

/// Reports missed in a row before the probe's figures are no longer
/// believed (a probe pod crash-looping, or evicted).
const STALE_AFTER_REPORTS: u32 = 3;

/// The overlay's state in the agent; shared by the HTTP handler and the
/// staleness ticker.
#[derive(Debug)]
pub struct OverlayIntake {
    settings: OverlayConfig,
    keyring: Arc<Keyring>,
    gossip: GossipHandle,
    publisher: Publisher,
    metrics: OverlayMetrics,
    status_metrics: StatusMetrics,
    state: Mutex<IntakeState>,
}

#[derive(Debug)]
struct IntakeState {
    judge: Judge,
    last_report_ms: Option<u64>,
    /// The last status recorded per check of ours (paths and the clock),
    /// so only changes go to the cluster's log.
    recorded: HashMap<String, Status>,
    last_totals: Option<(u64, u64)>,
    /// The last assignment computed, keyed by its candidates: recomputing
    /// above the all-pairs size costs N² hashes, so only on change.
    selection: Option<(Vec<ProbeTarget>, Vec<ProbeTarget>)>,
}

impl OverlayIntake {
    pub fn new(
        settings: OverlayConfig,
        keyring: Arc<Keyring>,
        gossip: GossipHandle,
        publisher: Publisher,
        metrics: OverlayMetrics,
        status_metrics: StatusMetrics,
    ) -> Self {
        OverlayIntake {
            state: Mutex::new(IntakeState::new(&settings)),
            settings,
            keyring,
            gossip,
            publisher,
            metrics,
            status_metrics,
        }
    }

    pub fn window_secs(&self) -> u64 {
        self.settings.window.as_secs()
    }

    fn me(&self) -> &str {
        self.publisher.store().node_name()
    }

    /// `POST /v1/overlay/report`.
    pub async fn accept(&self, body: Bytes, now_ms: u64) -> Result<Vec<u8>, ApiError> {
        let result = self.take(body, now_ms).await;
        self.metrics.report(result.is_ok());
        if let Err(refusal) = &result {
            tracing::warn!(%refusal, "overlay probe report refused");
        }
        result
    }

    async fn take(&self, body: Bytes, now_ms: u64) -> Result<Vec<u8>, ApiError> {
        let report = read_report(&self.keyring, self.me(), body)?;
        self.gossip
            .set_service(Service::Probe, report.probe_addr)
            .await;
        let mut state = self.state.lock().await;
        let judged = state.judge_report(&self.metrics, &report, now_ms);
        let figures: BTreeMap<&str, &PeerReport> =
            report.peers.iter().map(|p| (p.node.as_str(), p)).collect();
        for (peer, verdict) in &judged.paths {
            if let Some(figures) = figures.get(peer.as_str()) {
                self.metrics.path(figures, verdict.status);
                let details = serde_json::to_value(figures).expect("figures serialize");
                self.record_path(&mut state, peer, verdict, details, now_ms)
                    .await;
            }
        }
        for peer in &judged.retired {
            self.retire(
                &mut state,
                peer,
                "no longer probed from here (left the cluster, or reassigned)",
                now_ms,
            )
            .await;
        }
        self.metrics
            .clock_offset(judged.clock.as_ref().map(|(_, offset_ms)| *offset_ms));
        if let Some((verdict, offset_ms)) = &judged.clock {
            self.record_clock(&mut state, verdict, *offset_ms, now_ms)
                .await;
        }
        let assignment = self.assignment(&mut state);
        drop(state);
        Ok(seal_json(
            &self.keyring,
            Purpose::ProbeAssignment,
            &assignment,
        ))
    }

    /// Called every report interval: once the probe has missed enough
    /// reports, its paths and clock verdict become unknown, so a dead probe
    /// leaves no frozen verdicts behind.
    pub async fn expire_if_stale(&self, now_ms: u64) {
        let stale_after = self.settings.report_interval * STALE_AFTER_REPORTS;
        let mut state = self.state.lock().await;
        let Some(last) = state.last_report_ms else {
            return;
        };
        let silent = Duration::from_millis(now_ms.saturating_sub(last));
        if silent < stale_after {
            return;
        }
        state.last_report_ms = None;
        tracing::warn!(silent = ?silent, "the local overlay probe stopped reporting");
        let reason = silence_reason(last);
        for peer in state.judge.retire_all() {
            self.retire(&mut state, &peer, &reason, now_ms).await;
        }
        let unknown = Verdict {
            status: Status::Unknown,
            message: reason,
        };
        self.record_clock(&mut state, &unknown, f64::NAN, now_ms)
            .await;
    }

    /// At start: what this node recorded before a restart is not known to
    /// hold any more. Its paths and clock verdict go to unknown until the
    /// probe reports again.
    pub async fn retire_leftovers(&self, now_ms: u64) {
        let latest = match self.publisher.store().latest_results().await {
            Ok(latest) => latest,
            Err(error) => {
                tracing::warn!(%error, "cannot read the last overlay verdicts");
                return;
            }
        };
        let mut state = self.state.lock().await;
        for row in latest.into_iter().filter(|r| r.node == self.me()) {
            if path_target(&row.check).is_some() || row.check == CLOCK_CHECK {
                state.recorded.insert(row.check.clone(), row.status);
                if row.status != Status::Unknown {
                    let verdict = Verdict {
                        status: Status::Unknown,
                        message: "the agent restarted; waiting for the local probe".to_owned(),
                    };
                    self.record(
                        &mut state,
                        &row.check,
                        &verdict,
                        serde_json::Value::Null,
                        now_ms,
                    )
                    .await;
                }
            }
        }
    }

    /// The local probe's latest figures per peer, while it reports.
    pub async fn figures(&self) -> Option<BTreeMap<String, PeerReport>> {
        let state = self.state.lock().await;
        state.last_report_ms?;
        Some(
            state
                .judge
                .paths()
                .map(|(peer, figures, _)| (peer.to_owned(), figures.clone()))
                .collect(),
        )
    }

    fn assignment(&self, state: &mut IntakeState) -> ProbeAssignment {
        let view = self.gossip.view.borrow().clone();
        let mut candidates: Vec<ProbeTarget> = view
            .members
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .filter_map(|m| {
                Some(ProbeTarget {
                    node: m.id.name.clone(),
                    addr: m.id.meta.service(Service::Probe)?,
                })
            })
            .collect();
        // This node counts as a candidate (others rank it too) even before
        // its own address has gone round.
        candidates.push(ProbeTarget {
            node: view.me.name.clone(),
            addr: view
                .me
                .meta
                .service(Service::Probe)
                .unwrap_or(([0, 0, 0, 0], 0).into()),
        });
        candidates.sort_by(|a, b| a.node.cmp(&b.node));
        let targets = match &state.selection {
            Some((known, targets)) if *known == candidates => targets.clone(),
            _ => {
                let targets = select::targets(
                    &view.me.name,
                    &candidates,
                    self.settings.all_pairs_up_to,
                    self.settings.peers,
                );
                state.selection = Some((candidates, targets.clone()));
                targets
            }
        };
        ProbeAssignment {
            targets,
            interval_ms: self.settings.interval.as_millis() as u64,
            window_ms: self.settings.window.as_millis() as u64,
            report_interval_ms: self.settings.report_interval.as_millis() as u64,
        }
    }

    async fn record_path(
        &self,
        state: &mut IntakeState,
        peer: &str,
        verdict: &Verdict,
        details: serde_json::Value,
        now_ms: u64,
    ) {
        self.record(state, &path_check(peer), verdict, details, now_ms)
            .await;
    }

    async fn retire(&self, state: &mut IntakeState, peer: &str, reason: &str, now_ms: u64) {
        self.metrics.retire(peer);
        let verdict = Verdict {
            status: Status::Unknown,
            message: reason.to_owned(),
        };
        self.record_path(state, peer, &verdict, serde_json::Value::Null, now_ms)
            .await;
        // Forgotten, so a peer that comes back is recorded afresh.
        state.recorded.remove(&path_check(peer));
    }

    async fn record_clock(
        &self,
        state: &mut IntakeState,
        verdict: &Verdict,
        offset_ms: f64,
        now_ms: u64,
    ) {
        let details =
            serde_json::json!({ "offset_ms": offset_ms.is_finite().then_some(offset_ms) });
        let result = self.checks_result(CLOCK_CHECK, verdict, details, now_ms);
        // The clock is an ordinary node check: raw results, metrics.
        self.status_metrics.observe(&result);
        if let Err(error) = self
            .publisher
            .store()
            .record_result(history_row(self.me(), &result))
            .await
        {
            tracing::error!(%error, "clock verdict not stored");
        }
        self.transition(state, &result).await;
    }

    /// A path verdict: stored as the latest only when it changes. Its
    /// figures change at every report and are served from memory; writing
    /// them would be a row per peer every few seconds for nobody.
    async fn record(
        &self,
        state: &mut IntakeState,
        check: &str,
        verdict: &Verdict,
        details: serde_json::Value,
        now_ms: u64,
    ) {
        if state.recorded.get(check) == Some(&verdict.status) {
            return;
        }
        let result = self.checks_result(check, verdict, details, now_ms);
        if let Err(error) = self
            .publisher
            .store()
            .upsert_latest(history_row(self.me(), &result))
            .await
        {
            tracing::error!(%error, check, "overlay verdict not stored");
        }
        self.transition(state, &result).await;
    }

    async fn transition(&self, state: &mut IntakeState, result: &starling_checks::CheckResult) {
        let status = result.status;
        let previous = state.recorded.insert(result.check.clone(), status);
        record_transition(&self.publisher, self.me(), result, previous, status).await;
    }

    fn checks_result(
        &self,
        check: &str,
        verdict: &Verdict,
        details: serde_json::Value,
        now_ms: u64,
    ) -> starling_checks::CheckResult {
        starling_checks::CheckResult {
            check: check.to_owned(),
            status: verdict.status,
            message: verdict.message.clone(),
            details,
            duration_ms: 0,
            at_unix_ms: now_ms,
            consecutive_failures: u32::from(verdict.status == Status::Critical),
        }
    }
}

/// A report opened and checked against this node: nothing of a report
/// that fails here is believed or recorded.
fn read_report(keyring: &Keyring, me: &str, body: Bytes) -> Result<ProbeReport, ApiError> {
    let report: ProbeReport = open_json(keyring, Purpose::ProbeReport, body.to_vec())
        .map_err(refusal("overlay report"))?;
    if report.node != me {
        return Err(ApiError::BadRequest(format!(
            "overlay report from the probe of node {:?}, but this agent is node {me:?}: \
             a probe reports to the agent on its own node (check the probe's NODE_NAME \
             and --agent)",
            report.node,
        )));
    }
    let ip = report.probe_addr.ip();
    if ip.is_unspecified() || report.probe_addr.port() == 0 {
        return Err(ApiError::BadRequest(format!(
            "overlay report: probe address {} is not reachable by peers (set POD_IP)",
            report.probe_addr
        )));
    }
    Ok(report)
}

impl IntakeState {
    fn new(settings: &OverlayConfig) -> Self {
        IntakeState {
            judge: Judge::new(settings.clone()),
            last_report_ms: None,
            recorded: HashMap::new(),
            last_totals: None,
            selection: None,
        }
    }

    /// A report's verdicts and the totals it brings, before anything is
    /// recorded.
    fn judge_report(
        &mut self,
        metrics: &OverlayMetrics,
        report: &ProbeReport,
        now_ms: u64,
    ) -> Judged {
        let judged = self.judge.judge(report, now_ms);
        metrics.probe_totals(report, self.last_totals);
        self.last_totals = Some((report.sent_bytes, report.received_bytes));
        self.last_report_ms = Some(now_ms);
        judged
    }
}

/// What `starling-bench fuzz` drives: the intake's reading and judgement
/// of a report body, sans the gossip and store updates that follow. Not
/// an API; see `crate::fuzzing`.
#[derive(Debug)]
pub struct ReportReader {
    keyring: Arc<Keyring>,
    me: String,
    metrics: OverlayMetrics,
    state: IntakeState,
}

impl ReportReader {
    pub fn new(settings: OverlayConfig, keyring: Arc<Keyring>, me: String) -> Self {
        ReportReader {
            state: IntakeState::new(&settings),
            keyring,
            me,
            metrics: OverlayMetrics::default(),
        }
    }

    /// `POST /v1/overlay/report` up to its first write: returns the paths
    /// judged.
    pub fn read(&mut self, body: &[u8], now_ms: u64) -> Result<usize, ApiError> {
        let report = read_report(&self.keyring, &self.me, Bytes::copy_from_slice(body))?;
        let judged = self.state.judge_report(&self.metrics, &report, now_ms);
        let figures: BTreeMap<&str, &PeerReport> =
            report.peers.iter().map(|p| (p.node.as_str(), p)).collect();
        for (peer, verdict) in &judged.paths {
            if let Some(figures) = figures.get(peer.as_str()) {
                self.metrics.path(figures, verdict.status);
                serde_json::to_value(figures).expect("figures serialize");
            }
        }
        for peer in &judged.retired {
            self.metrics.retire(peer);
        }
        self.metrics
            .clock_offset(judged.clock.as_ref().map(|(_, offset_ms)| *offset_ms));
        Ok(judged.paths.len())
    }
}

/// Why the local probe's verdicts are unknown. A point in time, not a
/// duration: the message stays in place as long as the probe is silent,
/// and "for 6s" would still be shown after a minute.
fn silence_reason(last_report_ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(last_report_ms);
    format!(
        "the local probe has sent no report since {}",
        humantime::format_rfc3339_seconds(at)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_silent_probe_is_named_with_when_it_last_reported() {
        assert_eq!(
            super::silence_reason(1_796_000_000_000),
            "the local probe has sent no report since 2026-11-30T00:53:20Z"
        );
    }
}

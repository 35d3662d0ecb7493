//! The evaluation loop: every tick, compare what the sources see with
//! what the ledger says the receivers heard, and queue what this node
//! owns. Level-triggered like a controller: a restart, a lost rumor or an
//! owner's death is repaired by the next tick, not by replaying events.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use starling_gossip::rendezvous;
use starling_gossip::{GossipHandle, MemberState, MembershipView, Role};
use starling_health::status::roll_up;
use starling_history::Store;
use starling_replicate::{Publisher, Scope};

use super::decide::{self, DecideTiming, Decision, Situation, Wanted};
use super::flapping::{Downs, Flaps};
use super::ledger::{self, Ledgers, Step};
use super::metrics::AlertMetrics;
use super::model::{self, AlertKind, AlertState, Notice, Observation};
use super::outbox::Outbox;
use super::sinks::{Sink, SinkKind};
use super::sources::{self, SourceConfig, Verdict};

/// What the loop needs; built by `alert::start`.
#[derive(Debug)]
pub struct Evaluator {
    pub sources: SourceConfig,
    pub timing: DecideTiming,
    /// Firing alerts are sent to Alertmanager again this often, or it
    /// resolves them itself after its `resolve_timeout` (5 min default).
    pub resend_every: Duration,
    pub sinks: Vec<(Arc<Sink>, Arc<Notify>)>,
    pub gossip: GossipHandle,
    pub publisher: Publisher,
    pub outbox: Outbox,
    pub metrics: AlertMetrics,
    /// The Alertmanager `generatorURL`: this node's history of alerts.
    pub generator_url: Option<String>,
    /// Replication pulled from a peer once: the ledger now knows what was
    /// sent while this node was away, so its decisions are not stale.
    pub caught_up: watch::Receiver<bool>,
    /// Lets the sink workers start, once stale rows were dropped.
    pub release: watch::Sender<bool>,
    pub started_at_unix_ms: u64,
}

/// Without a successful pull (no peer answers), alerting starts anyway
/// this long after the agent: a lone node must still alert.
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(10);

/// Per-key memory of this node, not shared with anyone.
#[derive(Debug, Default)]
struct Local {
    /// When this node first saw the current discrepancy, by its signature
    /// (the generation it differs from, what it wants instead, and whether
    /// the claim on it went stale).
    noticed: HashMap<String, (Signature, u64)>,
    clear_since: HashMap<String, u64>,
    refreshed: HashMap<String, u64>,
}

impl Evaluator {
    /// Whom this node replicates with, which decides who may send.
    fn scope(&self) -> Scope {
        *self.publisher.scope().borrow()
    }

    pub async fn run(self, every: Duration, shutdown: impl Future<Output = ()>) {
        let mut ledgers = Ledgers::default();
        let mut local = Local::default();
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticker.tick() => {}
            }
            if let Err(error) = self.tick(&mut ledgers, &mut local).await {
                tracing::error!(%error, "alert evaluation failed; trying again next tick");
            }
        }
    }

    async fn tick(
        &self,
        ledgers: &mut Ledgers,
        local: &mut Local,
    ) -> Result<(), starling_history::StoreError> {
        let store: &Store = self.publisher.store();
        ledgers.catch_up(store).await?;
        let view = Arc::clone(&self.gossip.view.borrow());
        let now = starling_model::unix_ms_now();
        let patience = CATCH_UP_PATIENCE.as_millis() as u64;
        if !*self.caught_up.borrow() && now < self.started_at_unix_ms + patience {
            return Ok(());
        }
        self.drop_taken_over(&view.me.name, ledgers).await?;
        self.release
            .send_if_modified(|released| !std::mem::replace(released, true));
        let latest = store.latest_results().await?;
        let status = roll_up(&view, &latest, false, now);
        let flaps = self.flaps(store, now).await?;
        let mut seen: HashMap<String, (Observation, Verdict)> =
            sources::observe(&view, &status, now, &self.sources, &flaps)
                .into_iter()
                .map(|(observation, verdict)| (observation.key.clone(), (observation, verdict)))
                .collect();
        let unresolved: Vec<String> = ledgers
            .firing()
            .map(|(key, _)| key.to_owned())
            .filter(|key| !seen.contains_key(key))
            .collect();
        for key in unresolved {
            if let Some(kind) = model::kind_of(&key) {
                let observation = sources::unobserved(&key, kind, &view.me.name);
                seen.insert(key, (observation, Verdict::Clear));
            }
        }
        for (key, (observation, verdict)) in &seen {
            if *verdict == Verdict::Clear {
                local.clear_since.entry(key.clone()).or_insert(now);
            } else {
                local.clear_since.remove(key);
            }
            if !self.routed(observation.kind) {
                continue;
            }
            let ledger = ledgers.get(key);
            // The common case, cheaply: nothing ever fired and nothing does.
            if ledger.is_none() && *verdict != Verdict::Firing {
                continue;
            }
            let Some(situation) =
                self.situation(&view, key, observation, *verdict, ledger, local, now)
            else {
                continue;
            };
            match decide::decide(&situation, &self.timing) {
                Decision::Nothing | Decision::WaitUntil(_) => {}
                Decision::Send(wanted) => {
                    let notice = self.notice(observation, wanted, now);
                    let sinks = self.sinks_for(&notice, ledger).await?;
                    // Now, not at the next catch-up: the refresh below must
                    // see this transition.
                    for mark in self.queue(&notice, sinks, now).await? {
                        ledgers.apply(&mark);
                    }
                    local.refreshed.insert(key.clone(), now);
                }
            }
        }
        self.refresh(&view, ledgers, &seen, local, now).await?;
        let mut firing: HashMap<AlertKind, usize> =
            AlertKind::ALL.iter().map(|k| (*k, 0)).collect();
        for (key, _) in ledgers.firing() {
            if let Some(kind) = model::kind_of(key) {
                *firing.entry(kind).or_default() += 1;
            }
        }
        self.metrics.firing(firing);
        // Once per tick: enqueues grow the outbox, deliveries shrink it.
        self.metrics.outbox_rows(self.outbox.len().await?);
        let horizon = now.saturating_sub(self.timing.flap_window.as_millis() as u64);
        ledgers.prune(horizon);
        local.noticed.retain(|key, _| seen.contains_key(key));
        local.clear_since.retain(|key, _| seen.contains_key(key));
        local.refreshed.retain(|key, _| seen.contains_key(key));
        Ok(())
    }

    /// Every member's Down records within the flap window.
    async fn flaps(&self, store: &Store, now: u64) -> Result<Flaps, starling_history::StoreError> {
        let window = self.timing.flap_window;
        let since = now.saturating_sub(window.as_millis() as u64) as i64;
        let downs = store
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT node, count(*), max(at_ms) FROM events
                     WHERE kind = 'membership' AND new_state = 'down' AND at_ms >= ?1
                     GROUP BY node",
                )?;
                let rows = statement.query_map([since], |row| {
                    let count: i64 = row.get(1)?;
                    let last: i64 = row.get(2)?;
                    Ok((
                        row.get::<_, String>(0)?,
                        Downs {
                            count: count.max(0) as usize,
                            last_unix_ms: last.max(0) as u64,
                        },
                    ))
                })?;
                rows.collect::<Result<HashMap<_, _>, _>>()
            })
            .await?;
        Ok(Flaps {
            downs,
            window,
            at_least: self.timing.flap_fires,
        })
    }

    /// Some sink takes this kind's severity.
    fn routed(&self, kind: AlertKind) -> bool {
        self.sinks
            .iter()
            .any(|(sink, _)| sink.wants(kind.severity()))
    }

    /// The sinks a notice goes to: a firing to every sink that takes its
    /// severity; a resolution only to those that heard it firing, or will
    /// (this node's outbox holds the firing, and sends in order), so no
    /// receiver is told "resolved" about an alert it never saw.
    async fn sinks_for(
        &self,
        notice: &Notice,
        ledger: Option<&ledger::Ledger>,
    ) -> Result<Vec<&(Arc<Sink>, Arc<Notify>)>, starling_history::StoreError> {
        let heard: Vec<&str> = ledger
            .map(|l| l.heard_firing().collect())
            .unwrap_or_default();
        let mut sinks = Vec::new();
        for entry in self
            .sinks
            .iter()
            .filter(|(sink, _)| sink.wants(notice.severity))
        {
            let name = entry.0.name.as_str();
            if notice.state == AlertState::Firing
                || heard.contains(&name)
                || self
                    .outbox
                    .holds(name.to_owned(), notice.key.clone())
                    .await?
            {
                sinks.push(entry);
            }
        }
        Ok(sinks)
    }

    #[allow(clippy::too_many_arguments)]
    fn situation<'a>(
        &self,
        view: &MembershipView,
        key: &str,
        observation: &Observation,
        verdict: Verdict,
        ledger: Option<&'a ledger::Ledger>,
        local: &mut Local,
        now: u64,
    ) -> Option<Situation<'a>> {
        let me = view.me.name.as_str();
        if observation.subject.as_deref() == Some(me) {
            return None;
        }
        let claimant = ledger
            .and_then(|l| l.claimed_by.as_ref())
            .map(|(name, _)| name.as_str());
        let claimant_alive = claimant.is_none_or(|name| view.alive_names().any(|n| n == name));
        let resolution_owed = ledger.is_some_and(|l| {
            l.sent() == AlertState::Resolved
                && l.heard_firing_late().any(|late| {
                    self.sinks.iter().any(|(sink, _)| {
                        sink.name == late && sink.wants(observation.kind.severity())
                    })
                })
        });
        // A live claimant that cannot deliver is passed over for the takeover.
        let expired = ledger.is_some_and(|l| l.claim_expired(now, self.timing.takeover_after));
        let passed_over = claimant.filter(|_| expired);
        let rank = ranked(
            view,
            self.scope(),
            key,
            observation.subject.as_deref(),
            passed_over,
        )
        .iter()
        .position(|name| *name == me)?;
        // A claim going stale starts a new discrepancy: the fallbacks' grace
        // periods count from the claimant's death, not from the first notice,
        // or all of them would take over at once.
        let stale = claimant.is_some() && (!claimant_alive || expired);
        let signature = (ledger.map_or(0, |l| l.generation), verdict, stale);
        let noticed = local
            .noticed
            .entry(key.to_owned())
            .or_insert((signature, now));
        if noticed.0 != signature {
            *noticed = (signature, now);
        }
        Some(Situation {
            verdict,
            ledger,
            rank,
            noticed_at_unix_ms: noticed.1,
            clear_since_unix_ms: local.clear_since.get(key).copied(),
            claimant_alive,
            resolution_owed,
            began_at_unix_ms: observation.began_at_unix_ms,
            now_unix_ms: now,
        })
    }

    fn notice(&self, observation: &Observation, wanted: Wanted, now: u64) -> Notice {
        Notice {
            key: observation.key.clone(),
            kind: observation.kind,
            severity: observation.kind.severity(),
            subject: observation.subject.clone(),
            check: observation.check.clone(),
            state: wanted.state,
            flapping: wanted.flapping,
            message: observation.message.clone(),
            observer: self.publisher.store().node_name().to_owned(),
            agreeing: observation.agreeing,
            generation: wanted.generation,
            starts_at_unix_ms: wanted.starts_at_unix_ms,
            ends_at_unix_ms: (wanted.state == AlertState::Resolved).then_some(now),
            generator_url: self.generator_url.clone(),
        }
    }

    /// Into the outbox first (it survives a crash), then the queued mark
    /// that tells the others this node has it. With no sink to send to (a
    /// resolution none heard firing), a withheld mark settles it at once.
    async fn queue(
        &self,
        notice: &Notice,
        sinks: Vec<&(Arc<Sink>, Arc<Notify>)>,
        now: u64,
    ) -> Result<Vec<ledger::Mark>, starling_history::StoreError> {
        let names: Vec<String> = sinks.iter().map(|(sink, _)| sink.name.clone()).collect();
        let withheld = names.is_empty();
        let dropped = self.outbox.enqueue(notice, names, true, now).await?;
        let mut steps = vec![Step::Queued];
        if withheld {
            steps.push(Step::Withheld);
            // Our own undelivered firing of this key (queued while cut off)
            // is now news of the past: nobody heard it, nobody will.
            for sink in self
                .outbox
                .drop_superseded(notice.key.clone(), notice.generation)
                .await?
            {
                self.metrics.delivery(&sink, "superseded");
            }
        }
        let mut marks = Vec::new();
        for step in steps {
            let recorded = self
                .publisher
                .record(ledger::mark_event(step, notice, None, now))
                .await?;
            marks.push(ledger::mark_of(&recorded).expect("a mark reads back as one"));
        }
        self.metrics.queued(notice.kind, notice.state.as_str());
        self.note_dropped(dropped);
        tracing::info!(id = %notice.id(), state = notice.state.as_str(), flapping = notice.flapping,
            withheld, message = %notice.message, "alert queued");
        for (_, wake) in sinks {
            wake.notify_one();
        }
        Ok(marks)
    }

    /// Alertmanager forgets a firing alert not sent again within its
    /// `resolve_timeout`; the key's current owner repeats it.
    async fn refresh(
        &self,
        view: &MembershipView,
        ledgers: &Ledgers,
        seen: &HashMap<String, (Observation, Verdict)>,
        local: &mut Local,
        now: u64,
    ) -> Result<(), starling_history::StoreError> {
        let me = view.me.name.as_str();
        for (key, ledger) in ledgers.firing() {
            let Some((observation, _)) = seen.get(key) else {
                continue;
            };
            // Counted from this node's last refresh, or else from the
            // transition itself: a node that just became owner (membership
            // changed) must not repeat what was sent a moment ago.
            let claimed_at = ledger.claimed_by.as_ref().map_or(0, |(_, at)| *at);
            let last = local
                .refreshed
                .get(key)
                .map_or(claimed_at, |at| (*at).max(claimed_at));
            if !ledger.delivered
                || observation.subject.as_deref() == Some(me)
                || now.saturating_sub(last) < self.resend_every.as_millis() as u64
            {
                continue;
            }
            let owner = ranked(
                view,
                self.scope(),
                key,
                observation.subject.as_deref(),
                None,
            )
            .first()
            .copied();
            local.refreshed.insert(key.to_owned(), now);
            if owner != Some(me) {
                continue;
            }
            let notice = self.notice(
                observation,
                Wanted {
                    state: AlertState::Firing,
                    generation: ledger.generation,
                    flapping: ledger.flapping,
                    starts_at_unix_ms: ledger.starts_at_unix_ms,
                },
                now,
            );
            let mut names = Vec::new();
            for (sink, wake) in &self.sinks {
                if sink.kind == SinkKind::Alertmanager
                    && sink.wants(notice.severity)
                    && !self.outbox.holds(sink.name.clone(), key.to_owned()).await?
                {
                    names.push(sink.name.clone());
                    wake.notify_one();
                }
            }
            if !names.is_empty() {
                let dropped = self.outbox.enqueue(&notice, names, false, now).await?;
                self.note_dropped(dropped);
            }
        }
        Ok(())
    }

    /// Rows of keys another node claimed since they were queued here (a
    /// takeover while this node was away or could not reach the sinks):
    /// sending them now would repeat that node's notices, or undo newer ones.
    async fn drop_taken_over(
        &self,
        me: &str,
        ledgers: &Ledgers,
    ) -> Result<(), starling_history::StoreError> {
        for key in self.outbox.keys().await? {
            let Some(ledger) = ledgers.get(&key).filter(|l| l.claimed_by_other(me)) else {
                continue;
            };
            let sinks = self
                .outbox
                .drop_superseded(key.clone(), ledger.generation)
                .await?;
            for sink in &sinks {
                self.metrics.delivery(sink, "superseded");
            }
            if !sinks.is_empty() {
                tracing::info!(
                    key,
                    generation = ledger.generation,
                    rows = sinks.len(),
                    "alert notices dropped: another node has taken the key over"
                );
            }
        }
        Ok(())
    }

    fn note_dropped(&self, dropped: u64) {
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "alert outbox full: dropped the oldest notices (resolved first)"
            );
            self.metrics.outbox_dropped(dropped);
        }
    }
}

/// What a discrepancy is: (generation, verdict, stale claim).
type Signature = (u64, Verdict, bool);

/// Ordinary nodes that send while an aggregated cluster has no aggregator
/// alive. They do not see each other's marks (each keeps only its own
/// log), so each of them sends: a few duplicates rather than silence, or
/// one alert per node of a 5,000-node cluster.
const FALLBACK_SENDERS: usize = 3;

/// The alive members that may send for `key`, this node included, best
/// first: the subject never sends about itself, and `passed_over` is a
/// claimant being taken over from.
///
/// Dedupe rests on each sender seeing the others' marks in its history.
/// With full replication every node does, so every node ranks. In an
/// aggregated cluster only aggregators hold each other's records, so only
/// they rank; with none alive, the first [`FALLBACK_SENDERS`] others do.
fn ranked<'v>(
    view: &'v MembershipView,
    scope: Scope,
    key: &str,
    subject: Option<&str>,
    passed_over: Option<&str>,
) -> Vec<&'v str> {
    let eligible = std::iter::once(&view.me)
        .chain(
            view.members
                .iter()
                .filter(|m| m.state == MemberState::Alive)
                .map(|m| &m.id),
        )
        .map(|id| (id.name.as_str(), id.meta.role))
        .filter(|(name, _)| Some(*name) != subject && Some(*name) != passed_over);
    if scope == Scope::Everyone {
        return rendezvous::rank(key, eligible.map(|(name, _)| name));
    }
    let aggregators: Vec<&str> = eligible
        .clone()
        .filter(|(_, role)| *role == Role::Aggregator)
        .map(|(name, _)| name)
        .collect();
    if !aggregators.is_empty() {
        return rendezvous::rank(key, aggregators);
    }
    let mut fallback = rendezvous::rank(key, eligible.map(|(name, _)| name));
    fallback.truncate(FALLBACK_SENDERS);
    fallback
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Workers w1..w6 and aggregators agg-1, agg-2 seen from `me`; the
    /// aggregators in `agg_state`.
    fn cluster(me: &str, agg_state: MemberState) -> MembershipView {
        let mut others: Vec<(&str, MemberState)> = ["w1", "w2", "w3", "w4", "w5", "w6"]
            .into_iter()
            .filter(|name| *name != me)
            .map(|name| (name, MemberState::Alive))
            .collect();
        others.extend([("agg-1", agg_state), ("agg-2", agg_state)]);
        let mut view = MembershipView::for_tests(me, &others);
        for member in &mut view.members {
            if member.id.name.starts_with("agg-") {
                member.id.make_mut().meta.role = Role::Aggregator;
            }
        }
        view
    }

    #[test]
    fn aggregated_clusters_send_from_aggregators_or_a_few_fallbacks() {
        let key = "node-down/w6";
        let view = cluster("w1", MemberState::Alive);
        let everyone = ranked(&view, Scope::Everyone, key, Some("w6"), None);
        assert_eq!(everyone.len(), 7, "every alive member but the subject");
        for scope in [Scope::OwnLog, Scope::Aggregators] {
            let mut senders = ranked(&view, scope, key, Some("w6"), None);
            senders.sort_unstable();
            assert_eq!(senders, ["agg-1", "agg-2"]);
        }
        // Every aggregator down: the same few ordinary nodes on every node.
        let fallbacks = |me| {
            ranked(
                &cluster(me, MemberState::Down),
                Scope::OwnLog,
                key,
                Some("w6"),
                None,
            )
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
        };
        let from_w1 = fallbacks("w1");
        assert_eq!(from_w1.len(), FALLBACK_SENDERS);
        assert!(!from_w1.iter().any(|n| n.starts_with("agg-") || n == "w6"));
        assert_eq!(fallbacks("w3"), from_w1, "every node agrees who sends");
    }
}

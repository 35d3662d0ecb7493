//! What the HTTP surface reads: the gossip view, the history and the
//! metrics registry.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::registry::Registry;
use starling_checks::is_cluster_check;
use starling_model::{
    AnnotationAck, ApiError, CheckDetail, HistoryEvent, HistoryQuery, HistoryResponse, Member,
    MembersResponse, NodeHealth, NodeResponse, OverlayResponse, Service, StatusResponse,
    unix_ms_now,
};
use starling_web::{AgentView, Reply, not_an_aggregator};
use tokio::sync::watch;

use starling_aggregator::{AggregationMetrics, ForwardError, Forwarder, RecentWindow};
use starling_gossip::{MemberState, MembershipView, NodeId, Role};
use starling_health::overlay;
use starling_health::overlay::OverlayIntake;
use starling_health::status::StatusMetrics;
use starling_history::{Event, EventFilter, EventPosition, Store, StoreError, sort_newest_first};
use starling_replicate as replicate;
use starling_replicate::{Publisher, ReplicationMetrics, Scope};
use starling_seal::Keyring;

/// The gossip loop republishes every second; this much silence means it
/// is stuck, and the kubelet should restart us.
const LIVENESS_WINDOW: Duration = Duration::from_secs(10);

/// What the agent's HTTP surface reads.
#[derive(Debug)]
pub(crate) struct SurfaceParts {
    pub view: watch::Receiver<Arc<MembershipView>>,
    /// Shared with the scrape futures, which outlive a borrow of `self`.
    pub registry: Arc<Registry>,
    pub publisher: Publisher,
    /// Opens sync requests and annotations, seals sync answers.
    pub keyring: Arc<Keyring>,
    pub replication: ReplicationMetrics,
    /// Asks an aggregator the history this node does not hold.
    pub forwarder: Forwarder,
    /// Counts what this node ingests as an aggregator.
    pub aggregation: AggregationMetrics,
    pub status_metrics: StatusMetrics,
    /// This node runs checks: its status is unknown until they report.
    pub checks_here: bool,
    /// Seeds were given: readiness waits until gossip has joined them.
    pub has_seeds: bool,
    /// Takes the local probe's reports; holds its latest figures.
    pub overlay: Arc<OverlayIntake>,
}

#[derive(Debug)]
pub(crate) struct AgentSurface {
    parts: SurfaceParts,
    /// One scrape at a time: a scrape rebuilds the per-node series before
    /// encoding them, and two interleaved would show each other's gaps.
    scrape: Arc<tokio::sync::Mutex<()>>,
    /// Gossip has joined once. Latched: a survivor whose peers all died
    /// must stay in its Service's endpoints, since it answers for them.
    joined: AtomicBool,
}

impl AgentSurface {
    pub fn new(parts: SurfaceParts) -> Self {
        AgentSurface {
            parts,
            scrape: Arc::default(),
            joined: AtomicBool::new(false),
        }
    }

    fn store(&self) -> Store {
        self.parts.publisher.store().clone()
    }

    fn is_aggregator(&self) -> bool {
        self.parts.view.borrow().me.meta.role == Role::Aggregator
    }

    /// The status and the latest results it was rolled up from.
    fn roll_up(&self) -> impl Future<Output = Result<Rolled, ApiError>> + Send + 'static {
        let store = self.store();
        let view = Arc::clone(&self.parts.view.borrow());
        let checks_here = self.parts.checks_here;
        async move {
            let latest = store.latest_results().await.map_err(unavailable)?;
            let status =
                starling_health::status::roll_up(&view, &latest, checks_here, unix_ms_now());
            Ok(Rolled {
                status,
                latest,
                view,
            })
        }
    }
}

struct Rolled {
    status: StatusResponse,
    latest: Vec<starling_history::CheckResult>,
    view: Arc<MembershipView>,
}

fn unavailable(error: StoreError) -> ApiError {
    ApiError::Unavailable(format!("history: {error}"))
}

impl AgentView for AgentSurface {
    fn members(&self) -> MembersResponse {
        let view = Arc::clone(&self.parts.view.borrow());
        let mut members = vec![member(&view.me, MemberState::Alive, view.started_unix_ms)];
        for other in &view.members {
            members.push(member(&other.id, other.state, other.since_unix_ms));
        }
        members.sort_by(|a, b| a.name.cmp(&b.name).then(a.addr.cmp(&b.addr)));
        MembersResponse {
            answered_by: view.me.name.clone(),
            answered_at_unix_ms: unix_ms_now(),
            counts: starling_health::status::state_counts(&view),
            local_health: view.local_health,
            members_matched: members.len(),
            next_cursor: None,
            members,
        }
    }

    fn metrics(&self) -> Reply<String> {
        let rolled = self.roll_up();
        let registry = Arc::clone(&self.parts.registry);
        let metrics = self.parts.status_metrics.clone();
        let scrape = Arc::clone(&self.scrape);
        Box::pin(async move {
            let rolled = rolled.await;
            let _one_at_a_time = scrape.lock().await;
            match rolled {
                Ok(rolled) => metrics.refresh(&rolled.status, rolled.status.answered_at_unix_ms),
                // The rest still matters most then (history write errors,
                // gossip): serve it, with the verdict gauges as last set.
                Err(error) => {
                    tracing::warn!(%error, "metrics: node and cluster status not refreshed")
                }
            }
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry)
                .expect("writing metrics into a String cannot fail");
            Ok(text)
        })
    }

    fn live(&self) -> bool {
        let published = self.parts.view.borrow().published_unix_ms;
        unix_ms_now().saturating_sub(published) < LIVENESS_WINDOW.as_millis() as u64
    }

    fn ready(&self) -> Result<(), String> {
        if self.store().is_closed() {
            return Err("the history database is closed".to_owned());
        }
        if self.parts.view.borrow().connected {
            self.joined.store(true, Ordering::Relaxed);
        }
        if self.parts.has_seeds && !self.joined.load(Ordering::Relaxed) {
            return Err("gossip has not joined any seed yet".to_owned());
        }
        Ok(())
    }

    fn status(&self) -> Reply<StatusResponse> {
        let rolled = self.roll_up();
        Box::pin(async move { Ok(rolled.await?.status) })
    }

    fn node(&self, name: String) -> Reply<NodeResponse> {
        let rolled = self.roll_up();
        Box::pin(async move {
            let Rolled {
                status,
                latest,
                view,
            } = rolled.await?;
            let is_me = view.me.name == name;
            let member = if is_me {
                Some(member(&view.me, MemberState::Alive, view.started_unix_ms))
            } else {
                // A restarted node is listed twice until its old self is
                // forgotten: the newest incarnation is the node now.
                view.members
                    .iter()
                    .filter(|m| m.id.name == name)
                    .max_by_key(|m| m.id.incarnation)
                    .map(|m| member(&m.id, m.state, m.since_unix_ms))
            };
            let checks: Vec<CheckDetail> = latest
                .into_iter()
                .filter(|r| r.node == name && !is_cluster_check(&r.check))
                .map(|r| CheckDetail {
                    check: r.check,
                    status: r.status,
                    message: r.message,
                    at_unix_ms: r.at_unix_ms,
                    // Only this node's own rows carry them: other nodes'
                    // come from the log of status changes.
                    duration_ms: is_me.then_some(r.duration_ms),
                    details: is_me.then_some(r.details),
                })
                .collect();
            let (node_status, reasons) = match status.nodes.into_iter().find(|n| n.name == name) {
                Some(node) => (node.status, node.reasons),
                None => match &member {
                    // The roll-up lists every member but those that left.
                    Some(m) => (NodeHealth::Left, vec![format!("gossip: {}", m.state)]),
                    None if !checks.is_empty() => (
                        NodeHealth::Unknown,
                        vec!["not in this node's gossip view".to_owned()],
                    ),
                    None => {
                        return Err(ApiError::NotFound(format!(
                            "no node named {name:?} in gossip or the history"
                        )));
                    }
                },
            };
            Ok(NodeResponse {
                answered_by: status.answered_by,
                answered_at_unix_ms: status.answered_at_unix_ms,
                name,
                status: node_status,
                reasons,
                member,
                checks,
            })
        })
    }

    fn history(&self, query: HistoryQuery) -> Reply<HistoryResponse> {
        let store = self.store();
        let publisher = self.parts.publisher.clone();
        let forwarder = self.parts.forwarder.clone();
        let answered_by = self.parts.view.borrow().me.name.clone();
        Box::pin(async move {
            // An aggregated cluster's log is on the aggregators; this node
            // holds its own rows, the latest health and a window of the
            // newest events, not the rest.
            let (incomplete, window) = if *publisher.scope().borrow() == Scope::OwnLog {
                match forwarder.history(&query).await {
                    Ok(mut page) => {
                        page.answered_by = answered_by;
                        return Ok(page);
                    }
                    Err(ForwardError::Refused(refusal)) => return Err(refusal),
                    Err(ForwardError::NoAggregator(why)) => {
                        let window = forwarder.window();
                        (Some(unanswered(&why, window)), Some(window.clone()))
                    }
                }
            } else {
                (None, None)
            };
            // Like `nodes NAME`: a typo is an error, not an empty page.
            if let Some(node) = &query.node
                && !publisher.knows_node(node).await.map_err(unavailable)?
            {
                return Err(ApiError::NotFound(format!(
                    "no node named {node:?} in gossip or the history"
                )));
            }
            let (events, next_cursor) = local_history(&store, query, window.as_ref()).await?;
            Ok(HistoryResponse {
                served_by: Some(answered_by.clone()),
                answered_by,
                answered_at_unix_ms: unix_ms_now(),
                incomplete,
                events,
                next_cursor,
            })
        })
    }

    fn stream(&self, sealed: Bytes) -> Reply<Vec<u8>> {
        if !self.is_aggregator() {
            return Box::pin(async { Err(not_an_aggregator()) });
        }
        let store = self.store();
        let keyring = Arc::clone(&self.parts.keyring);
        let metrics = self.parts.aggregation.clone();
        Box::pin(async move {
            starling_aggregator::answer_stream(&store, &keyring, &metrics, sealed).await
        })
    }

    fn health_table(&self, sealed: Bytes) -> Reply<Vec<u8>> {
        if !self.is_aggregator() {
            return Box::pin(async { Err(not_an_aggregator()) });
        }
        let store = self.store();
        let keyring = Arc::clone(&self.parts.keyring);
        Box::pin(async move { starling_aggregator::answer_health(&store, &keyring, sealed).await })
    }

    fn window(&self, sealed: Bytes) -> Reply<Vec<u8>> {
        if !self.is_aggregator() {
            return Box::pin(async { Err(not_an_aggregator()) });
        }
        let store = self.store();
        let keyring = Arc::clone(&self.parts.keyring);
        Box::pin(async move { starling_aggregator::answer_window(&store, &keyring, sealed).await })
    }

    fn sync(&self, sealed: Bytes) -> Reply<Vec<u8>> {
        let store = self.store();
        let keyring = Arc::clone(&self.parts.keyring);
        let metrics = self.parts.replication.clone();
        Box::pin(async move { replicate::answer_sync(&store, &keyring, &metrics, sealed).await })
    }

    fn annotate(&self, sealed: Bytes) -> Reply<AnnotationAck> {
        let publisher = self.parts.publisher.clone();
        let keyring = Arc::clone(&self.parts.keyring);
        Box::pin(async move { replicate::accept_annotation(&publisher, &keyring, sealed).await })
    }

    fn overlay(&self) -> Reply<OverlayResponse> {
        let store = self.store();
        let view = Arc::clone(&self.parts.view.borrow());
        let intake = Arc::clone(&self.parts.overlay);
        Box::pin(async move {
            let latest = store.latest_results().await.map_err(unavailable)?;
            let figures = intake.figures().await;
            overlay::response(
                &view,
                &latest,
                figures.as_ref(),
                intake.window_secs(),
                unix_ms_now(),
            )
            .ok_or_else(|| {
                ApiError::NotFound(
                    "no overlay data: no overlay probe (starling probe) has reported in this \
                     cluster"
                        .to_owned(),
                )
            })
        })
    }

    fn overlay_report(&self, sealed: Bytes) -> Reply<Vec<u8>> {
        let intake = Arc::clone(&self.parts.overlay);
        Box::pin(async move { intake.accept(sealed, unix_ms_now()).await })
    }
}

/// Why an aggregated node's own answer is incomplete, and what it holds.
fn unanswered(why: &str, window: &RecentWindow) -> String {
    let held = match window.oldest_at() {
        Some(oldest) => format!(
            "this node's own log and the {} newest events of the cluster it had from the \
             aggregators (none older than {})",
            window.len(),
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_millis(oldest)
            )
        ),
        None => "only this node's own log".to_owned(),
    };
    format!(
        "{why}: this answer holds {held}; the rest of other nodes' history is on the \
         aggregators and unavailable until one answers"
    )
}

/// A page of the history from this node's database, merged with the
/// window's events when given, and the cursor to the next: both select and
/// order by the same filter, so the cursor of a merged page continues both.
async fn local_history(
    store: &Store,
    query: HistoryQuery,
    window: Option<&RecentWindow>,
) -> Result<(Vec<HistoryEvent>, Option<String>), ApiError> {
    let limit = query.limit;
    let filter = EventFilter {
        node: query.node,
        kind: query.kind,
        check: query.check,
        since_unix_ms: query.since_unix_ms,
        until_unix_ms: query.until_unix_ms,
        after: query.cursor.map(|c| EventPosition {
            at_unix_ms: c.at_unix_ms,
            origin: c.origin,
            seq: c.seq,
        }),
        limit,
    };
    let mut events = store.events(filter.clone()).await.map_err(unavailable)?;
    if let Some(window) = window {
        let held: HashSet<(String, u64)> =
            events.iter().map(|e| (e.origin.clone(), e.seq)).collect();
        events.extend(
            window
                .page(&filter)
                .into_iter()
                .filter(|e| !held.contains(&(e.origin.clone(), e.seq))),
        );
        sort_newest_first(&mut events);
        events.truncate(limit);
    }
    // A full page may have a successor; a short one is the end.
    let next_cursor = (events.len() == limit)
        .then(|| events.last())
        .flatten()
        .map(|last| {
            starling_model::HistoryCursor {
                at_unix_ms: last.at_unix_ms,
                origin: last.origin.clone(),
                seq: last.seq,
            }
            .to_string()
        });
    Ok((events.into_iter().map(history_event).collect(), next_cursor))
}

fn history_event(event: Event) -> HistoryEvent {
    HistoryEvent {
        origin: event.origin,
        seq: event.seq,
        observer: event.observer,
        at_unix_ms: event.at_unix_ms,
        kind: event.kind,
        node: event.node,
        check: event.check,
        old_state: event.old_state,
        new_state: event.new_state,
        message: event.message,
    }
}

fn member(id: &NodeId, state: MemberState, since_unix_ms: u64) -> Member {
    Member {
        name: id.name.clone(),
        addr: id.addr.to_string(),
        incarnation: id.incarnation,
        role: id.meta.role.to_string(),
        api_addr: id.meta.service(Service::Api).map(|a| a.to_string()),
        probe_addr: id.meta.service(Service::Probe).map(|a| a.to_string()),
        state: state.as_str().to_owned(),
        since_unix_ms,
    }
}

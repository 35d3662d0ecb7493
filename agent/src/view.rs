//! What the HTTP surface reads: the gossip view, the history and the
//! metrics registry.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::registry::Registry;
use starling_web::{
    AgentView, AnnotationAck, ApiError, HistoryEvent, HistoryQuery, HistoryResponse, Member,
    MembersResponse, Reply, StatusResponse,
};
use tokio::sync::watch;

use crate::gossip::{Keyring, MemberState, MembershipView, NodeId};
use crate::history::{Event, EventFilter, EventKind};
use crate::replicate::{self, Publisher, ReplicationMetrics};
use crate::unix_ms_now;

/// The gossip loop republishes every second; this much silence means it
/// is stuck, and the kubelet should restart us.
const LIVENESS_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct AgentSurface {
    view: watch::Receiver<Arc<MembershipView>>,
    registry: Registry,
    publisher: Publisher,
    /// Opens sync requests and annotations, seals sync answers.
    keyring: Arc<Keyring>,
    replication: ReplicationMetrics,
    /// This node runs checks: its status is unknown until they report.
    checks_here: bool,
}

impl AgentSurface {
    pub fn new(
        view: watch::Receiver<Arc<MembershipView>>,
        registry: Registry,
        publisher: Publisher,
        keyring: Arc<Keyring>,
        replication: ReplicationMetrics,
        checks_here: bool,
    ) -> Self {
        AgentSurface {
            view,
            registry,
            publisher,
            keyring,
            replication,
            checks_here,
        }
    }
}

impl AgentView for AgentSurface {
    fn members(&self) -> MembersResponse {
        let view = Arc::clone(&self.view.borrow());
        let mut members = vec![member(&view.me, MemberState::Alive, view.started_unix_ms)];
        for other in &view.members {
            members.push(member(&other.id, other.state, other.since_unix_ms));
        }
        members.sort_by(|a, b| a.name.cmp(&b.name).then(a.addr.cmp(&b.addr)));
        MembersResponse {
            answered_by: view.me.name.clone(),
            answered_at_unix_ms: unix_ms_now(),
            counts: crate::status::state_counts(&view),
            local_health: view.local_health,
            members,
        }
    }

    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing metrics into a String cannot fail");
        text
    }

    fn live(&self) -> bool {
        let published = self.view.borrow().published_unix_ms;
        unix_ms_now().saturating_sub(published) < LIVENESS_WINDOW.as_millis() as u64
    }

    fn status(&self) -> Reply<StatusResponse> {
        let store = self.publisher.store().clone();
        let view = Arc::clone(&self.view.borrow());
        let checks_here = self.checks_here;
        Box::pin(async move {
            let latest = store
                .latest_results()
                .await
                .map_err(|error| ApiError::Unavailable(format!("history: {error}")))?;
            Ok(crate::status::roll_up(
                &view,
                &latest,
                checks_here,
                unix_ms_now(),
            ))
        })
    }

    fn history(&self, query: HistoryQuery) -> Reply<HistoryResponse> {
        let store = self.publisher.store().clone();
        let answered_by = self.view.borrow().me.name.clone();
        Box::pin(async move {
            let kind = match query.kind.as_deref().map(str::parse::<EventKind>) {
                None => None,
                Some(Ok(kind)) => Some(kind),
                Some(Err(error)) => return Err(ApiError::BadRequest(format!("kind: {error}"))),
            };
            let filter = EventFilter {
                node: query.node,
                kind,
                check: query.check,
                since_unix_ms: query.since_unix_ms,
                until_unix_ms: query.until_unix_ms,
                limit: query.limit,
            };
            let events = store
                .events(filter)
                .await
                .map_err(|error| ApiError::Unavailable(format!("history: {error}")))?;
            Ok(HistoryResponse {
                answered_by,
                answered_at_unix_ms: unix_ms_now(),
                events: events.into_iter().map(history_event).collect(),
            })
        })
    }

    fn sync(&self, sealed: Bytes) -> Reply<Vec<u8>> {
        let store = self.publisher.store().clone();
        let keyring = Arc::clone(&self.keyring);
        let metrics = self.replication.clone();
        Box::pin(async move { replicate::answer_sync(&store, &keyring, &metrics, sealed).await })
    }

    fn annotate(&self, sealed: Bytes) -> Reply<AnnotationAck> {
        let publisher = self.publisher.clone();
        let keyring = Arc::clone(&self.keyring);
        Box::pin(async move { replicate::accept_annotation(&publisher, &keyring, sealed).await })
    }
}

fn history_event(event: Event) -> HistoryEvent {
    HistoryEvent {
        origin: event.origin,
        seq: event.seq,
        observer: event.observer,
        at_unix_ms: event.at_unix_ms,
        kind: event.kind.as_str().to_owned(),
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
        api_addr: id.meta.api_addr.map(|a| a.to_string()),
        probe_addr: id.meta.probe_addr.map(|a| a.to_string()),
        state: state.as_str().to_owned(),
        since_unix_ms,
    }
}

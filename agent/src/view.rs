//! What the HTTP surface reads: the gossip view and the metrics registry.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::registry::Registry;
use starling_web::{AgentView, Member, MembersResponse, StateCounts};
use tokio::sync::watch;

use crate::gossip::{MemberState, MembershipView, NodeId};

/// The gossip loop republishes every second; this much silence means it
/// is stuck, and the kubelet should restart us.
const LIVENESS_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct AgentSurface {
    view: watch::Receiver<Arc<MembershipView>>,
    registry: Registry,
}

impl AgentSurface {
    pub fn new(view: watch::Receiver<Arc<MembershipView>>, registry: Registry) -> Self {
        AgentSurface { view, registry }
    }
}

impl AgentView for AgentSurface {
    fn members(&self) -> MembersResponse {
        let view = Arc::clone(&self.view.borrow());
        let mut counts = StateCounts {
            alive: 1,
            ..StateCounts::default()
        };
        let mut members = vec![member(&view.me, MemberState::Alive, view.started_unix_ms)];
        for other in &view.members {
            match other.state {
                MemberState::Alive => counts.alive += 1,
                MemberState::Suspect => counts.suspect += 1,
                MemberState::Down => counts.down += 1,
                MemberState::Left => counts.left += 1,
            }
            members.push(member(&other.id, other.state, other.since_unix_ms));
        }
        members.sort_by(|a, b| a.name.cmp(&b.name).then(a.addr.cmp(&b.addr)));
        MembersResponse {
            answered_by: view.me.name.clone(),
            answered_at_unix_ms: unix_ms_now(),
            counts,
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

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

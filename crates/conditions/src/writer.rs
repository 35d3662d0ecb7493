//! The writing task: each round, the roll-up's verdicts for the Nodes this
//! agent owns become condition patches and Events through the API.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, Node, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::json;

use starling_gossip::GossipHandle;
use starling_health::status::roll_up;
use starling_history::Store;

use crate::plan::{self, CONDITION_TYPE, ConditionStatus, Desired, Write, Written};

/// Where node Events go: the namespace the kubelet records them in.
const EVENT_NAMESPACE: &str = "default";
/// The Event source, as `kubectl describe node` shows it.
const COMPONENT: &str = "starling";

/// How the conditions are written.
#[derive(Clone, Debug)]
pub struct ConditionsConfig {
    /// The API server and credentials (the agent's kubeconfig or service
    /// account).
    pub kube: kube::Config,
    /// Between two rounds.
    pub every: Duration,
    /// An unchanged condition is written again this often, so its
    /// `lastHeartbeatTime` says starling still watches the node.
    pub heartbeat: Duration,
    /// Patches per round at most.
    pub writes_per_round: usize,
    /// One request may take this long.
    pub request_timeout: Duration,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// `starling_kube_condition_writes_total{result}` and
/// `starling_kube_events_total{result}`.
#[derive(Clone, Debug, Default)]
pub struct ConditionMetrics {
    writes: Family<ResultLabel, Counter>,
    events: Family<ResultLabel, Counter>,
}

impl ConditionMetrics {
    pub fn register(registry: &mut Registry) -> ConditionMetrics {
        let metrics = ConditionMetrics::default();
        for result in ["ok", "failed"] {
            let _ = metrics.writes.get_or_create(&ResultLabel { result });
            let _ = metrics.events.get_or_create(&ResultLabel { result });
        }
        let kube = registry.sub_registry_with_prefix("kube");
        kube.register(
            "condition_writes",
            "Patches of the StarlingHealthy node condition, by result",
            metrics.writes.clone(),
        );
        kube.register(
            "events",
            "Node Events recorded for condition changes, by result (an Event that exists \
             already counts as ok)",
            metrics.events.clone(),
        );
        metrics
    }

    fn count(family: &Family<ResultLabel, Counter>, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        family.get_or_create(&ResultLabel { result }).inc();
    }
}

/// What this agent believes about each Node it writes.
#[derive(Debug, Default)]
struct Known {
    written: BTreeMap<String, Written>,
    /// Events not recorded yet: the latest change per Node, so the backlog
    /// stays bounded while the API server is down.
    events: BTreeMap<String, Event>,
}

/// Writes conditions until `shutdown` completes. Returns at once, logging
/// why, if the client cannot be built.
pub async fn run(
    config: ConditionsConfig,
    gossip: GossipHandle,
    store: Store,
    metrics: ConditionMetrics,
    shutdown: impl Future<Output = ()>,
) {
    let mut kube = config.kube.clone();
    kube.read_timeout = Some(config.request_timeout);
    kube.write_timeout = Some(config.request_timeout);
    kube.connect_timeout = Some(config.request_timeout);
    let client = match kube::Client::try_from(kube) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "node conditions: no Kubernetes client; not writing them");
            return;
        }
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let events: Api<Event> = Api::namespaced(client, EVENT_NAMESPACE);
    let mut known = Known::default();
    let mut ticker = tokio::time::interval(config.every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        let round = round(
            &config, &gossip, &store, &nodes, &events, &mut known, &metrics,
        );
        // A round never outlives the agent: shutdown cuts it short.
        tokio::select! {
            () = &mut shutdown => return,
            () = round => {}
        }
    }
}

async fn round(
    config: &ConditionsConfig,
    gossip: &GossipHandle,
    store: &Store,
    nodes: &Api<Node>,
    events: &Api<Event>,
    known: &mut Known,
    metrics: &ConditionMetrics,
) {
    let latest = match store.latest_results().await {
        Ok(latest) => latest,
        Err(error) => {
            tracing::warn!(%error, "node conditions: cannot read the latest results");
            return;
        }
    };
    let view = std::sync::Arc::clone(&gossip.view.borrow());
    let now = starling_model::unix_ms_now();
    let status = roll_up(&view, &latest, false, now);
    let wanted: BTreeMap<String, Desired> = status
        .nodes
        .iter()
        .filter(|node| plan::owns(&view, &node.name))
        .filter_map(|node| Some((node.name.clone(), plan::desired(node)?)))
        .collect();
    // Forget Nodes owned by another now: if they come back, what the API
    // holds is read again.
    known.written.retain(|node, _| wanted.contains_key(node));
    known.events.retain(|node, _| wanted.contains_key(node));
    for node in wanted.keys() {
        if !known.written.contains_key(node)
            && let Some(held) = held(nodes, node).await
        {
            known.written.insert(node.clone(), held);
        }
    }
    let heartbeat = config.heartbeat.as_millis() as u64;
    for write in plan::plan(
        &wanted,
        &known.written,
        now,
        heartbeat,
        config.writes_per_round,
    ) {
        let ok = patch(nodes, &write, now).await;
        ConditionMetrics::count(&metrics.writes, ok);
        if !ok {
            continue;
        }
        if let Some(before) = write.event {
            known
                .events
                .insert(write.node.clone(), event(&write, before, now));
        }
        known.written.insert(
            write.node.clone(),
            Written {
                desired: write.desired,
                transition_unix_ms: write.transition_unix_ms,
                written_unix_ms: now,
            },
        );
    }
    let pending = std::mem::take(&mut known.events);
    for (node, event) in pending {
        let recorded = match events.create(&PostParams::default(), &event).await {
            Ok(_) => true,
            Err(kube::Error::Api(status)) if status.code == 409 => true,
            Err(error) => {
                tracing::debug!(%error, node, "node conditions: event not recorded yet");
                false
            }
        };
        ConditionMetrics::count(&metrics.events, recorded);
        if !recorded {
            known.events.insert(node, event);
        }
    }
}

/// The condition the API holds for `node`, as what was written; `None`
/// when it has none or cannot be read (then the next write says it).
async fn held(nodes: &Api<Node>, node: &str) -> Option<Written> {
    let object = nodes.get(node).await.ok()?;
    let condition = object
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == CONDITION_TYPE)?;
    let unix_ms = |time: Option<Time>| {
        time.map_or(0, |Time(at)| {
            u64::try_from(at.as_millisecond()).unwrap_or(0)
        })
    };
    Some(Written {
        desired: Desired {
            status: ConditionStatus::parse(&condition.status),
            reason: condition.reason.unwrap_or_default(),
            message: condition.message.unwrap_or_default(),
        },
        transition_unix_ms: unix_ms(condition.last_transition_time),
        written_unix_ms: unix_ms(condition.last_heartbeat_time),
    })
}

/// A strategic merge patch of the one condition: the kubelet's and other
/// writers' conditions stay as they are.
async fn patch(nodes: &Api<Node>, write: &Write, now: u64) -> bool {
    let body = json!({
        "status": {
            "conditions": [{
                "type": CONDITION_TYPE,
                "status": write.desired.status.as_str(),
                "reason": write.desired.reason,
                "message": write.desired.message,
                "lastHeartbeatTime": rfc3339(now),
                "lastTransitionTime": rfc3339(write.transition_unix_ms),
            }]
        }
    });
    match nodes
        .patch_status(
            &write.node,
            &PatchParams::default(),
            &Patch::Strategic(&body),
        )
        .await
    {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(%error, node = %write.node, "node conditions: patch failed; retried next round");
            false
        }
    }
}

/// The Event for a change, named after it (so it is recorded once).
fn event(write: &Write, before: ConditionStatus, now: u64) -> Event {
    let warning = write.desired.status != ConditionStatus::True;
    let reason = format!("Starling{}", write.desired.reason);
    Event {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}.starling-{}-{}",
                write.node,
                write.desired.status.as_str().to_lowercase(),
                write.transition_unix_ms
            )),
            namespace: Some(EVENT_NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            kind: Some("Node".to_owned()),
            name: Some(write.node.clone()),
            // The kubelet uses the node's name as its Events' uid.
            uid: Some(write.node.clone()),
            ..ObjectReference::default()
        },
        reason: Some(reason),
        message: Some(format!(
            "{CONDITION_TYPE} {} -> {}: {}",
            before.as_str(),
            write.desired.status.as_str(),
            write.desired.message
        )),
        type_: Some(if warning { "Warning" } else { "Normal" }.to_owned()),
        source: Some(EventSource {
            component: Some(COMPONENT.to_owned()),
            ..EventSource::default()
        }),
        first_timestamp: Some(time(now)),
        last_timestamp: Some(time(now)),
        count: Some(1),
        ..Event::default()
    }
}

fn time(unix_ms: u64) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_millisecond(unix_ms as i64)
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

/// To the second, as the API server writes condition times.
fn rfc3339(unix_ms: u64) -> String {
    time(unix_ms).0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

//! The fake scheduler and kubelet: a task that binds Pending pods to the first node after
//! the schedule delay, and marks them Running and Ready 100 ms after binding. With
//! scheduling switched off, pods stay Pending with the `Unschedulable` condition a real
//! scheduler would set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStatus, Pod, PodCondition, PodIP,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::MissedTickBehavior;

use super::objects::pod_condition;
use super::state::{Shared, State, StoredPod, now};

/// How often the scheduler looks at the pods.
const TICK: Duration = Duration::from_millis(50);
/// From binding to Running, standing in for the kubelet starting the containers.
const START_DELAY: Duration = Duration::from_millis(100);
/// The address every fake pod gets; nothing listens there, and nothing needs to.
const POD_IP: &str = "10.244.0.10";

/// Runs until the server shuts down.
pub(super) async fn run(shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(TICK);
    // After a stall (a busy 2-core test machine) one catch-up tick is enough.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => tick(&mut shared.lock(), Instant::now()),
            () = shared.shut_down() => return,
        }
    }
}

/// One pass over every pod, as of `now`.
fn tick(state: &mut State, now: Instant) {
    let scheduling = state.switches.scheduling;
    let delay = state.switches.schedule_delay;
    let node_count = state.nodes.len();
    let first_node = state.nodes.first().and_then(|n| n.metadata.name.clone());
    let mut changed = Vec::new();
    for (key, stored) in &mut state.pods {
        if !is_pending(&stored.pod) {
            continue;
        }
        let changes = match (node_name(&stored.pod).is_some(), stored.bound) {
            // Bound before the fake saw it (inserted with a node): start its clock now.
            (true, None) => {
                stored.bound = Some(now);
                false
            }
            (true, Some(bound)) => now.duration_since(bound) >= START_DELAY && start(stored),
            (false, _) if now.duration_since(stored.created) < delay => false,
            (false, _) => match (&first_node, scheduling) {
                (Some(node), true) => bind(stored, node, now),
                _ => mark_unschedulable(&mut stored.pod, node_count, scheduling),
            },
        };
        if changes {
            changed.push(key.clone());
        }
    }
    for key in changed {
        let version = state.next_version();
        if let Some(stored) = state.pods.get_mut(&key) {
            stored.pod.metadata.resource_version = Some(version);
        }
    }
}

fn is_pending(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

/// Sets the condition of `condition.type_`, keeping the old one (and its transition time)
/// if nothing changed. Returns whether anything changed.
fn set_condition(pod: &mut Pod, condition: PodCondition) -> bool {
    let conditions = pod
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(old)
            if old.status == condition.status
                && old.reason == condition.reason
                && old.message == condition.message =>
        {
            false
        }
        Some(old) => {
            *old = condition;
            true
        }
        None => {
            conditions.push(condition);
            true
        }
    }
}

/// Binds the pod to `node`, as the scheduler's binding subresource does.
fn bind(stored: &mut StoredPod, node: &str, now: Instant) -> bool {
    stored
        .pod
        .spec
        .get_or_insert_with(Default::default)
        .node_name = Some(node.to_owned());
    stored.bound = Some(now);
    set_condition(
        &mut stored.pod,
        pod_condition("PodScheduled", true, None, None),
    );
    true
}

fn mark_unschedulable(pod: &mut Pod, node_count: usize, scheduling: bool) -> bool {
    let why = if scheduling {
        "no nodes exist"
    } else {
        "scheduling disabled by the test"
    };
    let message = format!("0/{node_count} nodes are available: {why}");
    let condition = pod_condition("PodScheduled", false, Some("Unschedulable"), Some(&message));
    set_condition(pod, condition)
}

/// What the kubelet reports once every container runs: phase Running, the pod Ready.
fn start(stored: &mut StoredPod) -> bool {
    let pod = &mut stored.pod;
    let started = Time(now());
    let statuses: Vec<ContainerStatus> = pod
        .spec
        .iter()
        .flat_map(|spec| &spec.containers)
        .map(|container| ContainerStatus {
            name: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            image_id: String::new(),
            container_id: Some(format!("containerd://{}", container.name)),
            ready: true,
            started: Some(true),
            restart_count: 0,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(started.clone()),
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        })
        .collect();
    for type_ in ["Initialized", "ContainersReady", "Ready"] {
        set_condition(pod, pod_condition(type_, true, None, None));
    }
    let status = pod.status.get_or_insert_with(Default::default);
    status.phase = Some("Running".to_owned());
    status.host_ip = Some("127.0.0.1".to_owned());
    status.pod_ip = Some(POD_IP.to_owned());
    status.pod_ips = Some(vec![PodIP {
        ip: POD_IP.to_owned(),
    }]);
    status.start_time = Some(started);
    status.container_statuses = Some(statuses);
    true
}

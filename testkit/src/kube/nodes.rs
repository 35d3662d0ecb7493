//! Nodes and Events as a node-problem-detector-like writer uses them: a
//! node read by name, its status conditions patched (strategic merge: a
//! condition replaces the one of its `type`, others stay), and Events
//! created once each (a second create of a name is 409 `AlreadyExists`).

use k8s_openapi::api::core::v1::{Event, Node, NodeCondition, NodeStatus};

use super::error::ApiError;
use super::state::State;

pub(super) fn get(state: &State, name: &str) -> Result<Node, ApiError> {
    state
        .nodes
        .iter()
        .find(|node| node.metadata.name.as_deref() == Some(name))
        .cloned()
        .ok_or_else(|| ApiError::NotFound {
            resource: "nodes",
            name: name.to_owned(),
        })
}

/// `PATCH /api/v1/nodes/NAME/status` with a strategic merge patch of
/// `status.conditions`: the patch's conditions replace those of the same
/// type. Anything else in the patch is refused, so a test notices a writer
/// that touches more than conditions.
pub(super) fn patch_status(state: &mut State, name: &str, body: &[u8]) -> Result<Node, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Patch {
        status: StatusPatch,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct StatusPatch {
        conditions: Vec<NodeCondition>,
    }
    let patch: Patch = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!("the patch is not status.conditions only: {e}"))
    })?;
    let node = state
        .nodes
        .iter_mut()
        .find(|node| node.metadata.name.as_deref() == Some(name))
        .ok_or_else(|| ApiError::NotFound {
            resource: "nodes",
            name: name.to_owned(),
        })?;
    let conditions = node
        .status
        .get_or_insert_with(NodeStatus::default)
        .conditions
        .get_or_insert_with(Vec::new);
    for condition in patch.status.conditions {
        match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
            Some(existing) => *existing = condition,
            None => conditions.push(condition),
        }
    }
    Ok(node.clone())
}

/// `POST /api/v1/namespaces/NS/events`.
pub(super) fn create_event(state: &mut State, ns: &str, body: &[u8]) -> Result<Event, ApiError> {
    let event: Event = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not an Event: {e}")))?;
    let name = event.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::Invalid(
            "Event is invalid: metadata.name: Required value".to_owned(),
        ));
    }
    let key = (ns.to_owned(), name.clone());
    if state.events.contains_key(&key) {
        return Err(ApiError::AlreadyExists {
            resource: "events",
            name,
        });
    }
    let meta = state.new_meta(event.metadata.clone(), Some(ns));
    let event = Event {
        metadata: meta,
        ..event
    };
    state.events.insert(key, event.clone());
    Ok(event)
}

//! Proof that the runtime can start a pod, not only that it says it could:
//! a pod sandbox (the runtime's pause container) on the host network is
//! started, stopped and removed, as the kubelet does for every pod. A
//! runtime whose conditions are all true still fails here when its pause
//! image cannot be pulled, its OCI runtime is broken or its disk is full.
//!
//! Host network, so no CNI is involved: a broken pod network is the
//! NetworkReady condition's and the overlay probe's to name.

use std::time::{Duration, Instant};

use tonic::transport::Channel;

use super::runtime::call;

/// The label every sandbox of this check carries, so a run finds and
/// removes what an earlier run left behind (an agent killed mid-run).
const LABEL: &str = "io.starling.check";
const LABEL_VALUE: &str = "container-runtime";
/// Starting a sandbox may pull the pause image on a node's first pod.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The CRI messages of the sandbox's life (runtime.v1), as far as used.
mod cri {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxMetadata {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub uid: String,
        #[prost(string, tag = "3")]
        pub namespace: String,
        #[prost(uint32, tag = "4")]
        pub attempt: u32,
    }

    /// `NamespaceMode::NODE`: the host's network namespace.
    pub const NAMESPACE_NODE: i32 = 2;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamespaceOption {
        #[prost(int32, tag = "1")]
        pub network: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LinuxSandboxSecurityContext {
        #[prost(message, optional, tag = "1")]
        pub namespace_options: Option<NamespaceOption>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LinuxPodSandboxConfig {
        #[prost(message, optional, tag = "2")]
        pub security_context: Option<LinuxSandboxSecurityContext>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxConfig {
        #[prost(message, optional, tag = "1")]
        pub metadata: Option<PodSandboxMetadata>,
        #[prost(map = "string, string", tag = "6")]
        pub labels: HashMap<String, String>,
        #[prost(message, optional, tag = "8")]
        pub linux: Option<LinuxPodSandboxConfig>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RunPodSandboxRequest {
        #[prost(message, optional, tag = "1")]
        pub config: Option<PodSandboxConfig>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RunPodSandboxResponse {
        #[prost(string, tag = "1")]
        pub pod_sandbox_id: String,
    }

    /// StopPodSandboxRequest and RemovePodSandboxRequest alike.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SandboxIdRequest {
        #[prost(string, tag = "1")]
        pub pod_sandbox_id: String,
    }

    /// StopPodSandboxResponse and RemovePodSandboxResponse: empty.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Empty {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandboxFilter {
        #[prost(map = "string, string", tag = "3")]
        pub label_selector: HashMap<String, String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListPodSandboxRequest {
        #[prost(message, optional, tag = "1")]
        pub filter: Option<PodSandboxFilter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PodSandbox {
        #[prost(string, tag = "1")]
        pub id: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListPodSandboxResponse {
        #[prost(message, repeated, tag = "1")]
        pub items: Vec<PodSandbox>,
    }
}

/// What one round of start, stop and remove showed.
#[derive(Debug)]
pub(super) enum SandboxRound {
    /// Started, stopped and removed; how long the start took.
    Done {
        started_in: Duration,
        leftovers: usize,
    },
    /// The runtime could not start one: no pod can start on this node.
    CannotStart(String),
    /// Started, but not stopped or removed: it stays until a later run.
    NotRemoved(String),
}

/// Starts a sandbox named after `node`, then stops and removes it, after
/// removing any an earlier run left.
pub(super) async fn round(channel: &Channel, node: &str) -> SandboxRound {
    let leftovers = remove_leftovers(channel).await;
    let config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: format!("starling-runtime-check-{node}"),
            // Differs between runs: the runtime keys a sandbox by name,
            // namespace, uid and attempt.
            uid: format!("starling-{}", starling_model::unix_ms_now()),
            namespace: "starling-system".to_owned(),
            attempt: 0,
        }),
        labels: [(LABEL.to_owned(), LABEL_VALUE.to_owned())].into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NAMESPACE_NODE,
                }),
            }),
        }),
    };
    let started = Instant::now();
    let request = cri::RunPodSandboxRequest {
        config: Some(config),
    };
    let id = match call::<_, cri::RunPodSandboxResponse>(
        channel.clone(),
        "/runtime.v1.RuntimeService/RunPodSandbox",
        request,
        START_TIMEOUT,
    )
    .await
    {
        Ok(response) => response.pod_sandbox_id,
        Err(error) => return SandboxRound::CannotStart(error),
    };
    let started_in = started.elapsed();
    match stop_and_remove(channel, &id).await {
        Ok(()) => SandboxRound::Done {
            started_in,
            leftovers,
        },
        Err(error) => SandboxRound::NotRemoved(format!("sandbox {id}: {error}")),
    }
}

/// Sandboxes of this check still there (the agent died mid-run), removed;
/// how many. Errors are left to the round's own calls to report.
async fn remove_leftovers(channel: &Channel) -> usize {
    let request = cri::ListPodSandboxRequest {
        filter: Some(cri::PodSandboxFilter {
            label_selector: [(LABEL.to_owned(), LABEL_VALUE.to_owned())].into(),
        }),
    };
    let Ok(listed) = call::<_, cri::ListPodSandboxResponse>(
        channel.clone(),
        "/runtime.v1.RuntimeService/ListPodSandbox",
        request,
        STOP_TIMEOUT,
    )
    .await
    else {
        return 0;
    };
    let mut removed = 0;
    for sandbox in listed.items {
        if stop_and_remove(channel, &sandbox.id).await.is_ok() {
            removed += 1;
        }
    }
    removed
}

async fn stop_and_remove(channel: &Channel, id: &str) -> Result<(), String> {
    for (verb, path) in [
        ("stop", "/runtime.v1.RuntimeService/StopPodSandbox"),
        ("remove", "/runtime.v1.RuntimeService/RemovePodSandbox"),
    ] {
        let request = cri::SandboxIdRequest {
            pod_sandbox_id: id.to_owned(),
        };
        call::<_, cri::Empty>(channel.clone(), path, request, STOP_TIMEOUT)
            .await
            .map_err(|error| format!("cannot {verb} it: {error}"))?;
    }
    Ok(())
}

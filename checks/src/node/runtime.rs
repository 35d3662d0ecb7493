//! The node's container runtime, asked over its CRI socket as the kubelet
//! asks it: `RuntimeService/Version` and `RuntimeService/Status`, whose
//! `RuntimeReady` and `NetworkReady` conditions say whether it can run
//! containers and give them a network. A kubelet that is up says nothing
//! about this; pods then sit in ContainerCreating.
//!
//! The messages are declared here with prost's derive, field numbers as in
//! `k8s.io/cri-api` `runtime/v1/api.proto`: only what the check reads
//! (protobuf skips the rest), and no `protoc` in the build.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use serde_json::json;
use tonic::transport::{Channel, Endpoint, Uri};

use super::sandbox::{self, SandboxRound};
use crate::checker::{BoxFuture, Checker};
use crate::errors::innermost_cause;
use crate::result::{Outcome, Status};

/// containerd's socket; CRI-O's is `/var/run/crio/crio.sock`.
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// A runtime that takes longer than this to answer is as good as down for
/// the kubelet, whose own CRI timeout is two minutes but whose pods wait.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The CRI messages the check sends and reads (runtime.v1).
mod cri {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VersionRequest {
        #[prost(string, tag = "1")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VersionResponse {
        #[prost(string, tag = "1")]
        pub version: String,
        #[prost(string, tag = "2")]
        pub runtime_name: String,
        #[prost(string, tag = "3")]
        pub runtime_version: String,
        #[prost(string, tag = "4")]
        pub runtime_api_version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatusRequest {
        #[prost(bool, tag = "1")]
        pub verbose: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RuntimeCondition {
        #[prost(string, tag = "1")]
        pub r#type: String,
        #[prost(bool, tag = "2")]
        pub status: bool,
        #[prost(string, tag = "3")]
        pub reason: String,
        #[prost(string, tag = "4")]
        pub message: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RuntimeStatus {
        #[prost(message, repeated, tag = "1")]
        pub conditions: Vec<RuntimeCondition>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StatusResponse {
        #[prost(message, optional, tag = "1")]
        pub status: Option<RuntimeStatus>,
    }
}

use cri::RuntimeCondition;

/// Checks the runtime behind one CRI socket.
#[derive(Debug)]
pub struct RuntimeCheck {
    socket: PathBuf,
    /// This node's name, when each run also starts and removes a pod
    /// sandbox (`--cri-start-sandbox`); `None` only asks.
    sandbox_node: Option<String>,
}

impl RuntimeCheck {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        RuntimeCheck {
            socket: socket.into(),
            sandbox_node: None,
        }
    }

    /// Each run also starts, stops and removes a host-network pod sandbox
    /// named after `node`, proving the runtime can start a pod.
    pub fn with_sandbox(mut self, node: impl Into<String>) -> Self {
        self.sandbox_node = Some(node.into());
        self
    }
}

impl Checker for RuntimeCheck {
    fn name(&self) -> &str {
        "container-runtime"
    }

    fn check(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(self.run())
    }
}

impl RuntimeCheck {
    async fn run(&self) -> Outcome {
        let socket = self.socket.display();
        let channel = match connect(&self.socket).await {
            Ok(channel) => channel,
            Err(error) => {
                return Outcome::critical(format!(
                    "container runtime socket {socket}: {}",
                    innermost_cause(&error)
                ));
            }
        };
        let version: cri::VersionResponse = match call(
            channel.clone(),
            "/runtime.v1.RuntimeService/Version",
            cri::VersionRequest::default(),
            CALL_TIMEOUT,
        )
        .await
        {
            Ok(version) => version,
            Err(error) => {
                return Outcome::critical(format!(
                    "container runtime at {socket} does not answer Version: {error}"
                ));
            }
        };
        let status: cri::StatusResponse = match call(
            channel.clone(),
            "/runtime.v1.RuntimeService/Status",
            cri::StatusRequest::default(),
            CALL_TIMEOUT,
        )
        .await
        {
            Ok(status) => status,
            Err(error) => {
                return Outcome::critical(format!(
                    "container runtime at {socket} does not answer Status: {error}"
                ));
            }
        };
        let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
        let judged = judge(&version, &conditions, &self.socket);
        let runtime_ready = conditions
            .iter()
            .any(|c| c.r#type == "RuntimeReady" && c.status);
        match &self.sandbox_node {
            Some(node) if runtime_ready => {
                add_sandbox_round(judged, sandbox::round(&channel, node).await)
            }
            _ => judged,
        }
    }
}

/// The conditions' verdict with what starting a sandbox showed: a runtime
/// that cannot start one is critical whatever its conditions say.
fn add_sandbox_round(judged: Outcome, round: SandboxRound) -> Outcome {
    let (status, said, detail) = match round {
        SandboxRound::Done {
            started_in,
            leftovers,
        } => {
            let ms = started_in.as_secs_f64() * 1000.0;
            let swept = match leftovers {
                0 => String::new(),
                n => format!(" (and removed {n} an earlier run left)"),
            };
            (
                judged.status,
                format!("started and removed a pod sandbox in {ms:.0} ms{swept}"),
                json!({"started": true, "start_ms": ms, "leftovers_removed": leftovers}),
            )
        }
        SandboxRound::CannotStart(error) => (
            Status::Critical,
            format!("cannot start a pod sandbox: {error}"),
            json!({"started": false, "error": error}),
        ),
        SandboxRound::NotRemoved(error) => (
            judged.status.max(Status::Warning),
            format!("started a pod sandbox but {error}"),
            json!({"started": true, "error": error}),
        ),
    };
    let mut details = judged.details;
    details["sandbox"] = detail;
    let message = if status > judged.status {
        format!("{said}; {}", judged.message)
    } else {
        format!("{}; {said}", judged.message)
    };
    Outcome::new(status, message).with_details(details)
}

/// gRPC over the Unix socket; the URI is a placeholder tonic requires.
async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_owned();
    // No channel-wide timeout: each call has its own (starting a sandbox
    // takes longer than asking for a status).
    Endpoint::from_static("http://cri.invalid")
        .connect_timeout(CALL_TIMEOUT)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
}

/// One unary call, bounded by `limit`; the error is gRPC's status in one
/// line.
pub(super) async fn call<Req, Resp>(
    channel: Channel,
    path: &'static str,
    request: Req,
    limit: Duration,
) -> Result<Resp, String>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let exchange = async {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|error| innermost_cause(&error))?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        grpc.unary(
            tonic::Request::new(request),
            http::uri::PathAndQuery::from_static(path),
            codec,
        )
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
    };
    tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {limit:?}")))
}

/// RuntimeReady false is critical (no container can start); NetworkReady
/// false a warning (host-network pods still start; the CNI is missing or
/// broken); a condition missing is said, not assumed.
fn judge(
    version: &cri::VersionResponse,
    conditions: &[RuntimeCondition],
    socket: &Path,
) -> Outcome {
    let runtime = format!(
        "{} {} (CRI {})",
        version.runtime_name, version.runtime_version, version.runtime_api_version
    );
    let details = json!({
        "socket": socket.display().to_string(),
        "runtime": version.runtime_name,
        "runtime_version": version.runtime_version,
        "cri_version": version.runtime_api_version,
        "conditions": conditions.iter().map(|c| json!({
            "type": c.r#type,
            "status": c.status,
            "reason": c.reason,
            "message": c.message,
        })).collect::<Vec<_>>(),
    });
    let find = |kind: &str| conditions.iter().find(|c| c.r#type == kind);
    let said = |c: &RuntimeCondition| {
        [c.reason.as_str(), c.message.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(": ")
    };
    match (find("RuntimeReady"), find("NetworkReady")) {
        (None, _) => Outcome::warning(format!("{runtime} reports no RuntimeReady condition")),
        (Some(runtime_ready), _) if !runtime_ready.status => Outcome::critical(format!(
            "{runtime} is not ready to run containers (RuntimeReady false: {})",
            said(runtime_ready)
        )),
        (Some(_), None) => Outcome::warning(format!("{runtime} reports no NetworkReady condition")),
        (Some(_), Some(network)) if !network.status => Outcome::warning(format!(
            "{runtime} runs containers, but its pod network is not ready (NetworkReady false: {})",
            said(network)
        )),
        _ => Outcome::ok(format!("{runtime}: RuntimeReady, NetworkReady")),
    }
    .with_details(details)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(kind: &str, status: bool, reason: &str) -> RuntimeCondition {
        RuntimeCondition {
            r#type: kind.to_owned(),
            status,
            reason: reason.to_owned(),
            message: String::new(),
        }
    }

    #[test]
    fn conditions_decide_and_are_named() {
        let version = cri::VersionResponse {
            runtime_name: "containerd".into(),
            runtime_version: "1.6.20".into(),
            runtime_api_version: "v1".into(),
            ..Default::default()
        };
        let socket = Path::new("/run/containerd/containerd.sock");
        let ready = [
            condition("RuntimeReady", true, ""),
            condition("NetworkReady", true, ""),
        ];
        let fine = judge(&version, &ready, socket);
        assert_eq!(fine.status, Status::Ok);
        assert_eq!(
            fine.message,
            "containerd 1.6.20 (CRI v1): RuntimeReady, NetworkReady"
        );
        let no_cni = [
            condition("RuntimeReady", true, ""),
            condition("NetworkReady", false, "NetworkPluginNotReady"),
        ];
        let verdict = judge(&version, &no_cni, socket);
        assert_eq!(verdict.status, Status::Warning);
        assert!(
            verdict
                .message
                .contains("NetworkReady false: NetworkPluginNotReady")
        );
        let broken = [condition("RuntimeReady", false, "RuntimeNotReady")];
        assert_eq!(judge(&version, &broken, socket).status, Status::Critical);
        assert_eq!(judge(&version, &[], socket).status, Status::Warning);
    }

    #[test]
    fn a_sandbox_that_cannot_start_leads_and_one_that_did_follows() {
        let fine = || Outcome::ok("containerd 1.6.20 (CRI v1): RuntimeReady, NetworkReady");
        let done = add_sandbox_round(
            fine(),
            SandboxRound::Done {
                started_in: Duration::from_millis(50),
                leftovers: 1,
            },
        );
        assert_eq!(done.status, Status::Ok);
        assert_eq!(
            done.message,
            "containerd 1.6.20 (CRI v1): RuntimeReady, NetworkReady; started and removed a pod \
             sandbox in 50 ms (and removed 1 an earlier run left)"
        );
        let cannot = add_sandbox_round(fine(), SandboxRound::CannotStart("no image".into()));
        assert_eq!(cannot.status, Status::Critical);
        assert!(
            cannot
                .message
                .starts_with("cannot start a pod sandbox: no image; containerd"),
            "{}",
            cannot.message
        );
        assert_eq!(cannot.details["sandbox"]["started"], false);
        let stuck = add_sandbox_round(
            fine(),
            SandboxRound::NotRemoved("sandbox x: timeout".into()),
        );
        assert_eq!(stuck.status, Status::Warning);
    }

    #[test]
    fn messages_decode_as_the_runtime_encodes_them() {
        // A StatusResponse with an `info` map (field 2) this check does not
        // declare: protobuf skips it.
        use prost::Message;
        let condition = condition("NetworkReady", false, "NetworkPluginNotReady");
        let mut bytes = cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![condition.clone()],
            }),
        }
        .encode_to_vec();
        bytes.extend_from_slice(&[0x12, 0x04, 0x0a, 0x00, 0x12, 0x00]);
        let decoded = cri::StatusResponse::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(decoded.status.expect("status").conditions, vec![condition]);
    }
}

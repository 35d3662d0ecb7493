//! In-process agents on 127.0.0.1 for the loopback test binaries (each
//! uses a subset of these helpers).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use starling::settings::{OverlayConfig, SinkSpec};
use starling_agent::AgentConfig;
use starling_agent::daemon::{self, RunningAgent};
use starling_aggregator::AggregationConfig;
use starling_alert::{AlertConfig, DecideTiming, Severity, SinkAuth, SinkKind};
use starling_checks::{PluginSpec, Schedule, Status};
use starling_gossip::{GossipConfig, JoinTargets, MemberState, Role};
use starling_history::StoreConfig;
use starling_probe::{ProbeConfig, WallClock, run};
use starling_replicate::ReplicationConfig;
use starling_seal::Keyring;
use tokio::sync::oneshot;

/// Every wait in these tests is bounded by this.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn settings(
    name: &str,
    keyring: &Keyring,
    gossip_bind: SocketAddr,
    join: Vec<String>,
    data: &tempfile::TempDir,
) -> AgentConfig {
    AgentConfig {
        node_name: name.to_owned(),
        gossip_bind,
        advertise_ip: "127.0.0.1".parse().expect("literal"),
        api_bind: "127.0.0.1:0".parse().expect("literal"),
        role: Role::Worker,
        join: JoinTargets { targets: join },
        keyring: keyring.clone(),
        data_dir: data.path().to_owned(),
        gossip: GossipConfig::default(),
        history: StoreConfig::default(),
        // Fast anti-entropy, so tests of pull do not wait seconds per round.
        replication: ReplicationConfig {
            pull_interval: Duration::from_millis(300),
            ..ReplicationConfig::default()
        },
        // Fast streams and health pulls, for the same reason.
        aggregation: AggregationConfig {
            stream_interval: Duration::from_millis(200),
            stream_idle_interval: Duration::from_secs(2),
            health_interval: Duration::from_millis(300),
            ..AggregationConfig::default()
        },
        etcd: None,
        kube: None,
        healthz: Vec::new(),
        node: Default::default(),
        overlay: Default::default(),
        alert: Default::default(),
        max_concurrent_checks: 4,
    }
}

pub const ANY_PORT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

pub async fn agent(
    name: &str,
    keyring: &Keyring,
    join: Option<SocketAddr>,
) -> (RunningAgent, tempfile::TempDir) {
    agent_with(name, keyring, join, |_| {}).await
}

/// `agent`, with `tune` applied to its settings first.
pub async fn agent_with(
    name: &str,
    keyring: &Keyring,
    join: Option<SocketAddr>,
    tune: impl FnOnce(&mut AgentConfig),
) -> (RunningAgent, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("temp dir");
    let join = join.into_iter().map(|a| a.to_string()).collect();
    let mut settings = settings(name, keyring, ANY_PORT, join, &data);
    tune(&mut settings);
    let agent = daemon::start(settings)
        .await
        .expect("agent starts on loopback");
    (agent, data)
}

pub fn keyring() -> Keyring {
    Keyring::parse(&Keyring::generate_key()).expect("generated keys parse")
}

/// Wait until `agent` sees exactly `alive` other members alive.
pub async fn sees_alive(agent: &RunningAgent, alive: usize) {
    let mut view = agent.gossip.view.clone();
    tokio::time::timeout(
        PATIENCE,
        view.wait_for(|v| {
            v.members
                .iter()
                .filter(|m| m.state == MemberState::Alive)
                .count()
                == alive
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("{} did not see {alive} alive members", agent.identity.name))
    .expect("gossip loop running");
}

/// What Prometheus 2.42 sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
     application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// `/metrics` as Prometheus gets it: OpenMetrics, for `parse_exposition`.
pub async fn openmetrics(api: std::net::SocketAddr) -> String {
    starling_checks::http_client()
        .build()
        .expect("a plain HTTP client")
        .get(format!("http://{api}/metrics"))
        .header("accept", PROMETHEUS_ACCEPT)
        .send()
        .await
        .expect("metrics reachable")
        .text()
        .await
        .expect("metrics text")
}

pub async fn metric(agent: &RunningAgent, line_prefix: &str) -> f64 {
    metric_at(agent.api_addr, line_prefix).await
}

/// The value of the first `/metrics` line at `api` that starts with
/// `line_prefix`; 0 when there is none.
pub async fn metric_at(api: SocketAddr, line_prefix: &str) -> f64 {
    let text = get(format!("http://{api}/metrics"))
        .await
        .expect("metrics reachable")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find(|line| line.starts_with(line_prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// GET with a plain-HTTP client (see `starling_checks::http_client`).
pub async fn get(url: String) -> reqwest::Result<reqwest::Response> {
    starling_checks::http_client()
        .build()
        .expect("a plain HTTP client")
        .get(url)
        .send()
        .await
}

/// Fast enough for a test, with the judgement's proportions kept: ten
/// pings per window at least, several reports per window.
pub fn fast_overlay() -> OverlayConfig {
    OverlayConfig {
        interval: Duration::from_millis(100),
        window: Duration::from_secs(2),
        report_interval: Duration::from_millis(200),
        ..OverlayConfig::default()
    }
}

/// A probe task for `agent`; dropping the sender stops it.
pub async fn probe(
    agent: &RunningAgent,
    key: &Keyring,
    clock: impl WallClock,
) -> oneshot::Sender<()> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind on loopback");
    let config = ProbeConfig {
        node: agent.identity.name.clone(),
        advertise: socket.local_addr().expect("bound"),
        agent_url: format!("http://{}", agent.api_addr),
        keyring: Arc::new(key.clone()),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(run(socket, config, Arc::new(clock), async {
        let _ = stopped.await;
    }));
    stop
}

/// A `starling agent` process on loopback that a test kills with SIGKILL
/// (no leave, as a node dies) and may start again with the same name and
/// data, as a node comes back.
pub struct AgentProcess {
    child: Option<std::process::Child>,
    args: Vec<std::ffi::OsString>,
    pub api: SocketAddr,
}

impl AgentProcess {
    /// Named `name`, sealing with `key` (a key file's text), joining
    /// `join`, its data and key file in `dir`.
    pub fn start(name: &str, key: &str, join: SocketAddr, dir: &std::path::Path) -> AgentProcess {
        Self::start_with(name, key, join, dir, &[])
    }

    /// [`AgentProcess::start`] with `extra` flags.
    pub fn start_with(
        name: &str,
        key: &str,
        join: SocketAddr,
        dir: &std::path::Path,
        extra: &[&str],
    ) -> AgentProcess {
        let key_file = dir.join(format!("{name}.key"));
        std::fs::write(&key_file, key).expect("writes the key");
        let port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
        };
        let (gossip, api) = (port(), port());
        let args = [
            "agent".into(),
            "--node-name".into(),
            name.into(),
            "--gossip-bind".into(),
            gossip.to_string().into(),
            "--api-bind".into(),
            api.to_string().into(),
            "--join".into(),
            join.to_string().into(),
            "--gossip-key-file".into(),
            key_file.into_os_string(),
            "--data-dir".into(),
            dir.join(name).into_os_string(),
            "--disk-path".into(),
            dir.as_os_str().to_owned(),
        ]
        .into_iter()
        .chain(extra.iter().map(Into::into))
        .collect();
        let mut process = AgentProcess {
            child: None,
            args,
            api,
        };
        process.restart();
        process
    }

    /// Starts it (again), on the same addresses and data.
    pub fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new(super::lab::STARLING)
            .args(&self.args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the agent starts");
        self.child = Some(child);
    }

    /// SIGTERM (a graceful leave), without waiting.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
    }

    /// Waits up to `patience` for the process to end by itself; whether it did.
    pub fn ended_within(&mut self, patience: Duration) -> bool {
        let deadline = std::time::Instant::now() + patience;
        while std::time::Instant::now() < deadline {
            match self.child.as_mut().map(std::process::Child::try_wait) {
                None | Some(Ok(Some(_))) => {
                    self.child = None;
                    return true;
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        false
    }

    /// SIGKILL, and reaped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plugin check, `canary`, critical (saying "canary broken") while
/// `flag` exists, run every 200 ms.
/// Alerts to one sink at `url`, every severity, evaluated every 200 ms,
/// each fallback waiting one second for a better-ranked node's mark.
pub fn fast_alerting(name: &str, kind: SinkKind, url: String) -> AlertConfig {
    AlertConfig {
        sinks: vec![SinkSpec {
            name: name.to_owned(),
            kind,
            url,
            severities: vec![Severity::Warning, Severity::Critical],
            auth: SinkAuth::default(),
            hmac_key: None,
            ca_file: None,
        }],
        timing: DecideTiming {
            grace: Duration::from_secs(1),
            ..DecideTiming::default()
        },
        evaluate_every: Duration::from_millis(200),
        ..AlertConfig::default()
    }
}

pub fn canary(settings: &mut AgentConfig, flag: &Path) {
    settings.node.plugins = vec![PluginSpec {
        name: "canary".to_owned(),
        path: PathBuf::from("/bin/sh"),
        args: vec![
            "-c".to_owned(),
            format!(
                "if test -e {}; then echo canary broken; exit 1; fi; echo fine",
                flag.display()
            ),
        ],
        timeout: Duration::from_secs(5),
        problem: Status::Critical,
    }];
    settings.node.schedule = Schedule {
        interval: Duration::from_millis(200),
        timeout: Duration::from_secs(6),
        failures_before_critical: 1,
    };
}

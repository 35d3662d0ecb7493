//! `starling probe`: the loop around [`Prober`] — one UDP socket on the pod
//! network, a ping timer, and a reporter task that talks to the local agent.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::prober::Prober;
use super::window::WindowTiming;
use super::wire::{Echo, MAX_ECHO_BYTES, ProbeAssignment, ProbeReport};
use starling_checks::{PostError, post_sealed};
use starling_seal::open_json;
use starling_seal::seal_json;
use starling_seal::{Keyring, OVERHEAD, Purpose, open, seal};

/// Until the agent answers, the probe uses the agent's own defaults.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(120);
pub const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// An echo not back within this is lost. Pod-to-pod round trips are
/// milliseconds; a second is far beyond queueing on a healthy path.
const ECHO_TIMEOUT: Duration = Duration::from_secs(1);
/// Round trips longer than this are not used for clock offsets: the error
/// of an offset is up to half the round trip.
pub const MAX_OFFSET_RTT: Duration = Duration::from_millis(100);
/// The agent is local; a slow answer means it is stuck.
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The wall clock the probe stamps echoes with. Injected so a test can
/// run one probe with a clock that is off without touching the machine's.
pub trait WallClock: Send + Sync + 'static {
    fn unix_ms(&self) -> u64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn unix_ms(&self) -> u64 {
        starling_model::unix_ms_now()
    }
}

/// The system clock shifted by a fixed offset (milliseconds; positive is
/// ahead).
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock(pub i64);

impl WallClock for OffsetClock {
    fn unix_ms(&self) -> u64 {
        starling_model::unix_ms_now().saturating_add_signed(self.0)
    }
}

#[derive(Clone)]
pub struct ProbeConfig {
    /// This node's name: the agent refuses reports for another node.
    pub node: String,
    /// The address peers ping: the pod IP and the bound port.
    pub advertise: SocketAddr,
    /// The local agent's HTTP base, e.g. `http://10.0.0.5:7947`.
    pub agent_url: String,
    pub keyring: Arc<Keyring>,
}

impl std::fmt::Debug for ProbeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeConfig")
            .field("node", &self.node)
            .field("advertise", &self.advertise)
            .field("agent_url", &self.agent_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeSetupError {
    #[error(
        "no gossip key: pass --gossip-key-file (the agents' key), or --insecure-gossip if \
         the agents run without one"
    )]
    NoKey,
    #[error("--gossip-key-file: {0}")]
    Key(#[from] starling_seal::KeyringError),
    #[error(
        "--pod-ip (POD_IP) is required when --listen {0} is a wildcard address: peers need an address to ping"
    )]
    NoPodIp(SocketAddr),
    #[error("--agent {0:?}: expected the local agent's http:// URL, e.g. http://$(HOST_IP):7947")]
    BadAgentUrl(String),
    #[error("--node-name (NODE_NAME) must not be empty")]
    EmptyNodeName,
    #[error("--listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// `starling probe`'s flags, checked by the binary: everything but the
/// bound port.
#[derive(Debug)]
pub struct ProbeSettings {
    pub node: String,
    /// Where to bind the echo socket.
    pub listen: SocketAddr,
    /// The address peers ping, without the port (known once bound).
    pub ip: IpAddr,
    pub agent_url: String,
    pub keyring: Keyring,
}

/// `starling probe`: bind, and probe until `shutdown`.
pub async fn run_command(
    flags: ProbeSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProbeSetupError> {
    let bind_error = |source| ProbeSetupError::Bind {
        addr: flags.listen,
        source,
    };
    let socket = UdpSocket::bind(flags.listen).await.map_err(bind_error)?;
    let port = socket.local_addr().map_err(bind_error)?.port();
    let config = ProbeConfig {
        node: flags.node,
        advertise: SocketAddr::new(flags.ip, port),
        agent_url: flags.agent_url,
        keyring: Arc::new(flags.keyring),
    };
    run(socket, config, Arc::new(SystemClock), shutdown).await;
    Ok(())
}

/// The agent holds `window` to at least 10 intervals, so a quarter of it
/// always leaves an echo more than two intervals to come back.
fn timing(window: Duration) -> WindowTiming {
    WindowTiming {
        window,
        timeout: ECHO_TIMEOUT.min(window / 4),
        max_offset_rtt: MAX_OFFSET_RTT,
    }
}

/// Probe until `shutdown` completes.
pub async fn run(
    socket: UdpSocket,
    config: ProbeConfig,
    clock: Arc<dyn WallClock>,
    shutdown: impl Future<Output = ()>,
) {
    let start = Instant::now();
    let mut prober = Prober::new(
        config.node.clone(),
        config.advertise,
        timing(DEFAULT_WINDOW),
    );
    let (reports, report_inbox) = mpsc::channel::<ProbeReport>(1);
    let (assignments, mut assignment) = watch::channel::<Option<ProbeAssignment>>(None);
    let reporter = tokio::spawn(report_loop(config.clone(), report_inbox, assignments));
    let mut pings = ticker(DEFAULT_INTERVAL);
    let mut report_timer = ticker(DEFAULT_REPORT_INTERVAL);
    let mut buffer = vec![0u8; ECHO_BUFFER];
    let mut sealed = Vec::with_capacity(MAX_ECHO_BYTES + OVERHEAD);
    let (mut sent_bytes, mut received_bytes) = (0u64, 0u64);
    let mut refused = 0u64;
    tokio::pin!(shutdown);
    tracing::info!(node = %config.node, advertise = %config.advertise, agent = %config.agent_url, "overlay probe started");
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = pings.tick() => {
                let now = start.elapsed();
                for (to, echo) in prober.tick(now, clock.unix_ms()) {
                    seal(&config.keyring, Purpose::Echo, &echo.encode(), &mut sealed);
                    match socket.send_to(&sealed, to).await {
                        Ok(n) => sent_bytes += n as u64,
                        // Unreachable is what the window measures.
                        Err(error) => tracing::debug!(%to, %error, "ping not sent"),
                    }
                }
            }
            _ = report_timer.tick() => {
                let mut report = prober.report(start.elapsed());
                report.sent_bytes = sent_bytes;
                report.received_bytes = received_bytes;
                // A report still in flight is newer than nothing; skip this one.
                let _ = reports.try_send(report);
            }
            Ok(()) = assignment.changed() => {
                let Some(next) = assignment.borrow_and_update().clone() else { continue };
                let interval = Duration::from_millis(next.interval_ms.max(10));
                let window = Duration::from_millis(next.window_ms.max(1000));
                prober.set_targets(&next.targets);
                if prober.timing().window != window || pings.period() != interval {
                    prober.set_timing(timing(window));
                    pings = ticker(interval);
                }
                let report_every = Duration::from_millis(next.report_interval_ms.max(100));
                if report_timer.period() != report_every {
                    report_timer = ticker(report_every);
                }
            }
            received = socket.recv_from(&mut buffer) => {
                let (n, from) = match received {
                    Ok(got) => got,
                    Err(error) => {
                        tracing::debug!(%error, "echo receive failed");
                        continue;
                    }
                };
                received_bytes += n as u64;
                let datagram = &mut buffer[..n];
                let reply = match receive_echo(&config.keyring, &mut prober, datagram, start.elapsed(), clock.unix_ms()) {
                    Ok(reply) => reply,
                    Err(reason) => {
                        refused += 1;
                        // Power-of-two counts: visible, but a flood cannot flood the log.
                        if refused.is_power_of_two() {
                            tracing::warn!(%from, %reason, refused, "echo datagram refused");
                        }
                        continue;
                    }
                };
                if let Some(reply) = reply {
                    seal(&config.keyring, Purpose::Echo, &reply.encode(), &mut sealed);
                    if let Ok(n) = socket.send_to(&sealed, from).await {
                        sent_bytes += n as u64;
                    }
                }
            }
        }
    }
    reporter.abort();
    tracing::info!("overlay probe stopped");
}

/// An echo datagram as the loop takes it from the socket: opened,
/// decoded and handed to the prober. Returns the answer to send back, if
/// any, or why the datagram was refused.
pub(crate) fn receive_echo(
    keyring: &Keyring,
    prober: &mut Prober,
    datagram: &mut [u8],
    now: Duration,
    wall_unix_ms: u64,
) -> Result<Option<Echo>, String> {
    let plain = open(keyring, Purpose::Echo, datagram).map_err(|e| e.to_string())?;
    let echo = Echo::decode(plain).map_err(|e| e.to_string())?;
    Ok(prober.receive(echo, now, wall_unix_ms))
}

/// The receive buffer: a longer datagram is cut to it by the socket.
pub(crate) const ECHO_BUFFER: usize = MAX_ECHO_BYTES + OVERHEAD;

fn ticker(period: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(period);
    // A stalled loop must not burst pings: a burst looks like loss.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error("agent unreachable: {0}")]
    Unreachable(String),
    #[error("agent refused the report ({status}): {body}")]
    Refused {
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("agent's answer unreadable: {0}")]
    BadAnswer(String),
}

/// Sends each report to the agent and publishes its assignment. Separate
/// from the echo loop, so a slow agent never delays an echo answer (which
/// would show as RTT on every peer's path to us).
async fn report_loop(
    config: ProbeConfig,
    mut reports: mpsc::Receiver<ProbeReport>,
    assignments: watch::Sender<Option<ProbeAssignment>>,
) {
    let client = starling_checks::agent_client()
        .timeout(REPORT_TIMEOUT)
        .build()
        .expect("a plain-HTTP client with a preconfigured TLS backend always builds");
    let url = format!(
        "{}/v1/overlay/report",
        config.agent_url.trim_end_matches('/')
    );
    let mut failing = false;
    while let Some(report) = reports.recv().await {
        match send_report(&client, &url, &config.keyring, &report).await {
            Ok(assignment) => {
                if failing {
                    tracing::info!(agent = %config.agent_url, "the agent takes reports again");
                    failing = false;
                }
                assignments.send_replace(Some(assignment));
            }
            Err(error) => {
                // Once per outage at warn; the probe keeps measuring meanwhile.
                if !failing {
                    tracing::warn!(agent = %config.agent_url, %error, "report not delivered");
                    failing = true;
                } else {
                    tracing::debug!(%error, "report not delivered");
                }
            }
        }
    }
}

async fn send_report(
    client: &reqwest::Client,
    url: &str,
    keyring: &Keyring,
    report: &ProbeReport,
) -> Result<ProbeAssignment, ReportError> {
    let body = seal_json(keyring, Purpose::ProbeReport, report);
    let sealed = post_sealed(client, url.to_owned(), body, REPORT_TIMEOUT)
        .await
        .map_err(|error| match error {
            PostError::Unreachable(cause) => ReportError::Unreachable(cause),
            PostError::Refused { status, body } => ReportError::Refused { status, body },
        })?;
    read_assignment(keyring, sealed).map_err(ReportError::BadAnswer)
}

/// The agent's answer to a report, opened.
pub(crate) fn read_assignment(
    keyring: &Keyring,
    sealed: Vec<u8>,
) -> Result<ProbeAssignment, String> {
    open_json(keyring, Purpose::ProbeAssignment, sealed).map_err(|e| e.to_string())
}

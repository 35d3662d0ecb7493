//! A real `etcd` process on loopback: started, stopped, restarted and killed on drop.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{EtcdError, Pki, stale};

/// The program run; Debian's `etcd-server` installs it as `/usr/bin/etcd`.
pub(super) const PROGRAM: &str = "etcd";
/// How long `start` and `restart` wait for `/health`; a single member elects itself and
/// answers in about a second, so this only runs out when something is wrong.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `stop` lets etcd shut down after SIGTERM before it SIGKILLs it.
const STOP_GRACE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);
/// How often `start` picks new ports when another process took one between our pick and
/// etcd's bind.
const START_ATTEMPTS: usize = 3;
/// Lines of the log that a [`EtcdError::NotReady`] carries.
const LOG_TAIL_LINES: usize = 40;

/// Paths etcd needs for client TLS, copied from the [`Pki`] for restarts.
#[derive(Debug, Clone)]
struct Tls {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

/// An etcd member on 127.0.0.1 (a single-member cluster, or one of
/// [`Etcd::start_cluster`]), in its own temporary directory (data dir and log), on ports
/// nobody else uses. Killed and reaped when dropped; the directory goes with
/// it.
#[derive(Debug)]
pub struct Etcd {
    /// `None` between [`Etcd::stop`] and [`Etcd::restart`].
    child: Option<Child>,
    name: String,
    tls: Option<Tls>,
    client_port: u16,
    peer_port: u16,
    metrics_port: u16,
    /// Flags on top of the fixture's own (`--quota-backend-bytes=…`).
    extra: Vec<String>,
    /// `--initial-cluster` of a member of [`Etcd::start_cluster`]; `None` for a
    /// single-member cluster of its own.
    initial_cluster: Option<String>,
    /// Its write-ahead log's own directory (`--wal-dir`), e.g. on a
    /// [`crate::SlowDisk`] while the database stays on a fast one.
    wal: Option<tempfile::TempDir>,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd and waits (up to 15 s) until its metrics URL answers `/health` with
    /// `{"health":"true"}`.
    ///
    /// With `tls`, clients must use HTTPS on [`Etcd::client_url`] and present a certificate
    /// signed by [`Pki::ca_cert`] (`--client-cert-auth`), as on a kubeadm control plane; keep
    /// the `Pki` alive as long as the `Etcd`. Peer and metrics URLs are plain HTTP either
    /// way, the metrics one like kubeadm's `http://127.0.0.1:2381`.
    ///
    /// Errors: [`EtcdError::Missing`] without an `etcd` binary (see [`crate::etcd_or_skip`]),
    /// [`EtcdError::NotReady`] with etcd's log tail if it does not become healthy.
    pub fn start(tls: Option<&Pki>) -> Result<Etcd, EtcdError> {
        Etcd::start_with(tls, &[])
    }

    /// [`Etcd::start`] with `extra` flags for etcd, e.g. a tiny
    /// `--quota-backend-bytes` to raise a real NOSPACE alarm.
    pub fn start_with(tls: Option<&Pki>, extra: &[&str]) -> Result<Etcd, EtcdError> {
        Etcd::start_inside(tls, extra, &std::env::temp_dir())
    }

    /// [`Etcd::start_with`], its directory (data and log) inside `parent`,
    /// e.g. on a [`crate::SlowDisk`].
    pub fn start_inside(
        tls: Option<&Pki>,
        extra: &[&str],
        parent: &Path,
    ) -> Result<Etcd, EtcdError> {
        stale::reap();
        let tls = tls.map(|pki| Tls {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            ca: pki.ca_cert.clone(),
        });
        let extra: Vec<String> = extra.iter().map(|flag| (*flag).to_owned()).collect();
        retry_taken_ports(|| {
            let mut etcd = Etcd::unstarted(tls.clone(), extra.clone(), parent, None)?;
            let started = etcd.spawn().and_then(|()| etcd.wait_healthy());
            Ok((vec![etcd], started))
        })
        .map(|mut started| started.remove(0))
    }

    /// Starts `members` etcds (plain HTTP) as one cluster and waits until each
    /// is healthy. The first member starts last, once the others have
    /// elected a leader among themselves, so it starts as a follower; with
    /// `first_wal`, its write-ahead log lives in a directory of its own
    /// inside that path. A [`crate::SlowDisk`] there makes that follower fall
    /// behind the leader under load, while its database and the other
    /// members stay fast.
    pub fn start_cluster(members: usize, first_wal: Option<&Path>) -> Result<Vec<Etcd>, EtcdError> {
        assert!(members >= 3, "a majority elects without the first member");
        stale::reap();
        let temp = std::env::temp_dir();
        retry_taken_ports(|| {
            let mut cluster = (0..members)
                .map(|i| Etcd::unstarted(None, Vec::new(), &temp, first_wal.filter(|_| i == 0)))
                .collect::<Result<Vec<_>, _>>()?;
            let initial = cluster
                .iter()
                .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
                .collect::<Vec<_>>()
                .join(",");
            for member in &mut cluster {
                member.initial_cluster = Some(initial.clone());
            }
            let (first, others) = cluster.split_first_mut().expect("three members");
            // The others together are a majority: they elect and become
            // healthy without the first one.
            let mut started = others.iter_mut().try_for_each(Etcd::spawn);
            for member in others.iter_mut() {
                started = started.and_then(|()| member.wait_healthy());
            }
            started = started
                .and_then(|()| first.spawn())
                .and_then(|()| first.wait_healthy());
            Ok((cluster, started))
        })
    }

    /// A member with fresh names, directories and ports, not yet running.
    fn unstarted(
        tls: Option<Tls>,
        extra: Vec<String>,
        parent: &Path,
        wal_parent: Option<&Path>,
    ) -> Result<Etcd, EtcdError> {
        let (name, dir_prefix) = stale::next_names();
        let tempdir = |parent: &Path| {
            tempfile::Builder::new()
                .prefix(&dir_prefix)
                .tempdir_in(parent)
                .map_err(EtcdError::io("creating a temporary directory for etcd"))
        };
        let [client_port, peer_port, metrics_port] = free_ports()?;
        Ok(Etcd {
            child: None,
            name,
            tls,
            client_port,
            peer_port,
            metrics_port,
            extra,
            initial_cluster: None,
            wal: wal_parent.map(tempdir).transpose()?,
            dir: tempdir(parent)?,
        })
    }

    /// Where clients connect: `http://127.0.0.1:P`, or `https://127.0.0.1:P` with TLS.
    /// Unchanged by [`Etcd::restart`].
    pub fn client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The plain-HTTP metrics and health URL (`http://127.0.0.1:M`), serving `/health` and
    /// `/metrics` without TLS even when clients need it, like kubeadm's
    /// `--listen-metrics-urls=http://127.0.0.1:2381`.
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.metrics_port)
    }

    /// Whether `/health` on the metrics URL answers `{"health":"true"}` right now (within
    /// 2 s). False while stopped, and while etcd has no leader or an active alarm.
    pub fn is_healthy(&self) -> bool {
        probe_health(self.metrics_port, Duration::from_secs(2))
    }

    /// Everything etcd wrote to stdout and stderr, across restarts, with our own
    /// `# starling-testkit` lines for each start and exit (lossy UTF-8).
    pub fn log(&self) -> String {
        let mut bytes = Vec::new();
        if let Ok(mut f) = File::open(self.log_path()) {
            let _ = f.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The temporary directory holding the data dir (`data/`) and the log (`etcd.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops etcd as a kubelet would: SIGTERM, then SIGKILL if it has not exited within
    /// 5 s. Keeps the data dir and ports for [`Etcd::restart`]. A no-op when stopped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // Until we reap it the pid cannot be reused, so this signals etcd and nothing else.
            let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in pid_t"));
            let _ = kill(pid, Signal::SIGTERM);
            if !wait_exit(&mut child, STOP_GRACE) {
                let _ = child.kill();
            }
        }
        match child.wait() {
            Ok(status) => self.note(&format!("etcd stopped: {status}")),
            Err(e) => self.note(&format!("etcd stopped, but reaping it failed: {e}")),
        }
    }

    /// Starts etcd again on the same ports and data dir (stopping it first if it runs), and
    /// waits until it is healthy. If it does not become healthy, the process is left
    /// running for inspection; dropping the `Etcd` still kills it.
    ///
    /// While stopped, its ports are free for anyone; should another process have taken one
    /// (unlikely, but possible with many parallel tests), the [`EtcdError::NotReady`] log
    /// tail says `address already in use`.
    pub fn restart(&mut self) -> Result<(), EtcdError> {
        self.stop();
        self.spawn()?;
        self.wait_healthy()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn args(&self) -> Vec<String> {
        let client_scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{client_scheme}://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut args = vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", self.dir.path().join("data").display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!(
                "--initial-cluster={}",
                self.initial_cluster
                    .clone()
                    .unwrap_or_else(|| format!("{}={peer}", self.name))
            ),
            format!("--listen-metrics-urls={}", self.metrics_url()),
        ];
        if let Some(wal) = &self.wal {
            args.push(format!("--wal-dir={}", wal.path().join("wal").display()));
        }
        if let Some(tls) = &self.tls {
            args.extend([
                format!("--cert-file={}", tls.cert.display()),
                format!("--key-file={}", tls.key.display()),
                format!("--trusted-ca-file={}", tls.ca.display()),
                "--client-cert-auth=true".to_owned(),
            ]);
        }
        args.extend(self.extra.iter().cloned());
        args
    }

    /// Appends `# starling-testkit: <line>` to the log, so it tells starts and exits apart.
    fn note(&self, line: &str) {
        if let Ok(mut log) = OpenOptions::new().append(true).open(self.log_path()) {
            let _ = writeln!(log, "# starling-testkit: {line}");
        }
    }

    fn spawn(&mut self) -> Result<(), EtcdError> {
        let args = self.args();
        let cmd = format!("{PROGRAM} {}", args.join(" "));
        let log_action = || format!("opening etcd's log {}", self.log_path().display());
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(EtcdError::io(log_action()))?;
        writeln!(log, "# starling-testkit: {cmd}").map_err(EtcdError::io(log_action()))?;
        let stdout = log.try_clone().map_err(EtcdError::io(log_action()))?;
        let child = Command::new(PROGRAM)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => EtcdError::Missing,
                _ => EtcdError::Spawn { cmd, source },
            })?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_healthy(&mut self) -> Result<(), EtcdError> {
        let started = Instant::now();
        let deadline = started + READY_TIMEOUT;
        loop {
            let child = self
                .child
                .as_mut()
                .expect("wait_healthy runs right after a spawn");
            // An etcd that exited (bad flag, port taken) will never answer: say so at once.
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                self.note(&format!("etcd exited: {status}"));
                return Err(self.not_ready(started));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.not_ready(started));
            }
            if probe_health(
                self.metrics_port,
                (deadline - now).min(Duration::from_secs(2)),
            ) {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
    }

    fn not_ready(&self, started: Instant) -> EtcdError {
        EtcdError::NotReady {
            waited: started.elapsed(),
            log_tail: log_tail(&self.log()),
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // No graceful stop: the data dir is about to be deleted anyway.
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            // The directory (and log) is removed with us; ~128 MB of WAL files are not worth
            // keeping, so hand the failed test the part of the log that usually explains it.
            eprintln!(
                "starling etcd fixture {}: end of its log:\n{}",
                self.name,
                log_tail(&self.log())
            );
        }
    }
}

/// The last [`LOG_TAIL_LINES`] lines of `log`, without all but the last of etcd's warnings
/// about our own `/health` polls: until it has a leader etcd logs one per poll, and 15 s of
/// them would push the line that explains a failure out of the tail.
fn log_tail(log: &str) -> String {
    const PROBE_WARNING: &str = "etcdhttp: /health error";
    let all: Vec<&str> = log.lines().collect();
    let last_probe = all.iter().rposition(|l| l.contains(PROBE_WARNING));
    let lines: Vec<&str> = all
        .iter()
        .enumerate()
        .filter(|&(i, l)| !l.contains(PROBE_WARNING) || Some(i) == last_probe)
        .map(|(_, l)| *l)
        .collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// Runs `start` again, on fresh ports and directories, when an etcd it
/// started failed because another process took one of its ports: ports are
/// picked by binding and releasing them, so one can go between our pick and
/// etcd's bind. `start` hands back what it made and how starting went.
fn retry_taken_ports(
    mut start: impl FnMut() -> Result<(Vec<Etcd>, Result<(), EtcdError>), EtcdError>,
) -> Result<Vec<Etcd>, EtcdError> {
    let mut attempt = 1;
    loop {
        match start()? {
            (started, Ok(())) => return Ok(started),
            (failed, Err(EtcdError::NotReady { .. }))
                if attempt < START_ATTEMPTS
                    && failed
                        .iter()
                        .any(|etcd| etcd.log().contains("address already in use")) =>
            {
                attempt += 1;
            }
            (_, Err(e)) => return Err(e),
        }
    }
}

/// Three distinct loopback ports that were free a moment ago.
///
/// All three are bound at once so the kernel cannot hand out the same port twice, then
/// released for etcd to bind ([`Etcd::start`] retries if someone takes one meanwhile).
fn free_ports() -> Result<[u16; 3], EtcdError> {
    let bind = || {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| Ok((l.local_addr()?.port(), l)))
            .map_err(EtcdError::io("picking a free loopback port for etcd"))
    };
    let (a, _la) = bind()?;
    let (b, _lb) = bind()?;
    let (c, _lc) = bind()?;
    Ok([a, b, c])
}

/// Waits up to `t` for `child` to exit; whether it did.
fn wait_exit(child: &mut Child, t: Duration) -> bool {
    crate::wait_until(t, Duration::from_millis(20), || {
        matches!(child.try_wait(), Ok(Some(_)))
    })
}

/// Whether `GET /health` on `127.0.0.1:port` answers 200 with `"health":"true"` within
/// about `timeout`. HTTP/1.0 over a bare socket, so that testkit needs no HTTP client:
/// etcd then closes the connection after the response, which marks its end.
fn probe_health(port: u16, timeout: Duration) -> bool {
    let timeout = timeout.max(Duration::from_millis(10));
    let response = (|| -> io::Result<String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut response = String::new();
        stream.take(64 * 1024).read_to_string(&mut response)?;
        Ok(response)
    })();
    response.is_ok_and(|r| {
        r.lines()
            .next()
            .is_some_and(|status| status.contains(" 200 "))
            && r.contains(r#""health":"true""#)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_only_the_last_health_probe_warning() {
        let probe = "W | etcdserver/api/etcdhttp: /health error; no leader (status code 503)";
        let mut log = String::from("# starling-testkit: etcd --name=x\nI | cause\n");
        for _ in 0..100 {
            log.push_str(probe);
            log.push('\n');
        }
        log.push_str("# starling-testkit: etcd exited: exit status: 1\n");
        assert_eq!(
            log_tail(&log),
            format!(
                "# starling-testkit: etcd --name=x\nI | cause\n{probe}\n\
                 # starling-testkit: etcd exited: exit status: 1"
            )
        );
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert!(log_tail(&long).starts_with("line 60\nline 61"));
        assert!(log_tail(&long).ends_with("line 99"));
    }
}

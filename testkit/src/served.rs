//! A server of the monitoring ecosystem started for a test (Prometheus,
//! Alertmanager): its configuration and data in a temporary directory, on
//! a loopback port of its own, ready once `/-/ready` answers, killed on
//! drop with the end of its log printed when the test failed.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Set to 1 (as `scripts/test` does as root, after installing the
/// packages) to fail rather than skip when a tool is missing.
const REQUIRE_VAR: &str = "STARLING_REQUIRE_PROMETHEUS";
/// They load their configuration and open an empty database in well
/// under a second; this runs out only when something is wrong.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const LOG_TAIL_LINES: usize = 30;

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServedError {
    #[error("{0} is not installed")]
    Missing(&'static str),
    #[error("{0}")]
    Setup(String),
    #[error("{program} was not ready within {READY_TIMEOUT:?}; its log ends:\n{log_tail}")]
    NotReady {
        program: &'static str,
        log_tail: String,
    },
}

/// The started server.
#[derive(Debug)]
pub(crate) struct Served {
    program: &'static str,
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Served {
    /// Writes `config` as `config_name` in a fresh directory and starts
    /// `program` with `args(directory, config path, "127.0.0.1:PORT")`.
    pub(crate) fn start(
        program: &'static str,
        config_name: &str,
        config: &str,
        args: impl FnOnce(&Path, &Path, &str) -> Vec<String>,
    ) -> Result<Served, ServedError> {
        let setup = |what: &str| {
            let what = format!("{program}: {what}");
            move |e: std::io::Error| ServedError::Setup(format!("{what}: {e}"))
        };
        let dir = tempfile::Builder::new()
            .prefix(&format!("starling-{program}-"))
            .tempdir()
            .map_err(setup("a temporary directory"))?;
        let config_path: PathBuf = dir.path().join(config_name);
        std::fs::write(&config_path, config).map_err(setup("writing its configuration"))?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map_err(setup("picking a port"))?
            .port();
        let log = std::fs::File::create(dir.path().join("log")).map_err(setup("its log"))?;
        let child = Command::new(program)
            .args(args(dir.path(), &config_path, &format!("127.0.0.1:{port}")))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(setup("its log"))?)
            .stderr(log)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ServedError::Missing(program),
                _ => ServedError::Setup(format!("starting {program}: {e}")),
            })?;
        let served = Served {
            program,
            child,
            port,
            dir,
        };
        if !crate::wait_until(READY_TIMEOUT, Duration::from_millis(100), || ready(port)) {
            return Err(ServedError::NotReady {
                program,
                log_tail: served.log_tail(),
            });
        }
        Ok(served)
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "{} fixture: end of its log:\n{}",
                self.program,
                self.log_tail()
            );
        }
    }
}

/// `Some(server)`, or `None` after printing why when its program is not
/// installed (a failure instead with `STARLING_REQUIRE_PROMETHEUS=1`);
/// panics on any other failure to start.
pub(crate) fn or_skip<T>(started: Result<T, ServedError>, what: &str) -> Option<T> {
    match started {
        Ok(server) => Some(server),
        Err(ServedError::Missing(program)) => {
            skip_or_fail_missing(&format!("{program} ({what})"));
            None
        }
        Err(error) => panic!("{error}"),
    }
}

/// Prints `SKIPPED: … is not installed`, or panics when the tools are
/// required.
pub(crate) fn skip_or_fail_missing(what: &str) {
    let reason = format!("{what} is not installed");
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
        panic!("{REQUIRE_VAR}=1 but {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}

/// Whether `GET /-/ready` answers, over a bare socket so testkit needs no
/// HTTP client. Only the status line is read: a server need not close the
/// connection after it (exporter-toolkit's basic auth keeps it open).
fn ready(port: u16) -> bool {
    let status_line = (|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        stream.write_all(b"GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut answer = Vec::new();
        let mut chunk = [0; 256];
        while !answer.contains(&b'\n') && answer.len() < 4096 {
            match stream.read(&mut chunk)? {
                0 => break,
                n => answer.extend_from_slice(&chunk[..n]),
            }
        }
        Ok(String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned())
    })();
    // It serves, behind what its web config asks for: 401 for basic auth,
    // 400 ("an HTTP request to an HTTPS server") for TLS.
    status_line.is_ok_and(|status| {
        [" 200 ", " 401 ", " 400 "]
            .iter()
            .any(|code| status.contains(code))
    })
}

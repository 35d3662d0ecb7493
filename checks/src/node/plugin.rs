//! Exec plugins with node-problem-detector's contract, so the checks
//! operators already wrote for NPD run unchanged: the executable's exit
//! status is the verdict (0 ok, 1 a problem, 2 unknown), the first line of
//! its standard output is the message.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::checker::{BoxFuture, Checker, Scope};
use crate::result::{Outcome, Status};

/// Output read from a plugin, at most: the message is one line, and a
/// plugin that floods its pipe must not flood the agent.
const MAX_OUTPUT: u64 = 4096;

/// One configured plugin.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginSpec {
    /// The check's name, as the status and metrics show it.
    pub name: String,
    pub path: PathBuf,
    pub args: Vec<String>,
    /// A run still going after this is killed (its whole process group)
    /// and reported.
    pub timeout: Duration,
    /// What exit status 1 means: critical (NPD's "NonOK"), or only a
    /// warning for plugins that report something to look at.
    pub problem: Status,
}

#[derive(Debug)]
pub struct PluginCheck {
    spec: PluginSpec,
}

impl PluginCheck {
    pub fn new(spec: PluginSpec) -> Self {
        PluginCheck { spec }
    }
}

impl Checker for PluginCheck {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn scope(&self) -> Scope {
        Scope::EveryNode
    }

    fn check(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(run(&self.spec))
    }
}

async fn run(spec: &PluginSpec) -> Outcome {
    let path = spec.path.display();
    let started = Instant::now();
    let mut child = match tokio::process::Command::new(&spec.path)
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group, so a timeout kills what it started too
        // (a shell script's sleep, a hung curl).
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(error) => return Outcome::unknown(format!("{path}: cannot run: {error}")),
    };
    let mut stdout = child.stdout.take().expect("stdout was piped");
    let finished = tokio::time::timeout(spec.timeout, async {
        let mut output = Vec::new();
        // Read what fits, then wait; the rest of a flood is not read (the
        // plugin may block on a full pipe and meet its timeout).
        let read = (&mut stdout)
            .take(MAX_OUTPUT)
            .read_to_end(&mut output)
            .await;
        drop(stdout);
        (read.map(|_| output), child.wait().await)
    })
    .await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (output, status) = match finished {
        Ok((output, Ok(status))) => (output.unwrap_or_default(), status),
        Ok((_, Err(error))) => return Outcome::unknown(format!("{path}: {error}")),
        Err(_) => {
            kill_group(&child);
            return Outcome::critical(format!(
                "{path} did not finish within {:?}; killed",
                spec.timeout
            ))
            .with_details(json!({"path": path.to_string(), "timed_out": true}));
        }
    };
    let message = String::from_utf8_lossy(&output)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let details = json!({
        "path": path.to_string(),
        "exit_code": status.code(),
        "signal": status.signal(),
        "ms": elapsed_ms,
    });
    let said = |what: &str| {
        if message.is_empty() {
            format!("{path}: {what}")
        } else {
            message.clone()
        }
    };
    let outcome = match (status.code(), status.signal()) {
        (Some(0), _) => Outcome::ok(said("ok")),
        (Some(1), _) => Outcome::new(spec.problem, said("reported a problem (exit 1)")),
        (Some(2), _) => Outcome::unknown(said("could not tell (exit 2)")),
        (Some(code), _) => Outcome::unknown(format!(
            "{path}: exit status {code} is not in the plugin contract (0, 1, 2){}",
            if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            }
        )),
        (None, Some(signal)) => Outcome::unknown(format!("{path}: killed by signal {signal}")),
        (None, None) => Outcome::unknown(format!("{path}: ended without a status")),
    };
    outcome.with_details(details)
}

/// SIGKILL to the plugin's process group (its pid is the group's id).
fn kill_group(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        let group = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }
}

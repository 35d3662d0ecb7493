//! A cluster of N agent processes on loopback, for either system: spawn,
//! read their logs, stop, kill and restart them.
//!
//! Every log line is timestamped when the harness receives it (Serf logs
//! have 1 s resolution), by one reader task per pipe feeding one channel.
//! Every child is `kill_on_drop`, so an error or a panic anywhere above
//! still takes the agents down with the `Cluster`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::BenchError;
use super::system::{Parsed, Seen, System};

/// How long a started seed gets to say it is listening.
const SEED_READY: Duration = Duration::from_secs(15);
/// How long a stopped agent (or `serf leave`) gets to exit before SIGKILL.
const EXIT_GRACE: Duration = Duration::from_secs(15);
/// How often waits check that no agent died behind our back.
const LIVENESS_EVERY: Duration = Duration::from_millis(500);
/// Log lines kept per agent, for the error message if it dies.
const TAIL_LINES: usize = 20;

/// One membership line: `observer` logged `seen` about `member` at `at`.
#[derive(Clone, Debug)]
pub struct Membership {
    pub observer: usize,
    pub at: Instant,
    pub seen: Seen,
    pub member: String,
}

/// One expected log line: (observer, what, about whom).
pub type Expect = (usize, Seen, String);

#[derive(Debug)]
struct Line {
    agent: usize,
    at: Instant,
    text: String,
}

#[derive(Debug)]
struct Agent {
    name: String,
    ip: Ipv4Addr,
    child: Option<Child>,
    /// Asked to leave or killed: its exit is expected, not an error.
    stopping: bool,
    tail: VecDeque<String>,
}

#[derive(Debug)]
pub struct Cluster {
    system: System,
    agents: Vec<Agent>,
    sender: mpsc::UnboundedSender<Line>,
    lines: mpsc::UnboundedReceiver<Line>,
    last_liveness_check: Instant,
}

impl Cluster {
    pub fn new(system: System, first_ip: Ipv4Addr, nodes: usize) -> Cluster {
        let agents = (0..nodes)
            .map(|index| Agent {
                name: format!("n{index}"),
                ip: Ipv4Addr::from(u32::from(first_ip) + index as u32),
                child: None,
                stopping: false,
                tail: VecDeque::new(),
            })
            .collect();
        let (sender, lines) = mpsc::unbounded_channel();
        Cluster {
            system,
            agents,
            sender,
            lines,
            last_liveness_check: Instant::now(),
        }
    }

    pub fn label(&self) -> &'static str {
        self.system.label()
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn name(&self, index: usize) -> &str {
        &self.agents[index].name
    }

    pub fn ips(&self) -> Vec<Ipv4Addr> {
        self.agents.iter().map(|agent| agent.ip).collect()
    }

    /// Process ids of the running agents, by index.
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.agents
            .iter()
            .map(|agent| agent.child.as_ref().and_then(Child::id))
            .collect()
    }

    /// Start agent 0, wait until it listens, then start every other agent
    /// joining it. Returns when agent 0 was started.
    pub async fn start(&mut self) -> Result<Instant, BenchError> {
        let started = Instant::now();
        self.spawn(0)?;
        let deadline = Instant::now() + SEED_READY;
        loop {
            match self.next_line(deadline).await? {
                Some((0, _, Parsed::Ready)) => break,
                Some(_) => {}
                None => {
                    return Err(self.timeout("the seed n0 listening", SEED_READY, String::new()));
                }
            }
        }
        for index in 1..self.agents.len() {
            self.spawn(index)?;
        }
        Ok(started)
    }

    /// (Re)start agent `index`, joining agent 0 unless it is agent 0.
    pub fn spawn(&mut self, index: usize) -> Result<(), BenchError> {
        let seed = (index != 0).then(|| self.agents[0].ip);
        let agent = &mut self.agents[index];
        let mut child = self
            .system
            .command(&agent.name, agent.ip, seed)
            .spawn()
            .map_err(|source| BenchError::Io {
                what: format!("cannot start {} agent {}", self.system.label(), agent.name),
                source,
            })?;
        if let Some(stdout) = child.stdout.take() {
            read_lines(index, stdout, self.sender.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            read_lines(index, stderr, self.sender.clone());
        }
        agent.child = Some(child);
        Ok(())
    }

    /// Ask agent `index` to leave gracefully: SIGTERM for starling,
    /// `serf leave` for Serf. Returns when the request was made and the
    /// `serf leave` process, if any, to be reaped with `reap`.
    pub fn leave(&mut self, index: usize) -> Result<(Instant, Option<Child>), BenchError> {
        self.agents[index].stopping = true;
        let agent = &self.agents[index];
        let at = Instant::now();
        if let Some(mut command) = self.system.leave_command(agent.ip) {
            let helper = command.spawn().map_err(|source| BenchError::Io {
                what: format!("cannot run `serf leave` for {}", agent.name),
                source,
            })?;
            return Ok((at, Some(helper)));
        }
        if let Some(pid) = agent.child.as_ref().and_then(Child::id) {
            kill(Pid::from_raw(pid as i32), Signal::SIGTERM).map_err(|errno| BenchError::Io {
                what: format!("cannot signal {} agent {}", self.system.label(), agent.name),
                source: errno.into(),
            })?;
        }
        Ok((at, None))
    }

    /// SIGKILL agent `index`; returns the instant just before the signal.
    pub fn kill(&mut self, index: usize) -> Instant {
        self.agents[index].stopping = true;
        let at = Instant::now();
        if let Some(child) = self.agents[index].child.as_mut() {
            // Already gone would be a bug caught by the next liveness check.
            let _ = child.start_kill();
        }
        at
    }

    /// Wait (bounded) for a stopped agent and its helper to exit; SIGKILL
    /// whatever is still running after the grace period.
    pub async fn reap(&mut self, index: usize, helper: Option<Child>) {
        self.reap_by(index, helper, Instant::now() + EXIT_GRACE)
            .await;
    }

    async fn reap_by(&mut self, index: usize, helper: Option<Child>, deadline: Instant) {
        self.agents[index].stopping = false;
        let mut children: Vec<Child> = self.agents[index].child.take().into_iter().collect();
        children.extend(helper);
        for mut child in children {
            if tokio::time::timeout_at(deadline, child.wait())
                .await
                .is_err()
            {
                eprintln!(
                    "bench: {} {} did not exit in time; killing it",
                    self.label(),
                    self.agents[index].name
                );
                let _ = child.kill().await;
            }
        }
    }

    /// Wait until every expected line was logged after `since`, or until
    /// `deadline`. Returns when each expectation was first met; those
    /// missing from the map timed out. Fails only if an agent that should
    /// be running has exited.
    pub async fn wait_for(
        &mut self,
        expected: HashSet<Expect>,
        since: Instant,
        deadline: Instant,
    ) -> Result<HashMap<Expect, Instant>, BenchError> {
        let mut pending = expected;
        let mut met = HashMap::new();
        while !pending.is_empty() {
            match self.next_line(deadline).await? {
                Some((observer, at, Parsed::Membership(seen, member))) => {
                    let key = (observer, seen, member);
                    if at >= since && pending.remove(&key) {
                        met.insert(key, at);
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
        Ok(met)
    }

    /// Every membership line until `deadline` (the idle window, where any
    /// is a surprise worth reporting).
    pub async fn watch_until(&mut self, deadline: Instant) -> Result<Vec<Membership>, BenchError> {
        let mut seen = Vec::new();
        while let Some((observer, at, parsed)) = self.next_line(deadline).await? {
            if let Parsed::Membership(what, member) = parsed {
                seen.push(Membership {
                    observer,
                    at,
                    seen: what,
                    member,
                });
            }
        }
        Ok(seen)
    }

    /// Throw away lines already received: a new phase starts clean.
    pub fn discard_pending(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.remember(&line);
        }
    }

    /// Stop everyone: SIGTERM, a bounded wait, then SIGKILL.
    pub async fn shutdown(&mut self) {
        for agent in &self.agents {
            if let Some(pid) = agent.child.as_ref().and_then(Child::id) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        // One deadline for all: they stop in parallel.
        let deadline = Instant::now() + EXIT_GRACE;
        for index in 0..self.agents.len() {
            self.reap_by(index, None, deadline).await;
        }
    }
}

impl Cluster {
    /// The next line received before `deadline` (None once it passed),
    /// checking now and then that every agent that should run still does.
    async fn next_line(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<(usize, Instant, Parsed)>, BenchError> {
        loop {
            let now = Instant::now();
            if now >= self.last_liveness_check + LIVENESS_EVERY {
                self.last_liveness_check = now;
                self.check_alive().await?;
            }
            if now >= deadline {
                return Ok(None);
            }
            let wake = deadline.min(self.last_liveness_check + LIVENESS_EVERY);
            tokio::select! {
                Some(line) = self.lines.recv() => {
                    self.remember(&line);
                    let parsed = self.system.parse(&line.text);
                    return Ok(Some((line.agent, line.at, parsed)));
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn check_alive(&mut self) -> Result<(), BenchError> {
        for index in 0..self.agents.len() {
            let agent = &mut self.agents[index];
            if agent.stopping {
                continue;
            }
            let Some(child) = agent.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                // Let the readers hand over its last words first.
                tokio::time::sleep(Duration::from_millis(200)).await;
                self.discard_pending();
                let agent = &self.agents[index];
                return Err(BenchError::AgentExited {
                    system: self.system.label(),
                    name: agent.name.clone(),
                    status,
                    tail: agent.tail.iter().cloned().collect::<Vec<_>>().join("\n"),
                });
            }
        }
        Ok(())
    }

    fn remember(&mut self, line: &Line) {
        let tail = &mut self.agents[line.agent].tail;
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.text.clone());
    }

    pub fn timeout(&self, what: &str, limit: Duration, detail: String) -> BenchError {
        BenchError::Timeout {
            system: self.system.label(),
            what: what.to_owned(),
            limit,
            detail,
        }
    }
}

/// Forward each line of one pipe, stamped on receipt, until it closes.
fn read_lines(
    agent: usize,
    stream: impl AsyncRead + Unpin + Send + 'static,
    sender: mpsc::UnboundedSender<Line>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let at = Instant::now();
                    let text = String::from_utf8_lossy(&buffer).trim_end().to_owned();
                    if sender.send(Line { agent, at, text }).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

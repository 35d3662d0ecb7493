//! What a person (or a test) types at the running lab: faults on demand,
//! each answered with what to expect and where to look.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::faults::PacketDrop;
use super::{LAB_OVERLAY_WINDOW, Lab, LabAgent};

/// The longest pause: long enough to be declared down, short enough that
/// a typo does not freeze an agent for the rest of the day.
pub const MAX_PAUSE: Duration = Duration::from_secs(600);

/// One line typed at the lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabCommand {
    /// SIGKILL: a crash, as `kill -9` would.
    Kill(String),
    /// SIGTERM: a graceful leave.
    Stop(String),
    /// Start a stopped or dead agent again, same name and data dir.
    Start(String),
    /// Stop a running agent gracefully and start it again.
    Restart(String),
    /// SIGSTOP for a while, then SIGCONT: a hung process that comes back.
    Pause(String, Duration),
    /// Drop every overlay probe packet between two agents (root).
    Cut(String, String),
    /// Drop this percentage of the probe packets between two agents (root).
    Degrade(String, String, u8),
    /// Cut the gossip between these agents and all the others (root).
    Partition(Vec<String>),
    /// Remove every network fault.
    Heal,
    /// Each agent, its address and whether it runs.
    List,
    Help,
}

pub const HELP: &str = "\
commands (type them here, one per line):
  kill NAME          crash an agent (SIGKILL); the others mark it suspect, then down
  stop NAME          stop an agent gracefully (SIGTERM); it leaves the cluster
  start NAME         start a stopped or dead agent again (same name, same data)
  restart NAME       stop an agent gracefully and start it again
  pause NAME SECS    freeze an agent (SIGSTOP) for SECS seconds, then let it go on
  stop etcd          stop the lab's etcd (start etcd brings it back)
as root (nftables rules on the lab's own addresses, removed when it stops):
  cut A B            drop every overlay probe packet between agents A and B
  degrade A B PCT    drop PCT% of the overlay probe packets between A and B
  partition A [B..]  cut the gossip between these agents and the others
  heal               remove every network fault
  list               each agent, its address and whether it runs
  help               this list";

/// `Ok(None)` for a blank line; `Err` says what is wrong with the line.
pub fn parse(line: &str) -> Result<Option<LabCommand>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let command = match words.as_slice() {
        [] => return Ok(None),
        ["kill", name] => LabCommand::Kill((*name).to_owned()),
        ["stop", name] => LabCommand::Stop((*name).to_owned()),
        ["start", name] => LabCommand::Start((*name).to_owned()),
        ["restart", name] => LabCommand::Restart((*name).to_owned()),
        ["cut", a, b] => LabCommand::Cut((*a).to_owned(), (*b).to_owned()),
        ["degrade", a, b, percent] => {
            let percent = percent
                .trim_end_matches('%')
                .parse::<u8>()
                .ok()
                .filter(|p| (1..=100).contains(p))
                .ok_or_else(|| format!("degrade {a} {b} {percent}: PCT is from 1 to 100"))?;
            LabCommand::Degrade((*a).to_owned(), (*b).to_owned(), percent)
        }
        ["partition", names @ ..] if !names.is_empty() => LabCommand::Partition(
            names
                .iter()
                .flat_map(|n| n.split(','))
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        ["heal"] => LabCommand::Heal,
        ["pause", name, secs] => {
            let secs: u64 = secs
                .parse()
                .map_err(|_| format!("pause {name} {secs}: SECS is a whole number of seconds"))?;
            let pause = Duration::from_secs(secs);
            if pause.is_zero() || pause > MAX_PAUSE {
                return Err(format!(
                    "pause {name} {secs}: from 1 to {} seconds",
                    MAX_PAUSE.as_secs()
                ));
            }
            LabCommand::Pause((*name).to_owned(), pause)
        }
        ["list"] => LabCommand::List,
        ["help"] => LabCommand::Help,
        _ => return Err(format!("{:?}: not a lab command (type help)", line.trim())),
    };
    Ok(Some(command))
}

impl Lab {
    fn agent(&mut self, name: &str) -> Option<&mut LabAgent> {
        let found = self.agents.iter_mut().find(|a| a.name == name);
        if found.is_none() {
            println!("starling lab: no agent named {name:?} (type list)");
        }
        found
    }

    pub(super) fn obey(&mut self, line: &str) {
        let command = match parse(line) {
            Ok(Some(command)) => command,
            Ok(None) => return,
            Err(error) => return println!("starling lab: {error}"),
        };
        match command {
            LabCommand::Kill(name) | LabCommand::Stop(name) if name == "etcd" => self.stop_etcd(),
            LabCommand::Start(name) if name == "etcd" => self.start_etcd(),
            LabCommand::Kill(name) => self.signal(&name, Signal::SIGKILL),
            LabCommand::Stop(name) => self.signal(&name, Signal::SIGTERM),
            LabCommand::Pause(name, pause) => self.pause(&name, pause),
            LabCommand::Start(name) => self.start(&name),
            LabCommand::Restart(name) => self.restart(&name),
            LabCommand::Cut(a, b) => self.degrade(&a, &b, 100),
            LabCommand::Degrade(a, b, percent) => self.degrade(&a, &b, percent),
            LabCommand::Partition(names) => self.partition(&names),
            LabCommand::Heal => self.heal(),
            LabCommand::List => self.list(),
            LabCommand::Help => println!("{HELP}"),
        }
    }

    /// Sends `signal` to the running agent `name`: the agent and its pid,
    /// or `None` once it said why not (no such agent, not running, refused).
    fn send(&mut self, name: &str, signal: Signal) -> Option<(&mut LabAgent, Pid)> {
        let agent = self.agent(name)?;
        let Some(pid) = agent.pid() else {
            println!("starling lab: {name} is not running (start {name})");
            return None;
        };
        if let Err(error) = kill(pid, signal) {
            println!("starling lab: {name}: {signal}: {error}");
            return None;
        }
        Some((agent, pid))
    }

    fn signal(&mut self, name: &str, signal: Signal) {
        let Some((agent, pid)) = self.send(name, signal) else {
            return;
        };
        // The node goes down with its probe, as a real node would.
        if let Some(probe) = agent.probe.as_mut() {
            let _ = probe.start_kill();
        }
        let api = agent.api();
        let expect = if signal == Signal::SIGKILL {
            "the others mark it suspect, then down (a few seconds), and one of them records it"
        } else {
            "it leaves the cluster: the others mark it left, not down"
        };
        println!("starling lab: sent {signal} to {name} (pid {pid}); {expect}");
        println!(
            "  watch: starling members --addr {}   history: starling history --addr {} --node {name}",
            self.observer(&api),
            self.observer(&api)
        );
    }

    fn pause(&mut self, name: &str, pause: Duration) {
        let Some((_, pid)) = self.send(name, Signal::SIGSTOP) else {
            return;
        };
        println!(
            "starling lab: froze {name} (pid {pid}) for {}s; the others suspect it, may declare it \
             down, and it rejoins (one incarnation on) when it goes on",
            pause.as_secs()
        );
        let name = name.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(pause).await;
            // Gone meanwhile (killed, stopped) is fine: nothing to resume.
            if kill(pid, Signal::SIGCONT).is_ok() {
                println!("starling lab: {name} goes on (SIGCONT)");
            }
        });
    }

    pub(super) fn start(&mut self, name: &str) {
        // Join any other running agent: the first may be the one coming back.
        let join = self
            .agents
            .iter()
            .find(|a| a.name != name && a.child.is_some())
            .map(|a| a.ip);
        let (exe, dir, key) = (self.exe.clone(), self.dir.clone(), self.key.clone());
        let extra = self.extra.clone();
        let Some(agent) = self.agent(name) else {
            return;
        };
        if agent.child.is_some() {
            return println!("starling lab: {name} is already running");
        }
        match agent.start(&exe, &dir, &key, join, &extra) {
            Ok(()) => println!(
                "starling lab: started {name} again (pid {}), same data: it rejoins one \
                 incarnation on, and its history keeps its sequence numbers",
                agent
                    .pid()
                    .map_or_else(|| "?".to_owned(), |p| p.to_string())
            ),
            Err(error) => println!("starling lab: {error}"),
        }
    }

    fn list(&self) {
        for agent in &self.agents {
            let state = agent
                .pid()
                .map_or_else(|| "not running".to_owned(), |pid| format!("pid {pid}"));
            println!("  {:<8} api http://{}  {state}", agent.name, agent.api());
        }
    }

    /// A running agent other than the one at `not`, to watch it from.
    fn observer(&self, not: &SocketAddr) -> SocketAddr {
        self.agents
            .iter()
            .map(LabAgent::api)
            .find(|api| api != not)
            .unwrap_or(*not)
    }

    fn stop_etcd(&mut self) {
        let Some(etcd) = self.etcd.as_mut() else {
            return println!("starling lab: this lab runs no etcd");
        };
        let Some(pid) = etcd.pid() else {
            return println!("starling lab: etcd is not running (start etcd)");
        };
        // Reaped by the next look, which reports it.
        let _ = kill(pid, Signal::SIGTERM);
        println!(
            "starling lab: stopping etcd (pid {pid}); every agent's etcd check goes critical \
             within two intervals: `starling status`, the dashboard's check matrix, and an \
             ALERT here"
        );
    }

    fn start_etcd(&mut self) {
        let Some(etcd) = self.etcd.as_mut() else {
            return println!("starling lab: this lab runs no etcd");
        };
        if etcd.running() {
            return println!("starling lab: etcd is already running");
        }
        match etcd.start() {
            Ok(()) => println!(
                "starling lab: started etcd again; the etcd checks recover and the alert resolves"
            ),
            Err(error) => println!("starling lab: {error}"),
        }
    }

    fn restart(&mut self, name: &str) {
        let Some((agent, pid)) = self.send(name, Signal::SIGTERM) else {
            return;
        };
        // Started again when its exit is seen, not before: two agents on
        // one data directory must never overlap.
        agent.restart = true;
        println!(
            "starling lab: restarting {name} (pid {pid}): it leaves, then rejoins one incarnation \
             on with the same data; `starling history --node {name}` shows both"
        );
    }

    /// The two agents' probe addresses, or why not.
    fn probe_pair(&self, a: &str, b: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
        if a == b {
            return Err(format!("{a} and {b} are one agent: name two"));
        }
        let probe = |name: &str| {
            self.agents
                .iter()
                .find(|agent| agent.name == name)
                .map(LabAgent::probe_ip)
                .ok_or_else(|| format!("no agent named {name:?} (type list)"))
        };
        Ok((probe(a)?, probe(b)?))
    }

    /// `percent` of 100 is a cut.
    fn degrade(&mut self, a: &str, b: &str, percent: u8) {
        let added = self.probe_pair(a, b).and_then(|(one, other)| {
            self.faults.add(&PacketDrop {
                one_side: vec![one],
                other_side: vec![other],
                percent,
            })
        });
        if let Err(error) = added {
            return println!("starling lab: {error}");
        }
        let window = LAB_OVERLAY_WINDOW.as_secs();
        if percent == 100 {
            println!(
                "starling lab: cut the overlay path {a} <-> {b}: every probe packet between them \
                 is dropped. Within the overlay window ({window} s) `starling overlay` and the \
                 dashboard's overlay panel call the path broken, not the nodes (both still reach \
                 the others); `heal` restores it"
            );
        } else {
            println!(
                "starling lab: {a} <-> {b} loses {percent}% of its probe packets. Above 20% the \
                 path turns critical after the overlay window ({window} s); below, `starling \
                 overlay` shows the loss on a healthy path; `heal` restores it"
            );
        }
    }

    fn partition(&mut self, names: &[String]) {
        let (inside, outside): (Vec<&LabAgent>, Vec<&LabAgent>) = self
            .agents
            .iter()
            .partition(|agent| names.contains(&agent.name));
        if let Some(unknown) = names
            .iter()
            .find(|name| !inside.iter().any(|a| &a.name == *name))
        {
            return println!("starling lab: no agent named {unknown:?} (type list)");
        }
        if inside.is_empty() || outside.is_empty() {
            return println!("starling lab: a partition needs agents on both sides");
        }
        let fault = PacketDrop {
            one_side: inside.iter().map(|a| a.ip).collect(),
            other_side: outside.iter().map(|a| a.ip).collect(),
            percent: 100,
        };
        let names_of = |side: &[&LabAgent]| {
            side.iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (one, other) = (names_of(&inside), names_of(&outside));
        let (here, there) = (inside[0].api(), outside[0].api());
        if let Err(error) = self.faults.add(&fault) {
            return println!("starling lab: {error}");
        }
        println!(
            "starling lab: partitioned the gossip of {one} from {other}: each side marks the \
             other suspect, then down, and the two disagree (`starling members --addr {here}` and \
             `--addr {there}`); the overlay probes still reach each other. `heal` and they merge \
             again, without a restart"
        );
    }

    fn heal(&mut self) {
        match self.faults.heal() {
            Ok(()) => println!(
                "starling lab: removed every network fault; cut paths recover within the overlay \
                 window ({} s), partitioned agents rejoin within seconds",
                LAB_OVERLAY_WINDOW.as_secs()
            ),
            Err(error) => println!("starling lab: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_commands_or_say_what_is_wrong() {
        assert_eq!(parse("  "), Ok(None));
        assert_eq!(
            parse("kill lab-4"),
            Ok(Some(LabCommand::Kill("lab-4".into())))
        );
        assert_eq!(
            parse(" start  lab-4 "),
            Ok(Some(LabCommand::Start("lab-4".into())))
        );
        assert_eq!(
            parse("pause lab-2 30"),
            Ok(Some(LabCommand::Pause(
                "lab-2".into(),
                Duration::from_secs(30)
            )))
        );
        assert_eq!(
            parse(" restart  lab-4 "),
            Ok(Some(LabCommand::Restart("lab-4".into())))
        );
        assert_eq!(
            parse("degrade lab-1 lab-2 30%"),
            Ok(Some(LabCommand::Degrade(
                "lab-1".into(),
                "lab-2".into(),
                30
            )))
        );
        assert_eq!(
            parse("partition lab-1,lab-2 lab-3"),
            Ok(Some(LabCommand::Partition(vec![
                "lab-1".into(),
                "lab-2".into(),
                "lab-3".into()
            ])))
        );
        assert_eq!(parse("list"), Ok(Some(LabCommand::List)));
        for bad in [
            "kill",
            "pause lab-2 x",
            "pause lab-2 0",
            "pause lab-2 9999",
            "degrade lab-1 lab-2 0",
            "degrade lab-1 lab-2 101",
            "cut lab-1",
            "partition",
            "explode",
        ] {
            let error = parse(bad).expect_err(bad);
            assert!(!error.is_empty());
        }
    }
}

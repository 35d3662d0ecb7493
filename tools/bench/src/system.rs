//! The two systems under test: how to start an agent of each, and how to
//! read what it logs about membership.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::Command;

#[derive(Clone, Debug)]
pub enum System {
    Starling {
        exe: PathBuf,
        key_file: PathBuf,
        data_dir: PathBuf,
    },
    Serf {
        exe: PathBuf,
        key: String,
    },
}

impl System {
    pub fn label(&self) -> &'static str {
        match self {
            System::Starling { .. } => "starling",
            System::Serf { .. } => "serf",
        }
    }

    /// The command that starts one agent, joining `seed` if given.
    pub(super) fn command(&self, name: &str, ip: Ipv4Addr, seed: Option<Ipv4Addr>) -> Command {
        let mut command;
        match self {
            System::Starling {
                exe,
                key_file,
                data_dir,
            } => {
                command =
                    starling_client::lab::agent_command(exe, key_file, data_dir, name, ip, seed);
                command.args(["--log-format", "json", "--log", "info"]);
            }
            System::Serf { exe, key } => {
                command = Command::new(exe);
                command
                    .arg("agent")
                    .args(["-node", name])
                    .arg(format!("-bind={ip}:7946"))
                    .arg(format!("-rpc-addr={ip}:7373"))
                    .args(["-profile", "lan", "-log-level", "info"])
                    .arg(format!("-encrypt={key}"));
                if let Some(seed) = seed {
                    command.arg(format!("-join={seed}:7946"));
                }
            }
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// How Serf leaves gracefully (`serf leave`, the documented way);
    /// None for starling, which leaves on SIGTERM as Kubernetes stops it.
    pub(super) fn leave_command(&self, ip: Ipv4Addr) -> Option<Command> {
        let System::Serf { exe, .. } = self else {
            return None;
        };
        let mut command = Command::new(exe);
        command
            .arg("leave")
            .arg(format!("-rpc-addr={ip}:7373"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        Some(command)
    }

    pub(super) fn parse(&self, line: &str) -> Parsed {
        match self {
            System::Starling { .. } => parse_starling(line),
            System::Serf { .. } => parse_serf(line),
        }
    }
}

/// What an agent logged about a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Seen {
    Joined,
    Suspect,
    Down,
    Left,
}

#[derive(Debug, PartialEq)]
pub(super) enum Parsed {
    Ready,
    Membership(Seen, String),
    Other,
}

fn parse_starling(line: &str) -> Parsed {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
        return Parsed::Other;
    };
    match value.get("message").and_then(|m| m.as_str()) {
        Some("starling agent started") => Parsed::Ready,
        Some("membership") => {
            let seen = match value.get("event").and_then(|e| e.as_str()) {
                Some("joined" | "rejoined") => Seen::Joined,
                Some("suspect") => Seen::Suspect,
                Some("down") => Seen::Down,
                Some("left") => Seen::Left,
                _ => return Parsed::Other,
            };
            match value.get("member").and_then(|m| m.as_str()) {
                Some(member) => Parsed::Membership(seen, member.to_owned()),
                None => Parsed::Other,
            }
        }
        _ => Parsed::Other,
    }
}

fn parse_serf(line: &str) -> Parsed {
    // Printed once memberlist and the RPC listener are up.
    if line.contains("Serf agent running!") {
        return Parsed::Ready;
    }
    const MARKERS: [(&str, Seen); 4] = [
        ("serf: EventMemberJoin: ", Seen::Joined),
        ("serf: EventMemberLeave: ", Seen::Left),
        ("serf: EventMemberFailed: ", Seen::Down),
        ("memberlist: Suspect ", Seen::Suspect),
    ];
    for (marker, seen) in MARKERS {
        if let Some(at) = line.find(marker)
            && let Some(member) = line[at + marker.len()..].split_whitespace().next()
        {
            return Parsed::Membership(seen, member.to_owned());
        }
    }
    Parsed::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_starling_membership_lines() {
        let line = r#"{"timestamp":"2026-11-23T10:51:37.413198Z","level":"INFO","message":"membership","event":"rejoined","member":"n7","addr":"127.0.0.8:7946","incarnation":3,"target":"x"}"#;
        assert_eq!(
            parse_starling(line),
            Parsed::Membership(Seen::Joined, "n7".to_owned())
        );
        let down = line.replace("rejoined", "down");
        assert_eq!(
            parse_starling(&down),
            Parsed::Membership(Seen::Down, "n7".to_owned())
        );
        let ready = r#"{"level":"INFO","message":"starling agent started","node":"n0"}"#;
        assert_eq!(parse_starling(ready), Parsed::Ready);
        assert_eq!(parse_starling("not json"), Parsed::Other);
    }

    #[test]
    fn reads_serf_membership_lines() {
        let join = "    2026/11/23 10:51:03 [INFO] serf: EventMemberJoin: n1 127.0.101.2";
        assert_eq!(
            parse_serf(join),
            Parsed::Membership(Seen::Joined, "n1".to_owned())
        );
        let failed = "    2026/11/23 10:51:18 [INFO] serf: EventMemberFailed: n12 127.0.101.13";
        assert_eq!(
            parse_serf(failed),
            Parsed::Membership(Seen::Down, "n12".to_owned())
        );
        let leave = "    2026/11/23 10:51:06 [INFO] serf: EventMemberLeave: n2 127.0.101.3";
        assert_eq!(
            parse_serf(leave),
            Parsed::Membership(Seen::Left, "n2".to_owned())
        );
        assert_eq!(parse_serf("==> Serf agent running!"), Parsed::Ready);
        let event = "    2026/11/23 10:51:07 [INFO] agent: Received event: member-leave";
        assert_eq!(parse_serf(event), Parsed::Other);
    }
}

//! Running the external tools (`ip`, `nft`, `tc`) that build and reshape the lab.
//!
//! Every command is bounded by [`COMMAND_TIMEOUT`] so a wedged tool cannot hang a test run,
//! and every command that touches the network names its namespace explicitly (`ip -n NS`,
//! `tc -n NS`, `ip netns exec NS nft`): nothing here ever acts on the root namespace.

use std::ffi::OsStr;
use std::io;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::LabError;
use super::process::signal;

/// Upper bound for one setup or fault-injection command; they normally take milliseconds.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// `ip -n <ns> <args>`: an `ip` command executed inside namespace `ns`.
pub(crate) fn ip_in(ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["-n", ns]).args(args);
    cmd
}

/// `ip netns <args>`: managing the namespaces themselves (add/del/list/pids).
pub(crate) fn netns(args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.arg("netns").args(args);
    cmd
}

/// `tc -n <ns> <args>`: traffic control inside namespace `ns`.
pub(crate) fn tc_in(ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("tc");
    cmd.args(["-n", ns]).args(args);
    cmd
}

/// `ip netns exec <ns> <program> <args>`: for tools without a namespace flag (`nft`).
pub(crate) fn exec_in<S: AsRef<OsStr>>(
    ns: &str,
    program: impl AsRef<OsStr>,
    args: &[S],
) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program).args(args);
    cmd
}

/// A shell-like rendering of `cmd` for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion and returns its output whatever its exit status.
pub(crate) fn output(mut cmd: Command) -> Result<Output, LabError> {
    let desc = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(missing_tool(cmd.get_program()));
        }
        Err(e) => return Err(e.into()),
    };
    let pid = child.id();
    // `wait_with_output` drains both pipes (so a chatty tool cannot block on a full pipe) but
    // has no timeout; run it on a helper thread and stop waiting after the bound.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(COMMAND_TIMEOUT) {
        Ok(out) => Ok(out?),
        Err(_) => {
            // The helper thread has not reaped the child, so `pid` still names it.
            let _ = signal(&[pid], "KILL");
            Err(LabError::Timeout {
                cmd: desc,
                after: COMMAND_TIMEOUT,
            })
        }
    }
}

/// Runs `cmd` and fails unless it exits successfully.
pub(crate) fn run(cmd: Command) -> Result<Output, LabError> {
    let desc = describe(&cmd);
    let out = output(cmd)?;
    if out.status.success() {
        return Ok(out);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(program) = exec_not_found(&stderr) {
        Err(missing_tool(OsStr::new(program)))
    } else {
        Err(LabError::Command {
            cmd: desc,
            status: out.status,
            stderr: stderr.trim().to_owned(),
        })
    }
}

/// The program `ip netns exec` could not find, from its stderr (e.g. nft not installed).
fn exec_not_found(stderr: &str) -> Option<&str> {
    let rest = stderr.trim().strip_prefix("exec of \"")?;
    match rest.split_once("\" ") {
        Some((program, "failed: No such file or directory")) => Some(program),
        _ => None,
    }
}

/// Names the Debian package to install, so a skip message tells the reader what to do.
pub(crate) fn missing_tool(program: &OsStr) -> LabError {
    let program = program.to_string_lossy();
    let package = match program.as_ref() {
        "ip" | "tc" => "iproute2",
        "nft" => "nftables",
        _ => "the package providing it",
    };
    LabError::NotPermitted(format!("`{program}` not found; install {package}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_a_missing_program_behind_ip_netns_exec() {
        let stderr = "exec of \"nft\" failed: No such file or directory\n";
        assert_eq!(exec_not_found(stderr), Some("nft"));
        assert_eq!(exec_not_found("Error: syntax error"), None);
        let e = missing_tool(OsStr::new("nft"));
        assert!(
            e.is_environment_limit() && e.to_string().contains("nftables"),
            "{e}"
        );
    }
}

//! Processes running inside a lab host: spawning, signalling, waiting, and their logs.
//!
//! A program is started as `ip netns exec <ns> <program> <args>`. `ip` enters the namespace
//! and then `execvp`s the program in place (no shell, no fork), so the pid of our `Child`
//! IS the program: `kill9` kills the agent itself, not a wrapper that would leave it running.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::commands::{COMMAND_TIMEOUT, describe, exec_in, missing_tool};
use super::{LabError, NetLab};

/// Sends signal `sig` (a name such as `TERM` or `KILL`) to `pids`.
///
/// Uses the shell's builtin `kill`, which every Debian has, because `unsafe_code` is
/// forbidden (so no `libc::kill`) and std only offers SIGKILL for its own children.
pub(crate) fn signal(pids: &[u32], sig: &str) -> io::Result<()> {
    if pids.is_empty() {
        return Ok(());
    }
    let status = Command::new("sh")
        .args(["-c", r#"kill -s "$0" "$@""#, sig])
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "kill -s {sig} {pids:?}: {status}"
        )))
    }
}

impl NetLab {
    /// Starts `program` inside host `host`'s namespace.
    ///
    /// stdout and stderr are appended to `<log_dir>/h<host>-<name>-<seq>.log` (see
    /// [`LabProcess::log`]), after a one-line header naming the command. `env` is added to the
    /// inherited environment. Returns once the process is inside the host's namespace (or has
    /// already exited). Dropping the returned [`LabProcess`] kills it, and dropping the lab
    /// kills anything still running in its namespaces, so a failing test leaks nothing.
    ///
    /// Panics if `host` is out of range.
    pub fn spawn<A: AsRef<OsStr>>(
        &self,
        host: usize,
        program: &Path,
        args: &[A],
        env: &[(&str, &str)],
    ) -> Result<LabProcess, LabError> {
        let ns = self.netns(host);
        // `ip netns exec` would report a missing program only in the log, after exiting 255;
        // say so up front instead.
        if program.components().count() > 1 && !program.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("program {} does not exist", program.display()),
            )
            .into());
        }
        let seq = self.spawn_seq.fetch_add(1, Ordering::Relaxed);
        let name = program
            .file_name()
            .map_or_else(|| "proc".into(), |n| n.to_string_lossy().into_owned());
        let log_path = self.log_dir().join(format!("h{host}-{name}-{seq}.log"));

        let mut cmd = exec_in(ns, program, args);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        writeln!(
            log,
            "# lab host {host} ({ns}, {}): {}",
            self.addr(host),
            describe(&cmd)
        )?;
        cmd.envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => missing_tool(OsStr::new("ip")),
            _ => LabError::Io(e),
        })?;
        let mut process = LabProcess {
            child,
            host,
            log_path,
        };
        // Dropping `process` on error kills it.
        wait_until_inside(&mut process.child, ns)?;
        Ok(process)
    }
}

/// Waits until `child` (`ip netns exec <ns> ...`) has entered namespace `ns`, or exited.
///
/// Until `ip` has called `setns`, the process is not among the namespace's pids, so a lab
/// dropped right after `spawn` would not kill it; and `ip`, holding the namespace open,
/// would then run the program in a namespace that no longer has a name, where no teardown
/// can find it. Returning only once it is inside closes that window.
fn wait_until_inside(child: &mut std::process::Child, ns: &str) -> Result<(), LabError> {
    let target = fs::metadata(Path::new("/run/netns").join(ns))?;
    let target = (target.dev(), target.ino());
    // Our unreaped child's pid cannot be reused, so this path keeps naming it.
    let current = format!("/proc/{}/ns/net", child.id());
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        if fs::metadata(&current).is_ok_and(|m| (m.dev(), m.ino()) == target) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LabError::Timeout {
                cmd: format!("ip netns exec {ns} (entering the namespace)"),
                after: COMMAND_TIMEOUT,
            });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A program running inside one lab host. Killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct LabProcess {
    child: Child,
    host: usize,
    log_path: PathBuf,
}

impl LabProcess {
    /// The program's pid (the program itself, not a wrapper).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The lab host it runs on.
    pub fn host(&self) -> usize {
        self.host
    }

    /// SIGKILLs the program and reaps it. A no-op if it already exited.
    pub fn kill9(&mut self) -> io::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Sends SIGTERM (a graceful stop); use [`LabProcess::wait_timeout`] to see it exit.
    /// A no-op if it already exited and was reaped.
    pub fn terminate(&mut self) -> io::Result<()> {
        // Until we reap it, the child's pid cannot be reused (it stays a zombie at worst), so
        // signalling by pid after this check cannot hit an unrelated process.
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        signal(&[self.pid()], "TERM")
    }

    /// Waits up to `t` for the program to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, t: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + t;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10).min(deadline - now));
        }
    }

    /// Everything the program wrote to stdout and stderr so far (lossy UTF-8). The file lives
    /// in the lab's directory, so read it before dropping the lab.
    pub fn log(&self) -> String {
        let mut bytes = Vec::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            let _ = io::Read::read_to_end(&mut f, &mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Where the log lives (inside the lab's [`NetLab::log_dir`]).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.kill9();
        }
    }
}

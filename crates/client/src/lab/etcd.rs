//! A real etcd for the lab's agents to check, when one is installed
//! (Debian's `etcd-server`): one member on a loopback address of its own,
//! its data in the lab's directory. `stop etcd` and `start etcd` at the
//! lab's prompt show the agents' etcd check go critical and recover.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// How long etcd gets to stop before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct LabEtcd {
    exe: PathBuf,
    ip: Ipv4Addr,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// Starts etcd if it is installed; otherwise says how to add it.
pub(crate) async fn start(lab_dir: &Path, ip: Ipv4Addr) -> Option<LabEtcd> {
    let Some(exe) = super::find("etcd") else {
        println!(
            "starling lab: etcd is not installed, so no agent checks one \
             (Debian: apt-get install etcd-server; then start the lab again)"
        );
        return None;
    };
    let mut etcd = LabEtcd {
        exe,
        ip,
        dir: lab_dir.join("etcd"),
        log: lab_dir.join("etcd.log"),
        child: None,
    };
    match etcd.start() {
        Ok(()) => {
            println!(
                "starling lab: etcd at {} (log {})",
                etcd.endpoint(),
                etcd.log.display()
            );
            Some(etcd)
        }
        Err(error) => {
            println!("starling lab: cannot start etcd ({error}); no agent checks one");
            None
        }
    }
}

impl LabEtcd {
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}:2379", self.ip)
    }

    pub(crate) fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Start (again), on the same data: the cluster it had comes back.
    pub(crate) fn start(&mut self) -> Result<(), super::LabError> {
        let peer = format!("http://{}:2380", self.ip);
        let client = self.endpoint();
        let mut command = Command::new(&self.exe);
        command
            .args(["--name", "lab-etcd"])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("lab-etcd={peer}")]);
        self.child = Some(super::spawn_logged(command, &self.log, "etcd")?);
        Ok(())
    }

    pub(crate) fn pid(&self) -> Option<Pid> {
        super::pid_of(self.child.as_ref()?)
    }

    /// Stop gracefully, killing it if it takes too long.
    pub(crate) async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = super::pid_of(&child) {
            let _ = kill(pid, Signal::SIGTERM);
        }
        if tokio::time::timeout(STOP_GRACE, child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }

    /// Forget a process that exited on its own; true if it did.
    pub(crate) fn reap(&mut self) -> bool {
        let exited = self
            .child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(Some(_))));
        if exited {
            self.child = None;
        }
        exited
    }
}

//! A real containerd (Debian's `containerd`) for tests of the container
//! runtime check: its own root, state, CNI config directory and socket in a
//! temporary directory, so it never touches a machine's own containerd.
//! Root only (containerd mounts and creates cgroups). Killed and reaped on
//! drop, the directory with it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Turns "cannot run" into a failure; `scripts/test` sets it as root.
const REQUIRE_VAR: &str = "STARLING_REQUIRE_CONTAINERD";
const READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct Containerd {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Where the CRI listens (containerd's gRPC socket).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// Its CNI configuration directory: empty at start, so the runtime
    /// reports NetworkReady false until a config is written here.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.path().join("cni")
    }

    /// Everything it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// Kills it (as a crash would); the socket file stays behind, refusing.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn start() -> Result<Containerd, String> {
        let dir = tempfile::Builder::new()
            .prefix("starling-containerd-")
            .tempdir()
            .map_err(|e| format!("a temporary directory: {e}"))?;
        let path = |name: &str| dir.path().join(name);
        std::fs::create_dir(path("cni")).map_err(|e| format!("the CNI dir: {e}"))?;
        let config = format!(
            "version = 2\nroot = {root:?}\nstate = {state:?}\n\
             [grpc]\n  address = {socket:?}\n[ttrpc]\n  address = {ttrpc:?}\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  conf_dir = {cni:?}\n  bin_dir = {bin:?}\n",
            root = path("root"),
            state = path("state"),
            socket = path("containerd.sock"),
            ttrpc = path("containerd-ttrpc.sock"),
            cni = path("cni"),
            bin = path("cni-bin"),
        );
        std::fs::write(path("config.toml"), config).map_err(|e| format!("its config: {e}"))?;
        let log =
            std::fs::File::create(path("containerd.log")).map_err(|e| format!("its log: {e}"))?;
        let stderr = log.try_clone().map_err(|e| format!("its log: {e}"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(path("config.toml"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run containerd: {e}"))?;
        let containerd = Containerd {
            child: Some(child),
            dir,
        };
        // Serving once it logs both sockets; the CRI plugin loads before.
        let deadline = Instant::now() + READY_TIMEOUT;
        while !containerd.log().contains(&format!(
            "serving...\" address={}",
            containerd.socket().display()
        )) && !containerd.log().contains(&format!(
            "msg=serving... address={}",
            containerd.socket().display()
        )) {
            if Instant::now() > deadline {
                return Err(format!("containerd did not serve:\n{}", containerd.log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(containerd)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // No container was started, so there are no shims or mounts to
        // undo: the process and the directory are all.
        self.kill();
    }
}

/// A running containerd, or `None` after printing why (not root, not
/// installed); panics instead when `STARLING_REQUIRE_CONTAINERD=1`.
pub fn containerd_or_skip() -> Option<Containerd> {
    let why = if !nix::unistd::geteuid().is_root() {
        "containerd needs root".to_owned()
    } else {
        match Containerd::start() {
            Ok(containerd) => return Some(containerd),
            Err(why) => why,
        }
    };
    if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
        panic!("{REQUIRE_VAR}=1 but containerd cannot run here: {why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

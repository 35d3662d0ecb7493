//! A real containerd (Debian's `containerd`) for tests of the container
//! runtime check: its own root, state, CNI config directory and socket in a
//! temporary directory, so it never touches a machine's own containerd.
//! Root only (containerd mounts and creates cgroups). Killed and reaped on
//! drop, the directory with it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::tool::run;
use std::time::{Duration, Instant};

/// Turns "cannot run" into a failure; `scripts/test` sets it as root.
const REQUIRE_VAR: &str = "STARLING_REQUIRE_CONTAINERD";
/// The pause image this containerd starts sandboxes from. Its registry
/// refuses connections, so until [`Containerd::import_pause_image`] a
/// sandbox cannot start: the unpullable pause image of an air-gapped node.
pub const PAUSE_IMAGE: &str = "127.0.0.1:1/starling/pause:1";
/// A static busybox (Debian's `busybox-static`) is the pause image's one
/// file: a container's root holds nothing else to link against.
const BUSYBOX: &str = "/usr/bin/busybox";
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

    /// Imports [`PAUSE_IMAGE`], built here from a static busybox that
    /// sleeps, into the namespace the CRI uses, so sandboxes can start.
    pub fn import_pause_image(&self) -> Result<(), String> {
        let archive = pause_image_archive(&self.dir.path().join("pause-image"))?;
        self.ctr(&["images", "import", &archive.display().to_string()])
            .map(drop)
    }

    /// The containers this containerd runs for the CRI, by id.
    pub fn cri_containers(&self) -> Result<Vec<String>, String> {
        let listed = self.ctr(&["containers", "list", "--quiet"])?;
        Ok(listed.lines().map(str::to_owned).collect())
    }

    /// `ctr` against this containerd, in the CRI's namespace.
    fn ctr(&self, args: &[&str]) -> Result<String, String> {
        let socket = self.socket().display().to_string();
        let mut all = vec!["--address", &socket, "--namespace", "k8s.io"];
        all.extend_from_slice(args);
        run("ctr", &all)
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
        // restrict_oom_score_adj: a containerd that may not lower a
        // score below its own (inside a container, as on CI machines)
        // would fail every sandbox at `oom_score_adj -998`.
        let config = format!(
            "version = 2\nroot = {root:?}\nstate = {state:?}\n\
             [grpc]\n  address = {socket:?}\n[ttrpc]\n  address = {ttrpc:?}\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = {image:?}\n  restrict_oom_score_adj = true\n\
             [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  conf_dir = {cni:?}\n  bin_dir = {bin:?}\n",
            image = PAUSE_IMAGE,
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
        // The check removes its sandboxes; a test that failed half-way may
        // leave one, whose shim and process would outlive containerd.
        if self.child.is_some() {
            for id in self.cri_containers().unwrap_or_default() {
                let _ = self.ctr(&["tasks", "kill", "--signal", "SIGKILL", &id]);
                let _ = self.ctr(&["tasks", "delete", "--force", &id]);
                let _ = self.ctr(&["containers", "delete", &id]);
            }
        }
        self.kill();
    }
}

/// `tar -cf to` of `entries` in `from`.
fn tar(from: &Path, to: &Path, entries: &[&str]) -> Result<(), String> {
    let (from, to) = (from.display().to_string(), to.display().to_string());
    let args: Vec<&str> = ["-C", &from, "-cf", &to]
        .into_iter()
        .chain(entries.iter().copied())
        .collect();
    run("tar", &args).map(drop)
}

/// Writes an OCI image archive of [`PAUSE_IMAGE`] into `dir`: one layer
/// with busybox as `/sleep`, whose entrypoint sleeps until killed.
fn pause_image_archive(dir: &Path) -> Result<PathBuf, String> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |e: std::io::Error| format!("{what}: {e}")
    };
    let linked = Command::new("ldd").arg(BUSYBOX).output();
    if !linked.is_ok_and(|o| String::from_utf8_lossy(&o.stderr).contains("not a dynamic")) {
        return Err(format!(
            "{BUSYBOX} is missing or not static (Debian: apt-get install busybox-static)"
        ));
    }
    let layer_dir = dir.join("layer");
    let blobs = dir.join("oci/blobs/sha256");
    std::fs::create_dir_all(&layer_dir).map_err(io("the layer dir"))?;
    std::fs::create_dir_all(&blobs).map_err(io("the blobs dir"))?;
    std::fs::copy(BUSYBOX, layer_dir.join("sleep")).map_err(io("copying busybox"))?;
    let layer_tar = dir.join("layer.tar");
    tar(&layer_dir, &layer_tar, &["sleep"])?;
    let blob = |bytes: &[u8]| -> Result<(String, usize), String> {
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(blobs.join(&hex), bytes).map_err(io("a blob"))?;
        Ok((format!("sha256:{hex}"), bytes.len()))
    };
    let (layer, layer_size) = blob(&std::fs::read(&layer_tar).map_err(io("the layer"))?)?;
    let config = serde_json::json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "config": {"Entrypoint": ["/sleep", "2147483647"]},
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    });
    let (config, config_size) = blob(config.to_string().as_bytes())?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}],
    });
    let (manifest, manifest_size) = blob(manifest.to_string().as_bytes())?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": PAUSE_IMAGE},
        }],
    });
    let oci = dir.join("oci");
    std::fs::write(oci.join("index.json"), index.to_string()).map_err(io("index.json"))?;
    std::fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(io("oci-layout"))?;
    let archive = dir.join("pause.tar");
    tar(&oci, &archive, &["oci-layout", "index.json", "blobs"])?;
    Ok(archive)
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

//! A real slow disk: an ext4 file system on a loop device whose writes a
//! block-I/O cgroup throttles, for the processes a test puts in it. This is
//! the Satellite article's incident (etcd on a slow network disk) made on
//! one machine without device-mapper: `fdatasync` from an admitted process
//! waits for the throttled device as it would for a congested volume.
//!
//! Root only (`losetup`, `mount`, cgroups). Everything is named
//! `starling-slowdisk-PID-N`, so what a killed test left behind is found and
//! removed by the next one; `Drop` undoes the rest in reverse order.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::netlab::skip_or_fail;
use crate::tool::run;

const PREFIX: &str = "starling-slowdisk-";
/// Big enough for etcd's preallocated WAL segments (64 MiB each); sparse,
/// so the host pays only for what is written.
const IMAGE_BYTES: u64 = 512 << 20;
const CGROUP_V1: &str = "/sys/fs/cgroup/blkio";
const CGROUP_V2: &str = "/sys/fs/cgroup";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A mounted file system on a loop device, and the cgroup that throttles
/// its writes.
#[derive(Debug)]
pub struct SlowDisk {
    loop_device: String,
    /// `major:minor` of the loop device, as the cgroup files want it.
    device_number: String,
    mounted: bool,
    cgroup: Cgroup,
    /// Holds the image and the mount point.
    dir: tempfile::TempDir,
}

impl SlowDisk {
    /// Where the file system is mounted: put the slow process's data here.
    pub fn mount_point(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// Puts process `pid` (all its threads) in the throttled cgroup; it
    /// stays there until it exits.
    pub fn admit(&self, pid: u32) -> Result<(), String> {
        write(&self.cgroup.path().join("cgroup.procs"), &pid.to_string())
    }

    /// Limits the admitted processes to `iops` writes per second on this
    /// disk (a local SSD does tens of thousands; a congested network
    /// volume a few dozen) until the returned guard is dropped.
    pub fn throttle_writes(&self, iops: u32) -> Result<Throttled<'_>, String> {
        self.limit(Limit::Iops(iops))?;
        Ok(Throttled(self))
    }

    /// Limits the admitted processes to `bytes_per_second` of writes on
    /// this disk until the returned guard is dropped: a volume that keeps
    /// up with a trickle and falls behind under load.
    pub fn throttle_write_bytes(&self, bytes_per_second: u32) -> Result<Throttled<'_>, String> {
        self.limit(Limit::Bytes(bytes_per_second))?;
        Ok(Throttled(self))
    }

    fn limit(&self, limit: Limit) -> Result<(), String> {
        let device = &self.device_number;
        // 0 removes a v1 rule; "max" is v2's word for no limit.
        let (v1_file, v2_key, value) = match limit {
            Limit::Iops(n) => ("blkio.throttle.write_iops_device", "wiops", n),
            Limit::Bytes(n) => ("blkio.throttle.write_bps_device", "wbps", n),
        };
        match &self.cgroup {
            Cgroup::V1(dir) => write(&dir.join(v1_file), &format!("{device} {value}")),
            Cgroup::V2(dir) => {
                let value = if value == 0 {
                    "max".to_owned()
                } else {
                    value.to_string()
                };
                write(&dir.join("io.max"), &format!("{device} {v2_key}={value}"))
            }
        }
    }

    fn create() -> Result<SlowDisk, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("a throttled loop device needs root".to_owned());
        }
        reap_stale();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let cgroup = Cgroup::create(&name)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .map_err(|e| format!("a temporary directory: {e}"))?;
        let image = dir.path().join("disk.img");
        std::fs::File::create(&image)
            .and_then(|file| file.set_len(IMAGE_BYTES))
            .map_err(|e| format!("the disk image {}: {e}", image.display()))?;
        let loop_device = run("losetup", &["--find", "--show", &display(&image)])?;
        // From here on, Drop detaches, unmounts and removes what exists.
        let mut disk = SlowDisk {
            device_number: device_number(&loop_device)?,
            loop_device,
            mounted: false,
            cgroup,
            dir,
        };
        run("mkfs.ext4", &["-q", &disk.loop_device])?;
        std::fs::create_dir(disk.mount_point()).map_err(|e| format!("the mount point: {e}"))?;
        run("mount", &[&disk.loop_device, &display(&disk.mount_point())])?;
        disk.mounted = true;
        Ok(disk)
    }
}

impl Drop for SlowDisk {
    fn drop(&mut self) {
        // Lazily: a process of the test may still hold a file open; the
        // file system goes once it lets go, and the loop device with it.
        if self.mounted {
            let _ = run("umount", &["--lazy", &display(&self.mount_point())]);
        }
        let _ = run("losetup", &["--detach", &self.loop_device]);
    }
}

/// A slow disk, or `None` after printing why (not root, no loop devices,
/// no block-I/O controller); panics instead when
/// `STARLING_REQUIRE_NETNS=1`, as `scripts/test` sets as root.
pub fn slow_disk_or_skip() -> Option<SlowDisk> {
    match SlowDisk::create() {
        Ok(disk) => Some(disk),
        Err(why) => {
            skip_or_fail(&format!("no throttled disk: {why}"));
            None
        }
    }
}

/// A write limit on a [`SlowDisk`], lifted when dropped: the writes it
/// holds back go out at once, so a process of the test that is killed
/// afterwards exits without waiting for them (a throttled `fdatasync` is not
/// interruptible, not even by SIGKILL).
#[must_use = "the limit is lifted when the guard is dropped"]
#[derive(Debug)]
pub struct Throttled<'a>(&'a SlowDisk);

impl Drop for Throttled<'_> {
    fn drop(&mut self) {
        let _ = self.0.limit(Limit::Iops(0));
        let _ = self.0.limit(Limit::Bytes(0));
    }
}

#[derive(Clone, Copy)]
enum Limit {
    Iops(u32),
    Bytes(u32),
}

#[derive(Debug)]
enum Cgroup {
    /// `blkio.throttle.write_iops_device` in a v1 blkio hierarchy.
    V1(PathBuf),
    /// `io.max` in the unified hierarchy.
    V2(PathBuf),
}

impl Cgroup {
    fn create(name: &str) -> Result<Cgroup, String> {
        let cgroup = if Path::new(CGROUP_V1).join("blkio.reset_stats").exists() {
            Cgroup::V1(Path::new(CGROUP_V1).join(name))
        } else if std::fs::read_to_string(Path::new(CGROUP_V2).join("cgroup.controllers"))
            .is_ok_and(|controllers| controllers.split_whitespace().any(|c| c == "io"))
        {
            // The io controller must be on for the root's children.
            write(&Path::new(CGROUP_V2).join("cgroup.subtree_control"), "+io")?;
            Cgroup::V2(Path::new(CGROUP_V2).join(name))
        } else {
            return Err("no block-I/O cgroup controller (v1 blkio or v2 io)".to_owned());
        };
        std::fs::create_dir(cgroup.path())
            .map_err(|e| format!("creating the cgroup {}: {e}", cgroup.path().display()))?;
        Ok(cgroup)
    }

    fn path(&self) -> &Path {
        match self {
            Cgroup::V1(dir) | Cgroup::V2(dir) => dir,
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Fails while an admitted process lives; the next test's reaping
        // removes it then.
        let _ = std::fs::remove_dir(self.path());
    }
}

/// Removes the cgroups, mounts, loop devices and directories of slow disks
/// whose test process is gone.
fn reap_stale() {
    // `starling-slowdisk-PID-…` of a process that is gone.
    let dead = |name: &str| {
        name.strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .is_some_and(|pid| !Path::new("/proc").join(pid).exists())
    };
    // `DEVICE PATH` lines (mounts, `losetup --list`) whose path is a dead test's.
    let stale_lines = |text: String| -> Vec<(String, String)> {
        text.lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
            })
            .filter(|(_, path)| path.split('/').any(dead))
            .collect()
    };
    let stale_entries = |parent: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(parent)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| dead(&entry.file_name().to_string_lossy()))
            .map(|entry| entry.path())
            .collect()
    };
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for (device, mount_point) in stale_lines(mounts) {
        let _ = run("umount", &["--lazy", &mount_point]);
        let _ = run("losetup", &["--detach", &device]);
    }
    let attached = run(
        "losetup",
        &["--list", "--noheadings", "--output", "NAME,BACK-FILE"],
    );
    for (device, _) in stale_lines(attached.unwrap_or_default()) {
        let _ = run("losetup", &["--detach", &device]);
    }
    for cgroup in [CGROUP_V1, CGROUP_V2]
        .into_iter()
        .flat_map(|dir| stale_entries(Path::new(dir)))
    {
        let _ = std::fs::remove_dir(cgroup);
    }
    for dir in stale_entries(&std::env::temp_dir()) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// `major:minor` of a block device such as `/dev/loop3`, as sysfs says it.
fn device_number(device: &str) -> Result<String, String> {
    let name = device.rsplit('/').next().unwrap_or(device);
    let path = format!("/sys/class/block/{name}/dev");
    std::fs::read_to_string(&path)
        .map(|number| number.trim().to_owned())
        .map_err(|e| format!("{path}: {e}"))
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("writing {value:?} to {}: {e}", path.display()))
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

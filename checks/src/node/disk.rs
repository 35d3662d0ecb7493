//! Free space and free inodes of the filesystems under given paths (the
//! agent's data dir, the kubelet's and the container runtime's), against
//! watermarks. A full disk is the node failure operators meet most: pods
//! are evicted, images cannot be pulled, and etcd stops.

use std::path::PathBuf;

use nix::sys::statvfs::statvfs;
use serde_json::json;

use crate::checker::{BoxFuture, Checker, Scope};
use crate::result::{Outcome, Status};

/// Free space and free inodes below these percentages are warning and
/// critical (one pair of watermarks for both: a filesystem is as full as
/// its scarcer resource).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Watermarks {
    pub warning_free_percent: f64,
    pub critical_free_percent: f64,
}

impl Default for Watermarks {
    fn default() -> Self {
        // The kubelet's default hard eviction is at 10% free (nodefs); warn
        // before it, and call it critical at half of it.
        Watermarks {
            warning_free_percent: 15.0,
            critical_free_percent: 5.0,
        }
    }
}

#[derive(Debug)]
pub struct DiskCheck {
    paths: Vec<PathBuf>,
    marks: Watermarks,
}

impl DiskCheck {
    pub fn new(paths: Vec<PathBuf>, marks: Watermarks) -> Self {
        DiskCheck { paths, marks }
    }

    fn status_of(&self, free_percent: f64) -> Status {
        if free_percent < self.marks.critical_free_percent {
            Status::Critical
        } else if free_percent < self.marks.warning_free_percent {
            Status::Warning
        } else {
            Status::Ok
        }
    }
}

/// One path's filesystem, measured.
struct Usage {
    path: String,
    free_percent: f64,
    free_bytes: u64,
    /// `None` where the filesystem has no fixed inode table (btrfs reports
    /// zero inodes).
    inodes_free_percent: Option<f64>,
}

fn usage(path: &std::path::Path) -> nix::Result<Usage> {
    let stat = statvfs(path)?;
    let fragment = stat.fragment_size() as u64;
    let blocks = stat.blocks() as u64;
    // Available to unprivileged writers (what the kubelet and pods see),
    // not the root reserve.
    let available = stat.blocks_available() as u64;
    let free_percent = if blocks == 0 {
        100.0
    } else {
        available as f64 * 100.0 / blocks as f64
    };
    let files = stat.files() as u64;
    let inodes_free_percent =
        (files > 0).then(|| stat.files_available() as f64 * 100.0 / files as f64);
    Ok(Usage {
        path: path.display().to_string(),
        free_percent,
        free_bytes: available * fragment,
        inodes_free_percent,
    })
}

impl Checker for DiskCheck {
    fn name(&self) -> &str {
        "disk"
    }

    fn scope(&self) -> Scope {
        Scope::EveryNode
    }

    fn check(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            // (status, free %, line) per path; the most urgent is reported.
            let mut found: Vec<(Status, f64, String)> = Vec::new();
            let mut facts = Vec::new();
            for path in &self.paths {
                match usage(path) {
                    Ok(usage) => {
                        let scarcer = usage
                            .inodes_free_percent
                            .map_or(usage.free_percent, |i| i.min(usage.free_percent));
                        facts.push(json!({
                            "path": usage.path,
                            "free_percent": usage.free_percent,
                            "free_bytes": usage.free_bytes,
                            "inodes_free_percent": usage.inodes_free_percent,
                        }));
                        let inodes = usage
                            .inodes_free_percent
                            .map_or_else(|| "n/a".to_owned(), |p| format!("{p:.1}% free"));
                        let line = format!(
                            "{}: {:.1}% free ({}), inodes {inodes}",
                            usage.path,
                            usage.free_percent,
                            bytes(usage.free_bytes),
                        );
                        found.push((self.status_of(scarcer), scarcer, line));
                    }
                    // A path that cannot be measured is a misconfiguration
                    // or a missing mount: say which, do not guess.
                    Err(error) => found.push((
                        Status::Unknown,
                        100.0,
                        format!("{}: {error}", path.display()),
                    )),
                }
            }
            let urgency = |status: Status| match status {
                Status::Ok => 0,
                Status::Warning => 1,
                Status::Unknown => 2,
                Status::Critical => 3,
            };
            let Some((status, _, line)) = found
                .into_iter()
                .max_by(|a, b| urgency(a.0).cmp(&urgency(b.0)).then(b.1.total_cmp(&a.1)))
            else {
                return Outcome::unknown("no paths to check");
            };
            let message = match status {
                Status::Ok => format!("{} paths ok; the fullest: {line}", self.paths.len()),
                Status::Warning | Status::Critical => format!(
                    "{line} (warning below {}%, critical below {}% free)",
                    self.marks.warning_free_percent, self.marks.critical_free_percent
                ),
                Status::Unknown => line,
            };
            Outcome::new(status, message).with_details(json!({ "paths": facts }))
        })
    }
}

/// Free space in the unit that keeps a digit: 250 KiB is not "0 MiB".
fn bytes(n: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    match n {
        n if n >= 10 * GIB => format!("{} GiB", n / GIB),
        n if n >= GIB => format!("{:.1} GiB", n as f64 / GIB as f64),
        n if n >= MIB => format!("{} MiB", n / MIB),
        n if n >= KIB => format!("{} KiB", n / KIB),
        n => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn free_space_keeps_a_digit() {
        assert_eq!(bytes(250 << 10), "250 KiB");
        assert_eq!(bytes(512), "512 bytes");
        assert_eq!(bytes(300 << 20), "300 MiB");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        assert_eq!(bytes(40 << 30), "40 GiB");
    }
}

//! A small file system of its own (tmpfs), for a node's data directory,
//! that a test fills to the last block and empties again: the disk-full
//! path with a real `ENOSPC` from the kernel, not a simulated error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::skip_or_fail;

/// A mounted tmpfs of a fixed size; unmounted when dropped.
#[derive(Debug)]
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// A tmpfs of `bytes` (rounded up to pages) mounted on a fresh
    /// directory. Needs root (or `CAP_SYS_ADMIN`).
    pub fn mount(bytes: u64) -> Result<SmallDisk, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount tmpfs: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(SmallDisk { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until the kernel refuses a single byte more
    /// (`ENOSPC`); returns its path, to delete when space should return.
    pub fn fill(&self) -> Result<PathBuf, String> {
        let filler = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&filler).map_err(|e| format!("filler: {e}"))?;
        let block = vec![0xa5u8; 64 << 10];
        let mut piece = block.as_slice();
        loop {
            match file.write(piece) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => {
                    // Down to single bytes: the last block is taken too.
                    if piece.len() == 1 {
                        break;
                    }
                    piece = &piece[..piece.len() / 2];
                }
                Err(e) => return Err(format!("filling: {e}")),
            }
        }
        file.sync_all().map_err(|e| format!("filler sync: {e}"))?;
        Ok(filler)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: an agent of the test may still hold its database open.
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(self.dir.path())
            .output();
    }
}

/// A small disk, or `None` after printing why (not root); panics instead
/// when `STARLING_REQUIRE_NETNS=1`, as `scripts/test` sets as root.
pub fn small_disk_or_skip(bytes: u64) -> Option<SmallDisk> {
    match SmallDisk::mount(bytes) {
        Ok(disk) => Some(disk),
        Err(why) => {
            skip_or_fail(&format!("no small disk: {why}"));
            None
        }
    }
}

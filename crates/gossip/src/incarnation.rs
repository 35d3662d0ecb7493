//! The process incarnation, persisted in the data dir so that it strictly
//! increases across restarts even when the clock steps back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const FILE: &str = "incarnation";

/// The least a restart raises the incarnation by. A running process
/// raises its own in steps of one without writing them down (a renewal
/// after a false Down, a new service address), so a restart must land above
/// all of those, and members tell the two apart by the size of the step.
pub const RESTART_STEP: u64 = 1 << 16;

#[derive(Debug, thiserror::Error)]
#[error("--data-dir {}: {action}: {source}", path.display())]
pub struct DataDirError {
    pub path: PathBuf,
    pub action: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// Read the last incarnation, pick a higher one, and store it durably
/// before the agent announces it: a crash right after must not reuse it.
///
/// It starts from the wall clock in ms only so that a wiped data dir still
/// lands above the incarnations the cluster remembers. It is not a time:
/// restarts closer together than `RESTART_STEP` (65 s) push it ahead of the
/// clock by that much each, and nothing reads it as one (it orders
/// identities, names history rows, and is shown as a plain number).
pub fn next(data_dir: &Path) -> Result<u64, DataDirError> {
    let fail = |action, source| DataDirError {
        path: data_dir.to_owned(),
        action,
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(|e| fail("cannot create", e))?;
    let path = data_dir.join(FILE);
    let previous = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().unwrap_or(0),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
        Err(error) => return Err(fail("cannot read the incarnation file", error)),
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let next = now_ms.max(previous + RESTART_STEP);
    let temporary = data_dir.join(format!("{FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        writeln!(file, "{next}")?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        // The rename is durable only once the directory is synced.
        std::fs::File::open(data_dir)?.sync_all()
    };
    write().map_err(|e| fail("cannot write the incarnation file", e))?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increases_across_restarts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = next(dir.path()).expect("writable");
        let second = next(dir.path()).expect("writable");
        assert!(second >= first + RESTART_STEP);
        // A clock far behind the stored value cannot make it go back.
        std::fs::write(dir.path().join(FILE), format!("{}\n", u64::MAX / 2)).expect("write");
        assert_eq!(
            next(dir.path()).expect("writable"),
            u64::MAX / 2 + RESTART_STEP
        );
    }

    #[test]
    fn an_unusable_data_dir_names_the_flag_and_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").expect("write");
        let error = next(&file.join("sub")).expect_err("a file is in the way");
        let message = error.to_string();
        assert!(message.starts_with("--data-dir "), "{message}");
        assert!(message.contains("not-a-dir"), "{message}");
    }
}

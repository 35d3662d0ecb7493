//! Running the machine's own tools (`losetup`, `tar`, `ctr`, `promtool`,
//! `amtool`) from fixtures, with what went wrong said in one line.

use std::process::Command;

/// Runs a tool to completion; its trimmed stdout, or what went wrong.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Runs a checker (`promtool`, `amtool`) to completion: what it printed on
/// both streams, as `Ok` when it exited 0 and `Err` otherwise.
pub(crate) fn report(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(said)
    } else {
        Err(said)
    }
}

//! Readers for what the kernel already counts: per-process memory and CPU
//! from /proc, loopback traffic from /sys, and the machine facts a report
//! needs to be reproducible. Reading counters costs the agents nothing,
//! unlike asking them.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

const LO_TX_BYTES: &str = "/sys/class/net/lo/statistics/tx_bytes";
/// Bound on every helper command we run (`getconf`, `serf version`, ...).
const HELPER_TIMEOUT: Duration = Duration::from_secs(10);

/// Resident memory in KiB (`VmRSS` in /proc/PID/status).
pub fn rss_kib(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status).ok_or_else(|| invalid(format!("no VmRSS for pid {pid}")))
}

/// CPU time used so far, in clock ticks (utime + stime of /proc/PID/stat).
pub fn cpu_ticks(pid: u32) -> std::io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_ticks(&stat).ok_or_else(|| invalid(format!("unreadable /proc/{pid}/stat")))
}

/// Bytes sent on the loopback interface since boot. Every packet between
/// two local agents crosses `lo` exactly once, so tx counts each once.
pub fn lo_tx_bytes() -> std::io::Result<u64> {
    let text = std::fs::read_to_string(LO_TX_BYTES)?;
    text.trim()
        .parse()
        .map_err(|_| invalid(format!("{LO_TX_BYTES}: not a number: {text:?}")))
}

/// A field of this process's /proc/self/status (`VmRSS:`, `VmHWM:`), KiB.
pub fn self_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets this process's VmHWM to its current RSS (Linux: "5" to
/// clear_refs), so a phase's peak is its own. Without permission the peak
/// is the process's so far, which only overstates.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces;
    // count fields from the last ')'. After it, field 3 (state) is index 0,
    // so utime (14) and stime (15) are indices 11 and 12.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second, and where the number came from.
pub async fn clock_ticks() -> (u64, &'static str) {
    match helper_output("getconf", &["CLK_TCK"]).await {
        Some(text) => match text.trim().parse() {
            Ok(ticks) if ticks > 0 => (ticks, "getconf CLK_TCK"),
            _ => (100, "assumed 100 (getconf CLK_TCK unreadable)"),
        },
        None => (100, "assumed 100 (getconf unavailable)"),
    }
}

/// Loopback traffic in bytes/s over `over`, measured while nothing of
/// ours runs: the noise floor under the gossip numbers.
pub async fn lo_background_rate(over: Duration) -> std::io::Result<f64> {
    let before = lo_tx_bytes()?;
    tokio::time::sleep(over).await;
    let after = lo_tx_bytes()?;
    Ok(after.saturating_sub(before) as f64 / over.as_secs_f64())
}

/// `starling_gossip_sent_bytes_total` from one agent's /metrics.
pub async fn starling_sent_bytes(http: &reqwest::Client, ip: Ipv4Addr) -> Option<u64> {
    let url = format!("http://{ip}:7947/metrics");
    let body = http.get(url).send().await.ok()?.text().await.ok()?;
    parse_counter(&body, "starling_gossip_sent_bytes_total")
}

fn parse_counter(exposition: &str, name: &str) -> Option<u64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        // Counters are exposed as integers or floats depending on the type.
        value
            .split_whitespace()
            .next()?
            .parse::<f64>()
            .ok()
            .map(|v| v as u64)
    })
}

/// What the report says about the machine.
#[derive(Debug, Clone)]
pub struct MachineFacts {
    pub cpus: usize,
    pub kernel: String,
    pub serf_version: Option<String>,
    pub serf_package: Option<String>,
    pub release_build: bool,
}

impl MachineFacts {
    pub async fn collect(serf: Option<&Path>) -> MachineFacts {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|text| text.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        let (serf_version, serf_package) = match serf {
            Some(serf) => {
                let exe = serf.to_string_lossy().into_owned();
                let version = helper_output(&exe, &["version"])
                    .await
                    .and_then(|text| text.lines().next().map(str::to_owned));
                // `serf version` of Debian's build does not name the Debian
                // version it was packaged as; dpkg does.
                let package = helper_output("dpkg-query", &["-W", "-f=${Version}", "serf"]).await;
                (version, package.filter(|text| !text.is_empty()))
            }
            None => (None, None),
        };
        MachineFacts {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel,
            serf_version,
            serf_package,
            release_build: !cfg!(debug_assertions),
        }
    }
}

/// stdout of a short helper command, or None if it failed or hung.
async fn helper_output(program: &str, args: &[&str]) -> Option<String> {
    let mut command = Command::new(program);
    command.args(args).kill_on_drop(true);
    let output = tokio::time::timeout(HELPER_TIMEOUT, command.output())
        .await
        .ok()?
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tserf\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t8\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
    }

    #[test]
    fn reads_cpu_ticks_even_with_spaces_in_the_name() {
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(12));
    }

    #[test]
    fn reads_a_counter_and_ignores_similar_names() {
        let body = "# TYPE starling_gossip_sent_bytes counter\n\
                    starling_gossip_sent_bytes_total_x 1\n\
                    starling_gossip_sent_bytes_total 1035\n";
        assert_eq!(
            parse_counter(body, "starling_gossip_sent_bytes_total"),
            Some(1035)
        );
    }
}

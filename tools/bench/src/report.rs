//! The Markdown report: setup, a summary table with the goals' ratios,
//! every run, and how to read it.

use std::fmt::Write as _;
use std::time::Duration;

use super::measure::MachineFacts;
use super::results::{Idle, RunTiming, SystemResult, median};

#[derive(Debug)]
pub struct Report {
    pub command_line: String,
    pub nodes: usize,
    pub runs: usize,
    pub settle: Duration,
    pub idle_window: Duration,
    pub facts: MachineFacts,
    pub clock_ticks: (u64, &'static str),
    /// starling's gossip timing at N, one line.
    pub starling_timing: String,
    pub systems: Vec<SystemResult>,
}

/// Loopback traffic above this before start makes the traffic numbers
/// suspect (the loopback counters are shared by the whole machine).
pub const QUIET_LO_BYTES_PER_SEC: f64 = 1024.0;

fn min_max(values: &[f64]) -> Option<(f64, f64)> {
    let min = values.iter().copied().reduce(f64::min)?;
    let max = values.iter().copied().reduce(f64::max)?;
    Some((min, max))
}

/// One metric of one system: its per-run (or per-agent) values.
#[derive(Debug, Default)]
struct Cell {
    values: Vec<f64>,
    /// Runs that timed out (counted, never dropped silently).
    timeouts: usize,
    /// The cell shows "median (max)" instead of "median (min–max)".
    max_only: bool,
}

impl Cell {
    fn median(&self) -> Option<f64> {
        median(&self.values)
    }

    fn render(&self, precision: usize) -> String {
        let mut text = match (self.median(), min_max(&self.values)) {
            (Some(median), Some((min, max))) if self.values.len() > 1 => {
                if self.max_only {
                    format!("{median:.precision$} (max {max:.precision$})")
                } else {
                    format!("{median:.precision$} ({min:.precision$}–{max:.precision$})")
                }
            }
            (Some(median), _) => format!("{median:.precision$}"),
            _ => "—".to_owned(),
        };
        if self.timeouts > 0 {
            let _ = write!(text, " **{} timed out**", self.timeouts);
        }
        text
    }
}

fn run_cell(runs: &[RunTiming], pick: impl Fn(&RunTiming) -> Option<Duration>) -> Cell {
    let mut cell = Cell::default();
    for run in runs {
        match pick(run) {
            Some(time) => cell.values.push(time.as_secs_f64()),
            None => cell.timeouts += 1,
        }
    }
    cell
}

/// The summary rows: label, the cells by system, and the goal if any.
struct Row {
    label: &'static str,
    precision: usize,
    goal: Option<f64>,
    cell: fn(&SystemResult) -> Cell,
}

const ROWS: [Row; 9] = [
    Row {
        label: "convergence: every agent saw every other join (s)",
        precision: 2,
        goal: None,
        cell: |s| Cell {
            values: s.convergence.map(|d| d.as_secs_f64()).into_iter().collect(),
            ..Cell::default()
        },
    },
    Row {
        label: "failure detection, first survivor (s)",
        precision: 3,
        goal: None,
        cell: |s| run_cell(&s.failures, RunTiming::first),
    },
    Row {
        label: "failure detection, last survivor (s)",
        precision: 3,
        goal: Some(0.33),
        cell: |s| run_cell(&s.failures, RunTiming::last),
    },
    Row {
        label: "leave dissemination, median receiver (s)",
        precision: 3,
        goal: None,
        cell: |s| run_cell(&s.leaves, RunTiming::median),
    },
    Row {
        label: "leave dissemination, last receiver (s)",
        precision: 3,
        goal: Some(1.0),
        cell: |s| run_cell(&s.leaves, RunTiming::last),
    },
    Row {
        label: "idle RSS per agent (MiB)",
        precision: 1,
        goal: Some(1.0),
        cell: |s| idle_cell(s, |i| i.rss_kib.iter().map(|k| k / 1024.0).collect()),
    },
    Row {
        label: "idle CPU per agent (% of one core)",
        precision: 2,
        goal: None,
        cell: |s| idle_cell(s, |i| i.cpu_percent.clone()),
    },
    Row {
        label: "idle gossip traffic per agent, lo tx (B/s)",
        precision: 0,
        goal: None,
        cell: |s| idle_cell(s, |i| vec![i.lo_bytes_per_sec]),
    },
    Row {
        label: "idle gossip traffic per agent, own counter (B/s)",
        precision: 0,
        goal: None,
        cell: |s| {
            idle_cell(s, |i| {
                i.counter_bytes_per_sec
                    .map(|(rate, _)| rate)
                    .into_iter()
                    .collect()
            })
        },
    },
];

fn idle_cell(system: &SystemResult, values: impl Fn(&Idle) -> Vec<f64>) -> Cell {
    Cell {
        values: system.idle.as_ref().map(values).unwrap_or_default(),
        max_only: true,
        ..Cell::default()
    }
}

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let names: Vec<&str> = report.systems.iter().map(|s| s.system).collect();
    let _ = writeln!(
        out,
        "## Gossip: {} (N = {}, runs = {})\n",
        names.join(" vs "),
        report.nodes,
        report.runs
    );
    render_setup(&mut out, report);

    let _ = writeln!(
        out,
        "| metric | {} | starling/serf | goal |",
        names.join(" | ")
    );
    let _ = writeln!(out, "|---|{}---|---|", "---|".repeat(names.len()));
    for row in &ROWS {
        let cells: Vec<Cell> = report.systems.iter().map(row.cell).collect();
        let rendered: Vec<String> = cells.iter().map(|c| c.render(row.precision)).collect();
        let ratio = ratio(report, &cells);
        // A median over the runs that finished flatters whoever timed out.
        let timed_out = cells.iter().any(|cell| cell.timeouts > 0);
        let (ratio_text, goal_text) = match (ratio, row.goal) {
            (Some(r), Some(goal)) => {
                let verdict = if timed_out {
                    "**unclear: runs timed out**"
                } else if r <= goal {
                    "met"
                } else {
                    "**missed**"
                };
                (format!("{r:.2}"), format!("≤ {goal} ({verdict})"))
            }
            (Some(r), None) => (format!("{r:.2}"), String::new()),
            (None, Some(goal)) => ("—".to_owned(), format!("≤ {goal}")),
            (None, None) => ("—".to_owned(), String::new()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {ratio_text} | {goal_text} |",
            row.label,
            rendered.join(" | ")
        );
    }
    let surprises: Vec<String> = report
        .systems
        .iter()
        .map(|s| s.idle_surprises.len().to_string())
        .collect();
    let _ = writeln!(
        out,
        "| suspect/down/left lines while idle (expect 0) | {} | | |",
        surprises.join(" | ")
    );

    render_runs(&mut out, report);
    render_notes(&mut out, report);
    out
}

/// starling's median over Serf's, when both exist.
fn ratio(report: &Report, cells: &[Cell]) -> Option<f64> {
    let find = |name: &str| {
        let index = report.systems.iter().position(|s| s.system == name)?;
        cells[index].median()
    };
    let (starling, serf) = (find("starling")?, find("serf")?);
    (serf > 0.0).then(|| starling / serf)
}

fn render_setup(out: &mut String, report: &Report) {
    let facts = &report.facts;
    let _ = writeln!(out, "- Command: `{}`", report.command_line);
    let build = if facts.release_build {
        "release build"
    } else {
        "**debug build: starling's numbers are pessimistic**"
    };
    let together = if report.systems.len() > 1 {
        ", both systems in the same run, one after the other"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "- Machine: {} CPUs, Linux {}, {build}; every agent a separate process on this machine{together}",
        facts.cpus, facts.kernel
    );
    if let Some(version) = &facts.serf_version {
        let package = facts
            .serf_package
            .as_deref()
            .map(|p| format!(" (Debian package {p})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "- Serf: `serf version` says `{version}`{package}; `-profile lan`, encrypted"
        );
    }
    let _ = writeln!(out, "- starling gossip timing: {}", report.starling_timing);
    for system in &report.systems {
        let quiet = match system.lo_background {
            Some(rate) if rate > QUIET_LO_BYTES_PER_SEC => {
                format!("**loopback was busy before start: {rate:.0} B/s**")
            }
            Some(rate) => format!("loopback background before start {rate:.0} B/s"),
            None => "loopback background unknown".to_owned(),
        };
        let _ = writeln!(
            out,
            "- {}: agents on {}; {quiet}",
            system.system, system.addresses
        );
    }
    let _ = writeln!(
        out,
        "- Idle window: {} s, starting {} s after convergence; CPU from /proc/PID/stat at {} ticks/s ({})\n",
        report.idle_window.as_secs(),
        report.settle.as_secs(),
        report.clock_ticks.0,
        report.clock_ticks.1
    );
}

fn render_runs(out: &mut String, report: &Report) {
    let _ = writeln!(
        out,
        "\n### Per run (s; \"timeout\" = not every agent logged it within the bound)\n"
    );
    let _ = writeln!(
        out,
        "| system | run | leave victim | median receiver | last receiver | kill victim | first survivor | last survivor |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    let show = |time: Option<Duration>, run: Option<&RunTiming>| match (time, run) {
        (Some(time), _) => format!("{:.3}", time.as_secs_f64()),
        (None, Some(run)) => format!("timeout ({}/{})", run.times.len(), run.receivers),
        (None, None) => "—".to_owned(),
    };
    for system in &report.systems {
        for run in 0..report.runs {
            let leave = system.leaves.get(run);
            let fail = system.failures.get(run);
            if leave.is_none() && fail.is_none() {
                continue;
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                system.system,
                run + 1,
                leave.map_or("—", |r| r.victim.as_str()),
                show(leave.and_then(RunTiming::median), leave),
                show(leave.and_then(RunTiming::last), leave),
                fail.map_or("—", |r| r.victim.as_str()),
                show(fail.and_then(RunTiming::first), fail),
                show(fail.and_then(RunTiming::last), fail),
            );
        }
    }
}

fn render_notes(out: &mut String, report: &Report) {
    let _ = writeln!(out, "\n### How to read this\n");
    let notes = [
        "Times run from the harness's action (SIGTERM to the starling agent or start of `serf leave -rpc-addr`; SIGKILL for detection) to the harness receiving each agent's log line (starling `event=left`/`down`, Serf `EventMemberLeave`/`EventMemberFailed`), timestamped on receipt because Serf logs whole seconds.",
        "Convergence runs from starting agent 0 (the seed; the others start once it listens, all within about a second) until every agent logged a join for every other.",
        "Idle cells show the median over agents and the largest agent; RSS per agent is the median of its VmRSS samples (every 5 s). lo tx counts every packet between local agents once, with IP/UDP headers; the own-counter row is starling's `starling_gossip_sent_bytes_total` (envelope included, headers not) and cross-checks it.",
        "Ratios are starling's median over Serf's; the goals are those of the performance issue.",
    ];
    for note in notes {
        let _ = writeln!(out, "- {note}");
    }
    for system in &report.systems {
        if let Some((_, agents)) = system.idle.as_ref().and_then(|i| i.counter_bytes_per_sec)
            && agents < report.nodes
        {
            let _ = writeln!(
                out,
                "- {}: only {agents} of {} agents answered both /metrics scrapes.",
                system.system, report.nodes
            );
        }
        for surprise in system.idle_surprises.iter().take(10) {
            let _ = writeln!(out, "- {} while idle: {surprise}", system.system);
        }
        if let Some(error) = &system.error {
            let _ = writeln!(out, "- **{} did not finish**: {error}", system.system);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incomplete_run_has_no_last_receiver_but_keeps_its_first() {
        let run = RunTiming::new(
            "n3".to_owned(),
            3,
            vec![Duration::from_secs(2), Duration::from_secs(1)],
        );
        assert_eq!(run.first(), Some(Duration::from_secs(1)));
        assert_eq!(run.last(), None);
        let cell = run_cell(&[run], RunTiming::last);
        assert_eq!(cell.timeouts, 1);
        assert!(cell.render(2).contains("1 timed out"));
    }
}

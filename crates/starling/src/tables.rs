//! Tables for people: one line per thing, the answering node named last.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use starling_model::{
    HistoryResponse, MembersResponse, NodeResponse, NodeStatus, NodesResponse, OverlayResponse,
    StatusResponse,
};

pub fn status_table(response: &StatusResponse) -> String {
    let verdict = if response.healthy {
        "healthy"
    } else {
        "NOT HEALTHY"
    };
    let mut out = format!("cluster: {verdict}\n");
    for reason in &response.reasons {
        out.push_str(&format!("  - {reason}\n"));
    }
    if response.reasons_omitted > 0 {
        out.push_str(&format!(
            "  … and {} more (starling nodes --status unhealthy)\n",
            response.reasons_omitted
        ));
    }
    for check in &response.cluster_checks {
        out.push_str(&format!(
            "  {} (cluster, run by {}): {}: {}\n",
            check.check, check.node, check.status, check.message
        ));
    }
    let mut rows = vec![["NODE", "STATUS", "CHECKS"].map(str::to_owned)];
    for node in &response.nodes {
        rows.push([node.name.clone(), node.status.to_string(), check_list(node)]);
    }
    out.push_str(&table(&rows));
    if response.next_cursor.is_some() {
        let n = &response.node_counts;
        out.push_str(&format!(
            "{} of {} nodes shown ({} healthy, {} degraded, {} unreachable, {} unknown); \
             starling nodes lists them all, --status unhealthy the rest that matter\n",
            response.nodes.len(),
            response.nodes_matched,
            n.healthy,
            n.degraded,
            n.unreachable,
            n.unknown
        ));
    }
    let c = &response.counts;
    let side = if response.majority {
        "majority"
    } else {
        "MINORITY"
    };
    out.push_str(&format!(
        "answered by {} ({side} side): {} alive, {} suspect, {} down\n",
        response.answered_by, c.alive, c.suspect, c.down
    ));
    out
}

pub fn history_table(response: &HistoryResponse) -> String {
    let mut rows = vec![
        [
            "TIME",
            "KIND",
            "NODE",
            "CHECK",
            "CHANGE",
            "MESSAGE",
            "RECORDED BY",
        ]
        .map(str::to_owned),
    ];
    for event in &response.events {
        let at = UNIX_EPOCH + Duration::from_millis(event.at_unix_ms);
        let change = match (&event.old_state, &event.new_state) {
            (Some(old), Some(new)) => format!("{old}→{new}"),
            (None, Some(new)) => new.clone(),
            _ => String::new(),
        };
        rows.push([
            humantime::format_rfc3339_millis(at).to_string(),
            event.kind.to_string(),
            event.node.clone(),
            event.check.clone().unwrap_or_default(),
            change,
            event.message.clone(),
            event.observer.clone(),
        ]);
    }
    let mut out = table(&rows);
    let served = match &response.served_by {
        Some(by) if *by != response.answered_by => format!(" from {by}'s history"),
        _ => String::new(),
    };
    out.push_str(&format!(
        "{} events, newest first, answered by {}{served}\n",
        response.events.len(),
        response.answered_by
    ));
    if let Some(why) = &response.incomplete {
        out.push_str(&format!("INCOMPLETE: {why}\n"));
    }
    if let Some(cursor) = &response.next_cursor {
        out.push_str(&format!("older events: add --cursor '{cursor}'\n"));
    }
    out
}

/// `etcd=ok apiserver=critical`: a node's checks on one line.
fn check_list(node: &NodeStatus) -> String {
    let checks: Vec<String> = node
        .checks
        .iter()
        .map(|c| format!("{}={}", c.check, c.status))
        .collect();
    checks.join(" ")
}

pub fn nodes_table(response: &NodesResponse) -> String {
    let mut rows = vec![["NODE", "STATUS", "CHECKS", "REASONS"].map(str::to_owned)];
    for node in &response.nodes {
        rows.push([
            node.name.clone(),
            node.status.to_string(),
            check_list(node),
            node.reasons.join("; "),
        ]);
    }
    let mut out = table(&rows);
    out.push_str(&format!("answered by {}\n", response.answered_by));
    out
}

pub fn node_table(response: &NodeResponse) -> String {
    let mut out = format!("node {}: {}\n", response.name, response.status);
    for reason in &response.reasons {
        out.push_str(&format!("  - {reason}\n"));
    }
    if let Some(member) = &response.member {
        out.push_str(&format!(
            "gossip: {} at {} (incarnation {}, role {}), api {}\n",
            member.state,
            member.addr,
            member.incarnation,
            member.role,
            member.api_addr.as_deref().unwrap_or("-"),
        ));
    }
    let mut rows = vec![["CHECK", "STATUS", "AGE", "DURATION", "MESSAGE"].map(str::to_owned)];
    for check in &response.checks {
        rows.push([
            check.check.clone(),
            check.status.to_string(),
            age(response
                .answered_at_unix_ms
                .saturating_sub(check.at_unix_ms)),
            check
                .duration_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms}ms")),
            check.message.clone(),
        ]);
    }
    out.push_str(&table(&rows));
    if response.checks.iter().any(|c| c.details.is_none()) {
        out.push_str(
            "details and durations are kept by the node that ran the check: ask it with --addr\n",
        );
    }
    out.push_str(&format!("answered by {}\n", response.answered_by));
    out
}

pub fn members_table(response: &MembersResponse) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut rows = vec![[
        "NAME".to_owned(),
        "STATE".to_owned(),
        "FOR".to_owned(),
        "ADDRESS".to_owned(),
        "ROLE".to_owned(),
        "INCARNATION".to_owned(),
    ]];
    for member in &response.members {
        rows.push([
            member.name.clone(),
            member.state.clone(),
            age(now.saturating_sub(member.since_unix_ms)),
            member.addr.clone(),
            member.role.clone(),
            member.incarnation.to_string(),
        ]);
    }
    let mut out = table(&rows);
    let c = &response.counts;
    out.push_str(&format!(
        "answered by {}: {} alive, {} suspect, {} down, {} left\n",
        response.answered_by, c.alive, c.suspect, c.down, c.left
    ));
    out
}

pub fn overlay_table(response: &OverlayResponse) -> String {
    let mut out = String::new();
    for verdict in &response.verdicts {
        out.push_str(&format!("! {verdict}\n"));
    }
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}ms"));
    let mut rows = vec![[
        "FROM".to_owned(),
        "TO".to_owned(),
        "STATUS".to_owned(),
        "LOSS".to_owned(),
        "RTT P50".to_owned(),
        "RTT P95".to_owned(),
        "MESSAGE".to_owned(),
    ]];
    for path in &response.paths {
        rows.push([
            path.from.clone(),
            path.to.clone(),
            path.status.to_string(),
            path.loss_ratio
                .map_or("-".to_owned(), |l| format!("{:.0}%", l * 100.0)),
            ms(path.rtt_p50_ms),
            ms(path.rtt_p95_ms),
            path.message.clone(),
        ]);
    }
    out.push_str(&table(&rows));
    out.push_str(&format!(
        "answered by {} ({} nodes alive, window {}s); figures only for its own paths\n",
        response.answered_by,
        response.nodes.len(),
        response.window_secs
    ));
    out
}

/// Left-aligned columns two spaces apart, widths by characters.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn age(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

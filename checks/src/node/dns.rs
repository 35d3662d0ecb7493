//! Cluster DNS: resolve names (the API server's service name by default)
//! through the node's resolver or a given server, with a query written by
//! hand, so the check can tell "the name does not exist" (NXDOMAIN) from
//! "the server failed" (SERVFAIL) from "nobody answered" — the three
//! incidents an operator handles differently — which a stub resolver's
//! single error would blur.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::UdpSocket;

use crate::checker::{BoxFuture, Checker};
use crate::result::{Outcome, Status};

/// The default name: the API server's Service, which every cluster has.
pub const KUBERNETES_SERVICE_NAME: &str = "kubernetes.default.svc.cluster.local";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSpec {
    /// The server to ask (the node's resolver: the first `nameserver` of
    /// /etc/resolv.conf).
    pub server: SocketAddr,
    /// Fully qualified names that must resolve to at least one address.
    pub names: Vec<String>,
    /// How long to wait for each answer.
    pub query_timeout: Duration,
}

/// The first `nameserver` of a resolv.conf, on port 53.
pub fn resolv_conf_server(text: &str) -> Option<SocketAddr> {
    text.lines()
        .map(|line| line.split(['#', ';']).next().unwrap_or_default())
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .find_map(|ip| ip.parse().ok())
        .map(|ip| SocketAddr::new(ip, 53))
}

#[derive(Debug)]
pub struct DnsCheck {
    spec: DnsSpec,
}

impl DnsCheck {
    pub fn new(spec: DnsSpec) -> Self {
        DnsCheck { spec }
    }
}

impl Checker for DnsCheck {
    fn name(&self) -> &str {
        "dns"
    }

    fn check(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            let mut worst = Status::Ok;
            let mut problems = Vec::new();
            let mut details = Vec::new();
            let mut slowest = Duration::ZERO;
            for name in &self.spec.names {
                let started = Instant::now();
                let answer = resolve(self.spec.server, name, self.spec.query_timeout).await;
                let took = started.elapsed();
                slowest = slowest.max(took);
                let (status, what) = match &answer {
                    Answer::Addresses(list) if !list.is_empty() => {
                        (Status::Ok, format!("{} address(es)", list.len()))
                    }
                    Answer::Addresses(_) => (
                        Status::Critical,
                        "the name exists but has no A record".to_owned(),
                    ),
                    Answer::Truncated => (
                        Status::Warning,
                        "the answer was truncated (TC) before any address: the server wants \
                         TCP, which this check does not use"
                            .to_owned(),
                    ),
                    Answer::NxDomain => (
                        Status::Critical,
                        "NXDOMAIN: the server says the name does not exist".to_owned(),
                    ),
                    Answer::Failed(code) => (
                        Status::Critical,
                        format!("the server failed to answer ({})", rcode_name(*code)),
                    ),
                    Answer::PortUnreachable => (
                        Status::Critical,
                        "port unreachable: no DNS server listens there".to_owned(),
                    ),
                    Answer::Timeout => (
                        Status::Critical,
                        format!("no answer within {}", humantime_ms(self.spec.query_timeout)),
                    ),
                    Answer::Error(reason) => (Status::Unknown, reason.clone()),
                };
                if status != Status::Ok {
                    if worst == Status::Ok || status == Status::Critical {
                        worst = status;
                    }
                    problems.push(format!("{name}: {what}"));
                }
                details.push(json!({
                    "name": name,
                    "status": status.as_str(),
                    "result": what,
                    "latency_ms": took.as_secs_f64() * 1000.0,
                }));
            }
            let server = self.spec.server;
            let message = if problems.is_empty() {
                format!(
                    "{} name(s) resolved by {server}, slowest in {}",
                    self.spec.names.len(),
                    humantime_ms(slowest)
                )
            } else {
                format!("{} (server {server})", problems.join("; "))
            };
            Outcome::new(worst, message)
                .with_details(json!({ "server": server.to_string(), "names": details }))
        })
    }
}

fn humantime_ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// What one query came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Addresses(Vec<Ipv4Addr>),
    NxDomain,
    /// Any other non-zero RCODE (SERVFAIL, REFUSED, ...).
    Failed(u8),
    /// Truncated (TC) before any address: the server wants the question
    /// over TCP, which this check does not ask.
    Truncated,
    /// The server's host answered ICMP port unreachable.
    PortUnreachable,
    Timeout,
    /// We could not ask (bad name, no socket): not the server's fault.
    Error(String),
}

/// Ask `server` for `name`'s A records.
pub async fn resolve(server: SocketAddr, name: &str, timeout: Duration) -> Answer {
    let id: u16 = rand::random();
    let query = match encode_dns_query(id, name) {
        Ok(query) => query,
        Err(reason) => return Answer::Error(reason),
    };
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = match UdpSocket::bind(bind).await {
        Ok(socket) => socket,
        Err(error) => return Answer::Error(format!("cannot open a UDP socket: {error}")),
    };
    // connect(): only the server's datagrams are read, and an ICMP
    // "port unreachable" surfaces as an error instead of a silent wait.
    if let Err(error) = socket.connect(server).await {
        return Answer::Error(format!("cannot reach {server}: {error}"));
    }
    let exchange = async {
        socket.send(&query).await?;
        let mut buffer = [0u8; 1500];
        loop {
            let n = socket.recv(&mut buffer).await?;
            // A stray or stale answer (another id) is not ours to judge.
            if let Some(answer) = decode_answer(id, &buffer[..n]) {
                return Ok::<_, std::io::Error>(answer);
            }
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
            Answer::PortUnreachable
        }
        Ok(Err(error)) => Answer::Error(format!("query to {server} failed: {error}")),
        Err(_) => Answer::Timeout,
    }
}

fn rcode_name(code: u8) -> String {
    match code {
        1 => "FORMERR".to_owned(),
        2 => "SERVFAIL".to_owned(),
        4 => "NOTIMP".to_owned(),
        5 => "REFUSED".to_owned(),
        other => format!("RCODE {other}"),
    }
}

/// A standard query, recursion desired, one question: `name` IN A.
pub fn encode_dns_query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{name:?} is not a DNS name"));
    }
    let mut out = Vec::with_capacity(18 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00]); // RD
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1, AN=NS=AR=0
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name:?} has an empty or over-long label"));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.extend_from_slice(&[0, 0, 1, 0, 1]); // root, QTYPE A, QCLASS IN
    Ok(out)
}

/// The answer to query `id`, or `None` for a datagram that is not one.
pub fn decode_answer(id: u16, packet: &[u8]) -> Option<Answer> {
    if packet.len() < 12 || u16::from_be_bytes([packet[0], packet[1]]) != id {
        return None;
    }
    let flags = u16::from_be_bytes([packet[2], packet[3]]);
    if flags & 0x8000 == 0 {
        return None; // a query, not a response
    }
    match (flags & 0x000f) as u8 {
        0 => {}
        3 => return Some(Answer::NxDomain),
        other => return Some(Answer::Failed(other)),
    }
    let questions = u16::from_be_bytes([packet[4], packet[5]]);
    let answers = u16::from_be_bytes([packet[6], packet[7]]);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(packet, at)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..answers {
        at = skip_name(packet, at)?;
        let header = packet.get(at..at + 10)?;
        let kind = u16::from_be_bytes([header[0], header[1]]);
        let length = usize::from(u16::from_be_bytes([header[8], header[9]]));
        let data = packet.get(at + 10..at + 10 + length)?;
        if kind == 1 && length == 4 {
            addresses.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + length;
    }
    // A truncated answer is not "no A record": what it holds is partial.
    if flags & 0x0200 != 0 && addresses.is_empty() {
        return Some(Answer::Truncated);
    }
    Some(Answer::Addresses(addresses))
}

/// The offset after the (possibly compressed) name starting at `at`.
fn skip_name(packet: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let length = *packet.get(at)?;
        match length {
            0 => return Some(at + 1),
            // A pointer ends the name (two bytes).
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_nameserver_of_resolv_conf_is_used() {
        let text = "# generated\nsearch default.svc.cluster.local\nnameserver 10.96.0.10 # kube-dns\nnameserver 8.8.8.8\n";
        assert_eq!(
            resolv_conf_server(text),
            Some("10.96.0.10:53".parse().unwrap())
        );
        assert_eq!(resolv_conf_server("options ndots:5\n"), None);
    }

    #[test]
    fn queries_are_well_formed_and_bad_names_refused() {
        let query = encode_dns_query(0xabcd, "kubernetes.default.svc.").expect("valid");
        assert_eq!(&query[..2], &[0xab, 0xcd]);
        assert_eq!(
            &query[12..],
            b"\x0akubernetes\x07default\x03svc\x00\x00\x01\x00\x01"
        );
        assert!(encode_dns_query(1, "a..b").is_err());
        assert!(encode_dns_query(1, &"x".repeat(64)).is_err());
    }

    #[test]
    fn truncated_or_foreign_packets_are_not_answers() {
        let query = encode_dns_query(7, "a.b").expect("valid");
        assert_eq!(decode_answer(7, &query), None, "a query is not an answer");
        assert_eq!(decode_answer(8, &query), None);
        let mut answer = query.clone();
        answer[2] |= 0x80;
        answer[7] = 1; // claims one answer that is not there
        assert_eq!(decode_answer(7, &answer), None);
    }

    #[test]
    fn a_truncated_answer_without_addresses_is_not_a_missing_record() {
        let mut answer = encode_dns_query(9, "a.b").expect("valid");
        answer[2] |= 0x80 | 0x02; // a response, TC
        assert_eq!(decode_answer(9, &answer), Some(Answer::Truncated));
        answer[2] &= !0x02;
        assert_eq!(
            decode_answer(9, &answer),
            Some(Answer::Addresses(Vec::new()))
        );
    }
}

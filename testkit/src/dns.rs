//! A tiny authoritative DNS server on 127.0.0.1 for the DNS check's tests:
//! it answers A queries from a table, and can answer NXDOMAIN, SERVFAIL or
//! nothing at all. Test-only; it speaks just enough of RFC 1035.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the server treats one name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsReply {
    Address(Ipv4Addr),
    NxDomain,
    ServFail,
    /// Never answers: a dead or overloaded server.
    Silent,
}

/// Runs until dropped. Names not in the table get NXDOMAIN.
#[derive(Debug)]
pub struct DnsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    pub fn start(table: &[(&str, DnsReply)]) -> std::io::Result<DnsServer> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        // Short, so the thread notices `stop` quickly.
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = socket.local_addr()?;
        let table: HashMap<String, DnsReply> = table
            .iter()
            .map(|(name, reply)| (name.trim_end_matches('.').to_lowercase(), reply.clone()))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buffer = [0u8; 512];
            while !stopping.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buffer) else {
                    continue;
                };
                if let Some(answer) = answer(&buffer[..n], &table) {
                    let _ = socket.send_to(&answer, from);
                }
            }
        });
        Ok(DnsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The response to `query`, or `None` to stay silent.
fn answer(query: &[u8], table: &HashMap<String, DnsReply>) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut labels = Vec::new();
    let mut at = 12;
    loop {
        let length = usize::from(*query.get(at)?);
        if length == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at + 1..at + 1 + length)?).to_lowercase());
        at += 1 + length;
    }
    let question_end = at + 5;
    let question = query.get(12..question_end)?;
    let reply = table
        .get(&labels.join("."))
        .cloned()
        .unwrap_or(DnsReply::NxDomain);
    let (rcode, address) = match reply {
        DnsReply::Silent => return None,
        DnsReply::Address(ip) => (0u8, Some(ip)),
        DnsReply::NxDomain => (3, None),
        DnsReply::ServFail => (2, None),
    };
    let mut out = Vec::with_capacity(question_end + 16);
    out.extend_from_slice(&query[..2]);
    // QR, RD copied, RA, the RCODE.
    out.push(0x80 | (query[2] & 0x01));
    out.push(0x80 | rcode);
    out.extend_from_slice(&[0, 1, 0, u8::from(address.is_some()), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if let Some(ip) = address {
        // Name by pointer to the question, A, IN, TTL 30, 4 bytes.
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}

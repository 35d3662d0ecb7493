//! A tiny UDP probe for the lab's own tests, so they need no `ping`, `nc` or Python.
//!
//! - `stl-lab-probe listen <ip:port> <secs>`: print `listening`, then one line per datagram
//!   (`got <payload> from <addr>`), and exit after `secs` seconds.
//! - `stl-lab-probe send <ip:port> <payload> <count> [<interval-ms>]`: send `payload` `count`
//!   times, `interval-ms` (default 50) apart; send errors are printed and ignored (the point
//!   is to see what arrives).
//! - `stl-lab-probe sleep <secs>`: just run, as a target for signals.
//!
//! Every mode ends by itself: tests bound their time.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["listen", addr, secs] => listen(addr, secs),
        ["send", addr, payload, count] => send(addr, payload, count, "50"),
        ["send", addr, payload, count, interval_ms] => send(addr, payload, count, interval_ms),
        ["sleep", secs] => secs_arg(secs).map(std::thread::sleep),
        _ => Err(
            "usage: stl-lab-probe listen ADDR SECS | send ADDR PAYLOAD COUNT [INTERVAL_MS] | \
             sleep SECS"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stl-lab-probe: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn secs_arg(s: &str) -> Result<Duration> {
    Ok(Duration::from_secs_f64(s.parse()?))
}

fn listen(addr: &str, secs: &str) -> Result<()> {
    let deadline = Instant::now() + secs_arg(secs)?;
    let sock = UdpSocket::bind(addr.parse::<SocketAddr>()?)?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()?;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                writeln!(
                    out,
                    "got {} from {from}",
                    String::from_utf8_lossy(&buf[..n])
                )?;
                out.flush()?;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn send(addr: &str, payload: &str, count: &str, interval_ms: &str) -> Result<()> {
    let to: SocketAddr = addr.parse()?;
    let count: u32 = count.parse()?;
    let interval = Duration::from_millis(interval_ms.parse()?);
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    for _ in 0..count {
        if let Err(e) = sock.send_to(payload.as_bytes(), to) {
            eprintln!("send to {to}: {e}");
        }
        std::thread::sleep(interval);
    }
    Ok(())
}

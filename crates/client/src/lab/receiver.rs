//! The lab's alert receiver: the agents' `--alert-webhook` points here,
//! and each notice is printed in the lab's terminal, so alerts are
//! visible without an Alertmanager.
//!
//! A minimal HTTP/1.1 server for one kind of request (a JSON POST with a
//! length), bounded in size and time; anything else is answered 400.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A notice is a few hundred bytes; this bounds a misbehaving client.
const MAX_REQUEST: usize = 1 << 20;
/// A request must arrive whole within this.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Listens on `127.0.0.1`, any port; returns the webhook URL.
pub(crate) async fn start() -> std::io::Result<String> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr: SocketAddr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let read = tokio::time::timeout(READ_TIMEOUT, read_body(stream)).await;
                let Ok(Ok((mut stream, body))) = read else {
                    return;
                };
                match serde_json::from_slice::<Value>(&body) {
                    Ok(notice) => println!("{}", line(&notice)),
                    Err(error) => println!("starling lab: an alert that is not JSON: {error}"),
                }
                // Unacknowledged, the sender retries: nothing is lost.
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    Ok(format!("http://{addr}/"))
}

/// `ALERT firing node-down lab-4: … (sent by lab-2)`.
fn line(notice: &Value) -> String {
    let text = |field: &str| notice[field].as_str().unwrap_or("?").to_owned();
    let what = notice["subject"]
        .as_str()
        .or(notice["check"].as_str())
        .unwrap_or("cluster");
    let state = if notice["flapping"] == Value::Bool(true) {
        "flapping".to_owned()
    } else {
        text("status")
    };
    format!(
        "ALERT {state} {} {what}: {} (sent by {})",
        text("alert"),
        text("message"),
        text("observer")
    )
}

/// The body of one request, with the stream to answer on.
async fn read_body(mut stream: TcpStream) -> std::io::Result<(TcpStream, Vec<u8>)> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buffer.len() > MAX_REQUEST {
            return Err(invalid("request head too large"));
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(invalid("connection closed before the head ended"));
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| invalid("no content-length"))?;
    if length > MAX_REQUEST {
        return Err(invalid("body too large"));
    }
    while buffer.len() < head_end + length {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(invalid("connection closed before the body ended"));
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    Ok((stream, buffer[head_end..head_end + length].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_is_one_line_naming_state_kind_subject_and_sender() {
        let notice = serde_json::json!({
            "alert": "node-down", "status": "firing", "flapping": false,
            "subject": "lab-4", "check": null, "message": "lab-4 is down",
            "observer": "lab-2",
        });
        assert_eq!(
            line(&notice),
            "ALERT firing node-down lab-4: lab-4 is down (sent by lab-2)"
        );
        let resolved = serde_json::json!({
            "alert": "check-critical", "status": "resolved", "flapping": false,
            "subject": null, "check": "etcd", "message": "etcd is ok", "observer": "lab-1",
        });
        assert_eq!(
            line(&resolved),
            "ALERT resolved check-critical etcd: etcd is ok (sent by lab-1)"
        );
    }
}

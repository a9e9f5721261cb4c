//! Test servers speaking raw HTTP/1.1, so every kind of bad answer can be produced exactly.

use std::time::Duration;

use rollgate_core::config::ProbeLimits;
use rollgate_core::vocab::CheckStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the server answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A complete response with this status, content type and body.
    Full(u16, &'static str, Vec<u8>),
    /// Headers claiming `claimed` bytes, then only `body`, then close.
    Truncated { claimed: usize, body: Vec<u8> },
    /// A chunked body of `total` bytes, sent in 64 KiB chunks.
    Huge { total: usize },
    /// Accept, read the request, never answer.
    Silent,
    /// Headers, then one byte every `every` forever.
    Drip { every: Duration },
    /// `302 Found` to this location.
    Redirect(String),
}

pub fn limits() -> ProbeLimits {
    ProbeLimits {
        timeout: Duration::from_millis(800),
        max_body: 1024 * 1024,
    }
}

/// Serve `answer` to every connection; the base URL.
pub async fn serve(answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                // Read the request head (and a small body if the client sends one at once).
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = respond(&mut sock, answer).await;
            });
        }
    });
    format!("http://{addr}")
}

async fn respond(sock: &mut tokio::net::TcpStream, answer: Answer) -> std::io::Result<()> {
    match answer {
        Answer::Full(status, ctype, body) => {
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            sock.write_all(head.as_bytes()).await?;
            sock.write_all(&body).await?;
        }
        Answer::Truncated { claimed, body } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {claimed}\r\n\r\n"
            );
            sock.write_all(head.as_bytes()).await?;
            sock.write_all(&body).await?;
            sock.shutdown().await?;
        }
        Answer::Huge { total } => {
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n").await?;
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0;
            while sent < total {
                sock.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                sock.write_all(&chunk).await?;
                sock.write_all(b"\r\n").await?;
                sent += chunk.len();
            }
            sock.write_all(b"0\r\n\r\n").await?;
        }
        Answer::Redirect(location) => {
            let head = format!(
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            sock.write_all(head.as_bytes()).await?;
        }
        Answer::Silent => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Answer::Drip { every } => {
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n").await?;
            loop {
                sock.write_all(b" ").await?;
                tokio::time::sleep(every).await;
            }
        }
    }
    Ok(())
}

/// `o` has this status and a detail that contains `needle` and names the loopback endpoint.
pub fn assert_outcome(o: &rollgate_probe::Outcome, status: CheckStatus, needle: &str) {
    assert_eq!(
        o.status, status,
        "expected {status:?}, got {:?}: {}",
        o.status, o.detail
    );
    assert!(
        o.detail.contains(needle),
        "detail `{}` should contain `{needle}`",
        o.detail
    );
    assert!(
        o.detail.contains("http://127.0.0.1:"),
        "detail names the endpoint: {}",
        o.detail
    );
}

pub fn json(body: serde_json::Value) -> Answer {
    Answer::Full(200, "application/json", body.to_string().into_bytes())
}

/// `host:port` of a listener that accepts every connection and holds it open without reading
/// or writing a byte (a hung server, a half-open firewall).
pub async fn accept_and_hold() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    addr
}

/// The URL of a port nothing listens on.
pub async fn closed_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// A service URL from the environment; under `CI=true` a missing service fails the test.
pub fn service_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set (run scripts/services); required under CI=true")
        }
        _ => {
            eprintln!("skipping: {var} is not set (run scripts/services)");
            None
        }
    }
}

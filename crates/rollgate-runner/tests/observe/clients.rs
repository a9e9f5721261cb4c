//! A gate loop reuses its HTTP clients: every poll of the dependency checks goes over the
//! connection the first poll opened, instead of building a client (TLS configuration, root
//! store, pool) and opening a connection per poll.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{config, observer};

/// An HTTP/1.1 server that keeps connections alive, answers `200 {"status":"ok"}` to every
/// request and counts the connections it accepted.
async fn counting_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        got.drain(..end + 4);
                        let body = br#"{"status":"ok"}"#;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        );
                        if sock.write_all(head.as_bytes()).await.is_err()
                            || sock.write_all(body).await.is_err()
                        {
                            return;
                        }
                    }
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), accepted)
}

#[tokio::test]
async fn every_poll_reuses_the_first_polls_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (deployment, accepted) = counting_server().await;
    let runtime = format!(
        "[runtime]\ndriver = \"command\"\n\n[runtime.command]\ncurrent = \"echo v1\"\napply = \"true\"\nrestart = \"true\"\n\n[dependencies]\ndeployment_service = {{ url = \"{deployment}\", path = \"/health\" }}\n"
    );
    let cfg = config(dir.path(), &runtime);
    let mut o = observer(&cfg, None);
    o.mark_change().await;
    let built = rollgate_probe::http::clients_built();
    for _ in 0..5 {
        let obs = o.observe().await;
        assert!(
            matches!(
                obs.dependencies.get("dependency:deployment-service"),
                Some(rollgate_core::engine::Reading::Pass(_))
            ),
            "{:?}",
            obs.dependencies
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "5 polls of the deployment-service check should share one connection"
    );
    assert_eq!(
        rollgate_probe::http::clients_built(),
        built,
        "no client is built per poll"
    );
}

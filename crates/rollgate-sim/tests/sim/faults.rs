//! Dependency faults: the FaultProxy in front of the real Postgres and Redis, and the AESM cut.

use std::time::{Duration, Instant};

use rollgate_sim::{Endpoint, FaultProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{TestStack, eventually, get_json, status};

async fn wait_health(url: &str, want: &str) {
    eventually(
        Duration::from_secs(5),
        &format!("health {want}"),
        || async { (status(url).await["health"] == want).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn cutting_postgres_or_redis_degrades_the_operator() {
    let Some(t) = TestStack::start(|_| {}).await else {
        return;
    };
    let url = t.stack.operator_url();
    assert_eq!(status(&url).await["health"], "Healthy");

    let pg = t.stack.postgres_proxy().unwrap();
    pg.cut();
    wait_health(&url, "Degraded").await;
    assert_eq!(
        status(&url).await["dependencies"]["postgres"],
        "unreachable"
    );
    let kyc = get_json(&format!("{}/v1/status", t.stack.kyc_url())).await;
    assert_eq!(kyc["isHealthy"], false);
    // No progression while the database is gone.
    let a = status(&url).await["lastRequest"]["requestIndex"].clone();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(status(&url).await["lastRequest"]["requestIndex"], a);
    pg.restore();
    wait_health(&url, "Healthy").await;
    assert_eq!(
        get_json(&format!("{}/v1/status", t.stack.kyc_url())).await["isHealthy"],
        true
    );

    let redis = t.stack.redis_proxy().unwrap();
    redis.cut();
    wait_health(&url, "Degraded").await;
    assert_eq!(status(&url).await["dependencies"]["redis"], "unreachable");
    redis.restore();
    wait_health(&url, "Healthy").await;
    t.stop().await;
}

#[tokio::test]
async fn fault_proxy_cuts_delays_and_restores() {
    // An echo server as the upstream.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = echo.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = echo.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let proxy = FaultProxy::start("127.0.0.1:0", Endpoint::Tcp(upstream.to_string()))
        .await
        .unwrap();
    let addr = proxy.local_addr().unwrap();
    let roundtrip = |mut s: tokio::net::TcpStream| async move {
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>((s, buf))
    };
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (open, buf) = roundtrip(s).await.unwrap();
    assert_eq!(&buf, b"ping");

    // Cut: the open connection dies and new ones are refused.
    proxy.cut();
    assert!(proxy.is_cut());
    let mut open = open;
    let mut buf = [0u8; 4];
    let n = tokio::time::timeout(Duration::from_secs(2), open.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)));
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(roundtrip(s).await.is_err());

    // Delay.
    proxy.restore();
    proxy.delay(Duration::from_millis(150));
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let t0 = Instant::now();
    roundtrip(s).await.unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
    proxy.restore();
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let t0 = Instant::now();
    roundtrip(s).await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    proxy.shutdown();
}

#[tokio::test]
async fn aesm_socket_can_be_cut_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aesmd").join("aesm.socket");
    let mut aesm = rollgate_sim::services::aesm::RunningAesm::start(&path).unwrap();
    let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
    s.write_all(b"\0\0\0\0").await.unwrap();
    aesm.cut();
    assert!(!path.exists());
    assert!(tokio::net::UnixStream::connect(&path).await.is_err());
    aesm.restore().unwrap();
    let _s = tokio::net::UnixStream::connect(&path).await.unwrap();
    eventually(Duration::from_secs(2), "an accepted connection", || async {
        (aesm.connections() >= 1).then_some(())
    })
    .await;
    aesm.shutdown();
}

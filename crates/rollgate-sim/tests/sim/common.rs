//! Shared test helpers.

use std::time::{Duration, Instant};

use rollgate_sim::testenv::{self, NodeDatabases, Services};
use rollgate_sim::{RunningStack, SimStack, StackOptions};
use serde_json::Value;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// The `rollgate-sim` binary under test.
pub fn sim() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_rollgate-sim"))
}

/// `localnet down --dir` when dropped: a localnet is cleaned up even when an assertion fails.
pub struct LocalnetDown(pub std::path::PathBuf);

impl Drop for LocalnetDown {
    fn drop(&mut self) {
        let _ = sim()
            .args(["localnet", "down", "--dir"])
            .arg(&self.0)
            .output();
    }
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn get_json(url: &str) -> Value {
    let r = client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    r.json().await.unwrap()
}

pub async fn status(base: &str) -> Value {
    get_json(&format!("{base}/v2/status")).await
}

/// Polls `f` until it returns Some, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stack on fresh databases; None when the services are not configured (test skipped).
pub struct TestStack {
    pub stack: RunningStack,
    pub dbs: NodeDatabases,
    pub services: Services,
    pub _dir: tempfile::TempDir,
}

impl TestStack {
    pub async fn start(tweak: impl FnOnce(&mut StackOptions)) -> Option<TestStack> {
        let services = testenv::require_services()?;
        let dbs = NodeDatabases::create(&services.database_url).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut opts = StackOptions::new(dir.path()).with_databases(
            &services.database_url,
            &dbs,
            &services.redis_url,
        );
        tweak(&mut opts);
        let stack = SimStack::start(opts).await.unwrap();
        Some(TestStack {
            stack,
            dbs,
            services,
            _dir: dir,
        })
    }

    pub async fn stop(self) {
        self.stack.shutdown().await;
        self.dbs
            .drop_with_redis(Some(&self.services.redis_url))
            .await;
    }
}

pub fn request_index(status: &Value) -> u64 {
    status["lastRequest"]["requestIndex"].as_u64().unwrap()
}

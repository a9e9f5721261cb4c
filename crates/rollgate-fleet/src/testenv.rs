//! A real `etcd` for tests: its own process on free loopback ports with a temporary data
//! directory, killed (SIGKILL) when dropped. Missing `etcd` skips a test outside CI and fails it
//! under `CI=true`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether tests run in CI (`CI=true`): then a missing service is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The `etcd` binary on PATH. None outside CI when missing (the test skips); panics under CI.
pub fn require_etcd() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("etcd"))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => Some(p),
        None if in_ci() => {
            panic!("etcd is not on PATH and CI=true requires it (Debian etcd-server)")
        }
        None => {
            eprintln!("skipping: etcd is not on PATH");
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// One running etcd.
#[derive(Debug)]
pub struct EtcdServer {
    exe: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

impl EtcdServer {
    /// Starts etcd and waits until it answers; None when it is missing outside CI.
    pub async fn start() -> Option<EtcdServer> {
        let exe = require_etcd()?;
        let dir = tempfile::tempdir().expect("temporary directory for etcd");
        let mut s = EtcdServer {
            exe,
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
        };
        s.spawn().await;
        Some(s)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect(
            [self.url()],
            Some(
                etcd_client::ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(2))
                    .with_timeout(Duration::from_secs(2)),
            ),
        )
        .await
        .expect("connect to the test etcd")
    }

    /// SIGKILL: etcd stops answering at once, as a crashed or partitioned server would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .expect("etcd log");
        let child = Command::new(&self.exe)
            .args(["--name", "rollgate-test"])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &self.url()])
            .args(["--advertise-client-urls", &self.url()])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("rollgate-test={peer}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = etcd_client::Client::connect([self.url()], None).await
                && c.status().await.is_ok()
            {
                return;
            }
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
                panic!("etcd did not answer on {} within 20s:\n{log}", self.url());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

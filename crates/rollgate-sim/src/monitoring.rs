//! A real Prometheus and Alertmanager for tests and the demo: the Debian `prometheus` binary
//! started on a free loopback port with a generated configuration that scrapes the simulated
//! stack every second and evaluates a rule file, its TSDB in a temporary directory; and
//! `prometheus-alertmanager` with a receiver that drops everything (clustering off). Dropping a
//! handle kills the process.
//!
//! Outside CI a missing binary means "skip this test" (`None`); under `CI=true` it panics, like
//! [`crate::testenv`]'s services: a CI without Prometheus cannot pass by skipping.
//!
//! ```no_run
//! let Some(prom) = rollgate_sim::monitoring::Prometheus::start(
//!     &["127.0.0.1:9101".to_string()],
//!     "groups: []\n",
//! ) else { return };
//! println!("{}", prom.url());
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::testenv::in_ci;

/// How long Prometheus may take to answer `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
    /// Removed on drop when we created it.
    owned_dir: bool,
}

/// Whether `name` is an executable on `PATH`.
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(name).is_file()))
}

/// `name` on `PATH`, or `None` (skipped) outside CI; panics under CI.
pub fn require_binary(name: &str) -> Option<()> {
    if on_path(name) {
        return Some(());
    }
    if in_ci() {
        panic!("`{name}` is not on PATH but CI=true: `scripts/services` installs it");
    }
    eprintln!("skipped: `{name}` is not on PATH (scripts/services installs it)");
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// The configuration that scrapes `targets` (`host:port`, path `/metrics`) as job `node` with
/// label `node="node0"`, every second, and evaluates `rules.yml` every second.
pub fn config_for(targets: &[String]) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files: [\"rules.yml\"]\n\
         scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: [{}]\n        labels: {{node: node0}}\n",
        targets.join(", ")
    )
}

impl Prometheus {
    /// Start Prometheus scraping `targets` with the rule file `rules` (YAML text) in a new
    /// temporary directory; wait until it is ready. `None` when the binary is missing outside CI.
    pub fn start(targets: &[String], rules: &str) -> Option<Prometheus> {
        let dir = std::env::temp_dir().join(format!(
            "rollgate-prometheus-{}-{}",
            std::process::id(),
            free_port()
        ));
        let mut p = Prometheus::start_in(&dir, targets, rules)?;
        p.owned_dir = true;
        Some(p)
    }

    /// [`Prometheus::start`] in `dir` (kept on drop: the demo shows it).
    pub fn start_in(dir: &Path, targets: &[String], rules: &str) -> Option<Prometheus> {
        require_binary("prometheus")?;
        std::fs::create_dir_all(dir.join("data")).expect("create the Prometheus directory");
        std::fs::write(dir.join("prometheus.yml"), config_for(targets))
            .expect("write prometheus.yml");
        std::fs::write(dir.join("rules.yml"), rules).expect("write rules.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("create prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let mut p = Prometheus {
            child,
            port,
            dir: dir.to_path_buf(),
            owned_dir: false,
        };
        p.wait_ready();
        Some(p)
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "prometheus exited ({status}) before it was ready: {}",
                    std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
                );
            }
            if http_get(self.port, "/-/ready").is_some_and(|(code, _)| code == 200) {
                return;
            }
            if started.elapsed() > READY_TIMEOUT {
                panic!(
                    "prometheus not ready within {READY_TIMEOUT:?}: {}",
                    std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The body of `GET path` (a test reads `/api/v1/targets` or a query through it).
    pub fn get(&self, path: &str) -> Option<String> {
        http_get(self.port, path).map(|(_, body)| body)
    }

    /// Wait until `query` (URL-encoded by the caller) returns at least one series; for tests
    /// that must not start before the first scrapes arrived.
    pub fn wait_for_series(&self, encoded_query: &str, within: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(body) = self.get(&format!("/api/v1/query?query={encoded_query}"))
                && body.contains("\"result\":[{")
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owned_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A running Alertmanager.
pub struct Alertmanager {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Alertmanager {
    /// Start `prometheus-alertmanager` in a new temporary directory and wait until it is
    /// ready. `None` when the binary is missing outside CI.
    pub fn start() -> Option<Alertmanager> {
        require_binary("prometheus-alertmanager")?;
        let dir = std::env::temp_dir().join(format!(
            "rollgate-alertmanager-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("data")).expect("create the Alertmanager directory");
        std::fs::write(
            dir.join("alertmanager.yml"),
            "route:\n  receiver: drop\nreceivers:\n  - name: drop\n",
        )
        .expect("write alertmanager.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.join("alertmanager.log")).expect("create the log");
        let child = Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // No gossip: tests run many instances side by side.
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn prometheus-alertmanager");
        let mut am = Alertmanager { child, port, dir };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = am.child.try_wait() {
                panic!(
                    "alertmanager exited ({status}) before it was ready: {}",
                    std::fs::read_to_string(am.dir.join("alertmanager.log")).unwrap_or_default()
                );
            }
            if http_get(am.port, "/-/ready").is_some_and(|(code, _)| code == 200) {
                break;
            }
            if started.elapsed() > READY_TIMEOUT {
                panic!(
                    "alertmanager not ready within {READY_TIMEOUT:?}: {}",
                    std::fs::read_to_string(am.dir.join("alertmanager.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(am)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The body of `GET path` (`/api/v2/silences`).
    pub fn get(&self, path: &str) -> Option<String> {
        http_get(self.port, path).map(|(_, body)| body)
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A minimal HTTP/1.0 GET on loopback: the status code and the body (no dependency on an HTTP
/// client crate; Prometheus answers these small requests plainly).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

//! `rollgate-sim localnet`: the whole simulated node as background processes on loopback
//! (mode `localnet.loopback`), managed through files in one directory:
//!
//! ```text
//! DIR/localnet.json          ports, URLs and paths chosen at `up`
//! DIR/versions/operator      the operator's recorded version (value of operator-image/-binary)
//! DIR/versions/kyc           the KYC service's recorded version (value of kyc-image)
//! DIR/pids/<component>.pid   one per running process
//! DIR/logs/<component>.log   stdout and stderr of each process (appended)
//! DIR/app_config/            APP_CONFIG (ethereum/addresses.json, enclave/build-flags.env)
//! DIR/runtime.env            runtime SGX_DEBUG / SGX_PRERELEASE
//! DIR/config/operator.env    the operator's KEY=VALUE configuration, read at start when present
//! DIR/aesm/aesm.socket       the AESM socket
//! DIR/pccs/                  the PCCS certificate (cert.pem, cert.der, key.der, cert.sha256)
//! ```
//!
//! `current`, `set` and `restart` are what rollgate's `command` runtime driver calls. This module
//! is synchronous on purpose: it is a short-lived controller of processes, not a service.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::errors::SimError;
use crate::version::{KycVersion, OperatorVersion};

/// Every component, in start order.
pub const COMPONENTS: [&str; 6] = ["chain", "deployment", "pccs", "aesm", "operator", "kyc"];

/// How long `up`/`restart` wait for a component to listen, and `down` for it to exit.
const START_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// What `up` records in `DIR/localnet.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalnetConfig {
    pub host: String,
    pub operator_port: u16,
    pub kyc_port: u16,
    pub chain_port: u16,
    pub deployment_port: u16,
    pub pccs_port: u16,
    pub database_url: Option<String>,
    pub operator_database: String,
    pub kyc_database: String,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub traffic: bool,
    pub traffic_interval_ms: u64,
    pub slow_start_ms: u64,
    /// `v3` or `v1`.
    pub pccs_cert: String,
    /// The `rollgate-sim` binary to run.
    pub exe: PathBuf,
    /// The operator's status shape (`tidy`, `terse`).
    #[serde(default = "tidy")]
    pub status_shape: String,
    /// The chain's block interval.
    #[serde(default = "block_ms")]
    pub chain_block_ms: u64,
    /// The chain stops making blocks this long after it starts (never when absent).
    #[serde(default)]
    pub chain_stall_after_ms: Option<u64>,
    /// The chain answers JSON-RPC batches.
    #[serde(default = "yes")]
    pub chain_batches: bool,
    /// The operator's Raft id (`raftMetrics.nodeId`).
    #[serde(default = "one")]
    pub node_id: u64,
    /// Cluster mode: the cluster's shared state file (see `crate::cluster`).
    #[serde(default)]
    pub cluster_file: Option<PathBuf>,
}

fn one() -> u64 {
    1
}

fn block_ms() -> u64 {
    1000
}

fn yes() -> bool {
    true
}

fn tidy() -> String {
    "tidy".into()
}

impl Default for LocalnetConfig {
    fn default() -> Self {
        LocalnetConfig {
            host: "127.0.0.1".into(),
            operator_port: 8080,
            kyc_port: 8090,
            chain_port: 8545,
            deployment_port: 4040,
            pccs_port: 8081,
            database_url: None,
            operator_database: "node0".into(),
            kyc_database: "kyc".into(),
            redis_url: None,
            redis_prefix: "node0".into(),
            traffic: true,
            traffic_interval_ms: 250,
            slow_start_ms: 5000,
            pccs_cert: "v1".into(),
            exe: PathBuf::from("rollgate-sim"),
            status_shape: tidy(),
            chain_block_ms: block_ms(),
            chain_stall_after_ms: None,
            chain_batches: true,
            node_id: one(),
            cluster_file: None,
        }
    }
}

/// One component's state, as `status` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentStatus {
    pub component: String,
    pub running: bool,
    pub pid: Option<u32>,
    /// URL or socket path.
    pub endpoint: String,
    /// Recorded version (operator and kyc only).
    pub version: Option<String>,
}

/// A localnet directory.
#[derive(Debug, Clone)]
pub struct Localnet {
    dir: PathBuf,
}

fn err(msg: impl Into<String>) -> SimError {
    SimError::Localnet(msg.into())
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> SimError {
    move |e| SimError::io(context, e)
}

/// Maps a layer name to the component whose version it sets.
pub fn layer_component(layer: &str) -> Result<&'static str, SimError> {
    match layer {
        "operator-image" | "operator-binary" | "operator" => Ok("operator"),
        "kyc-image" | "kyc-binary" | "kyc" => Ok("kyc"),
        other => Err(err(format!(
            "unknown layer {other:?} (known: operator-image, operator-binary, kyc-image)"
        ))),
    }
}

impl Localnet {
    pub fn new(dir: impl Into<PathBuf>) -> Localnet {
        Localnet { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn app_config(&self) -> PathBuf {
        self.dir.join("app_config")
    }

    pub fn aesm_socket(&self) -> PathBuf {
        self.dir.join("aesm").join("aesm.socket")
    }

    /// The operator's configuration file, read at each start when it exists (what a `config`
    /// layer of rollgate changes): `DIR/config/operator.env`.
    pub fn operator_env(&self) -> PathBuf {
        self.dir.join("config").join("operator.env")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("localnet.json")
    }

    fn pid_path(&self, c: &str) -> PathBuf {
        self.dir.join("pids").join(format!("{c}.pid"))
    }

    pub fn log_path(&self, c: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{c}.log"))
    }

    fn version_path(&self, c: &str) -> PathBuf {
        self.dir.join("versions").join(c)
    }

    pub fn config(&self) -> Result<LocalnetConfig, SimError> {
        let path = self.config_path();
        let text = fs::read_to_string(&path).map_err(|e| {
            SimError::io(
                format!(
                    "read {} (run `rollgate-sim localnet up --dir {}` first)",
                    path.display(),
                    self.dir.display()
                ),
                e,
            )
        })?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Writes the configuration and initial versions (kept when already recorded), then starts
    /// every component that is not running.
    pub fn up(
        &self,
        config: &LocalnetConfig,
        operator: OperatorVersion,
        kyc: KycVersion,
    ) -> Result<(), SimError> {
        for sub in ["pids", "logs", "versions", "app_config", "aesm", "pccs"] {
            let d = self.dir.join(sub);
            fs::create_dir_all(&d).map_err(io_err(format!("create {}", d.display())))?;
        }
        fs::write(self.config_path(), serde_json::to_vec_pretty(config)?)
            .map_err(io_err(format!("write {}", self.config_path().display())))?;
        for (c, v) in [("operator", operator.as_str()), ("kyc", kyc.as_str())] {
            if !self.version_path(c).exists() {
                self.write_version(c, v)?;
            }
        }
        let runtime_env = self.dir.join("runtime.env");
        if !runtime_env.exists() {
            fs::write(
                &runtime_env,
                "SGX_DEBUG=0\nSGX_PRERELEASE=1\nREPORT_TYPE=SELF\n",
            )
            .map_err(io_err(format!("write {}", runtime_env.display())))?;
        }
        for c in COMPONENTS {
            if self.running_pid(c).is_none() {
                self.start(c, config)?;
            }
        }
        Ok(())
    }

    /// Stops every component (reverse start order).
    pub fn down(&self) -> Result<(), SimError> {
        for c in COMPONENTS.iter().rev() {
            self.stop(c)?;
        }
        Ok(())
    }

    pub fn status(&self) -> Result<Vec<ComponentStatus>, SimError> {
        let config = self.config()?;
        Ok(COMPONENTS
            .iter()
            .map(|c| {
                let pid = self.running_pid(c);
                ComponentStatus {
                    component: (*c).to_owned(),
                    running: pid.is_some(),
                    pid,
                    endpoint: self.endpoint(c, &config),
                    version: matches!(*c, "operator" | "kyc")
                        .then(|| self.recorded(c).ok())
                        .flatten(),
                }
            })
            .collect())
    }

    /// The recorded value of a layer.
    pub fn current(&self, layer: &str) -> Result<String, SimError> {
        self.recorded(layer_component(layer)?)
    }

    /// Records a new value for a layer; refused when it names no known version.
    pub fn set(&self, layer: &str, value: &str) -> Result<(), SimError> {
        let c = layer_component(layer)?;
        match c {
            "operator" => {
                value.parse::<OperatorVersion>()?;
            }
            _ => {
                value.parse::<KycVersion>()?;
            }
        }
        self.write_version(c, value.trim())
    }

    /// Restarts exactly these components with their recorded versions.
    pub fn restart(&self, components: &[String]) -> Result<(), SimError> {
        let config = self.config()?;
        self.known(components)?;
        for c in components {
            self.stop(c)?;
            self.start(c, &config)?;
        }
        Ok(())
    }

    /// Stop only these components (the `stop` command of rollgate's command driver, used
    /// around a database snapshot). Stopping a stopped component succeeds.
    pub fn stop_components(&self, components: &[String]) -> Result<(), SimError> {
        self.known(components)?;
        for c in components {
            self.stop(c)?;
        }
        Ok(())
    }

    /// Start only these components with their recorded versions (a running one is restarted).
    pub fn start_components(&self, components: &[String]) -> Result<(), SimError> {
        self.restart(components)
    }

    fn known(&self, components: &[String]) -> Result<(), SimError> {
        for c in components {
            if !COMPONENTS.contains(&c.as_str()) {
                return Err(err(format!(
                    "unknown component {c:?} (known: {})",
                    COMPONENTS.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn recorded(&self, c: &str) -> Result<String, SimError> {
        let p = self.version_path(c);
        Ok(fs::read_to_string(&p)
            .map_err(io_err(format!("read {}", p.display())))?
            .trim()
            .to_owned())
    }

    fn write_version(&self, c: &str, v: &str) -> Result<(), SimError> {
        let p = self.version_path(c);
        if let Some(d) = p.parent() {
            fs::create_dir_all(d).map_err(io_err(format!("create {}", d.display())))?;
        }
        fs::write(&p, format!("{v}\n")).map_err(io_err(format!("write {}", p.display())))
    }

    fn endpoint(&self, c: &str, cfg: &LocalnetConfig) -> String {
        let h = &cfg.host;
        match c {
            "operator" => format!("http://{h}:{}", cfg.operator_port),
            "kyc" => format!("http://{h}:{}", cfg.kyc_port),
            "chain" => format!("http://{h}:{}", cfg.chain_port),
            "deployment" => format!("http://{h}:{}", cfg.deployment_port),
            "pccs" => format!("https://{h}:{}", cfg.pccs_port),
            _ => self.aesm_socket().display().to_string(),
        }
    }

    fn args(&self, c: &str, cfg: &LocalnetConfig) -> Result<Vec<String>, SimError> {
        let listen = |port: u16| format!("{}:{port}", cfg.host);
        let mut a: Vec<String> = vec![c.to_owned()];
        let mut push = |k: &str, v: String| {
            a.push(k.to_owned());
            a.push(v);
        };
        match c {
            "chain" => {
                push("--listen", listen(cfg.chain_port));
                push("--block-interval-ms", cfg.chain_block_ms.to_string());
                if let Some(ms) = cfg.chain_stall_after_ms {
                    push("--stall-after-ms", ms.to_string());
                }
                if !cfg.chain_batches {
                    a.push("--no-batch".into());
                }
            }
            "deployment" => {
                push("--listen", listen(cfg.deployment_port));
                push("--app-config", self.app_config().display().to_string());
            }
            "pccs" => {
                push("--listen", listen(cfg.pccs_port));
                push("--cert", cfg.pccs_cert.clone());
                push("--cert-dir", self.dir.join("pccs").display().to_string());
            }
            "aesm" => push("--socket", self.aesm_socket().display().to_string()),
            "operator" => {
                push("--listen", listen(cfg.operator_port));
                push("--version", self.recorded("operator")?);
                push("--app-config", self.app_config().display().to_string());
                push("--redis-prefix", cfg.redis_prefix.clone());
                push("--traffic", if cfg.traffic { "on" } else { "off" }.into());
                push("--traffic-interval-ms", cfg.traffic_interval_ms.to_string());
                push("--slow-start-ms", cfg.slow_start_ms.to_string());
                push("--status-shape", cfg.status_shape.clone());
                let env_file = self.operator_env();
                if env_file.exists() {
                    push("--env-file", env_file.display().to_string());
                }
                push("--node-id", cfg.node_id.to_string());
                if let Some(f) = &cfg.cluster_file {
                    push("--cluster-file", f.display().to_string());
                }
                if let Some(u) = &cfg.database_url {
                    push(
                        "--database-url",
                        crate::db::with_dbname(u, &cfg.operator_database),
                    );
                }
                if let Some(u) = &cfg.redis_url {
                    push("--redis-url", u.clone());
                }
            }
            "kyc" => {
                push("--listen", listen(cfg.kyc_port));
                push("--version", self.recorded("kyc")?);
                if let Some(u) = &cfg.database_url {
                    push(
                        "--database-url",
                        crate::db::with_dbname(u, &cfg.kyc_database),
                    );
                }
            }
            other => return Err(err(format!("unknown component {other:?}"))),
        }
        Ok(a)
    }

    fn start(&self, c: &str, cfg: &LocalnetConfig) -> Result<(), SimError> {
        let log_path = self.log_path(c);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err(format!("open {}", log_path.display())))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log2 = log
            .try_clone()
            .map_err(io_err(format!("open {}", log_path.display())))?;
        let args = self.args(c, cfg)?;
        let child = Command::new(&cfg.exe)
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group: a Ctrl-C in the shell that ran `up` must not take the
            // localnet down with it.
            .process_group(0)
            .spawn()
            .map_err(io_err(format!("start {} ({})", c, cfg.exe.display())))?;
        let pid = child.id();
        let pid_path = self.pid_path(c);
        fs::write(&pid_path, format!("{pid}\n"))
            .map_err(io_err(format!("write {}", pid_path.display())))?;
        // The child is detached on purpose; dropping `Child` neither waits nor kills.
        drop(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.is_listening(c, cfg) {
                return Ok(());
            }
            if !pid_alive(pid) {
                let _ = fs::remove_file(&pid_path);
                return Err(err(format!(
                    "{c} exited during start; its log says:\n{}",
                    log_tail(&log_path, log_start)
                )));
            }
            if Instant::now() > deadline {
                return Err(err(format!(
                    "{c} did not listen within {START_TIMEOUT:?}; its log says:\n{}",
                    log_tail(&log_path, log_start)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_listening(&self, c: &str, cfg: &LocalnetConfig) -> bool {
        let port = match c {
            "operator" => cfg.operator_port,
            "kyc" => cfg.kyc_port,
            "chain" => cfg.chain_port,
            "deployment" => cfg.deployment_port,
            "pccs" => cfg.pccs_port,
            _ => return std::os::unix::net::UnixStream::connect(self.aesm_socket()).is_ok(),
        };
        connectable(&format!("{}:{port}", cfg.host))
    }

    /// The pid of the component when it is running (and really is our process).
    fn running_pid(&self, c: &str) -> Option<u32> {
        let pid: u32 = fs::read_to_string(self.pid_path(c))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // Guard against pid reuse: the process must be a rollgate-sim running this component.
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let ours = args.first().is_some_and(|a| a.ends_with(b"rollgate-sim"))
            && args.get(1).is_some_and(|a| *a == c.as_bytes());
        (ours && pid_alive(pid)).then_some(pid)
    }

    fn stop(&self, c: &str) -> Result<(), SimError> {
        let pid_path = self.pid_path(c);
        if let Some(pid) = self.running_pid(c) {
            signal(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while pid_alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if pid_alive(pid) {
                signal(pid, rustix::process::Signal::KILL);
                let deadline = Instant::now() + STOP_TIMEOUT;
                while pid_alive(pid) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let _ = fs::remove_file(&pid_path);
        if c == "aesm" {
            let _ = fs::remove_file(self.aesm_socket());
        }
        Ok(())
    }
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// Alive and not a zombie: a stopped process may linger as a zombie until its new parent reaps
/// it, and must count as stopped then.
fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // Field 3, after the parenthesised command name (which may contain spaces).
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z" | "X") | None)
        }
        Err(_) => false,
    }
}

fn connectable(addr: &str) -> bool {
    let addrs: Vec<SocketAddr> = match addr.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(_) => return false,
    };
    addrs
        .iter()
        .any(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok())
}

fn log_tail(path: &Path, from: u64) -> String {
    let mut out = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = from.max(len.saturating_sub(4096));
        if f.seek(SeekFrom::Start(start)).is_ok() {
            let _ = f.read_to_string(&mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_map_to_components() {
        assert_eq!(layer_component("operator-image").unwrap(), "operator");
        assert_eq!(layer_component("operator-binary").unwrap(), "operator");
        assert_eq!(layer_component("kyc-image").unwrap(), "kyc");
        assert!(layer_component("operator-config").is_err());
    }

    #[test]
    fn set_validates_and_current_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let net = Localnet::new(dir.path());
        net.set("operator-image", "rollgate-sim/operator:v1.1.0")
            .unwrap();
        assert_eq!(
            net.current("operator-binary").unwrap(),
            "rollgate-sim/operator:v1.1.0"
        );
        assert!(net.set("kyc-image", "v9.9.9").is_err());
        net.set("kyc-image", "v1.1.0-unhealthy").unwrap();
        assert_eq!(net.current("kyc-image").unwrap(), "v1.1.0-unhealthy");
    }
}

//! A simulated node for end-to-end tests: `rollgate-sim localnet` processes on free loopback
//! ports with their own databases and Redis prefix, and a rollgate configuration for it made
//! from the demo's template (`demo/rollgate.toml.in`), so the demo and the tests exercise the
//! same configuration.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use rollgate_sim::testenv::{self, NodeDatabases};

use crate::outage::{Dependency, Outages, Upstreams};
use serde_json::Value;

const TEMPLATE: &str = include_str!("../../../../demo/rollgate.toml.in");

pub fn rollgate_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rollgate"))
}

/// The `rollgate-sim` binary, built beside `rollgate` by `cargo nextest run --workspace`.
pub fn sim_bin() -> PathBuf {
    let p = rollgate_bin().with_file_name("rollgate-sim");
    assert!(
        p.exists(),
        "{} is missing: build the workspace (`cargo build -p rollgate-sim`)",
        p.display()
    );
    p
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free ports: every listener is held until all are chosen, since the kernel may
/// hand a just-released port out again (a localnet once got one port for PCCS and the
/// deployment service).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Options for [`Node::start`].
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub window: &'static str,
    pub bake: &'static str,
    pub readiness_deadline: &'static str,
    pub traffic: bool,
    pub idle_progression: &'static str,
    /// Extra layers appended to the configuration.
    pub extra: &'static str,
    /// The operator's status shape: `tidy`, or `terse` (`false`/`""` for no fault, requestIndex
    /// a decimal string past 2^64).
    pub status_shape: &'static str,
    /// Extra `rollgate-sim localnet up` arguments (the chain's `--chain-block-ms`, …).
    pub sim_args: &'static [&'static str],
}

/// Fault injection for [`Node::start_with_faults`] (the fault matrix).
#[derive(Debug, Clone, Default)]
pub struct NodeFaults {
    /// Dependencies rollgate reaches through a fault proxy the node owns ([`Node::outages`]),
    /// so a test can stop one for rollgate without touching the shared Postgres and Redis or
    /// the other tests' nodes.
    pub proxied: &'static [Dependency],
    /// Count the gate polls: the command driver's `logs` command, which the observer runs once
    /// per poll right after that poll's dependency checks, first appends a byte to a file
    /// ([`Node::polls`]).
    pub poll_ticks: bool,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            window: "2s",
            bake: "0s",
            readiness_deadline: "15s",
            traffic: true,
            idle_progression: "fail",
            extra: "",
            status_shape: "tidy",
            sim_args: &[],
        }
    }
}

/// One running simulated node and its rollgate configuration.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub sim_dir: PathBuf,
    dbs: Option<NodeDatabases>,
    database_url: String,
    redis_url: String,
    /// The fault proxies of [`NodeFaults::proxied`] (dropped before the localnet goes down).
    outages: Option<Outages>,
    ticks: PathBuf,
    /// The simulated operator's port (its `/metrics` is what a test's Prometheus scrapes).
    pub operator_port: u16,
}

impl Node {
    /// Give the operator's database a history ([`rollgate_sim::testenv::TestDatabase::age_operator_table`]).
    pub fn age_operator_table(&self) {
        let dbs = self.dbs.as_ref().expect("a node with databases");
        runtime()
            .block_on(dbs.node0.age_operator_table())
            .expect("age the operator table");
    }

    /// Start a node, or `None` when the services are missing outside CI (under `CI=true` a
    /// missing service panics: tests never silently skip there).
    pub fn start(opts: NodeOptions) -> Option<Node> {
        Node::start_with_faults(opts, NodeFaults::default())
    }

    /// [`Node::start`] with dependency proxies and poll ticks.
    pub fn start_with_faults(opts: NodeOptions, faults: NodeFaults) -> Option<Node> {
        let services = testenv::require_services()?;
        let dbs = runtime()
            .block_on(NodeDatabases::create(&services.database_url))
            .expect("create test databases");
        let dir = tempfile::Builder::new()
            .prefix("rollgate-e2e")
            .tempdir()
            .unwrap();
        let sim_dir = dir.path().join("localnet");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let ports = free_ports(5);
        let (op, kyc, chain, deploy, pccs) = (ports[0], ports[1], ports[2], ports[3], ports[4]);
        let status = Command::new(sim_bin())
            .args(["localnet", "up", "--dir"])
            .arg(&sim_dir)
            .args([
                "--database-url",
                &services.database_url,
                "--redis-url",
                &services.redis_url,
            ])
            .args([
                "--operator-database",
                dbs.node0.name(),
                "--kyc-database",
                dbs.kyc.name(),
            ])
            .args(["--redis-prefix", &dbs.redis_prefix])
            .args([
                "--operator-port",
                &op.to_string(),
                "--kyc-port",
                &kyc.to_string(),
            ])
            .args([
                "--chain-port",
                &chain.to_string(),
                "--deployment-port",
                &deploy.to_string(),
            ])
            .args(["--pccs-port", &pccs.to_string()])
            .args(["--traffic", if opts.traffic { "on" } else { "off" }])
            .args(["--status-shape", opts.status_shape])
            .args(opts.sim_args)
            .output()
            .expect("run rollgate-sim localnet up");
        assert!(
            status.status.success(),
            "localnet up failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );

        let pin = std::fs::read_to_string(sim_dir.join("pccs/cert.sha256")).unwrap();
        let ticks = dir.path().join("poll-ticks");
        let tick = if faults.poll_ticks {
            format!("printf . >> '{}'; ", ticks.display())
        } else {
            String::new()
        };
        let runtime_block = format!(
            r#"[runtime]
driver = "command"

[runtime.command]
env = ["ROLLGATE_SIM_DIR"]
current = "rollgate-sim localnet current"
apply = "rollgate-sim localnet set"
restart = "rollgate-sim localnet restart"
stop = "rollgate-sim localnet stop"
start = "rollgate-sim localnet start"
logs = "{tick}awk -v s=\"$ROLLGATE_SINCE\" 'substr($1, 1, 23) >= substr(s, 1, 23)' \"$ROLLGATE_SIM_DIR/logs/$ROLLGATE_COMPONENT.log\""
timeout = "60s""#
        );
        // What rollgate's own probes reach: the real address, or a fault proxy in front of it.
        let outages = (!faults.proxied.is_empty()).then(|| {
            Outages::start(
                faults.proxied,
                &Upstreams {
                    postgres: &services.database_url,
                    redis: &services.redis_url,
                    chain,
                    deployment: deploy,
                    pccs,
                    aesm: sim_dir.join("aesm/aesm.socket"),
                },
                &dir.path().join("proxies"),
            )
        });
        let via = |d: Dependency, port: u16| {
            outages
                .as_ref()
                .and_then(|o| o.port(d))
                .unwrap_or(port)
                .to_string()
        };
        let aesm_socket = outages
            .as_ref()
            .and_then(|o| o.socket(Dependency::Aesm))
            .unwrap_or_else(|| sim_dir.join("aesm/aesm.socket"));
        let user = uid_name();
        let mut text = TEMPLATE
            .replace("@MODE@", "localnet.loopback")
            .replace(
                "@APP_CONFIG@",
                &sim_dir.join("app_config").display().to_string(),
            )
            .replace("@OWNER@", &user)
            .replace("@STATE_DIR@", &state.display().to_string())
            .replace(
                "@RUNTIME_ENV@",
                &sim_dir.join("runtime.env").display().to_string(),
            )
            .replace("@CHAIN_URL@", &format!("http://127.0.0.1:{chain}"))
            .replace("@DEPLOYMENT_URL@", &format!("http://127.0.0.1:{deploy}"))
            .replace("@CHAIN_PORT@", &via(Dependency::Chain, chain))
            .replace(
                "@DEPLOYMENT_PORT@",
                &via(Dependency::DeploymentService, deploy),
            )
            .replace("@PCCS_PORT@", &via(Dependency::Pccs, pccs))
            .replace("@OPERATOR_PORT@", &op.to_string())
            .replace("@KYC_PORT@", &kyc.to_string())
            .replace("@PCCS_PIN@", pin.trim())
            .replace("@AESM_SOCKET@", &aesm_socket.display().to_string())
            .replace("@OPERATOR_DB@", dbs.node0.name())
            .replace("@KYC_DB@", dbs.kyc.name())
            .replace("@WINDOW@", opts.window)
            .replace("@BAKE@", opts.bake)
            .replace("@RUNTIME@", &runtime_block)
            .replace(
                "readiness_deadline = \"30s\"",
                &format!("readiness_deadline = \"{}\"", opts.readiness_deadline),
            )
            .replace(
                "idle_progression = \"fail\"",
                &format!("idle_progression = \"{}\"", opts.idle_progression),
            )
            .replace("poll_interval = \"500ms\"", "poll_interval = \"300ms\"");
        text.push_str(opts.extra);
        let config = dir.path().join("rollgate.toml");
        std::fs::write(&config, text).unwrap();
        Some(Node {
            dir,
            config,
            sim_dir,
            dbs: Some(dbs),
            database_url: services.database_url,
            redis_url: services.redis_url,
            outages,
            ticks,
            operator_port: op,
        })
    }

    /// The operator's database (`node0_<suffix>`) and a URL connecting to it.
    pub fn operator_database(&self) -> (String, String) {
        let dbs = self.dbs.as_ref().expect("a node with databases");
        (dbs.node0.name().to_string(), dbs.node0.url().to_string())
    }

    /// The test Postgres (not through a fault proxy).
    pub fn database_url(&self) -> String {
        self.database_url.clone()
    }

    /// The fault proxies of [`NodeFaults::proxied`]; panics when there are none.
    pub fn outages(&self) -> &Outages {
        self.outages
            .as_ref()
            .expect("NodeOptions::proxied names no dependency")
    }

    /// Gate polls so far (with [`NodeFaults::poll_ticks`]).
    pub fn polls(&self) -> u64 {
        std::fs::metadata(&self.ticks).map(|m| m.len()).unwrap_or(0)
    }

    /// A `rollgate` command for this node, with JSON output.
    pub fn rollgate(&self) -> Command {
        let mut c = Command::new(rollgate_bin());
        let path = format!(
            "{}:{}",
            sim_bin().parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let outages = self.outages.as_ref();
        let database_url = outages
            .and_then(|o| o.url(Dependency::Postgres))
            .unwrap_or_else(|| self.database_url.clone());
        let redis_url = outages
            .and_then(|o| o.url(Dependency::Redis))
            .unwrap_or_else(|| self.redis_url.clone());
        c.env("ROLLGATE_CONFIG", &self.config)
            .env("ROLLGATE_SIM_DIR", &self.sim_dir)
            .env("ROLLGATE_TEST_DATABASE_URL", database_url)
            .env("ROLLGATE_TEST_REDIS_URL", redis_url)
            .env("PATH", path)
            .env_remove("ROLLGATE_CRASH_AT")
            .arg("--json");
        c
    }

    /// Run rollgate with these arguments; the output and the parsed JSON document.
    pub fn run(&self, args: &[&str]) -> (Output, Value) {
        let out = self.rollgate().args(args).output().expect("run rollgate");
        let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out, json)
    }

    /// Append `text` (tables) to this node's rollgate configuration.
    pub fn append_config(&self, text: &str) {
        let mut config = std::fs::read_to_string(&self.config).unwrap();
        config.push_str(text);
        std::fs::write(&self.config, config).unwrap();
    }

    /// Replace `from` (which must occur) with `to` in this node's rollgate configuration.
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        assert!(text.contains(from), "`{from}` is not in the configuration");
        std::fs::write(&self.config, text.replace(from, to)).unwrap();
    }

    /// Run rollgate with these arguments and `ROLLGATE_CRASH_AT=at`; it must die by SIGKILL there.
    pub fn killed_at(&self, args: &[&str], at: &str) {
        use std::os::unix::process::ExitStatusExt;
        let out = self
            .rollgate()
            .args(args)
            .env("ROLLGATE_CRASH_AT", at)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{at}: rollgate was not killed there: {}",
            explain(&out)
        );
    }

    /// Wait until the journal's active rollout has written an intent for `step`. Fails when
    /// `child` (the rollout) ends first, or after 60 s (killing it), with what it wrote to
    /// stdout and stderr (when piped).
    pub fn wait_for_step(&self, step: &str, child: &mut std::process::Child) {
        use std::io::Read;
        let started = std::time::Instant::now();
        loop {
            let (_, status) = self.run(&["status"]);
            if status["active_rollout"]["last_step"]["kind"] == step {
                return;
            }
            let ended = child.try_wait().ok().flatten();
            if ended.is_some() || started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let exit = child.wait();
                let mut output = String::new();
                if let Some(mut pipe) = child.stdout.take() {
                    let _ = pipe.read_to_string(&mut output);
                }
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut output);
                }
                panic!(
                    "the rollout never reached {step} ({exit:?}): {status:#}\n--- its output\n{output}"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `rollgate status` shows no unfinished rollout (`context` says which case failed).
    pub fn assert_no_active_rollout(&self, context: &str) {
        let (_, status) = self.run(&["status"]);
        assert!(
            status["active_rollout"].is_null(),
            "{context}: still unfinished: {status:#}"
        );
    }

    /// The version the localnet records for a layer.
    pub fn current(&self, layer: &str) -> String {
        let out = Command::new(sim_bin())
            .args(["localnet", "current", layer, "--dir"])
            .arg(&self.sim_dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn uid_name() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Drop for Node {
    fn drop(&mut self) {
        self.outages.take();
        let _ = Command::new(sim_bin())
            .args(["localnet", "down", "--dir"])
            .arg(&self.sim_dir)
            .output();
        if let Some(dbs) = self.dbs.take() {
            let redis = self.redis_url.clone();
            let _ = runtime().block_on(async move {
                tokio::time::timeout(Duration::from_secs(20), dbs.drop_with_redis(Some(&redis)))
                    .await
            });
        }
    }
}

/// The kinds of the journal steps in a decision record (`rollout`, `resume`, `show`), in
/// order; a record without `steps` fails the test.
pub fn step_kinds(record: &Value) -> Vec<&str> {
    record["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("a record without `steps`: {record:#}"))
        .iter()
        .filter_map(|s| s["kind"].as_str())
        .collect()
}

/// The exit code, printing the output when it is not the expected one.
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn explain(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An HTTP server on loopback answering every request `200` with the JSON `body()` (asked
/// anew per request) and closing the connection: a readiness endpoint without the simulator.
pub fn json_server(body: impl Fn() -> String + Send + 'static) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut sock in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf);
            let body = body();
            let _ = write!(
                sock,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// A node without the simulator, under `dir`: readiness `operator` at `url` with `expect`
/// (TOML), the command driver with `current` and `apply`, and `extra` tables appended.
pub fn command_node_config(
    dir: &std::path::Path,
    url: &str,
    expect: &str,
    current: &str,
    apply: &str,
    extra: &str,
) -> String {
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(dir.join("app/addresses.json"), "{}").unwrap();
    format!(
        r#"
[node]
name = "node0"
mode = "localnet.loopback"
app_config = "{dir}/app"
deployment_metadata = "addresses.json"
deployment_metadata_owner = "root"
enclave = false
state_dir = "{dir}/state"

[readiness.operator]
url = "{url}"
expect = [ {expect} ]

[runtime]
driver = "command"

[runtime.command]
current = "{current}"
apply = "{apply}"
restart = "true"

[components.operator]
service = "operator"

[layers.operator-image]
kind = "image"
components = ["operator"]
{extra}"#,
        dir = dir.display(),
    )
}

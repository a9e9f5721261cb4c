//! Rollouts with the compose driver on real containers (images from `scripts/build-images`):
//! a good image is promoted, an image whose requestIndex stalls is rolled back by digest, only
//! the operator's container is recreated, and nothing is left behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rollgate_sim::testenv::{self, NodeDatabases};
use serde_json::Value;

use crate::fixture::{code, explain, free_ports, rollgate_bin};

const TEMPLATE: &str = include_str!("../../../../demo/rollgate.toml.in");

fn compose_cmd() -> Vec<String> {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if v2 {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

fn docker_ok() -> bool {
    Command::new("docker")
        .args([
            "image",
            "inspect",
            "rollgate-sim/operator:v1.1.0-stall-request",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn compose_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker")
}

pub(crate) struct Stack {
    pub project: String,
    /// Compose files of the test on top of `compose.yml` (absolute).
    overrides: Vec<PathBuf>,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The operator's port published on 127.0.0.1.
    pub operator_port: u16,
    dbs: Option<NodeDatabases>,
    redis_url: String,
}

impl Stack {
    pub(crate) fn compose(&self, args: &[&str]) -> std::process::Output {
        let cmd = compose_cmd();
        let mut c = Command::new(&cmd[0]);
        c.args(&cmd[1..]).current_dir(compose_dir()).args([
            "-p",
            &self.project,
            "-f",
            "compose.yml",
        ]);
        for f in &self.overrides {
            c.arg("-f").arg(f);
        }
        c.args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    /// `rollgate` with this node's configuration and the stack's environment (what its
    /// compose driver passes to Compose).
    pub(crate) fn rollgate_command(&self) -> Command {
        let mut c = Command::new(rollgate_bin());
        c.env("ROLLGATE_CONFIG", &self.config);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub(crate) fn rollgate(&self, args: &[&str]) -> (std::process::Output, Value) {
        let out = self
            .rollgate_command()
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out, v)
    }

    /// Container id and start time of a service, found by its Compose labels.
    pub(crate) fn container(&self, service: &str) -> (String, String) {
        let out = Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                &format!("label=com.docker.compose.project={}", self.project),
            ])
            .args([
                "--filter",
                &format!("label=com.docker.compose.service={service}"),
            ])
            .output()
            .unwrap();
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!id.is_empty(), "no container for {service}");
        let out = Command::new("docker")
            .args(["inspect", "-f", "{{.State.StartedAt}}", &id])
            .output()
            .unwrap();
        (id, String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--remove-orphans"]);
        if let Some(dbs) = self.dbs.take() {
            let redis = self.redis_url.clone();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _ = rt.block_on(async move {
                tokio::time::timeout(Duration::from_secs(20), dbs.drop_with_redis(Some(&redis)))
                    .await
            });
        }
    }
}

fn wait_http(url: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if Command::new("curl")
            .args(["-fsS", "-o", "/dev/null", url])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {url}");
}

/// What [`start_stack_with`] starts besides the plain localnet.
#[derive(Debug, Default, Clone)]
pub(crate) struct StackSpec {
    /// Appended to the rollgate configuration.
    pub extra: String,
    /// With it, the operator reads its configuration file `run/operator/operator.env` (holding
    /// this text from the start) through `SIM_ENV_FILE`, bind-mounted read-only by a Compose file
    /// of the test's own (the project's `compose.yml` stays as it is): the file a `config` layer
    /// changes.
    pub operator_config: Option<String>,
    /// Cluster mode: this node's Raft id and the host directory of the cluster file, through
    /// `docker/compose.cluster.yml` (which the rollgate configuration lists too).
    pub cluster: Option<(u64, PathBuf)>,
}

/// The simulated stack under Compose with its own databases and ports, and a rollgate
/// configuration for it (compose driver) with `extra` appended; `None` when the services or
/// the images are missing outside CI. With `operator_config`, see [`StackSpec`].
fn start_stack(extra: &str, operator_config: Option<&str>) -> Option<Stack> {
    start_stack_with(StackSpec {
        extra: extra.to_string(),
        operator_config: operator_config.map(str::to_string),
        cluster: None,
    })
}

/// [`start_stack`] with every option.
pub(crate) fn start_stack_with(spec: StackSpec) -> Option<Stack> {
    let services = testenv::require_services()?;
    if !docker_ok() {
        assert!(
            !testenv::in_ci(),
            "the rollgate-sim images are missing: run scripts/build-images (CI=true)"
        );
        eprintln!("skipped: no rollgate-sim images (run scripts/build-images)");
        return None;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dbs = rt
        .block_on(NodeDatabases::create(&services.database_url))
        .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("rollgate-compose")
        .tempdir()
        .unwrap();
    let run = dir.path().join("run");
    for d in ["link", "aesmd", "app_config", "pccs", "state"] {
        std::fs::create_dir_all(run.join(d)).unwrap();
    }
    std::fs::write(run.join(".env"), "SGX_DEBUG=0\nSGX_PRERELEASE=1\n").unwrap();
    let mut overrides = Vec::new();
    if let Some(text) = &spec.operator_config {
        std::fs::create_dir_all(run.join("operator")).unwrap();
        std::fs::write(run.join("operator/operator.env"), text).unwrap();
        let file = dir.path().join("operator-config.yml");
        std::fs::write(
            &file,
            format!(
                "version: \"2.4\"\nservices:\n  operator:\n    environment:\n      \
                 SIM_ENV_FILE: /etc/operator/operator.env\n    volumes:\n      \
                 - {}:/etc/operator:ro\n",
                run.join("operator").display()
            ),
        )
        .unwrap();
        overrides.push(file);
    }
    let ports = free_ports(5);
    let project = format!("rgtest{}", testenv::unique_suffix().replace('_', ""));
    let mut env: Vec<(String, String)> = [
        ("SIM_RUN_DIR", run.display().to_string()),
        ("OPERATOR_DATABASE", dbs.node0.name().to_string()),
        ("KYC_DATABASE", dbs.kyc.name().to_string()),
        ("REDIS_PREFIX", dbs.redis_prefix.clone()),
        ("OPERATOR_PORT", ports[0].to_string()),
        ("KYC_PORT", ports[1].to_string()),
        ("CHAIN_PORT", ports[2].to_string()),
        ("DEPLOYMENT_PORT", ports[3].to_string()),
        ("PCCS_PORT", ports[4].to_string()),
        ("ROLLGATE_TEST_DATABASE_URL", services.database_url.clone()),
        ("ROLLGATE_TEST_REDIS_URL", services.redis_url.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some((id, cluster_dir)) = &spec.cluster {
        overrides.push(compose_dir().join("compose.cluster.yml"));
        env.push(("NODE_ID".into(), id.to_string()));
        env.push(("CLUSTER_DIR".into(), cluster_dir.display().to_string()));
    }
    let config = dir.path().join("rollgate.toml");
    let mut stack = Stack {
        project,
        overrides,
        env,
        _dir: dir,
        config,
        operator_port: ports[0],
        dbs: Some(dbs),
        redis_url: services.redis_url.clone(),
    };
    let out = stack.compose(&["up", "-d"]);
    assert!(out.status.success(), "compose up: {}", explain(&out));
    wait_http(&format!("http://127.0.0.1:{}/v2/status", ports[0]));
    let pin_file = run.join("pccs/cert.sha256");
    let started = Instant::now();
    while !pin_file.exists() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let files: Vec<String> = std::iter::once("\"compose.yml\"".to_string())
        .chain(
            stack
                .overrides
                .iter()
                .map(|f| format!("\"{}\"", f.display())),
        )
        .collect();
    let runtime = format!(
        "[runtime]\ndriver = \"compose\"\n\n[runtime.compose]\nproject_dir = \"{}\"\nfiles = [{}]\nproject_name = \"{}\"",
        compose_dir().display(),
        files.join(", "),
        stack.project
    );
    let owner = String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout)
        .trim()
        .to_string();
    let text = TEMPLATE
        .replace("@MODE@", "localnet.compose")
        .replace(
            "@APP_CONFIG@",
            &run.join("app_config").display().to_string(),
        )
        .replace("@OWNER@", &owner)
        .replace("@STATE_DIR@", &run.join("state").display().to_string())
        .replace("@RUNTIME_ENV@", &run.join(".env").display().to_string())
        .replace("@CHAIN_URL@", "http://ethereum:8545")
        .replace("@DEPLOYMENT_URL@", "http://deployment-service:4040")
        .replace("@CHAIN_PORT@", &ports[2].to_string())
        .replace("@DEPLOYMENT_PORT@", &ports[3].to_string())
        .replace("@PCCS_PORT@", &ports[4].to_string())
        .replace("@OPERATOR_PORT@", &ports[0].to_string())
        .replace("@KYC_PORT@", &ports[1].to_string())
        .replace(
            "@PCCS_PIN@",
            std::fs::read_to_string(&pin_file).unwrap().trim(),
        )
        .replace(
            "@AESM_SOCKET@",
            &run.join("aesmd/aesm.socket").display().to_string(),
        )
        .replace("@OPERATOR_DB@", stack.dbs.as_ref().unwrap().node0.name())
        .replace("@KYC_DB@", stack.dbs.as_ref().unwrap().kyc.name())
        .replace("@WINDOW@", "3s")
        .replace("@BAKE@", "0s")
        .replace("@RUNTIME@", &runtime);
    std::fs::write(&stack.config, text + &spec.extra).unwrap();
    stack.env.push(("NO_COLOR".into(), "1".into()));
    Some(stack)
}

#[test]
fn compose_driver_promotes_a_good_image_and_rolls_back_every_bad_one() {
    let Some(stack) = start_stack("", None) else {
        return;
    };

    let kyc_before = stack.container("kyc");
    let op_before = stack.container("operator");
    let (out, record) = stack.rollgate(&[
        "rollout",
        "operator-image=rollgate-sim/operator:v1.1.0",
        "--yes",
    ]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(record["outcome"], "promoted", "{record:#}");
    assert!(
        record["from"]
            .as_str()
            .unwrap()
            .starts_with("rollgate-sim/operator:v1.0.0"),
        "{record:#}"
    );
    assert_ne!(
        stack.container("operator").0,
        op_before.0,
        "the operator must be recreated"
    );
    assert_eq!(
        stack.container("kyc"),
        kyc_before,
        "kyc must keep its container and start time"
    );

    let (out, record) = stack.rollgate(&[
        "rollout",
        "operator-image=rollgate-sim/operator:v1.1.0-stall-request",
        "--yes",
    ]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    assert_eq!(record["outcome"], "rolled_back");
    assert_eq!(record["rollback"]["verified"], true, "{record:#}");
    let restored = record["rollback"]["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "restored:operator-image")
        .unwrap()
        .clone();
    assert_eq!(restored["verdict"], "pass", "{restored}");
    assert!(
        restored["evidence"]["recorded"]["digest"]
            .as_str()
            .unwrap_or("")
            .starts_with("sha256:"),
        "restored by digest: {restored}"
    );
    assert_eq!(
        stack.container("kyc"),
        kyc_before,
        "kyc must keep its container and start time"
    );

    // Every other bad version, on real containers: rolled back, the baseline re-verified, and the
    // layer back on its recorded digest.
    for (layer, image, gates) in [
        (
            "operator-image",
            "rollgate-sim/operator:v1.1.0-crash-loop",
            &["readiness:", "component:"][..],
        ),
        (
            "operator-image",
            "rollgate-sim/operator:v1.1.0-stall-tx",
            &["progression:lastTx"][..],
        ),
        (
            "operator-image",
            "rollgate-sim/operator:v1.1.0-attestation-fault",
            &["faults"][..],
        ),
        (
            "operator-image",
            "rollgate-sim/operator:v1.1.0-registration-fault",
            &["faults"][..],
        ),
        (
            "kyc-image",
            "rollgate-sim/kyc:v1.1.0-unhealthy",
            &["readiness:kyc"][..],
        ),
        (
            "kyc-image",
            "rollgate-sim/kyc:v1.1.0-crash-loop",
            &["readiness:", "component:"][..],
        ),
    ] {
        let (out, record) = stack.rollgate(&["rollout", &format!("{layer}={image}"), "--yes"]);
        assert_eq!(code(&out), 4, "{image}: {}", explain(&out));
        let failed = record["gates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["verdict"] == "fail")
            .map(|g| g["name"].as_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(
            gates.iter().any(|g| failed.starts_with(g)),
            "{image}: failing gate {failed:?} not in {gates:?}: {record:#}"
        );
        assert_eq!(record["rollback"]["verified"], true, "{image}: {record:#}");
    }

    let (_, status) = stack.rollgate(&["status"]);
    assert!(
        status["layers"]["operator-image"]["value"]
            .as_str()
            .unwrap()
            .contains("v1.1.0"),
        "{status:#}"
    );

    let project = stack.project.clone();
    drop(stack);
    let left = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "containers left behind"
    );
    let nets = Command::new("docker")
        .args([
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name={project}"),
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&nets.stdout).trim().is_empty(),
        "networks left behind"
    );
}

/// The environment of a service's running container, as `KEY=VALUE` lines.
fn container_env(stack: &Stack, service: &str) -> Vec<String> {
    let (id, _) = stack.container(service);
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{json .Config.Env}}", &id])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

const ENV_AND_CONFIG_LAYERS: &str = r#"

[layers.operator-env]
kind = "env"
components = ["operator"]

[layers.operator-config]
kind = "config"
files = ["run/operator/operator.env"]
components = ["operator"]
"#;

/// `env` layers under Compose: overrides through rollgate's override file (the operator's
/// Compose files untouched), values masked, a bad set rolled back to the previous one; and a
/// `config` layer with `files` under the compose driver: the operator reads the file (mounted
/// into its container), a good one is promoted, a bad one (`OPERATOR_MARK_PRICE=off`: no mark
/// prices) fails the mark-price gate and is rolled back with the exact bytes restored.
#[test]
fn compose_env_layer_promotes_and_rolls_back_and_config_files_work() {
    // The config layer's file exists from the start: the baselines record it. It sets no
    // OPERATOR_MARK_PRICE, which would override the env layer's SIM_NO_MARK_PRICE below.
    let Some(stack) = start_stack(ENV_AND_CONFIG_LAYERS, Some("A=1\n")) else {
        return;
    };
    let file = stack
        .config
        .parent()
        .unwrap()
        .join("run/operator/operator.env");
    let compose_file = compose_dir().join("compose.yml");
    let compose_before = std::fs::read(&compose_file).unwrap();
    let secret = "tok-s3cret-value";
    let good = format!("operator-env=RUST_LOG=debug,API_TOKEN={secret}");

    let (out, plan) = stack.rollgate(&["plan", &good]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let diff = plan["diff"][0]["diff"].as_str().unwrap_or("").to_string();
    assert!(
        diff.contains("+API_TOKEN=****") && diff.contains("+RUST_LOG=debug"),
        "{diff}"
    );

    let op_before = stack.container("operator");
    let (out, record) = stack.rollgate(&["rollout", &good, "--yes"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(record["outcome"], "promoted", "{record:#}");
    assert_ne!(stack.container("operator").0, op_before.0, "not recreated");
    let env = container_env(&stack, "operator");
    assert!(env.contains(&"RUST_LOG=debug".to_string()), "{env:?}");
    assert!(env.contains(&format!("API_TOKEN={secret}")), "{env:?}");
    let (_, history) = stack.rollgate(&["history"]);
    let id = record["rollout_id"].as_str().unwrap();
    let (shown, _) = stack.rollgate(&["show", id]);
    for text in [
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
        String::from_utf8_lossy(&shown.stdout).to_string(),
        history.to_string(),
        plan.to_string(),
    ] {
        assert!(!text.contains(secret), "the secret leaked: {text}");
    }

    // A set the operator cannot serve with (no mark prices): rolled back to the previous set.
    let (out, record) =
        stack.rollgate(&["rollout", "operator-env=SIM_NO_MARK_PRICE=true", "--yes"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    assert_eq!(record["rollback"]["verified"], true, "{record:#}");
    let env = container_env(&stack, "operator");
    assert!(env.contains(&format!("API_TOKEN={secret}")), "{env:?}");
    assert!(
        !env.iter().any(|e| e.starts_with("SIM_NO_MARK_PRICE")),
        "{env:?}"
    );
    assert_eq!(std::fs::read(&compose_file).unwrap(), compose_before);

    // A config layer with files under the compose driver: written, the operator recreated.
    let promoted = b"# promoted\nA=2\n";
    let new = stack.config.parent().unwrap().join("new.env");
    std::fs::write(&new, promoted).unwrap();
    let (out, record) = stack.rollgate(&[
        "rollout",
        &format!("operator-config={}", new.display()),
        "--yes",
    ]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(record["outcome"], "promoted", "{record:#}");
    assert_eq!(std::fs::read(&file).unwrap(), promoted);

    // A bad file: the operator reads it on its recreation and serves no mark prices; the
    // mark-price gate fails and the promoted bytes come back exactly.
    let bad = stack.config.parent().unwrap().join("bad.env");
    std::fs::write(&bad, "OPERATOR_MARK_PRICE=off\nA=3\n").unwrap();
    let op_before = stack.container("operator");
    let (out, record) = stack.rollgate(&[
        "rollout",
        &format!("operator-config={}", bad.display()),
        "--yes",
    ]);
    crate::config_layer::assert_rolled_back_by_mark_price(&out, &record);
    assert_eq!(std::fs::read(&file).unwrap(), promoted);
    assert_ne!(stack.container("operator").0, op_before.0, "not recreated");
    assert_eq!(std::fs::read(&compose_file).unwrap(), compose_before);
}

//! The Compose localnet (mode `localnet.compose`) with the images from `scripts/build-images`:
//! up under a unique project name, read `/v2/status` through the published port, swap the
//! operator's image tag, see the new version answer, bring it down and leave nothing behind.
//! It builds nothing itself; without the images it skips (and fails under `CI=true`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rollgate_sim::testenv;
use tokio::process::Command;

use crate::common::{client, eventually, free_port, get_json};

const IMAGES: [&str; 8] = [
    "rollgate-sim/operator:v1.0.0",
    "rollgate-sim/operator:v1.1.0",
    "rollgate-sim/kyc:v1.0.0",
    "rollgate-sim/chain:latest",
    "rollgate-sim/deployment:latest",
    "rollgate-sim/pccs:latest",
    "rollgate-sim/aesm:latest",
    "rollgate-sim/proxy:latest",
];

fn compose_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker/compose.yml")
}

async fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// `docker compose` (v2) when present, else `docker-compose` (v1).
async fn compose_command() -> Option<Vec<String>> {
    if succeeds(Command::new("docker").args(["compose", "version"])).await {
        return Some(vec!["docker".into(), "compose".into()]);
    }
    if succeeds(Command::new("docker-compose").arg("version")).await {
        return Some(vec!["docker-compose".into()]);
    }
    None
}

fn skip_or_fail(why: &str) {
    if testenv::in_ci() {
        panic!("{why} (CI=true): run scripts/build-images before the tests");
    }
    eprintln!("skipped: {why}; run scripts/build-images to enable this test");
}

struct Project {
    compose: Vec<String>,
    name: String,
    env: Vec<(String, String)>,
}

impl Project {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.compose[0]);
        c.args(&self.compose[1..])
            .args(["-p", &self.name, "-f"])
            .arg(compose_file())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    async fn run(&self, args: &[&str], extra_env: &[(&str, &str)]) {
        let mut c = self.command(args);
        c.envs(extra_env.iter().copied());
        let out = c.output().await.unwrap();
        assert!(
            out.status.success(),
            "compose {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn logs(&self) -> String {
        let out = self
            .command(&["logs", "--no-color", "--tail", "30"])
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        // Failure path only (the test brings the project down itself): never leak containers.
        let _ = std::process::Command::new(&self.compose[0])
            .args(&self.compose[1..])
            .args(["-p", &self.name, "-f"])
            .arg(compose_file())
            .args(["down", "-v", "--remove-orphans", "-t", "2"])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output();
    }
}

/// Ids of the containers (stopped ones too) or networks labelled with the project.
async fn docker_ids(kind: &str, project: &str) -> String {
    let all: &[&str] = if kind == "container" { &["-a"] } else { &[] };
    let out = Command::new("docker")
        .args([kind, "ls", "-q"])
        .args(all)
        .arg("--filter")
        .arg(format!("label=com.docker.compose.project={project}"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "docker {kind} ls failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn compose_localnet_swaps_the_operator_image() {
    let Some(services) = testenv::require_services() else {
        return;
    };
    let Some(compose) = compose_command().await else {
        return skip_or_fail("neither `docker compose` nor `docker-compose` works");
    };
    for image in IMAGES {
        if !succeeds(Command::new("docker").args(["image", "inspect", image])).await {
            return skip_or_fail(&format!("image {image} is missing"));
        }
    }
    // Containers reach the host's Postgres through its unix socket directory.
    let pg_dir =
        std::env::var("ROLLGATE_TEST_PG_SOCKET_DIR").unwrap_or_else(|_| "/tmp/rollgate-pg".into());
    let pg_port = services
        .database_url
        .parse::<tokio_postgres::Config>()
        .unwrap()
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432);
    if !Path::new(&pg_dir)
        .join(format!(".s.PGSQL.{pg_port}"))
        .exists()
    {
        return skip_or_fail(&format!("no Postgres socket in {pg_dir}"));
    }
    let redis_addr = match rollgate_sim::db::redis_endpoint(&services.redis_url).unwrap() {
        rollgate_sim::Endpoint::Tcp(a) => a,
        rollgate_sim::Endpoint::Unix(_) => {
            return skip_or_fail("the compose test needs a TCP Redis URL");
        }
    };

    let dbs = testenv::NodeDatabases::create(&services.database_url)
        .await
        .unwrap();
    let run_dir = tempfile::tempdir().unwrap();
    let suffix = testenv::unique_suffix().replace('_', "");
    let operator_port = free_port();
    let kyc_port = free_port();
    let env: Vec<(String, String)> = [
        ("SIM_RUN_DIR", run_dir.path().display().to_string()),
        ("PG_SOCKET_DIR", pg_dir),
        ("PG_PORT", pg_port.to_string()),
        ("REDIS_HOST_ADDR", redis_addr),
        ("OPERATOR_DATABASE", dbs.node0.name().to_owned()),
        ("KYC_DATABASE", dbs.kyc.name().to_owned()),
        ("REDIS_PREFIX", dbs.redis_prefix.clone()),
        ("OPERATOR_PORT", operator_port.to_string()),
        ("KYC_PORT", kyc_port.to_string()),
        ("CHAIN_PORT", free_port().to_string()),
        ("DEPLOYMENT_PORT", free_port().to_string()),
        ("PCCS_PORT", free_port().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let project = Project {
        compose,
        name: format!("rgsimtest{suffix}"),
        env,
    };

    project.run(&["up", "-d"], &[]).await;
    let url = format!("http://127.0.0.1:{operator_port}");
    let wait_version = |want: &'static str| {
        let url = url.clone();
        async move {
            let found = tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    if let Ok(r) = client().get(format!("{url}/v2/status")).send().await
                        && let Ok(v) = r.json::<serde_json::Value>().await
                        && v["version"] == want
                        && v["health"] == "Healthy"
                    {
                        return v;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await;
            found.ok()
        }
    };
    let Some(st) = wait_version("v1.0.0").await else {
        panic!(
            "operator v1.0.0 never became healthy:\n{}",
            project.logs().await
        );
    };
    assert_eq!(st["dependencies"]["postgres"], "ok");
    assert_eq!(st["dependencies"]["redis"], "ok");
    let kyc = eventually(Duration::from_secs(10), "kyc status", || async {
        let v = get_json(&format!("http://127.0.0.1:{kyc_port}/v1/status")).await;
        (v["isHealthy"] == true).then_some(v)
    })
    .await;
    assert_eq!(kyc["version"], "v1.0.0");
    assert!(
        run_dir
            .path()
            .join("app_config/ethereum/addresses.json")
            .exists()
    );

    // Swap one service's image tag; only the operator is recreated.
    project
        .run(
            &["up", "-d", "--no-deps", "operator"],
            &[("OPERATOR_IMAGE", "rollgate-sim/operator:v1.1.0")],
        )
        .await;
    if wait_version("v1.1.0").await.is_none() {
        panic!("operator v1.1.0 never answered:\n{}", project.logs().await);
    }

    project
        .run(&["down", "-v", "--remove-orphans", "-t", "2"], &[])
        .await;
    assert_eq!(
        docker_ids("container", &project.name).await,
        "",
        "containers left behind"
    );
    assert_eq!(
        docker_ids("network", &project.name).await,
        "",
        "networks left behind"
    );
    drop(project);
    dbs.drop_with_redis(Some(&services.redis_url)).await;
}

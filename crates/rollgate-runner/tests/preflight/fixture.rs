//! A simulated node and a rollgate configuration pointing at it.
//!
//! Chain, deployment-service and PCCS are reached through fault proxies of our own, so each can
//! be "stopped" by cutting its proxy; Postgres and Redis through the stack's own proxies (the
//! node loses them too, as when the real service stops); AESM by cutting its socket.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use rollgate_core::config::{Config, MapEnv, load_str};
use rollgate_sim::testenv::{NodeDatabases, require_services};
use rollgate_sim::{Endpoint, FaultProxy, RunningStack, SimStack, StackOptions};

pub struct Node {
    pub stack: RunningStack,
    pub chain: FaultProxy,
    pub deployment: FaultProxy,
    pub pccs: FaultProxy,
    pub dbs: Option<NodeDatabases>,
    pub redis_url: String,
    pub dir: tempfile::TempDir,
}

/// Knobs of the generated configuration.
#[derive(Debug, Clone)]
pub struct Knobs {
    pub idle_policy: &'static str,
    pub owner: Option<String>,
    pub runtime_env: String,
    pub baseline_window: &'static str,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            idle_policy: "fail",
            owner: None,
            runtime_env:
                "# node runtime\nexport SGX_DEBUG=0\nSGX_PRERELEASE=\"1\"\nREPORT_TYPE=SELF\n"
                    .into(),
            baseline_window: "1s",
        }
    }
}

fn endpoint_of(url: &str) -> Endpoint {
    Endpoint::parse(
        url.trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/'),
    )
}

async fn proxy(url: &str) -> FaultProxy {
    FaultProxy::start("127.0.0.1:0", endpoint_of(url))
        .await
        .unwrap()
}

impl Node {
    /// Start a node; `None` (test skipped) outside CI when the services are not running.
    pub async fn start(traffic: bool) -> Option<Node> {
        Node::start_with(traffic, |_| {}).await
    }

    /// [`Node::start`], with the stack's options edited first (the benchmark's block interval).
    pub async fn start_with(traffic: bool, edit: impl FnOnce(&mut StackOptions)) -> Option<Node> {
        let services = require_services()?;
        let dir = tempfile::tempdir().unwrap();
        let dbs = NodeDatabases::create(&services.database_url).await.unwrap();
        let mut opts = StackOptions::new(dir.path()).with_databases(
            &services.database_url,
            &dbs,
            &services.redis_url,
        );
        opts.traffic = traffic;
        opts.slow_start = Duration::ZERO;
        edit(&mut opts);
        let stack = SimStack::start(opts).await.unwrap();
        let chain = proxy(&stack.chain_url()).await;
        let deployment = proxy(&stack.deployment_url()).await;
        let pccs = proxy(&stack.pccs_url()).await;
        // Fake SGX device nodes: 0660 with a non-root group, as a real node has them.
        let dev = dir.path().join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        for name in ["sgx_enclave", "sgx_provision"] {
            let p = dev.join(name);
            std::fs::write(&p, b"").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o660)).unwrap();
            // Tests run as root here; elsewhere the file keeps the user's (non-root) group.
            let _ = std::os::unix::fs::chown(&p, None, Some(1));
        }
        let node = Node {
            stack,
            chain,
            deployment,
            pccs,
            dbs: Some(dbs),
            redis_url: services.redis_url,
            dir,
        };
        node.wait_until_ready().await;
        Some(node)
    }

    fn proxy_url(p: &FaultProxy, scheme: &str) -> String {
        format!("{scheme}://{}", p.local_addr().unwrap())
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The configuration text for this node.
    pub fn config_text(&self, k: &Knobs) -> String {
        let app_config = self.stack.app_config().display().to_string();
        let uid = std::fs::metadata(self.stack.deployment_metadata())
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap_or(0);
        let owner = k.owner.clone().unwrap_or_else(|| uid.to_string());
        std::fs::write(self.path("runtime.env"), &k.runtime_env).unwrap();
        let pg_proxy = self.stack.postgres_proxy().unwrap().local_addr().unwrap();
        let redis_proxy = self.stack.redis_proxy().unwrap().local_addr().unwrap();
        let dbs = self.dbs.as_ref().unwrap();
        let op = self.stack.operator_url();
        let kyc = self.stack.kyc_url();
        format!(
            r#"
[node]
name = "node0"
mode = "localnet.loopback"
app_config = "{app_config}"
deployment_metadata = "ethereum/addresses.json"
deployment_metadata_owner = "{owner}"
enclave = true
state_dir = "{dir}/state"

[sgx]
build_flags = "{app_config}/enclave/build-flags.env"
runtime_env = "{dir}/runtime.env"
report_type = "SELF"
devices = ["{dir}/dev/sgx_enclave", "{dir}/dev/sgx_provision"]

[dependencies]
chain = {{ url = "{chain}", chain_id = "0x539" }}
deployment_service = {{ url = "{deploy}", path = "/health" }}
postgres = {{ url = "postgres://postgres:pw@{pg_proxy}/postgres", databases = ["{node0}", "{kycdb}"] }}
redis = {{ url = "redis://{redis_proxy}" }}
pccs = {{ url = "{pccs}", pin_sha256 = "{pin}" }}
aesm = {{ socket = "{aesm}" }}

[[headroom.disk]]
path = "{dir}"
min_free = "1MiB"
min_free_percent = 1

[headroom.database]
max_growth_during_window = "1MiB"

[readiness.operator]
url = "{op}/v2/status"
expect = [ {{ pointer = "/health", equals = "Healthy" }}, {{ pointer = "/runningState", equals = "Running" }} ]

[readiness.kyc]
url = "{kyc}/v1/status"
expect = [ {{ pointer = "/isHealthy", equals = true }} ]

[probes.encryption_key]
url = "{op}/v2/encryption-key"

[probes.mark_price]
url = "{op}/v2/mark-price"
symbols = ["ETHP", "BTCP"]
price_pointer = "/{{symbol}}/price"
timestamp_pointer = "/{{symbol}}/timestamp"
max_age = "30s"

[[progression]]
name = "requestIndex"
url = "{op}/v2/status"
pointer = "/lastRequest/requestIndex"
window = "2s"

[[progression]]
name = "lastTx"
url = "{op}/v2/status"
pointer = "/lastTx"
mode = "changes"
window = "2s"

[faults]
pointers = ["/attestation/fault", "/registration/fault"]

[runtime]
driver = "command"

[runtime.command]
current = "printf 'rollgate-sim/%s:v1.0.0' \"$ROLLGATE_LAYER\""
apply = "true"
restart = "true"

[components.operator]
service = "operator"

[components.kyc]
service = "kyc"
readiness = "kyc"

[layers.operator-image]
kind = "image"
components = ["operator"]

[layers.kyc-image]
kind = "image"
components = ["kyc"]

[rollout]
idle_progression = "{idle}"
baseline_window = "{window}"
poll_interval = "100ms"

[probe]
timeout = "2s"
"#,
            dir = self.dir.path().display(),
            chain = Self::proxy_url(&self.chain, "http"),
            deploy = Self::proxy_url(&self.deployment, "http"),
            pccs = Self::proxy_url(&self.pccs, "https"),
            pin = self.stack.pccs_cert_sha256(),
            aesm = self.stack.aesm_socket().display(),
            node0 = dbs.node0.name(),
            kycdb = dbs.kyc.name(),
            idle = k.idle_policy,
            window = k.baseline_window,
        )
    }

    pub fn config(&self, k: &Knobs) -> Config {
        let text = self.config_text(k);
        let path = self.path("rollgate.toml");
        std::fs::write(&path, &text).unwrap();
        load_str(&path, &text, &MapEnv::default()).unwrap()
    }

    async fn wait_until_ready(&self) {
        let url = format!("{}/v2/status", self.stack.operator_url());
        let limits = rollgate_core::config::ProbeLimits {
            timeout: Duration::from_secs(2),
            max_body: 1 << 20,
        };
        let client = rollgate_probe::HttpClient::new(&limits).unwrap();
        for _ in 0..100 {
            if let Ok(v) = client.get_json(&url).await
                && v["health"] == "Healthy"
                && v["runningState"] == "Running"
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the simulated operator did not become healthy");
    }

    pub async fn shutdown(mut self) {
        let dbs = self.dbs.take();
        let redis = self.redis_url.clone();
        self.stack.shutdown().await;
        if let Some(dbs) = dbs {
            dbs.drop_with_redis(Some(&redis)).await;
        }
    }
}

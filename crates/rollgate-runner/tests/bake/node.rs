//! A simulated node, its rollgate configuration, and a runtime driver that only observes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rollgate_core::baseline::{Baseline, LayerValue};
use rollgate_core::config::{Component, Config, Layer, MapEnv, load_str};
use rollgate_runner::observe::Observer;
use rollgate_runtime::{ComponentState, DriverError, DriverOutput, RunStatus, RuntimeDriver};
use rollgate_sim::testenv::{NodeDatabases, require_services};
use rollgate_sim::{RunningStack, SimStack, StackOptions};

/// The test changes versions itself (`RunningStack::restart_operator`); the driver reports the
/// components as running and never restarted, as a container runtime would for a healthy node.
#[derive(Debug)]
pub struct ObservingDriver;

#[async_trait]
impl RuntimeDriver for ObservingDriver {
    fn name(&self) -> &'static str {
        "test"
    }
    async fn current(&self, layer: &Layer) -> Result<LayerValue, DriverError> {
        Ok(LayerValue {
            kind: layer.kind,
            value: "rollgate-sim/operator:v1.0.0".into(),
            digest: None,
        })
    }
    async fn apply(&self, _: &Layer, _: &str) -> Result<DriverOutput, DriverError> {
        Ok(DriverOutput::note("test: nothing applied"))
    }
    async fn restore(&self, _: &Layer, _: &LayerValue) -> Result<DriverOutput, DriverError> {
        Ok(DriverOutput::note("test: nothing restored"))
    }
    async fn restart(&self, _: &[Component]) -> Result<DriverOutput, DriverError> {
        Ok(DriverOutput::note("test: nothing restarted"))
    }
    async fn state(&self, component: &Component) -> Result<ComponentState, DriverError> {
        let mut s = ComponentState::unknown(&component.name);
        s.status = RunStatus::Running;
        s.restart_count = Some(0);
        Ok(s)
    }
    async fn logs_since(
        &self,
        _: &Component,
        _: std::time::SystemTime,
    ) -> Result<String, DriverError> {
        Ok(String::new())
    }
}

pub struct Node {
    pub stack: RunningStack,
    pub config: Config,
    /// The configuration's text, for [`Node::reconfigure`].
    text: String,
    path: std::path::PathBuf,
    dbs: Option<NodeDatabases>,
    redis_url: String,
    _dir: tempfile::TempDir,
}

const WARM_UP: Duration = Duration::from_secs(3);

const RULES: &str = r#"groups:
  - name: operator
    rules:
      - alert: OperatorDown
        expr: operator_up == 0 or absent(operator_up)
        for: 1m
      - alert: RequestsStalled
        expr: rate(operator_requests_total[5m]) == 0
      - record: operator:rejected:rate5m
        expr: sum(rate(operator_requests_rejected_total[5m]))
      - alert: Rejecting
        expr: operator:rejected:rate5m > 1
      - alert: DependencyDown
        expr: min by (dependency) (operator_dependency_up) == 0
      - alert: PostgresDown
        expr: operator_dependency_up{dependency="postgres"} == 0
"#;

impl Node {
    /// A running node on `v1.0.0`; `None` (skipped) outside CI when the services are missing.
    pub async fn start() -> Option<Node> {
        let services = require_services()?;
        let dir = tempfile::tempdir().unwrap();
        let dbs = NodeDatabases::create(&services.database_url).await.unwrap();
        let mut opts = StackOptions::new(dir.path()).with_databases(
            &services.database_url,
            &dbs,
            &services.redis_url,
        );
        opts.slow_start = Duration::ZERO;
        let stack = SimStack::start(opts).await.unwrap();
        let rules = dir.path().join("rules.yml");
        std::fs::write(&rules, RULES).unwrap();
        let uid = std::fs::metadata(stack.deployment_metadata())
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap_or(0);
        let op = stack.operator_url();
        let text = format!(
            r#"
[node]
name = "node0"
mode = "localnet.loopback"
app_config = "{app_config}"
deployment_metadata = "ethereum/addresses.json"
deployment_metadata_owner = "{uid}"
enclave = false
state_dir = "{dir}/state"

[dependencies]
chain = {{ url = "{chain}" }}
deployment_service = {{ url = "{deploy}", path = "/health" }}
postgres = {{ url = "{pg}", databases = ["{node0}", "{kyc}"] }}
redis = {{ url = "{redis}" }}

[[headroom.disk]]
path = "/dev/shm"
min_free = "1MiB"

[headroom.database]
max_growth_during_window = "64MiB"

[readiness.operator]
url = "{op}/v2/status"
expect = [ {{ pointer = "/health", equals = "Healthy" }}, {{ pointer = "/runningState", equals = "Running" }} ]

[readiness.kyc]
url = "{kycurl}/v1/status"
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

[alerts]
fields = ["/runningState", "/health", "/lastRequest/requestIndex", "/lastTx", "/raftMetrics/nodeId", "/raftMetrics/voterIds"]
rules_files = ["{rules}"]
metrics_urls = ["{op}/metrics"]

[runtime]
driver = "command"

[runtime.command]
current = "printf 'rollgate-sim/operator:v1.0.0'"
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

[rollout]
baseline_window = "3s"
poll_interval = "200ms"

[bake]
sample_interval = "200ms"
min_samples = 8

[probe]
timeout = "2s"
"#,
            app_config = stack.app_config().display(),
            dir = dir.path().display(),
            chain = stack.chain_url(),
            deploy = stack.deployment_url(),
            pg = services.database_url,
            node0 = dbs.node0.name(),
            kyc = dbs.kyc.name(),
            redis = services.redis_url,
            kycurl = stack.kyc_url(),
            rules = rules.display(),
        );
        let path = dir.path().join("rollgate.toml");
        std::fs::write(&path, &text).unwrap();
        let config = load_str(&path, &text, &MapEnv::default()).unwrap();
        let node = Node {
            stack,
            config,
            text,
            path,
            dbs: Some(dbs),
            redis_url: services.redis_url,
            _dir: dir,
        };
        node.wait_until_ready().await;
        // A fresh database grows in jumps for its first seconds (first pages of the table, its
        // index and TOAST, the free-space map); a real baseline is frozen on a node that has run
        // for a while.
        let dbs = node.dbs.as_ref().unwrap();
        dbs.node0.age_operator_table().await.unwrap();
        tokio::time::sleep(WARM_UP).await;
        Some(node)
    }

    /// Edit the configuration's text and load it again (defaults resolved as for a real file).
    pub fn reconfigure(&mut self, edit: impl FnOnce(&str) -> String) {
        self.text = edit(&self.text);
        std::fs::write(&self.path, &self.text).unwrap();
        self.config = load_str(&self.path, &self.text, &MapEnv::default()).unwrap();
    }

    pub fn operator_db(&self) -> String {
        self.dbs.as_ref().unwrap().node0.name().to_string()
    }

    pub fn driver(&self) -> Arc<dyn RuntimeDriver> {
        Arc::new(ObservingDriver)
    }

    /// Freeze a baseline (trends included) or fail the test with the reasons.
    pub async fn freeze(&self) -> Baseline {
        match rollgate_runner::baseline::freeze(&self.config, &ObservingDriver).await {
            Ok(b) => b,
            Err(refused) => panic!("the baseline was refused: {refused}"),
        }
    }

    /// An observer of the operator (the changed component), judged against `baseline`.
    pub fn observer(&self, baseline: &Baseline) -> Observer {
        let components = vec![self.config.components["operator"].clone()];
        Observer::new(Arc::new(self.config.clone()), self.driver(), components)
            .unwrap()
            .against(baseline)
    }

    pub async fn wait_until_ready(&self) {
        let http = rollgate_probe::HttpClient::new(&self.config.probe_limits).unwrap();
        let url = format!("{}/v2/status", self.stack.operator_url());
        for _ in 0..100 {
            if let Ok(v) = http.get_json(&url).await
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
        self.stack.shutdown().await;
        if let Some(dbs) = dbs {
            dbs.drop_with_redis(Some(&self.redis_url)).await;
        }
    }
}

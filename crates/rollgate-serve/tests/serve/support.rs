//! A journal with history (a promoted rollout, then one rolled back by a stalled progression
//! gate), a server on port 0, and a runner whose preflight refuses (nothing to change).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rollgate_core::baseline::{Baseline, LayerValue};
use rollgate_core::config::{Component, Layer, MapEnv, load_str};
use rollgate_core::vocab::{GateResult, Outcome, Verdict};
use rollgate_journal::{Journal, NewRollout};
use rollgate_runner::{JournalHandle, Runner};
use rollgate_runtime::{ComponentState, DriverError, DriverOutput, RunStatus, RuntimeDriver};
use rollgate_serve::{ServeError, ServeOptions, Token};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const TOKEN: &str = "serve-test-token-0123456789abcdef";
pub const FAILING_GATE: &str = "progression:requestIndex";

pub fn baseline(id: &str, value: &str) -> Baseline {
    serde_json::from_value(json!({
        "id": id, "node": "node0", "created_at": "2026-11-28T04:00:00Z", "mode": "localnet.loopback",
        "layers": {"operator-image": {"kind": "image", "value": value, "digest": format!("sha256:{:0>64}", id.len())}},
        "metadata": null, "sgx": null, "readiness": {}, "faults": [],
        "progression": [{"name": "requestIndex", "first": 10, "last": 52, "window_ms": 10000, "rate_per_s": 4.2, "idle": false}],
        "idle": false,
        "checks": [
            {"name": "readiness:operator", "group": "readiness", "status": "pass", "detail": "Healthy", "latency_ms": 3, "observed": null},
            {"name": "postgres", "group": "prerequisites", "status": "pass", "detail": "2 databases", "latency_ms": 7, "observed": null}
        ],
        "storage": {}
    }))
    .unwrap()
}

fn pause() {
    std::thread::sleep(Duration::from_millis(25));
}

fn step(j: &mut Journal, rollout: &str, kind: &str, ok: bool, summary: &str, extra: Value) {
    let s = j
        .record_intent(rollout, kind, json!({"kind": kind}))
        .unwrap();
    pause();
    let mut outcome = json!({"summary": summary});
    if let (Some(o), Some(e)) = (outcome.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    j.record_outcome(s, ok, outcome).unwrap();
}

fn gate(name: &str, verdict: Verdict, detail: &str, evidence: Value) -> GateResult {
    GateResult {
        name: name.into(),
        verdict,
        detail: detail.into(),
        evidence,
    }
}

fn begin(j: &mut Journal, id: &str, from: &str, to: &str, baseline_id: &str) {
    j.begin_rollout(&NewRollout {
        id: id.into(),
        layer: "operator-image".into(),
        from: Some(LayerValue {
            kind: rollgate_core::vocab::LayerKind::Image,
            value: from.into(),
            digest: None,
        }),
        to: to.into(),
        baseline_id: None,
        started_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        plan: None,
    })
    .unwrap();
    pause();
    step(
        j,
        id,
        "freeze_baseline",
        true,
        &format!("baseline {baseline_id}"),
        json!({"baseline_id": baseline_id}),
    );
    j.set_baseline(id, baseline_id).unwrap();
}

/// Verify-phase gates; `stalled` makes the progression gate fail.
fn verify_gates(stalled: bool) -> Vec<GateResult> {
    let samples: Vec<Value> = (0..6)
        .map(|i| json!([40 + i * 30, if stalled { 118 } else { 118 + i * 3 }]))
        .collect();
    let progression = if stalled {
        gate(
            FAILING_GATE,
            Verdict::Fail,
            "healthy but not progressing: requestIndex did not increase in 0.15s (stayed at 118); baseline rate 4.20/s",
            json!({"window_s": 0.15, "first": 118, "last": 118, "samples": samples, "baseline_rate_per_s": 4.2, "pending": false}),
        )
    } else {
        gate(
            FAILING_GATE,
            Verdict::Pass,
            "requestIndex moved from 118 to 121 within 0.03s",
            json!({"window_s": 0.15, "first": 118, "last": 133, "samples": samples, "pending": false}),
        )
    };
    vec![
        gate(
            "readiness:operator",
            Verdict::Pass,
            "green after 0.03s",
            json!({"deadline_s": 120.0, "green_at_s": 0.03, "last": "Healthy", "pending": false}),
        ),
        progression,
        gate(
            "dependency:postgres",
            Verdict::Pass,
            "2 databases",
            json!({"consecutive_failures": 0, "pending": false}),
        ),
        gate(
            "faults",
            Verdict::Pass,
            "no new fault (baseline had 0)",
            json!({"new_faults": [], "log_lines": [], "baseline_faults": []}),
        ),
    ]
}

fn verify(j: &mut Journal, id: &str, stalled: bool) {
    let s = j
        .record_intent(
            id,
            "verify",
            json!({"gates": ["readiness:operator", FAILING_GATE]}),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(220));
    let gates = verify_gates(stalled);
    for g in &gates {
        j.record_gate(id, g).unwrap();
    }
    let summary = if stalled {
        format!("{FAILING_GATE}: {}", gates[1].detail)
    } else {
        "every gate passed".into()
    };
    j.record_outcome(s, !stalled, json!({"summary": summary, "gates": gates}))
        .unwrap();
    pause();
}

/// A promoted rollout `r-1` (v1.0.0 → v1.1.0), then `r-2` (v1.1.0 → v1.2.0-stall) rolled back
/// because requestIndex stalled.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub promoted: String,
    pub rolled_back: String,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&dir.path().join("state")).unwrap();
        j.insert_baseline(&baseline("b-1", "rollgate-sim/operator:v1.0.0"))
            .unwrap();
        j.mark_known_good("b-1").unwrap();

        begin(
            &mut j,
            "r-1",
            "rollgate-sim/operator:v1.0.0",
            "rollgate-sim/operator:v1.1.0",
            "b-1",
        );
        step(
            &mut j,
            "r-1",
            "apply",
            true,
            "operator-image set to rollgate-sim/operator:v1.1.0",
            json!({}),
        );
        step(
            &mut j,
            "r-1",
            "restart",
            true,
            "restarted operator",
            json!({}),
        );
        verify(&mut j, "r-1", false);
        step(
            &mut j,
            "r-1",
            "promote",
            true,
            "baseline b-2 is known-good",
            json!({"baseline_id": "b-2"}),
        );
        j.insert_baseline(&baseline("b-2", "rollgate-sim/operator:v1.1.0"))
            .unwrap();
        j.mark_known_good("b-2").unwrap();
        j.finish_rollout(
            "r-1",
            Outcome::Promoted,
            "operator-image = rollgate-sim/operator:v1.1.0 verified: every gate passed",
        )
        .unwrap();
        pause();

        begin(
            &mut j,
            "r-2",
            "rollgate-sim/operator:v1.1.0",
            "rollgate-sim/operator:v1.2.0-stall",
            "b-2",
        );
        step(
            &mut j,
            "r-2",
            "apply",
            true,
            "operator-image set to rollgate-sim/operator:v1.2.0-stall",
            json!({}),
        );
        let s = j
            .record_intent("r-2", "restart", json!({"components": ["operator"]}))
            .unwrap();
        pause();
        j.record_driver_output(s, &json!({"command": "docker compose up -d operator", "stdout": "", "stderr": "Container node-operator-1  Started", "exit_code": 0, "duration_ms": 812})).unwrap();
        j.record_outcome(s, true, json!({"summary": "restarted operator"}))
            .unwrap();
        verify(&mut j, "r-2", true);
        step(
            &mut j,
            "r-2",
            "rollback_restore",
            true,
            "restored operator-image",
            json!({}),
        );
        step(
            &mut j,
            "r-2",
            "rollback_restart",
            true,
            "restarted operator",
            json!({}),
        );
        let s = j
            .record_intent("r-2", "rollback_verify", json!({"baseline_id": "b-2"}))
            .unwrap();
        std::thread::sleep(Duration::from_millis(120));
        j.record_gate(
            "r-2",
            &gate(
                "restored:operator-image",
                Verdict::Pass,
                "operator-image is back on rollgate-sim/operator:v1.1.0",
                json!({}),
            ),
        )
        .unwrap();
        j.record_gate(
            "r-2",
            &gate(
                "readiness:operator",
                Verdict::Pass,
                "green after 0.02s",
                json!({"green_at_s": 0.02, "pending": false}),
            ),
        )
        .unwrap();
        j.record_outcome(
            s,
            true,
            json!({"summary": "baseline b-2 re-verified: every gate passed", "verified": true}),
        )
        .unwrap();
        j.finish_rollout(
            "r-2",
            Outcome::RolledBack,
            &format!("{FAILING_GATE}: healthy but not progressing: requestIndex did not increase in 0.15s (stayed at 118); rolled back to baseline b-2 and re-verified it"),
        )
        .unwrap();
        Fixture {
            dir,
            promoted: "r-1".into(),
            rolled_back: "r-2".into(),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn journal(&self) -> Journal {
        Journal::open(&self.state_dir()).unwrap()
    }

    pub fn options(&self) -> ServeOptions {
        ServeOptions::new("node0", self.state_dir())
    }
}

/// A server on 127.0.0.1:0, stopped by `stop`.
pub struct TestServer {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl TestServer {
    pub async fn start(options: ServeOptions) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(rollgate_serve::run(
            listener,
            async move {
                let _ = rx.await;
            },
            options,
        ));
        TestServer {
            url,
            stop: Some(tx),
            task,
        }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// `GET path` without a token.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        client().get(self.at(path)).send().await.unwrap()
    }

    /// `GET path`, its body as JSON.
    pub async fn json(&self, path: &str) -> serde_json::Value {
        self.get(path).await.json().await.unwrap()
    }

    /// `GET path`, its body as text.
    pub async fn text(&self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn token() -> Token {
    Token::new(TOKEN).unwrap()
}

/// Reports every layer at `rollgate-sim/operator:v1.0.0` and changes nothing.
#[derive(Debug)]
pub struct InertDriver;

#[async_trait]
impl RuntimeDriver for InertDriver {
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

/// [`InertDriver`] that panics on its second `current` read: after the runner recorded the
/// rollout, while it freezes the baseline (a driver bug, or anything the runner panics on).
#[derive(Debug, Default)]
pub struct CrashingDriver {
    reads: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl RuntimeDriver for CrashingDriver {
    fn name(&self) -> &'static str {
        "test"
    }
    async fn current(&self, layer: &Layer) -> Result<LayerValue, DriverError> {
        if self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
            panic!("test driver crashed reading {}", layer.name);
        }
        InertDriver.current(layer).await
    }
    async fn apply(&self, l: &Layer, v: &str) -> Result<DriverOutput, DriverError> {
        InertDriver.apply(l, v).await
    }
    async fn restore(&self, l: &Layer, v: &LayerValue) -> Result<DriverOutput, DriverError> {
        InertDriver.restore(l, v).await
    }
    async fn restart(&self, c: &[Component]) -> Result<DriverOutput, DriverError> {
        InertDriver.restart(c).await
    }
    async fn state(&self, c: &Component) -> Result<ComponentState, DriverError> {
        InertDriver.state(c).await
    }
    async fn logs_since(
        &self,
        c: &Component,
        since: std::time::SystemTime,
    ) -> Result<String, DriverError> {
        InertDriver.logs_since(c, since).await
    }
}

/// [`refusing_runner`] whose driver panics once the rollout is recorded.
pub fn crashing_runner(dir: &Path) -> Runner {
    Runner {
        driver: Arc::new(CrashingDriver::default()),
        ..refusing_runner(dir)
    }
}

/// A runner for a node whose operator does not answer (a closed port): any rollout is refused
/// at the preflight, with nothing changed.
pub fn refusing_runner(dir: &Path) -> Runner {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app_config = dir.join("app_config");
    std::fs::create_dir_all(app_config.join("ethereum")).unwrap();
    std::fs::write(app_config.join("ethereum/addresses.json"), "{}").unwrap();
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&app_config).unwrap());
    let text = format!(
        r#"
[node]
name = "node0"
mode = "localnet.loopback"
app_config = "{app}"
deployment_metadata = "ethereum/addresses.json"
deployment_metadata_owner = "{uid}"
enclave = false
state_dir = "{state}"

[readiness.operator]
url = "http://{closed}/v2/status"
expect = [ {{ pointer = "/health", equals = "Healthy" }} ]

[runtime]
driver = "command"

[runtime.command]
current = "printf 'rollgate-sim/operator:v1.0.0'"
apply = "true"
restart = "true"

[components.operator]
service = "operator"

[layers.operator-image]
kind = "image"
components = ["operator"]

[probe]
timeout = "1s"
"#,
        app = app_config.display(),
        state = dir.join("state").display(),
    );
    let path = dir.join("rollgate.toml");
    std::fs::write(&path, &text).unwrap();
    let config = load_str(&path, &text, &MapEnv::default()).unwrap();
    let journal = Journal::open(&config.node.state_dir).unwrap();
    Runner {
        config: Arc::new(config),
        driver: Arc::new(InertDriver),
        journal: JournalHandle::new(journal),
        progress: Arc::new(rollgate_runner::Silent),
        notifier: rollgate_runner::notify::Notifier::disabled(),
    }
}

/// `GET /api/v1/action` until the action is no longer running (at most 20 s); the last answer.
pub async fn wait_for_action(server: &TestServer) -> Value {
    let mut action = Value::Null;
    for _ in 0..200 {
        action = server.json("/api/v1/action").await;
        if action["state"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    action
}

/// Is `tool` on PATH? Under `CI=true` a missing tool fails the test instead of skipping it.
pub fn require_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{tool} is required under CI=true (scripts/test installs it)");
        }
        eprintln!("skipping: {tool} is not installed (scripts/test installs it)");
    }
    found
}

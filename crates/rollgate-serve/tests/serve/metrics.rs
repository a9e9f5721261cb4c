//! `/metrics`: parsed with a real Prometheus text parser, linted by `promtool check metrics`,
//! computed from the journal so it is the same after a restart.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use prometheus_parse::{Scrape, Value as PValue};
use rollgate_journal::NewRollout;
use serde_json::json;

use crate::support::{FAILING_GATE, Fixture, TestServer, require_tool};

async fn scrape(server: &TestServer) -> (String, Scrape) {
    let resp = server.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = resp.text().await.unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("a valid Prometheus exposition");
    (text, scrape)
}

fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|m| m.metric == name && labels.iter().all(|(k, v)| m.labels.get(k) == Some(*v)))
        .map(|m| match m.value {
            PValue::Counter(v) | PValue::Gauge(v) | PValue::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn values(s: &Scrape, name: &str) -> BTreeMap<String, f64> {
    s.samples
        .iter()
        .filter(|m| m.metric == name)
        .map(|m| {
            let v = match m.value {
                PValue::Counter(v) | PValue::Gauge(v) | PValue::Untyped(v) => v,
                _ => f64::NAN,
            };
            let labels: BTreeMap<&String, &String> = m.labels.iter().collect();
            (format!("{labels:?}"), v)
        })
        .collect()
}

#[tokio::test]
async fn outcomes_by_cause_gates_and_known_good() {
    let f = Fixture::new();
    let server = TestServer::start(f.options()).await;
    let (text, s) = scrape(&server).await;
    let v = |name, labels: &[(&str, &str)]| {
        value(&s, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing in:\n{text}"))
    };

    assert_eq!(v("rollgate_build_info", &[("node", "node0")]), 1.0);
    assert_eq!(v("rollgate_journal_up", &[]), 1.0);
    assert_eq!(
        v(
            "rollgate_rollouts_total",
            &[("outcome", "rolled_back"), ("cause", FAILING_GATE)]
        ),
        1.0
    );
    assert_eq!(
        v(
            "rollgate_rollouts_total",
            &[("outcome", "promoted"), ("cause", "none")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "rollgate_gate_verdicts_total",
            &[("gate", FAILING_GATE), ("verdict", "fail")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "rollgate_gate_verdicts_total",
            &[("gate", FAILING_GATE), ("verdict", "pass")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "rollgate_gate_verdicts_total",
            &[("gate", "readiness:operator"), ("verdict", "pass")]
        ),
        3.0
    );
    assert_eq!(
        v(
            "rollgate_last_rollout_outcome",
            &[("outcome", "rolled_back")]
        ),
        1.0
    );
    assert_eq!(
        v("rollgate_last_rollout_outcome", &[("outcome", "promoted")]),
        0.0
    );
    assert_eq!(
        v(
            "rollgate_last_rollout_gate",
            &[
                ("gate", FAILING_GATE),
                ("phase", "verify"),
                ("verdict", "fail")
            ]
        ),
        1.0
    );
    assert_eq!(
        v(
            "rollgate_last_rollout_gate",
            &[
                ("gate", "restored:operator-image"),
                ("phase", "rollback_verify"),
                ("verdict", "pass")
            ]
        ),
        1.0
    );
    assert!(v("rollgate_last_rollout_duration_seconds", &[]) > 0.0);
    assert_eq!(
        v(
            "rollgate_progression_rate_per_second",
            &[("signal", "requestIndex"), ("source", "last_rollout")]
        ),
        0.0,
        "it stalled"
    );
    assert_eq!(
        v(
            "rollgate_progression_last_value",
            &[("signal", "requestIndex")]
        ),
        118.0
    );
    assert_eq!(
        v(
            "rollgate_progression_rate_per_second",
            &[("signal", "requestIndex"), ("source", "baseline")]
        ),
        4.2
    );
    let age = v("rollgate_last_known_good_age_seconds", &[]);
    assert!((0.0..60.0).contains(&age), "{age}");
    assert!(v("rollgate_last_known_good_timestamp_seconds", &[]) > 1.7e9);
    assert_eq!(
        v(
            "rollgate_probe_latency_seconds",
            &[("probe", "postgres"), ("source", "baseline")]
        ),
        0.007
    );
    assert_eq!(
        v(
            "rollgate_probe_up",
            &[("probe", "readiness:operator"), ("source", "baseline")]
        ),
        1.0
    );
    assert_eq!(v("rollgate_rollout_active", &[]), 0.0);
    assert_eq!(v("rollgate_frozen", &[]), 0.0);
    assert!(
        values(&s, "rollgate_rollout_step")
            .values()
            .all(|v| *v == 0.0)
    );
    assert!(text.contains("# HELP rollgate_rollouts_total"));
    assert!(text.contains("# TYPE rollgate_rollouts_total counter"));
    server.stop().await;
}

#[tokio::test]
async fn promtool_accepts_the_exposition() {
    if !require_tool("promtool") {
        return;
    }
    let f = Fixture::new();
    rollgate_runner::killswitch::freeze_by(&f.state_dir(), "lint with every series", "test")
        .unwrap();
    let server = TestServer::start(f.options()).await;
    let (text, _) = scrape(&server).await;
    server.stop().await;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics found problems:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_same_after_a_restart() {
    let f = Fixture::new();
    let first = TestServer::start(f.options()).await;
    let (_, before) = scrape(&first).await;
    first.stop().await;
    let second = TestServer::start(f.options()).await;
    let (_, after) = scrape(&second).await;
    second.stop().await;
    for name in [
        "rollgate_rollouts_total",
        "rollgate_gate_verdicts_total",
        "rollgate_last_rollout_outcome",
        "rollgate_progression_rate_per_second",
    ] {
        assert_eq!(values(&before, name), values(&after, name), "{name}");
        assert!(!values(&after, name).is_empty(), "{name}");
    }
}

#[tokio::test]
async fn an_interrupted_rollout_shows_its_step() {
    let f = Fixture::new();
    {
        let mut j = f.journal();
        j.begin_rollout(&NewRollout {
            id: "r-3".into(),
            layer: "operator-image".into(),
            from: None,
            to: "rollgate-sim/operator:v1.3.0".into(),
            baseline_id: None,
            started_at: "2026-11-28T04:50:00Z".into(),
            plan: None,
        })
        .unwrap();
        let s = j.record_intent("r-3", "apply", json!({})).unwrap();
        j.record_outcome(s, true, json!({"summary": "applied"}))
            .unwrap();
        j.record_intent("r-3", "restart", json!({})).unwrap();
    }
    let server = TestServer::start(f.options()).await;
    let (text, s) = scrape(&server).await;
    let v = |name, labels: &[(&str, &str)]| {
        value(&s, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing in:\n{text}"))
    };
    assert_eq!(v("rollgate_rollout_active", &[]), 1.0);
    assert_eq!(
        v("rollgate_rollout_interrupted", &[]),
        1.0,
        "no process holds the lock"
    );
    assert_eq!(v("rollgate_rollout_step", &[("step", "restart")]), 1.0);
    assert_eq!(v("rollgate_rollout_step", &[("step", "apply")]), 0.0);
    assert_eq!(v("rollgate_rollout_steps", &[]), 2.0);
    assert!(v("rollgate_rollout_active_duration_seconds", &[]) > 0.0);
    // The unfinished rollout is not counted as an outcome.
    assert_eq!(
        values(&s, "rollgate_rollouts_total").values().sum::<f64>(),
        2.0
    );

    let status: serde_json::Value = server.json("/api/v1/status").await;
    assert_eq!(status["active_rollout"]["rollout_id"], "r-3");
    assert_eq!(status["active_rollout"]["interrupted"], true);
    assert_eq!(status["active_rollout"]["stopped_at_intent"], true);
    let page = server.text("/").await;
    assert!(page.contains("was interrupted") && page.contains("rollgate resume"));
    server.stop().await;
}

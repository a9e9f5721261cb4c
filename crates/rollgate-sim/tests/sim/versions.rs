//! Each operator and KYC version's behaviour, observed over HTTP (and Postgres for bloat, the
//! process's stderr and exit status for the log and crash versions).

use std::process::Stdio;
use std::time::{Duration, Instant};

use rollgate_sim::services::kyc::{KycOptions, RunningKyc};
use rollgate_sim::services::operator::{OperatorOptions, RunningOperator};
use rollgate_sim::{KycVersion, OperatorVersion};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::{client, eventually, get_json, request_index, status};

fn opts(version: OperatorVersion) -> OperatorOptions {
    OperatorOptions {
        listen: "127.0.0.1:0".into(),
        version,
        traffic_interval: Duration::from_millis(30),
        health_interval: Duration::from_millis(100),
        ..OperatorOptions::default()
    }
}

async fn start(version: OperatorVersion) -> RunningOperator {
    RunningOperator::start(opts(version)).await.unwrap()
}

/// Samples status twice, `gap` apart.
async fn two_samples(op: &RunningOperator, gap: Duration) -> (Value, Value) {
    let a = status(&op.url()).await;
    tokio::time::sleep(gap).await;
    (a, status(&op.url()).await)
}

#[tokio::test]
async fn healthy_versions_progress() {
    for v in [OperatorVersion::V1_0_0, OperatorVersion::V1_1_0] {
        let op = start(v).await;
        let (a, b) = two_samples(&op, Duration::from_millis(200)).await;
        assert_eq!(b["health"], "Healthy");
        assert_eq!(b["version"], v.as_str());
        assert!(request_index(&b) > request_index(&a));
        assert_ne!(a["lastTx"], b["lastTx"]);
        op.shutdown().await;
    }
}

#[tokio::test]
async fn slow_start_answers_421_then_becomes_healthy() {
    let op = RunningOperator::start(OperatorOptions {
        slow_start: Duration::from_millis(600),
        ..opts(OperatorVersion::SlowStart)
    })
    .await
    .unwrap();
    let st = status(&op.url()).await;
    assert_eq!(st["health"], "Starting");
    assert_eq!(st["runningState"], "Starting");
    let r = client()
        .post(format!("{}/v2/request", op.url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "NotAcceptingRequests"
    );
    let url = op.url();
    eventually(Duration::from_secs(3), "slow start to finish", || async {
        (status(&url).await["health"] == "Healthy").then_some(())
    })
    .await;
    let r = client()
        .post(format!("{url}/v2/request"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    op.shutdown().await;
}

#[tokio::test]
async fn crash_loop_exits_nonzero_and_goes_dark() {
    let op = RunningOperator::start(OperatorOptions {
        crash_after: Duration::from_millis(300),
        ..opts(OperatorVersion::CrashLoop)
    })
    .await
    .unwrap();
    assert_eq!(status(&op.url()).await["health"], "Healthy");
    let code = tokio::time::timeout(Duration::from_secs(3), op.wait_exit())
        .await
        .unwrap();
    assert_eq!(code, 1);
    assert_eq!(op.exit_code(), Some(1));
    let url = op.url();
    eventually(Duration::from_secs(3), "the port to close", || async {
        client()
            .get(format!("{url}/v2/status"))
            .send()
            .await
            .is_err()
            .then_some(())
    })
    .await;
    op.shutdown().await;

    let kyc = RunningKyc::start(KycOptions {
        listen: "127.0.0.1:0".into(),
        version: KycVersion::CrashLoop,
        crash_after: Duration::from_millis(200),
        ..KycOptions::default()
    })
    .await
    .unwrap();
    let code = tokio::time::timeout(Duration::from_secs(3), kyc.wait_exit())
        .await
        .unwrap();
    assert_eq!(code, 1);
    kyc.shutdown().await;
}

#[tokio::test]
async fn stall_request_keeps_request_index_still() {
    let op = start(OperatorVersion::StallRequest).await;
    let (a, b) = two_samples(&op, Duration::from_millis(250)).await;
    assert_eq!(b["health"], "Healthy");
    assert_eq!(request_index(&a), request_index(&b));
    op.shutdown().await;
}

#[tokio::test]
async fn stall_tx_keeps_last_tx_still() {
    let op = start(OperatorVersion::StallTx).await;
    let (a, b) = two_samples(&op, Duration::from_millis(250)).await;
    assert_eq!(b["health"], "Healthy");
    assert!(request_index(&b) > request_index(&a));
    assert_eq!(a["lastTx"], b["lastTx"]);
    op.shutdown().await;
}

#[tokio::test]
async fn fault_versions_report_non_null_faults() {
    let op = start(OperatorVersion::AttestationFault).await;
    let st = status(&op.url()).await;
    assert!(st["attestation"]["fault"].is_object());
    assert!(st["registration"]["fault"].is_null());
    assert_eq!(st["health"], "Healthy");
    op.shutdown().await;

    let op = start(OperatorVersion::RegistrationFault).await;
    let st = status(&op.url()).await;
    assert!(st["attestation"]["fault"].is_null());
    assert!(
        st["registration"]["fault"]["message"]
            .as_str()
            .unwrap()
            .starts_with("registration rejected")
    );
    op.shutdown().await;
}

#[tokio::test]
async fn renamed_field_breaks_the_alert_contract_only() {
    let op = start(OperatorVersion::RenamedField).await;
    let st = status(&op.url()).await;
    assert_eq!(st["health"], "Healthy");
    assert_eq!(st["runningState"], "Running");
    assert!(st["raftMetrics"].get("voterIds").is_none());
    assert!(st["raftMetrics"]["voters"].is_array());
    assert!(
        st["lastTx"].is_u64(),
        "lastTx should be a number: {}",
        st["lastTx"]
    );
    op.shutdown().await;
}

#[tokio::test]
async fn slow_version_is_several_times_slower() {
    async fn latency(op: &RunningOperator) -> Duration {
        let url = format!("{}/v2/status", op.url());
        let c = client();
        c.get(&url).send().await.unwrap(); // warm the connection
        let start = Instant::now();
        for _ in 0..5 {
            c.get(&url).send().await.unwrap().bytes().await.unwrap();
        }
        start.elapsed() / 5
    }
    let fast = start(OperatorVersion::V1_1_0).await;
    let slow = start(OperatorVersion::Slow).await;
    let (f, s) = (latency(&fast).await, latency(&slow).await);
    assert!(
        s >= Duration::from_millis(40),
        "slow version took only {s:?}"
    );
    // Compared by difference, not ratio: a loaded CI machine inflates both equally.
    assert!(
        s >= f + Duration::from_millis(35),
        "fast {f:?} vs slow {s:?}"
    );
    fast.shutdown().await;
    slow.shutdown().await;
}

#[tokio::test]
async fn sgx_debug_version_writes_debug_build_flags() {
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("enclave").join("build-flags.env");
    let op = RunningOperator::start(OperatorOptions {
        app_config: Some(dir.path().to_owned()),
        ..opts(OperatorVersion::SgxDebug)
    })
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&flags).unwrap(),
        "SGX_DEBUG=1\nSGX_PRERELEASE=0\n"
    );
    op.shutdown().await;
    let op = RunningOperator::start(OperatorOptions {
        app_config: Some(dir.path().to_owned()),
        ..opts(OperatorVersion::V1_1_0)
    })
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&flags).unwrap(),
        "SGX_DEBUG=0\nSGX_PRERELEASE=1\n"
    );
    op.shutdown().await;
}

#[tokio::test]
async fn missing_mark_price_answers_503() {
    let op = RunningOperator::start(OperatorOptions {
        mark_price: false,
        traffic: false,
        ..opts(OperatorVersion::V1_0_0)
    })
    .await
    .unwrap();
    assert_eq!(
        get_json(&format!("{}/v2/mark-price", op.url())).await,
        serde_json::json!({})
    );
    let r = client()
        .post(format!("{}/v2/request", op.url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "ServiceUnavailable"
    );
    op.shutdown().await;
}

#[tokio::test]
async fn traffic_off_models_an_idle_node() {
    let op = RunningOperator::start(OperatorOptions {
        traffic: false,
        ..opts(OperatorVersion::V1_0_0)
    })
    .await
    .unwrap();
    let (a, b) = two_samples(&op, Duration::from_millis(200)).await;
    assert_eq!(request_index(&a), request_index(&b));
    assert_eq!(b["health"], "Healthy");
    op.shutdown().await;
}

#[tokio::test]
async fn bloat_writes_bloat_factor_times_more_per_request() {
    let Some(url) = rollgate_sim::testenv::require_database_url() else {
        return;
    };
    let db = rollgate_sim::testenv::TestDatabase::create(&url, "node0")
        .await
        .unwrap();
    let mut per_request = Vec::new();
    for v in [OperatorVersion::V1_1_0, OperatorVersion::Bloat] {
        let op = RunningOperator::start(OperatorOptions {
            database_url: Some(db.url().to_owned()),
            traffic: false,
            ..opts(v)
        })
        .await
        .unwrap();
        for _ in 0..5 {
            let r = client()
                .post(format!("{}/v2/request", op.url()))
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        op.shutdown().await;
        let pg = db.connect().await.unwrap();
        let avg: f64 = pg
            .query_one(
                "SELECT avg(pg_column_size(payload))::float8 FROM operator_requests WHERE version = $1",
                &[&v.as_str()],
            )
            .await
            .unwrap()
            .get(0);
        per_request.push(avg);
    }
    assert!(
        per_request[1]
            >= per_request[0] * (rollgate_sim::services::operator::BLOAT_FACTOR as f64 - 1.0),
        "bytes per request: {per_request:?}"
    );
    db.drop().await;
}

#[tokio::test]
async fn kyc_versions() {
    for (v, healthy) in [
        (KycVersion::V1_0_0, true),
        (KycVersion::V1_1_0, true),
        (KycVersion::Unhealthy, false),
    ] {
        let kyc = RunningKyc::start(KycOptions {
            listen: "127.0.0.1:0".into(),
            version: v,
            ..KycOptions::default()
        })
        .await
        .unwrap();
        let st = get_json(&format!("{}/v1/status", kyc.url())).await;
        assert_eq!(st["isHealthy"], healthy, "{v}");
        assert_eq!(st["version"], v.as_str());
        kyc.shutdown().await;
    }
}

/// Runs the real binary and returns the first stderr line containing `needle`.
async fn binary_logs(args: &[&str], needle: &str) -> String {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate-sim"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(needle) {
                return Some(line);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let _ = child.kill().await;
    found.unwrap_or_else(|| panic!("no stderr line containing {needle:?}"))
}

#[tokio::test]
async fn fault_versions_log_to_stderr() {
    let line = binary_logs(
        &[
            "operator",
            "--listen",
            "127.0.0.1:0",
            "--version",
            "v1.1.0-attestation-fault",
        ],
        "attestation failed:",
    )
    .await;
    assert!(line.contains("ERROR"), "{line}");
    binary_logs(
        &[
            "operator",
            "--listen",
            "127.0.0.1:0",
            "--version",
            "v1.1.0-registration-fault",
        ],
        "registration rejected:",
    )
    .await;
}

#[tokio::test]
async fn crash_loop_binary_exits_with_status_1() {
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate-sim"))
            .args([
                "operator",
                "--listen",
                "127.0.0.1:0",
                "--version",
                "v1.1.0-crash-loop",
                "--crash-after-ms",
                "200",
            ])
            .stderr(Stdio::null())
            .status(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(status.code(), Some(1));
    // An unknown version is a usage error.
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate-sim"))
        .args(["operator", "--listen", "127.0.0.1:0", "--version", "v9"])
        .stderr(Stdio::null())
        .status()
        .await
        .unwrap();
    assert_eq!(status.code(), Some(2));
}

//! The baseline stack, every service through its real protocol.

use std::time::Duration;

use rollgate_sim::OperatorVersion;
use serde_json::{Value, json};

use crate::common::{TestStack, client, eventually, get_json, request_index, status};

#[tokio::test]
async fn baseline_stack_speaks_every_protocol() {
    let Some(t) = TestStack::start(|_| {}).await else {
        return;
    };
    let s = &t.stack;

    // Operator status: readiness and progression fields with their types.
    let st = status(&s.operator_url()).await;
    assert_eq!(st["runningState"], "Running");
    assert_eq!(st["health"], "Healthy");
    assert_eq!(st["version"], "v1.0.0");
    assert_eq!(st["raftMetrics"]["nodeId"], 1);
    assert_eq!(st["raftMetrics"]["voterIds"], json!([1]));
    assert!(st["attestation"]["fault"].is_null());
    assert!(st["registration"]["fault"].is_null());
    let first_tx = st["lastTx"].as_str().unwrap().to_owned();
    assert!(first_tx.starts_with("0x") && first_tx.len() == 66);

    // Progression: the traffic generator advances requestIndex and lastTx.
    let first = request_index(&st);
    let base = s.operator_url();
    let later = eventually(
        Duration::from_secs(5),
        "requestIndex to advance",
        || async {
            let st = status(&base).await;
            (request_index(&st) > first + 2 && st["lastTx"] != first_tx).then_some(st)
        },
    )
    .await;
    assert!(request_index(&later) > first);

    // Encryption key: 33-byte compressed secp256k1 point.
    let key: Value = get_json(&format!("{base}/v2/encryption-key")).await;
    let key = hex::decode(key.as_str().unwrap().trim_start_matches("0x")).unwrap();
    assert_eq!(key.len(), 33);
    assert!(key[0] == 2 || key[0] == 3);

    // Mark prices per symbol, fresh.
    let mp = get_json(&format!("{base}/v2/mark-price")).await;
    for sym in ["ETHP", "BTCP"] {
        let price: f64 = mp[sym]["price"].as_str().unwrap().parse().unwrap();
        assert!(price > 0.0);
        let ts = mp[sym]["timestamp"].as_u64().unwrap();
        assert!(rollgate_sim::server::now_ms() - ts < 5_000);
    }

    // Request submission.
    let r = client()
        .post(format!("{base}/v2/request"))
        .body(r#"{"t":"Order"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["requestIndex"].as_u64().unwrap() > first);

    // Prometheus metrics.
    let metrics = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    let text = metrics.text().await.unwrap();
    for name in [
        "operator_up 1",
        "operator_requests_total",
        "operator_request_index",
        "operator_tx_total",
        "# TYPE operator_requests_total counter",
    ] {
        assert!(text.contains(name), "metrics lack {name}:\n{text}");
    }

    // Postgres rows in the operator's database, Redis keys under the node's prefix.
    let pg = t.dbs.node0.connect().await.unwrap();
    let row = pg
        .query_one(
            "SELECT count(*), max(request_index) FROM operator_requests",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, i64>(0) > 2);
    let mut redis = rollgate_sim::db::connect_redis(&t.services.redis_url, Duration::from_secs(2))
        .await
        .unwrap();
    let last: Option<u64> = redis::cmd("GET")
        .arg(format!("{}:operator:last_request", s.redis_prefix()))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(last.unwrap() > first);

    // KYC: healthy, and it recorded its start in the kyc database.
    let kyc = get_json(&format!("{}/v1/status", s.kyc_url())).await;
    assert_eq!(kyc["isHealthy"], true);
    let kpg = t.dbs.kyc.connect().await.unwrap();
    let starts: i64 = kpg
        .query_one("SELECT count(*) FROM kyc_starts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(starts, 1);

    // Chain JSON-RPC: chain id, an advancing block number, and errors per the spec.
    let rpc = |body: Value| {
        let url = s.chain_url();
        async move {
            client()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let id = rpc(json!({"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]})).await;
    assert_eq!(id["result"], "0x539");
    assert_eq!(id["id"], 1);
    let block = |v: &Value| {
        u64::from_str_radix(v["result"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    let b1 = block(&rpc(json!({"jsonrpc":"2.0","id":2,"method":"eth_blockNumber"})).await);
    tokio::time::sleep(Duration::from_millis(450)).await;
    let b2 = block(&rpc(json!({"jsonrpc":"2.0","id":3,"method":"eth_blockNumber"})).await);
    assert!(b2 > b1, "block number did not advance: {b1} -> {b2}");
    let unknown = rpc(json!({"jsonrpc":"2.0","id":4,"method":"eth_sendMagic"})).await;
    assert_eq!(unknown["error"]["code"], -32601);
    let batch = rpc(json!([{"jsonrpc":"2.0","id":5,"method":"eth_chainId"},{"jsonrpc":"2.0","id":6,"method":"nope"}])).await;
    assert_eq!(batch[0]["result"], "0x539");
    assert_eq!(batch[1]["error"]["code"], -32601);
    let parse = client()
        .post(s.chain_url())
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        parse.json::<Value>().await.unwrap()["error"]["code"],
        -32700
    );

    // Deployment-service: health, and the metadata it owns.
    let h = client()
        .get(format!("{}/health", s.deployment_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let meta: Value =
        serde_json::from_slice(&std::fs::read(s.deployment_metadata()).unwrap()).unwrap();
    assert_eq!(meta["chainId"], 1337);
    assert_eq!(
        s.deployment_metadata(),
        s.app_config().join("ethereum").join("addresses.json")
    );

    // Healthy versions' enclave build flags.
    assert_eq!(
        std::fs::read_to_string(s.build_flags_path()).unwrap(),
        "SGX_DEBUG=0\nSGX_PRERELEASE=1\n"
    );

    // AESM: a unix socket that accepts connections.
    tokio::net::UnixStream::connect(s.aesm_socket())
        .await
        .unwrap();

    t.stop().await;
}

#[tokio::test]
async fn restart_operator_swaps_the_version_on_the_same_address() {
    let Some(mut t) = TestStack::start(|_| {}).await else {
        return;
    };
    let url = t.stack.operator_url();
    let before = request_index(&status(&url).await);
    t.stack
        .restart_operator(OperatorVersion::V1_1_0)
        .await
        .unwrap();
    assert_eq!(t.stack.operator_url(), url);
    let st = status(&url).await;
    assert_eq!(st["version"], "v1.1.0");
    // The sequence resumes from Postgres, as a restarted node's does.
    assert!(request_index(&st) >= before);
    t.stack
        .restart_operator(OperatorVersion::V1_0_0)
        .await
        .unwrap();
    assert_eq!(status(&url).await["version"], "v1.0.0");
    t.stop().await;
}

#[tokio::test]
async fn deployment_service_never_rewrites_identical_metadata() {
    use rollgate_sim::services::deployment::{DeploymentOptions, RunningDeployment};
    let dir = tempfile::tempdir().unwrap();
    let opts = DeploymentOptions {
        listen: "127.0.0.1:0".into(),
        app_config: dir.path().to_owned(),
        chain_id: 1337,
    };
    let d = RunningDeployment::start(opts.clone()).await.unwrap();
    assert!(d.wrote_metadata());
    let path = d.metadata_path().to_owned();
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    d.shutdown().await;
    let d = RunningDeployment::start(opts).await.unwrap();
    assert!(!d.wrote_metadata());
    assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), mtime);
    d.shutdown().await;
}

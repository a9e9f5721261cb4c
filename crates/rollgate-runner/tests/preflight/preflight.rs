//! `rollgate check`'s checks against the simulated stack.

use rollgate_core::vocab::{CheckGroup, CheckResult, CheckStatus};
use rollgate_runner::checks::{
    all_green, probe_faults, probe_readiness_extras, readiness_checks, run_checks,
    sample_progression,
};

use std::time::Duration;

use crate::fixture::{Knobs, Node};

fn table(results: &[CheckResult]) -> String {
    results
        .iter()
        .map(|r| {
            format!(
                "{:<5} {:<28} {:>5}ms {}\n",
                r.status.as_str(),
                r.name,
                r.latency_ms,
                r.detail
            )
        })
        .collect()
}

fn find<'a>(results: &'a [CheckResult], name: &str) -> &'a CheckResult {
    results
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no check {name} in\n{}", table(results)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_green_then_each_dependency_stopped_in_turn() {
    let Some(mut node) = Node::start(true).await else {
        return;
    };
    let config = node.config(&Knobs::default());

    let results = run_checks(&config, &[]).await;
    assert!(
        all_green(&results),
        "expected all green:\n{}",
        table(&results)
    );
    let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
    for want in [
        "mode",
        "dependency-urls",
        "app-config",
        "deployment-metadata",
        "sgx-flags",
        "sgx-attestation",
        "sgx-devices",
        "chain",
        "deployment-service",
        "postgres",
        "redis",
        "pccs",
        "aesm",
        "readiness:operator",
        "readiness:kyc",
        "encryption-key",
        "mark-price",
        "faults",
        "progression:requestIndex",
        "progression:lastTx",
    ] {
        assert!(names.contains(&want), "missing {want} in {names:?}");
    }
    assert_eq!(
        find(&results, "pccs").status,
        CheckStatus::Pass,
        "{}",
        table(&results)
    );
    assert_eq!(
        find(&results, "chain").status,
        CheckStatus::Pass,
        "{}",
        table(&results)
    );
    // The JSON contract of product.md.
    let v = serde_json::to_value(find(&results, "postgres")).unwrap();
    for key in [
        "name",
        "group",
        "status",
        "detail",
        "latency_ms",
        "observed",
    ] {
        assert!(v.get(key).is_some(), "{key} missing from {v}");
    }
    assert_eq!(v["group"], "prerequisites");
    // Groups select.
    let only = run_checks(&config, &[CheckGroup::Baseline]).await;
    assert!(only.iter().all(|r| r.group == CheckGroup::Baseline) && !only.is_empty());

    // Each dependency stopped in turn: that check fails, naming the endpoint.
    let pg = node
        .stack
        .postgres_proxy()
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let redis = node
        .stack
        .redis_proxy()
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let chain = node.chain.local_addr().unwrap().to_string();
    let deploy = node.deployment.local_addr().unwrap().to_string();
    let pccs = node.pccs.local_addr().unwrap().to_string();
    let aesm = node.stack.aesm_socket().display().to_string();
    for (check, endpoint) in [
        ("postgres", pg),
        ("redis", redis),
        ("chain", chain),
        ("deployment-service", deploy),
        ("pccs", pccs),
        ("aesm", aesm),
    ] {
        match check {
            "postgres" => node.stack.postgres_proxy().unwrap().cut(),
            "redis" => node.stack.redis_proxy().unwrap().cut(),
            "chain" => node.chain.cut(),
            "deployment-service" => node.deployment.cut(),
            "pccs" => node.pccs.cut(),
            _ => node.stack.aesm().cut(),
        }
        let results = run_checks(&config, &[CheckGroup::Prerequisites]).await;
        let r = find(&results, check);
        assert_eq!(
            r.status,
            CheckStatus::Fail,
            "{check} should fail:\n{}",
            table(&results)
        );
        assert!(
            r.detail.contains(&endpoint),
            "{check}: detail should name {endpoint}: {}",
            r.detail
        );
        assert!(!all_green(&results));
        let others: Vec<&CheckResult> = results
            .iter()
            .filter(|r| r.name != check && r.status == CheckStatus::Fail)
            .collect();
        assert!(
            others.is_empty(),
            "only {check} should fail:\n{}",
            table(&results)
        );
        match check {
            "postgres" => node.stack.postgres_proxy().unwrap().restore(),
            "redis" => node.stack.redis_proxy().unwrap().restore(),
            "chain" => node.chain.restore(),
            "deployment-service" => node.deployment.restore(),
            "pccs" => node.pccs.restore(),
            _ => node.stack.aesm().restore().unwrap(),
        }
    }
    let results = run_checks(&config, &[CheckGroup::Prerequisites]).await;
    assert!(
        all_green(&results),
        "green again after restoring:\n{}",
        table(&results)
    );

    // The pieces the rollout gates reuse.
    assert!(probe_faults(&config).await.unwrap().is_empty());
    let http = rollgate_probe::HttpClient::new(&config.probe_limits).unwrap();
    let extras = probe_readiness_extras(&config, &http).await;
    assert_eq!(extras.len(), 2);
    assert!(
        extras
            .iter()
            .all(|(_, r)| matches!(r, rollgate_core::engine::Reading::Pass(_))),
        "{extras:?}"
    );
    // The operator saw its Postgres and Redis cut above (they reach it through the same
    // proxies) and reports "Degraded" until its next health tick after the restore: with the
    // checks now taking milliseconds, wait for that tick as an operator would.
    let started = std::time::Instant::now();
    let mut ready = readiness_checks(&config).await;
    while !all_green(&ready) && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ready = readiness_checks(&config).await;
    }
    assert!(
        all_green(&ready) && ready.iter().all(|r| r.group == CheckGroup::Readiness),
        "{}",
        table(&ready)
    );
    let rates = sample_progression(&config, Duration::from_millis(600))
        .await
        .unwrap();
    assert_eq!(rates.len(), 2);
    assert!(
        rates.iter().all(|r| !r.idle && r.rate_per_s > 0.0),
        "{rates:?}"
    );

    node.shutdown().await;
}

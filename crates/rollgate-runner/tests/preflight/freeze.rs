//! `baseline freeze`: a complete record when green; a refusal naming exactly what is not.

use rollgate_core::vocab::Mode;
use rollgate_runner::JournalHandle;
use rollgate_runner::baseline::{FreezeRefused, freeze, freeze_and_store};

use crate::fixture::{Knobs, Node};

async fn refused(node: &Node, config: &rollgate_core::config::Config) -> FreezeRefused {
    let driver = rollgate_runtime::driver_for(config).unwrap();
    let _ = node;
    match freeze(config, driver.as_ref()).await {
        Ok(b) => panic!("expected a refusal, got baseline {}", b.id),
        Err(r) => r,
    }
}

fn assert_reason(r: &FreezeRefused, prefix: &str, needle: &str) {
    assert!(
        r.reasons
            .iter()
            .any(|x| x.starts_with(prefix) && x.contains(needle)),
        "expected a reason `{prefix}…{needle}…` in {:#?}",
        r.reasons
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_green_node_then_refuse_every_ambiguity() {
    let Some(node) = Node::start(true).await else {
        return;
    };

    // Green: a complete record, stored and marked known-good.
    let config = node.config(&Knobs::default());
    let driver = rollgate_runtime::driver_for(&config).unwrap();
    let journal =
        JournalHandle::new(rollgate_journal::Journal::open(&config.node.state_dir).unwrap());
    let b = match freeze_and_store(&config, &journal, driver.as_ref()).await {
        Ok(b) => b,
        Err(e) => panic!(
            "freeze refused a green node: {}",
            rollgate_probe::errors::chain(&e)
        ),
    };
    assert_eq!(b.mode, Mode::LocalnetLoopback);
    assert_eq!(b.layers.len(), 2);
    assert_eq!(
        b.layers["operator-image"].value,
        "rollgate-sim/operator-image:v1.0.0"
    );
    let m = b.metadata.as_ref().unwrap();
    assert_eq!(m.sha256.as_ref().unwrap().len(), 64);
    assert!(m.uid.is_some());
    let sgx = b.sgx.as_ref().unwrap();
    assert_eq!(sgx.build["SGX_DEBUG"], "0");
    assert_eq!(sgx.runtime["SGX_PRERELEASE"], "1");
    assert_eq!(b.readiness["operator"]["health"], "Healthy");
    assert_eq!(b.readiness["kyc"]["isHealthy"], true);
    assert!(b.faults.is_empty());
    assert_eq!(b.progression.len(), 2);
    assert!(
        !b.idle
            && b.progression
                .iter()
                .all(|p| !p.idle && p.rate_per_s > 0.0 && p.window_ms >= 900),
        "{:?}",
        b.progression
    );
    let dbs = node.dbs.as_ref().unwrap();
    assert!(
        b.storage
            .contains_key(&format!("postgres:{}", dbs.node0.name())),
        "{:?}",
        b.storage
    );
    assert!(
        b.checks
            .iter()
            .any(|c| c.name == "postgres" && c.latency_ms < 2000)
    );
    let id = b.id.clone();
    let (stored, list) = journal
        .call(move |j| Ok((j.baseline(&id)?, j.list_baselines()?)))
        .await
        .unwrap();
    assert_eq!(stored.unwrap().id, b.id);
    assert!(list.iter().any(|s| s.id == b.id && s.known_good));

    // Mode mismatch in the node's runtime env (the config itself is consistent).
    let mut k = Knobs::default();
    k.runtime_env.push_str("ETH_RPC_URL=http://ethereum:8545\n");
    let r = refused(&node, &node.config(&k)).await;
    assert_reason(
        &r,
        "dependency-urls:",
        "mode mismatch: node.mode is localnet.loopback but runtime env ETH_RPC_URL http://ethereum:8545 is localnet.compose",
    );
    // ... and in a configuration built around the loader's own check.
    let mut config = node.config(&Knobs::default());
    config.dependencies.deployment_service.as_mut().unwrap().url =
        "http://deployment-service:4040".into();
    assert_reason(
        &refused(&node, &config).await,
        "dependency-urls:",
        "mode mismatch",
    );
    // `host` is diagnostic only.
    let mut config = node.config(&Knobs::default());
    config.node.mode = Mode::Host;
    assert_reason(&refused(&node, &config).await, "mode:", "diagnostic only");

    // Misaligned SGX flags.
    let k = Knobs {
        runtime_env: "SGX_DEBUG=1\nSGX_PRERELEASE=1\n".into(),
        ..Knobs::default()
    };
    let r = refused(&node, &node.config(&k)).await;
    assert_reason(&r, "sgx-flags:", "SGX_DEBUG: built with 0, runtime sets 1");
    let k = Knobs {
        runtime_env: "SGX_DEBUG=0\n".into(),
        ..Knobs::default()
    };
    assert_reason(
        &refused(&node, &node.config(&k)).await,
        "sgx-flags:",
        "SGX_PRERELEASE is not set in the runtime env",
    );

    // Metadata owned by someone other than its writer.
    let k = Knobs {
        owner: Some("54321".into()),
        ..Knobs::default()
    };
    let r = refused(&node, &node.config(&k)).await;
    assert_reason(&r, "deployment-metadata:", "expected its writer uid 54321");
    // Every refusal lists only what is wrong.
    assert_eq!(r.reasons.len(), 1, "{:#?}", r.reasons);

    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_node_refuses_under_fail_and_is_recorded_idle_otherwise() {
    let Some(node) = Node::start(false).await else {
        return;
    };
    let config = node.config(&Knobs::default());
    let r = refused(&node, &config).await;
    assert_reason(&r, "progression:requestIndex:", "idle");
    assert_reason(&r, "progression:lastTx:", "rollout.idle_progression = fail");
    assert_eq!(r.reasons.len(), 2, "{:#?}", r.reasons);
    assert!(r.observed.idle);

    for policy in ["inconclusive", "pass"] {
        let config = node.config(&Knobs {
            idle_policy: policy,
            ..Knobs::default()
        });
        let driver = rollgate_runtime::driver_for(&config).unwrap();
        let b = freeze(&config, driver.as_ref())
            .await
            .unwrap_or_else(|r| panic!("{policy}: {r}"));
        assert!(b.idle, "{policy}");
        assert_eq!(b.progression.len(), 2);
        for p in &b.progression {
            assert!(
                p.idle && p.rate_per_s == 0.0 && p.first == p.last && p.window_ms >= 900,
                "{policy}: {p:?}"
            );
        }
    }
    node.shutdown().await;
}

//! The chain prerequisite against the simulated node, through the binary: a chain with
//! mainnet-like block times is judged at once by its latest block, a stalled chain fails, and a
//! provider without JSON-RPC batches is asked one call per method.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{Node, NodeOptions, code, explain};

fn chain_check(doc: &Value) -> &Value {
    doc["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "chain"))
        .unwrap_or_else(|| panic!("no chain check in {doc}"))
}

#[test]
fn a_chain_with_12s_blocks_passes_the_prerequisites_in_one_round_trip() {
    // Ethereum mainnet's block time. The head-watching probe waited 3 s for a block that
    // usually did not come, then warned on a healthy chain.
    let Some(node) = Node::start(NodeOptions {
        sim_args: &["--chain-block-ms", "12000"],
        ..NodeOptions::default()
    }) else {
        return;
    };
    let t = Instant::now();
    let (out, doc) = node.run(&["check", "--group", "prerequisites"]);
    let wall = t.elapsed();
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let chain = chain_check(&doc);
    assert_eq!(chain["status"], "pass", "{chain}");
    assert!(
        chain["latency_ms"].as_u64().unwrap() < 1000,
        "the chain check waited: {chain}"
    );
    assert!(wall < Duration::from_secs(2), "check took {wall:?}");
}

#[test]
fn a_stalled_chain_fails_the_prerequisites_and_a_provider_without_batches_passes() {
    let Some(node) = Node::start(NodeOptions {
        sim_args: &["--chain-stall-after-ms", "0", "--chain-no-batch"],
        ..NodeOptions::default()
    }) else {
        return;
    };
    // Fresh enough under the default max_block_age (60s), asked without a batch.
    let (out, doc) = node.run(&["check", "--group", "prerequisites"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    let chain = chain_check(&doc);
    assert_eq!(chain["status"], "pass", "{chain}");
    assert_eq!(chain["observed"]["batch"], false, "{chain}");
    // The same chain, judged with a 1 s max_block_age once its only block is older than that.
    node.edit_config(
        "chain = { url = ",
        "chain = { max_block_age = \"1s\", url = ",
    );
    std::thread::sleep(Duration::from_millis(2100));
    let (out, doc) = node.run(&["check", "--group", "prerequisites"]);
    assert_eq!(code(&out), 3, "{}", explain(&out));
    let chain = chain_check(&doc);
    assert_eq!(chain["status"], "fail", "{chain}");
    let detail = chain["detail"].as_str().unwrap();
    assert!(
        detail.contains("(max_block_age 1s): the chain is stalled"),
        "{detail}"
    );
}

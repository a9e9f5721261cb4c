//! The simulated chain's blocks: `eth_getBlockByNumber` by tag and number, timestamps that
//! follow the block interval, a chain that stalls, an old head, and no batches.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rollgate_sim::services::chain::{ChainOptions, RunningChain};
use serde_json::{Value, json};

use crate::common::client;

async fn start(opts: ChainOptions) -> RunningChain {
    RunningChain::start(ChainOptions {
        listen: "127.0.0.1:0".into(),
        ..opts
    })
    .await
    .unwrap()
}

async fn rpc(chain: &RunningChain, body: Value) -> Value {
    let resp = client().post(chain.url()).json(&body).send().await.unwrap();
    resp.json().await.unwrap()
}

async fn block(chain: &RunningChain, tag: &str) -> Value {
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": [tag, false]});
    rpc(chain, req).await
}

fn quantity(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn blocks_by_tag_and_number_with_timestamps_that_follow_the_interval() {
    let chain = start(ChainOptions {
        block_interval: Duration::from_secs(2),
        ..ChainOptions::default()
    })
    .await;
    let latest = block(&chain, "latest").await["result"].clone();
    assert_eq!(latest["number"], "0x64", "{latest}");
    let ts = quantity(&latest["timestamp"]);
    assert!(now().abs_diff(ts) <= 1, "{latest}");
    assert_eq!(latest["hash"].as_str().unwrap().len(), 66, "{latest}");
    assert_ne!(latest["hash"], latest["parentHash"]);
    assert_eq!(block(&chain, "0x64").await["result"], latest);
    // Block 0 is a hundred 2 s blocks older; block 101 is not made yet.
    let earliest = block(&chain, "earliest").await["result"].clone();
    assert_eq!(quantity(&earliest["timestamp"]), ts - 200);
    assert_eq!(block(&chain, "0x65").await["result"], Value::Null);
    for bad in ["0xzz", "0x", "tomorrow"] {
        assert_eq!(block(&chain, bad).await["error"]["code"], -32602, "{bad}");
    }
    let no_params = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber"});
    assert_eq!(rpc(&chain, no_params).await["error"]["code"], -32602);
    chain.shutdown().await;
}

#[tokio::test]
async fn a_stalled_chain_stops_making_blocks_and_its_head_ages() {
    let stalls = start(ChainOptions {
        block_interval: Duration::from_millis(100),
        stall_after: Some(Duration::from_millis(300)),
        ..ChainOptions::default()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let n = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []});
    assert_eq!(rpc(&stalls, n).await["result"], "0x67");
    assert_eq!(block(&stalls, "latest").await["result"]["number"], "0x67");

    let old = start(ChainOptions {
        stall_after: Some(Duration::ZERO),
        head_age: Duration::from_secs(600),
        ..ChainOptions::default()
    })
    .await;
    let ts = quantity(&block(&old, "latest").await["result"]["timestamp"]);
    assert!((599..=601).contains(&(now() - ts)), "{}", now() - ts);
    for c in [stalls, old] {
        c.shutdown().await;
    }
}

#[tokio::test]
async fn without_batches_a_batch_gets_one_error() {
    let chain = start(ChainOptions {
        batches: false,
        ..ChainOptions::default()
    })
    .await;
    let batch = json!([{"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}]);
    let reply = rpc(&chain, batch).await;
    assert_eq!(reply["error"]["code"], -32600, "{reply}");
    let single = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []});
    assert_eq!(rpc(&chain, single).await["result"], "0x539");
    chain.shutdown().await;
}

//! The chain probe: one JSON-RPC batch, judged by the latest block's age and `eth_syncing`;
//! against the simulated chain and against JSON-RPC servers that answer every bad shape.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use rollgate_core::vocab::CheckStatus;
use rollgate_probe::chain::probe_chain;
use rollgate_probe::{HttpClient, Outcome};
use rollgate_sim::services::chain::{ChainOptions, RunningChain};
use serde_json::{Value, json};

use crate::bad_responses::chain;
use crate::support::{assert_outcome as expect, limits};

/// How the server treats a batch.
#[derive(Debug, Clone, Copy)]
enum Batches {
    /// Replies in request order.
    Yes,
    /// Replies in reverse order (allowed: replies are matched by id).
    Reversed,
    /// The last reply is missing.
    DropLast,
    /// The first reply twice.
    Duplicated,
    /// HTTP 400 for any batch.
    Http400,
    /// One JSON-RPC error object for the whole batch.
    ErrorObject,
}

/// The reply fields for one method: `{"result": …}` or `{"error": …}`.
type Method = dyn Fn(&str) -> Value + Send + Sync;

/// A replacement for some methods' reply fields (`None`: the healthy default).
type Override = Box<dyn Fn(&str) -> Option<Value> + Send + Sync>;

struct Node {
    batches: Batches,
    method: Box<Method>,
    hits: AtomicUsize,
}

fn reply(node: &Node, req: &Value) -> Value {
    let mut r = (node.method)(req["method"].as_str().unwrap_or(""));
    r["jsonrpc"] = json!("2.0");
    r["id"] = req["id"].clone();
    r
}

async fn answer(State(node): State<Arc<Node>>, body: Bytes) -> (StatusCode, String) {
    node.hits.fetch_add(1, Ordering::SeqCst);
    let req: Value = serde_json::from_slice(&body).unwrap();
    let Value::Array(reqs) = req else {
        return (StatusCode::OK, reply(&node, &req).to_string());
    };
    let mut replies: Vec<Value> = reqs.iter().map(|r| reply(&node, r)).collect();
    match node.batches {
        Batches::Yes => {}
        Batches::Reversed => replies.reverse(),
        Batches::DropLast => {
            replies.pop();
        }
        Batches::Duplicated => replies.push(replies[0].clone()),
        Batches::Http400 => return (StatusCode::BAD_REQUEST, "batches not supported".into()),
        Batches::ErrorObject => {
            let e = json!({"jsonrpc": "2.0", "id": null,
                           "error": {"code": -32600, "message": "batch not supported"}});
            return (StatusCode::OK, e.to_string());
        }
    }
    (StatusCode::OK, Value::Array(replies).to_string())
}

/// A JSON-RPC server on loopback; its URL and its request counter.
async fn serve(
    batches: Batches,
    method: impl Fn(&str) -> Value + Send + Sync + 'static,
) -> (String, Arc<Node>) {
    let node = Arc::new(Node {
        batches,
        method: Box::new(method),
        hits: AtomicUsize::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/", post(answer))
        .with_state(node.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, node)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hex(n: u64) -> Value {
    json!(format!("0x{n:x}"))
}

/// A healthy node on chain 1337 whose latest block 100 is `age_s` old.
fn healthy(age_s: u64) -> impl Fn(&str) -> Value + Send + Sync + 'static {
    with_block(age_s, |m| match m {
        "eth_syncing" => Some(json!({"result": false})),
        _ => None,
    })
}

/// As [`healthy`], with `over` answering first.
fn with_block(
    age_s: u64,
    over: impl Fn(&str) -> Option<Value> + Send + Sync + 'static,
) -> impl Fn(&str) -> Value + Send + Sync + 'static {
    let ts = now() - age_s;
    move |m| {
        over(m).unwrap_or_else(|| match m {
            "eth_chainId" => json!({"result": "0x539"}),
            "eth_getBlockByNumber" => {
                json!({"result": {"number": hex(100), "timestamp": hex(ts), "hash": "0x01"}})
            }
            "eth_blockNumber" => json!({"result": hex(100)}),
            "eth_syncing" => json!({"result": false}),
            _ => json!({"error": {"code": -32601, "message": "Method not found"}}),
        })
    }
}

async fn probe(url: &str, advance_window: Option<Duration>) -> Outcome {
    let http = HttpClient::new(&limits()).unwrap();
    let mut c = chain(url);
    c.advance_window = advance_window;
    probe_chain(&http, &c).await
}

#[tokio::test]
async fn a_healthy_chain_costs_one_round_trip_even_with_mainnet_block_times() {
    // Ethereum mainnet makes a block every 12 s: a latest block 10 s old is healthy, and is
    // judged at once (the old probe waited 3 s for the head to move, then warned).
    let (url, node) = serve(Batches::Yes, healthy(10)).await;
    let t = Instant::now();
    let o = probe(&url, Some(Duration::from_secs(3))).await;
    expect(&o, CheckStatus::Pass, "chain 1337, latest block 100 is 1");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(node.hits.load(Ordering::SeqCst), 1, "one HTTP request");
    assert_eq!(o.observed["batch"], json!(true));
    assert_eq!(o.observed["head"], json!(100));
}

#[tokio::test]
async fn a_stale_head_is_a_stalled_chain() {
    let (url, node) = serve(Batches::Yes, healthy(600)).await;
    let o = probe(&url, None).await;
    expect(
        &o,
        CheckStatus::Fail,
        "(max_block_age 60s): the chain is stalled",
    );
    assert!(o.detail.contains("latest block 100 is 60"), "{}", o.detail);
    assert_eq!(node.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn advance_window_watches_an_old_head() {
    let window = Some(Duration::from_millis(600));
    // An idle automining localnet: the head stays put, a warning as before.
    let (url, _) = serve(Batches::Yes, healthy(600)).await;
    expect(
        &probe(&url, window).await,
        CheckStatus::Warn,
        "head stayed at 100 for 600ms (an automining chain",
    );
    // A head that moves while watched passes.
    let moving = Arc::new(AtomicU64::new(100));
    let (url, _) = serve(
        Batches::Yes,
        with_block(600, move |m| {
            (m == "eth_blockNumber")
                .then(|| json!({"result": hex(moving.fetch_add(1, Ordering::SeqCst) + 1)}))
        }),
    )
    .await;
    expect(
        &probe(&url, window).await,
        CheckStatus::Pass,
        "head 100 → 101",
    );
    // One that goes backwards fails.
    let (url, _) = serve(
        Batches::Yes,
        with_block(600, |m| {
            (m == "eth_blockNumber").then(|| json!({"result": "0x5"}))
        }),
    )
    .await;
    expect(
        &probe(&url, window).await,
        CheckStatus::Fail,
        "head went backwards from 100 to 5",
    );
}

#[tokio::test]
async fn syncing_is_a_warning_and_a_stale_syncing_node_fails() {
    let syncing = |m: &str| {
        (m == "eth_syncing").then(|| {
            json!({"result": {"startingBlock": "0x0", "currentBlock": "0x5a", "highestBlock": "0x64"}})
        })
    };
    let (url, _) = serve(Batches::Yes, with_block(2, syncing)).await;
    expect(
        &probe(&url, None).await,
        CheckStatus::Warn,
        "node is syncing (block 90 of 100, 10 behind)",
    );
    let (url, _) = serve(Batches::Yes, with_block(600, syncing)).await;
    expect(
        &probe(&url, None).await,
        CheckStatus::Fail,
        "s old (max_block_age 60s), syncing (block 90 of 100, 10 behind): the chain is stalled",
    );
    // A provider without eth_syncing is judged by the block alone.
    let (url, _) = serve(
        Batches::Yes,
        with_block(2, |m| {
            (m == "eth_syncing").then(
                || json!({"error": {"code": -32601, "message": "the method eth_syncing does not exist"}}),
            )
        }),
    )
    .await;
    let o = probe(&url, None).await;
    expect(&o, CheckStatus::Pass, "latest block 100");
    assert_eq!(o.observed["syncing"], json!("unsupported"));
    let (url, _) = serve(
        Batches::Yes,
        with_block(2, |m| {
            (m == "eth_syncing").then(|| json!({"result": "yes"}))
        }),
    )
    .await;
    expect(
        &probe(&url, None).await,
        CheckStatus::Fail,
        "eth_syncing returned \"yes\", expected false or a sync status object",
    );
}

#[tokio::test]
async fn servers_without_batches_get_one_call_per_method() {
    for batches in [Batches::Http400, Batches::ErrorObject] {
        let (url, node) = serve(batches, healthy(2)).await;
        let o = probe(&url, None).await;
        expect(&o, CheckStatus::Pass, "latest block 100");
        assert_eq!(o.observed["batch"], json!(false), "{batches:?}");
        assert_eq!(
            node.hits.load(Ordering::SeqCst),
            4,
            "{batches:?}: batch + 3 calls"
        );
    }
}

#[tokio::test]
async fn batch_replies_are_matched_by_id() {
    let (url, _) = serve(Batches::Reversed, healthy(2)).await;
    expect(
        &probe(&url, None).await,
        CheckStatus::Pass,
        "latest block 100",
    );
    let (url, _) = serve(Batches::DropLast, healthy(2)).await;
    expect(
        &probe(&url, None).await,
        CheckStatus::Fail,
        "eth_syncing: the batch answer has no reply with id 3",
    );
    let (url, _) = serve(Batches::Duplicated, healthy(2)).await;
    expect(
        &probe(&url, None).await,
        CheckStatus::Fail,
        "eth_chainId: the batch answer has two replies with id 1",
    );
}

#[tokio::test]
async fn malformed_answers_name_the_method_and_field() {
    let ts = hex(now());
    let block = move |b: Value| {
        move |m: &str| (m == "eth_getBlockByNumber").then(|| json!({"result": b.clone()}))
    };
    let cases: Vec<(Override, &str)> = vec![
        (
            Box::new(block(Value::Null)),
            "eth_getBlockByNumber(\"latest\") returned null: the node has no latest block",
        ),
        (
            Box::new(block(json!({"number": "0x64"}))),
            "returned a block without `timestamp`",
        ),
        (
            Box::new(block(
                json!({"number": "0x1ffffffffffffffff", "timestamp": ts}),
            )),
            "block `number` is \"0x1ffffffffffffffff\", expected a hex quantity like \"0x1a\" (at most 64 bits)",
        ),
        (
            Box::new(block(json!({"number": 100, "timestamp": ts}))),
            "block `number` is 100, expected a hex quantity",
        ),
        (
            Box::new(block(json!({"number": "0x64", "timestamp": "yesterday"}))),
            "block `timestamp` is \"yesterday\", expected a hex quantity",
        ),
        (
            Box::new(|m: &str| {
                (m == "eth_getBlockByNumber")
                    .then(|| json!({"error": {"code": -32000, "message": "header not found"}}))
            }),
            "eth_getBlockByNumber returned error",
        ),
        (
            Box::new(|m: &str| (m == "eth_chainId").then(|| json!({"result": "0xZZ"}))),
            "eth_chainId returned value is \"0xZZ\", expected a hex quantity",
        ),
        (
            Box::new(|m: &str| (m == "eth_chainId").then(|| json!({"id": 1}))),
            "eth_chainId answer has no `result`",
        ),
    ];
    for (over, needle) in cases {
        let (url, _) = serve(Batches::Yes, with_block(2, over)).await;
        expect(&probe(&url, None).await, CheckStatus::Fail, needle);
    }
}

#[tokio::test]
async fn the_simulated_chain_fresh_stalled_and_without_batches() {
    let start = |opts: ChainOptions| {
        RunningChain::start(ChainOptions {
            listen: "127.0.0.1:0".into(),
            chain_id: 1337,
            ..opts
        })
    };
    let fresh = start(ChainOptions {
        block_interval: Duration::from_secs(2),
        ..ChainOptions::default()
    })
    .await
    .unwrap();
    let o = probe(&fresh.url(), None).await;
    expect(&o, CheckStatus::Pass, "latest block 100 is");
    assert_eq!(o.observed["batch"], json!(true));

    let stalled = start(ChainOptions {
        stall_after: Some(Duration::ZERO),
        head_age: Duration::from_secs(600),
        ..ChainOptions::default()
    })
    .await
    .unwrap();
    expect(
        &probe(&stalled.url(), None).await,
        CheckStatus::Fail,
        "s old (max_block_age 60s): the chain is stalled",
    );

    let no_batch = start(ChainOptions {
        batches: false,
        ..ChainOptions::default()
    })
    .await
    .unwrap();
    let o = probe(&no_batch.url(), None).await;
    expect(&o, CheckStatus::Pass, "latest block 100 is");
    assert_eq!(o.observed["batch"], json!(false));
    for c in [fresh, stalled, no_batch] {
        c.shutdown().await;
    }
}

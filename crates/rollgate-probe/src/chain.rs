//! The chain JSON-RPC probe, in one round trip: a JSON-RPC batch of `eth_chainId`,
//! `eth_getBlockByNumber("latest", false)` and `eth_syncing`.
//!
//! The chain is judged by the latest block's timestamp, not by waiting for the head to move:
//! a head older than `max_block_age` is a stalled chain (a failure), a node that reports it is
//! syncing is a warning (its state lags; the block age decides whether it lags too far). A
//! server that does not do batches (a non-2xx answer, or anything but an array of replies) is
//! asked the same three calls one by one, concurrently. Every malformed answer is a failure
//! naming the endpoint and the method.
//!
//! Head-watching stays where the configuration asks for it (`advance_window`): an automining
//! development chain only makes blocks when a transaction arrives, so its latest block may be
//! old on a healthy idle localnet. With `advance_window` set, an old head is watched for that
//! long; a head that moves passes, one that stays put is a warning, one that goes backwards
//! fails.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rollgate_core::config::Chain;
use rollgate_core::redact::redact_url;
use serde_json::{Value, json};

use crate::errors::{ProbeError, humanize};
use crate::http::{HttpClient, parse_json, require_success};
use crate::outcome::{Outcome, show_value};

/// How often the head is re-sampled while it is watched (`advance_window`).
pub const ADVANCE_INTERVAL: Duration = Duration::from_millis(250);

const CHAIN_ID: &str = "eth_chainId";
const LATEST_BLOCK: &str = "eth_getBlockByNumber";
const SYNCING: &str = "eth_syncing";

/// JSON-RPC "method not found": a provider that does not offer `eth_syncing`.
const METHOD_NOT_FOUND: i64 = -32601;

fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn invalid(url: &str, message: String) -> ProbeError {
    ProbeError::Invalid {
        endpoint: redact_url(url),
        message,
    }
}

/// One JSON-RPC call: the whole reply object, whatever it holds.
async fn call(http: &HttpClient, url: &str, req: &Value) -> Result<Value, ProbeError> {
    let fetched = http.post_json(url, req).await?;
    require_success(url, &fetched)?;
    parse_json(url, &fetched.body)
}

/// The `result` of a reply, or an error naming the method.
fn result_of(url: &str, method: &str, reply: &Value) -> Result<Value, ProbeError> {
    if let Some(err) = reply.get("error").filter(|e| !e.is_null()) {
        return Err(invalid(
            url,
            format!("{method} returned error {}", show_value(err, 120)),
        ));
    }
    match reply.get("result") {
        Some(r) => Ok(r.clone()),
        None => Err(invalid(
            url,
            format!(
                "{method} answer has no `result` ({})",
                show_value(reply, 80)
            ),
        )),
    }
}

/// One JSON-RPC call; the `result`, or an error naming the method.
pub async fn rpc(http: &HttpClient, url: &str, method: &str) -> Result<Value, ProbeError> {
    let reply = call(http, url, &request(1, method, json!([]))).await?;
    result_of(url, method, &reply)
}

/// A JSON-RPC quantity (`"0x1a"`) as a number; `None` for anything else, a value past `u64`
/// included.
pub fn quantity(v: &Value) -> Option<u64> {
    let s = v.as_str()?;
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn need_quantity(url: &str, what: &str, v: &Value) -> Result<u64, ProbeError> {
    quantity(v).ok_or_else(|| {
        invalid(
            url,
            format!(
                "{what} is {}, expected a hex quantity like \"0x1a\" (at most 64 bits)",
                show_value(v, 60)
            ),
        )
    })
}

async fn rpc_quantity(http: &HttpClient, url: &str, method: &str) -> Result<u64, ProbeError> {
    let v = rpc(http, url, method).await?;
    need_quantity(url, &format!("{method} returned value"), &v)
}

/// The replies to `reqs`, matched by id, in request order: one batch round trip, or one call
/// per request (concurrently) when the server does not do batches. A transport error (no
/// connection, no answer in time) is not retried: the endpoint is down either way.
async fn call_all(
    http: &HttpClient,
    url: &str,
    reqs: &[Value; 3],
) -> Result<(Vec<Value>, bool), ProbeError> {
    let fetched = http.post_json(url, &Value::Array(reqs.to_vec())).await?;
    let replies = match serde_json::from_slice::<Value>(&fetched.body) {
        Ok(Value::Array(replies)) if (200..300).contains(&fetched.status) => replies,
        _ => Vec::new(),
    };
    let method = |req: &Value| req["method"].as_str().unwrap_or("?").to_owned();
    let mut matched = Vec::with_capacity(reqs.len());
    for req in reqs {
        let mut same_id = replies.iter().filter(|r| r.get("id") == req.get("id"));
        let first = same_id.next();
        if same_id.next().is_some() {
            return Err(invalid(
                url,
                format!(
                    "{}: the batch answer has two replies with id {}",
                    method(req),
                    req["id"]
                ),
            ));
        }
        matched.push(first.cloned());
    }
    if matched.iter().all(Option::is_some) {
        return Ok((matched.into_iter().flatten().collect(), true));
    }
    if matched.iter().any(Option::is_some) {
        // Some replies but not all: a broken batch, not a missing feature.
        let (req, _) = reqs
            .iter()
            .zip(&matched)
            .find(|(_, m)| m.is_none())
            .unwrap();
        return Err(invalid(
            url,
            format!(
                "{}: the batch answer has no reply with id {}",
                method(req),
                req["id"]
            ),
        ));
    }
    // None of our ids: an error status, a body that is not JSON, or one error object for the
    // whole batch. The server does not do batches; ask one call per method.
    let (a, b, c) = tokio::join!(
        call(http, url, &reqs[0]),
        call(http, url, &reqs[1]),
        call(http, url, &reqs[2])
    );
    Ok((vec![a?, b?, c?], false))
}

/// The latest block: its number and timestamp (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub number: u64,
    pub timestamp: u64,
}

/// What `eth_syncing` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syncing {
    No,
    /// Syncing, with `currentBlock` and `highestBlock` when given.
    Yes {
        current: Option<u64>,
        highest: Option<u64>,
    },
    /// The provider does not offer `eth_syncing` (method not found).
    Unsupported,
}

/// The three answers of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainState {
    pub chain_id: u64,
    pub head: Head,
    pub syncing: Syncing,
}

fn parse_head(url: &str, block: &Value) -> Result<Head, ProbeError> {
    let what = "eth_getBlockByNumber(\"latest\")";
    if block.is_null() {
        return Err(invalid(
            url,
            format!("{what} returned null: the node has no latest block"),
        ));
    }
    if !block.is_object() {
        return Err(invalid(
            url,
            format!(
                "{what} returned {}, expected a block object",
                show_value(block, 60)
            ),
        ));
    }
    let field = |name: &str| -> Result<u64, ProbeError> {
        match block.get(name) {
            None => Err(invalid(
                url,
                format!("{what} returned a block without `{name}`"),
            )),
            Some(v) => need_quantity(url, &format!("{what} block `{name}`"), v),
        }
    };
    Ok(Head {
        number: field("number")?,
        timestamp: field("timestamp")?,
    })
}

fn parse_syncing(url: &str, reply: &Value) -> Result<Syncing, ProbeError> {
    let not_found = reply.pointer("/error/code").and_then(Value::as_i64) == Some(METHOD_NOT_FOUND);
    if not_found {
        return Ok(Syncing::Unsupported);
    }
    match result_of(url, SYNCING, reply)? {
        Value::Bool(false) => Ok(Syncing::No),
        Value::Object(status) => Ok(Syncing::Yes {
            current: status.get("currentBlock").and_then(quantity),
            highest: status.get("highestBlock").and_then(quantity),
        }),
        other => Err(invalid(
            url,
            format!(
                "{SYNCING} returned {}, expected false or a sync status object",
                show_value(&other, 60)
            ),
        )),
    }
}

/// Ask the endpoint for chain id, latest block and sync status; `true` when it took one batch.
/// A chain id other than `want` is an error before anything else is judged.
pub async fn read_state(
    http: &HttpClient,
    url: &str,
    want: Option<u64>,
) -> Result<(ChainState, bool), ProbeError> {
    let reqs = [
        request(1, CHAIN_ID, json!([])),
        request(2, LATEST_BLOCK, json!(["latest", false])),
        request(3, SYNCING, json!([])),
    ];
    let (replies, batched) = call_all(http, url, &reqs).await?;
    let chain_id = result_of(url, CHAIN_ID, &replies[0])?;
    let chain_id = need_quantity(url, &format!("{CHAIN_ID} returned value"), &chain_id)?;
    if let Some(want) = want
        && want != chain_id
    {
        return Err(invalid(
            url,
            format!("chain id is {chain_id}, expected {want}"),
        ));
    }
    let state = ChainState {
        chain_id,
        head: parse_head(url, &result_of(url, LATEST_BLOCK, &replies[1])?)?,
        syncing: parse_syncing(url, &replies[2])?,
    };
    Ok((state, batched))
}

/// What the state says, before any head-watching: a verdict, or `Stale` when the latest block
/// is older than `max_block_age`. Pure: `now` is Unix seconds.
#[derive(Debug, Clone)]
pub enum Judgement {
    Done(Outcome),
    Stale { age: Duration, detail: String },
}

/// Judge one reading (its chain id already checked) at `now` (Unix seconds).
pub fn judge(endpoint: &str, chain: &Chain, s: &ChainState, now: u64) -> Judgement {
    let age = Duration::from_secs(now.saturating_sub(s.head.timestamp));
    let syncing = match s.syncing {
        Syncing::Yes { current, highest } => Some(match (current, highest) {
            (Some(c), Some(h)) => {
                format!("syncing (block {c} of {h}, {} behind)", h.saturating_sub(c))
            }
            _ => "syncing".to_string(),
        }),
        _ => None,
    };
    let observed = json!({
        "chain_id": s.chain_id,
        "head": s.head.number,
        "head_timestamp": s.head.timestamp,
        "head_age_s": age.as_secs(),
        "max_block_age_s": chain.max_block_age.as_secs(),
        "syncing": match s.syncing {
            Syncing::No => json!(false),
            Syncing::Yes { current, highest } => json!({"current": current, "highest": highest}),
            Syncing::Unsupported => json!("unsupported"),
        },
    });
    let head = format!(
        "chain {}, latest block {} is {} old",
        s.chain_id,
        s.head.number,
        humanize(age)
    );
    if age > chain.max_block_age {
        let detail = format!(
            "{endpoint}: {head} (max_block_age {}){}",
            humanize(chain.max_block_age),
            syncing.map(|s| format!(", {s}")).unwrap_or_default()
        );
        return Judgement::Stale { age, detail };
    }
    Judgement::Done(match syncing {
        Some(sync) => Outcome::warn(format!("{endpoint}: {head}, node is {sync}"), observed),
        None => Outcome::pass(format!("{endpoint}: {head}"), observed),
    })
}

/// Probe the chain endpoint.
pub async fn probe_chain(http: &HttpClient, chain: &Chain) -> Outcome {
    let url = &chain.probe_url;
    let endpoint = redact_url(url);
    let (state, batched) = match read_state(http, url, chain.chain_id).await {
        Ok(s) => s,
        Err(e) => return e.into(),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (age, detail) = match judge(&endpoint, chain, &state, now) {
        Judgement::Done(mut o) => {
            if let Some(obj) = o.observed.as_object_mut() {
                obj.insert("batch".into(), json!(batched));
            }
            return o;
        }
        Judgement::Stale { age, detail } => (age, detail),
    };
    let Some(window) = chain.advance_window else {
        return Outcome::fail(
            format!("{detail}: the chain is stalled"),
            json!({"chain_id": state.chain_id, "head": state.head.number,
                   "head_age_s": age.as_secs(), "batch": batched}),
        );
    };
    watch_head(http, url, &detail, state.head.number, window).await
}

/// Sample `eth_blockNumber` until it moves or `window` ends (`advance_window`).
async fn watch_head(
    http: &HttpClient,
    url: &str,
    detail: &str,
    first: u64,
    window: Duration,
) -> Outcome {
    let start = tokio::time::Instant::now();
    let mut last = first;
    while last == first && start.elapsed() < window {
        tokio::time::sleep(ADVANCE_INTERVAL).await;
        last = match rpc_quantity(http, url, "eth_blockNumber").await {
            Ok(n) => n,
            Err(e) => return e.into(),
        };
    }
    let observed = json!({"head_first": first, "head_last": last,
                          "sampled_ms": start.elapsed().as_millis() as u64});
    if last < first {
        Outcome::fail(
            format!("{detail}; head went backwards from {first} to {last} (chain reset?)"),
            observed,
        )
    } else if last == first {
        Outcome::warn(
            format!(
                "{detail}; head stayed at {first} for {} (an automining chain only advances with traffic)",
                humanize(window)
            ),
            observed,
        )
    } else {
        Outcome::pass(format!("{detail}; head {first} → {last}"), observed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity(&json!("0x539")), Some(1337));
        assert_eq!(quantity(&json!("0x0")), Some(0));
        assert_eq!(quantity(&json!("0x000000000000000001")), Some(1));
        assert_eq!(quantity(&json!("539")), None);
        assert_eq!(quantity(&json!("0x")), None);
        assert_eq!(quantity(&json!("0x+1")), None);
        assert_eq!(quantity(&json!(1337)), None);
        assert_eq!(quantity(&json!("0xzz")), None);
        assert_eq!(quantity(&json!("0x1ffffffffffffffff")), None);
    }

    fn chain(max_age: u64) -> Chain {
        Chain {
            url: "http://c".into(),
            probe_url: "http://c".into(),
            chain_id: Some(1),
            max_block_age: Duration::from_secs(max_age),
            advance_window: None,
        }
    }

    fn state(ts: u64, syncing: Syncing) -> ChainState {
        ChainState {
            chain_id: 1,
            head: Head {
                number: 7,
                timestamp: ts,
            },
            syncing,
        }
    }

    #[test]
    fn judged_by_block_age_then_syncing() {
        use rollgate_core::vocab::CheckStatus::{Pass, Warn};
        let status = |j: Judgement| match j {
            Judgement::Done(o) => Some(o.status),
            Judgement::Stale { .. } => None,
        };
        let c = chain(60);
        assert_eq!(
            status(judge("e", &c, &state(1000, Syncing::No), 1060)),
            Some(Pass)
        );
        assert_eq!(
            status(judge("e", &c, &state(1000, Syncing::No), 1061)),
            None
        );
        // A timestamp ahead of our clock (skew) is a fresh block.
        assert_eq!(
            status(judge("e", &c, &state(2000, Syncing::No), 1000)),
            Some(Pass)
        );
        assert_eq!(
            status(judge("e", &c, &state(1000, Syncing::Unsupported), 1001)),
            Some(Pass)
        );
        let sync = Syncing::Yes {
            current: Some(5),
            highest: Some(9),
        };
        assert_eq!(status(judge("e", &c, &state(1000, sync), 1001)), Some(Warn));
        let Judgement::Stale { detail, .. } = judge("e", &c, &state(1000, sync), 1600) else {
            panic!("stale")
        };
        assert!(
            detail.contains("600s old") && detail.contains("4 behind"),
            "{detail}"
        );
    }
}

//! The chain JSON-RPC probe: `eth_chainId`, `eth_blockNumber`, and whether the head advances.
//!
//! The head is sampled until it moves or `advance_window` ends. A head that stays put is a
//! warning, not a failure: automining development chains only mine when a transaction arrives,
//! so a still head on an idle localnet is normal, while an unreachable or malformed endpoint is
//! always a failure.

use std::time::Duration;

use rollgate_core::config::Chain;
use rollgate_core::redact::redact_url;
use serde_json::{Value, json};

use crate::errors::ProbeError;
use crate::http::{HttpClient, parse_json, require_success};
use crate::outcome::{Outcome, show_value};

/// How long, and how often, the head is re-sampled to see it advance.
#[derive(Debug, Clone, Copy)]
pub struct AdvanceWindow {
    pub window: Duration,
    pub interval: Duration,
}

impl Default for AdvanceWindow {
    fn default() -> Self {
        AdvanceWindow {
            window: Duration::from_secs(3),
            interval: Duration::from_millis(250),
        }
    }
}

/// One JSON-RPC call; the `result`, or an error naming the method.
pub async fn rpc(http: &HttpClient, url: &str, method: &str) -> Result<Value, ProbeError> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": []});
    let fetched = http.post_json(url, &body).await?;
    require_success(url, &fetched)?;
    let doc = parse_json(url, &fetched.body)?;
    let invalid = |message: String| ProbeError::Invalid {
        endpoint: redact_url(url),
        message,
    };
    if let Some(err) = doc.get("error").filter(|e| !e.is_null()) {
        return Err(invalid(format!(
            "{method} returned error {}",
            show_value(err, 120)
        )));
    }
    match doc.get("result") {
        Some(r) => Ok(r.clone()),
        None => Err(invalid(format!(
            "{method} answer has no `result` ({})",
            show_value(&doc, 80)
        ))),
    }
}

/// A JSON-RPC quantity (`"0x1a"`) as a number.
pub fn quantity(v: &Value) -> Option<u64> {
    let s = v.as_str()?;
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

async fn rpc_quantity(http: &HttpClient, url: &str, method: &str) -> Result<u64, ProbeError> {
    let v = rpc(http, url, method).await?;
    quantity(&v).ok_or_else(|| ProbeError::Invalid {
        endpoint: redact_url(url),
        message: format!(
            "{method} returned {}, expected a hex quantity like \"0x1a\"",
            show_value(&v, 60)
        ),
    })
}

/// Probe the chain endpoint.
pub async fn probe_chain(http: &HttpClient, chain: &Chain, advance: AdvanceWindow) -> Outcome {
    let url = &chain.probe_url;
    let endpoint = redact_url(url);
    let chain_id = match rpc_quantity(http, url, "eth_chainId").await {
        Ok(id) => id,
        Err(e) => return e.into(),
    };
    if let Some(want) = chain.chain_id
        && want != chain_id
    {
        return Outcome::fail(
            format!("{endpoint}: chain id is {chain_id}, expected {want}"),
            json!({"chain_id": chain_id}),
        );
    }
    let first = match rpc_quantity(http, url, "eth_blockNumber").await {
        Ok(n) => n,
        Err(e) => return e.into(),
    };
    let start = tokio::time::Instant::now();
    let mut last = first;
    while last <= first && start.elapsed() < advance.window {
        tokio::time::sleep(advance.interval).await;
        last = match rpc_quantity(http, url, "eth_blockNumber").await {
            Ok(n) => n,
            Err(e) => return e.into(),
        };
    }
    let observed = json!({"chain_id": chain_id, "head_first": first, "head_last": last,
                          "sampled_ms": start.elapsed().as_millis() as u64});
    if last < first {
        Outcome::fail(
            format!("{endpoint}: head went backwards from {first} to {last} (chain reset?)"),
            observed,
        )
    } else if last == first {
        Outcome::warn(
            format!(
                "{endpoint}: chain {chain_id}, head stayed at {first} for {} (an automining chain only advances with traffic)",
                crate::errors::humanize(advance.window)
            ),
            observed,
        )
    } else {
        Outcome::pass(
            format!("{endpoint}: chain {chain_id}, head {first} → {last}"),
            observed,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity(&json!("0x539")), Some(1337));
        assert_eq!(quantity(&json!("0x0")), Some(0));
        assert_eq!(quantity(&json!("539")), None);
        assert_eq!(quantity(&json!("0x")), None);
        assert_eq!(quantity(&json!(1337)), None);
        assert_eq!(quantity(&json!("0xzz")), None);
        assert_eq!(quantity(&json!("0x1ffffffffffffffff")), None);
    }
}

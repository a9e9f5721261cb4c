//! The mark-price probe: for every configured symbol a price is present, positive (a JSON
//! number or a decimal string) and fresh: its timestamp (epoch seconds, epoch milliseconds, or
//! RFC 3339) is within `max_age` of now. The path and shape are not published upstream, so the
//! pointers are templates from the configuration (`/{symbol}/price`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rollgate_core::config::MarkPriceProbe;
use rollgate_core::redact::redact_url;
use rollgate_core::text::shorten;
use serde_json::{Map, Value, json};

use crate::errors::ProbeError;
use crate::http::HttpClient;
use crate::outcome::{Outcome, show_value};

/// A timestamp ahead of our clock by more than this is a fault, not skew.
pub const MAX_FUTURE_SKEW: Duration = Duration::from_secs(5);

/// Escape a symbol for use inside a JSON pointer (RFC 6901).
fn escape(symbol: &str) -> String {
    symbol.replace('~', "~0").replace('/', "~1")
}

/// A positive price from a number or a decimal string.
pub fn parse_price(v: &Value) -> Result<f64, String> {
    let p = match v {
        Value::Number(n) => n.as_f64().ok_or("not a finite number")?,
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("\"{}\" is not a decimal number", shorten(s, 41)))?,
        other => return Err(format!("{} is not a number", show_value(other, 40))),
    };
    if !p.is_finite() {
        return Err(format!("{p} is not finite"));
    }
    if p <= 0.0 {
        return Err(format!("{p} is not positive"));
    }
    Ok(p)
}

/// A timestamp in epoch milliseconds. Numbers below 10^11 are seconds (10^11 seconds is the
/// year 5138; 10^11 milliseconds is 1973), above are milliseconds.
pub fn parse_timestamp_ms(v: &Value) -> Result<i128, String> {
    let from_number = |n: f64| -> Result<i128, String> {
        if !n.is_finite() || n < 0.0 {
            return Err(format!("{n} is not a valid epoch time"));
        }
        Ok(if n < 1e11 {
            (n * 1000.0) as i128
        } else {
            n as i128
        })
    };
    match v {
        Value::Number(n) => from_number(n.as_f64().ok_or("not a finite number")?),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse::<f64>() {
                return from_number(n);
            }
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp_nanos() / 1_000_000)
                .map_err(|_| {
                    format!(
                        "\"{}\" is neither epoch seconds, milliseconds nor RFC 3339",
                        shorten(s, 41)
                    )
                })
        }
        other => Err(format!("{} is not a timestamp", show_value(other, 40))),
    }
}

/// Judge a mark-price document at `now_ms` (epoch milliseconds).
pub fn judge(doc: &Value, probe: &MarkPriceProbe, now_ms: i128) -> (Vec<String>, Value) {
    let mut problems = Vec::new();
    let mut seen = Map::new();
    let max_age_ms = probe.max_age.as_millis() as i128;
    for sym in &probe.symbols {
        let pp = probe.price_pointer.replace("{symbol}", &escape(sym));
        let tp = probe.timestamp_pointer.replace("{symbol}", &escape(sym));
        let price = match doc.pointer(&pp) {
            None | Some(Value::Null) => {
                problems.push(format!("{sym}: no mark price at {pp}"));
                None
            }
            Some(v) => match parse_price(v) {
                Ok(p) => Some(p),
                Err(why) => {
                    problems.push(format!("{sym}: price at {pp}: {why}"));
                    None
                }
            },
        };
        let age_ms = match doc.pointer(&tp) {
            None | Some(Value::Null) => {
                problems.push(format!("{sym}: no timestamp at {tp}"));
                None
            }
            Some(v) => match parse_timestamp_ms(v) {
                Err(why) => {
                    problems.push(format!("{sym}: timestamp at {tp}: {why}"));
                    None
                }
                Ok(ts) => {
                    let age = now_ms - ts;
                    if age < -(MAX_FUTURE_SKEW.as_millis() as i128) {
                        problems.push(format!(
                            "{sym}: timestamp is {:.1}s in the future (clock skew?)",
                            -age as f64 / 1000.0
                        ));
                    } else if age > max_age_ms {
                        problems.push(format!(
                            "{sym}: stale: {:.1}s old, max_age {}s",
                            age as f64 / 1000.0,
                            probe.max_age.as_secs_f64()
                        ));
                    }
                    Some(age)
                }
            },
        };
        seen.insert(sym.clone(), json!({"price": price, "age_ms": age_ms}));
    }
    (problems, Value::Object(seen))
}

/// Fetch and judge the mark prices; `Err` when the endpoint could not be read as JSON.
pub async fn mark_price(http: &HttpClient, probe: &MarkPriceProbe) -> Result<Outcome, ProbeError> {
    let endpoint = redact_url(&probe.url);
    let doc = http.get_json(&probe.url).await?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i128)
        .unwrap_or(0);
    let (problems, observed) = judge(&doc, probe, now_ms);
    Ok(if problems.is_empty() {
        let list: Vec<String> = probe
            .symbols
            .iter()
            .map(|s| {
                format!(
                    "{s} {}",
                    observed[s]["price"]
                        .as_f64()
                        .map(|p| p.to_string())
                        .unwrap_or_default()
                )
            })
            .collect();
        Outcome::pass(format!("{endpoint}: {}", list.join(", ")), observed)
    } else {
        Outcome::fail(format!("{endpoint}: {}", problems.join("; ")), observed)
    })
}

/// The check form of [`mark_price`].
pub async fn probe_mark_price(http: &HttpClient, probe: &MarkPriceProbe) -> Outcome {
    mark_price(http, probe).await.unwrap_or_else(Outcome::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> MarkPriceProbe {
        MarkPriceProbe {
            url: "http://x/v2/mark-price".into(),
            symbols: vec!["ETHP".into(), "BTCP".into()],
            price_pointer: "/{symbol}/price".into(),
            timestamp_pointer: "/{symbol}/timestamp".into(),
            max_age: Duration::from_secs(30),
        }
    }

    const NOW: i128 = 1_764_300_000_000;

    #[test]
    fn fresh_prices_in_every_form() {
        let doc = json!({
            "ETHP": {"price": "3000.50", "timestamp": NOW - 1000},
            "BTCP": {"price": 60000, "timestamp": (NOW / 1000 - 2) as i64},
        });
        let (problems, obs) = judge(&doc, &probe(), NOW);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(obs["ETHP"]["price"], json!(3000.5));
        let doc = json!({
            "ETHP": {"price": 1.5, "timestamp": "2025-11-28T03:19:58Z"},
            "BTCP": {"price": "2", "timestamp": "2025-11-28T04:19:58+01:00"},
        });
        let now = time::OffsetDateTime::parse(
            "2025-11-28T03:20:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
        .unix_timestamp_nanos()
            / 1_000_000;
        let (problems, _) = judge(&doc, &probe(), now);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn bad_prices() {
        let doc = json!({
            "ETHP": {"price": "-1", "timestamp": NOW - 60_000},
            "BTCP": {"price": true, "timestamp": NOW + 60_000},
        });
        let (problems, _) = judge(&doc, &probe(), NOW);
        let text = problems.join("; ");
        assert!(
            text.contains("ETHP: price at /ETHP/price: -1 is not positive"),
            "{text}"
        );
        assert!(text.contains("ETHP: stale: 60.0s old"), "{text}");
        assert!(
            text.contains("BTCP: price at /BTCP/price: true is not a number"),
            "{text}"
        );
        assert!(text.contains("in the future"), "{text}");
        let (problems, _) = judge(&json!({}), &probe(), NOW);
        assert_eq!(problems[0], "ETHP: no mark price at /ETHP/price");
        assert!(parse_price(&json!("NaN")).is_err());
        assert!(parse_timestamp_ms(&json!("yesterday")).is_err());
    }
}

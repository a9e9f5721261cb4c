//! The Redis probe: PING, ROLE, used vs max memory (`INFO memory`) and persistence errors
//! (`INFO persistence`: a failed RDB save or AOF write makes Redis refuse writes under the
//! default `stop-writes-on-bgsave-error`).

use std::collections::BTreeMap;
use std::time::Duration;

use rollgate_core::config::Redis;
use rollgate_core::redact::redact_url;
use rollgate_core::units::format_size;
use serde_json::json;

use crate::errors::ProbeError;
use crate::outcome::Outcome;

/// Memory use at or above this fraction of `maxmemory` is a warning.
pub const MEMORY_WARN: f64 = 0.80;
/// At or above this fraction it is a failure: evictions or OOM errors are imminent.
pub const MEMORY_FAIL: f64 = 0.95;

/// What the probe read from the server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedisObservation {
    pub role: Option<String>,
    pub memory: BTreeMap<String, String>,
    pub persistence: BTreeMap<String, String>,
}

/// Probe the server; bounded by `timeout` as a whole.
pub async fn probe_redis(redis: &Redis, timeout: Duration) -> Outcome {
    let endpoint = redact_url(&redis.url);
    match tokio::time::timeout(timeout, observe(&redis.url, timeout)).await {
        Ok(Ok(obs)) => judge(&endpoint, &obs),
        Ok(Err(e)) => e.into(),
        Err(_) => ProbeError::Timeout {
            endpoint,
            after: timeout,
        }
        .into(),
    }
}

async fn observe(url: &str, timeout: Duration) -> Result<RedisObservation, ProbeError> {
    let endpoint = redact_url(url);
    let err = |what: &str| {
        let endpoint = endpoint.clone();
        let what = what.to_string();
        move |source| ProbeError::Redis {
            endpoint,
            what,
            source,
        }
    };
    let client = redis::Client::open(url).map_err(err("invalid connection URL"))?;
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut con = client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .map_err(err("cannot connect"))?;
    let pong: String = redis::cmd("PING")
        .query_async(&mut con)
        .await
        .map_err(err("PING failed"))?;
    if pong != "PONG" {
        return Err(ProbeError::Invalid {
            endpoint,
            message: format!("PING answered {pong:?}, expected PONG"),
        });
    }
    // ROLE may be renamed or forbidden by ACLs; the role is then read from INFO replication.
    let role = match redis::cmd("ROLE")
        .query_async::<redis::Value>(&mut con)
        .await
    {
        Ok(redis::Value::Array(items)) => items.first().and_then(value_text),
        _ => None,
    };
    let memory: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut con)
        .await
        .map_err(err("INFO memory failed"))?;
    let persistence: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(&mut con)
        .await
        .map_err(err("INFO persistence failed"))?;
    let role = match role {
        Some(r) => Some(r),
        None => redis::cmd("INFO")
            .arg("replication")
            .query_async::<String>(&mut con)
            .await
            .ok()
            .and_then(|s| parse_info(&s).remove("role")),
    };
    Ok(RedisObservation {
        role,
        memory: parse_info(&memory),
        persistence: parse_info(&persistence),
    })
}

fn value_text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// `INFO` text (`key:value` lines, `#` section headers) as a map.
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Judge an observation.
pub fn judge(endpoint: &str, obs: &RedisObservation) -> Outcome {
    let num = |k: &str| obs.memory.get(k).and_then(|v| v.parse::<u64>().ok());
    let used = num("used_memory");
    let max = num("maxmemory").filter(|m| *m > 0);
    let observed = json!({
        "role": obs.role,
        "used_memory": used,
        "maxmemory": max,
        "rdb_last_bgsave_status": obs.persistence.get("rdb_last_bgsave_status"),
        "aof_enabled": obs.persistence.get("aof_enabled"),
        "aof_last_write_status": obs.persistence.get("aof_last_write_status"),
    });
    let mut fails = Vec::new();
    let mut warns = Vec::new();
    for key in [
        "rdb_last_bgsave_status",
        "aof_last_bgrewrite_status",
        "aof_last_write_status",
    ] {
        if obs.persistence.get(key).is_some_and(|v| v != "ok") {
            fails.push(format!("persistence error: {key}:{}", obs.persistence[key]));
        }
    }
    let memory = match (used, max) {
        (Some(u), Some(m)) => {
            let ratio = u as f64 / m as f64;
            let text = format!(
                "{} of maxmemory {} ({:.0}%)",
                format_size(u),
                format_size(m),
                ratio * 100.0
            );
            if ratio >= MEMORY_FAIL {
                fails.push(format!("memory {text}"));
            } else if ratio >= MEMORY_WARN {
                warns.push(format!("memory {text}"));
            }
            text
        }
        (Some(u), None) => format!("{} used, no maxmemory", format_size(u)),
        _ => {
            warns.push("INFO memory has no used_memory".into());
            "memory unknown".into()
        }
    };
    let role = obs.role.clone().unwrap_or_else(|| "unknown role".into());
    if matches!(role.as_str(), "slave" | "replica") {
        warns.push("a replica: writes go to its primary".into());
    }
    let summary = format!("{endpoint}: PONG, {role}, {memory}");
    if !fails.is_empty() {
        Outcome::fail(format!("{endpoint}: {}", fails.join("; ")), observed)
    } else if !warns.is_empty() {
        Outcome::warn(format!("{summary}; {}", warns.join("; ")), observed)
    } else {
        Outcome::pass(summary, observed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollgate_core::vocab::CheckStatus;

    fn obs(mem: &str, pers: &str) -> RedisObservation {
        RedisObservation {
            role: Some("master".into()),
            memory: parse_info(mem),
            persistence: parse_info(pers),
        }
    }

    #[test]
    fn info_parsing_and_judgement() {
        let o = judge(
            "r",
            &obs(
                "# Memory\r\nused_memory:1000\r\nmaxmemory:0\r\n",
                "rdb_last_bgsave_status:ok\r\n",
            ),
        );
        assert_eq!(o.status, CheckStatus::Pass, "{}", o.detail);
        let o = judge(
            "r",
            &obs(
                "used_memory:990\nmaxmemory:1000\n",
                "rdb_last_bgsave_status:ok\n",
            ),
        );
        assert_eq!(o.status, CheckStatus::Fail);
        assert!(o.detail.contains("maxmemory"), "{}", o.detail);
        let o = judge("r", &obs("used_memory:850\nmaxmemory:1000\n", ""));
        assert_eq!(o.status, CheckStatus::Warn);
        let o = judge(
            "r",
            &obs(
                "used_memory:1\nmaxmemory:0\n",
                "rdb_last_bgsave_status:err\n",
            ),
        );
        assert_eq!(o.status, CheckStatus::Fail);
        assert!(
            o.detail.contains("rdb_last_bgsave_status:err"),
            "{}",
            o.detail
        );
    }
}

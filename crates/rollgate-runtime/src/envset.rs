//! `env` layers: environment overrides of Compose services, `LAYER=KEY=VALUE,KEY2=VALUE2`.
//!
//! The set is the layer's whole override: a rollout replaces the previous set (keys it does not
//! name are no longer overridden; `-` is the empty set). Sets are stored like configuration
//! manifests ([`crate::store`]): the layer's value is the stored set's address (`sha256:…`), so
//! no value, secret or not, appears in the journal, the output or the report, and a rollback
//! writes back the exact set it recorded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::errors::DriverError;
use crate::store::Store;

/// Version of the stored set document (`format`).
pub const ENV_FORMAT: u32 = 1;

/// One stored set of overrides.
///
/// ```json
/// {"format": 1, "layer": "operator-env", "env": {"LOG_LEVEL": "debug", "API_TOKEN": "…"}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvSet {
    pub format: u32,
    pub layer: String,
    pub env: BTreeMap<String, String>,
}

/// Parse `KEY=VALUE,KEY2=VALUE2` (or `-`, no overrides). Names are `[A-Za-z_][A-Za-z0-9_]*`;
/// a value runs to the next comma (it cannot hold one). The error names the offending item.
pub fn parse(value: &str) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    let value = value.trim();
    if value == "-" {
        return Ok(env);
    }
    for item in value.split(',') {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("`{item}` is not KEY=VALUE"));
        };
        let k = k.trim();
        let valid = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("`{k}` is not a valid environment variable name"));
        }
        if env.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("`{k}` is given twice"));
        }
    }
    Ok(env)
}

/// The set as `KEY=VALUE` lines, sorted: what `plan` diffs (masked by the caller).
pub fn lines(env: &BTreeMap<String, String>) -> String {
    env.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// Store a set; its address.
pub fn put(
    store: &Store,
    layer: &str,
    env: &BTreeMap<String, String>,
) -> Result<String, DriverError> {
    let set = EnvSet {
        format: ENV_FORMAT,
        layer: layer.to_string(),
        env: env.clone(),
    };
    store.put_json(&set)
}

/// The set stored at an address (`sha256:<hex>`).
pub fn get(store: &Store, address: &str) -> Result<EnvSet, DriverError> {
    store.get_json(address, "a set of environment overrides")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_with_the_item_named() {
        let env = parse("LOG_LEVEL=debug,API_TOKEN=a=b,EMPTY=").unwrap();
        assert_eq!(env["LOG_LEVEL"], "debug");
        assert_eq!(env["API_TOKEN"], "a=b");
        assert_eq!(env["EMPTY"], "");
        assert!(parse("-").unwrap().is_empty());
        assert!(parse("A=1,B").unwrap_err().contains("`B`"));
        assert!(parse("1A=1").unwrap_err().contains("`1A`"));
        assert!(parse("A=1,A=2").unwrap_err().contains("twice"));
        assert_eq!(lines(&env), "API_TOKEN=a=b\nEMPTY=\nLOG_LEVEL=debug\n");
    }

    #[test]
    fn sets_round_trip_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let env = parse("A=1").unwrap();
        let a = put(&store, "operator-env", &env).unwrap();
        assert_eq!(put(&store, "operator-env", &env).unwrap(), a);
        assert_eq!(get(&store, &a).unwrap().env, env);
    }
}

//! Environment checks of the node itself (group `baseline`): the runtime mode is declared and
//! canonical, the chain and deployment-service URLs belong to that mode, `APP_CONFIG` exists.
//!
//! The configuration loader already refuses URLs of two modes; these checks report it again
//! (with the URLs) so the baseline records it, and also judge the URLs the node's runtime env
//! file really sets, which can drift from rollgate's own configuration.

use std::collections::BTreeMap;
use std::path::Path;

use rollgate_core::config::Config;
use rollgate_core::redact::redact_url;
use rollgate_core::vocab::Mode;
use serde_json::json;

use crate::outcome::Outcome;

/// The runtime mode is declared and canonical; `host` is diagnostic only.
pub fn check_mode(config: &Config) -> Outcome {
    let mode = config.node.mode;
    let observed = json!({"mode": mode.as_str()});
    match mode {
        Mode::Host => Outcome::fail(
            "node.mode is host: diagnostic only, rollouts refuse it",
            observed,
        ),
        _ => Outcome::pass(format!("{mode} (canonical)"), observed),
    }
}

/// The chain and deployment-service URLs — configured, and set in the runtime env file when it
/// sets them — all belong to the declared mode.
pub fn check_dependency_urls(
    config: &Config,
    runtime_env: Option<&BTreeMap<String, String>>,
) -> Outcome {
    let mode = config.node.mode;
    let mut urls: Vec<(String, String)> = Vec::new();
    if let Some(c) = &config.dependencies.chain {
        urls.push(("chain".into(), c.url.clone()));
    }
    if let Some(d) = &config.dependencies.deployment_service {
        urls.push(("deployment-service".into(), d.url.clone()));
    }
    if let Some(env) = runtime_env {
        for key in ["ETH_RPC_URL", "DEPLOYMENT_SERVICE_URL"] {
            if let Some(v) = env.get(key).filter(|v| !v.is_empty()) {
                urls.push((format!("runtime env {key}"), v.clone()));
            }
        }
    }
    let observed = json!(
        urls.iter()
            .map(|(k, u)| (k.clone(), redact_url(u)))
            .collect::<BTreeMap<_, _>>()
    );
    if urls.is_empty() {
        return Outcome::skip("no chain or deployment-service URL configured");
    }
    let modes: Vec<(String, String, Mode)> = urls
        .iter()
        .map(|(k, u)| (k.clone(), redact_url(u), Mode::of_url(u)))
        .collect();
    let mismatched: Vec<String> = if mode == Mode::Host {
        // Host mode accepts any URLs, but still only of one mode.
        let first = modes[0].2;
        modes
            .iter()
            .filter(|(_, _, m)| *m != first)
            .map(|(k, u, m)| format!("{k} {u} is {m}, {} is {first}", modes[0].0))
            .collect()
    } else {
        modes
            .iter()
            .filter(|(_, _, m)| *m != mode)
            .map(|(k, u, m)| format!("{k} {u} is {m}"))
            .collect()
    };
    let list: Vec<String> = modes.iter().map(|(k, u, _)| format!("{k} {u}")).collect();
    if mismatched.is_empty() {
        Outcome::pass(
            format!(
                "all {}: {}",
                if mode == Mode::Host { modes[0].2 } else { mode },
                list.join(", ")
            ),
            observed,
        )
    } else {
        Outcome::fail(
            format!(
                "mode mismatch: node.mode is {mode} but {}",
                mismatched.join("; ")
            ),
            observed,
        )
    }
}

/// `APP_CONFIG` exists and is a directory.
pub fn check_app_config(path: &Path) -> Outcome {
    let observed = json!({"path": path.display().to_string()});
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Outcome::pass(format!("{} present", path.display()), observed),
        Ok(_) => Outcome::fail(format!("{} is not a directory", path.display()), observed),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Outcome::fail(format!("{} does not exist", path.display()), observed)
        }
        Err(e) => Outcome::fail(format!("{}: {e}", path.display()), observed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollgate_core::config::{MapEnv, load_str};
    use rollgate_core::vocab::CheckStatus;

    fn config(mode: &str, chain: &str, deploy: &str) -> Config {
        let text = format!(
            r#"
[node]
name = "node0"
mode = "{mode}"
app_config = "/opt/dexlabs"
deployment_metadata = "ethereum/addresses.json"
deployment_metadata_owner = "deployment-service"
state_dir = "/tmp/rollgate-test"

[dependencies]
chain = {{ url = "{chain}" }}
deployment_service = {{ url = "{deploy}" }}

[runtime]
driver = "command"

[runtime.command]
current = "true"
apply = "true"
restart = "true"

[components.operator]

[layers.operator-image]
kind = "image"
components = ["operator"]
"#
        );
        load_str(Path::new("t.toml"), &text, &MapEnv::default()).unwrap()
    }

    #[test]
    fn mode_is_canonical_and_host_is_diagnostic_only() {
        let c = config(
            "localnet.compose",
            "http://ethereum:8545",
            "http://deployment-service:4040",
        );
        assert_eq!(check_mode(&c).status, CheckStatus::Pass);
        let h = config(
            "host",
            "https://rpc.example.org",
            "https://deploy.example.org",
        );
        let o = check_mode(&h);
        assert_eq!(o.status, CheckStatus::Fail);
        assert!(o.detail.contains("diagnostic only"));
    }

    #[test]
    fn urls_of_one_mode_including_the_runtime_env() {
        let c = config(
            "localnet.loopback",
            "http://user:pw@127.0.0.1:8545",
            "http://127.0.0.1:4040",
        );
        let o = check_dependency_urls(&c, None);
        assert_eq!(o.status, CheckStatus::Pass, "{}", o.detail);
        assert!(
            o.detail.contains("chain http://user:****@127.0.0.1:8545"),
            "{}",
            o.detail
        );
        let env: BTreeMap<String, String> = [(
            "DEPLOYMENT_SERVICE_URL".to_string(),
            "http://deployment-service:4040".to_string(),
        )]
        .into();
        let o = check_dependency_urls(&c, Some(&env));
        assert_eq!(o.status, CheckStatus::Fail);
        assert!(
            o.detail.contains("runtime env DEPLOYMENT_SERVICE_URL http://deployment-service:4040 is localnet.compose"),
            "{}",
            o.detail
        );
        // Host mode accepts any URLs, but of one mode only.
        let mut h = config(
            "host",
            "https://rpc.example.org",
            "https://deploy.example.org",
        );
        assert_eq!(check_dependency_urls(&h, None).status, CheckStatus::Pass);
        h.dependencies.chain.as_mut().unwrap().url = "http://127.0.0.1:8545".into();
        assert_eq!(check_dependency_urls(&h, None).status, CheckStatus::Fail);
    }

    #[test]
    fn app_config_must_be_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_app_config(dir.path()).status, CheckStatus::Pass);
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(
            check_app_config(&file)
                .detail
                .ends_with("is not a directory")
        );
        assert!(
            check_app_config(&dir.path().join("nope"))
                .detail
                .ends_with("does not exist")
        );
    }
}

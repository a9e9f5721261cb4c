//! Quiet restarts: with `[alertmanager] silence = true`, a rollout silences the node's alerts
//! (the configured matchers) in the operator's Alertmanager just before its restart, until the
//! end of the verify window, and expires the silence once verify is decided (the bake is never
//! silenced) or the rollout ends, whichever way. Both are journal steps (`silence`,
//! `unsilence`).
//!
//! A silence is found by its comment, which names the rollout
//! ([`rollgate_probe::alertmanager::comment_for`]): `rollgate resume` after a crash expires
//! every silence of the interrupted rollout, even one created just before the process died and
//! never journaled. A silence that cannot be created or expired is recorded and logged, never a
//! reason to roll back: the restart then pages, as it did before rollgate.

use std::time::{Duration, SystemTime};

use rollgate_core::config::{Config, Runtime};
use rollgate_probe::alertmanager::{AlertmanagerClient, comment_for};
use serde_json::{Value, json};

/// What a restart may take before the gates' clock starts (the command driver's timeout; a
/// Compose recreate, image pull included, is given two minutes).
fn restart_budget(config: &Config) -> Duration {
    match &config.runtime {
        Runtime::Command(c) => c.timeout,
        _ => Duration::from_secs(120),
    }
}

/// Whether rollouts silence the restart.
pub fn enabled(config: &Config) -> bool {
    config.alertmanager.as_ref().is_some_and(|a| a.silence)
}

fn client(config: &Config) -> Result<AlertmanagerClient, String> {
    let am = config
        .alertmanager
        .as_ref()
        .ok_or_else(|| "no [alertmanager] configured".to_string())?;
    AlertmanagerClient::new(am, &config.probe_limits).map_err(|e| e.detail())
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The `silence` step's intent: where, what, until when.
pub fn intent(config: &Config, verify_window: Duration) -> (Value, String) {
    let ends = SystemTime::now() + restart_budget(config) + verify_window;
    let ends_at = rfc3339(ends);
    let am = config.alertmanager.as_ref();
    (
        json!({
            "url": am.map(|a| rollgate_core::redact::redact_url(&a.url)),
            "matchers": am.map(|a| a.matchers.iter().map(|m| m.to_string()).collect::<Vec<_>>()),
            "ends_at": ends_at,
        }),
        ends_at,
    )
}

/// Create the rollout's silence until `ends_at`; its id.
pub async fn create(config: &Config, rollout_id: &str, ends_at: &str) -> Result<String, String> {
    let client = client(config)?;
    let matchers = config
        .alertmanager
        .as_ref()
        .map(|a| a.matchers.clone())
        .unwrap_or_default();
    client
        .create_silence(
            &matchers,
            &rfc3339(SystemTime::now()),
            ends_at,
            &comment_for(rollout_id),
        )
        .await
        .map_err(|e| e.detail())
}

/// Expire every live silence of the rollout; the ids expired.
pub async fn expire(config: &Config, rollout_id: &str) -> Result<Vec<String>, String> {
    client(config)?
        .expire_for(&comment_for(rollout_id))
        .await
        .map_err(|e| e.detail())
}

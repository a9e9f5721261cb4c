//! `rollgate status`: every layer's current value, the lock, the unfinished rollout and the step
//! it stopped at, the last known-good baseline. Reads only; changes nothing.
//!
//! JSON: [`rollgate_journal::report::StatusReport`] (documented there with an example).

use std::collections::BTreeMap;
use std::sync::Arc;

use clap::Args;
use rollgate_core::ExitCode;
use rollgate_journal::report::{LayerStatus, StatusReport};
use rollgate_journal::{Journal, Lock};

use crate::app::Ctx;
use crate::errors::{CliError, CmdResult};

#[derive(Debug, Args)]
pub struct StatusArgs {}

pub async fn run(ctx: &Ctx, _args: &StatusArgs) -> CmdResult {
    let config = Arc::new(ctx.config()?);
    let driver = rollgate_runtime::driver_for(&config)
        .map_err(|e| CliError::Usage(rollgate_probe::errors::chain(&e)))?;

    // Read every layer concurrently; an unreadable layer is shown with its error, not fatal.
    let mut reads = tokio::task::JoinSet::new();
    for layer in config.layers.values().cloned() {
        let driver = driver.clone();
        reads.spawn(async move {
            let status = match driver.current(&layer).await {
                Ok(v) => LayerStatus::Value(v),
                Err(e) => LayerStatus::Error {
                    error: rollgate_probe::errors::chain(&e),
                },
            };
            (layer.name, status)
        });
    }
    let mut layers = BTreeMap::new();
    while let Some(done) = reads.join_next().await {
        let (name, status) =
            done.map_err(|e| CliError::Internal(anyhow::anyhow!("layer read task failed: {e}")))?;
        layers.insert(name, status);
    }

    let state_dir = config.node.state_dir.clone();
    let retention = config.rollout.snapshot_retention;
    let (state, lock, snapshots) = tokio::task::spawn_blocking(move || {
        let journal = Journal::open(&state_dir).map_err(|e| {
            CliError::Usage(format!(
                "failed to open the journal: {}",
                rollgate_probe::errors::chain(&e)
            ))
        })?;
        let state = journal
            .state()
            .map_err(|e| CliError::Internal(anyhow::anyhow!(rollgate_probe::errors::chain(&e))))?;
        let lock = Lock::status(&state_dir)
            .map_err(|e| CliError::Internal(anyhow::anyhow!(rollgate_probe::errors::chain(&e))))?;
        let snapshots = journal
            .list_snapshots(retention)
            .map_err(|e| CliError::Internal(anyhow::anyhow!(rollgate_probe::errors::chain(&e))))?
            .into_iter()
            .filter(|s| s.state != "dropped")
            .collect::<Vec<_>>();
        Ok::<_, CliError>((state, lock, snapshots))
    })
    .await
    .map_err(|e| CliError::Internal(anyhow::anyhow!("journal task failed: {e}")))??;

    let mut report = StatusReport::new(&config.node.name, layers, state, lock);
    report.frozen = rollgate_runner::killswitch::is_frozen(&config.node.state_dir)
        .and_then(|f| serde_json::to_value(f).ok());
    report.snapshots = snapshots;
    if ctx.out.is_json() {
        ctx.out.json(&report)?;
    } else {
        crate::out!("{}", report.to_human());
    }
    Ok(ExitCode::Success)
}

//! What several subcommands share: opening the runner, parsing `LAYER=VALUE`, mapping runner
//! errors to exit codes.

use std::sync::Arc;

use rollgate_runner::{JournalHandle, Runner, RunnerError};

use crate::app::Ctx;
use crate::errors::CliError;
use crate::render::TerminalProgress;

/// The runner for the configured node: driver, journal and progress display.
pub fn open_runner(ctx: &Ctx) -> Result<Runner, CliError> {
    let config = Arc::new(ctx.config()?);
    let driver = rollgate_runtime::driver_for(&config)
        .map_err(|e| CliError::Usage(rollgate_probe::errors::chain(&e)))?;
    let journal = rollgate_journal::Journal::open(&config.node.state_dir).map_err(|e| {
        CliError::Usage(format!(
            "failed to open the journal: {}",
            rollgate_probe::errors::chain(&e)
        ))
    })?;
    let progress: Arc<dyn rollgate_runner::Progress> = if ctx.out.interactive {
        Arc::new(TerminalProgress::new(ctx.out))
    } else {
        Arc::new(rollgate_runner::Silent)
    };
    let notifier = rollgate_runner::notify::Notifier::from_config(&config);
    Ok(Runner {
        notifier,
        config,
        driver,
        journal: JournalHandle::new(journal),
        progress,
    })
}

/// Exactly one `LAYER=VALUE`; two are refused (one layer per rollout).
pub fn parse_change(args: &[String]) -> Result<(String, String), CliError> {
    match args {
        [] => Err(CliError::Usage(
            "name the change as LAYER=VALUE (or give --plan FILE)".into(),
        )),
        [one] => {
            let (layer, value) = one
                .split_once('=')
                .ok_or_else(|| CliError::Usage(format!("`{one}` is not LAYER=VALUE")))?;
            if layer.is_empty() || value.trim().is_empty() {
                return Err(CliError::Usage(format!("`{one}` is not LAYER=VALUE")));
            }
            Ok((layer.to_string(), value.to_string()))
        }
        many => Err(CliError::Usage(format!(
            "{} changes requested ({}): a rollout changes exactly one layer; use --plan FILE for several, one per step",
            many.len(),
            many.join(", ")
        ))),
    }
}

/// How long the CLI waits, after a decision, for the webhook to be told (the rollout itself
/// never waits for it).
const NOTIFY_FLUSH: std::time::Duration = std::time::Duration::from_secs(15);

/// A rollout's, rollback's or resume's result, once its webhook notifications went out.
pub async fn notified<T>(runner: &Runner, result: Result<T, RunnerError>) -> Result<T, CliError> {
    runner.notifier.flush(NOTIFY_FLUSH).await;
    result.map_err(runner_error)
}

pub fn runner_error(e: RunnerError) -> CliError {
    match e {
        RunnerError::Usage(m) | RunnerError::NotFound(m) => CliError::Usage(m),
        RunnerError::Busy(m) => CliError::Busy(m),
        RunnerError::Ambiguous(m) => CliError::NotReady(m),
        other => CliError::Internal(anyhow::anyhow!(rollgate_probe::errors::chain(&other))),
    }
}

//! `rollgate history`: the journal's rollouts, newest first. Reads only.
//!
//! JSON: `{"rollouts": [{"rollout_id", "started_at", "layer", "from", "to", "outcome",
//! "finished_at", "baseline_id"}]}` ([`rollgate_journal::HistoryEntry`]); `outcome` is `null`
//! for an unfinished rollout.

use clap::Args;
use rollgate_core::ExitCode;
use rollgate_journal::History;
use rollgate_journal::report::history_human;

use crate::app::Ctx;
use crate::dispatch::common::runner_error;
use crate::errors::{CliError, CmdResult};

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Show at most this many rollouts
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

pub async fn run(ctx: &Ctx, args: &HistoryArgs) -> CmdResult {
    let limit = args.limit;
    let entries = open_journal(ctx)?
        .call(move |j| j.history(limit))
        .await
        .map_err(runner_error)?;
    let history = History::from(entries);
    if ctx.out.is_json() {
        ctx.out.json(&history)?;
    } else {
        crate::out!("{}", history_human(&history));
    }
    Ok(ExitCode::Success)
}

/// The configured node's journal, on the blocking pool.
pub(crate) fn open_journal(ctx: &Ctx) -> Result<rollgate_runner::JournalHandle, CliError> {
    let config = ctx.config()?;
    let j = rollgate_journal::Journal::open(&config.node.state_dir).map_err(|e| {
        CliError::Usage(format!(
            "failed to open the journal: {}",
            rollgate_probe::errors::chain(&e)
        ))
    })?;
    Ok(rollgate_runner::JournalHandle::new(j))
}

//! `rollgate freeze --reason TEXT`: the kill switch. While frozen no rollout starts, and a
//! running one stops at its next step boundary and rolls back. Rollback and resume still work.
//! `rollgate unfreeze` lifts it. JSON: `{"reason", "frozen_at", "by"}`.

use clap::Args;
use rollgate_core::ExitCode;
use rollgate_runner::killswitch;

use crate::app::Ctx;
use crate::errors::{CliError, CmdResult};

#[derive(Debug, Args)]
pub struct FreezeArgs {
    /// Why (shown by `status`, the status page, and in the refusal of any rollout)
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

pub async fn run(ctx: &Ctx, args: &FreezeArgs) -> CmdResult {
    let config = ctx.config()?;
    let dir = config.node.state_dir.clone();
    let was = killswitch::is_frozen(&dir);
    let reason = args.reason.clone();
    let info = tokio::task::spawn_blocking(move || killswitch::freeze(&dir, &reason))
        .await
        .map_err(|e| CliError::Internal(e.into()))?
        .map_err(|e| match e {
            killswitch::KillSwitchError::NoReason => {
                CliError::Usage("a freeze needs a non-empty --reason".into())
            }
            other => CliError::Usage(rollgate_probe::errors::chain(&other)),
        })?;
    if ctx.out.is_json() {
        ctx.out.json(&info)?;
    } else {
        if let Some(w) = was {
            crate::outln!("(replacing: {})", w.summary());
        }
        crate::outln!("node {} is frozen: {}", config.node.name, info.reason);
        crate::outln!(
            "no rollout starts and a running one rolls back at its next step; `rollgate unfreeze` lifts it"
        );
    }
    Ok(ExitCode::Success)
}

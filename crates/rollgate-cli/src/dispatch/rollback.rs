//! `rollgate rollback [--to BASELINE_ID]`: restore the baseline the latest rollout started from
//! (or the one named) and re-verify it. Exit 0 when the baseline re-verified, 5 when not.

use clap::Args;
use rollgate_core::ExitCode;
use rollgate_core::vocab::Outcome;

use crate::app::Ctx;
use crate::dispatch::common::{notified, open_runner};
use crate::errors::CmdResult;
use crate::render;

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The baseline to restore [default: the one the latest rollout started from]
    #[arg(long, value_name = "BASELINE_ID")]
    pub to: Option<String>,
}

pub async fn run(ctx: &Ctx, args: &RollbackArgs) -> CmdResult {
    let runner = open_runner(ctx)?;
    let report = notified(&runner, runner.rollback(args.to.as_deref()).await).await?;
    if ctx.out.is_json() {
        ctx.out.json(&report)?;
    } else {
        render::report(&ctx.out, &report);
    }
    Ok(match report.outcome {
        Outcome::RolledBack => ExitCode::Success,
        other => crate::dispatch::rollout::exit_code(other),
    })
}

//! `rollgate resume`: finish an interrupted rollout — re-verify and promote, or roll back.

use clap::Args;

use crate::app::Ctx;
use crate::dispatch::common::{notified, open_runner};
use crate::errors::CmdResult;
use crate::render;

#[derive(Debug, Args)]
pub struct ResumeArgs {}

pub async fn run(ctx: &Ctx, _args: &ResumeArgs) -> CmdResult {
    let runner = open_runner(ctx)?;
    let report = notified(&runner, runner.resume().await).await?;
    if ctx.out.is_json() {
        ctx.out.json(&report)?;
    } else {
        render::report(&ctx.out, &report);
    }
    Ok(report.exit_code())
}

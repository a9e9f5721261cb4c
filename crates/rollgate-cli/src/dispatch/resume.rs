//! `rollgate resume`: finish an interrupted rollout — re-verify and promote, or roll back — and
//! when it was one step of a plan file, go on with the plan's remaining steps (with the
//! rollout's `--bake`), exactly as `rollgate rollout --plan` would have.

use clap::Args;
use serde_json::Value;

use crate::app::Ctx;
use crate::dispatch::common::{notified, open_runner, runner_error};
use crate::errors::CmdResult;
use crate::render;

#[derive(Debug, Args)]
pub struct ResumeArgs {}

pub async fn run(ctx: &Ctx, _args: &ResumeArgs) -> CmdResult {
    let runner = open_runner(ctx)?;
    let interrupted = runner.interrupted_rollout().await.map_err(runner_error)?;
    let report = notified(&runner, runner.resume().await).await?;
    let plan = interrupted
        .as_ref()
        .and_then(|d| d.plan.clone())
        .filter(|p| p.get("file").is_some());
    let Some(plan) = plan else {
        if ctx.out.is_json() {
            ctx.out.json(&report)?;
        } else {
            render::report(&ctx.out, &report);
        }
        return Ok(report.exit_code());
    };
    // One step of a plan file: its remaining steps follow.
    let steps: Vec<(String, String)> = plan
        .get("steps")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    Some((
                        s["layer"].as_str()?.to_string(),
                        s["value"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let index = plan.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
    let bake = interrupted
        .as_ref()
        .and_then(rollgate_runner::rollout::recorded_bake);
    if !ctx.out.is_json() {
        crate::outln!(
            "step {}/{} (resumed):",
            index + 1,
            steps.len().max(index + 1)
        );
        render::report(&ctx.out, &report);
        crate::outln!();
    }
    let mut plan_json = plan;
    if let Some(o) = plan_json.as_object_mut() {
        o.remove("index");
    }
    crate::dispatch::rollout::run_steps(
        ctx,
        &runner,
        &steps,
        index + 1,
        bake,
        Some(plan_json),
        vec![report],
    )
    .await
}

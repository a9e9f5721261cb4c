//! `rollgate rollout LAYER=VALUE [--plan FILE] [--bake DURATION] [--yes]`: the full procedure.
//!
//! JSON output is the decision record of product.md (see `rollgate_runner::report`). With
//! `--plan`, one document `{"plan": FILE, "outcome": …, "rollouts": [record, …]}` where the
//! rollouts are the steps that ran, in order; the exit code is that of the last one.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use rollgate_core::ExitCode;
use rollgate_core::vocab::Outcome;
use rollgate_runner::{RolloutOptions, RolloutReport, Runner};
use serde_json::json;

use crate::app::Ctx;
use crate::dispatch::common::{notified, open_runner, parse_change};
use crate::errors::{CliError, CmdResult};
use crate::render;

#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// The change: one LAYER=VALUE (a layer from the configuration and its new value)
    #[arg(value_name = "LAYER=VALUE", num_args = 0..)]
    pub change: Vec<String>,
    /// A plan file: several layers, applied one per step with every gate between steps
    #[arg(long, value_name = "FILE", conflicts_with = "change")]
    pub plan: Option<PathBuf>,
    /// Bake period after the gates pass (overrides [rollout].bake; 0s skips it)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub bake: Option<Duration>,
    /// Do not ask for confirmation on a terminal
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    rollgate_core::units::parse_duration(s)
}

pub async fn run(ctx: &Ctx, args: &RolloutArgs) -> CmdResult {
    let steps = match &args.plan {
        Some(path) => crate::dispatch::plan_file::load(path)?,
        None => vec![parse_change(&args.change)?],
    };
    let runner = open_runner(ctx)?;
    for (layer, _) in &steps {
        if runner.config.layer(layer).is_none() {
            return Err(CliError::Usage(format!(
                "unknown layer `{layer}` (configured layers: {})",
                runner
                    .config
                    .layers
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    if !args.yes && ctx.out.interactive && std::io::stdin().is_terminal() {
        // An `env` layer's values may be secret: the prompt masks them like `plan`.
        let list: Vec<String> = steps
            .iter()
            .map(|(l, v)| format!("{l}={}", rollgate_core::confdiff::mask_env_list(v)))
            .collect();
        eprint!(
            "roll out {} on node {}? [y/N] ",
            list.join(", then "),
            runner.config.node.name
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(CliError::Usage("aborted: nothing was changed".into()));
        }
    }
    // A plan file's steps are journaled (resume continues from them): an `env` layer's values
    // go there as the address of their stored set, never in clear.
    let mut steps = steps;
    for (layer, value) in &mut steps {
        if let Some(l) = runner.config.layer(layer)
            && l.kind == rollgate_core::vocab::LayerKind::Env
        {
            *value = runner
                .stage_env(l, value)
                .map_err(crate::dispatch::common::runner_error)?;
        }
    }
    let plan_json = args.plan.as_ref().map(|p| json!({"file": p, "steps": steps.iter().map(|(l, v)| json!({"layer": l, "value": v})).collect::<Vec<_>>()}));
    run_steps(ctx, &runner, &steps, 0, args.bake, plan_json, Vec::new()).await
}

/// Run `steps[first..]` one rollout each, stopping at the first that is not promoted, and
/// print the result: one record, or with a plan `{"plan", "outcome", "rollouts"}`. `resume`
/// continues an interrupted plan through here with the rollouts it already has.
pub async fn run_steps(
    ctx: &Ctx,
    runner: &Runner,
    steps: &[(String, String)],
    first: usize,
    bake: Option<Duration>,
    plan_json: Option<serde_json::Value>,
    mut reports: Vec<RolloutReport>,
) -> CmdResult {
    let plan_file = plan_json.as_ref().and_then(|p| p.get("file").cloned());
    let stopped = reports
        .last()
        .is_some_and(|r| r.outcome != Outcome::Promoted);
    for (i, (layer, value)) in steps.iter().enumerate().skip(first) {
        if stopped {
            break;
        }
        let opts = RolloutOptions {
            bake,
            plan: plan_json.clone().map(|mut p| {
                p["index"] = json!(i);
                p
            }),
        };
        let report = notified(runner, runner.rollout(layer, value, &opts).await).await?;
        let stop = report.outcome != Outcome::Promoted;
        if !ctx.out.is_json() {
            if steps.len() > 1 {
                crate::outln!("step {}/{}: {layer}={value}", i + 1, steps.len());
            }
            render::report(&ctx.out, &report);
            crate::outln!();
        }
        reports.push(report);
        if stop {
            break;
        }
    }
    let last = reports.last().expect("at least one step ran");
    let code = last.exit_code();
    if ctx.out.is_json() {
        if plan_file.is_some() {
            ctx.out
                .json(&json!({"plan": plan_file, "outcome": last.outcome, "rollouts": reports}))?;
        } else {
            ctx.out.json(last)?;
        }
    } else if plan_file.is_some() && reports.len() < steps.len() {
        crate::outln!(
            "plan stopped at step {} of {}; earlier steps are kept and known-good",
            reports.len(),
            steps.len()
        );
    }
    Ok(code)
}

/// Exit code for a completed run (kept separate so `resume` shares it).
pub fn exit_code(outcome: Outcome) -> ExitCode {
    match outcome {
        Outcome::Promoted => ExitCode::Success,
        Outcome::RolledBack => ExitCode::RolledBack,
        Outcome::RollbackFailed => ExitCode::RollbackFailed,
        Outcome::Refused => ExitCode::NotReady,
    }
}

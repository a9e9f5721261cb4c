//! `rollgate watch [--for DURATION]`: step 6 on demand. Samples the bake's signals against the
//! last known-good baseline (alert contract, latency, errors, progression, storage, restarts,
//! memory) and changes nothing. Exit 0 when no gate failed, 7 on a finding.
//!
//! JSON (`--format json`) is [`rollgate_runner::watch::WatchReport`]:
//! `{"ok": bool, "baseline_id": "…", "duration_s": 60.0, "findings": [GateResult…], "gates": [GateResult…]}`.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use rollgate_core::ExitCode;

use crate::app::Ctx;
use crate::dispatch::common::{open_runner, runner_error};
use crate::errors::CmdResult;
use crate::output::Color;

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// How long to watch, e.g. 60s or 10m [default: enough for bake.min_samples samples, at least 30s]
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = rollgate_core::units::parse_duration(s)?;
    if d.is_zero() {
        return Err("the watch duration must be longer than 0s".into());
    }
    Ok(d)
}

pub async fn run(ctx: &Ctx, args: &WatchArgs) -> CmdResult {
    let runner = open_runner(ctx)?;
    let duration = args
        .duration
        .unwrap_or_else(|| rollgate_runner::watch::default_watch_duration(&runner.config));
    if !ctx.out.is_json() && ctx.out.interactive {
        crate::errln!(
            "watching for {} against the last known-good baseline…",
            rollgate_core::units::format_duration(duration)
        );
    }
    let report = rollgate_runner::watch::watch(
        Arc::clone(&runner.config),
        Arc::clone(&runner.driver),
        &runner.journal,
        duration,
        runner.progress.as_ref(),
    )
    .await
    .map_err(runner_error)?;
    if ctx.out.is_json() {
        ctx.out.json(&report)?;
    } else {
        let verdict = if report.ok {
            ctx.out.status("ok")
        } else {
            ctx.out.paint("finding", Color::Red)
        };
        crate::outln!(
            "{} against baseline {}: {verdict}",
            ctx.out.paint("watch", Color::Bold),
            report.baseline_id
        );
        for g in &report.gates {
            crate::outln!(
                "    {:<13} {:<40} {}",
                ctx.out.status(g.verdict.as_str()),
                g.name,
                g.detail
            );
        }
        if !report.ok {
            crate::outln!(
                "\n  {} finding(s): {}",
                report.findings.len(),
                report
                    .findings
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(if report.ok {
        ExitCode::Success
    } else {
        ExitCode::WatchFinding
    })
}

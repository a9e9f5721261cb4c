//! `rollgate fleet run LAYER=VALUE` / `fleet run --resume` / `fleet plan LAYER=VALUE`: the
//! conductor (`rollgate_fleet::conductor`). Exit codes (the contract): 0 wave done, 2 usage,
//! 3 preflight refused (nothing touched), 4 wave failed and the failing node back on its
//! baseline, 5 its rollback failed, 6 busy / halted / stuck / etcd unreachable.
//! JSON: `{wave_id, outcome, layer, to, order, nodes: [{node_id, role, outcome, rollout_id}],
//! reason}`; `fleet plan`: `{layer, to, order, canary, leader, current, preflight, gates, …}`.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use clap::{Args, ValueEnum};
use rollgate_core::ExitCode;
use rollgate_fleet::conductor::{self, ConductError, OnFailure, RunOptions, WaveOutcome};
use serde_json::json;

use crate::app::Ctx;
use crate::dispatch::common::parse_change;
use crate::dispatch::fleet::{TargetArgs, connect, etcd_error, target};
use crate::dispatch::rollout::parse_duration;
use crate::errors::{CliError, CmdResult};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnFailureArg {
    /// Updated nodes keep the new value
    Stop,
    /// Updated nodes are reverted too, newest first, one at a time
    RollbackAll,
}

/// Which nodes go in which order (shared by `run` and `plan`).
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// The canary (default: the lowest-id follower)
    #[arg(long, value_name = "ID")]
    pub canary: Option<String>,
    /// The leader, when the nodes do not report one ([fleet] leader_pointer)
    #[arg(long, value_name = "ID")]
    pub leader: Option<String>,
    /// Update one unhealthy follower first instead of refusing
    #[arg(long)]
    pub allow_degraded: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The change, LAYER=VALUE (not with --resume)
    #[arg(value_name = "LAYER=VALUE", num_args = 0..)]
    pub change: Vec<String>,
    #[command(flatten)]
    pub select: SelectArgs,
    /// What happens to updated nodes when one fails
    #[arg(long, value_enum, default_value = "stop")]
    pub on_failure: OnFailureArg,
    /// Continue the wave recorded in etcd (after a conductor was killed, a halt, a resolve)
    #[arg(long)]
    pub resume: bool,
    /// How long the wave may wait on a blocked cluster (a voter down, no leader) before it
    /// stops (exit 6, resumable)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "120s")]
    pub blocked_timeout: Duration,
    /// Do not ask for confirmation on a terminal
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The change, LAYER=VALUE
    #[arg(value_name = "LAYER=VALUE", num_args = 1)]
    pub change: Vec<String>,
    #[command(flatten)]
    pub select: SelectArgs,
}

fn options(change: Option<(String, String)>, s: &SelectArgs) -> RunOptions {
    RunOptions {
        change,
        canary: s.canary.clone(),
        leader: s.leader.clone(),
        allow_degraded: s.allow_degraded,
        ..RunOptions::default()
    }
}

pub fn conduct_error(e: ConductError) -> CliError {
    match e {
        ConductError::Usage(m) => CliError::Usage(m),
        ConductError::Busy(m) => CliError::Busy(m),
        ConductError::Fleet(e) => etcd_error(e),
    }
}

/// Who conducts: host and process, as the election and the wave record show it.
fn who() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

pub async fn run(ctx: &Ctx, args: &RunArgs) -> CmdResult {
    let change = if args.resume && args.change.is_empty() {
        None
    } else {
        Some(parse_change(&args.change)?)
    };
    let fleet = target(ctx, &args.select.target)?;
    let (client, keys) = connect(&fleet).await?;
    let mut opts = options(change, &args.select);
    opts.resume = args.resume;
    opts.blocked_timeout = args.blocked_timeout;
    opts.on_failure = match args.on_failure {
        OnFailureArg::Stop => OnFailure::Stop,
        OnFailureArg::RollbackAll => OnFailure::RollbackAll,
    };
    if !args.yes && ctx.out.interactive && std::io::stdin().is_terminal() {
        let what = match &opts.change {
            Some((l, v)) => format!("{l}={v} across cluster {}", fleet.cluster),
            None => format!("the recorded wave of cluster {}", fleet.cluster),
        };
        eprint!("roll out {what}, one node at a time? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(CliError::Usage("aborted: nothing was changed".into()));
        }
    }
    let json = ctx.out.is_json();
    let say = move |line: String| {
        if json {
            tracing::info!("{line}");
        } else {
            crate::outln!("{line}");
        }
    };
    let report = conductor::run(&client, &keys, &fleet, &opts, &who(), &say)
        .await
        .map_err(conduct_error)?;
    if json {
        ctx.out.json(&report)?;
    } else {
        for n in &report.nodes {
            crate::outln!(
                "  node {:<4} {:<10} {:<16} {}",
                n.node_id,
                n.role
                    .and_then(|r| serde_json::to_value(r).ok())
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_else(|| "-".into()),
                n.outcome,
                n.rollout_id.as_deref().unwrap_or("")
            );
        }
    }
    Ok(match report.outcome {
        WaveOutcome::Done => ExitCode::Success,
        WaveOutcome::Refused => {
            if !json {
                crate::outln!(
                    "refused, nothing touched: {}",
                    report.reason.as_deref().unwrap_or("")
                );
            }
            ExitCode::NotReady
        }
        WaveOutcome::Failed if report.rollback_failed => ExitCode::RollbackFailed,
        WaveOutcome::Failed => ExitCode::RolledBack,
        WaveOutcome::Halted | WaveOutcome::Stuck | WaveOutcome::Running => ExitCode::Busy,
    })
}

pub async fn plan(ctx: &Ctx, args: &PlanArgs) -> CmdResult {
    let change = parse_change(&args.change)?;
    let fleet = target(ctx, &args.select.target)?;
    let (client, keys) = connect(&fleet).await?;
    let opts = options(Some(change), &args.select);
    let p = conductor::plan(&client, &keys, &fleet, &opts)
        .await
        .map_err(conduct_error)?;
    let code = if p.preflight.is_ok() {
        ExitCode::Success
    } else {
        ExitCode::NotReady
    };
    if ctx.out.is_json() {
        ctx.out.json(&json!({
            "layer": p.layer,
            "to": p.to,
            "order": p.order,
            "canary": p.canary,
            "leader": p.leader,
            "current": p.current,
            "preflight": match &p.preflight { Ok(()) => json!({"ok": true}), Err(e) => json!({"ok": false, "reason": e}) },
            "gates": p.gates,
            "wave_running": p.wave_running,
            "halt": p.halt,
        }))?;
        return Ok(code);
    }
    crate::outln!(
        "fleet plan {}={} (cluster {})",
        p.layer,
        p.to,
        fleet.cluster
    );
    match &p.preflight {
        Ok(()) => crate::outln!("preflight: ready"),
        Err(e) => crate::outln!("preflight: REFUSED — {e}"),
    }
    if let Some(w) = &p.wave_running {
        crate::outln!("a wave is in progress: {w} (`fleet run --resume` continues it)");
    }
    if let Some(h) = &p.halt {
        crate::outln!(
            "HALTED: {}",
            h.get("reason").and_then(|r| r.as_str()).unwrap_or("?")
        );
    }
    if !p.order.is_empty() {
        crate::outln!(
            "order: {} (canary {}, leader {} last; roles re-read before every step)",
            p.order.join(" → "),
            p.canary.as_deref().unwrap_or("-"),
            p.leader.as_deref().unwrap_or("-")
        );
    }
    if !p.current.is_empty() {
        crate::outln!("already on {}: {}", p.to, p.current.join(", "));
    }
    crate::outln!("after each node, held and re-checked:");
    for g in &p.gates {
        crate::outln!("  - {g}");
    }
    Ok(code)
}

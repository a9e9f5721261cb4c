//! `rollgate baseline freeze|list|show ID`: record and inspect baselines.
//!
//! - `freeze` runs every check, samples progression over `rollout.baseline_window`, reads every
//!   layer's current value, stores the baseline in the journal and marks it known-good. When
//!   anything is ambiguous or red it refuses with exit 3 and stores nothing.
//!   JSON: `{"ok": true, "baseline_id": "b-…", "baseline": Baseline}` or
//!   `{"ok": false, "refused": true, "reasons": ["sgx-flags: …"], "checks": [CheckResult, …]}`.
//! - `list`: `{"baselines": [{"id", "node", "created_at", "mode", "known_good", "known_good_at"}]}`,
//!   newest first.
//! - `show ID`: the [`rollgate_core::baseline::Baseline`] itself (documented on that type).

use clap::{Args, Subcommand};
use rollgate_core::ExitCode;
use rollgate_runner::JournalHandle;
use rollgate_runner::baseline::{FreezeError, freeze_and_store};
use serde_json::json;

use crate::app::Ctx;
use crate::dispatch::common::{open_runner, runner_error};
use crate::errors::{CliError, CmdResult};

#[derive(Debug, Args)]
pub struct BaselineArgs {
    #[command(subcommand)]
    pub command: BaselineCommand,
}

#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Record the current state as a known-good baseline (refuses when not green)
    Freeze,
    /// List baselines, newest first
    List,
    /// Show one baseline
    Show {
        /// The baseline id (from `baseline list`)
        id: String,
    },
}

pub async fn run(ctx: &Ctx, args: &BaselineArgs) -> CmdResult {
    match &args.command {
        BaselineCommand::Freeze => freeze(ctx).await,
        BaselineCommand::List => list(ctx).await,
        BaselineCommand::Show { id } => show(ctx, id).await,
    }
}

async fn freeze(ctx: &Ctx) -> CmdResult {
    let runner = open_runner(ctx)?;
    let _lock = runner.exclusive().await.map_err(runner_error)?;
    match freeze_and_store(&runner.config, &runner.journal, runner.driver.as_ref()).await {
        Ok(b) => {
            if ctx.out.is_json() {
                ctx.out
                    .json(&json!({"ok": true, "baseline_id": b.id, "baseline": b}))?;
            } else {
                crate::outln!(
                    "{}: baseline {} frozen and marked known-good",
                    ctx.out.status("ok"),
                    b.id
                );
                for (name, v) in &b.layers {
                    crate::outln!("  {name:<24} {}", v.display());
                }
                for p in &b.progression {
                    crate::outln!(
                        "  progression:{:<12} {:.2}/s{}",
                        p.name,
                        p.rate_per_s,
                        if p.idle { " (idle)" } else { "" }
                    );
                }
            }
            Ok(ExitCode::Success)
        }
        Err(FreezeError::Refused(r)) => {
            if ctx.out.is_json() {
                ctx.out.json(&json!({"ok": false, "refused": true, "reasons": r.reasons, "checks": r.checks}))?;
            } else {
                crate::outln!(
                    "{}: not freezing a baseline from an ambiguous environment; nothing was stored:",
                    ctx.out.status("refused")
                );
                for reason in &r.reasons {
                    crate::outln!("  - {reason}");
                }
            }
            Ok(ExitCode::NotReady)
        }
        Err(FreezeError::Journal(e)) => Err(runner_error(e)),
    }
}

fn journal(ctx: &Ctx) -> Result<JournalHandle, CliError> {
    let config = ctx.config()?;
    let j = rollgate_journal::Journal::open(&config.node.state_dir).map_err(|e| {
        CliError::Usage(format!(
            "failed to open the journal: {}",
            rollgate_probe::errors::chain(&e)
        ))
    })?;
    Ok(JournalHandle::new(j))
}

async fn list(ctx: &Ctx) -> CmdResult {
    let list = journal(ctx)?
        .call(|j| j.list_baselines())
        .await
        .map_err(runner_error)?;
    if ctx.out.is_json() {
        ctx.out.json(&json!({"baselines": list}))?;
    } else if list.is_empty() {
        crate::outln!("no baselines yet: `rollgate baseline freeze` records one");
    } else {
        let rows = list
            .iter()
            .map(|b| {
                vec![
                    b.id.clone(),
                    b.created_at.clone(),
                    b.mode.as_str().to_string(),
                    if b.known_good {
                        ctx.out.status("ok")
                    } else {
                        String::new()
                    },
                ]
            })
            .collect();
        crate::outln!(
            "{}",
            ctx.out
                .table(&["id", "created", "mode", "known-good"], rows)
        );
    }
    Ok(ExitCode::Success)
}

async fn show(ctx: &Ctx, id: &str) -> CmdResult {
    let wanted = id.to_string();
    let found = journal(ctx)?
        .call(move |j| j.baseline(&wanted))
        .await
        .map_err(runner_error)?;
    let Some(b) = found else {
        return Err(CliError::Usage(format!(
            "no baseline `{id}` (see `rollgate baseline list`)"
        )));
    };
    if ctx.out.is_json() {
        ctx.out.json(&b)?;
    } else {
        crate::outln!(
            "baseline {} — node {}, {}, created {}",
            b.id,
            b.node,
            b.mode,
            b.created_at
        );
        crate::outln!("\nlayers:");
        for (name, v) in &b.layers {
            crate::outln!("  {name:<24} {}", v.display());
        }
        if let Some(m) = &b.metadata {
            crate::outln!(
                "\nmetadata: {} owned by {} sha256 {}",
                m.path,
                m.owner
                    .clone()
                    .or(m.uid.map(|u| format!("uid {u}")))
                    .unwrap_or_default(),
                m.sha256.clone().unwrap_or_default()
            );
        }
        if let Some(s) = &b.sgx {
            crate::outln!(
                "sgx: build {:?}, runtime {:?}, report type {}",
                s.build,
                s.runtime,
                s.report_type
            );
        }
        crate::outln!(
            "faults: {}",
            if b.faults.is_empty() {
                "none".to_string()
            } else {
                b.faults.join("; ")
            }
        );
        crate::outln!("\nprogression{}:", if b.idle { " (idle)" } else { "" });
        for p in &b.progression {
            crate::outln!(
                "  {:<16} {} → {} in {}ms, {:.2}/s{}",
                p.name,
                p.first,
                p.last,
                p.window_ms,
                p.rate_per_s,
                if p.idle { ", idle" } else { "" }
            );
        }
        crate::outln!("\nstorage:");
        for (k, v) in &b.storage {
            crate::outln!("  {k:<32} {}", rollgate_core::units::format_size(*v));
        }
        crate::outln!("\nchecks:");
        crate::outln!("{}", crate::render::checks_table(&ctx.out, &b.checks));
    }
    Ok(ExitCode::Success)
}

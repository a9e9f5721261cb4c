//! `rollgate snapshot list|prune`: the database snapshots taken before changes to layers with
//! `snapshot = [...]` (see docs/snapshots.md).
//!
//! - `list`: `{"snapshots": [SnapshotRecord, …]}`, newest first
//!   ([`rollgate_journal::SnapshotRecord`] documents the fields and states).
//! - `prune [--id ID]…`: drop the expired snapshots (past `[rollout] snapshot_retention` after
//!   their rollout finished), or exactly the ones named.
//!   JSON: [`rollgate_runner::snapshot::PruneReport`]. Exit 0, or 1 when a drop failed.

use clap::{Args, Subcommand};
use rollgate_core::ExitCode;
use rollgate_core::units::format_size;
use serde_json::json;

use crate::app::Ctx;
use crate::dispatch::common::{open_runner, runner_error};
use crate::errors::CmdResult;

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// List database snapshots, newest first
    List,
    /// Drop the snapshots whose retention has passed (or those named with --id)
    Prune {
        /// Drop this snapshot whatever its retention (repeatable)
        #[arg(long = "id", value_name = "ID")]
        ids: Vec<String>,
    },
}

pub async fn run(ctx: &Ctx, args: &SnapshotArgs) -> CmdResult {
    match &args.command {
        SnapshotCommand::List => list(ctx).await,
        SnapshotCommand::Prune { ids } => prune(ctx, ids).await,
    }
}

async fn list(ctx: &Ctx) -> CmdResult {
    let runner = open_runner(ctx)?;
    let retention = runner.config.rollout.snapshot_retention;
    let list = runner
        .journal
        .call(move |j| j.list_snapshots(retention))
        .await
        .map_err(runner_error)?;
    if ctx.out.is_json() {
        ctx.out.json(&json!({"snapshots": list}))?;
    } else if list.is_empty() {
        crate::outln!("no snapshots: layers with `snapshot = [...]` take one before each change");
    } else {
        let rows = list
            .iter()
            .map(|s| {
                vec![
                    s.id.clone(),
                    s.database.clone(),
                    s.method.clone(),
                    s.size_bytes.map(format_size).unwrap_or_default(),
                    s.created_at.clone(),
                    s.state.clone(),
                    s.keep_until.clone().unwrap_or_default(),
                    s.rollout_id.clone(),
                ]
            })
            .collect();
        crate::outln!(
            "{}",
            ctx.out.table(
                &[
                    "id",
                    "database",
                    "method",
                    "size",
                    "created",
                    "state",
                    "keep until",
                    "rollout"
                ],
                rows
            )
        );
    }
    Ok(ExitCode::Success)
}

async fn prune(ctx: &Ctx, ids: &[String]) -> CmdResult {
    let runner = open_runner(ctx)?;
    let report = rollgate_runner::snapshot::prune(&runner.config, &runner.journal, ids)
        .await
        .map_err(runner_error)?;
    if ctx.out.is_json() {
        ctx.out.json(&report)?;
    } else {
        for id in &report.dropped {
            crate::outln!("{}: dropped {id}", ctx.out.status("ok"));
        }
        for f in &report.failed {
            crate::outln!("{}: {}: {}", ctx.out.status("fail"), f.id, f.error);
        }
        crate::outln!(
            "{} dropped, {} kept, {} failed",
            report.dropped.len(),
            report.kept,
            report.failed.len()
        );
    }
    Ok(if report.failed.is_empty() {
        ExitCode::Success
    } else {
        ExitCode::Internal
    })
}

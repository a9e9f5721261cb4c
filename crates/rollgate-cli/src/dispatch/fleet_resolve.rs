//! `rollgate fleet resolve NODE --as done|rolled-back [--reason TEXT]`: after a human looked at
//! a node whose agent was lost mid-step (the wave is stuck and never advances by itself). The
//! node's record and the wave say what the human decided; `fleet run --resume` continues
//! (`done`) or ends the wave failed (`rolled-back`). Refused while a conductor runs (exit 6).

use clap::{Args, ValueEnum};
use rollgate_core::ExitCode;
use rollgate_fleet::conductor;
use serde_json::json;

use crate::app::Ctx;
use crate::dispatch::fleet::{TargetArgs, connect, target};
use crate::dispatch::fleet_run::conduct_error;
use crate::errors::CmdResult;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ResolvedAs {
    /// The node is on the new value and healthy
    Done,
    /// The node is back on its previous value
    RolledBack,
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The node (its Raft id)
    pub node: String,
    /// What the node is now, as a human verified it
    #[arg(long = "as", value_enum)]
    pub as_: ResolvedAs,
    /// What was checked (recorded in the node's record)
    #[arg(long, value_name = "TEXT", default_value = "checked by an operator")]
    pub reason: String,
    #[command(flatten)]
    pub target: TargetArgs,
}

pub async fn run(ctx: &Ctx, args: &ResolveArgs) -> CmdResult {
    let fleet = target(ctx, &args.target)?;
    let (client, keys) = connect(&fleet).await?;
    let done = matches!(args.as_, ResolvedAs::Done);
    let wave = conductor::resolve(&client, &keys, &args.node, done, &args.reason)
        .await
        .map_err(conduct_error)?;
    if ctx.out.is_json() {
        ctx.out.json(&json!({
            "wave_id": wave.wave_id,
            "node_id": args.node,
            "resolved_as": if done { "done" } else { "rolled_back" },
            "outcome": wave.outcome,
        }))?;
    } else {
        crate::outln!(
            "node {} resolved as {} in wave {}; `rollgate fleet run --resume` continues",
            args.node,
            if done { "done" } else { "rolled back" },
            wave.wave_id
        );
    }
    Ok(ExitCode::Success)
}

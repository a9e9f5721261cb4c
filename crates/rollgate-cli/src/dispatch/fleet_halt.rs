//! `rollgate fleet halt --reason TEXT` / `rollgate fleet unhalt`: the cluster kill switch in
//! etcd (`halt`). While it is on no conductor starts a new step. JSON: `{"halted", "reason"}`.

use std::time::{SystemTime, UNIX_EPOCH};

use clap::Args;
use rollgate_core::ExitCode;
use rollgate_fleet::store;
use serde_json::json;

use crate::app::Ctx;
use crate::dispatch::fleet::{TargetArgs, connect, etcd_error, target};
use crate::errors::{CliError, CmdResult};

#[derive(Debug, Args)]
pub struct HaltArgs {
    /// Why (shown by `fleet status` and in every refusal)
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct UnhaltArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

pub async fn halt(ctx: &Ctx, args: &HaltArgs) -> CmdResult {
    let reason = args.reason.trim();
    if reason.is_empty() {
        return Err(CliError::Usage("a halt needs a non-empty --reason".into()));
    }
    let fleet = target(ctx, &args.target)?;
    let (client, keys) = connect(&fleet).await?;
    let at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    store::halt(&client, &keys, reason, at_ms)
        .await
        .map_err(etcd_error)?;
    if ctx.out.is_json() {
        ctx.out.json(&json!({"halted": true, "reason": reason}))?;
    } else {
        crate::outln!("cluster {} is halted: {reason}", fleet.cluster);
        crate::outln!("no new step starts; `rollgate fleet unhalt` lifts it");
    }
    Ok(ExitCode::Success)
}

pub async fn unhalt(ctx: &Ctx, args: &UnhaltArgs) -> CmdResult {
    let fleet = target(ctx, &args.target)?;
    let (client, keys) = connect(&fleet).await?;
    let was = store::halted(&client, &keys).await.map_err(etcd_error)?;
    store::unhalt(&client, &keys).await.map_err(etcd_error)?;
    let reason = was.as_ref().and_then(|w| w.get("reason").cloned());
    if ctx.out.is_json() {
        ctx.out.json(&json!({"halted": false, "reason": reason}))?;
    } else if was.is_some() {
        crate::outln!("cluster {} is no longer halted", fleet.cluster);
    } else {
        crate::outln!("cluster {} was not halted", fleet.cluster);
    }
    Ok(ExitCode::Success)
}

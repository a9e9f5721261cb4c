//! `rollgate unfreeze`: lift the kill switch set by `rollgate freeze`.
//! JSON: `{"unfrozen": bool, "was": {"reason", "frozen_at", "by"} | null}`.

use clap::Args;
use rollgate_core::ExitCode;
use rollgate_runner::killswitch;

use crate::app::Ctx;
use crate::errors::{CliError, CmdResult};

#[derive(Debug, Args)]
pub struct UnfreezeArgs {}

pub async fn run(ctx: &Ctx, _args: &UnfreezeArgs) -> CmdResult {
    let config = ctx.config()?;
    let dir = config.node.state_dir.clone();
    let was = tokio::task::spawn_blocking(move || killswitch::unfreeze(&dir))
        .await
        .map_err(|e| CliError::Internal(e.into()))?
        .map_err(|e| CliError::Usage(rollgate_probe::errors::chain(&e)))?;
    if ctx.out.is_json() {
        ctx.out
            .json(&serde_json::json!({"unfrozen": was.is_some(), "was": was}))?;
    } else {
        match was {
            Some(w) => crate::outln!(
                "node {} is no longer frozen (was: {})",
                config.node.name,
                w.summary()
            ),
            None => crate::outln!("node {} was not frozen", config.node.name),
        }
    }
    Ok(ExitCode::Success)
}

//! `rollgate fleet agent`: this node's agent, until SIGINT/SIGTERM (then its presence is
//! revoked at once; a step in flight finishes first). Exit 0 when stopped, 2 without a
//! `[fleet]` section or with a node id that is not a number, 6 when its lease was lost or etcd
//! refused it (run it under a supervisor: systemd restarts it with a fresh lease).

use clap::Args;
use rollgate_core::ExitCode;
use rollgate_fleet::agent::{self, AgentError};

use crate::app::Ctx;
use crate::dispatch::common::open_runner;
use crate::dispatch::fleet::etcd_error;
use crate::dispatch::serve::shutdown_signal;
use crate::errors::{CliError, CmdResult};

#[derive(Debug, Args)]
pub struct AgentArgs {}

pub async fn run(ctx: &Ctx, _args: &AgentArgs) -> CmdResult {
    let runner = open_runner(ctx)?;
    match agent::run(&runner, shutdown_signal()).await {
        Ok(()) => Ok(ExitCode::Success),
        Err(AgentError::Fleet(e)) => Err(etcd_error(e)),
        Err(e @ (AgentError::NotInFleet | AgentError::NodeId(_))) => {
            Err(CliError::Usage(e.to_string()))
        }
    }
}

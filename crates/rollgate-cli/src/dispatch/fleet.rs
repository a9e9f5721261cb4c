//! `rollgate fleet …`: rolling a Raft cluster of operator nodes through etcd (docs/fleet.md).
//! One file per subcommand (`fleet_*.rs`); this one holds the group and what they share.

use clap::{Args, Subcommand};
use rollgate_core::config::Fleet;
use rollgate_fleet::{FleetError, Keys};

use crate::app::Ctx;
use crate::dispatch::{fleet_agent, fleet_halt, fleet_resolve, fleet_run, fleet_status};
use crate::errors::{CliError, CmdResult};

#[derive(Debug, Args)]
pub struct FleetArgs {
    #[command(subcommand)]
    pub command: FleetCommand,
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Run this node's agent: publish its snapshot, run the steps addressed to it (long-running)
    Agent(fleet_agent::AgentArgs),
    /// The order, every gate and the preflight now, for LAYER=VALUE across the cluster; changes nothing
    Plan(fleet_run::PlanArgs),
    /// Conduct a wave: canary, followers, leader last, one node at a time, gated on the cluster
    Run(fleet_run::RunArgs),
    /// After a node was lost mid-step: record what a human found (`--as done|rolled-back`)
    Resolve(fleet_resolve::ResolveArgs),
    /// The wave, each node's phase, agent liveness, value, health and role
    Status(fleet_status::StatusArgs),
    /// Cluster kill switch: no new step starts anywhere until `fleet unhalt`
    Halt(fleet_halt::HaltArgs),
    /// Lift the cluster kill switch
    Unhalt(fleet_halt::UnhaltArgs),
}

pub async fn run(ctx: &Ctx, args: &FleetArgs) -> CmdResult {
    match &args.command {
        FleetCommand::Agent(a) => fleet_agent::run(ctx, a).await,
        FleetCommand::Plan(a) => fleet_run::plan(ctx, a).await,
        FleetCommand::Run(a) => fleet_run::run(ctx, a).await,
        FleetCommand::Resolve(a) => fleet_resolve::run(ctx, a).await,
        FleetCommand::Status(a) => fleet_status::run(ctx, a).await,
        FleetCommand::Halt(a) => fleet_halt::halt(ctx, a).await,
        FleetCommand::Unhalt(a) => fleet_halt::unhalt(ctx, a).await,
    }
}

/// Where a command that is not an agent finds the cluster: `--etcd`/`--cluster`, or the
/// `[fleet]` section of the configuration (any node's).
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// etcd endpoint (repeatable); default: [fleet].etcd of the configuration
    #[arg(long, value_name = "URL")]
    pub etcd: Vec<String>,
    /// The cluster's name (key prefix /rollgate/v1/NAME/); default: [fleet].cluster
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
}

/// The `[fleet]` settings a conductor-side command uses, with the flags applied.
pub fn target(ctx: &Ctx, args: &TargetArgs) -> Result<Fleet, CliError> {
    if let (false, Some(cluster)) = (args.etcd.is_empty(), &args.cluster) {
        // Both given: no configuration needed (a host that is not a node).
        let mut f = ctx
            .config()
            .ok()
            .and_then(|c| c.fleet)
            .unwrap_or_else(|| Fleet::for_endpoints(args.etcd.clone(), cluster.clone()));
        f.etcd = args.etcd.clone();
        f.cluster = cluster.clone();
        return Ok(f);
    }
    let mut f = ctx.config()?.fleet.ok_or_else(|| {
        CliError::Usage(
            "no [fleet] section in the configuration: give --etcd URL and --cluster NAME".into(),
        )
    })?;
    if !args.etcd.is_empty() {
        f.etcd = args.etcd.clone();
    }
    if let Some(c) = &args.cluster {
        f.cluster = c.clone();
    }
    Ok(f)
}

/// A client of the cluster's etcd and its keys; unreachable is exit 6 (the fleet is halted
/// for as long as etcd does not answer).
pub async fn connect(fleet: &Fleet) -> Result<(rollgate_fleet::Client, Keys), CliError> {
    let client = rollgate_fleet::connect(fleet).await.map_err(etcd_error)?;
    Ok((client, Keys::new(&fleet.cluster)))
}

pub fn etcd_error(e: FleetError) -> CliError {
    CliError::Busy(format!("failed to {}", rollgate_fleet::errors::chain(&e)))
}

//! One file per subcommand.

pub mod baseline;
pub mod check;
pub mod common;
pub mod completions;
pub mod fleet;
pub mod fleet_agent;
pub mod fleet_halt;
pub mod fleet_resolve;
pub mod fleet_run;
pub mod fleet_status;
pub mod freeze;
pub mod history;
pub mod init;
pub mod plan;
pub mod plan_file;
pub mod resume;
pub mod rollback;
pub mod rollout;
pub mod serve;
pub mod show;
pub mod snapshot;
pub mod status;
pub mod unfreeze;
pub mod validate;
pub mod watch;

//! rollgate-fleet: coordination of a cluster-wide rollout through etcd (shared docs, fleet.md).
//!
//! etcd is the only coordination layer — leases, locks, elections and compare-and-swap
//! transactions — and no protocol of our own. Decisions are not made here: the pure planner
//! (`rollgate_core::fleet`) decides, this crate records and reads what it needs.
//!
//! - [`keys`]: the key layout under `/rollgate/v1/<cluster>/`.
//! - [`lease`]: a lease with its keep-alive task; whoever holds one stops acting the moment
//!   keep-alive fails (the client does not renew anything by itself).
//! - [`agent`]: `rollgate fleet agent` — snapshot, intent, the single-node rollout, outcome.
//! - [`conductor`]: `rollgate fleet run|plan|resolve` — one wave, decided by the planner,
//!   recorded in `wave`, gated on the cluster after every node.
//! - [`election`]: who conducts (campaign on the conductor's lease; busy never queues).
//! - [`halt`]: the kill switch as seen by a conductor or an agent (etcd unreachable = halted).
//! - [`node`]: `node/<id>`, intent by the conductor, claim and outcome by the agent, all CAS.
//! - [`snapshot`]: what an agent publishes about its node, read through the `[fleet]` pointers.
//! - [`status`]: what `rollgate fleet status` shows, read in one pass.
//! - [`store`]: the wave record (created only if absent, updated by compare-and-swap on its
//!   mod revision) and the agent presence keys.
//! - [`testenv`]: a real `etcd` on free loopback ports for tests.
#![forbid(unsafe_code)]

pub mod agent;
pub mod conductor;
pub mod election;
pub mod errors;
pub mod halt;
pub mod keys;
pub mod lease;
pub mod node;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod testenv;

pub use errors::FleetError;
pub use etcd_client::Client;
pub use halt::{HaltState, HaltWatch};
pub use keys::Keys;
pub use lease::KeptLease;
pub use snapshot::AgentSnapshot;

use std::time::Duration;

/// How long connecting and each request may take: etcd unreachable must turn into "no new
/// step" quickly, never into a hang.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// A client of the configured endpoints (`[fleet].etcd`, with `user`/`password` when set).
pub async fn connect(
    fleet: &rollgate_core::config::Fleet,
) -> Result<etcd_client::Client, FleetError> {
    let mut opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT);
    if let (Some(u), Some(p)) = (&fleet.user, &fleet.password) {
        opts = opts.with_user(u.clone(), p.clone());
    }
    etcd_client::Client::connect(&fleet.etcd, Some(opts))
        .await
        .map_err(|source| FleetError::Etcd {
            action: format!("connect to {}", fleet.etcd.join(", ")),
            source,
        })
}

//! A lease kept alive by its own task. The client renews nothing by itself, and a lease that
//! expires takes its keys (agent presence, the disruption lock) with it, so whoever holds one
//! must stop acting the moment renewal fails — not when it notices the keys are gone.
//!
//! Renewal runs every third of the TTL and each attempt may take another third: a failure is
//! known within two thirds of the TTL after the last renewal, before the server can expire it.

use std::time::Duration;

use etcd_client::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::errors::FleetError;

/// A granted lease and its keep-alive task.
#[derive(Debug)]
pub struct KeptLease {
    id: i64,
    ttl: Duration,
    alive: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl KeptLease {
    /// Grants a lease of `ttl` (whole seconds, at least 1) and starts renewing it.
    pub async fn grant(client: &Client, ttl: Duration) -> Result<KeptLease, FleetError> {
        let secs = ttl.as_secs().max(1) as i64;
        let mut c = client.clone();
        let granted = c
            .lease_grant(secs, None)
            .await
            .map_err(FleetError::etcd(format!("grant a {secs}s lease")))?;
        let id = granted.id();
        let ttl = Duration::from_secs(granted.ttl().max(1) as u64);
        let (keeper, stream) = c
            .lease_keep_alive(id)
            .await
            .map_err(FleetError::etcd(format!("keep lease {id:x} alive")))?;
        let (tx, alive) = watch::channel(true);
        let task = tokio::spawn(keep_alive(id, ttl, keeper, stream, tx));
        Ok(KeptLease {
            id,
            ttl,
            alive,
            task,
        })
    }

    pub fn id(&self) -> i64 {
        self.id
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// False from the first failed renewal on; never true again.
    pub fn is_alive(&self) -> bool {
        *self.alive.borrow()
    }

    /// A receiver that turns false when renewal fails (for `select!` around work).
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.alive.clone()
    }

    /// Resolves when renewal has failed.
    pub async fn lost(&self) {
        let mut rx = self.alive.clone();
        let _ = rx.wait_for(|a| !*a).await;
    }

    /// `Err(LeaseLost)` once renewal failed: call it before every action that needs the lease.
    pub fn ensure_alive(&self) -> Result<(), FleetError> {
        if self.is_alive() {
            Ok(())
        } else {
            Err(FleetError::LeaseLost(self.id))
        }
    }

    /// Stops renewing and revokes the lease, deleting its keys now rather than at expiry.
    pub async fn revoke(self, client: &Client) -> Result<(), FleetError> {
        self.task.abort();
        client
            .clone()
            .lease_revoke(self.id)
            .await
            .map(|_| ())
            .map_err(FleetError::etcd(format!("revoke lease {:x}", self.id)))
    }
}

impl Drop for KeptLease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn keep_alive(
    id: i64,
    ttl: Duration,
    mut keeper: etcd_client::LeaseKeeper,
    mut stream: etcd_client::LeaseKeepAliveStream,
    alive: watch::Sender<bool>,
) {
    let third = ttl / 3;
    loop {
        let renewed = tokio::time::timeout(third, async {
            keeper.keep_alive().await?;
            stream.message().await
        })
        .await;
        match renewed {
            Ok(Ok(Some(r))) if r.ttl() > 0 => {}
            Ok(Ok(Some(_))) => {
                tracing::warn!(lease = format!("{id:x}"), "lease expired on the server");
                break;
            }
            Ok(Ok(None)) => {
                tracing::warn!(lease = format!("{id:x}"), "keep-alive stream closed");
                break;
            }
            Ok(Err(e)) => {
                tracing::warn!(lease = format!("{id:x}"), error = %e, "keep-alive failed");
                break;
            }
            Err(_) => {
                tracing::warn!(lease = format!("{id:x}"), "keep-alive timed out");
                break;
            }
        }
        tokio::time::sleep(third).await;
    }
    let _ = alive.send(false);
}

//! Who conducts the cluster's wave: an etcd election (`campaign`) on `election/`, held on the
//! conductor's kept lease. A second conductor does not queue behind the first: it waits a
//! moment, then revokes its lease — which deletes its campaign key, so it can never become
//! leader later without knowing — and reports busy (exit 6). Every write to the wave is guarded
//! by the leader key ([`Conductorship::guard`]): a conductor that lost its lease cannot write.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp};

use crate::errors::FleetError;
use crate::keys::Keys;
use crate::lease::KeptLease;

/// Held leadership of the cluster's wave.
#[derive(Debug)]
pub struct Conductorship {
    lease: KeptLease,
    key: Vec<u8>,
    rev: i64,
}

impl Conductorship {
    /// Campaigns as `who` on `lease` for up to `wait`. None: someone else conducts (our lease is
    /// revoked, so nothing of ours stays queued).
    pub async fn acquire(
        client: &Client,
        keys: &Keys,
        lease: KeptLease,
        who: &str,
        wait: Duration,
    ) -> Result<Option<Conductorship>, FleetError> {
        let name = keys.election();
        let started = std::time::Instant::now();
        loop {
            let left = wait.saturating_sub(started.elapsed());
            let mut c = client.clone();
            let campaign = c.campaign(name.as_str(), who, lease.id());
            let result = tokio::time::timeout(left, campaign).await;
            // The client's own request timeout ends a long campaign early: campaign again (with
            // the same lease etcd re-uses our campaign key) until `wait` is spent.
            if let Ok(Err(etcd_client::Error::GRpcStatus(s))) = &result
                // gRPC codes 1 (cancelled: the client's timeout) and 4 (deadline exceeded).
                && matches!(s.code() as i32, 1 | 4)
                && started.elapsed() < wait
            {
                continue;
            }
            return Self::campaigned(client, lease, name, result).await;
        }
    }

    async fn campaigned(
        client: &Client,
        lease: KeptLease,
        name: String,
        result: Result<
            Result<etcd_client::CampaignResponse, etcd_client::Error>,
            tokio::time::error::Elapsed,
        >,
    ) -> Result<Option<Conductorship>, FleetError> {
        match result {
            Ok(Ok(resp)) => {
                let Some(leader) = resp.leader() else {
                    lease.revoke(client).await?;
                    return Err(FleetError::Corrupt {
                        key: name,
                        message: "campaign answered without a leader key".into(),
                    });
                };
                Ok(Some(Conductorship {
                    key: leader.key().to_vec(),
                    rev: leader.rev(),
                    lease,
                }))
            }
            Ok(Err(source)) => {
                let _ = lease.revoke(client).await;
                Err(FleetError::Etcd {
                    action: format!("campaign on {name}"),
                    source,
                })
            }
            Err(_) => {
                lease.revoke(client).await?;
                Ok(None)
            }
        }
    }

    pub fn lease(&self) -> &KeptLease {
        &self.lease
    }

    /// Holds while this conductorship does: our leader key still exists, as created.
    pub fn guard(&self) -> Vec<Compare> {
        vec![Compare::create_revision(
            self.key.clone(),
            CompareOp::Equal,
            self.rev,
        )]
    }

    /// Gives the wave up (revoking the lease ends the leadership at once).
    pub async fn resign(self, client: &Client) -> Result<(), FleetError> {
        self.lease.revoke(client).await
    }
}

/// Who conducts now (the value it campaigned with), if anyone.
pub async fn current(client: &Client, keys: &Keys) -> Result<Option<String>, FleetError> {
    let name = keys.election();
    match client.clone().leader(name.as_str()).await {
        Ok(r) => Ok(r
            .kv()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())),
        // etcd answers "election: no leader" as an error.
        Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("no leader") => Ok(None),
        Err(source) => Err(FleetError::Etcd {
            action: format!("read the leader of {name}"),
            source,
        }),
    }
}

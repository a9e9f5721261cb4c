//! The agent (`rollgate fleet agent`): the only thing that ever changes its node on a fleet's
//! behalf. It keeps a lease, publishes its node's snapshot on it every second, watches
//! `node/<id>`, and when an intent arrives: its local freeze vetoes it, else it claims the intent
//! (a CAS that only holds while its presence key is on its live lease) and runs the single-node
//! rollout in-process — the same engine, node lock, journal and automatic rollback as
//! `rollgate rollout --yes` — then records the outcome from the claimed revision.
//!
//! `rollgate fleet halt` while a step runs: the agent freezes its node locally (`by` = "rollgate
//! fleet halt"), so the single-node engine rolls the step back at its next poll or step boundary —
//! the same path as `rollgate freeze` — and lifts that freeze when the step has ended (only if it
//! is still its own: a freeze a human set meanwhile stays). No intent is claimed while halted.
//!
//! Losing the lease means stop acting: nothing new is claimed, the in-flight rollout finishes or
//! rolls back locally (it is never abandoned half-way), and its outcome is *not* recorded — the
//! conductor has already seen the node lost and the wave stuck; a human resolves it.

use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, WatchStream};
use rollgate_core::config::Fleet;
use rollgate_core::vocab::Outcome;
use rollgate_runner::{RolloutOptions, RolloutReport, Runner, RunnerError, checks, killswitch};
use serde_json::Value;

use crate::errors::{FleetError, chain};
use crate::halt::{HaltState, HaltWatch};
use crate::keys::Keys;
use crate::lease::KeptLease;
use crate::node::{self, NodePhase, NodeRecord};
use crate::snapshot::AgentSnapshot;
use crate::store;

/// The agent's lease: its presence and the disruption lock vanish this long after it stops.
pub const AGENT_LEASE_TTL: Duration = Duration::from_secs(5);
/// Who the local freeze set for a cluster halt names (and only such a freeze is lifted).
pub const HALT_BY: &str = "rollgate fleet halt";
/// How often the snapshot is published and `node/<id>` re-read (the watch is the fast path).
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration has no `[fleet]` section.
    #[error("the configuration has no [fleet] section: this node takes no part in a fleet")]
    NotInFleet,
    /// The node's id could not be learnt from its status document.
    #[error("{0}")]
    NodeId(String),
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

/// Runs the agent until `stop` resolves (then it revokes its lease: its presence goes at once)
/// or its lease is lost (`Err(LeaseLost)`: a supervisor restarts it with a fresh lease).
pub async fn run(runner: &Runner, stop: impl Future<Output = ()>) -> Result<(), AgentError> {
    let fleet = runner.config.fleet.clone().ok_or(AgentError::NotInFleet)?;
    let client = crate::connect(&fleet).await?;
    let keys = Keys::new(&fleet.cluster);
    tokio::pin!(stop);

    // The node's id names its keys: wait for the status document to give it.
    let first = tokio::select! {
        _ = &mut stop => return Ok(()),
        s = first_snapshot(runner, &fleet) => s?,
    };
    let node_id: u64 = first.node_id.parse().map_err(|_| {
        AgentError::NodeId(format!(
            "node id `{}` at {} is not a number: fleet keys need a numeric Raft id",
            first.node_id, fleet.node_id_pointer
        ))
    })?;
    let lease = KeptLease::grant(&client, AGENT_LEASE_TTL).await?;
    tracing::info!(
        node_id,
        lease = format!("{:x}", lease.id()),
        "agent registered"
    );
    let halt = HaltWatch::start(&client, &keys).await;
    let mut agent = Agent {
        halt,
        froze: false,
        runner,
        fleet,
        client,
        keys,
        node_id,
        lease,
        last: first,
        layer: None,
    };
    agent.publish().await?;
    let result = agent.serve(&mut stop).await;
    if agent.lease.is_alive() {
        let Agent { client, lease, .. } = agent;
        if let Err(e) = lease.revoke(&client).await {
            tracing::warn!(error = %chain(&e), "could not revoke the agent's lease");
        }
    }
    result
}

async fn first_snapshot(runner: &Runner, fleet: &Fleet) -> Result<AgentSnapshot, AgentError> {
    let mut warned = false;
    loop {
        match read_status(runner).await {
            Ok(status) => {
                return AgentSnapshot::from_status(&status, fleet, None, false, false)
                    .map_err(AgentError::NodeId);
            }
            Err(e) if !warned => {
                tracing::warn!(error = %e, "waiting for the operator status document");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(PUBLISH_EVERY).await;
    }
}

/// The operator readiness document (`[readiness]` entry `operator`, else the first).
async fn read_status(runner: &Runner) -> Result<Value, String> {
    let url = runner
        .config
        .operator_status_url()
        .ok_or("no [readiness] entry gives the operator status document")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    resp.json::<Value>()
        .await
        .map_err(|e| format!("GET {url}: {e}"))
}

struct Agent<'a> {
    runner: &'a Runner,
    fleet: Fleet,
    client: Client,
    keys: Keys,
    node_id: u64,
    lease: KeptLease,
    /// The last snapshot read (republished, unhealthy, while the status document is unreadable).
    last: AgentSnapshot,
    /// The layer of the last intent seen: the value the snapshot reports.
    layer: Option<String>,
    halt: HaltWatch,
    /// This agent froze the node for a cluster halt during the current step.
    froze: bool,
}

/// A claimed intent being run.
type Step<'a> = std::pin::Pin<Box<dyn Future<Output = StepDone> + 'a>>;

struct StepDone {
    record: NodeRecord,
    rev: i64,
    result: Result<RolloutReport, RunnerError>,
}

impl<'a> Agent<'a> {
    async fn serve(
        &mut self,
        stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), AgentError> {
        let mut watch = self.watch().await;
        let mut tick = tokio::time::interval(PUBLISH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut step: Option<Step<'a>> = None;
        let mut stopping = false;
        let mut halts = self.halt.subscribe();
        let mut halts_open = true;
        loop {
            let runner = self.runner;
            tokio::select! {
                _ = stop.as_mut(), if !stopping => {
                    if step.is_none() {
                        return Ok(());
                    }
                    tracing::info!("stop requested: the in-flight step finishes first");
                    stopping = true;
                }
                _ = self.lease.lost() => {
                    if let Some(s) = step.take() {
                        let done = s.await;
                        self.lift_halt_freeze();
                        tracing::warn!(
                            outcome = ?done.result.as_ref().map(|r| r.outcome),
                            "lease lost mid-step: the step ended locally and is not recorded (the wave is stuck until resolved)"
                        );
                    }
                    return Err(FleetError::LeaseLost(self.lease.id()).into());
                }
                done = async { step.as_mut().expect("guarded").await }, if step.is_some() => {
                    step = None;
                    self.lift_halt_freeze();
                    self.record(done).await?;
                    if stopping {
                        return Ok(());
                    }
                }
                _ = tick.tick() => {
                    if let Err(e) = self.publish().await {
                        tracing::warn!(error = %chain(&e), "publishing the snapshot failed");
                    }
                    if step.is_none() && !stopping {
                        step = self.check_intent(runner).await;
                    }
                    self.apply_halt(step.is_some());
                }
                changed = halts.changed(), if halts_open => {
                    halts_open = changed.is_ok();
                    self.apply_halt(step.is_some());
                }
                ev = next_event(&mut watch) => {
                    if !ev {
                        // The watch broke (etcd restarted): the per-second read carries on.
                        watch = None;
                    } else if step.is_none() && !stopping {
                        step = self.check_intent(runner).await;
                    }
                }
            }
        }
    }

    /// A cluster halt while a step runs: freeze the node locally so the engine rolls back.
    fn apply_halt(&mut self, in_step: bool) {
        if !in_step || self.froze {
            return;
        }
        // Only a halt key: etcd unreachable is handled by the lease (the step finishes or rolls
        // back on its own gates).
        let HaltState::Halted(h) = self.halt.state() else {
            return;
        };
        let why = h
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        let dir = &self.runner.config.node.state_dir;
        match killswitch::freeze_by(dir, &format!("cluster halted: {why}"), HALT_BY) {
            Ok(_) => {
                tracing::warn!(
                    reason = why,
                    "cluster halted mid-step: rolling this node back"
                );
                self.froze = true;
            }
            Err(e) => tracing::error!(error = %chain(&e), "could not freeze the node for the halt"),
        }
    }

    /// Lifts the freeze [`Self::apply_halt`] set, if it is still ours.
    fn lift_halt_freeze(&mut self) {
        if !std::mem::take(&mut self.froze) {
            return;
        }
        let dir = &self.runner.config.node.state_dir;
        if killswitch::is_frozen(dir).is_some_and(|f| f.by == HALT_BY)
            && let Err(e) = killswitch::unfreeze(dir)
        {
            tracing::error!(error = %chain(&e), "could not lift the halt's local freeze");
        }
    }

    /// The watch on `node/<id>`.
    async fn watch(&self) -> Option<WatchStream> {
        let key = self.keys.node(self.node_id);
        match self.client.clone().watch(key.as_str(), None).await {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "could not watch {key}; reading it every second");
                None
            }
        }
    }

    /// Reads the node and publishes its snapshot on the lease.
    async fn publish(&mut self) -> Result<(), FleetError> {
        self.lease.ensure_alive()?;
        let config = &self.runner.config;
        let frozen = killswitch::is_frozen(&config.node.state_dir).is_some();
        let layer = self
            .layer
            .as_deref()
            .and_then(|l| config.layer(l))
            .or_else(|| config.layers.values().next());
        let value = match layer {
            Some(l) => self.runner.driver.current(l).await.ok().map(|v| v.value),
            None => None,
        };
        let healthy = checks::all_green(&checks::readiness_checks(config).await);
        let read = read_status(self.runner).await.and_then(|s| {
            AgentSnapshot::from_status(&s, &self.fleet, value.clone(), healthy, frozen)
        });
        let snapshot = fresh_or_last(
            read,
            self.node_id,
            &self.fleet.node_id_pointer,
            &self.last,
            value,
            frozen,
        );
        self.last = AgentSnapshot {
            layer: layer.map(|l| l.name.clone()),
            ..snapshot
        };
        let json = serde_json::to_value(&self.last).unwrap_or_default();
        store::publish_agent(
            &self.client,
            &self.keys,
            self.node_id,
            &json,
            self.lease.id(),
        )
        .await
    }

    /// An intent addressed to this node: vetoed when frozen, else claimed and started.
    async fn check_intent(&mut self, runner: &'a Runner) -> Option<Step<'a>> {
        if !self.lease.is_alive() {
            return None;
        }
        let (record, rev) = match node::read(&self.client, &self.keys, self.node_id).await {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %chain(&e), "reading this node's record failed");
                return None;
            }
        };
        if record.phase != NodePhase::Intent {
            return None;
        }
        if let HaltState::Halted(_) = self.halt.state()
            && !record.revert
        {
            // Left as an intent: claimed once the cluster is unhalted (if still wanted). A revert
            // goes on: it takes the node back to its baseline, which is what a halt wants.
            return None;
        }
        self.layer = Some(record.layer.clone());
        let config = &runner.config;
        let refusal = if let Some(f) = killswitch::is_frozen(&config.node.state_dir) {
            Some(format!(
                "vetoed by the node's local freeze: {}",
                f.summary()
            ))
        } else if config.layer(&record.layer).is_none() {
            Some(format!(
                "unknown layer `{}` on this node (configured: {})",
                record.layer,
                config.layers.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            tracing::warn!(%reason, "intent for {}={} refused", record.layer, record.to);
            let mut vetoed = record;
            vetoed.phase = NodePhase::Vetoed;
            vetoed.reason = Some(reason);
            if let Err(e) = node::finish(&self.client, &self.keys, self.node_id, &vetoed, rev).await
            {
                tracing::warn!(error = %chain(&e), "recording the veto failed");
            }
            return None;
        }
        let claimed = node::claim(
            &self.client,
            &self.keys,
            self.node_id,
            &record,
            rev,
            self.lease.id(),
        )
        .await;
        let (claimed, crev) = match claimed {
            Ok(Some(c)) => c,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %chain(&e), "claiming the intent failed");
                return None;
            }
        };
        tracing::info!(wave = %claimed.wave_id, revert = claimed.revert, "running {}={}", claimed.layer, claimed.to);
        Some(Box::pin(async move {
            // A revert is `rollgate rollback`: back to the baseline this node's latest rollout
            // (the wave's) started from, re-verified.
            let result = if claimed.revert {
                runner.rollback(None).await
            } else {
                runner
                    .rollout(&claimed.layer, &claimed.to, &RolloutOptions::default())
                    .await
            };
            runner.notifier.flush(Duration::from_secs(15)).await;
            StepDone {
                record: claimed,
                rev: crev,
                result,
            }
        }))
    }

    /// Records where the step ended, from the claimed revision — unless the lease is gone.
    async fn record(&mut self, done: StepDone) -> Result<(), AgentError> {
        self.lease.ensure_alive()?;
        let mut record = done.record;
        match &done.result {
            Ok(report) if record.revert => {
                // A verified rollback (whatever the report calls it) is the node back on its
                // baseline; anything else needs a human.
                record.phase = match report.outcome {
                    Outcome::RollbackFailed | Outcome::Refused => NodePhase::RollbackFailed,
                    _ => NodePhase::RolledBack,
                };
                record.rollout_id = Some(report.rollout_id.clone());
                let how = if report.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", report.reason)
                };
                record.reason = Some(format!(
                    "{}; reverted{how}",
                    record.reason.as_deref().unwrap_or("revert")
                ));
            }
            Ok(report) => {
                record.phase = match report.outcome {
                    Outcome::Promoted => NodePhase::Promoted,
                    Outcome::RolledBack => NodePhase::RolledBack,
                    Outcome::RollbackFailed => NodePhase::RollbackFailed,
                    // Refused before anything changed (busy, not ready): nothing to undo.
                    Outcome::Refused => NodePhase::Vetoed,
                };
                record.rollout_id = Some(report.rollout_id.clone());
                record.reason = (!report.reason.is_empty()).then(|| report.reason.clone());
            }
            // Refused before the node was touched.
            Err(e @ (RunnerError::Busy(_) | RunnerError::Usage(_) | RunnerError::NotFound(_))) => {
                record.phase = NodePhase::Vetoed;
                record.reason = Some(chain(e));
            }
            // Anything else may have left the node changed: a human looks.
            Err(e) => {
                record.phase = NodePhase::RollbackFailed;
                record.reason = Some(chain(e));
            }
        }
        tracing::info!(phase = ?record.phase, "step done");
        let written =
            node::finish(&self.client, &self.keys, self.node_id, &record, done.rev).await?;
        if written.is_none() {
            tracing::warn!("node record moved on while the step ran: outcome not recorded");
        }
        Ok(())
    }
}

/// The snapshot to publish under `agent/<node_id>`: the one just read, else (status document
/// unreadable, or naming another node than the one this agent's keys are for) the last one,
/// unhealthy and without a leader. A node id that changes under a running agent must not be
/// published: the conductor names nodes by the snapshot's id, and it would see this agent as
/// another node (or shadow that node's own agent).
fn fresh_or_last(
    read: Result<AgentSnapshot, String>,
    node_id: u64,
    pointer: &str,
    last: &AgentSnapshot,
    value: Option<String>,
    frozen: bool,
) -> AgentSnapshot {
    match read {
        Ok(s) if s.node_id.parse::<u64>() == Ok(node_id) => return s,
        Ok(s) => tracing::warn!(
            "the status document names node {} at {pointer}, this agent serves node {node_id}: \
             reported unhealthy (restart the agent if the node's id really changed)",
            s.node_id
        ),
        Err(e) => tracing::debug!(error = %e, "status document unreadable: reported unhealthy"),
    }
    AgentSnapshot {
        value,
        healthy: false,
        frozen,
        leader: None,
        ..last.clone()
    }
}

/// True on a watch event, false when the stream ended or failed; pending without a watch.
async fn next_event(watch: &mut Option<WatchStream>) -> bool {
    match watch {
        Some(s) => matches!(s.message().await, Ok(Some(_))),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(id: &str, healthy: bool) -> AgentSnapshot {
        AgentSnapshot {
            node_id: id.into(),
            layer: Some("image".into()),
            value: Some("v1".into()),
            healthy,
            frozen: false,
            voters: vec!["1".into(), "2".into(), "3".into()],
            leader: Some("1".into()),
            request_index: Some("42".into()),
        }
    }

    #[test]
    fn a_status_document_naming_another_node_is_not_published_under_this_one() {
        let last = snapshot("2", true);
        let fresh = AgentSnapshot {
            value: Some("v2".into()),
            ..snapshot("2", true)
        };
        let s = fresh_or_last(
            Ok(fresh.clone()),
            2,
            "/raftMetrics/nodeId",
            &last,
            None,
            false,
        );
        assert_eq!(s, fresh);

        // The operator now reports node 3 (or a pointer now finds another node's id): the agent
        // of node 2 keeps node 2's identity, unhealthy and without a leader.
        let other = snapshot("3", true);
        let s = fresh_or_last(
            Ok(other),
            2,
            "/raftMetrics/nodeId",
            &last,
            Some("v2".into()),
            true,
        );
        assert_eq!(s.node_id, "2");
        assert!(!s.healthy && s.frozen && s.leader.is_none(), "{s:?}");
        assert_eq!(s.value.as_deref(), Some("v2"));
        assert_eq!(s.voters, last.voters);

        // Unreadable: the same.
        let s = fresh_or_last(Err("GET …: refused".into()), 2, "/p", &last, None, false);
        assert_eq!((s.node_id.as_str(), s.healthy, s.value), ("2", false, None));
    }
}

//! Leases, presence keys and the wave's compare-and-swap against a real etcd.

use std::time::{Duration, Instant};

use rollgate_fleet::testenv::EtcdServer;
use rollgate_fleet::{FleetError, KeptLease, Keys, store};
use serde_json::json;

#[tokio::test]
async fn a_kept_lease_outlives_its_ttl_and_its_agent_key_goes_with_it() {
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let client = etcd.client().await;
    let keys = Keys::new("t1");
    let lease = KeptLease::grant(&client, Duration::from_secs(2))
        .await
        .unwrap();
    let snapshot = json!({"node_id": 1, "value": "v1.0.0", "healthy": true});
    store::publish_agent(&client, &keys, 1, &snapshot, lease.id())
        .await
        .unwrap();
    // Three TTLs later the key is still there: keep-alive renewed it.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(lease.is_alive());
    assert_eq!(
        store::agents(&client, &keys).await.unwrap(),
        vec![(1, snapshot)]
    );
    lease.revoke(&client).await.unwrap();
    assert!(store::agents(&client, &keys).await.unwrap().is_empty());
}

#[tokio::test]
async fn without_keep_alive_the_agent_key_expires() {
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let mut client = etcd.client().await;
    let keys = Keys::new("t2");
    // A bare lease, never renewed: what the client does by itself.
    let id = client.lease_grant(2, None).await.unwrap().id();
    store::publish_agent(&client, &keys, 7, &json!({}), id)
        .await
        .unwrap();
    assert_eq!(store::agents(&client, &keys).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(store::agents(&client, &keys).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_lease_holder_knows_it_lost_the_lease_when_etcd_stops_answering() {
    let Some(mut etcd) = EtcdServer::start().await else {
        return;
    };
    let client = etcd.client().await;
    let lease = KeptLease::grant(&client, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(lease.ensure_alive().is_ok());
    etcd.kill();
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), lease.lost())
        .await
        .expect("keep-alive failure must be noticed within the TTL");
    // Known before the server could have expired it (two thirds of the TTL at most, plus slack).
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(matches!(
        lease.ensure_alive(),
        Err(FleetError::LeaseLost(_))
    ));
    // And it never comes back by itself, even when etcd does.
    etcd.restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!lease.is_alive());
}

#[tokio::test]
async fn the_wave_is_created_once_and_updated_only_from_the_revision_read() {
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let client = etcd.client().await;
    let key = Keys::new("t3").wave();
    let first = json!({"wave_id": "w1", "nodes": {}});
    let rev = store::create_if_absent(&client, &key, &first)
        .await
        .unwrap()
        .expect("created");
    // A second conductor cannot create another wave over it.
    let other = json!({"wave_id": "w2"});
    assert_eq!(
        store::create_if_absent(&client, &key, &other)
            .await
            .unwrap(),
        None
    );
    let read = store::read(&client, &key).await.unwrap().unwrap();
    assert_eq!((read.value.clone(), read.mod_revision), (first, rev));

    // Two writers from the same read: exactly one wins.
    let a = json!({"wave_id": "w1", "step": "a"});
    let b = json!({"wave_id": "w1", "step": "b"});
    let rev_a = store::update_cas(&client, &key, &a, rev).await.unwrap();
    let rev_b = store::update_cas(&client, &key, &b, rev).await.unwrap();
    assert!(rev_a.is_some_and(|r| r > rev));
    assert_eq!(rev_b, None, "a stale revision must not write");
    let now = store::read(&client, &key).await.unwrap().unwrap();
    assert_eq!(now.value, a);
    assert_eq!(Some(now.mod_revision), rev_a);

    // A value that is not our JSON is an error naming the key, not a guess.
    client
        .clone()
        .put(key.as_str(), "not json", None)
        .await
        .unwrap();
    let err = store::read(&client, &key).await.unwrap_err().to_string();
    assert!(err.contains(&key), "{err}");
}

#[tokio::test]
async fn the_disruption_lock_has_one_holder_and_goes_with_its_lease() {
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let client = etcd.client().await;
    let keys = Keys::new("t4");
    let a = KeptLease::grant(&client, Duration::from_secs(5))
        .await
        .unwrap();
    let b = KeptLease::grant(&client, Duration::from_secs(5))
        .await
        .unwrap();
    let holder_a = json!({"node_id": "1"});
    assert!(
        store::take_lock(&client, &keys, &holder_a, a.id())
            .await
            .unwrap()
            .is_some()
    );
    // Busy for anyone else, at once (never queued).
    assert_eq!(
        store::take_lock(&client, &keys, &json!({"node_id": "2"}), b.id())
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store::lock_holder(&client, &keys).await.unwrap(),
        Some(holder_a)
    );
    // Only its holder's lease releases it.
    assert!(!store::release_lock(&client, &keys, b.id()).await.unwrap());
    assert!(store::lock_holder(&client, &keys).await.unwrap().is_some());
    // The holder's lease ends: the lock is gone with it, and free for the next.
    a.revoke(&client).await.unwrap();
    assert_eq!(store::lock_holder(&client, &keys).await.unwrap(), None);
    assert!(
        store::take_lock(&client, &keys, &json!({"node_id": "2"}), b.id())
            .await
            .unwrap()
            .is_some()
    );
    assert!(store::release_lock(&client, &keys, b.id()).await.unwrap());
    assert_eq!(store::lock_holder(&client, &keys).await.unwrap(), None);
}

#[tokio::test]
async fn halt_stays_until_unhalted() {
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let client = etcd.client().await;
    let keys = Keys::new("t5");
    assert_eq!(store::halted(&client, &keys).await.unwrap(), None);
    store::halt(&client, &keys, "maintenance window", 1)
        .await
        .unwrap();
    let h = store::halted(&client, &keys).await.unwrap().unwrap();
    assert_eq!(h["reason"], "maintenance window");
    assert!(store::unhalt(&client, &keys).await.unwrap());
    assert!(!store::unhalt(&client, &keys).await.unwrap());
    assert_eq!(store::halted(&client, &keys).await.unwrap(), None);
}

/// Waits (up to 5 s) until the watch reports a state matching `f`.
async fn until(
    w: &rollgate_fleet::HaltWatch,
    what: &str,
    f: impl Fn(&rollgate_fleet::HaltState) -> bool,
) {
    let mut rx = w.subscribe();
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| f(s)))
        .await
        .unwrap_or_else(|_| panic!("halt watch never reported {what}; now {:?}", w.state()))
        .unwrap();
}

#[tokio::test]
async fn the_halt_watch_sees_halt_unhalt_and_an_unreachable_etcd_as_halted() {
    use rollgate_fleet::{HaltState, HaltWatch};
    let Some(mut etcd) = EtcdServer::start().await else {
        return;
    };
    let client = etcd.client().await;
    let keys = Keys::new("t6");
    let w = HaltWatch::start(&client, &keys).await;
    assert_eq!(w.state(), HaltState::Clear);
    store::halt(&client, &keys, "stop now", 7).await.unwrap();
    until(
        &w,
        "halted",
        |s| matches!(s, HaltState::Halted(v) if v["reason"] == "stop now"),
    )
    .await;
    store::unhalt(&client, &keys).await.unwrap();
    until(&w, "clear", HaltState::is_clear).await;
    // etcd goes away: that is a halt, not a clear sky.
    etcd.kill();
    until(&w, "unreachable", |s| {
        matches!(s, HaltState::Unreachable(_))
    })
    .await;
    assert!(
        w.state().to_json()["reason"]
            .as_str()
            .unwrap()
            .starts_with("etcd unreachable")
    );
    // Back: clear again by itself, once it answers.
    etcd.restart().await;
    until(&w, "clear after etcd came back", HaltState::is_clear).await;
}

#[tokio::test]
async fn an_intent_is_claimed_once_and_never_by_an_agent_whose_lease_is_gone() {
    use rollgate_fleet::node::{self, NodePhase, NodeRecord};
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let client = etcd.client().await;
    let keys = Keys::new("t7");
    // Node 1's agent is present on its lease; node 2's agent was, but its lease is gone.
    let l1 = KeptLease::grant(&client, Duration::from_secs(5))
        .await
        .unwrap();
    store::publish_agent(&client, &keys, 1, &json!({}), l1.id())
        .await
        .unwrap();
    let l2 = KeptLease::grant(&client, Duration::from_secs(5))
        .await
        .unwrap();
    let l2_id = l2.id();
    store::publish_agent(&client, &keys, 2, &json!({}), l2_id)
        .await
        .unwrap();
    l2.revoke(&client).await.unwrap();

    let intent = NodeRecord::intent("w1", "operator-image", "v1.1.0");
    let rev1 = node::write_intent(&client, &keys, 1, &intent, None)
        .await
        .unwrap()
        .unwrap();
    // A second conductor cannot write over it without having read it.
    assert_eq!(
        node::write_intent(&client, &keys, 1, &intent, None)
            .await
            .unwrap(),
        None
    );
    let rev2 = node::write_intent(&client, &keys, 2, &intent, None)
        .await
        .unwrap()
        .unwrap();

    // Node 2's agent (lease gone) cannot claim: its step never starts.
    assert_eq!(
        node::claim(&client, &keys, 2, &intent, rev2, l2_id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        node::read(&client, &keys, 2)
            .await
            .unwrap()
            .unwrap()
            .0
            .phase,
        NodePhase::Intent
    );

    // Node 1's agent claims once; a second claim from the same read fails.
    let (claimed, crev) = node::claim(&client, &keys, 1, &intent, rev1, l1.id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (claimed.phase, claimed.agent_lease),
        (NodePhase::InFlight, Some(l1.id()))
    );
    assert_eq!(
        node::claim(&client, &keys, 1, &intent, rev1, l1.id())
            .await
            .unwrap(),
        None
    );

    // The outcome is recorded from the claimed revision only.
    let mut done = claimed.clone();
    done.phase = NodePhase::Promoted;
    done.rollout_id = Some("r-1".into());
    assert_eq!(
        node::finish(&client, &keys, 1, &done, rev1).await.unwrap(),
        None
    );
    assert!(
        node::finish(&client, &keys, 1, &done, crev)
            .await
            .unwrap()
            .is_some()
    );
    let (now, _) = node::read(&client, &keys, 1).await.unwrap().unwrap();
    assert_eq!(now, done);
    assert_eq!(
        now.phase.planner_phase(),
        rollgate_core::fleet::Phase::Promoted
    );
}

#[tokio::test]
async fn one_conductor_at_a_time_and_a_lost_one_cannot_write_the_wave() {
    use rollgate_fleet::election::{self, Conductorship};
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let client = etcd.client().await;
    let keys = Keys::new("t8");
    let ttl = Duration::from_secs(5);
    let wait = Duration::from_millis(500);
    assert_eq!(election::current(&client, &keys).await.unwrap(), None);
    let a_lease = KeptLease::grant(&client, ttl).await.unwrap();
    let a = Conductorship::acquire(&client, &keys, a_lease, "conductor-a", wait)
        .await
        .unwrap()
        .expect("the first conductor leads");
    assert_eq!(
        election::current(&client, &keys).await.unwrap().as_deref(),
        Some("conductor-a")
    );
    let wave = keys.wave();
    let rev = store::create_if_absent_guarded(&client, &wave, &json!({"v": 1}), a.guard())
        .await
        .unwrap()
        .unwrap();

    // A second conductor is busy, and leaves nothing queued behind.
    let b_lease = KeptLease::grant(&client, ttl).await.unwrap();
    let b_id = b_lease.id();
    assert!(
        Conductorship::acquire(&client, &keys, b_lease, "conductor-b", wait)
            .await
            .unwrap()
            .is_none()
    );
    let leases = client.clone().leases().await.unwrap();
    assert!(
        !leases.leases().iter().any(|l| l.id() == b_id),
        "b's lease must be revoked"
    );

    // A loses its leadership (its lease ends): its guarded write of the wave fails.
    let a_guard = a.guard();
    a.resign(&client).await.unwrap();
    assert_eq!(
        store::update_cas_guarded(&client, &wave, &json!({"v": 2}), rev, a_guard)
            .await
            .unwrap(),
        None,
        "a conductor that lost the election must not write the wave"
    );
    // C takes over at once and continues the same wave.
    let c = Conductorship::acquire(
        &client,
        &keys,
        KeptLease::grant(&client, ttl).await.unwrap(),
        "conductor-c",
        wait,
    )
    .await
    .unwrap()
    .expect("c leads once a is gone");
    assert!(
        store::update_cas_guarded(&client, &wave, &json!({"v": 2}), rev, c.guard())
            .await
            .unwrap()
            .is_some()
    );
}

//! Probes against the real Postgres and Redis (`scripts/services`), and against closed ports.

use std::time::Duration;

use rollgate_core::config::{DatabaseHeadroom, Postgres, Redis};
use rollgate_core::vocab::CheckStatus;
use rollgate_probe::postgres::probe_postgres;
use rollgate_probe::redis::probe_redis;

use crate::support::{closed_port, service_env};

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn postgres_real_server() {
    let Some(url) = service_env("ROLLGATE_TEST_DATABASE_URL") else {
        return;
    };
    let pg = Postgres {
        url: url.clone(),
        databases: vec!["postgres".into(), "template1".into()],
        snapshot: Default::default(),
    };
    let o = probe_postgres(
        &pg,
        Some(&DatabaseHeadroom {
            max_growth_during_window: 1,
        }),
        T,
    )
    .await;
    assert_eq!(o.status, CheckStatus::Pass, "{}", o.detail);
    assert!(o.observed["databases"]["postgres"].as_u64().unwrap() > 0);
    let pg = Postgres {
        url,
        databases: vec!["postgres".into(), "rollgate_no_such_db".into()],
        snapshot: Default::default(),
    };
    let o = probe_postgres(&pg, None, T).await;
    assert_eq!(o.status, CheckStatus::Fail);
    assert!(
        o.detail
            .contains("database rollgate_no_such_db does not exist"),
        "{}",
        o.detail
    );
}

#[tokio::test]
async fn postgres_down_is_a_clear_failure() {
    let url = closed_port()
        .await
        .replace("http://", "postgres://postgres:secret@")
        + "/node0";
    let o = probe_postgres(
        &Postgres {
            url,
            databases: vec![],
            snapshot: Default::default(),
        },
        None,
        T,
    )
    .await;
    assert_eq!(o.status, CheckStatus::Fail);
    assert!(o.detail.contains("cannot connect"), "{}", o.detail);
    assert!(
        o.detail.contains("postgres://postgres:****@127.0.0.1:"),
        "{}",
        o.detail
    );
}

/// A Postgres that accepts the TCP connection and never answers the startup message: the
/// probe fails within its timeout, naming the endpoint (password redacted), and does not hang.
#[tokio::test]
async fn postgres_that_accepts_and_never_answers_times_out() {
    let addr = crate::support::accept_and_hold().await;
    let timeout = Duration::from_millis(700);
    let start = std::time::Instant::now();
    let o = probe_postgres(
        &Postgres {
            url: format!("postgres://postgres:secret@{addr}/node0"),
            databases: vec!["node0".into()],
            snapshot: Default::default(),
        },
        None,
        timeout,
    )
    .await;
    let took = start.elapsed();
    assert_eq!(o.status, CheckStatus::Fail, "{}", o.detail);
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(1),
        "{took:?}"
    );
    assert!(
        o.detail.contains(&format!(
            "postgres://postgres:****@{addr}/node0: no complete answer within 700ms"
        )),
        "{}",
        o.detail
    );
    assert!(!o.detail.contains("secret"), "{}", o.detail);
}

#[tokio::test]
async fn redis_real_server() {
    let Some(url) = service_env("ROLLGATE_TEST_REDIS_URL") else {
        return;
    };
    let o = probe_redis(&Redis { url }, T).await;
    assert_ne!(o.status, CheckStatus::Fail, "{}", o.detail);
    assert!(o.detail.contains("PONG"), "{}", o.detail);
}

#[tokio::test]
async fn redis_down_and_not_redis() {
    let url = closed_port().await.replace("http://", "redis://");
    let o = probe_redis(&Redis { url }, T).await;
    assert_eq!(o.status, CheckStatus::Fail);
    assert!(o.detail.contains("cannot connect"), "{}", o.detail);
    // Something that accepts and never answers: bounded by the timeout.
    let url = crate::support::serve(crate::support::Answer::Silent)
        .await
        .replace("http://", "redis://");
    let start = std::time::Instant::now();
    let o = probe_redis(&Redis { url }, Duration::from_millis(500)).await;
    assert_eq!(o.status, CheckStatus::Fail);
    assert!(start.elapsed() < Duration::from_secs(3));
}

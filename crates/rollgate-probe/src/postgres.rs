//! The Postgres probe: connect, `SELECT 1`, each configured database exists and accepts
//! connections, the server accepts writes, database sizes, and — when the server is local and
//! its data directory is visible — the free space of the filesystem holding it, judged against
//! `[headroom.database].max_growth_during_window`.
//!
//! Writability is proven with a temporary table inside a transaction that is rolled back: it
//! touches no user table and leaves nothing behind, so `check` still changes nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rollgate_core::config::{DatabaseHeadroom, Postgres};
use rollgate_core::redact::redact_url;
use rollgate_core::units::format_size;
use serde_json::Value;
use tokio_postgres::config::Host;

use crate::disk::disk_usage;
use crate::errors::ProbeError;
use crate::outcome::Outcome;

/// What the probe measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PostgresObservation {
    pub server_version: String,
    /// Size in bytes of every configured database that exists.
    pub databases: BTreeMap<String, u64>,
    pub missing: Vec<String>,
    pub no_connect: Vec<String>,
    pub read_only: Option<String>,
    pub data_directory: Option<String>,
    pub data_dir_free_bytes: Option<u64>,
}

/// Probe the server; the whole probe is bounded by `timeout`.
pub async fn probe_postgres(
    pg: &Postgres,
    headroom: Option<&DatabaseHeadroom>,
    timeout: Duration,
) -> Outcome {
    let endpoint = redact_url(&pg.url);
    let obs = match tokio::time::timeout(timeout, observe(pg, timeout)).await {
        Ok(Ok(obs)) => obs,
        Ok(Err(e)) => return e.into(),
        Err(_) => {
            return ProbeError::Timeout {
                endpoint,
                after: timeout,
            }
            .into();
        }
    };
    judge(&endpoint, &obs, headroom)
}

fn judge(
    endpoint: &str,
    obs: &PostgresObservation,
    headroom: Option<&DatabaseHeadroom>,
) -> Outcome {
    let observed = serde_json::to_value(obs).unwrap_or(Value::Null);
    let mut problems = Vec::new();
    for db in &obs.missing {
        problems.push(format!("database {db} does not exist"));
    }
    for db in &obs.no_connect {
        problems.push(format!(
            "database {db} does not accept connections for this user"
        ));
    }
    if let Some(why) = &obs.read_only {
        problems.push(format!("server is read-only ({why})"));
    }
    let mut notes = Vec::new();
    let total: u64 = obs.databases.values().sum();
    notes.push(format!(
        "{} database(s), {}",
        obs.databases.len(),
        format_size(total)
    ));
    match (headroom, obs.data_dir_free_bytes) {
        (Some(h), Some(free)) if free < h.max_growth_during_window => problems.push(format!(
            "{} free on the data directory's filesystem, below max_growth_during_window {}",
            format_size(free),
            format_size(h.max_growth_during_window)
        )),
        (_, Some(free)) => notes.push(format!("{} free for the data directory", format_size(free))),
        (Some(_), None) => notes
            .push("data directory not local or not visible: its free space is not measured".into()),
        (None, None) => {}
    }
    if problems.is_empty() {
        Outcome::pass(format!("{endpoint}: {}", notes.join(", ")), observed)
    } else {
        Outcome::fail(format!("{endpoint}: {}", problems.join("; ")), observed)
    }
}

async fn observe(pg: &Postgres, timeout: Duration) -> Result<PostgresObservation, ProbeError> {
    let endpoint = redact_url(&pg.url);
    let err = |what: &str| {
        let endpoint = endpoint.clone();
        let what = what.to_string();
        move |source| ProbeError::Postgres {
            endpoint,
            what,
            source,
        }
    };
    let mut cfg: tokio_postgres::Config = pg.url.parse().map_err(err("invalid connection URL"))?;
    cfg.connect_timeout(timeout);
    cfg.application_name("rollgate-probe");
    let local = cfg.get_hosts().iter().all(|h| match h {
        Host::Tcp(name) => matches!(
            rollgate_core::vocab::Mode::of_url(&format!("tcp://{name}")),
            rollgate_core::vocab::Mode::LocalnetLoopback
        ),
        Host::Unix(_) => true,
    });
    let (client, connection) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(err("cannot connect"))?;
    // The connection future drives the socket; it ends when `client` is dropped.
    let driver = tokio::spawn(connection);
    let _abort = AbortOnDrop(driver);

    let mut obs = PostgresObservation::default();
    client
        .simple_query("SELECT 1")
        .await
        .map_err(err("SELECT 1 failed"))?;
    let row = client
        .query_one("SELECT current_setting('server_version'), pg_is_in_recovery(), current_setting('transaction_read_only')", &[])
        .await
        .map_err(err("cannot read server state"))?;
    obs.server_version = row.get(0);
    let in_recovery: bool = row.get(1);
    let ro: String = row.get(2);
    if in_recovery {
        obs.read_only = Some("a standby in recovery".into());
    } else if ro == "on" {
        obs.read_only = Some("transaction_read_only is on".into());
    } else if let Err(e) = client
        .batch_execute(
            "BEGIN; CREATE TEMP TABLE rollgate_probe (x int) ON COMMIT DROP; INSERT INTO rollgate_probe VALUES (1); ROLLBACK",
        )
        .await
    {
        obs.read_only = Some(format!("a temporary-table write failed: {}", crate::errors::chain(&e)));
    }

    if !pg.databases.is_empty() {
        let rows = client
            .query(
                "SELECT datname, datallowconn AND has_database_privilege(datname, 'CONNECT'), \
                 CASE WHEN has_database_privilege(datname, 'CONNECT') THEN pg_database_size(datname) END \
                 FROM pg_database WHERE datname = ANY($1)",
                &[&pg.databases],
            )
            .await
            .map_err(err("cannot list databases"))?;
        for name in &pg.databases {
            match rows.iter().find(|r| r.get::<_, String>(0) == *name) {
                None => obs.missing.push(name.clone()),
                Some(r) => {
                    if !r.get::<_, bool>(1) {
                        obs.no_connect.push(name.clone());
                    }
                    if let Some(size) = r.get::<_, Option<i64>>(2) {
                        obs.databases.insert(name.clone(), size.max(0) as u64);
                    }
                }
            }
        }
    }

    // Visible to superusers and pg_read_all_settings members only; its absence is not an error.
    if let Ok(rows) = client.simple_query("SHOW data_directory").await {
        obs.data_directory = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        });
    }
    if local && let Some(dir) = &obs.data_directory {
        obs.data_dir_free_bytes = disk_usage(Path::new(dir)).ok().map(|u| u.free_bytes);
    }
    Ok(obs)
}

/// The size in bytes (`pg_database_size`) of each configured database that exists, and
/// nothing else: light enough to sample every few seconds through a bake period
/// (`rollgate-runner`'s trend sampler). Bounded by `timeout` as a whole.
pub async fn database_sizes(
    pg: &Postgres,
    timeout: Duration,
) -> Result<BTreeMap<String, u64>, ProbeError> {
    let endpoint = redact_url(&pg.url);
    let work = async {
        let err = |what: &'static str| {
            let endpoint = endpoint.clone();
            move |source| ProbeError::Postgres {
                endpoint,
                what: what.to_string(),
                source,
            }
        };
        let mut cfg: tokio_postgres::Config =
            pg.url.parse().map_err(err("invalid connection URL"))?;
        cfg.connect_timeout(timeout);
        cfg.application_name("rollgate-bake");
        let (client, connection) = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(err("cannot connect"))?;
        let _driver = AbortOnDrop(tokio::spawn(connection));
        let rows = client
            .query(
                "SELECT datname, pg_database_size(datname) FROM pg_database \
                 WHERE datname = ANY($1) AND has_database_privilege(datname, 'CONNECT')",
                &[&pg.databases],
            )
            .await
            .map_err(err("cannot read database sizes"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as u64))
            .collect())
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout {
            endpoint,
            after: timeout,
        }),
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollgate_core::vocab::CheckStatus;

    #[test]
    fn judgement() {
        let mut obs = PostgresObservation {
            server_version: "15".into(),
            ..Default::default()
        };
        obs.databases.insert("node0".into(), 8 << 20);
        obs.data_dir_free_bytes = Some(1 << 30);
        let h = DatabaseHeadroom {
            max_growth_during_window: 2 << 30,
        };
        let o = judge("pg", &obs, Some(&h));
        assert_eq!(o.status, CheckStatus::Fail);
        assert!(
            o.detail.contains("below max_growth_during_window 2.0 GiB"),
            "{}",
            o.detail
        );
        obs.data_dir_free_bytes = Some(4 << 30);
        assert_eq!(judge("pg", &obs, Some(&h)).status, CheckStatus::Pass);
        obs.missing.push("kyc".into());
        let o = judge("pg", &obs, None);
        assert!(
            o.detail.contains("database kyc does not exist"),
            "{}",
            o.detail
        );
    }
}

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

use rollgate_core::config::{DatabaseHeadroom, Postgres, SnapshotNeeds};
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
    /// Free space where `dump` snapshots are written (`state_dir/snapshots`, or the nearest
    /// existing parent), when a layer takes one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_dir_free_bytes: Option<u64>,
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
    judge(&endpoint, &obs, headroom, &pg.snapshot)
}

fn judge(
    endpoint: &str,
    obs: &PostgresObservation,
    headroom: Option<&DatabaseHeadroom>,
    snapshots: &SnapshotNeeds,
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
    // A template snapshot is a second copy of its database on the same server: its expected
    // size adds to the room the update window needs.
    let size_of =
        |dbs: &[String]| -> u64 { dbs.iter().filter_map(|d| obs.databases.get(d)).sum::<u64>() };
    let template = size_of(&snapshots.template);
    let need = headroom.map(|h| h.max_growth_during_window).unwrap_or(0) + template;
    match (headroom.is_some() || template > 0, obs.data_dir_free_bytes) {
        (true, Some(free)) if free < need => problems.push(if template > 0 {
            format!(
                "{} free on the data directory's filesystem, below {} (max_growth_during_window {} + template snapshots {})",
                format_size(free),
                format_size(need),
                format_size(headroom.map(|h| h.max_growth_during_window).unwrap_or(0)),
                format_size(template)
            )
        } else {
            format!(
                "{} free on the data directory's filesystem, below max_growth_during_window {}",
                format_size(free),
                format_size(need)
            )
        }),
        (_, Some(free)) => notes.push(format!("{} free for the data directory", format_size(free))),
        (true, None) => notes
            .push("data directory not local or not visible: its free space is not measured".into()),
        (false, None) => {}
    }
    // A dump is at most about the database's size (compressed, usually much less).
    let dump = size_of(&snapshots.dump);
    if let Some(free) = obs.snapshot_dir_free_bytes
        && free < dump
    {
        problems.push(format!(
            "{} free for dump snapshots under {}, below the dumped databases' size {}",
            format_size(free),
            snapshots
                .dump_dir
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            format_size(dump)
        ));
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
    if let Some(dir) = &pg.snapshot.dump_dir {
        // The directory is made by the first dump: measure its nearest existing ancestor.
        obs.snapshot_dir_free_bytes = dir
            .ancestors()
            .find(|d| d.exists())
            .and_then(|d| disk_usage(d).ok())
            .map(|u| u.free_bytes);
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
        let none = SnapshotNeeds::default();
        let o = judge("pg", &obs, Some(&h), &none);
        assert_eq!(o.status, CheckStatus::Fail);
        assert!(
            o.detail.contains("below max_growth_during_window 2.0 GiB"),
            "{}",
            o.detail
        );
        obs.data_dir_free_bytes = Some(4 << 30);
        assert_eq!(judge("pg", &obs, Some(&h), &none).status, CheckStatus::Pass);
        obs.missing.push("kyc".into());
        let o = judge("pg", &obs, None, &none);
        assert!(
            o.detail.contains("database kyc does not exist"),
            "{}",
            o.detail
        );
    }

    #[test]
    fn a_template_snapshot_adds_its_database_to_the_headroom() {
        let mut obs = PostgresObservation::default();
        obs.databases.insert("node0".into(), 3 << 30);
        obs.data_dir_free_bytes = Some(4 << 30);
        let h = DatabaseHeadroom {
            max_growth_during_window: 2 << 30,
        };
        let none = SnapshotNeeds::default();
        assert_eq!(judge("pg", &obs, Some(&h), &none).status, CheckStatus::Pass);
        let template = SnapshotNeeds {
            template: vec!["node0".into()],
            ..SnapshotNeeds::default()
        };
        let o = judge("pg", &obs, Some(&h), &template);
        assert_eq!(o.status, CheckStatus::Fail);
        assert!(
            o.detail.contains("template snapshots 3.0 GiB"),
            "{}",
            o.detail
        );
        // Without [headroom.database] the snapshot alone is still checked.
        obs.data_dir_free_bytes = Some(1 << 30);
        assert_eq!(judge("pg", &obs, None, &template).status, CheckStatus::Fail);
        let dump = SnapshotNeeds {
            dump: vec!["node0".into()],
            dump_dir: Some("/var/lib/rollgate/snapshots".into()),
            ..SnapshotNeeds::default()
        };
        obs.snapshot_dir_free_bytes = Some(1 << 30);
        let o = judge("pg", &obs, None, &dump);
        assert!(o.detail.contains("free for dump snapshots"), "{}", o.detail);
    }
}

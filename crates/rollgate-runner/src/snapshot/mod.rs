//! Database snapshots for layers that migrate: saved with the layer's components stopped before
//! the change, restored with them stopped on the way back, so a rolled-back version finds the
//! rows it wrote and understands (issue 13). Two methods ([`SnapshotMethod`]):
//!
//! - [`template`]: `CREATE DATABASE snap TEMPLATE db`, a file copy inside the same server;
//!   fast, needs no other session on the database (true while the components are stopped).
//! - [`dump`]: `pg_dump -Fc` to a 0600 file under `state_dir/snapshots`, `pg_restore --clean`;
//!   works against any server, slower, needs the PostgreSQL client programs.
//!
//! Every operation is idempotent, so a resumed rollout simply redoes the one a crash
//! interrupted: taking drops a half-made snapshot first, restoring drops and recreates.
//! The connection string's password never reaches a command line or an output: the client
//! programs get it through `PGPASSWORD` in their environment only, and errors go through the
//! process-wide scrubber (`rollgate_core::secrets`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rollgate_core::config::{Config, SnapshotMethod};
use rollgate_core::redact::redact_url;
use rollgate_journal::{NewSnapshot, SnapshotRecord};
use tokio_postgres::Client;

pub mod dump;
pub mod prune;
pub mod template;

pub use prune::{PruneReport, prune};

/// How long an operation waits for the database's other sessions to end after the components
/// stopped (a connection pool closing, a probe finishing) before it refuses.
pub const IDLE_WAIT: Duration = Duration::from_secs(10);

/// How long one snapshot or restore may take before it is abandoned (a dump of many GB).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(3600);

/// Why a snapshot, a restore or a drop failed. Messages fit "failed to …" and never hold a
/// password.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot needs [dependencies.postgres]")]
    NoPostgres,
    #[error("{what} on {endpoint}")]
    Postgres {
        endpoint: String,
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(
        "database {database} still has {count} other session(s) ({who}) with its components \
         stopped: something else uses it; stop that client{hint}"
    )]
    Busy {
        database: String,
        count: usize,
        who: String,
        hint: &'static str,
    },
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Program(String),
    #[error("failed to access {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// One database of a layer's `snapshot` list, where its snapshot of one rollout lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    pub database: String,
    pub method: SnapshotMethod,
    /// The snapshot database (template) or the dump file (dump).
    pub location: String,
}

impl Target {
    /// The target of `database` for `rollout_id`: names are derived, so a resumed rollout
    /// finds the snapshot its interrupted run began.
    pub fn new(
        config: &Config,
        rollout_id: &str,
        database: &str,
        method: SnapshotMethod,
    ) -> Target {
        let id = snapshot_id(rollout_id, database);
        let location = match method {
            SnapshotMethod::Template => id.clone(),
            SnapshotMethod::Dump => dump_path(config, &id).display().to_string(),
        };
        Target {
            id,
            database: database.to_string(),
            method,
            location,
        }
    }

    /// The journal row written before the snapshot is taken.
    pub fn record(&self, rollout_id: &str, baseline_id: &str) -> NewSnapshot {
        NewSnapshot {
            id: self.id.clone(),
            rollout_id: rollout_id.to_string(),
            baseline_id: Some(baseline_id.to_string()),
            database: self.database.clone(),
            method: self.method.as_str().to_string(),
            location: self.location.clone(),
        }
    }

    /// The target a journal row describes.
    pub fn of_record(r: &SnapshotRecord) -> Option<Target> {
        let method = match r.method.as_str() {
            "template" => SnapshotMethod::Template,
            "dump" => SnapshotMethod::Dump,
            _ => return None,
        };
        Some(Target {
            id: r.id.clone(),
            database: r.database.clone(),
            method,
            location: r.location.clone(),
        })
    }
}

/// `rgsnap_<database>_<rollout>`: lowercase letters, digits and `_`, at most 63 bytes (a
/// PostgreSQL identifier), unique per rollout and database.
pub fn snapshot_id(rollout_id: &str, database: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| c.to_ascii_lowercase())
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let rollout = clean(rollout_id);
    let mut db = clean(database);
    let room = 63usize.saturating_sub("rgsnap__".len() + rollout.len());
    db.truncate(room);
    format!("rgsnap_{db}_{rollout}")
}

/// `state_dir/snapshots/<id>.dump`.
pub fn dump_path(config: &Config, id: &str) -> PathBuf {
    config
        .node
        .state_dir
        .join("snapshots")
        .join(format!("{id}.dump"))
}

/// Take one snapshot (the database must be idle: its components stopped). Returns its size.
pub async fn take(config: &Config, target: &Target) -> Result<u64, SnapshotError> {
    bounded(async {
        match target.method {
            SnapshotMethod::Template => template::take(config, target).await,
            SnapshotMethod::Dump => dump::take(config, target).await,
        }
    })
    .await
}

/// `work` within [`OPERATION_TIMEOUT`].
async fn bounded<T>(
    work: impl std::future::Future<Output = Result<T, SnapshotError>>,
) -> Result<T, SnapshotError> {
    tokio::time::timeout(OPERATION_TIMEOUT, work)
        .await
        .map_err(|_| SnapshotError::Timeout(OPERATION_TIMEOUT))?
}

/// Put the database back to the snapshot (its components stopped).
pub async fn restore(config: &Config, target: &Target) -> Result<(), SnapshotError> {
    bounded(async {
        match target.method {
            SnapshotMethod::Template => template::restore(config, target).await,
            SnapshotMethod::Dump => dump::restore(config, target).await,
        }
    })
    .await
}

/// Remove a snapshot (missing already is fine).
pub async fn remove(config: &Config, target: &Target) -> Result<(), SnapshotError> {
    match target.method {
        SnapshotMethod::Template => template::remove(config, target).await,
        SnapshotMethod::Dump => match tokio::fs::remove_file(&target.location).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SnapshotError::Io {
                path: PathBuf::from(&target.location),
                source,
            }),
        },
    }
}

/// `pg_database_size` of each database, for the preflight's headroom (the snapshot's expected
/// size) and the report.
pub async fn database_sizes(
    config: &Config,
    databases: &[String],
) -> Result<Vec<(String, u64)>, SnapshotError> {
    let (client, endpoint) = admin(config, None).await?;
    let rows = client
        .query(
            "SELECT datname, pg_database_size(datname) FROM pg_database WHERE datname = ANY($1)",
            &[&databases],
        )
        .await
        .map_err(pg_err(&endpoint, "cannot read database sizes"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as u64))
        .collect())
}

/// The configured server's connection settings.
pub(crate) fn pg_config(
    config: &Config,
) -> Result<(tokio_postgres::Config, String), SnapshotError> {
    let pg = config
        .dependencies
        .postgres
        .as_ref()
        .ok_or(SnapshotError::NoPostgres)?;
    let endpoint = redact_url(&pg.url);
    let cfg: tokio_postgres::Config = pg.url.parse().map_err(|source| SnapshotError::Postgres {
        endpoint: endpoint.clone(),
        what: "invalid connection URL".into(),
        source,
    })?;
    Ok((cfg, endpoint))
}

/// A maintenance connection to the server, never to `avoid` (a database about to be copied,
/// dropped or created cannot be the one this session sits in): the connection string's own
/// database when it is another one, else `postgres`, else `template1`.
pub(crate) async fn admin(
    config: &Config,
    avoid: Option<&str>,
) -> Result<(Client, String), SnapshotError> {
    let (base, endpoint) = pg_config(config)?;
    let own = base.get_dbname().map(str::to_string);
    let mut candidates: Vec<String> = Vec::new();
    if let Some(o) = own.filter(|o| Some(o.as_str()) != avoid) {
        candidates.push(o);
    }
    for d in ["postgres", "template1"] {
        if Some(d) != avoid && !candidates.iter().any(|c| c == d) {
            candidates.push(d.to_string());
        }
    }
    let mut last = None;
    for db in candidates {
        let mut cfg = base.clone();
        cfg.dbname(&db);
        cfg.application_name("rollgate-snapshot");
        cfg.connect_timeout(Duration::from_secs(10));
        match cfg.connect(tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                return Ok((client, endpoint));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(source) => SnapshotError::Postgres {
            endpoint,
            what: "cannot connect for a snapshot".into(),
            source,
        },
        None => SnapshotError::Missing("no maintenance database to connect to".into()),
    })
}

pub(crate) fn pg_err(
    endpoint: &str,
    what: &str,
) -> impl FnOnce(tokio_postgres::Error) -> SnapshotError {
    let (endpoint, what) = (endpoint.to_string(), what.to_string());
    move |source| SnapshotError::Postgres {
        endpoint,
        what,
        source,
    }
}

/// Wait up to [`IDLE_WAIT`] for every other session on `database` to end; refuse (naming the
/// clients) when some remain. rollgate never terminates a client it does not know: a session
/// left after the components stopped is something the layer does not cover.
pub(crate) async fn wait_idle(
    client: &Client,
    endpoint: &str,
    database: &str,
    hint: &'static str,
) -> Result<(), SnapshotError> {
    let started = std::time::Instant::now();
    loop {
        let rows = client
            .query(
                "SELECT coalesce(nullif(application_name, ''), usename::text, 'unknown'), pid \
                 FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&database],
            )
            .await
            .map_err(pg_err(endpoint, "cannot list sessions"))?;
        if rows.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= IDLE_WAIT {
            let who = rows
                .iter()
                .map(|r| format!("{} pid {}", r.get::<_, String>(0), r.get::<_, i32>(1)))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(SnapshotError::Busy {
                database: database.to_string(),
                count: rows.len(),
                who,
                hint,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Quote a PostgreSQL identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Create `dir` (mode 0700) when missing.
pub(crate) fn private_dir(dir: &Path) -> Result<(), SnapshotError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| SnapshotError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_are_postgres_identifiers_unique_per_rollout() {
        let id = snapshot_id("r-20261201T210100Z-1a2b", "node0");
        assert_eq!(id, "rgsnap_node0_r20261201t210100z1a2b");
        let long = snapshot_id("r-20261201T210100Z-1a2b", &"x".repeat(100));
        assert!(long.len() <= 63, "{long}");
        assert!(long.ends_with("_r20261201t210100z1a2b"), "{long}");
        assert_ne!(
            snapshot_id("r-20261201T210100Z-1a2b", "kyc"),
            snapshot_id("r-20261201T210100Z-1a2c", "kyc")
        );
    }
}

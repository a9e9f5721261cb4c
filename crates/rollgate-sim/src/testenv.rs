//! Helpers for tests that need the real Postgres and Redis (`scripts/services` starts them and
//! prints the variables). Outside CI a missing variable means "skip this test"; under `CI=true`
//! it is a hard failure, so a misconfigured CI cannot pass by skipping everything.
//!
//! ```no_run
//! # async fn t() {
//! let Some(services) = rollgate_sim::testenv::require_services() else { return };
//! let dbs = rollgate_sim::testenv::NodeDatabases::create(&services.database_url).await.unwrap();
//! // ... dbs.node0.url(), dbs.kyc.url(), dbs.redis_prefix ...
//! dbs.drop().await;
//! # }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::db;
use crate::errors::SimError;

pub const DATABASE_URL_VAR: &str = "ROLLGATE_TEST_DATABASE_URL";
pub const REDIS_URL_VAR: &str = "ROLLGATE_TEST_REDIS_URL";

const TIMEOUT: Duration = Duration::from_secs(10);

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `ROLLGATE_TEST_DATABASE_URL` (an admin URL, e.g. `postgres://postgres@127.0.0.1:5433/postgres`).
pub fn database_url() -> Option<String> {
    var(DATABASE_URL_VAR)
}

/// `ROLLGATE_TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6379`).
pub fn redis_url() -> Option<String> {
    var(REDIS_URL_VAR)
}

/// Whether this runs under CI (`CI=true` or `CI=1`).
pub fn in_ci() -> bool {
    matches!(var("CI").as_deref(), Some("true" | "1"))
}

fn require(name: &str, value: Option<String>) -> Option<String> {
    if value.is_some() {
        return value;
    }
    if in_ci() {
        panic!(
            "{name} is not set but CI=true: start the services with `eval \"$(scripts/services)\"` \
             before running the tests"
        );
    }
    eprintln!(
        "skipped: {name} is not set (run `eval \"$(scripts/services)\"` to enable this test)"
    );
    None
}

/// The database URL, or None (test skipped) outside CI; panics under CI when missing.
pub fn require_database_url() -> Option<String> {
    require(DATABASE_URL_VAR, database_url())
}

/// The Redis URL, or None (test skipped) outside CI; panics under CI when missing.
pub fn require_redis_url() -> Option<String> {
    require(REDIS_URL_VAR, redis_url())
}

/// Both service URLs.
#[derive(Debug, Clone)]
pub struct Services {
    pub database_url: String,
    pub redis_url: String,
}

/// Both services, or None (test skipped) outside CI; panics under CI when either is missing.
pub fn require_services() -> Option<Services> {
    let database_url = require_database_url();
    let redis_url = require_redis_url();
    Some(Services {
        database_url: database_url?,
        redis_url: redis_url?,
    })
}

/// A short suffix unique to this process and call, valid in identifiers (`p1234_7_5f3a`).
pub fn unique_suffix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("p{}_{n}_{:x}", std::process::id(), nanos & 0xffff)
}

/// A freshly created database, dropped by [`TestDatabase::drop`] (or, best effort, when the
/// value is dropped without it).
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
    dropped: bool,
}

impl TestDatabase {
    /// Creates `<prefix>_<unique suffix>` on the server of `admin_url`.
    pub async fn create(admin_url: &str, prefix: &str) -> Result<TestDatabase, SimError> {
        Self::create_named(admin_url, &format!("{prefix}_{}", unique_suffix())).await
    }

    /// Creates a database with exactly this name (it must not exist yet).
    pub async fn create_named(admin_url: &str, name: &str) -> Result<TestDatabase, SimError> {
        let url = db::with_dbname(admin_url, name);
        db::ensure_database(&url, TIMEOUT).await?;
        Ok(TestDatabase {
            admin_url: admin_url.to_owned(),
            name: name.to_owned(),
            url,
            dropped: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL connecting to this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Connects to this database.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, SimError> {
        db::connect_pg(&self.url, TIMEOUT).await
    }

    /// Give an operator database the history of a node that has run for a while: 4,000 rows of
    /// the operator's table (about 2.5 MB, marked version `aged`, request index 0), then
    /// `VACUUM`, which writes the free-space and visibility maps. A young table grows in jumps
    /// (its first pages, those maps) that a storage-growth comparison over a few seconds reads
    /// as a trend; an aged one grows page by page. Safe while the operator runs (it only reads
    /// the last row at start).
    pub async fn age_operator_table(&self) -> Result<(), SimError> {
        let c = self.connect().await?;
        c.batch_execute(crate::services::operator::CREATE_TABLE)
            .await?;
        c.batch_execute(
            "INSERT INTO operator_requests (request_index, tx_hash, version, payload) \
             SELECT 0, '0x' || md5(i::text) || md5((i + 1)::text), 'aged', \
                    decode(repeat(md5(i::text), 32), 'hex') \
             FROM generate_series(1, 4000) AS i",
        )
        .await?;
        // Its own statement: VACUUM cannot run inside the implicit transaction of a batch.
        c.batch_execute("VACUUM ANALYZE operator_requests").await?;
        Ok(())
    }

    /// Drops the database (closing sessions still on it).
    pub async fn drop(mut self) {
        self.dropped = true;
        if let Err(e) = db::drop_database(&self.admin_url, &self.name, TIMEOUT).await {
            eprintln!("warning: failed to drop test database {}: {e}", self.name);
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Not dropped explicitly (a failed assertion unwound past it): clean up from a detached
        // thread with its own runtime, never blocking the caller's runtime.
        let admin = self.admin_url.clone();
        let name = self.name.clone();
        let _ = std::thread::Builder::new()
            .name("drop-test-db".into())
            .spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    let _ = rt.block_on(db::drop_database(&admin, &name, TIMEOUT));
                }
            });
    }
}

/// The two databases of one node (`node0_<suffix>`, `kyc_<suffix>`) and a Redis key prefix with
/// the same suffix, so tests running in parallel never share state.
#[derive(Debug)]
pub struct NodeDatabases {
    pub node0: TestDatabase,
    pub kyc: TestDatabase,
    pub redis_prefix: String,
}

impl NodeDatabases {
    pub async fn create(admin_url: &str) -> Result<NodeDatabases, SimError> {
        let suffix = unique_suffix();
        let node0 = TestDatabase::create_named(admin_url, &format!("node0_{suffix}")).await?;
        let kyc = TestDatabase::create_named(admin_url, &format!("kyc_{suffix}")).await?;
        Ok(NodeDatabases {
            node0,
            kyc,
            redis_prefix: format!("node0_{suffix}"),
        })
    }

    /// Drops both databases and deletes the Redis keys under the prefix (when a URL is given).
    pub async fn drop_with_redis(self, redis_url: Option<&str>) {
        if let Some(url) = redis_url
            && let Ok(mut c) = db::connect_redis(url, TIMEOUT).await
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", self.redis_prefix))
                .query_async(&mut c)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _ = redis::cmd("DEL").arg(keys).query_async::<()>(&mut c).await;
            }
        }
        self.node0.drop().await;
        self.kyc.drop().await;
    }

    /// Drops both databases.
    pub async fn drop(self) {
        self.drop_with_redis(None).await;
    }
}

//! Connections to the real Postgres and Redis, and the URL surgery the simulator needs: pointing
//! a URL at another database (fresh per-test databases) or at a [`FaultProxy`](crate::FaultProxy)
//! in front of the real server.

use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, NoTls};

use crate::errors::SimError;
use crate::proxy::Endpoint;

/// Postgres SQLSTATE for "database does not exist".
const INVALID_CATALOG_NAME: &str = "3D000";
/// Postgres SQLSTATE for "database already exists" (lost a creation race).
const DUPLICATE_DATABASE: &str = "42P04";
/// A concurrent CREATE DATABASE can also surface as a unique violation on pg_database.
const UNIQUE_VIOLATION: &str = "23505";

fn pg_config(url: &str) -> Result<tokio_postgres::Config, SimError> {
    url.parse::<tokio_postgres::Config>()
        .map_err(SimError::Postgres)
}

/// Connects to Postgres within `timeout`; the connection task runs in the background and ends
/// when the client is dropped or the server goes away (then `Client::is_closed` turns true).
pub async fn connect_pg(url: &str, timeout: Duration) -> Result<Client, SimError> {
    let mut config = pg_config(url)?;
    config.connect_timeout(timeout);
    let (client, conn) = tokio::time::timeout(timeout, config.connect(NoTls))
        .await
        .map_err(|_| SimError::Timeout(timeout))??;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "postgres connection ended");
        }
    });
    Ok(client)
}

/// Like [`connect_pg`], but creates the database first when it does not exist yet, as a fresh
/// node does on first start.
pub async fn connect_pg_creating(url: &str, timeout: Duration) -> Result<Client, SimError> {
    match connect_pg(url, timeout).await {
        Err(SimError::Postgres(e)) if e.code().map(|c| c.code()) == Some(INVALID_CATALOG_NAME) => {
            ensure_database(url, timeout).await?;
            connect_pg(url, timeout).await
        }
        other => other,
    }
}

/// Creates the database named in `url` (connecting to `postgres` on the same server) unless it
/// exists.
pub async fn ensure_database(url: &str, timeout: Duration) -> Result<(), SimError> {
    let name = pg_config(url)?
        .get_dbname()
        .map(str::to_owned)
        .ok_or(SimError::InvalidUrl {
            url: redact(url),
            reason: "no database name",
        })?;
    let admin = connect_pg(&with_dbname(url, "postgres"), timeout).await?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let sql = format!("CREATE DATABASE {}", quote_ident(&name));
        if let Err(e) = admin.batch_execute(&sql).await {
            let code = e.code().map(|c| c.code());
            if code != Some(DUPLICATE_DATABASE) && code != Some(UNIQUE_VIOLATION) {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Drops a database, closing other sessions on it (Postgres 13+).
pub async fn drop_database(admin_url: &str, name: &str, timeout: Duration) -> Result<(), SimError> {
    let admin = connect_pg(&with_dbname(admin_url, "postgres"), timeout).await?;
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(name)
        ))
        .await?;
    Ok(())
}

/// Quotes a Postgres identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Returns `url` pointing at database `name` on the same server. Works for URLs
/// (`postgres://u@h:p/db?opts`) and for key-value strings (`host=… dbname=…`).
pub fn with_dbname(url: &str, name: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (main, query) = match rest.split_once('?') {
                Some((m, q)) => (m, Some(q)),
                None => (rest, None),
            };
            let authority = main.split('/').next().unwrap_or("");
            let mut out = format!("{scheme}://{authority}/{}", percent_encode(name));
            if let Some(q) = query {
                out.push('?');
                out.push_str(q);
            }
            out
        }
        // In key-value strings a later key wins.
        None => format!("{url} dbname={name}"),
    }
}

/// The server a Postgres URL points at, as a proxy upstream.
pub fn pg_endpoint(url: &str) -> Result<Endpoint, SimError> {
    let config = pg_config(url)?;
    let port = config.get_ports().first().copied().unwrap_or(5432);
    match config.get_hosts().first() {
        Some(Host::Tcp(h)) => Ok(Endpoint::Tcp(format!("{h}:{port}"))),
        Some(Host::Unix(dir)) => Ok(Endpoint::Unix(dir.join(format!(".s.PGSQL.{port}")))),
        None => Ok(Endpoint::Tcp(format!("localhost:{port}"))),
    }
}

/// Rewrites a Postgres URL to reach the same database through `proxy` (a loopback address).
pub fn pg_url_via(url: &str, proxy: std::net::SocketAddr) -> Result<String, SimError> {
    let config = pg_config(url)?;
    let mut userinfo = String::new();
    if let Some(user) = config.get_user() {
        userinfo.push_str(&percent_encode(user));
        if let Some(pw) = config.get_password() {
            userinfo.push(':');
            userinfo.push_str(&percent_encode(&String::from_utf8_lossy(pw)));
        }
        userinfo.push('@');
    }
    let db = config.get_dbname().unwrap_or("postgres");
    Ok(format!(
        "postgres://{userinfo}{}:{}/{}",
        proxy.ip(),
        proxy.port(),
        percent_encode(db)
    ))
}

/// The server a Redis URL points at, as a proxy upstream.
pub fn redis_endpoint(url: &str) -> Result<Endpoint, SimError> {
    let client = redis::Client::open(url)?;
    match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(h, p) => Ok(Endpoint::Tcp(format!("{h}:{p}"))),
        redis::ConnectionAddr::Unix(path) => Ok(Endpoint::Unix(path.clone())),
        _ => Err(SimError::InvalidUrl {
            url: redact(url),
            reason: "tls redis is not supported by the simulator",
        }),
    }
}

/// Rewrites a Redis URL to reach the same server through `proxy`.
pub fn redis_url_via(url: &str, proxy: std::net::SocketAddr) -> Result<String, SimError> {
    let client = redis::Client::open(url)?;
    let settings = client.get_connection_info().redis_settings();
    let mut userinfo = String::new();
    if settings.username().is_some() || settings.password().is_some() {
        userinfo.push_str(&percent_encode(settings.username().unwrap_or("")));
        if let Some(pw) = settings.password() {
            userinfo.push(':');
            userinfo.push_str(&percent_encode(pw));
        }
        userinfo.push('@');
    }
    Ok(format!(
        "redis://{userinfo}{}:{}/{}",
        proxy.ip(),
        proxy.port(),
        settings.db()
    ))
}

/// Opens a multiplexed Redis connection with connect and response timeouts, so a cut proxy
/// shows up as an error instead of a hang.
pub async fn connect_redis(
    url: &str,
    timeout: Duration,
) -> Result<redis::aio::MultiplexedConnection, SimError> {
    let client = redis::Client::open(url)?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let conn = tokio::time::timeout(
        timeout,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(|_| SimError::Timeout(timeout))??;
    Ok(conn)
}

/// Drops the password from a URL before it reaches a message or a log.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{tail}");
        }
    }
    url.to_owned()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbname_rewrites() {
        assert_eq!(
            with_dbname("postgres://postgres@127.0.0.1:5433/postgres", "node0_x"),
            "postgres://postgres@127.0.0.1:5433/node0_x"
        );
        assert_eq!(
            with_dbname(
                "postgres://postgres@/postgres?host=/tmp/pg&port=5433",
                "kyc"
            ),
            "postgres://postgres@/kyc?host=/tmp/pg&port=5433"
        );
        assert_eq!(
            with_dbname("postgres://postgres@127.0.0.1:5433", "kyc"),
            "postgres://postgres@127.0.0.1:5433/kyc"
        );
        assert_eq!(
            with_dbname("host=/tmp user=u", "k"),
            "host=/tmp user=u dbname=k"
        );
    }

    #[test]
    fn endpoints_and_proxy_urls() {
        let url = "postgres://postgres:pw@127.0.0.1:5433/node0";
        assert_eq!(
            pg_endpoint(url).unwrap(),
            Endpoint::Tcp("127.0.0.1:5433".into())
        );
        let via = pg_url_via(url, "127.0.0.1:999".parse().unwrap()).unwrap();
        assert_eq!(via, "postgres://postgres:pw@127.0.0.1:999/node0");
        assert_eq!(
            pg_endpoint("postgres://postgres@/node0?host=/tmp/rollgate-pg&port=5433").unwrap(),
            Endpoint::Unix("/tmp/rollgate-pg/.s.PGSQL.5433".into())
        );
        assert_eq!(
            redis_endpoint("redis://127.0.0.1:6379").unwrap(),
            Endpoint::Tcp("127.0.0.1:6379".into())
        );
        assert_eq!(
            redis_url_via("redis://127.0.0.1:6379/2", "127.0.0.1:7".parse().unwrap()).unwrap(),
            "redis://127.0.0.1:7/2"
        );
        assert_eq!(redact(url), "postgres://postgres:***@127.0.0.1:5433/node0");
    }
}

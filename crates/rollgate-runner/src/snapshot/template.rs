//! `snapshot_method = "template"`: `CREATE DATABASE snap TEMPLATE db` on the same server.
//!
//! PostgreSQL copies the database's files (`STRATEGY FILE_COPY` from version 15 on, the only
//! strategy before), which is fast but needs no other session on the source: the layer's
//! components are stopped, and any session left is refused by name rather than terminated.
//! The snapshot is created with the source's owner and with connections disallowed, so nothing
//! writes to it. A restore drops the database (`WITH (FORCE)`: only the stopped components'
//! leftovers can be on it) and creates it again from the snapshot under the same name, so the
//! operator's connection string keeps pointing at the right database.
//!
//! Not copied by `CREATE DATABASE`: database-level `GRANT`s (re-applied on restore from what
//! the replaced database had) and `ALTER DATABASE … SET` settings (not re-applied: set them
//! again by hand after a restore if the database has any).

use super::*;

const HINT: &str = ", or use snapshot_method = \"dump\", which does not need an idle database";

/// The server's `server_version_num`.
async fn server_version(client: &Client, endpoint: &str) -> Result<i32, SnapshotError> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(pg_err(endpoint, "cannot read the server version"))?;
    Ok(row.get(0))
}

fn strategy(version: i32) -> &'static str {
    if version >= 150000 {
        " STRATEGY FILE_COPY"
    } else {
        ""
    }
}

async fn exists(client: &Client, endpoint: &str, name: &str) -> Result<bool, SnapshotError> {
    Ok(client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(pg_err(endpoint, "cannot list databases"))?
        .is_some())
}

pub async fn take(config: &Config, target: &Target) -> Result<u64, SnapshotError> {
    let (client, endpoint) = admin(config, Some(&target.database)).await?;
    let owner = client
        .query_opt(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&target.database],
        )
        .await
        .map_err(pg_err(&endpoint, "cannot read the database"))?
        .map(|r| r.get::<_, String>(0))
        .ok_or_else(|| {
            SnapshotError::Missing(format!(
                "database {} does not exist on {endpoint}",
                target.database
            ))
        })?;
    let version = server_version(&client, &endpoint).await?;
    // A half-made snapshot of an interrupted run: begin again.
    if exists(&client, &endpoint, &target.location).await? {
        drop_db(&client, &endpoint, &target.location).await?;
    }
    wait_idle(&client, &endpoint, &target.database, HINT).await?;
    copy(
        &client,
        &endpoint,
        &target.location,
        &target.database,
        &owner,
        version,
    )
    .await?;
    client
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false; COMMENT ON DATABASE {} IS {}",
            ident(&target.location),
            ident(&target.location),
            literal(&format!(
                "rollgate snapshot of {} ({}); dropped by `rollgate snapshot prune`",
                target.database, target.id
            ))
        ))
        .await
        .map_err(pg_err(&endpoint, "cannot seal the snapshot"))?;
    let size = client
        .query_one("SELECT pg_database_size($1::text)", &[&target.location])
        .await
        .map_err(pg_err(&endpoint, "cannot read the snapshot's size"))?
        .get::<_, i64>(0);
    Ok(size.max(0) as u64)
}

pub async fn restore(config: &Config, target: &Target) -> Result<(), SnapshotError> {
    let (client, endpoint) = admin(config, Some(&target.database)).await?;
    if !exists(&client, &endpoint, &target.location).await? {
        return Err(SnapshotError::Missing(format!(
            "snapshot database {} of {} is gone from {endpoint}: the database cannot be restored",
            target.location, target.database
        )));
    }
    let version = server_version(&client, &endpoint).await?;
    let snap = client
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&target.location],
        )
        .await
        .map_err(pg_err(&endpoint, "cannot read the snapshot"))?;
    let owner: String = snap.get(0);
    // The grants of the database being replaced (the snapshot's own were never changed).
    let acl = client
        .query_opt(
            "SELECT datacl::text FROM pg_database WHERE datname = $1",
            &[&target.database],
        )
        .await
        .map_err(pg_err(&endpoint, "cannot read the database"))?
        .and_then(|r| r.get::<_, Option<String>>(0));
    if exists(&client, &endpoint, &target.database).await? {
        // Give the stopped components' connections a moment to close, then force the rest:
        // the restore must happen, and only this layer's clients may use the database.
        let _ = wait_idle(&client, &endpoint, &target.database, HINT).await;
        drop_db(&client, &endpoint, &target.database).await?;
    }
    copy(
        &client,
        &endpoint,
        &target.database,
        &target.location,
        &owner,
        version,
    )
    .await?;
    if let Some(acl) = acl {
        // `{=Tc/postgres,app=CTc/postgres}`: reapply each grantee's CONNECT/CREATE/TEMP.
        for grant in parse_acl(&acl) {
            let _ = client
                .batch_execute(&format!(
                    "GRANT {} ON DATABASE {} TO {}",
                    grant.1,
                    ident(&target.database),
                    grant.0
                ))
                .await;
        }
    }
    Ok(())
}

pub async fn remove(config: &Config, target: &Target) -> Result<(), SnapshotError> {
    let (client, endpoint) = admin(config, Some(&target.location)).await?;
    drop_db(&client, &endpoint, &target.location).await
}

/// `CREATE DATABASE new TEMPLATE template OWNER owner` (file copy).
async fn copy(
    client: &Client,
    endpoint: &str,
    new: &str,
    template: &str,
    owner: &str,
    version: i32,
) -> Result<(), SnapshotError> {
    client
        .batch_execute(&format!(
            "CREATE DATABASE {} TEMPLATE {} OWNER {}{}",
            ident(new),
            ident(template),
            ident(owner),
            strategy(version)
        ))
        .await
        .map_err(pg_err(
            endpoint,
            &format!("CREATE DATABASE {new} TEMPLATE {template} failed"),
        ))
}

async fn drop_db(client: &Client, endpoint: &str, name: &str) -> Result<(), SnapshotError> {
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            ident(name)
        ))
        .await
        .map_err(pg_err(endpoint, &format!("DROP DATABASE {name} failed")))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The grants of a `datacl` text: (grantee as SQL, privileges as SQL). Owners' implicit
/// rights come back with the owner.
fn parse_acl(acl: &str) -> Vec<(String, String)> {
    acl.trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .filter_map(|item| {
            let item = item.trim_matches('"');
            let (who, rest) = item.split_once('=')?;
            let privs = rest.split('/').next()?;
            let names: Vec<&str> = [('c', "CONNECT"), ('C', "CREATE"), ('T', "TEMPORARY")]
                .into_iter()
                .filter(|(c, _)| privs.contains(*c))
                .map(|(_, name)| name)
                .collect();
            if names.is_empty() {
                return None;
            }
            let grantee = if who.is_empty() {
                "PUBLIC".to_string()
            } else {
                ident(who)
            };
            Some((grantee, names.join(", ")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_grants_are_read_back_from_datacl() {
        assert_eq!(
            parse_acl("{=Tc/postgres,postgres=CTc/postgres,app=c/postgres}"),
            vec![
                ("PUBLIC".into(), "CONNECT, TEMPORARY".into()),
                ("\"postgres\"".into(), "CONNECT, CREATE, TEMPORARY".into()),
                ("\"app\"".into(), "CONNECT".into()),
            ]
        );
    }
}

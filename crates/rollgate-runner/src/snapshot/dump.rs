//! `snapshot_method = "dump"`: `pg_dump -Fc` to `state_dir/snapshots/<id>.dump` (0600), and
//! `pg_restore --clean --if-exists --single-transaction` back into the same database.
//!
//! Works against any server rollgate can reach. The client programs are found on `PATH`, then
//! in the newest `/usr/lib/postgresql/*/bin` (where Debian puts them, as `scripts/services`
//! finds them); a missing one is an error naming it. Connection settings go as `-h -p -U -d`
//! arguments and the password as `PGPASSWORD` in the child's environment only: the command
//! line and every output stay free of it. The dump is written to `<id>.dump.partial` and
//! renamed when complete, so a file named `.dump` is always a whole snapshot.
//!
//! `pg_restore --clean` drops and recreates the objects the dump holds (a table a migration
//! altered comes back as it was, with its rows); objects the new version *added* in tables of
//! their own are left in place, which an older version ignores.

use std::os::unix::fs::OpenOptionsExt;

use rollgate_runtime::process::{Invocation, run};
use tokio_postgres::config::Host;

use super::*;

/// `pg_dump` or `pg_restore`: on PATH, else the newest Debian cluster's bin directory.
pub fn find_program(name: &str) -> Result<PathBuf, SnapshotError> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let p = e.path().join("bin").join(name);
            p.is_file().then_some((version, p))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p).ok_or_else(|| {
        SnapshotError::Missing(format!(
            "`{name}` is not on PATH nor in /usr/lib/postgresql/*/bin: install the PostgreSQL \
             client programs (Debian: postgresql-client) or use snapshot_method = \"template\""
        ))
    })
}

/// The program with the server's connection settings (never the password) as arguments and
/// the password in its environment.
fn invocation(
    config: &Config,
    program: &Path,
    database: &str,
    args: &[&str],
) -> Result<Invocation, SnapshotError> {
    let (cfg, _) = pg_config(config)?;
    let mut argv: Vec<String> = vec!["--no-password".into()];
    if let Some(host) = cfg.get_hosts().first() {
        argv.push("-h".into());
        argv.push(match host {
            Host::Tcp(h) => h.clone(),
            Host::Unix(dir) => dir.display().to_string(),
        });
    }
    if let Some(port) = cfg.get_ports().first() {
        argv.push("-p".into());
        argv.push(port.to_string());
    }
    if let Some(user) = cfg.get_user() {
        argv.push("-U".into());
        argv.push(user.to_string());
    }
    argv.push("-d".into());
    argv.push(database.to_string());
    argv.extend(args.iter().map(|a| a.to_string()));
    let mut inv = Invocation::new(program.display().to_string(), argv)
        .unit(format!("database {database}"))
        .timeout(OPERATION_TIMEOUT);
    if let Some(pw) = cfg.get_password() {
        inv = inv.env("PGPASSWORD", String::from_utf8_lossy(pw).into_owned());
    }
    Ok(inv)
}

fn program_error(e: rollgate_runtime::DriverError) -> SnapshotError {
    SnapshotError::Program(
        rollgate_core::secrets::scrub(&rollgate_probe::errors::chain(&e)).into_owned(),
    )
}

pub async fn take(config: &Config, target: &Target) -> Result<u64, SnapshotError> {
    let pg_dump = find_program("pg_dump")?;
    let file = PathBuf::from(&target.location);
    let partial = file.with_extension("dump.partial");
    let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    private_dir(&dir)?;
    // Created 0600 before pg_dump opens it (it keeps an existing file's mode).
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Io { path, source }
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .map_err(io(&partial))?;
    let partial_s = partial.display().to_string();
    let inv = invocation(
        config,
        &pg_dump,
        &target.database,
        &["-Fc", "-f", &partial_s],
    )?;
    run(&inv).await.map_err(program_error)?;
    let f = std::fs::File::open(&partial).map_err(io(&partial))?;
    f.sync_all().map_err(io(&partial))?;
    let size = f.metadata().map_err(io(&partial))?.len();
    std::fs::rename(&partial, &file).map_err(io(&file))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(size)
}

pub async fn restore(config: &Config, target: &Target) -> Result<(), SnapshotError> {
    let pg_restore = find_program("pg_restore")?;
    let file = PathBuf::from(&target.location);
    if !file.is_file() {
        return Err(SnapshotError::Missing(format!(
            "dump {} of {} is gone: the database cannot be restored",
            file.display(),
            target.database
        )));
    }
    let file_s = file.display().to_string();
    let inv = invocation(
        config,
        &pg_restore,
        &target.database,
        &["--clean", "--if-exists", "--single-transaction", &file_s],
    )?;
    run(&inv).await.map_err(program_error)?;
    Ok(())
}

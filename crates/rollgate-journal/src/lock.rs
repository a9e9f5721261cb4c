//! The rollout lock: one rollout per node, with a holder checked for liveness.
//!
//! `<state_dir>/rollout.lock` is held with an exclusive `flock` (std `File::try_lock`) for the
//! whole rollout; the kernel drops it when the holder dies, however it dies. The file also
//! records who holds it, as JSON: pid, the process's start time, the boot id
//! (`/proc/sys/kernel/random/boot_id`), since when, and a heartbeat the holder refreshes.
//!
//! - `flock` busy → [`LockError::Busy`] with the recorded holder (the CLI exits 6).
//! - `flock` free but a holder still recorded → that holder did not release cleanly. When its
//!   pid is gone, belongs to another process now (start time differs) or the machine rebooted
//!   since (boot id differs), the lock is reclaimed and [`LockGuard::reclaimed`] says why. A
//!   recorded holder that is provably still alive (the lock file was replaced under it) is
//!   treated as busy: refusing is safer than running two rollouts.
//!
//! The file is emptied, not deleted, on release: deleting a lock file races with a process
//! that just opened it.

use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::errors::LockError;

/// The lock file inside `state_dir`.
pub const FILE_NAME: &str = "rollout.lock";

/// Who holds (or held) the lock.
///
/// ```json
/// {"pid": 4242, "start_time": 918273, "boot_id": "0c9f…", "since": "2026-11-28T04:22:10.123Z",
///  "heartbeat": "2026-11-28T04:23:40.007Z"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks after boot): tells a reused pid apart.
    pub start_time: Option<u64>,
    pub boot_id: String,
    pub since: String,
    pub heartbeat: String,
}

/// Why a recorded holder was judged dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleReason {
    /// No process has that pid.
    ProcessGone,
    /// A process has that pid but started at another time.
    PidReused,
    /// The holder ran before the last reboot.
    DifferentBoot,
}

impl std::fmt::Display for StaleReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StaleReason::ProcessGone => "its process is gone",
            StaleReason::PidReused => "its pid now belongs to another process",
            StaleReason::DifferentBoot => "it ran before the last reboot",
        })
    }
}

/// A dead holder whose lock was taken over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reclaimed {
    pub previous: Holder,
    pub reason: StaleReason,
}

impl std::fmt::Display for Reclaimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reclaimed the lock of pid {} (held since {}): {}",
            self.previous.pid, self.previous.since, self.reason
        )
    }
}

/// The lock as seen without taking it (for `status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LockStatus {
    Free,
    Held {
        holder: Holder,
    },
    /// A holder is recorded but dead: the next rollout reclaims the lock.
    Stale {
        holder: Holder,
        reason: StaleReason,
    },
}

/// The rollout lock of one node.
#[derive(Debug)]
pub struct Lock;

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
    holder: Holder,
    reclaimed: Option<Reclaimed>,
}

impl Lock {
    /// Take the lock, or say who holds it.
    pub fn acquire(state_dir: &Path) -> Result<LockGuard, LockError> {
        let path = state_dir.join(FILE_NAME);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        if !state_dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(state_dir)
                .map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file).ok().flatten();
                return Err(busy(&path, holder.as_ref()));
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let previous = read_holder(&mut file).map_err(io)?;
        let reclaimed = match previous {
            None => None,
            Some(prev) => match liveness(&prev) {
                Some(reason) => Some(Reclaimed {
                    previous: prev,
                    reason,
                }),
                // Alive and the same process, yet the flock was free: the file was replaced
                // under a live holder. Refuse rather than run two rollouts.
                None if prev.pid != std::process::id() => return Err(busy(&path, Some(&prev))),
                None => None,
            },
        };
        let now = now();
        let holder = Holder {
            pid: std::process::id(),
            start_time: start_time(std::process::id()),
            boot_id: boot_id(),
            since: now.clone(),
            heartbeat: now,
        };
        let mut guard = LockGuard {
            file,
            path,
            holder,
            reclaimed,
        };
        guard.write_holder()?;
        Ok(guard)
    }

    /// Who holds the lock, judged from the recorded holder without taking the lock (taking it,
    /// even briefly, could make a concurrent rollout see a spurious "busy").
    pub fn status(state_dir: &Path) -> Result<LockStatus, LockError> {
        let path = state_dir.join(FILE_NAME);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockStatus::Free),
            Err(source) => return Err(LockError::Io { path, source }),
        };
        let holder = read_holder(&mut file).map_err(|source| LockError::Io { path, source })?;
        Ok(match holder {
            None => LockStatus::Free,
            Some(h) => match liveness(&h) {
                None => LockStatus::Held { holder: h },
                Some(reason) => LockStatus::Stale { holder: h, reason },
            },
        })
    }
}

impl LockGuard {
    /// Refresh the heartbeat, so observers see the holder is making progress.
    pub fn heartbeat(&mut self) -> Result<(), LockError> {
        self.holder.heartbeat = now();
        self.write_holder()
    }

    /// The dead holder this lock was taken over from, if any.
    pub fn reclaimed(&self) -> Option<&Reclaimed> {
        self.reclaimed.as_ref()
    }

    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_holder(&mut self) -> Result<(), LockError> {
        let text = serde_json::to_vec(&self.holder).unwrap_or_default();
        let res = (|| {
            self.file.set_len(0)?;
            self.file.seek(SeekFrom::Start(0))?;
            self.file.write_all(&text)?;
            self.file.sync_data()
        })();
        res.map_err(|source| LockError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Empty the file before the flock goes: a clean release leaves no holder to judge.
        let _ = self.file.set_len(0);
        let _ = self.file.sync_data();
        let _ = self.file.unlock();
    }
}

fn busy(path: &Path, holder: Option<&Holder>) -> LockError {
    LockError::Busy {
        pid: holder.map(|h| h.pid),
        since: holder.map(|h| h.since.clone()),
        heartbeat: holder.map(|h| h.heartbeat.clone()),
        path: path.to_path_buf(),
    }
}

fn read_holder(file: &mut File) -> std::io::Result<Option<Holder>> {
    file.seek(SeekFrom::Start(0))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    // An unreadable record (a crash mid-write) names no live holder: the flock decides.
    Ok(serde_json::from_str(text.trim()).ok())
}

/// `None` when the holder is alive; otherwise why it is not.
fn liveness(h: &Holder) -> Option<StaleReason> {
    if h.boot_id != boot_id() {
        return Some(StaleReason::DifferentBoot);
    }
    if !Path::new(&format!("/proc/{}", h.pid)).exists() {
        return Some(StaleReason::ProcessGone);
    }
    match (h.start_time, start_time(h.pid)) {
        (Some(recorded), Some(now)) if recorded != now => Some(StaleReason::PidReused),
        // A zombie still has a /proc entry but holds nothing.
        _ if is_zombie(h.pid) => Some(StaleReason::ProcessGone),
        _ => None,
    }
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// The kernel's id of this boot; `unknown` where there is none (not Linux).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The fields of `/proc/<pid>/stat` after the command name (which may contain spaces and `)`).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Field 22 (starttime); the fields after the name start at field 3.
fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(22 - 3)?.parse().ok()
}

fn is_zombie(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s == "Z" || s == "X"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_in_process_is_busy_and_release_frees() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = Lock::acquire(dir.path()).unwrap();
        assert!(g.reclaimed().is_none());
        g.heartbeat().unwrap();
        let err = Lock::acquire(dir.path()).unwrap_err();
        assert!(
            matches!(err, LockError::Busy { pid: Some(p), .. } if p == std::process::id()),
            "{err}"
        );
        assert!(matches!(
            Lock::status(dir.path()).unwrap(),
            LockStatus::Held { .. }
        ));
        drop(g);
        assert_eq!(Lock::status(dir.path()).unwrap(), LockStatus::Free);
        assert!(Lock::acquire(dir.path()).unwrap().reclaimed().is_none());
    }

    #[test]
    fn holder_from_another_boot_is_reclaimed() {
        let dir = tempfile::tempdir().unwrap();
        let h = Holder {
            pid: std::process::id(),
            start_time: start_time(std::process::id()),
            boot_id: "not-this-boot".into(),
            since: "2026-01-01T00:00:00Z".into(),
            heartbeat: "2026-01-01T00:00:00Z".into(),
        };
        std::fs::write(dir.path().join(FILE_NAME), serde_json::to_vec(&h).unwrap()).unwrap();
        assert!(matches!(
            Lock::status(dir.path()).unwrap(),
            LockStatus::Stale {
                reason: StaleReason::DifferentBoot,
                ..
            }
        ));
        let g = Lock::acquire(dir.path()).unwrap();
        let r = g.reclaimed().unwrap();
        assert_eq!(r.reason, StaleReason::DifferentBoot);
        assert_eq!(r.previous, h);
        assert!(r.to_string().contains("before the last reboot"));
    }

    #[test]
    fn reused_pid_is_detected() {
        let h = Holder {
            pid: std::process::id(),
            start_time: start_time(std::process::id()).map(|t| t + 1),
            boot_id: boot_id(),
            since: String::new(),
            heartbeat: String::new(),
        };
        assert_eq!(liveness(&h), Some(StaleReason::PidReused));
    }
}

//! The kill switch: `rollgate freeze --reason TEXT` holds the node, `rollgate unfreeze`
//! releases it. While frozen no rollout starts, and a running one stops at its next step
//! boundary and rolls back (the rollout checks [`is_frozen`] before every forward step).
//!
//! The switch is a small JSON file, `<state_dir>/freeze.json`, written atomically (a temporary
//! file in the same directory, fsynced, renamed over, directory fsynced) with mode 0600:
//!
//! ```json
//! {"reason": "exchange maintenance window", "frozen_at": "2026-11-28T04:22:10.113Z", "by": "alice"}
//! ```
//!
//! It is a file rather than a journal row so that it works while the journal is busy or
//! broken, and so that an operator can freeze a node with nothing but a shell. A file that exists
//! but cannot be read or parsed counts as frozen: a kill switch fails safe.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The file inside `state_dir`.
pub const FILE_NAME: &str = "freeze.json";

/// Why and since when the node is frozen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeInfo {
    pub reason: String,
    /// RFC 3339, UTC.
    pub frozen_at: String,
    /// Who froze it: the user name (`$SUDO_USER`, `$USER`), or `serve api`.
    pub by: String,
}

impl FreezeInfo {
    /// One line for messages and journal reasons: `frozen by alice since …: reason`.
    pub fn summary(&self) -> String {
        format!(
            "node frozen by {} since {}: {}",
            self.by, self.frozen_at, self.reason
        )
    }

    /// Why a rollout stopped for the switch: `kill switch: node frozen by …`.
    pub fn stop_reason(&self) -> String {
        format!("kill switch: {}", self.summary())
    }

    /// The failed gate a running rollout records when the switch stops it (its reason then
    /// starts with `kill switch:`, and `serve` counts it under `cause="kill_switch"`).
    pub fn as_gate(&self) -> rollgate_core::vocab::GateResult {
        rollgate_core::vocab::GateResult {
            name: GATE.to_string(),
            verdict: rollgate_core::vocab::Verdict::Fail,
            detail: self.summary(),
            evidence: serde_json::to_value(self).unwrap_or_default(),
        }
    }
}

/// The name of the gate [`FreezeInfo::as_gate`] records.
pub const GATE: &str = "kill_switch";

/// Why the switch could not be set or cleared.
#[derive(Debug, thiserror::Error)]
pub enum KillSwitchError {
    #[error("a freeze needs a reason")]
    NoReason,
    #[error("failed to write the freeze file {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to remove the freeze file {}", .path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The freeze file of a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Freeze the node, recording the current user. Freezing a frozen node replaces the reason.
pub fn freeze(state_dir: &Path, reason: &str) -> Result<FreezeInfo, KillSwitchError> {
    freeze_by(state_dir, reason, &current_user())
}

/// Freeze the node on behalf of `by`.
pub fn freeze_by(state_dir: &Path, reason: &str, by: &str) -> Result<FreezeInfo, KillSwitchError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(KillSwitchError::NoReason);
    }
    let info = FreezeInfo {
        reason: reason.to_string(),
        frozen_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        by: by.to_string(),
    };
    let target = path(state_dir);
    let err = |source| KillSwitchError::Write {
        path: target.clone(),
        source,
    };
    if !state_dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(err)?;
    }
    let body = serde_json::to_vec_pretty(&info).map_err(|e| err(std::io::Error::other(e)))?;
    let tmp = state_dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&body)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        File::open(state_dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(info)
}

/// Lift the freeze. Returns what it was, `None` when the node was not frozen.
pub fn unfreeze(state_dir: &Path) -> Result<Option<FreezeInfo>, KillSwitchError> {
    let target = path(state_dir);
    let was = is_frozen(state_dir);
    match std::fs::remove_file(&target) {
        Ok(()) => {
            let _ = File::open(state_dir).and_then(|d| d.sync_all());
            Ok(was)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KillSwitchError::Remove {
            path: target,
            source,
        }),
    }
}

/// The freeze in force, if any. A freeze file that cannot be read or parsed counts as frozen
/// (with a reason that says so): the switch fails safe.
pub fn is_frozen(state_dir: &Path) -> Option<FreezeInfo> {
    let target = path(state_dir);
    match std::fs::read(&target) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes).unwrap_or_else(|e| FreezeInfo {
                reason: format!(
                    "the freeze file {} is not valid ({e}); remove it or run `rollgate unfreeze`",
                    target.display()
                ),
                frozen_at: String::new(),
                by: "unknown".into(),
            }),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(FreezeInfo {
            reason: format!("the freeze file {} cannot be read ({e})", target.display()),
            frozen_at: String::new(),
            by: "unknown".into(),
        }),
    }
}

/// The user for `by`: the one behind sudo when there is one.
pub fn current_user() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| format!("uid {}", rustix::process::getuid().as_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn freeze_then_unfreeze() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert_eq!(is_frozen(&state), None);
        let info = freeze_by(&state, "  maintenance window  ", "alice").unwrap();
        assert_eq!(info.reason, "maintenance window");
        assert_eq!(is_frozen(&state), Some(info.clone()));
        let mode = std::fs::metadata(path(&state))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert!(info.summary().contains("alice") && info.summary().contains("maintenance window"));
        let gate = info.as_gate();
        assert_eq!(
            (gate.name.as_str(), gate.verdict),
            (GATE, rollgate_core::vocab::Verdict::Fail)
        );
        assert_eq!(gate.evidence["reason"], "maintenance window");
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
        assert_eq!(unfreeze(&state).unwrap(), Some(info));
        assert_eq!(is_frozen(&state), None);
        assert_eq!(unfreeze(&state).unwrap(), None);
    }

    #[test]
    fn refreezing_replaces_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        freeze_by(dir.path(), "first", "a").unwrap();
        freeze_by(dir.path(), "second", "b").unwrap();
        let now = is_frozen(dir.path()).unwrap();
        assert_eq!((now.reason.as_str(), now.by.as_str()), ("second", "b"));
    }

    #[test]
    fn a_reason_is_required() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            freeze_by(dir.path(), "   ", "a"),
            Err(KillSwitchError::NoReason)
        ));
        assert_eq!(is_frozen(dir.path()), None);
    }

    #[test]
    fn a_corrupt_file_fails_safe() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), b"{not json").unwrap();
        let info = is_frozen(dir.path()).expect("an unreadable freeze file still freezes");
        assert!(info.reason.contains("not valid"), "{}", info.reason);
        assert!(unfreeze(dir.path()).unwrap().is_some());
        assert_eq!(is_frozen(dir.path()), None);
    }
}

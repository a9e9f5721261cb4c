//! The simulated services, one module each.

pub mod aesm;
pub mod chain;
pub mod deployment;
pub mod kyc;
pub mod operator;
pub mod pccs;

use std::path::Path;

use crate::errors::SimError;

/// Writes `content` to `path` unless it already holds exactly that, through a temporary file and
/// a rename so a reader never sees a half-written file. Returns whether it wrote.
pub(crate) fn write_if_changed(path: &Path, content: &[u8]) -> Result<bool, SimError> {
    if std::fs::read(path).is_ok_and(|old| old == content) {
        return Ok(false);
    }
    let tmp = path.with_extension("tmp-rollgate-sim");
    std::fs::write(&tmp, content)
        .map_err(|e| SimError::io(format!("write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| SimError::io(format!("rename to {}", path.display()), e))?;
    Ok(true)
}

//! Disk headroom: free bytes, free percent and free inodes of the filesystem holding a path.
//!
//! Uses `statvfs` through rustix. Free space is what an unprivileged writer can use
//! (`f_bavail`), which is what a database or a log writer running as a service user gets.

use std::path::Path;

use rollgate_core::config::DiskHeadroom;
use rollgate_core::units::format_size;
use serde::Serialize;
use serde_json::json;

use crate::outcome::Outcome;

/// Space on one filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DiskUsage {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub free_percent: f64,
    pub inodes_total: u64,
    pub inodes_free: u64,
    /// `None` on filesystems that do not report inodes (btrfs, some overlays).
    pub free_inodes_percent: Option<f64>,
}

/// The usage of the filesystem holding `path`.
pub fn disk_usage(path: &Path) -> std::io::Result<DiskUsage> {
    let st = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    let unit = if st.f_frsize > 0 {
        st.f_frsize
    } else {
        st.f_bsize
    };
    let total = st.f_blocks.saturating_mul(unit);
    let free = st.f_bavail.saturating_mul(unit);
    let free_percent = if total == 0 {
        0.0
    } else {
        free as f64 * 100.0 / total as f64
    };
    let free_inodes_percent =
        (st.f_files > 0).then(|| st.f_favail as f64 * 100.0 / st.f_files as f64);
    Ok(DiskUsage {
        total_bytes: total,
        free_bytes: free,
        free_percent,
        inodes_total: st.f_files,
        inodes_free: st.f_favail,
        free_inodes_percent,
    })
}

/// Judge one `[[headroom.disk]]` entry.
pub fn probe_disk(h: &DiskHeadroom) -> Outcome {
    let path = h.path.display();
    let usage = match disk_usage(&h.path) {
        Ok(u) => u,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Outcome::fail(format!("{path}: does not exist"), serde_json::Value::Null);
        }
        Err(e) => {
            return Outcome::fail(
                format!("{path}: cannot read filesystem usage: {e}"),
                serde_json::Value::Null,
            );
        }
    };
    judge_disk(h, &usage)
}

/// The pure judgement of a measured usage against the thresholds.
pub fn judge_disk(h: &DiskHeadroom, u: &DiskUsage) -> Outcome {
    let path = h.path.display();
    let observed = json!(u);
    let mut problems = Vec::new();
    if let Some(min) = h.min_free_bytes
        && u.free_bytes < min
    {
        problems.push(format!(
            "{} free, below min_free {}",
            format_size(u.free_bytes),
            format_size(min)
        ));
    }
    if let Some(min) = h.min_free_percent
        && u.free_percent < min
    {
        problems.push(format!(
            "{:.1}% free, below min_free_percent {min}%",
            u.free_percent
        ));
    }
    if let (Some(min), Some(have)) = (h.min_free_inodes_percent, u.free_inodes_percent)
        && have < min
    {
        problems.push(format!(
            "{have:.1}% inodes free, below min_free_inodes_percent {min}%"
        ));
    }
    let summary = format!(
        "{} free of {} ({:.1}%){}",
        format_size(u.free_bytes),
        format_size(u.total_bytes),
        u.free_percent,
        u.free_inodes_percent
            .map(|p| format!(", {p:.1}% inodes free"))
            .unwrap_or_default()
    );
    if problems.is_empty() {
        Outcome::pass(format!("{path}: {summary}"), observed)
    } else {
        Outcome::fail(format!("{path}: {}", problems.join("; ")), observed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollgate_core::vocab::CheckStatus;

    fn usage(free: u64, total: u64, ifree: u64, itotal: u64) -> DiskUsage {
        DiskUsage {
            total_bytes: total,
            free_bytes: free,
            free_percent: free as f64 * 100.0 / total as f64,
            inodes_total: itotal,
            inodes_free: ifree,
            free_inodes_percent: (itotal > 0).then(|| ifree as f64 * 100.0 / itotal as f64),
        }
    }

    fn h(bytes: Option<u64>, pct: Option<f64>, ipct: Option<f64>) -> DiskHeadroom {
        DiskHeadroom {
            path: "/data".into(),
            min_free_bytes: bytes,
            min_free_percent: pct,
            min_free_inodes_percent: ipct,
        }
    }

    #[test]
    fn thresholds() {
        let gib = 1 << 30;
        let ok = judge_disk(
            &h(Some(10 * gib), Some(10.0), Some(5.0)),
            &usage(20 * gib, 100 * gib, 50, 100),
        );
        assert_eq!(ok.status, CheckStatus::Pass, "{}", ok.detail);
        let low = judge_disk(
            &h(Some(10 * gib), None, None),
            &usage(5 * gib, 100 * gib, 50, 100),
        );
        assert_eq!(low.status, CheckStatus::Fail);
        assert!(
            low.detail.contains("below min_free 10.0 GiB"),
            "{}",
            low.detail
        );
        let pct = judge_disk(
            &h(None, Some(10.0), None),
            &usage(5 * gib, 100 * gib, 50, 100),
        );
        assert!(pct.detail.contains("5.0% free"), "{}", pct.detail);
        let inodes = judge_disk(
            &h(None, None, Some(5.0)),
            &usage(50 * gib, 100 * gib, 1, 100),
        );
        assert!(inodes.detail.contains("inodes"), "{}", inodes.detail);
        // No inode figures: the inode threshold cannot be judged and is not invented.
        let none = judge_disk(&h(None, None, Some(5.0)), &usage(50 * gib, 100 * gib, 0, 0));
        assert_eq!(none.status, CheckStatus::Pass);
    }

    #[test]
    fn real_filesystem_and_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let u = disk_usage(dir.path()).unwrap();
        assert!(u.total_bytes > 0 && u.free_bytes <= u.total_bytes);
        let missing = probe_disk(&DiskHeadroom {
            path: dir.path().join("nope"),
            min_free_bytes: None,
            min_free_percent: None,
            min_free_inodes_percent: None,
        });
        assert_eq!(missing.status, CheckStatus::Fail);
        assert!(missing.detail.ends_with("does not exist"));
    }
}

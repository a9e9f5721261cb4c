//! Storage: database and disk growth against the baseline's rate, and the projected time until
//! a headroom limit.

use std::collections::BTreeMap;
use std::time::Duration;

use rollgate_core::baseline::{Baseline, Trends};
use rollgate_core::config::Config;
use rollgate_core::stats::{growth_ratio, time_to_exhaustion};
use rollgate_core::units::{format_duration, format_size};
use rollgate_core::vocab::{GateResult, Verdict};
use serde_json::{Value, json};

use super::{gate, no_data, no_data_name};

/// The granularity of `pg_database_size`: one 8 KiB page.
const DATABASE_QUANTUM: f64 = 8192.0;
/// Free space of a filesystem moves with every writer sharing it (logs, backups, package
/// caches), not only the node: changes below 64 MiB over the window are treated as noise, neither
/// compared with the baseline nor projected. Over a 10-minute bake that still catches a leak of
/// a few hundred KiB per second.
const FILESYSTEM_QUANTUM: f64 = 64.0 * 1024.0 * 1024.0;

pub(super) async fn data_dir_free(config: &Config) -> Option<u64> {
    let pg = config.dependencies.postgres.as_ref()?;
    config.headroom.database.as_ref()?;
    let outcome =
        rollgate_probe::postgres::probe_postgres(pg, None, config.probe_limits.timeout).await;
    outcome
        .observed
        .get("data_dir_free_bytes")
        .and_then(Value::as_u64)
}

#[derive(Debug, Clone, Default)]
pub struct StorageContext {
    /// Total bytes of each `disk:PATH` filesystem.
    pub disk_total: BTreeMap<String, u64>,
    /// Free bytes of the Postgres data directory's filesystem, when visible.
    pub data_dir_free: Option<u64>,
    pub errors: BTreeMap<String, String>,
}

fn rate(bytes_per_s: f64) -> String {
    if bytes_per_s < 0.0 {
        format!("-{}/s", format_size((-bytes_per_s) as u64))
    } else {
        format!("{}/s", format_size(bytes_per_s as u64))
    }
}

/// Storage growth against the baseline's, and the projected time until the headroom limit.
pub fn judge_storage(
    config: &Config,
    baseline: &Baseline,
    now: &Trends,
    ctx: &StorageContext,
) -> Vec<GateResult> {
    let policy = &config.bake;
    let horizon = policy.headroom_horizon;
    let base = baseline.trends.as_ref();
    let mut out = Vec::new();
    let mut keys: Vec<&String> = now.storage.keys().collect();
    keys.extend(ctx.errors.keys().filter(|k| !now.storage.contains_key(*k)));
    for key in keys {
        let name = format!("bake:storage:{key}");
        let Some(t) = now.storage.get(key) else {
            out.push(gate(
                &name,
                no_data(policy.no_data),
                format!(
                    "{key}: could not be read: {}",
                    ctx.errors.get(key).cloned().unwrap_or_default()
                ),
                Value::Null,
            ));
            continue;
        };
        let Some(g) = t.growth_bytes_per_s else {
            out.push(gate(
                &name,
                no_data(policy.no_data),
                format!(
                    "{key}: fewer than 2 readings during the bake (no_data = {})",
                    no_data_name(policy.no_data)
                ),
                json!({"samples": t.samples}),
            ));
            continue;
        };
        let is_disk = key.starts_with("disk:");
        let quantum = if is_disk {
            FILESYSTEM_QUANTUM
        } else {
            DATABASE_QUANTUM
        };
        let base_trend = base.and_then(|b| b.storage.get(key));
        let window_s = base
            .filter(|_| base_trend.is_some())
            .map(|b| b.window_ms)
            .unwrap_or(now.window_ms)
            .min(now.window_ms)
            .max(1) as f64
            / 1000.0;
        let floor = 2.0 * quantum / window_s;
        let mut evidence = json!({"first": t.first, "last": t.last, "samples": t.samples, "growth_bytes_per_s": g,
                                   "noise_floor_bytes_per_s": floor, "max_storage_growth_ratio": policy.max_storage_growth_ratio,
                                   "headroom_horizon_s": horizon.as_secs()});
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        match base_trend.and_then(|b| b.growth_bytes_per_s) {
            Some(b) => {
                let ratio = growth_ratio(g, b, floor);
                evidence["baseline_growth_bytes_per_s"] = json!(b);
                evidence["ratio"] = json!(ratio);
                let text = format!(
                    "{} during the bake vs {} in the baseline (x{ratio:.1}; max_storage_growth_ratio {}, noise floor {})",
                    rate(g),
                    rate(b),
                    policy.max_storage_growth_ratio,
                    rate(floor)
                );
                if ratio > policy.max_storage_growth_ratio {
                    problems.push(format!("{key} grows faster than the baseline: {text}"));
                } else {
                    notes.push(text);
                }
            }
            None => notes.push(format!(
                "{} during the bake; no baseline rate to compare with",
                rate(g)
            )),
        }
        if is_disk {
            let path = key.trim_start_matches("disk:");
            let h = config
                .headroom
                .disk
                .iter()
                .find(|d| d.path.display().to_string() == path);
            let total = ctx.disk_total.get(key).copied();
            let limit = h
                .map(|h| {
                    let by_bytes = h.min_free_bytes.unwrap_or(0) as f64;
                    let by_percent = match (h.min_free_percent, total) {
                        (Some(p), Some(total)) => total as f64 * p / 100.0,
                        _ => 0.0,
                    };
                    by_bytes.max(by_percent)
                })
                .unwrap_or(0.0);
            let remaining = t.last as f64 - limit;
            // Consumption below the noise floor is not a trend to project.
            let consumption = if g > floor { g } else { 0.0 };
            let eta = time_to_exhaustion(remaining, consumption);
            evidence["free_bytes"] = json!(t.last);
            evidence["limit_bytes"] = json!(limit);
            evidence["projected_s"] = json!(eta.map(|d| d.as_secs()));
            match eta {
                Some(d) if d < horizon => problems.push(format!(
                    "{path} reaches its headroom limit ({} free) in {} at {}, inside headroom_horizon {}",
                    format_size(limit as u64),
                    format_duration(Duration::from_secs(d.as_secs())),
                    rate(g),
                    format_duration(horizon)
                )),
                Some(d) => notes.push(format!("headroom limit in {}", format_duration(Duration::from_secs(d.as_secs())))),
                None => notes.push("free space not shrinking measurably".into()),
            }
        }
        let verdict = if !problems.is_empty() {
            Verdict::Fail
        } else if base_trend.is_none() && !is_disk {
            no_data(policy.no_data)
        } else {
            Verdict::Pass
        };
        let detail = if problems.is_empty() {
            format!("{key}: {}", notes.join("; "))
        } else {
            problems.join("; ")
        };
        out.push(gate(&name, verdict, detail, evidence));
    }

    // The databases together against the data directory's free space: what must stay free is
    // one rollout window's growth budget (`headroom.database.max_growth_during_window`).
    if let (Some(h), Some(_)) = (&config.headroom.database, &config.dependencies.postgres) {
        let growth: f64 = now
            .storage
            .iter()
            .filter(|(k, _)| k.starts_with("postgres:"))
            .filter_map(|(_, t)| t.growth_bytes_per_s)
            .map(|g| g.max(0.0))
            .sum();
        let name = "bake:headroom:database";
        let reserve = h.max_growth_during_window as f64;
        match ctx.data_dir_free {
            None => out.push(gate(
                name,
                Verdict::Inconclusive,
                "the Postgres data directory's free space is not visible (server not local, or data_directory not readable): no projection".into(),
                json!({"growth_bytes_per_s": growth}),
            )),
            Some(free) => {
                let eta = time_to_exhaustion(free as f64 - reserve, growth);
                let evidence = json!({"growth_bytes_per_s": growth, "data_dir_free_bytes": free, "reserve_bytes": reserve,
                                       "projected_s": eta.map(|d| d.as_secs()), "headroom_horizon_s": horizon.as_secs()});
                let when = eta.map(|d| format_duration(Duration::from_secs(d.as_secs()))).unwrap_or_else(|| "never at this rate".into());
                let detail = format!(
                    "databases grow {} together; the data directory's {} free stays above the {} reserve (max_growth_during_window) for {when}; headroom_horizon {}",
                    rate(growth),
                    format_size(free),
                    format_size(reserve as u64),
                    format_duration(horizon)
                );
                match eta {
                    Some(d) if d < horizon => out.push(gate(name, Verdict::Fail, format!("database headroom runs out inside the horizon: {detail}"), evidence)),
                    _ => out.push(gate(name, Verdict::Pass, detail, evidence)),
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bake::test_support::*;
    use rollgate_core::baseline::StorageTrend;

    #[test]
    fn database_growing_ten_times_faster_fails_with_its_numbers() {
        let config = config();
        let mut base = trends(10_000);
        base.storage.insert(
            "postgres:node0".into(),
            storage(6_000.0, 8 << 20, (8 << 20) + 60_000),
        );
        let baseline = baseline(Some(base));
        let mut now = trends(10_000);
        now.storage.insert(
            "postgres:node0".into(),
            storage(60_000.0, 9 << 20, (9 << 20) + 600_000),
        );
        let ctx = StorageContext {
            data_dir_free: Some(500 << 30),
            ..StorageContext::default()
        };
        let gates = judge_storage(&config, &baseline, &now, &ctx);
        let g = find(&gates, "bake:storage:postgres:node0");
        assert_eq!(g.verdict, Verdict::Fail, "{g:#?}");
        assert!(
            g.detail
                .contains("58.6 KiB/s during the bake vs 5.9 KiB/s in the baseline (x10.0"),
            "{}",
            g.detail
        );
        assert_eq!(g.evidence["ratio"], 10.0);
        // Plenty of data-directory space: the projection passes.
        assert_eq!(
            find(&gates, "bake:headroom:database").verdict,
            Verdict::Pass
        );

        // The same rate as the baseline passes; so does noise below the floor on a flat baseline.
        now.storage
            .insert("postgres:node0".into(), storage(7_000.0, 0, 0));
        assert_eq!(
            find(
                &judge_storage(&config, &baseline, &now, &ctx),
                "bake:storage:postgres:node0"
            )
            .verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn headroom_projections_inside_the_horizon_fail() {
        let config = config();
        let baseline = baseline(Some(trends(10_000)));
        let mut now = trends(10_000);
        // 10 GiB free, limit 1 GiB, losing 200 MiB/s: about 46 s left.
        now.storage.insert(
            "disk:/data".into(),
            storage(200.0 * 1048576.0, 11 << 30, 10 << 30),
        );
        now.storage
            .insert("postgres:node0".into(), storage(60_000.0, 0, 0));
        // The data directory has 3 GiB free and must keep the 2 GiB window budget: 1 GiB left
        // at 60 kB/s is about 5 hours, inside the default 24h horizon.
        let ctx = StorageContext {
            data_dir_free: Some(3 << 30),
            disk_total: BTreeMap::from([("disk:/data".into(), 100 << 30)]),
            ..Default::default()
        };
        let gates = judge_storage(&config, &baseline, &now, &ctx);
        let disk = find(&gates, "bake:storage:disk:/data");
        assert_eq!(disk.verdict, Verdict::Fail, "{disk:#?}");
        assert!(
            disk.detail
                .contains("/data reaches its headroom limit (1.0 GiB free) in 46s"),
            "{}",
            disk.detail
        );
        let db = find(&gates, "bake:headroom:database");
        assert_eq!(db.verdict, Verdict::Fail, "{db:#?}");
        assert!(db.detail.contains("for 4h 58m"), "{}", db.detail);
        // Without a baseline rate the database ratio cannot be judged: no_data (inconclusive).
        assert_eq!(
            find(&gates, "bake:storage:postgres:node0").verdict,
            Verdict::Inconclusive
        );

        // Free space that moves less than the noise floor is not projected.
        now.storage
            .insert("disk:/data".into(), storage(1_000.0, 11 << 30, 11 << 30));
        let gates = judge_storage(&config, &baseline, &now, &ctx);
        assert_eq!(
            find(&gates, "bake:storage:disk:/data").verdict,
            Verdict::Pass
        );
        // One reading: no rate.
        now.storage.insert(
            "disk:/data".into(),
            StorageTrend {
                first: 1,
                last: 1,
                samples: 1,
                growth_bytes_per_s: None,
            },
        );
        assert_eq!(
            find(
                &judge_storage(&config, &baseline, &now, &ctx),
                "bake:storage:disk:/data"
            )
            .verdict,
            Verdict::Inconclusive
        );
    }
}

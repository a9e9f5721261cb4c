//! The runtime's view of the changed components: crashes and restarts (at once), memory growth
//! within the period.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rollgate_core::config::{BakePolicy, Component};
use rollgate_core::stats::median;
use rollgate_core::units::format_size;
use rollgate_core::vocab::{GateResult, Verdict};
use rollgate_runtime::{ComponentState, RunStatus, RuntimeDriver};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{gate, no_data, no_data_name};

/// What the runtime said about the watched components.
#[derive(Debug, Default)]
pub(super) struct RuntimeOutcome {
    pub(super) failures: Vec<GateResult>,
    /// Restart counts at the start and the end, per component (`None`: the runtime cannot tell).
    restarts: BTreeMap<String, (Option<u32>, Option<u32>)>,
    memory: BTreeMap<String, Vec<(f64, u64)>>,
    /// Why memory could not be read, per component.
    memory_unobservable: BTreeMap<String, String>,
    state_errors: BTreeMap<String, String>,
}

pub(super) async fn runtime_loop(
    driver: &dyn RuntimeDriver,
    components: &[Component],
    max_restarts: u32,
    started: Instant,
    duration: Duration,
    interval: Duration,
    stop: &AtomicBool,
) -> RuntimeOutcome {
    let mut out = RuntimeOutcome::default();
    if components.is_empty() {
        return out;
    }
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let at = started.elapsed().as_secs_f64();
        for c in components {
            let state = match driver.state(c).await {
                Ok(s) => s,
                Err(e) => {
                    out.state_errors
                        .insert(c.name.clone(), rollgate_probe::errors::chain(&e));
                    continue;
                }
            };
            if matches!(
                state.status,
                RunStatus::Exited | RunStatus::Dead | RunStatus::Restarting
            ) {
                out.failures.push(gate(
                    &format!("bake:component:{}", c.name),
                    Verdict::Fail,
                    format!(
                        "{} is {} during the bake (exit code {})",
                        c.name,
                        state.status.as_str(),
                        state
                            .exit_code
                            .map(|x| x.to_string())
                            .unwrap_or_else(|| "-".into())
                    ),
                    json!({"state": state, "at_s": at}),
                ));
            }
            let entry = out
                .restarts
                .entry(c.name.clone())
                .or_insert((state.restart_count, state.restart_count));
            entry.1 = state.restart_count;
            if let (Some(a), Some(b)) = *entry
                && b.saturating_sub(a) > max_restarts
            {
                out.failures.push(gate(
                    &format!("bake:restarts:{}", c.name),
                    Verdict::Fail,
                    format!("{} restarted {} time(s) during the bake, more than max_restarts {max_restarts}", c.name, b - a),
                    json!({"restarts_at_start": a, "restarts_now": b, "max_restarts": max_restarts, "at_s": at}),
                ));
            }
            if !out.memory_unobservable.contains_key(&c.name) {
                match memory_bytes(&state).await {
                    Ok(bytes) => out
                        .memory
                        .entry(c.name.clone())
                        .or_default()
                        .push((at, bytes)),
                    Err(why) => {
                        out.memory_unobservable.insert(c.name.clone(), why);
                    }
                }
            }
        }
        if !out.failures.is_empty() {
            stop.store(true, Ordering::Relaxed);
            break;
        }
        if started.elapsed() + interval / 2 >= duration {
            break;
        }
    }
    out
}

/// The memory a component's container uses now: its cgroup's counter when visible (v2, then
/// v1), else `docker stats`. Components without a container (the command driver) have none.
async fn memory_bytes(state: &ComponentState) -> Result<u64, String> {
    let Some(id) = state.container_id.as_deref().filter(|s| !s.is_empty()) else {
        return Err(
            "the runtime reports no container for it (memory is read from a container's cgroup)"
                .into(),
        );
    };
    let candidates = [
        format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.current"),
        format!("/sys/fs/cgroup/docker/{id}/memory.current"),
        format!("/sys/fs/cgroup/memory/docker/{id}/memory.usage_in_bytes"),
    ];
    for path in &candidates {
        if let Ok(text) = tokio::fs::read_to_string(path).await
            && let Ok(n) = text.trim().parse::<u64>()
        {
            return Ok(n);
        }
    }
    let run = tokio::process::Command::new("docker")
        .args(["stats", "--no-stream", "--format", "{{.MemUsage}}", id])
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(Ok(out)) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let used = text.split('/').next().unwrap_or("").trim();
            rollgate_core::units::parse_size(used).map_err(|e| format!("docker stats: {e}"))
        }
        Ok(Ok(out)) => Err(format!(
            "docker stats failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(Err(e)) => Err(format!("cannot run docker stats: {e}")),
        Err(_) => Err("docker stats did not answer within 10s".into()),
    }
}

pub(super) fn judge_restarts(r: &RuntimeOutcome, max_restarts: u32) -> Option<GateResult> {
    if r.restarts.is_empty() && r.state_errors.is_empty() {
        return None;
    }
    let counts: BTreeMap<&String, Value> = r
        .restarts
        .iter()
        .map(|(c, (a, b))| (c, json!({"at_start": a, "at_end": b})))
        .collect();
    let evidence =
        json!({"restarts": counts, "errors": r.state_errors, "max_restarts": max_restarts});
    let unknown: Vec<&String> = r
        .restarts
        .iter()
        .filter(|(_, (a, b))| a.is_none() || b.is_none())
        .map(|(c, _)| c)
        .collect();
    Some(
        if !r.state_errors.is_empty() || (!unknown.is_empty() && unknown.len() == r.restarts.len())
        {
            gate(
                "bake:restarts",
                Verdict::Inconclusive,
                format!(
                    "the runtime cannot tell restart counts for {}",
                    unknown
                        .iter()
                        .map(|s| s.as_str())
                        .chain(r.state_errors.keys().map(String::as_str))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                evidence,
            )
        } else {
            gate(
                "bake:restarts",
                Verdict::Pass,
                format!("no component restarted more than max_restarts {max_restarts} times"),
                evidence,
            )
        },
    )
}

pub(super) fn judge_memory(policy: &BakePolicy, r: &RuntimeOutcome) -> Vec<GateResult> {
    let mut out = Vec::new();
    for (c, samples) in &r.memory {
        let name = format!("bake:memory:{c}");
        if samples.len() < 4 {
            out.push(gate(
                &name,
                no_data(policy.no_data),
                format!(
                    "{c}: {} memory reading(s), too few to judge growth (no_data = {})",
                    samples.len(),
                    no_data_name(policy.no_data)
                ),
                json!({"samples": samples.len()}),
            ));
            continue;
        }
        // The median of the first and of the last third: robust to a single spike.
        let third = (samples.len() / 3).max(1);
        let first: Vec<f64> = samples[..third].iter().map(|s| s.1 as f64).collect();
        let last: Vec<f64> = samples[samples.len() - third..]
            .iter()
            .map(|s| s.1 as f64)
            .collect();
        let (a, b) = (median(&first).unwrap_or(0.0), median(&last).unwrap_or(0.0));
        let ratio = if a > 0.0 { b / a } else { 1.0 };
        let detail = format!(
            "{c} memory {} at the start, {} at the end of the bake (x{ratio:.2}; max_memory_growth_ratio {})",
            format_size(a as u64),
            format_size(b as u64),
            policy.max_memory_growth_ratio
        );
        let evidence =
            json!({"start_bytes": a, "end_bytes": b, "ratio": ratio, "samples": samples.len()});
        out.push(if ratio > policy.max_memory_growth_ratio {
            gate(
                &name,
                Verdict::Fail,
                format!("memory grows during the bake: {detail}"),
                evidence,
            )
        } else {
            gate(&name, Verdict::Pass, detail, evidence)
        });
    }
    if !r.memory_unobservable.is_empty() {
        out.push(gate(
            "bake:memory",
            Verdict::Inconclusive,
            format!(
                "memory not observable for {}",
                r.memory_unobservable
                    .iter()
                    .map(|(c, why)| format!("{c} ({why})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            json!({"unobservable": r.memory_unobservable}),
        ));
    }
    out
}

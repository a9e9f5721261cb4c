//! Step 6, the bake period: after the gates pass, keep watching for `bake` and fail on any
//! regression against the baseline. A failure rolls back like any other gate.
//!
//! Signals: readiness stays green, no new fault, no crash or restart of the changed components,
//! dependencies stay healthy, and progression keeps moving (under the idle policy when the
//! baseline was idle).

use std::collections::BTreeMap;
use std::time::Duration;

use rollgate_core::baseline::Baseline;
use rollgate_core::config::{Config, IdlePolicy};
use rollgate_core::engine::{Reading, moved};
use rollgate_core::vocab::{GateResult, Verdict};
use serde_json::{Value, json};

use crate::observe::Observer;
use crate::progress::Progress;

/// The bake's verdicts, one gate per signal.
#[derive(Debug, Clone, Default)]
pub struct BakeVerdict {
    pub gates: Vec<GateResult>,
}

impl BakeVerdict {
    pub fn failed(&self) -> Option<&GateResult> {
        self.gates.iter().find(|g| g.verdict == Verdict::Fail)
    }
}

/// Watch the node for `duration`, sampling every `[bake].sample_interval`; stop early at the
/// first failure.
pub async fn bake(config: &Config, baseline: &Baseline, observer: &mut Observer, duration: Duration, progress: &dyn Progress) -> BakeVerdict {
    let interval = config.bake.sample_interval.min(duration.max(Duration::from_millis(100)));
    let start = tokio::time::Instant::now();
    let mut first_progress: BTreeMap<String, Value> = BTreeMap::new();
    let mut last_progress: BTreeMap<String, Value> = BTreeMap::new();
    let mut samples = 0u32;
    let mut failures: Vec<GateResult> = Vec::new();
    let mut dep_streak: BTreeMap<String, u32> = BTreeMap::new();

    loop {
        let obs = observer.observe().await;
        samples += 1;
        for (name, r) in &obs.readiness {
            if let Reading::Transient(d) | Reading::Fail(d) = r {
                failures.push(gate(&format!("bake:readiness:{name}"), Verdict::Fail, format!("readiness lost during the bake: {d}"), json!({"at_s": start.elapsed().as_secs_f64()})));
            }
        }
        for f in &obs.faults {
            if !baseline.faults.contains(f) {
                failures.push(gate("bake:faults", Verdict::Fail, format!("new fault during the bake: {f}"), json!({"fault": f})));
            }
        }
        for line in obs.log_faults.iter().take(1) {
            failures.push(gate("bake:faults", Verdict::Fail, format!("fault in the logs during the bake: {line}"), json!({"line": line})));
        }
        for (c, d) in &obs.crashed {
            failures.push(gate(&format!("bake:component:{c}"), Verdict::Fail, format!("{c} crashed or restarted during the bake: {d}"), json!({})));
        }
        for (name, r) in &obs.dependencies {
            let streak = dep_streak.entry(name.clone()).or_default();
            if let Reading::Fail(d) = r {
                *streak += 1;
                if *streak >= 2 {
                    failures.push(gate(&format!("bake:dependency:{name}"), Verdict::Fail, format!("{name} degraded during the bake: {d}"), json!({})));
                }
            } else {
                *streak = 0;
            }
        }
        for (name, v) in &obs.progression {
            if let Some(v) = v {
                first_progress.entry(name.clone()).or_insert_with(|| v.clone());
                last_progress.insert(name.clone(), v.clone());
            }
        }
        progress.gates("bake", start.elapsed(), duration, &failures);
        if !failures.is_empty() {
            failures.truncate(5);
            return BakeVerdict { gates: failures };
        }
        if start.elapsed() >= duration {
            break;
        }
        tokio::time::sleep(interval.min(duration.saturating_sub(start.elapsed()))).await;
    }

    let mut gates = vec![gate(
        "bake:stability",
        Verdict::Pass,
        format!("readiness, faults, components and dependencies held for {} ({samples} samples)", humantime::format_duration(Duration::from_secs(duration.as_secs().max(1)))),
        json!({"samples": samples}),
    )];
    for p in &config.progression {
        let (first, last) = (first_progress.get(&p.name), last_progress.get(&p.name));
        let did_move = matches!((first, last), (Some(a), Some(b)) if moved(p.mode, a, b));
        let baseline_idle = baseline.progression.iter().find(|r| r.name == p.name).map(|r| r.idle).unwrap_or(false);
        let (verdict, detail) = if did_move {
            (Verdict::Pass, format!("{} kept moving during the bake ({} → {})", p.name, show(first), show(last)))
        } else if baseline_idle {
            let v = match config.rollout.idle_progression {
                IdlePolicy::Fail => Verdict::Fail,
                IdlePolicy::Inconclusive => Verdict::Inconclusive,
                IdlePolicy::Pass => Verdict::Pass,
            };
            (v, format!("{} did not move during the bake; the baseline was idle too, idle_progression = {}", p.name, config.rollout.idle_progression.as_str()))
        } else {
            (Verdict::Fail, format!("progression stalled during the bake: {} stayed at {}", p.name, show(first)))
        };
        gates.push(gate(&format!("bake:progression:{}", p.name), verdict, detail, json!({"first": first, "last": last, "baseline_idle": baseline_idle})));
    }
    BakeVerdict { gates }
}

fn show(v: Option<&Value>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "nothing".into())
}

fn gate(name: &str, verdict: Verdict, detail: String, evidence: Value) -> GateResult {
    GateResult { name: name.to_string(), verdict, detail, evidence }
}

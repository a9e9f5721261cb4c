//! `GET /`: the status page. Server-rendered, no script, refreshed by the browser every 15 s:
//! the kill switch, the current (or interrupted) rollout, the last known-good baseline with its
//! layers, the latest rollout with its timeline, recent history and the light probe.

use std::fmt::Write as _;
use std::time::SystemTime;

use rollgate_core::baseline::{Baseline, LayerValue};
use rollgate_core::vocab::{CheckStatus, Outcome};
use rollgate_journal::{HistoryEntry, RolloutDetail};

use crate::analysis::{Analysis, phase_gates};
use crate::html::{
    ago, between, esc, human_secs, outcome_badge, page, path_segment, verdict_badge,
};
use crate::state::{ActionState, ServeStatus};
use crate::timeline::timeline_svg;

/// What the page shows.
#[derive(Debug, Clone)]
pub struct StatusPage {
    pub status: ServeStatus,
    pub recent: Vec<HistoryEntry>,
    /// The latest rollout (unfinished or finished), for its timeline.
    pub latest: Option<RolloutDetail>,
    pub known_good: Option<Baseline>,
}

fn rollout_link(id: &str) -> String {
    format!(
        r#"<a href="/rollouts/{}"><code>{}</code></a>"#,
        path_segment(id),
        esc(id)
    )
}

pub fn render_status_html(p: &StatusPage) -> String {
    let s = &p.status;
    let now = SystemTime::now();
    let mut b = String::new();

    let (state_class, state_text) = match (&s.frozen, &s.active_rollout) {
        (_, Some(a)) if a.interrupted => ("fail", "rollout interrupted"),
        (_, Some(_)) => ("wait", "rollout running"),
        (Some(_), None) => ("wait", "frozen"),
        (None, None) => ("pass", "idle"),
    };
    let _ = write!(
        b,
        r#"<h1>Node <code>{}</code> <span class="badge {state_class}" id="node-state">{state_text}</span></h1>"#,
        esc(&s.node)
    );

    if let Some(f) = &s.frozen {
        let _ = write!(
            b,
            r#"<div class="banner wait" id="frozen">Frozen: no rollout starts, a running one rolls back at its next step.<span class="why">{} — by {} since {} (<code>rollgate unfreeze</code> lifts it)</span></div>"#,
            esc(&f.reason),
            esc(&f.by),
            esc(&f.frozen_at)
        );
    }

    // Current rollout.
    b.push_str(r#"<h2>Current rollout</h2><section class="card" id="current">"#);
    match &s.active_rollout {
        None => b.push_str(r#"<p class="muted">No rollout in progress.</p>"#),
        Some(a) => {
            let r = &a.rollout;
            if a.interrupted {
                let _ = write!(
                    b,
                    r#"<div class="banner fail">Rollout {} was interrupted{}: no live process holds the lock. Run <code>rollgate resume</code> (or <code>POST /api/v1/resume</code>) to finish it.</div>"#,
                    esc(&r.rollout_id),
                    r.last_step
                        .as_ref()
                        .map(|st| format!(" at step <code>{}</code>", esc(&st.kind)))
                        .unwrap_or_default()
                );
            }
            let from = r
                .from
                .as_ref()
                .map(LayerValue::display)
                .unwrap_or_else(|| "?".into());
            let _ = write!(
                b,
                r#"<dl class="kv"><dt>rollout</dt><dd>{}</dd><dt>change</dt><dd>{} <code>{}</code> → <code>{}</code></dd><dt>started</dt><dd>{} ({})</dd>"#,
                rollout_link(&r.rollout_id),
                esc(&r.layer),
                esc(&from),
                esc(&r.to),
                esc(&r.started_at),
                esc(&ago(&r.started_at, now))
            );
            if let Some(st) = &r.last_step {
                let state = match st.ok {
                    None => "in progress (intent written)",
                    Some(true) => "done",
                    Some(false) => "failed",
                };
                let _ = write!(
                    b,
                    r#"<dt>step</dt><dd>{} of {}: <code>{}</code> {state}</dd>"#,
                    st.step_id,
                    r.steps,
                    esc(&st.kind)
                );
            }
            b.push_str("</dl>");
        }
    }
    if let Some(act) = &s.action
        && act.state == ActionState::Running
        && !act.gates.is_empty()
    {
        b.push_str(r#"<h3>Live gates</h3><table><thead><tr><th>gate</th><th>verdict</th><th>detail</th></tr></thead><tbody>"#);
        for g in &act.gates {
            let _ = write!(
                b,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&g.name),
                verdict_badge(g.verdict.as_str()),
                esc(&g.detail)
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("</section>");

    // Known-good baseline.
    b.push_str(r#"<h2>Last known-good baseline</h2><section class="card" id="known-good">"#);
    match &s.last_known_good {
        None => b.push_str(r#"<p class="muted">No baseline has been marked known-good yet: the first promoted rollout (or verified rollback) marks one.</p>"#),
        Some(k) => {
            let since = k.known_good_at.as_deref().unwrap_or("?");
            let _ = write!(b, r#"<dl class="kv"><dt>baseline</dt><dd><code>{}</code></dd><dt>known-good since</dt><dd>{} ({})</dd><dt>frozen</dt><dd>{}</dd><dt>mode</dt><dd>{}</dd></dl>"#, esc(&k.id), esc(since), esc(&ago(since, now)), esc(&k.created_at), esc(k.mode.as_str()));
            if let Some(base) = &p.known_good
                && !base.layers.is_empty()
            {
                b.push_str(r#"<table><thead><tr><th>layer</th><th>kind</th><th>value</th><th>digest</th></tr></thead><tbody>"#);
                for (name, v) in &base.layers {
                    let _ = write!(b, "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>", esc(name), v.kind.as_str(), esc(&v.value), esc(v.digest.as_deref().unwrap_or("-")));
                }
                b.push_str("</tbody></table>");
            }
        }
    }
    b.push_str("</section>");

    // History.
    b.push_str(r#"<h2>Recent rollouts</h2><section class="card" id="history">"#);
    if p.recent.is_empty() {
        b.push_str(r#"<p class="muted">No rollout recorded yet.</p>"#);
    } else {
        b.push_str(r#"<table><thead><tr><th>rollout</th><th>started</th><th>layer</th><th>from</th><th>to</th><th>outcome</th><th>took</th></tr></thead><tbody>"#);
        for h in &p.recent {
            let took = h
                .finished_at
                .as_deref()
                .and_then(|f| between(&h.started_at, f))
                .map(|d| human_secs(d.as_secs_f64()))
                .unwrap_or_else(|| "-".into());
            let _ = write!(
                b,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td class="num">{took}</td></tr>"#,
                rollout_link(&h.rollout_id),
                esc(&h.started_at),
                esc(&h.layer),
                esc(h.from.as_deref().unwrap_or("-")),
                esc(&h.to),
                outcome_badge(h.outcome.map(Outcome::as_str))
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("</section>");

    // Latest rollout with its timeline.
    if let Some(d) = &p.latest {
        let gates = phase_gates(d);
        let a = Analysis::new(d, &gates);
        let class = match d.outcome {
            Some(Outcome::Promoted) => "pass",
            Some(Outcome::Refused) => "neutral",
            None => "wait",
            Some(_) => "fail",
        };
        let _ = write!(
            b,
            r#"<h2>Latest rollout</h2><section class="card" id="latest"><p>{} {} — <a href="/rollouts/{}">full report</a></p><div class="banner {class}">{}</div><div class="chart">{}</div></section>"#,
            rollout_link(&d.rollout_id),
            outcome_badge(d.outcome.map(Outcome::as_str)),
            path_segment(&d.rollout_id),
            esc(&a.headline()),
            timeline_svg(&a, "latest")
        );
    }

    if let Some(pr) = &s.probes {
        let _ = write!(
            b,
            r#"<h2>Readiness probes <span class="muted">({})</span></h2><section class="card" id="probes"><table><thead><tr><th>probe</th><th>status</th><th>latency</th><th>detail</th></tr></thead><tbody>"#,
            esc(&ago(&pr.at, now))
        );
        for c in &pr.checks {
            let v = match c.status {
                CheckStatus::Pass => "pass",
                CheckStatus::Fail => "fail",
                CheckStatus::Warn => "warn",
                CheckStatus::Skip => "skip",
            };
            let _ = write!(
                b,
                r#"<tr><td><code>{}</code></td><td>{}</td><td class="num">{} ms</td><td>{}</td></tr>"#,
                esc(&c.name),
                verdict_badge(v),
                c.latency_ms,
                esc(&c.detail)
            );
        }
        b.push_str("</tbody></table></section>");
    }

    b.push_str(r#"<p class="muted">JSON: <a href="/api/v1/status">/api/v1/status</a> · <a href="/api/v1/history">/api/v1/history</a> · Prometheus: <a href="/metrics">/metrics</a></p>"#);
    let meta = format!("node {} · {}", esc(&s.node), esc(&s.now));
    page(&format!("rollgate · {}", s.node), &meta, &b, Some(15))
}

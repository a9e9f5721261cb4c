//! The rollout report: one standalone HTML page per rollout (`rollgate show ID --html FILE`,
//! and `GET /rollouts/{id}` in `serve`). It opens with the outcome and the one sentence that
//! says where and why the rollout stopped, then the timeline chart, the gates with their
//! evidence and every step with its driver output.

use std::fmt::Write as _;

use rollgate_core::baseline::LayerValue;
use rollgate_core::vocab::{Outcome, Verdict};
use rollgate_journal::RolloutDetail;

use crate::analysis::{Analysis, phase_gates, step_state, summary_of};
use crate::html::{between, esc, human_secs, outcome_badge, page, verdict_badge};
use crate::timeline::timeline_svg;

/// The report as a standalone page (inline CSS and SVG, no script, nothing fetched).
pub fn render_report_html(detail: &RolloutDetail) -> String {
    let gates = phase_gates(detail);
    let a = Analysis::new(detail, &gates);
    let title = format!(
        "rollout {} — {}",
        detail.rollout_id,
        detail.outcome.map(Outcome::as_str).unwrap_or("unfinished")
    );
    page(
        &title,
        &esc(&detail.rollout_id),
        &report_body(&a, true),
        None,
    )
}

/// The report without the page frame, for embedding.
pub fn report_body(a: &Analysis<'_>, full: bool) -> String {
    let d = a.detail;
    let mut s = String::new();
    let outcome = d.outcome.map(Outcome::as_str);
    let _ = write!(
        s,
        r#"<h1>Rollout <code>{}</code> {}</h1>"#,
        esc(&d.rollout_id),
        outcome_badge(outcome)
    );

    let class = match d.outcome {
        Some(Outcome::Promoted) => "pass",
        Some(Outcome::Refused) => "neutral",
        None => "wait",
        Some(_) => "fail",
    };
    let _ = write!(
        s,
        r#"<div class="banner {class}" id="why">{}"#,
        esc(&a.headline())
    );
    if let Some(r) = &d.reason {
        let _ = write!(s, r#"<span class="why">Reason recorded: {}</span>"#, esc(r));
    }
    s.push_str("</div>");

    s.push_str(r#"<section class="card"><dl class="kv">"#);
    let from = d
        .from
        .as_ref()
        .map(LayerValue::display)
        .unwrap_or_else(|| "-".into());
    let duration = d
        .finished_at
        .as_deref()
        .and_then(|f| between(&d.started_at, f))
        .map(|x| human_secs(x.as_secs_f64()));
    let rows: [(&str, String); 8] = [
        ("layer", esc(&d.layer)),
        ("from", format!("<code>{}</code>", esc(&from))),
        ("to", format!("<code>{}</code>", esc(&d.to))),
        (
            "baseline",
            d.baseline_id
                .as_deref()
                .map(|b| format!("<code>{}</code>", esc(b)))
                .unwrap_or_else(|| "-".into()),
        ),
        ("started", esc(&d.started_at)),
        (
            "finished",
            d.finished_at
                .as_deref()
                .map(esc)
                .unwrap_or_else(|| "-".into()),
        ),
        ("duration", duration.unwrap_or_else(|| "-".into())),
        ("cause", format!("<code>{}</code>", esc(&a.cause()))),
    ];
    for (k, v) in rows {
        let _ = write!(s, "<dt>{k}</dt><dd>{v}</dd>");
    }
    s.push_str("</dl></section>");

    let _ = write!(
        s,
        r#"<h2>Timeline</h2><section class="card chart">{}</section>"#,
        timeline_svg(a, "tl")
    );

    // Gates, grouped by phase in recorded order.
    s.push_str(r#"<h2>Gates</h2>"#);
    if a.gates.is_empty() {
        s.push_str(r#"<p class="muted">No gate was recorded.</p>"#);
    } else {
        s.push_str(r#"<table class="gates"><thead><tr><th>phase</th><th>gate</th><th>verdict</th><th>detail</th><th>at</th></tr></thead><tbody>"#);
        for g in a.gates {
            let fail = g.gate.verdict == Verdict::Fail;
            let evidence = if g.gate.evidence.is_null() || !full {
                String::new()
            } else {
                format!(
                    "<details><summary>evidence</summary><pre>{}</pre></details>",
                    esc(&serde_json::to_string_pretty(&g.gate.evidence).unwrap_or_default())
                )
            };
            let _ = write!(
                s,
                r#"<tr class="{}" data-gate="{}"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}{evidence}</td><td class="muted">{}</td></tr>"#,
                if fail { "fail" } else { "" },
                esc(&g.gate.name),
                esc(&g.phase),
                esc(&g.gate.name),
                verdict_badge(g.gate.verdict.as_str()),
                esc(&g.gate.detail),
                esc(&g.gate.at),
            );
        }
        s.push_str("</tbody></table>");
    }

    if full {
        s.push_str(r#"<h2>Steps</h2><table class="steps"><thead><tr><th>#</th><th>step</th><th>state</th><th>summary</th><th>took</th><th>intent at</th></tr></thead><tbody>"#);
        for st in &d.steps {
            let took = st
                .outcome_at
                .as_deref()
                .and_then(|o| between(&st.intent_at, o))
                .map(|x| human_secs(x.as_secs_f64()))
                .unwrap_or_else(|| "-".into());
            let mut more = format!(
                "<details><summary>intent</summary><pre>{}</pre></details>",
                esc(&serde_json::to_string_pretty(&st.intent).unwrap_or_default())
            );
            if let Some(o) = &st.outcome {
                let _ = write!(
                    more,
                    "<details><summary>outcome</summary><pre>{}</pre></details>",
                    esc(&serde_json::to_string_pretty(o).unwrap_or_default())
                );
            }
            for out in &st.driver_outputs {
                let code = out
                    .exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "killed".into());
                let _ = write!(
                    more,
                    "<details><summary>$ {} (exit {code}, {} ms)</summary><pre>{}{}</pre></details>",
                    esc(&out.command),
                    out.duration_ms,
                    esc(&out.stdout),
                    if out.stderr.is_empty() {
                        String::new()
                    } else {
                        format!("\n--- stderr ---\n{}", esc(&out.stderr))
                    }
                );
            }
            let state = match st.ok {
                Some(true) => verdict_badge("pass").replace(">pass<", ">ok<"),
                Some(false) => verdict_badge("fail").replace(">fail<", ">failed<"),
                None => verdict_badge("inconclusive").replace(">inconclusive<", ">no outcome<"),
            };
            let _ = write!(
                s,
                r#"<tr class="{}"><td class="num">{}</td><td><code>{}</code></td><td title="{}">{state}</td><td>{}{more}</td><td class="num">{took}</td><td class="muted">{}</td></tr>"#,
                if st.ok == Some(false) { "fail" } else { "" },
                st.step_id,
                esc(&st.kind),
                step_state(st),
                esc(&summary_of(st).unwrap_or_default()),
                esc(&st.intent_at)
            );
        }
        s.push_str("</tbody></table>");
        if let Some(p) = &d.plan {
            let _ = write!(
                s,
                "<h2>Plan</h2><details><summary>the validated plan</summary><pre>{}</pre></details>",
                esc(&serde_json::to_string_pretty(p).unwrap_or_default())
            );
        }
    }
    s
}

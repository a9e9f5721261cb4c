//! The rollout timeline as inline SVG: the steps on a time axis, every gate verdict in its own
//! row, readiness waits, the decision, and a small chart for every series the evidence holds
//! (progression `samples: [[ms, value], …]`, analysis `values` and any other `[[ms, number], …]`
//! array, e.g. latencies; analysis gates get a row each), so a reader sees at a glance where and why a rollout stopped.
//!
//! Times in the evidence count from the change they judge (the preceding `restart` or
//! `rollback_restart` intent); they are placed on the same axis as the journal's timestamps.

use std::fmt::Write as _;

use rollgate_core::engine::numeric;
use rollgate_core::text::shorten as short;
use rollgate_core::vocab::{Outcome, Verdict};
use rollgate_journal::RolloutDetail;
use serde_json::Value;

use crate::analysis::{Analysis, PhasedGate, is_restart, is_rollback, step_state, summary_of};
use crate::html::{color, epoch_secs, esc, human_secs, parse_ts};

const WIDTH: f64 = 1120.0;
const LABEL_W: f64 = 210.0;
const RIGHT: f64 = 28.0;
const TOP: f64 = 64.0;
const ROW_H: f64 = 26.0;
/// Step lanes are taller: names that do not fit in a bar go above it.
const STEP_ROW_H: f64 = 38.0;
const PANEL_H: f64 = 96.0;

/// A series found in gate evidence.
struct Series<'a> {
    gate: &'a PhasedGate<'a>,
    key: String,
    /// (epoch seconds, value, raw value as text)
    points: Vec<(f64, f64, String)>,
    /// Non-numeric values are plotted by order of first appearance.
    ordinal: bool,
}

struct Axis {
    t0: f64,
    t1: f64,
}

impl Axis {
    fn x(&self, t: f64) -> f64 {
        let span = (self.t1 - self.t0).max(1e-6);
        LABEL_W + ((t - self.t0) / span).clamp(0.0, 1.0) * (WIDTH - LABEL_W - RIGHT)
    }
}

fn ts(s: &str) -> Option<f64> {
    parse_ts(s).map(epoch_secs)
}

fn verdict_color(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => color::PASS,
        Verdict::Fail => color::FAIL,
        Verdict::Inconclusive => color::WAIT,
    }
}

/// `[[ms, value], …]` arrays of a gate's evidence, placed in time.
fn series_of<'a>(g: &'a PhasedGate<'a>) -> Vec<Series<'a>> {
    let Some(obj) = g.gate.evidence.as_object() else {
        return vec![];
    };
    let Some(anchor) = g.anchor.or(g.at) else {
        return vec![];
    };
    let mut out = Vec::new();
    for (key, v) in obj {
        let Some(arr) = v.as_array() else { continue };
        let pairs: Vec<(f64, &Value)> = arr
            .iter()
            .filter_map(|p| {
                let p = p.as_array()?;
                if p.len() != 2 {
                    return None;
                }
                Some((p[0].as_f64()?, &p[1]))
            })
            .collect();
        if pairs.is_empty() || pairs.len() != arr.len() {
            continue;
        }
        let ordinal = pairs.iter().any(|(_, v)| numeric(v).is_none());
        let mut seen: Vec<String> = Vec::new();
        let points = pairs
            .iter()
            .map(|(ms, v)| {
                let raw = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let y = if ordinal {
                    match seen.iter().position(|s| *s == raw) {
                        Some(i) => i as f64,
                        None => {
                            seen.push(raw.clone());
                            (seen.len() - 1) as f64
                        }
                    }
                } else {
                    numeric(v).unwrap_or(0.0)
                };
                (anchor + ms / 1000.0, y, raw)
            })
            .collect();
        out.push(Series {
            gate: g,
            key: key.clone(),
            points,
            ordinal,
        });
    }
    out
}

fn tick_step(span: f64) -> f64 {
    const STEPS: [f64; 18] = [
        0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0,
        1800.0, 3600.0, 7200.0,
    ];
    STEPS
        .into_iter()
        .find(|s| span / s <= 9.0)
        .unwrap_or(span / 8.0)
}

fn tick_label(secs: f64, step: f64) -> String {
    if step < 1.0 {
        format!("+{secs:.1}s")
    } else if secs < 60.0 {
        format!("+{secs:.0}s")
    } else {
        let s = secs.round() as u64;
        if s.is_multiple_of(60) {
            format!("+{}m", s / 60)
        } else {
            format!("+{}m{:02}s", s / 60, s % 60)
        }
    }
}

/// The timeline of one rollout. `id` prefixes the element ids (one chart per page).
pub fn timeline_svg(a: &Analysis<'_>, id: &str) -> String {
    let d: &RolloutDetail = a.detail;
    let series: Vec<Series<'_>> = a.gates.iter().flat_map(series_of).collect();

    // The time axis: from the start to the last thing recorded or sampled.
    let mut times: Vec<f64> = Vec::new();
    times.extend(ts(&d.started_at));
    times.extend(d.finished_at.as_deref().and_then(ts));
    for s in &d.steps {
        times.extend(ts(&s.intent_at));
        times.extend(s.outcome_at.as_deref().and_then(ts));
    }
    times.extend(a.gates.iter().filter_map(|g| g.at));
    for s in &series {
        times.extend(s.points.iter().map(|p| p.0));
    }
    let t0 = times.iter().cloned().fold(f64::INFINITY, f64::min);
    let t_last = times.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let (t0, t_last) = if t0.is_finite() {
        (t0, t_last)
    } else {
        (0.0, 1.0)
    };
    let span = (t_last - t0).max(1.0);
    let axis = Axis {
        t0,
        t1: t0 + span * 1.02,
    };

    // Rows: forward steps, rollback steps (when any), one per gate name.
    let has_rollback = d.steps.iter().any(|s| is_rollback(&s.kind));
    // Readiness and progression gates, and any gate that did not pass, get a row each; the
    // rest (dependencies, environment, faults, restored layers that all passed) share one row.
    let mut gate_names: Vec<&str> = Vec::new();
    let mut others: Vec<&str> = Vec::new();
    for g in a.gates {
        let name = g.gate.name.as_str();
        if gate_names.contains(&name) || others.contains(&name) {
            continue;
        }
        let own_row = name.starts_with("readiness:")
            || name.starts_with("progression:")
            || name.starts_with("analysis:")
            || a.gates
                .iter()
                .any(|o| o.gate.name == name && o.gate.verdict != Verdict::Pass);
        if own_row {
            gate_names.push(name)
        } else {
            others.push(name)
        }
    }
    if others.len() == 1 {
        gate_names.append(&mut others);
    }
    let rows = gate_names.len() + usize::from(!others.is_empty());
    let rows_h = (1 + usize::from(has_rollback)) as f64 * STEP_ROW_H + rows as f64 * ROW_H;
    let charts_top = TOP + rows_h + 30.0;
    let height = charts_top + series.len() as f64 * PANEL_H + 40.0;
    let plot_bottom = TOP + rows_h;

    let outcome = d.outcome.map(Outcome::as_str).unwrap_or("unfinished");
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {WIDTH} {height:.0}" width="{WIDTH}" height="{height:.0}" role="img" aria-labelledby="{id}-title {id}-desc" font-family="-apple-system, 'Segoe UI', Roboto, Arial, sans-serif" font-size="12" data-outcome="{outcome}">"#
    );
    let _ = write!(
        s,
        r#"<title id="{id}-title">Timeline of rollout {}: {}</title>"#,
        esc(&d.rollout_id),
        esc(outcome)
    );
    let _ = write!(s, r#"<desc id="{id}-desc">{}</desc>"#, esc(&a.headline()));
    let _ = write!(
        s,
        r##"<defs><pattern id="{id}-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#eceff1"/><line x1="0" y1="0" x2="0" y2="6" stroke="#90a4ae" stroke-width="2"/></pattern></defs>"##
    );
    let _ = write!(
        s,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{height:.0}" fill="#ffffff"/>"##
    );

    // Grid and time axis.
    let step = tick_step(axis.t1 - axis.t0);
    let mut t = 0.0;
    while t0 + t <= axis.t1 + 1e-9 {
        let x = axis.x(t0 + t);
        let _ = write!(
            s,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{}" stroke-width="1"/>"#,
            TOP - 6.0,
            height - 34.0,
            color::GRID
        );
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="{}" font-size="11">{}</text>"#,
            TOP - 10.0,
            color::MUTED,
            tick_label(t, step)
        );
        t += step;
    }
    let _ = write!(
        s,
        r#"<text x="8" y="{:.1}" fill="{}" font-size="11">since {}</text>"#,
        TOP - 10.0,
        color::MUTED,
        esc(&d.started_at)
    );

    // Row labels and row lines.
    let mut row_y = TOP;
    let label_row = |s: &mut String, label: &str, y: f64, h: f64, strong: bool| {
        let weight = if strong { "600" } else { "400" };
        let _ = write!(
            s,
            r#"<text x="8" y="{:.1}" fill="{}" font-weight="{weight}">{}</text>"#,
            y + h / 2.0 + 4.0,
            color::INK,
            esc(&short(label, 30))
        );
        let _ = write!(
            s,
            r#"<line x1="8" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}"/>"#,
            y + h,
            WIDTH - RIGHT,
            y + h,
            color::GRID
        );
    };

    // Steps.
    let lanes: Vec<(&str, bool)> = if has_rollback {
        vec![("rollout steps", false), ("rollback steps", true)]
    } else {
        vec![("rollout steps", false)]
    };
    for (label, rollback_lane) in lanes {
        label_row(&mut s, label, row_y, STEP_ROW_H, true);
        let bar_y = row_y + STEP_ROW_H - 21.0;
        let mut label_end = f64::NEG_INFINITY;
        for st in d
            .steps
            .iter()
            .filter(|st| is_rollback(&st.kind) == rollback_lane)
        {
            let Some(start) = ts(&st.intent_at) else {
                continue;
            };
            let end = st.outcome_at.as_deref().and_then(ts).unwrap_or(t_last);
            let (x0, x1) = (axis.x(start), axis.x(end));
            let w = (x1 - x0).max(4.0);
            let fill = match st.ok {
                Some(true) if rollback_lane => color::ROLLBACK.to_string(),
                Some(true) => color::PASS.to_string(),
                Some(false) => color::FAIL.to_string(),
                None => format!("url(#{id}-hatch)"),
            };
            let tip = format!(
                "{} — {}{}",
                st.kind,
                step_state(st),
                summary_of(st).map(|m| format!(": {m}")).unwrap_or_default()
            );
            let _ = write!(
                s,
                r#"<g class="step" data-kind="{}"><title>{}</title><rect x="{x0:.1}" y="{bar_y:.1}" width="{w:.1}" height="16" rx="3" fill="{fill}" fill-opacity="0.9" stroke="white" stroke-width="1"/>"#,
                esc(&st.kind),
                esc(&tip),
            );
            // The name inside the bar when it fits, else above it when there is room.
            let name = st.kind.trim_start_matches("rollback_");
            let text_w = name.chars().count() as f64 * 6.2;
            if w > text_w + 8.0 {
                let _ = write!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" fill="white" font-size="11">{}</text>"#,
                    x0 + 4.0,
                    bar_y + 12.0,
                    esc(name)
                );
            } else if x0 >= label_end + 4.0 {
                let label_w = name.chars().count() as f64 * 5.6;
                let lx = x0.min(WIDTH - RIGHT - label_w);
                let _ = write!(
                    s,
                    r#"<text x="{lx:.1}" y="{:.1}" fill="{}" font-size="10">{}</text>"#,
                    bar_y - 3.0,
                    color::MUTED,
                    esc(name)
                );
                label_end = lx + label_w;
            }
            s.push_str("</g>");
        }
        row_y += STEP_ROW_H;
    }

    // Gates: one row per gate name, a marker per verdict, with readiness waits and sampling spans.
    for name in &gate_names {
        label_row(&mut s, name, row_y, ROW_H, false);
        let cy = row_y + ROW_H / 2.0;
        for g in a.gates.iter().filter(|g| g.gate.name == *name) {
            let Some(at) = g.at else { continue };
            let x = axis.x(at);
            let v = g.gate.verdict;
            let c = verdict_color(v);
            // Readiness: waiting from the change until green (or until it failed).
            if let Some(anchor) = g.anchor {
                let green = g.gate.evidence.get("green_at_s").and_then(Value::as_f64);
                match (green, v) {
                    (Some(gs), _) => {
                        let xg = axis.x(anchor + gs);
                        let _ = write!(
                            s,
                            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="6" fill="{}" opacity="0.8"><title>waiting for readiness: {}</title></rect>"#,
                            axis.x(anchor),
                            cy - 3.0,
                            (xg - axis.x(anchor)).max(1.0),
                            color::WAIT,
                            human_secs(gs)
                        );
                        let _ = write!(
                            s,
                            r#"<rect x="{xg:.1}" y="{:.1}" width="{:.1}" height="6" fill="{}" opacity="0.55"/>"#,
                            cy - 3.0,
                            (x - xg).max(0.0),
                            color::PASS
                        );
                    }
                    (None, Verdict::Fail) if g.gate.name.starts_with("readiness:") => {
                        let _ = write!(
                            s,
                            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="6" fill="{}" opacity="0.5"/>"#,
                            axis.x(anchor),
                            cy - 3.0,
                            (x - axis.x(anchor)).max(1.0),
                            color::FAIL
                        );
                    }
                    _ => {}
                }
            }
            let tip = format!(
                "{} ({}): {} — {}",
                g.gate.name,
                g.phase,
                v.as_str(),
                g.gate.detail
            );
            let _ = write!(
                s,
                r#"<g class="gate" data-gate="{}" data-verdict="{}"><title>{}</title>"#,
                esc(&g.gate.name),
                v.as_str(),
                esc(&tip)
            );
            match v {
                Verdict::Pass => {
                    let _ = write!(s, r#"<circle cx="{x:.1}" cy="{cy:.1}" r="6" fill="{c}"/>"#);
                }
                Verdict::Fail => {
                    let _ = write!(
                        s,
                        r#"<rect x="{:.1}" y="{:.1}" width="12" height="12" fill="{c}" transform="rotate(45 {x:.1} {cy:.1})"/><path d="M{:.1} {:.1} l6 6 m0 -6 l-6 6" stroke="white" stroke-width="1.8"/>"#,
                        x - 6.0,
                        cy - 6.0,
                        x - 3.0,
                        cy - 3.0
                    );
                }
                Verdict::Inconclusive => {
                    let _ = write!(
                        s,
                        r#"<circle cx="{x:.1}" cy="{cy:.1}" r="5.5" fill="white" stroke="{c}" stroke-width="2.5"/>"#
                    );
                }
            }
            s.push_str("</g>");
            if v == Verdict::Fail {
                let text = format!("{}: {}", g.gate.name, g.gate.detail);
                let (anchor_attr, tx) = if x > (LABEL_W + WIDTH) / 2.0 {
                    ("end", x - 12.0)
                } else {
                    ("start", x + 12.0)
                };
                let _ = write!(
                    s,
                    r#"<text x="{tx:.1}" y="{:.1}" text-anchor="{anchor_attr}" fill="{}" font-size="11" font-weight="600">{}</text>"#,
                    cy + 4.0,
                    color::FAIL,
                    esc(&short(&text, 80))
                );
            }
        }
        row_y += ROW_H;
    }

    // The gates that all passed, together: one marker per phase.
    if !others.is_empty() {
        label_row(
            &mut s,
            &format!("{} other gates", others.len()),
            row_y,
            ROW_H,
            false,
        );
        let cy = row_y + ROW_H / 2.0;
        let mut phases: Vec<(&str, f64, Vec<&str>)> = Vec::new();
        for g in a
            .gates
            .iter()
            .filter(|g| others.contains(&g.gate.name.as_str()))
        {
            let Some(at) = g.at else { continue };
            match phases.iter_mut().find(|(p, _, _)| *p == g.phase.as_str()) {
                Some((_, t, names)) => {
                    *t = t.max(at);
                    names.push(&g.gate.name);
                }
                None => phases.push((&g.phase, at, vec![&g.gate.name])),
            }
        }
        for (phase, at, names) in phases {
            let x = axis.x(at);
            let tip = format!(
                "{} gates passed in {phase}: {}",
                names.len(),
                names.join(", ")
            );
            let _ = write!(
                s,
                r#"<g class="gate" data-gate="others" data-verdict="pass"><title>{}</title><circle cx="{x:.1}" cy="{cy:.1}" r="6" fill="{}"/><text x="{:.1}" y="{:.1}" fill="white" font-size="8" text-anchor="middle">{}</text></g>"#,
                esc(&tip),
                color::PASS,
                x,
                cy + 3.0,
                names.len()
            );
        }
        row_y += ROW_H;
    }
    let _ = row_y;

    // Change markers and the decision.
    for st in d.steps.iter().filter(|st| is_restart(&st.kind)) {
        if let Some(t) = ts(&st.intent_at) {
            let x = axis.x(t);
            let label = if is_rollback(&st.kind) {
                "rollback restart"
            } else {
                "change"
            };
            let _ = write!(
                s,
                r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{plot_bottom:.1}" stroke="{}" stroke-dasharray="2 3"/>"#,
                TOP,
                color::NEUTRAL
            );
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" fill="{}" font-size="10">{label}</text>"#,
                x + 3.0,
                plot_bottom + 12.0,
                color::NEUTRAL
            );
        }
    }
    let decision: Option<(f64, String, &str)> = match d.outcome {
        Some(Outcome::Promoted) => d
            .steps
            .iter()
            .rev()
            .find(|st| st.kind == "promote")
            .and_then(|st| {
                st.outcome_at
                    .as_deref()
                    .or(Some(&st.intent_at))
                    .and_then(ts)
            })
            .map(|t| (t, "✓ promoted".to_string(), color::PASS)),
        Some(_) => {
            let from_gate = a
                .failing
                .and_then(|g| g.at.map(|t| (t, format!("✕ roll back: {}", g.gate.name))));
            let from_step = a.failed_step.and_then(|st| {
                st.outcome_at
                    .as_deref()
                    .and_then(ts)
                    .map(|t| (t, format!("✕ {} failed", st.kind)))
            });
            from_gate.or(from_step).map(|(t, l)| (t, l, color::FAIL))
        }
        None => None,
    };
    if let Some((t, label, c)) = decision {
        let x = axis.x(t);
        let _ = write!(
            s,
            r#"<g class="decision"><line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{plot_bottom:.1}" stroke="{c}" stroke-width="2" stroke-dasharray="6 3"/>"#,
            TOP - 28.0
        );
        let (anchor_attr, tx) = if x > (LABEL_W + WIDTH) / 2.0 {
            ("end", x - 6.0)
        } else {
            ("start", x + 6.0)
        };
        let _ = write!(
            s,
            r#"<text x="{tx:.1}" y="{:.1}" text-anchor="{anchor_attr}" fill="{c}" font-weight="700" font-size="13">{}</text></g>"#,
            TOP - 27.0,
            esc(&short(&label, 70))
        );
    }
    if let Some(g) = a.rollback_failing
        && let Some(t) = g.at
    {
        let x = axis.x(t);
        let _ = write!(
            s,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{plot_bottom:.1}" stroke="{}" stroke-width="2"/>"#,
            TOP - 6.0,
            color::FAIL
        );
    }
    // Title line: the change, then the outcome in its color.
    let outcome_color = match d.outcome {
        Some(Outcome::Promoted) => color::PASS,
        None => color::WAIT,
        Some(_) => color::FAIL,
    };
    let from = d
        .from
        .as_ref()
        .map(|f| f.value.clone())
        .unwrap_or_else(|| "?".into());
    let _ = write!(
        s,
        r#"<text x="8" y="18" fill="{}" font-weight="700" font-size="14">{} {} → {} <tspan fill="{outcome_color}" class="outcome" dx="8">{}</tspan></text>"#,
        color::INK,
        esc(&short(&d.layer, 30)),
        esc(&short(&from, 40)),
        esc(&short(&d.to, 40)),
        esc(outcome)
    );

    // Series panels.
    let mut py = charts_top;
    for se in &series {
        let g = se.gate;
        let ph = PANEL_H - 26.0;
        let (y_top, y_bot) = (py + 8.0, py + 8.0 + ph);
        let mut lo = se.points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let mut hi = se
            .points
            .iter()
            .map(|p| p.1)
            .fold(f64::NEG_INFINITY, f64::max);
        if (hi - lo).abs() < 1e-9 {
            lo -= 1.0;
            hi += 1.0;
        }
        let y = |v: f64| y_bot - (v - lo) / (hi - lo) * ph;
        let what = if se.key == "samples" {
            g.gate.name.clone()
        } else {
            format!("{} {}", g.gate.name, se.key)
        };
        let _ = write!(
            s,
            r#"<g class="series" data-gate="{}" data-key="{}">"#,
            esc(&g.gate.name),
            esc(&se.key)
        );
        let _ = write!(
            s,
            r##"<rect x="{LABEL_W}" y="{y_top:.1}" width="{:.1}" height="{ph:.1}" fill="#fafbfc" stroke="{}"/>"##,
            WIDTH - LABEL_W - RIGHT,
            color::GRID
        );
        let _ = write!(
            s,
            r#"<text x="8" y="{:.1}" fill="{}" font-weight="600">{}</text>"#,
            y_top + 12.0,
            color::INK,
            esc(&short(&what, 30))
        );
        let _ = write!(
            s,
            r#"<text x="8" y="{:.1}" fill="{}" font-size="11">{} · {}</text>"#,
            y_top + 28.0,
            color::MUTED,
            esc(&g.phase),
            g.gate.verdict.as_str()
        );
        if !se.ordinal {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="{}" font-size="10">{}</text>"#,
                LABEL_W - 4.0,
                y_top + 9.0,
                color::MUTED,
                fmt_num(hi)
            );
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="{}" font-size="10">{}</text>"#,
                LABEL_W - 4.0,
                y_bot,
                color::MUTED,
                fmt_num(lo)
            );
        }
        // The window the signal had to move in.
        if let (Some(w), Some(first)) = (
            g.gate.evidence.get("window_s").and_then(Value::as_f64),
            se.points.first(),
        ) {
            let (wx0, wx1) = (axis.x(first.0), axis.x(first.0 + w));
            let _ = write!(
                s,
                r#"<rect x="{wx0:.1}" y="{y_top:.1}" width="{:.1}" height="{ph:.1}" fill="{}" opacity="0.10"/>"#,
                (wx1 - wx0).max(1.0),
                verdict_color(g.gate.verdict)
            );
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" fill="{}" font-size="10">window {}</text>"#,
                wx0 + 3.0,
                y_top + 11.0,
                color::MUTED,
                human_secs(w)
            );
        }
        let c = verdict_color(g.gate.verdict);
        let pts: Vec<String> = se
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", axis.x(p.0), y(p.1)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
            pts.join(" ")
        );
        for p in &se.points {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.6" fill="{c}"><title>+{} after the change: {}</title></circle>"#,
                axis.x(p.0),
                y(p.1),
                human_secs(p.0 - g.anchor.unwrap_or(p.0)),
                esc(&p.2)
            );
        }
        if let Some(last) = se.points.last() {
            let note = match g.gate.verdict {
                Verdict::Fail if se.key == "samples" => {
                    format!("stalled at {}", short(&last.2, 24))
                }
                _ => short(&last.2, 24),
            };
            let lx = axis.x(last.0);
            let (anchor_attr, tx) = if lx > WIDTH - RIGHT - 140.0 {
                ("end", lx - 6.0)
            } else {
                ("start", lx + 6.0)
            };
            let _ = write!(
                s,
                r#"<text x="{tx:.1}" y="{:.1}" text-anchor="{anchor_attr}" fill="{c}" font-size="11" font-weight="600">{}</text>"#,
                y(last.1) - 6.0,
                esc(&note)
            );
        }
        s.push_str("</g>");
        py += PANEL_H;
    }

    // Legend.
    let ly = height - 14.0;
    let mut lx = 8.0;
    let mut legend = |s: &mut String, shape: String, text: &str| {
        s.push_str(
            &shape
                .replace("{X}", &format!("{lx:.1}"))
                .replace("{Y}", &format!("{ly:.1}")),
        );
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="{}" font-size="11">{text}</text>"#,
            lx + 16.0,
            ly + 4.0,
            color::MUTED
        );
        lx += 30.0 + text.len() as f64 * 6.2;
    };
    legend(
        &mut s,
        format!(
            r#"<circle cx="{{X}}" cy="{{Y}}" r="5" fill="{}" transform="translate(5 0)"/>"#,
            color::PASS
        ),
        "pass",
    );
    legend(
        &mut s,
        format!(
            r#"<rect x="{{X}}" y="{{Y}}" width="9" height="9" fill="{}" transform="translate(0 -4.5)"/>"#,
            color::FAIL
        ),
        "fail",
    );
    legend(
        &mut s,
        format!(
            r#"<circle cx="{{X}}" cy="{{Y}}" r="4.5" fill="white" stroke="{}" stroke-width="2" transform="translate(5 0)"/>"#,
            color::WAIT
        ),
        "inconclusive",
    );
    legend(
        &mut s,
        format!(
            r#"<rect x="{{X}}" y="{{Y}}" width="12" height="6" fill="{}" transform="translate(0 -3)"/>"#,
            color::WAIT
        ),
        "waiting for readiness",
    );
    legend(
        &mut s,
        format!(
            r#"<rect x="{{X}}" y="{{Y}}" width="12" height="9" fill="{}" transform="translate(0 -4.5)"/>"#,
            color::ROLLBACK
        ),
        "rollback step",
    );
    s.push_str("</svg>");
    s
}

fn fmt_num(v: f64) -> String {
    if v.fract().abs() < 1e-9 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

//! The alert contract: the fields alerts key on keep their JSON types, and the metrics (and the
//! label keys) the rule files select on are still exported.

use std::time::Duration;

use rollgate_core::baseline::{Baseline, Trends};
use rollgate_core::config::Config;
use rollgate_core::vocab::{GateResult, Verdict};
use serde_json::{Value, json};

use super::{gate, no_data, no_data_name};
use crate::watch::{TrendSampler, alert_url};

/// The baseline's alert-contract document: recorded beside the trends when `[alerts].url` is
/// not a readiness URL, else that readiness entry's raw output.
pub fn baseline_alert_document(config: &Config, baseline: &Baseline) -> Option<Value> {
    if let Some(doc) = baseline
        .trends
        .as_ref()
        .and_then(|t| t.alert_document.clone())
    {
        return Some(doc);
    }
    let url = alert_url(config)?;
    let entry = config.readiness.iter().find(|r| r.url == url)?;
    baseline
        .readiness
        .get(&entry.name)
        .filter(|v| !v.is_null())
        .cloned()
}

pub(super) fn fields_failure(
    config: &Config,
    report: &rollgate_probe::alerts::FieldReport,
    at: Duration,
) -> GateResult {
    let shown: Vec<String> = report.broken.iter().map(ToString::to_string).collect();
    gate(
        "bake:alerts:fields",
        Verdict::Fail,
        format!("alert contract broken: {}", shown.join("; ")),
        json!({
            "url": alert_url(config).map(rollgate_core::redact::redact_url),
            "broken": report.broken,
            "held": report.held,
            "not_in_baseline": report.unknown,
            "at_s": at.as_secs_f64(),
        }),
    )
}

/// The alert fields at the end of a bake that did not break them.
pub fn judge_fields(
    config: &Config,
    baseline: &Baseline,
    current: Option<&Value>,
) -> Option<GateResult> {
    let fields = &config.alerts.fields;
    if fields.is_empty() {
        return None;
    }
    let nd = config.bake.no_data;
    let Some(base) = baseline_alert_document(config, baseline) else {
        return Some(gate(
            "bake:alerts:fields",
            no_data(nd),
            format!(
                "the baseline has no status document to compare the {} alert field(s) with (no_data = {})",
                fields.len(),
                no_data_name(nd)
            ),
            Value::Null,
        ));
    };
    let Some(current) = current else {
        return Some(gate(
            "bake:alerts:fields",
            no_data(nd),
            format!(
                "the status document was never read during the bake (no_data = {})",
                no_data_name(nd)
            ),
            Value::Null,
        ));
    };
    let report = rollgate_probe::alerts::check_fields(fields, &base, current);
    if !report.broken.is_empty() {
        return Some(fields_failure(config, &report, Duration::ZERO));
    }
    let evidence = json!({"held": report.held, "not_in_baseline": report.unknown});
    Some(if report.unknown.is_empty() {
        gate(
            "bake:alerts:fields",
            Verdict::Pass,
            format!(
                "{} alert field(s) present with their baseline types",
                report.held.len()
            ),
            evidence,
        )
    } else {
        gate(
            "bake:alerts:fields",
            Verdict::Inconclusive,
            format!(
                "{} alert field(s) held; not in the baseline either, so not comparable: {}",
                report.held.len(),
                report.unknown.join(", ")
            ),
            evidence,
        )
    })
}

pub(super) fn judge_metrics(
    config: &Config,
    sampler: &TrendSampler,
    base: Option<&Trends>,
) -> Option<GateResult> {
    if config.alerts.rules_files.is_empty() {
        return None;
    }
    let name = "bake:alerts:metrics";
    let files: Vec<String> = config
        .alerts
        .rules_files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let rules = match rollgate_probe::alerts::load_rules(&config.alerts.rules_files) {
        Ok(r) => r,
        Err(e) => {
            return Some(gate(
                name,
                Verdict::Inconclusive,
                format!("cannot check the alert rules' metrics: {}", e.detail()),
                json!({"rules_files": files}),
            ));
        }
    };
    let required = rules.required().len() + rules.patterns.len();
    if config.alerts.metrics_urls.is_empty() {
        return Some(gate(
            name,
            Verdict::Inconclusive,
            format!(
                "{required} metric(s) referenced by the alert rules were not checked: no [alerts].metrics_urls"
            ),
            json!({"rules_files": files}),
        ));
    }
    if sampler.metric_scrapes == 0 {
        return Some(gate(
            name,
            Verdict::Fail,
            format!(
                "no metrics endpoint answered during the bake, so none of the {required} metric(s) the alert rules reference is exported: {}",
                sampler
                    .metric_errors
                    .iter()
                    .map(|(u, e)| format!("{u}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            json!({"rules_files": files, "errors": sampler.metric_errors}),
        ));
    }
    let missing = rollgate_probe::alerts::missing_metrics(&rules, sampler.metric_names());
    let baseline_names: Option<std::collections::BTreeSet<&str>> = base
        .filter(|t| !t.metric_names.is_empty())
        .map(|t| t.metric_names.iter().map(String::as_str).collect());
    let (already, new): (Vec<_>, Vec<_>) = missing.into_iter().partition(|m| {
        baseline_names
            .as_ref()
            .is_some_and(|b| !m.name.starts_with('~') && !b.contains(m.name.as_str()))
    });
    // A label key a selector needs that the metric's series no longer carry: the change's fault
    // only when the baseline's series carried it (a baseline without label records cannot say).
    let missing_labels = rollgate_probe::alerts::missing_labels(&rules, sampler.metric_labels());
    let (labels_new, labels_already): (Vec<_>, Vec<_>) =
        missing_labels.into_iter().partition(|m| {
            base.and_then(|t| t.metric_labels.get(&m.metric))
                .is_some_and(|had| had.contains(&m.label))
        });
    let required_labels: usize = rules.labels.values().map(|l| l.len()).sum();
    let evidence = json!({
        "rules_files": files,
        "rules": rules.rules,
        "required": required,
        "required_labels": required_labels,
        "missing": new,
        "missing_in_baseline_too": already,
        "missing_labels": labels_new,
        "missing_labels_unknown_in_baseline": labels_already,
        "scrapes": sampler.metric_scrapes,
        "errors": sampler.metric_errors,
    });
    let label_text = |ls: &[rollgate_probe::alerts::MissingLabel]| -> Vec<String> {
        ls.iter()
            .map(|m| {
                format!(
                    "{} has no label `{}` (used by {})",
                    m.metric,
                    m.label,
                    m.rules.join(", ")
                )
            })
            .collect()
    };
    Some(if !new.is_empty() || !labels_new.is_empty() {
        let mut list: Vec<String> = new
            .iter()
            .map(|m| format!("{} (used by {})", m.name, m.rules.join(", ")))
            .collect();
        list.extend(label_text(&labels_new));
        gate(
            name,
            Verdict::Fail,
            format!(
                "the alert rules select what is no longer exported, so they can no longer fire: {}",
                list.join("; ")
            ),
            evidence,
        )
    } else if !already.is_empty() || !labels_already.is_empty() {
        let mut list: Vec<String> = already.iter().map(|m| m.name.clone()).collect();
        list.extend(label_text(&labels_already));
        gate(
            name,
            Verdict::Inconclusive,
            format!(
                "not exported now, and not known from the baseline either: {}",
                list.join("; ")
            ),
            evidence,
        )
    } else {
        gate(
            name,
            Verdict::Pass,
            format!(
                "all {required} metric(s) and {required_labels} label(s) referenced by {} alert rule(s) are exported",
                rules.rules
            ),
            evidence,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bake::test_support::*;

    #[test]
    fn alert_fields_from_the_readiness_output() {
        let config = config();
        let b = baseline(None);
        let g = judge_fields(
            &config,
            &b,
            Some(&json!({"health": "Healthy", "lastTx": 12})),
        )
        .unwrap();
        assert_eq!(g.verdict, Verdict::Fail);
        assert!(
            g.detail
                .contains("/lastTx changed type from string to integer"),
            "{}",
            g.detail
        );
        let g = judge_fields(
            &config,
            &b,
            Some(&json!({"health": "Healthy", "lastTx": "0xcd"})),
        )
        .unwrap();
        assert_eq!(g.verdict, Verdict::Pass, "{g:#?}");
        let g = judge_fields(&config, &b, None).unwrap();
        assert_eq!(g.verdict, Verdict::Inconclusive);
        let mut empty = b.clone();
        empty.readiness.clear();
        assert_eq!(
            judge_fields(&config, &empty, Some(&json!({})))
                .unwrap()
                .verdict,
            Verdict::Inconclusive
        );
    }
}

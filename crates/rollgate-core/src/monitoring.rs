//! What the operator's Prometheus says about its own rules and alerts, frozen with the baseline
//! and compared after the change: **rule health** (every rule that evaluated without error at
//! freeze still does; every recording or alerting rule whose expression returned series at
//! freeze still returns series — a renamed metric silently disarms an alert) and **no new firing
//! alert** for this node (`[prometheus] alert_selectors`).

use serde::{Deserialize, Serialize};

use crate::config::LabelMatcher;

/// One rule as `/api/v1/rules` reports it, with the number of series its expression returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRecord {
    pub group: String,
    pub name: String,
    /// `alerting` or `recording`.
    pub kind: String,
    pub query: String,
    /// `health == "ok"` (`unknown`, never evaluated yet, counts as not healthy).
    pub healthy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Series the rule's expression returned when asked; `None` when it could not be asked.
    pub series: Option<u64>,
}

impl RuleRecord {
    fn key(&self) -> String {
        format!("{}/{}", self.group, self.name)
    }
}

/// Rules and this node's firing alerts at one moment.
///
/// ```json
/// {"rules": [{"group": "node", "name": "node:requests:sum", "kind": "recording",
///             "query": "sum(operator_requests_total)", "healthy": true, "series": 1}],
///  "firing": ["OperatorDown{node=\"node0\"}"]}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitoringRecord {
    pub rules: Vec<RuleRecord>,
    /// Firing alerts matching the node's selectors, as `alertname{labels}` (sorted).
    pub firing: Vec<String>,
}

/// What regressed since `baseline`: rules healthy then and not now (or gone), rules with series
/// then and none now. Empty when nothing did.
pub fn rule_regressions(baseline: &MonitoringRecord, now: &MonitoringRecord) -> Vec<String> {
    let mut out = Vec::new();
    for before in &baseline.rules {
        let after = now
            .rules
            .iter()
            .find(|r| r.group == before.group && r.name == before.name && r.query == before.query);
        let Some(after) = after else {
            if before.healthy {
                out.push(format!(
                    "{} ({}) is gone from Prometheus",
                    before.key(),
                    before.kind
                ));
            }
            continue;
        };
        if before.healthy && !after.healthy {
            out.push(format!(
                "{} ({}) was healthy at freeze, now: {}",
                before.key(),
                before.kind,
                after.last_error.as_deref().unwrap_or("not evaluated")
            ));
        }
        if before.series.is_some_and(|n| n > 0) && after.series == Some(0) {
            out.push(format!(
                "{} ({}) returned {} series at freeze, none now: `{}`",
                before.key(),
                before.kind,
                before.series.unwrap_or(0),
                before.query
            ));
        }
    }
    out
}

/// Firing alerts now that were not firing at freeze.
pub fn new_alerts(baseline: &MonitoringRecord, now: &MonitoringRecord) -> Vec<String> {
    now.firing
        .iter()
        .filter(|a| !baseline.firing.contains(a))
        .cloned()
        .collect()
}

/// Whether an alert's labels match every selector (regexes anchored, as Prometheus does; an
/// invalid regex matches nothing).
pub fn selected(
    labels: &std::collections::BTreeMap<String, String>,
    selectors: &[LabelMatcher],
) -> bool {
    selectors.iter().all(|m| {
        let v = labels.get(&m.name).map(String::as_str).unwrap_or("");
        let hit = if m.is_regex {
            regex::Regex::new(&format!("^(?:{})$", m.value)).is_ok_and(|re| re.is_match(v))
        } else {
            v == m.value
        };
        hit == m.is_equal
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, healthy: bool, series: Option<u64>) -> RuleRecord {
        RuleRecord {
            group: "node".into(),
            name: name.into(),
            kind: "recording".into(),
            query: format!("sum({name})"),
            healthy,
            last_error: (!healthy).then(|| "bad".into()),
            series,
        }
    }

    #[test]
    fn regressions_are_health_lost_and_series_lost() {
        let base = MonitoringRecord {
            rules: vec![
                rule("a", true, Some(1)),
                rule("b", true, Some(0)),
                rule("c", false, None),
            ],
            firing: vec![],
        };
        let same = base.clone();
        assert!(rule_regressions(&base, &same).is_empty());
        let now = MonitoringRecord {
            rules: vec![
                rule("a", true, Some(0)),
                rule("b", false, Some(0)),
                rule("c", false, None),
            ],
            firing: vec![],
        };
        let r = rule_regressions(&base, &now);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(
            r[0].contains("node/a") && r[0].contains("none now"),
            "{r:?}"
        );
        assert!(
            r[1].contains("node/b") && r[1].contains("was healthy"),
            "{r:?}"
        );
        let gone = MonitoringRecord::default();
        assert_eq!(rule_regressions(&base, &gone).len(), 2);
    }

    #[test]
    fn selectors_match_like_prometheus() {
        let labels: std::collections::BTreeMap<String, String> = [
            ("node".to_string(), "node0".to_string()),
            ("severity".into(), "page".into()),
        ]
        .into_iter()
        .collect();
        let m = |s: &str| s.parse::<LabelMatcher>().unwrap();
        assert!(selected(
            &labels,
            &[m("node=\"node0\""), m("severity=~\"page|warn\"")]
        ));
        assert!(!selected(&labels, &[m("node=\"node1\"")]));
        assert!(
            !selected(&labels, &[m("severity=~\"pag\"")]),
            "regexes are anchored"
        );
        assert!(selected(&labels, &[m("job!=\"x\""), m("team!~\".+\"")]));
    }
}

//! Asking the operator's Prometheus about its rules and this node's alerts: the baseline's
//! monitoring record at freeze, and the `rules` / `alerts` gates' measurements after the change
//! ([`rollgate_core::monitoring`]).

use rollgate_core::config::Config;
use rollgate_core::monitoring::{MonitoringRecord, RuleRecord, selected};

use crate::checks::ProbeClients;

/// Every rule with its health and the series its expression returns now, and the firing
/// alerts `[prometheus] alert_selectors` selects; or why Prometheus could not be asked.
pub async fn snapshot(config: &Config, clients: &ProbeClients) -> Result<MonitoringRecord, String> {
    let client = match &clients.prometheus {
        None => return Err("no [prometheus] configured".into()),
        Some(Err(why)) => return Err(why.clone()),
        Some(Ok(c)) => c,
    };
    let (rules, alerts) = tokio::join!(client.rules(), client.alerts());
    let rules = rules.map_err(|e| e.detail())?;
    let alerts = alerts.map_err(|e| e.detail())?;
    let counts = futures_util::future::join_all(rules.iter().map(|r| client.query(&r.query))).await;
    let rules = rules
        .into_iter()
        .zip(counts)
        .map(|(r, n)| RuleRecord {
            healthy: r.health == "ok",
            series: n.ok().map(|s| s.len() as u64),
            group: r.group,
            name: r.name,
            kind: r.kind,
            query: r.query,
            last_error: r.last_error,
        })
        .collect();
    let selectors = config
        .prometheus
        .as_ref()
        .map(|p| p.alert_selectors.clone())
        .unwrap_or_default();
    let mut firing: Vec<String> = if selectors.is_empty() {
        Vec::new()
    } else {
        alerts
            .iter()
            .filter(|a| a.state == "firing" && selected(&a.labels, &selectors))
            .map(|a| {
                let name = a.labels.get("alertname").cloned().unwrap_or_default();
                let labels: Vec<String> = a
                    .labels
                    .iter()
                    .filter(|(k, _)| k.as_str() != "alertname")
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect();
                format!("{name}{{{}}}", labels.join(", "))
            })
            .collect()
    };
    firing.sort();
    firing.dedup();
    Ok(MonitoringRecord { rules, firing })
}

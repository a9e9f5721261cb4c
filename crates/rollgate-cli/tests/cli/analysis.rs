//! Analysis gates and rule health against a real Prometheus scraping the simulated operator's
//! `/metrics`: a version whose error counter climbs is rolled back by the query, a version that
//! renames a recorded metric is rolled back by rule health, a good version is promoted with the
//! analysis recorded as gate evidence, and with Prometheus unreachable the gates follow their
//! `no_data` policy and say so.

use rollgate_sim::monitoring::Prometheus;
use serde_json::Value;

use crate::fixture::{Node, NodeOptions, code, explain, free_port};

/// The error analysis of these tests against the Prometheus at `url`.
fn analysis(url: &str, no_data: &str) -> String {
    format!(
        r#"
[prometheus]
url = "{url}"
alert_selectors = ['node="node0"']

[[analysis]]
name = "errors"
query = 'sum(increase(operator_errors_total{{job="node"}}[20s]))'
success = "< 1"
interval = "1s"
no_data = "{no_data}"
"#
    )
}

/// The operator's rules: a recording rule over the request counter, an alert for this node.
const RULES: &str = r#"groups:
  - name: node
    rules:
      - record: node:operator_requests:sum
        expr: sum(operator_requests_total)
      - alert: OperatorUnhealthy
        expr: operator_healthy == 0
        labels: {severity: page}
"#;

/// A node whose verify window is long enough for several measurements, and a Prometheus that
/// has scraped its operator and evaluated its rules (`None` when a service is missing outside
/// CI).
fn node_with_prometheus(bake: &'static str) -> Option<(Node, Prometheus)> {
    let node = Node::start(NodeOptions {
        bake,
        ..NodeOptions::default()
    })?;
    let prom = Prometheus::start(&[format!("127.0.0.1:{}", node.operator_port)], RULES)?;
    assert!(
        prom.wait_for_series(
            "node:operator_requests:sum",
            std::time::Duration::from_secs(20)
        ),
        "prometheus never evaluated the recording rule"
    );
    assert!(
        prom.wait_for_series("operator_errors_total", std::time::Duration::from_secs(20)),
        "prometheus never scraped the operator"
    );
    node.edit_config(
        "poll_interval = \"300ms\"",
        "poll_interval = \"300ms\"\nmin_healthy = \"6s\"",
    );
    node.append_config(&analysis(&prom.url(), "fail"));
    Some((node, prom))
}

fn gate<'a>(record: &'a Value, name: &str) -> &'a Value {
    record["gates"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["name"] == name))
        .unwrap_or_else(|| panic!("no gate {name}: {record:#}"))
}

#[test]
fn a_version_raising_the_error_query_is_rolled_back_by_analysis() {
    let Some((node, _prom)) = node_with_prometheus("0s") else {
        return;
    };
    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0-errors", "--yes"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    assert_eq!(record["outcome"], "rolled_back", "{record:#}");
    let g = gate(&record, "analysis:errors");
    assert_eq!(g["verdict"], "fail", "{record:#}");
    let detail = g["detail"].as_str().unwrap();
    assert!(detail.contains("not < 1"), "{detail}");
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .starts_with("analysis:errors"),
        "{record:#}"
    );
    // The evidence holds the query and every measurement with its samples.
    assert_eq!(
        g["evidence"]["query"],
        "sum(increase(operator_errors_total{job=\"node\"}[20s]))"
    );
    let measurements = g["evidence"]["measurements"].as_array().unwrap();
    assert!(
        measurements
            .iter()
            .any(|m| m["verdict"] == "failed"
                && m["samples"][0]["value"].as_f64().unwrap_or(0.0) >= 1.0),
        "{measurements:#?}"
    );
    assert_eq!(node.current("operator-image"), "v1.0.0");

    // Control: without the analysis gate nothing else sees the errors, and the same version is
    // promoted (the rollback above is the query's doing).
    let text = std::fs::read_to_string(&node.config).unwrap();
    let without = &text[..text.find("\n[prometheus]").expect("the analysis tables")];
    std::fs::write(&node.config, without).unwrap();
    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0-errors", "--yes"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(record["outcome"], "promoted", "{record:#}");
}

#[test]
fn a_good_version_passes_analysis_and_is_promoted() {
    let Some((node, _prom)) = node_with_prometheus("3s") else {
        return;
    };
    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(record["outcome"], "promoted", "{record:#}");
    let g = gate(&record, "analysis:errors");
    assert_eq!(g["verdict"], "pass", "{record:#}");
    assert_eq!(gate(&record, "rules")["verdict"], "pass", "{record:#}");
    assert_eq!(gate(&record, "alerts")["verdict"], "pass", "{record:#}");
    // The bake goes on asking: the query and the node's alerts.
    assert_eq!(
        gate(&record, "bake:analysis:errors")["verdict"],
        "pass",
        "{record:#}"
    );
    assert_eq!(
        gate(&record, "bake:alerts")["verdict"],
        "pass",
        "{record:#}"
    );
    // Measured every second through the 6 s hold.
    assert!(g["evidence"]["measured"].as_u64().unwrap() >= 3, "{g:#}");
    assert_eq!(g["evidence"]["failed"], 0);
    // The journal keeps it: `show` has the gate with its evidence.
    let (out, shown) = node.run(&["show", record["rollout_id"].as_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert!(shown.to_string().contains("analysis:errors"), "{shown:#}");
}

#[test]
fn prometheus_unreachable_follows_no_data_and_says_so() {
    let Some(node) = Node::start(NodeOptions::default()) else {
        return;
    };
    let nobody = format!("http://127.0.0.1:{}", free_port());
    // no_data = "fail": the good version is rolled back, and the gate says why.
    node.append_config(&analysis(&nobody, "fail"));
    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    let g = gate(&record, "analysis:errors");
    assert_eq!(g["verdict"], "fail", "{record:#}");
    let detail = g["detail"].as_str().unwrap();
    assert!(
        detail.contains("no data")
            && detail.contains("cannot connect")
            && detail.contains("no_data = fail"),
        "{detail}"
    );

    // no_data = "inconclusive": recorded as inconclusive, not a rollback.
    node.edit_config("no_data = \"fail\"", "no_data = \"inconclusive\"");
    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0", "--yes"]);
    assert_eq!(code(&out), 0, "{}", explain(&out));
    assert_eq!(record["outcome"], "promoted", "{record:#}");
    let g = gate(&record, "analysis:errors");
    assert_eq!(g["verdict"], "inconclusive", "{record:#}");
    let detail = g["detail"].as_str().unwrap();
    assert!(
        detail.contains("inconclusive_limit") && detail.contains("no_data = inconclusive"),
        "{detail}"
    );
}

#[test]
fn a_version_renaming_a_recorded_metric_is_rolled_back_by_rule_health() {
    let Some((node, _prom)) = node_with_prometheus("0s") else {
        return;
    };
    // The baseline records the rules: healthy, with series.
    let (out, record) = node.run(&["rollout", "operator-image=v1.1.0-renamed-metric", "--yes"]);
    assert_eq!(code(&out), 4, "{}", explain(&out));
    assert_eq!(record["outcome"], "rolled_back", "{record:#}");
    let g = gate(&record, "rules");
    assert_eq!(g["verdict"], "fail", "{record:#}");
    let detail = g["detail"].as_str().unwrap();
    assert!(
        detail.contains("node/node:operator_requests:sum") && detail.contains("none now"),
        "{detail}"
    );
    // Every other gate of verify passed: only Prometheus saw it.
    let others: Vec<&Value> = record["gates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["verdict"] == "fail" && g["name"] != "rules")
        .collect();
    assert!(others.is_empty(), "{others:#?}");
    let (_, baseline) = node.run(&["baseline", "show", record["baseline_id"].as_str().unwrap()]);
    assert!(
        baseline.to_string().contains("node:operator_requests:sum"),
        "the baseline records the rules: {baseline:#}"
    );
}

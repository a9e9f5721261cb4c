//! The alert contract of the bake period: what monitoring keys on must survive a rollout.
//!
//! Two halves:
//! - **Status fields.** Every `[alerts].fields` JSON pointer must still be present in the status
//!   document with the JSON type it had in the baseline ([`check_fields`]). Integer and
//!   non-integer numbers are one type here (an alert compares numbers either way); a field that
//!   was `null` in the baseline had no type to keep and may take any.
//! - **Metrics.** Every metric name the configured Prometheus rule files reference must still be
//!   exported by `[alerts].metrics_urls`. Rule files are parsed as YAML (`serde_norway`) and
//!   every `expr` as PromQL (`promql-parser`); the names are those of the vector and matrix
//!   selectors (`foo`, `{__name__="foo"}`), never found by a regex over the text. Names produced
//!   by recording rules in the same files are not expected from the components, and neither are
//!   the series Prometheus makes itself ([`PROMETHEUS_SYNTHETIC`]). A `{__name__=~"re"}`
//!   selector is satisfied by any exported name the (anchored) regex matches.
//!
//! Exported names are read from the Prometheus text exposition (and OpenMetrics): the sample
//! names of every non-comment line, plus the names declared by `# TYPE`.
//!
//! **Labels.** A selector such as `operator_dependency_up{dependency="postgres"}` also needs the
//! label key `dependency` on that metric: a release that renames the label keeps the metric
//! exported while the alert can never fire again. The label keys a named selector requires
//! (matched with `="non-empty"`, or with a regex that does not match the empty string) are
//! collected per metric ([`RuleMetrics::labels`]) and compared with the label keys of the
//! exported series ([`missing_labels`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use promql_parser::label::{METRIC_NAME, MatchOp};
use promql_parser::parser::{Expr, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};
use rollgate_core::config::JsonType;
use rollgate_core::redact::redact_url;
use serde::Deserialize;
use serde_json::Value;

use crate::errors::ProbeError;
use crate::http::{HttpClient, require_success};

/// Series Prometheus itself creates for every target or alert: never exported by a component.
pub const PROMETHEUS_SYNTHETIC: [&str; 7] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
];

// ---------------------------------------------------------------------------------------------
// Status fields.

/// One alert field that no longer holds its baseline type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldBreak {
    pub pointer: String,
    /// The type in the baseline; `None` when the baseline did not have the field either.
    pub was: Option<JsonType>,
    /// The type now; `None` when the field is missing.
    pub now: Option<JsonType>,
}

impl fmt::Display for FieldBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |t: Option<JsonType>| t.map(JsonType::as_str).unwrap_or("missing");
        match self.now {
            None => write!(f, "{} is missing (was {})", self.pointer, name(self.was)),
            Some(_) => write!(
                f,
                "{} changed type from {} to {}",
                self.pointer,
                name(self.was),
                name(self.now)
            ),
        }
    }
}

/// The JSON type an alert cares about: integers and other numbers are both numbers.
fn contract_type(v: &Value) -> JsonType {
    match JsonType::of(v) {
        JsonType::Integer => JsonType::Number,
        t => t,
    }
}

/// What an alert-field comparison found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldReport {
    /// Fields present in the baseline that are now missing or of another type.
    pub broken: Vec<FieldBreak>,
    /// Fields that are not in the baseline document either: nothing to compare against.
    pub unknown: Vec<String>,
    /// Fields that hold.
    pub held: Vec<String>,
}

/// Compare every alert field of `current` with `baseline`.
pub fn check_fields(fields: &[String], baseline: &Value, current: &Value) -> FieldReport {
    let mut report = FieldReport::default();
    for pointer in fields {
        let before = baseline.pointer(pointer);
        let now = current.pointer(pointer);
        match (before, now) {
            (None, _) => report.unknown.push(pointer.clone()),
            (Some(b), None) => report.broken.push(FieldBreak {
                pointer: pointer.clone(),
                was: Some(JsonType::of(b)),
                now: None,
            }),
            // A null baseline had no type to keep.
            (Some(Value::Null), Some(_)) => report.held.push(pointer.clone()),
            (Some(b), Some(n)) if contract_type(b) == contract_type(n) => {
                report.held.push(pointer.clone())
            }
            (Some(b), Some(n)) => report.broken.push(FieldBreak {
                pointer: pointer.clone(),
                was: Some(JsonType::of(b)),
                now: Some(JsonType::of(n)),
            }),
        }
    }
    report
}

// ---------------------------------------------------------------------------------------------
// Rule files.

#[derive(Debug, Deserialize)]
struct RawRuleFile {
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Debug, Deserialize)]
struct RawGroup {
    #[serde(default)]
    name: String,
    #[serde(default)]
    rules: Vec<RawRule>,
}

/// Only the keys read here; `labels`, `annotations`, `for`, ... are allowed and ignored.
#[derive(Debug, Deserialize)]
struct RawRule {
    alert: Option<String>,
    record: Option<String>,
    expr: Option<serde_norway::Value>,
}

/// The metric names the rule files reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleMetrics {
    /// Metric name → the rules (`file: group/alert`) that reference it.
    pub names: BTreeMap<String, BTreeSet<String>>,
    /// `__name__` regexes (anchored, as PromQL anchors them) → the rules that use them.
    pub patterns: BTreeMap<String, BTreeSet<String>>,
    /// Names produced by recording rules: Prometheus makes them, the components do not.
    pub recorded: BTreeSet<String>,
    /// How many rules were read.
    pub rules: usize,
    /// Metric name → label key a selector requires on it → the rules that require it.
    pub labels: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl RuleMetrics {
    /// The names the components must export: referenced, not recorded, not synthetic.
    pub fn required(&self) -> BTreeMap<&str, &BTreeSet<String>> {
        self.names
            .iter()
            .filter(|(n, _)| {
                !self.recorded.contains(*n) && !PROMETHEUS_SYNTHETIC.contains(&n.as_str())
            })
            .map(|(n, r)| (n.as_str(), r))
            .collect()
    }

    fn merge(&mut self, other: RuleMetrics) {
        for (n, r) in other.names {
            self.names.entry(n).or_default().extend(r);
        }
        for (n, r) in other.patterns {
            self.patterns.entry(n).or_default().extend(r);
        }
        self.recorded.extend(other.recorded);
        self.rules += other.rules;
        for (metric, labels) in other.labels {
            let into = self.labels.entry(metric).or_default();
            for (l, r) in labels {
                into.entry(l).or_default().extend(r);
            }
        }
    }
}

/// The metrics one PromQL expression selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExprMetrics {
    pub names: BTreeSet<String>,
    /// `__name__` regexes.
    pub patterns: BTreeSet<String>,
    /// Metric name → the label keys its selectors require.
    pub labels: BTreeMap<String, BTreeSet<String>>,
}

/// Collects the selectors of one expression.
struct Selectors(ExprMetrics);

impl Selectors {
    fn add(&mut self, vs: &VectorSelector) {
        let named = vs.name.clone().or_else(|| {
            vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal)
                .map(|m| m.value.clone())
        });
        if let Some(metric) = named {
            // Only the plain matchers: `or` alternatives require nothing on their own.
            for m in vs
                .matchers
                .matchers
                .iter()
                .filter(|m| m.name != METRIC_NAME)
            {
                let required = match &m.op {
                    MatchOp::Equal => !m.value.is_empty(),
                    MatchOp::Re(re) => !re.is_match(""),
                    MatchOp::NotEqual | MatchOp::NotRe(_) => false,
                };
                if required {
                    self.0
                        .labels
                        .entry(metric.clone())
                        .or_default()
                        .insert(m.name.clone());
                }
            }
        }
        let s = &mut self.0;
        if let Some(n) = &vs.name {
            s.names.insert(n.clone());
        }
        let all = vs
            .matchers
            .matchers
            .iter()
            .chain(vs.matchers.or_matchers.iter().flatten());
        for m in all.filter(|m| m.name == METRIC_NAME) {
            match &m.op {
                MatchOp::Equal => {
                    s.names.insert(m.value.clone());
                }
                MatchOp::Re(re) => {
                    s.patterns.insert(re.as_str().to_string());
                }
                // `!=` and `!~` name what must *not* be selected: nothing is required.
                MatchOp::NotEqual | MatchOp::NotRe(_) => {}
            }
        }
    }
}

impl ExprVisitor for Selectors {
    type Error = std::convert::Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
        match expr {
            Expr::VectorSelector(vs) => self.add(vs),
            Expr::MatrixSelector(ms) => self.add(&ms.vs),
            _ => {}
        }
        Ok(true)
    }
}

/// The metric names (and the label keys) one PromQL expression selects.
pub fn expr_metrics(expr: &str) -> Result<ExprMetrics, String> {
    let ast = promql_parser::parser::parse(expr)?;
    let mut s = Selectors(ExprMetrics::default());
    let _ = walk_expr(&mut s, &ast);
    Ok(s.0)
}

/// Parse one rule file's text. `source` names it in errors and in the rule labels.
pub fn parse_rules(text: &str, source: &str) -> Result<RuleMetrics, ProbeError> {
    let invalid = |message: String| ProbeError::Invalid {
        endpoint: source.to_string(),
        message,
    };
    let raw: RawRuleFile = if text.trim().is_empty() {
        RawRuleFile { groups: vec![] }
    } else {
        serde_norway::from_str(text)
            .map_err(|e| invalid(format!("not a Prometheus rule file: {e}")))?
    };
    let mut out = RuleMetrics::default();
    for group in raw.groups {
        for (i, rule) in group.rules.into_iter().enumerate() {
            let label = match (&rule.alert, &rule.record) {
                (Some(a), _) => format!("{source}: {}/{a}", group.name),
                (None, Some(r)) => format!("{source}: {}/{r}", group.name),
                (None, None) => format!("{source}: {}/rule {}", group.name, i + 1),
            };
            let expr = match rule.expr {
                Some(serde_norway::Value::String(s)) => s,
                Some(serde_norway::Value::Number(n)) => n.to_string(),
                Some(other) => {
                    return Err(invalid(format!(
                        "{label}: expr is not a string ({other:?})"
                    )));
                }
                None => return Err(invalid(format!("{label}: no expr"))),
            };
            let found = expr_metrics(&expr)
                .map_err(|e| invalid(format!("{label}: invalid PromQL: {e}")))?;
            for n in found.names {
                out.names.entry(n).or_default().insert(label.clone());
            }
            for p in found.patterns {
                out.patterns.entry(p).or_default().insert(label.clone());
            }
            for (metric, keys) in found.labels {
                let into = out.labels.entry(metric).or_default();
                for k in keys {
                    into.entry(k).or_default().insert(label.clone());
                }
            }
            if let Some(r) = rule.record {
                out.recorded.insert(r);
            }
            out.rules += 1;
        }
    }
    Ok(out)
}

/// Read and parse every rule file; the result merges them.
pub fn load_rules(paths: &[PathBuf]) -> Result<RuleMetrics, ProbeError> {
    let mut all = RuleMetrics::default();
    for p in paths {
        all.merge(load_rule_file(p)?);
    }
    Ok(all)
}

fn load_rule_file(path: &Path) -> Result<RuleMetrics, ProbeError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ProbeError::Io {
        endpoint: source.clone(),
        what: "cannot read the rule file".into(),
        source: e,
    })?;
    parse_rules(&text, &source)
}

// ---------------------------------------------------------------------------------------------
// Exported metrics.

/// What a metrics endpoint exports: names, and the label keys seen on each name's series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exposition {
    pub names: BTreeSet<String>,
    pub labels: BTreeMap<String, BTreeSet<String>>,
}

impl Exposition {
    /// Add another scrape (of the same or another endpoint).
    pub fn extend(&mut self, other: Exposition) {
        self.names.extend(other.names);
        for (n, l) in other.labels {
            self.labels.entry(n).or_default().extend(l);
        }
    }
}

/// Parse a Prometheus text exposition (or OpenMetrics) document.
pub fn parse_exposition(text: &str) -> Exposition {
    let mut out = Exposition::default();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut words = rest.split_whitespace();
            if words.next() == Some("TYPE")
                && let Some(name) = words.next()
            {
                out.names.insert(name.to_string());
            }
            continue;
        }
        let (name, labels) = match line.strip_prefix('{') {
            // OpenMetrics 2 allows `{"name", labels}`; take the quoted name.
            Some(rest) => {
                let quoted = rest.trim_start().strip_prefix('"').unwrap_or("");
                let (name, after) = quoted.split_once('"').unwrap_or((quoted, ""));
                (name.to_string(), label_keys(after))
            }
            None => {
                let name: String = line
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '{')
                    .collect();
                let keys = line[name.len()..]
                    .strip_prefix('{')
                    .map(label_keys)
                    .unwrap_or_default();
                (name, keys)
            }
        };
        if !name.is_empty() {
            out.labels.entry(name.clone()).or_default().extend(labels);
            out.names.insert(name);
        }
    }
    out
}

/// The label keys of one sample's label set: `text` is what follows its `{`. Quoted values may
/// hold commas, braces and escaped quotes.
pub fn label_keys(text: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if rest.is_empty() || rest.starts_with('}') {
            return keys;
        }
        let Some(eq) = rest.find('=') else {
            return keys;
        };
        let key = rest[..eq].trim();
        rest = rest[eq + 1..].trim_start();
        let Some(value) = rest.strip_prefix('"') else {
            return keys;
        };
        let mut escaped = false;
        let mut end = None;
        for (i, c) in value.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            return keys;
        };
        if !key.is_empty() {
            keys.push(key.trim_matches('"').to_string());
        }
        rest = &value[end + 1..];
    }
}

/// Scrape one metrics endpoint: the names it exports and their label keys.
pub async fn scrape_exposition(http: &HttpClient, url: &str) -> Result<Exposition, ProbeError> {
    let fetched = http.get(url).await?;
    require_success(url, &fetched)?;
    let text = std::str::from_utf8(&fetched.body).map_err(|_| ProbeError::Invalid {
        endpoint: redact_url(url),
        message: "metrics are not UTF-8 text".into(),
    })?;
    Ok(parse_exposition(text))
}

/// A label key an alert rule's selector requires on an exported metric that no series of it has.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MissingLabel {
    pub metric: String,
    pub label: String,
    pub rules: Vec<String>,
}

/// The required label keys missing from metrics that are exported (a metric not exported at all
/// is [`missing_metrics`]' finding, not this one's).
pub fn missing_labels(
    rules: &RuleMetrics,
    exported: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<MissingLabel> {
    let required = rules.required();
    let mut out = Vec::new();
    for (metric, labels) in &rules.labels {
        let (Some(have), true) = (exported.get(metric), required.contains_key(metric.as_str()))
        else {
            continue;
        };
        for (label, r) in labels {
            if !have.contains(label) {
                out.push(MissingLabel {
                    metric: metric.clone(),
                    label: label.clone(),
                    rules: r.iter().cloned().collect(),
                });
            }
        }
    }
    out
}

/// A referenced metric nobody exports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MissingMetric {
    /// The name, or `~regex` for a `__name__=~` selector nothing matched.
    pub name: String,
    pub rules: Vec<String>,
}

/// The referenced metrics that `exported` lacks.
pub fn missing_metrics(rules: &RuleMetrics, exported: &BTreeSet<String>) -> Vec<MissingMetric> {
    let mut out: Vec<MissingMetric> = rules
        .required()
        .into_iter()
        .filter(|(n, _)| !exported.contains(*n))
        .map(|(n, r)| MissingMetric {
            name: n.to_string(),
            rules: r.iter().cloned().collect(),
        })
        .collect();
    for (pattern, r) in &rules.patterns {
        let matched = regex_lite_match(pattern, exported);
        if !matched {
            out.push(MissingMetric {
                name: format!("~{pattern}"),
                rules: r.iter().cloned().collect(),
            });
        }
    }
    out
}

/// Whether any exported name matches a `__name__` regex (stored anchored, as the parser
/// compiled it); synthetic names count, since Prometheus makes them.
fn regex_lite_match(pattern: &str, exported: &BTreeSet<String>) -> bool {
    match regex::Regex::new(pattern) {
        Ok(re) => {
            exported.iter().any(|n| re.is_match(n))
                || PROMETHEUS_SYNTHETIC.iter().any(|n| re.is_match(n))
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RULES: &str = r#"
groups:
  - name: node
    interval: 30s
    rules:
      - alert: OperatorDown
        expr: operator_up == 0 or absent(operator_up)
        for: 1m
        labels: {severity: page}
        annotations:
          summary: "operator {{ $labels.instance }} down"
      - alert: RequestsStalled
        expr: rate(operator_requests_total[5m]) == 0 and on() up{job="operator"} == 1
      - record: node:rejected:rate5m
        expr: sum by (instance) (rate(operator_requests_rejected_total[5m]))
      - alert: Rejecting
        expr: node:rejected:rate5m > 0.1
      - alert: DbGrowth
        expr: deriv({__name__="operator_db_bytes_written_total"}[10m]) > 1e6
      - alert: AnyDependencyDown
        expr: min({__name__=~"operator_dependency_.*"}) == 0
      - alert: Histo
        expr: histogram_quantile(0.99, sum by (le) (rate(operator_latency_seconds_bucket[5m]))) > 0.5
  - name: empty
"#;

    #[test]
    fn rule_metrics_come_from_selectors() {
        let m = parse_rules(RULES, "node.yml").unwrap();
        let names: Vec<&str> = m.names.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "node:rejected:rate5m",
                "operator_db_bytes_written_total",
                "operator_latency_seconds_bucket",
                "operator_requests_rejected_total",
                "operator_requests_total",
                "operator_up",
                "up"
            ]
        );
        assert_eq!(m.rules, 7);
        assert!(m.recorded.contains("node:rejected:rate5m"));
        let required: Vec<&str> = m.required().keys().copied().collect();
        assert!(
            !required.contains(&"up") && !required.contains(&"node:rejected:rate5m"),
            "{required:?}"
        );
        assert_eq!(m.patterns.len(), 1);
        assert!(m.names["operator_up"].contains("node.yml: node/OperatorDown"));
        // Label values and annotation templates are not metric names.
        assert!(!m.names.contains_key("operator") && !m.names.contains_key("instance"));
    }

    #[test]
    fn missing_metrics_against_an_exposition() {
        let m = parse_rules(RULES, "node.yml").unwrap();
        let exposition = "# HELP operator_up Up.\n# TYPE operator_up gauge\noperator_up 1\n\
                          operator_requests_total 5\noperator_requests_rejected_total{reason=\"421\"} 0\n\
                          operator_db_bytes_written_total 1024\noperator_dependency_up{dependency=\"postgres\"} 1\n\
                          # TYPE operator_latency_seconds histogram\noperator_latency_seconds_bucket{le=\"0.1\"} 3\n";
        let exported = parse_exposition(exposition).names;
        assert!(
            missing_metrics(&m, &exported).is_empty(),
            "{:?}",
            missing_metrics(&m, &exported)
        );

        let exported = parse_exposition("operator_up 1\noperator_requests_total 5\n").names;
        let missing: Vec<String> = missing_metrics(&m, &exported)
            .into_iter()
            .map(|x| x.name)
            .collect();
        assert_eq!(
            missing,
            [
                "operator_db_bytes_written_total",
                "operator_latency_seconds_bucket",
                "operator_requests_rejected_total",
                "~^(?:operator_dependency_.*)$"
            ]
        );
    }

    #[test]
    fn bad_rule_files_are_errors_naming_the_rule() {
        let e = parse_rules(
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(foo[5m]\n",
            "r.yml",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("r.yml: r.yml: g/A: invalid PromQL"),
            "{e}"
        );
        let e = parse_rules("groups: [ {name: g, rules: [", "r.yml").unwrap_err();
        assert!(e.to_string().contains("not a Prometheus rule file"), "{e}");
        let e = parse_rules(
            "groups:\n  - name: g\n    rules:\n      - alert: A\n",
            "r.yml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("no expr"), "{e}");
        assert_eq!(parse_rules("", "r.yml").unwrap().rules, 0);
        let e = load_rules(&[PathBuf::from("/nonexistent/rules.yml")]).unwrap_err();
        assert!(e.to_string().contains("cannot read the rule file"), "{e}");
    }

    #[test]
    fn label_keys_of_selectors_and_expositions() {
        let m = parse_rules(
            "groups:\n  - name: g\n    rules:\n      - alert: PgDown\n        expr: operator_dependency_up{dependency=\"postgres\", job!=\"x\", env=~\".*\"} == 0\n      - alert: Errors\n        expr: rate(operator_requests_total{outcome=~\"err.+\"}[5m]) > 1\n",
            "r.yml",
        )
        .unwrap();
        // `!=` and a regex that matches "" require nothing.
        let keys: Vec<&str> = m.labels["operator_dependency_up"]
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["dependency"]);
        assert!(m.labels["operator_requests_total"].contains_key("outcome"));

        let e = parse_exposition(
            "operator_dependency_up{dependency=\"postgres\",note=\"a,b}\\\"c\"} 1\noperator_requests_total{outcome=\"ok\"} 5\n{\"x.y\", k=\"v\"} 1\nplain 1\n",
        );
        let keys = |n: &str| -> Vec<&str> { e.labels[n].iter().map(String::as_str).collect() };
        assert_eq!(keys("operator_dependency_up"), ["dependency", "note"]);
        assert_eq!(keys("x.y"), ["k"]);
        assert!(keys("plain").is_empty());
        assert!(missing_labels(&m, &e.labels).is_empty());

        // The label was renamed: the metric is still exported, the alert can never fire.
        let e = parse_exposition(
            "operator_dependency_up{service=\"postgres\"} 1\noperator_requests_total{outcome=\"ok\"} 5\n",
        );
        let missing = missing_labels(&m, &e.labels);
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert_eq!(missing[0].metric, "operator_dependency_up");
        assert_eq!(missing[0].label, "dependency");
        assert_eq!(missing[0].rules, ["r.yml: g/PgDown"]);

        // A metric not exported at all is missing_metrics' finding, not this one's.
        let e = parse_exposition("operator_requests_total{outcome=\"ok\"} 5\n");
        assert!(missing_labels(&m, &e.labels).is_empty());
        assert_eq!(missing_metrics(&m, &e.names).len(), 1);
    }

    #[test]
    fn exposition_names_cover_comments_labels_and_openmetrics() {
        let names = parse_exposition(
            "# HELP a_total A.\n# TYPE a counter\na_total{x=\"1 2\"} 3 1700000000\n\nb 1\n  c{} 2\n{\"d.e\", x=\"1\"} 1\n# EOF\n",
        )
        .names;
        let v: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(v, ["a", "a_total", "b", "c", "d.e"]);
        assert_eq!(parse_exposition(""), Exposition::default());
    }

    #[test]
    fn fields_keep_their_types() {
        let fields: Vec<String> = [
            "/runningState",
            "/lastTx",
            "/raftMetrics/voterIds",
            "/raftMetrics/nodeId",
            "/price",
            "/fault",
            "/never",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let before = json!({"runningState": "Running", "lastTx": "0xabc", "raftMetrics": {"nodeId": 1, "voterIds": [1]},
                            "price": 3, "fault": null});
        let same = json!({"runningState": "Leader", "lastTx": "0xdef", "raftMetrics": {"nodeId": 2, "voterIds": [1, 2]},
                          "price": 3.5, "fault": {"code": "x"}});
        let r = check_fields(&fields, &before, &same);
        assert!(r.broken.is_empty(), "{r:?}");
        assert_eq!(r.unknown, ["/never"]);
        assert_eq!(r.held.len(), 6);

        let renamed = json!({"runningState": "Running", "lastTx": 42, "raftMetrics": {"nodeId": 1, "voters": [1]}, "price": 3});
        let r = check_fields(&fields, &before, &renamed);
        let shown: Vec<String> = r.broken.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "/lastTx changed type from string to integer",
                "/raftMetrics/voterIds is missing (was array)",
                "/fault is missing (was null)"
            ]
        );
        assert_eq!(r.broken[0].was, Some(JsonType::String));
        assert_eq!(r.broken[0].now, Some(JsonType::Integer));
    }
}

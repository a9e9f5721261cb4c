//! Analysis gates: a PromQL query against the operator's Prometheus, judged by a comparison on
//! every sample it returns, in the shape Argo Rollouts' analysis templates use (`success`,
//! `interval`, `failure_limit`, `inconclusive_limit`) plus a `no_data` policy.
//!
//! This module is the pure part: the comparison (`success = "< 0.01"`), what one measurement
//! saw ([`Sampled`]) and how it is judged ([`judge`]). The engine ([`crate::engine`]) counts the
//! judged measurements against the limits; `rollgate-probe` asks Prometheus.
//!
//! **Several series.** A query may return many series (one per label set). A measurement is
//! *successful* only when every returned sample satisfies the comparison, and *failed* when any
//! does not: the query selects what must hold, and a series that breaks it is the finding. So
//! `sum(...)` is the way to judge an aggregate, and `max by (job) (...)` one value per job.
//!
//! **No data.** An empty vector, and a sample whose value is `NaN` (PromQL's answer to 0/0, e.g.
//! an error ratio with no traffic), carry no evidence either way: the gate's `no_data` policy
//! (`fail`, `inconclusive`, `pass`) judges the measurement, and the detail says so. A query
//! Prometheus could not answer (unreachable, timeout, an `errorType`) is judged the same way and
//! says *why* there is no data. `+Inf` and `-Inf` are values and compare as such.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::config::NoDataPolicy;

/// A comparison operator of `success`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CompareOp {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
}

impl CompareOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
        }
    }
}

/// `success = "< 0.01"`: what every sample must satisfy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    pub op: CompareOp,
    pub threshold: f64,
}

impl Comparison {
    /// Whether `value` satisfies the comparison (`NaN` never does; callers treat it as no data).
    pub fn holds(&self, value: f64) -> bool {
        let t = self.threshold;
        match self.op {
            CompareOp::Lt => value < t,
            CompareOp::Le => value <= t,
            CompareOp::Gt => value > t,
            CompareOp::Ge => value >= t,
            CompareOp::Eq => value == t,
            CompareOp::Ne => value != t && !value.is_nan(),
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.as_str(), self.threshold)
    }
}

impl FromStr for Comparison {
    type Err = String;

    /// `OP NUMBER`, spaces optional: `< 0.01`, `>=1`, `== 0`. The number is finite.
    fn from_str(s: &str) -> Result<Comparison, String> {
        let s = s.trim();
        // Two-character operators first, so `<=` is not read as `<` and `=1`.
        let ops = [
            ("<=", CompareOp::Le),
            (">=", CompareOp::Ge),
            ("==", CompareOp::Eq),
            ("!=", CompareOp::Ne),
            ("<", CompareOp::Lt),
            (">", CompareOp::Gt),
        ];
        let Some((op, rest)) = ops
            .iter()
            .find_map(|(text, op)| s.strip_prefix(text).map(|rest| (*op, rest)))
        else {
            return Err(format!(
                "`{s}` is not a comparison: expected one of < <= > >= == != and a number, like \"< 0.01\""
            ));
        };
        let number = rest.trim();
        match number.parse::<f64>() {
            Ok(t) if t.is_finite() => Ok(Comparison { op, threshold: t }),
            _ => Err(format!(
                "`{number}` in `{s}` is not a finite number (expected e.g. \"< 0.01\")"
            )),
        }
    }
}

/// One sample of a query's answer: the series' labels (`{job="node"}`, empty for a scalar) and
/// its value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub labels: String,
    #[serde(serialize_with = "value_text")]
    pub value: f64,
}

/// Prometheus' own spelling of values (`NaN`, `+Inf`) in the record: JSON has no such numbers.
fn value_text<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        s.serialize_str(&show_value(*v))
    }
}

/// A value as Prometheus writes it.
pub fn show_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// What one measurement of an analysis query saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampled {
    /// The query answered these samples (possibly none: an empty vector).
    Values(Vec<Sample>),
    /// Prometheus could not be asked or did not answer usably; the reason.
    Unavailable(String),
}

/// The verdict on one measurement, Argo's *Successful*, *Failed* and *Inconclusive*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasurementVerdict {
    Successful,
    Failed,
    Inconclusive,
}

/// A judged measurement: the verdict, one line on why, and whether `no_data` decided it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judged {
    pub verdict: MeasurementVerdict,
    pub detail: String,
    pub no_data: bool,
}

/// Judge one measurement: every sample must satisfy `success`; no samples, only `NaN`, or an
/// unavailable Prometheus are no data, judged by `no_data`.
pub fn judge(success: &Comparison, no_data: NoDataPolicy, sampled: &Sampled) -> Judged {
    let by_policy = |why: String| Judged {
        verdict: match no_data {
            NoDataPolicy::Pass => MeasurementVerdict::Successful,
            NoDataPolicy::Inconclusive => MeasurementVerdict::Inconclusive,
            NoDataPolicy::Fail => MeasurementVerdict::Failed,
        },
        detail: format!("no data ({why}); no_data = {}", no_data_str(no_data)),
        no_data: true,
    };
    let samples = match sampled {
        Sampled::Unavailable(why) => return by_policy(why.clone()),
        Sampled::Values(v) => v,
    };
    let numbers: Vec<&Sample> = samples.iter().filter(|s| !s.value.is_nan()).collect();
    if numbers.is_empty() {
        return by_policy(if samples.is_empty() {
            "the query returned no series".into()
        } else {
            format!("the query returned only NaN ({} series)", samples.len())
        });
    }
    let breaking: Vec<&&Sample> = numbers.iter().filter(|s| !success.holds(s.value)).collect();
    let show = |s: &Sample| {
        if s.labels.is_empty() {
            show_value(s.value)
        } else {
            format!("{} = {}", s.labels, show_value(s.value))
        }
    };
    if breaking.is_empty() {
        let shown: Vec<String> = numbers.iter().take(3).map(|s| show(s)).collect();
        let more = numbers.len().saturating_sub(3);
        Judged {
            verdict: MeasurementVerdict::Successful,
            detail: format!(
                "{}{} {success}",
                shown.join(", "),
                if more > 0 {
                    format!(" (+{more} series)")
                } else {
                    String::new()
                }
            ),
            no_data: false,
        }
    } else {
        let shown: Vec<String> = breaking.iter().take(3).map(|s| show(s)).collect();
        Judged {
            verdict: MeasurementVerdict::Failed,
            detail: format!(
                "{} not {success}{}",
                shown.join(", "),
                if breaking.len() > 3 {
                    format!(" ({} of {} series)", breaking.len(), numbers.len())
                } else {
                    String::new()
                }
            ),
            no_data: false,
        }
    }
}

/// At most this many measurements are kept in a gate's evidence (the counts cover them all).
const MAX_RECORDED: usize = 120;

/// The measurements of one analysis gate so far, counted against its limits. The verify engine
/// and the bake share it, so both judge a query the same way.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub measured: u32,
    pub failed: u32,
    pub inconclusive: u32,
    /// The time of the last measurement (the caller's clock).
    pub last_at: Option<std::time::Duration>,
    pub last: Option<Judged>,
    /// The first measurement that took the failed count past the limit: why the gate failed.
    pub failing: Option<String>,
    /// `{at_s, verdict, detail, samples}` of each measurement, oldest first (capped).
    pub record: Vec<serde_json::Value>,
    /// `[ms, value]` of each measurement with a finite value: the sample nearest to breaking
    /// `success` (the largest for `<`, the smallest for `>`), for the report's chart.
    pub values: Vec<(u64, f64)>,
}

impl Tally {
    /// Judge one measurement taken at `at` and count it.
    pub fn add(
        &mut self,
        gate: &crate::config::Analysis,
        at: std::time::Duration,
        sampled: &Sampled,
    ) {
        let judged = judge(&gate.success, gate.no_data, sampled);
        self.measured = self.measured.saturating_add(1);
        match judged.verdict {
            MeasurementVerdict::Failed => self.failed = self.failed.saturating_add(1),
            MeasurementVerdict::Inconclusive => {
                self.inconclusive = self.inconclusive.saturating_add(1)
            }
            MeasurementVerdict::Successful => {}
        }
        if self.failed > gate.failure_limit && self.failing.is_none() {
            self.failing = Some(format!(
                "{} failed measurement(s), more than failure_limit = {}: {}",
                self.failed, gate.failure_limit, judged.detail
            ));
        }
        if let Sampled::Values(v) = sampled
            && self.values.len() < MAX_RECORDED
            && let Some(worst) = worst(&gate.success, v)
        {
            self.values.push((at.as_millis() as u64, worst));
        }
        if self.record.len() < MAX_RECORDED {
            let samples = match sampled {
                Sampled::Values(v) => {
                    serde_json::to_value(v.iter().take(20).collect::<Vec<_>>()).unwrap_or_default()
                }
                Sampled::Unavailable(_) => serde_json::Value::Null,
            };
            self.record.push(serde_json::json!({
                "at_s": at.as_secs_f64(),
                "verdict": judged.verdict,
                "detail": judged.detail,
                "no_data": judged.no_data,
                "samples": samples,
            }));
        }
        self.last_at = Some(at);
        self.last = Some(judged);
    }

    /// Whether a measurement is due at `now` (never measured, or `interval` since the last).
    pub fn due(&self, interval: std::time::Duration, now: std::time::Duration) -> bool {
        self.last_at
            .is_none_or(|last| now.saturating_sub(last) >= interval)
    }

    /// The gate's verdict: failed as soon as the failures pass `failure_limit`; otherwise, once
    /// `closed` (the caller's window is over) and measured at least once, inconclusive when the
    /// inconclusive measurements pass `inconclusive_limit`, else passed. `None` while open.
    pub fn verdict(
        &self,
        gate: &crate::config::Analysis,
        closed: bool,
    ) -> Option<(crate::vocab::Verdict, String)> {
        use crate::vocab::Verdict;
        if let Some(f) = &self.failing {
            return Some((Verdict::Fail, f.clone()));
        }
        if !closed || self.measured == 0 {
            return None;
        }
        let last = self.last.as_ref().map(|j| j.detail.as_str()).unwrap_or("");
        if self.inconclusive > gate.inconclusive_limit {
            return Some((
                Verdict::Inconclusive,
                format!(
                    "{} inconclusive measurement(s) of {}, more than inconclusive_limit = {} (recorded, not a rollback): {last}",
                    self.inconclusive, self.measured, gate.inconclusive_limit
                ),
            ));
        }
        Some((
            Verdict::Pass,
            format!(
                "{} measurement(s), {} failed (limit {}), {} inconclusive (limit {}); last: {last}",
                self.measured,
                self.failed,
                gate.failure_limit,
                self.inconclusive,
                gate.inconclusive_limit
            ),
        ))
    }

    /// The evidence recorded with the gate.
    pub fn evidence(&self, gate: &crate::config::Analysis, pending: bool) -> serde_json::Value {
        serde_json::json!({
            "query": gate.query,
            "success": gate.success.to_string(),
            "interval_s": gate.interval.as_secs_f64(),
            "failure_limit": gate.failure_limit,
            "inconclusive_limit": gate.inconclusive_limit,
            "no_data": no_data_str(gate.no_data),
            "measured": self.measured,
            "failed": self.failed,
            "inconclusive": self.inconclusive,
            "measurements": self.record,
            "values": self.values,
            "pending": pending,
        })
    }
}

/// The finite sample nearest to breaking `success`: the largest for `<`/`<=`, the smallest for
/// `>`/`>=`, a breaking one (else the first) for `==`/`!=`.
fn worst(success: &Comparison, samples: &[Sample]) -> Option<f64> {
    let finite = samples.iter().map(|s| s.value).filter(|v| v.is_finite());
    match success.op {
        CompareOp::Lt | CompareOp::Le => finite.reduce(f64::max),
        CompareOp::Gt | CompareOp::Ge => finite.reduce(f64::min),
        CompareOp::Eq | CompareOp::Ne => {
            let all: Vec<f64> = finite.collect();
            all.iter()
                .copied()
                .find(|v| !success.holds(*v))
                .or(all.first().copied())
        }
    }
}

/// The policy as written in the configuration.
pub fn no_data_str(p: NoDataPolicy) -> &'static str {
    match p {
        NoDataPolicy::Pass => "pass",
        NoDataPolicy::Inconclusive => "inconclusive",
        NoDataPolicy::Fail => "fail",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(labels: &str, value: f64) -> Sample {
        Sample {
            labels: labels.into(),
            value,
        }
    }

    #[test]
    fn comparisons_parse_and_hold() {
        let table = [
            ("< 0.01", 0.005, true),
            ("< 0.01", 0.01, false),
            ("<=0.01", 0.01, true),
            ("> 1", 2.0, true),
            (">= 1", 1.0, true),
            ("== 0", 0.0, true),
            ("!= 0", 0.0, false),
            ("  <  -3e2 ", -301.0, true),
        ];
        for (text, v, holds) in table {
            let c: Comparison = text.parse().unwrap();
            assert_eq!(c.holds(v), holds, "{text} on {v}");
        }
        assert_eq!("<= 1".parse::<Comparison>().unwrap().op, CompareOp::Le);
        for bad in ["", "0.01", "=< 1", "< abc", "< NaN", "< inf", "~ 1", "<"] {
            assert!(bad.parse::<Comparison>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_series_must_hold() {
        let c: Comparison = "< 0.01".parse().unwrap();
        let ok = judge(
            &c,
            NoDataPolicy::Fail,
            &Sampled::Values(vec![s("{a=\"1\"}", 0.0), s("{a=\"2\"}", 0.001)]),
        );
        assert_eq!(ok.verdict, MeasurementVerdict::Successful, "{ok:?}");
        let bad = judge(
            &c,
            NoDataPolicy::Pass,
            &Sampled::Values(vec![s("{a=\"1\"}", 0.0), s("{a=\"2\"}", 0.5)]),
        );
        assert_eq!(bad.verdict, MeasurementVerdict::Failed);
        assert!(
            bad.detail.contains("{a=\"2\"} = 0.5 not < 0.01"),
            "{}",
            bad.detail
        );
        let inf = judge(
            &c,
            NoDataPolicy::Pass,
            &Sampled::Values(vec![s("", f64::INFINITY)]),
        );
        assert_eq!(inf.verdict, MeasurementVerdict::Failed);
        assert!(inf.detail.contains("+Inf"), "{}", inf.detail);
    }

    #[test]
    fn no_data_follows_the_policy_and_says_why() {
        let c: Comparison = "< 1".parse().unwrap();
        for (policy, verdict) in [
            (NoDataPolicy::Fail, MeasurementVerdict::Failed),
            (NoDataPolicy::Inconclusive, MeasurementVerdict::Inconclusive),
            (NoDataPolicy::Pass, MeasurementVerdict::Successful),
        ] {
            for sampled in [
                Sampled::Values(vec![]),
                Sampled::Values(vec![s("", f64::NAN)]),
                Sampled::Unavailable("http://127.0.0.1:9/api/v1/query: connection refused".into()),
            ] {
                let j = judge(&c, policy, &sampled);
                assert_eq!(j.verdict, verdict, "{sampled:?}");
                assert!(j.no_data);
                assert!(
                    j.detail
                        .contains(&format!("no_data = {}", no_data_str(policy))),
                    "{}",
                    j.detail
                );
            }
        }
        let j = judge(
            &c,
            NoDataPolicy::Fail,
            &Sampled::Unavailable("connection refused".into()),
        );
        assert!(j.detail.contains("connection refused"), "{}", j.detail);
    }

    #[test]
    fn samples_record_non_finite_values_as_prometheus_writes_them() {
        let v = serde_json::to_value(vec![s("", f64::NAN), s("", f64::NEG_INFINITY), s("", 1.5)])
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"labels": "", "value": "NaN"},
                {"labels": "", "value": "-Inf"},
                {"labels": "", "value": 1.5}
            ])
        );
    }
}

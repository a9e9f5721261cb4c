//! A client of the operator's Prometheus HTTP API: instant queries (`/api/v1/query`) for the
//! analysis gates and `rollgate plan`.
//!
//! It shares the probes' HTTP plumbing ([`HttpClient`]: one overall timeout, a body cap, no
//! redirects, no proxy, redacted endpoints). Authentication: a bearer token read from
//! `bearer_token_file` when the client is built, or basic auth in the URL's user info (reqwest
//! sends it; the password is redacted everywhere like any URL password). With `ca_file`, an
//! `https` Prometheus is verified against those certificates instead of the platform's roots.
//!
//! Answers are parsed defensively ([`parse_query`]): every `resultType` (`vector`, `scalar`,
//! `matrix`, `string`), the special values `NaN`, `+Inf` and `-Inf`, empty results and
//! `{"status":"error","errorType":…}` are handled; anything else is an error naming the
//! endpoint, never a panic.

use rollgate_core::analysis::Sample;
use rollgate_core::config::{ProbeLimits, Prometheus};
use rollgate_core::redact::redact_url;
use serde_json::Value;

use crate::errors::ProbeError;
use crate::http::{Fetched, HttpClient, base_builder, parse_json, trust_roots};
use crate::outcome::snippet;

/// At most this many series of one answer are kept (the rest are counted, not judged).
pub const MAX_SERIES: usize = 1000;

/// The Prometheus client, built once per configuration and reused by every poll.
#[derive(Debug, Clone)]
pub struct PrometheusClient {
    http: HttpClient,
    base: String,
    bearer: Option<String>,
}

impl PrometheusClient {
    pub fn new(config: &Prometheus, limits: &ProbeLimits) -> Result<PrometheusClient, ProbeError> {
        let (http, bearer) = api_client(
            &config.url,
            config.bearer_token_file.as_deref(),
            config.ca_file.as_deref(),
            limits,
            "prometheus",
        )?;
        Ok(PrometheusClient {
            http,
            base: config.url.trim_end_matches('/').to_string(),
            bearer,
        })
    }

    /// The API endpoint `path` (`/api/v1/query`), redacted, as errors name it.
    pub fn endpoint(&self, path: &str) -> String {
        redact_url(&format!("{}{path}", self.base))
    }

    /// Run an instant query now; every sample of the answer.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, ProbeError> {
        let path = "/api/v1/query";
        let endpoint = self.endpoint(path);
        let url =
            reqwest::Url::parse_with_params(&format!("{}{path}", self.base), &[("query", promql)])
                .map_err(|e| ProbeError::Invalid {
                    endpoint: endpoint.clone(),
                    message: format!("cannot build the query URL: {e}"),
                })?;
        let fetched = self
            .http
            .get_as(&url, &endpoint, self.bearer.as_deref())
            .await?;
        parse_answer(&endpoint, &fetched)
    }
}

/// One rule of `/api/v1/rules`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub group: String,
    pub name: String,
    pub kind: String,
    pub query: String,
    pub health: String,
    pub last_error: Option<String>,
}

/// One alert of `/api/v1/alerts`: its labels and state (`firing`, `pending`).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub labels: std::collections::BTreeMap<String, String>,
    pub state: String,
}

impl PrometheusClient {
    async fn api_get(&self, path: &str) -> Result<Value, ProbeError> {
        let endpoint = self.endpoint(path);
        let url = reqwest::Url::parse(&format!("{}{path}", self.base)).map_err(|e| {
            ProbeError::Invalid {
                endpoint: endpoint.clone(),
                message: format!("not a URL: {e}"),
            }
        })?;
        let fetched = self
            .http
            .get_as(&url, &endpoint, self.bearer.as_deref())
            .await?;
        data_of(&endpoint, &fetched)
    }

    /// Every rule Prometheus evaluates (`/api/v1/rules`).
    pub async fn rules(&self) -> Result<Vec<Rule>, ProbeError> {
        let endpoint = self.endpoint("/api/v1/rules");
        let data = self.api_get("/api/v1/rules").await?;
        parse_rules(&endpoint, &data)
    }

    /// Every active alert (`/api/v1/alerts`).
    pub async fn alerts(&self) -> Result<Vec<Alert>, ProbeError> {
        let endpoint = self.endpoint("/api/v1/alerts");
        let data = self.api_get("/api/v1/alerts").await?;
        parse_alerts(&endpoint, &data)
    }
}

/// The `data` of a successful API answer (errors as [`parse_answer`] reports them).
fn data_of(endpoint: &str, fetched: &Fetched) -> Result<Value, ProbeError> {
    let doc: Option<Value> = serde_json::from_slice(&fetched.body).ok();
    if let Some(doc) = &doc
        && doc.get("status").and_then(Value::as_str) == Some("error")
    {
        // Reuse the query path's wording of API errors.
        return parse_answer(endpoint, fetched).map(|_| Value::Null);
    }
    if !(200..300).contains(&fetched.status) {
        return Err(ProbeError::Status {
            endpoint: endpoint.to_string(),
            status: fetched.status,
            body: snippet(&fetched.body, 120),
        });
    }
    let doc = doc.ok_or_else(|| ProbeError::Invalid {
        endpoint: endpoint.to_string(),
        message: format!("response is not JSON ({})", snippet(&fetched.body, 40)),
    })?;
    if doc.get("status").and_then(Value::as_str) != Some("success") {
        return Err(ProbeError::Invalid {
            endpoint: endpoint.to_string(),
            message: "not a successful Prometheus API answer".into(),
        });
    }
    doc.get("data").cloned().ok_or_else(|| ProbeError::Invalid {
        endpoint: endpoint.to_string(),
        message: "answer without `data`".into(),
    })
}

fn text(v: Option<&Value>, max: usize) -> String {
    rollgate_core::text::truncate_chars(v.and_then(Value::as_str).unwrap_or(""), max).to_string()
}

/// `data.groups[].rules[]` of `/api/v1/rules`.
pub fn parse_rules(endpoint: &str, data: &Value) -> Result<Vec<Rule>, ProbeError> {
    let groups = data
        .get("groups")
        .and_then(Value::as_array)
        .ok_or_else(|| ProbeError::Invalid {
            endpoint: endpoint.to_string(),
            message: "`data.groups` is not a list".into(),
        })?;
    let mut out = Vec::new();
    for g in groups {
        let group = text(g.get("name"), 200);
        for r in g
            .get("rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .take(MAX_SERIES)
        {
            out.push(Rule {
                group: group.clone(),
                name: text(r.get("name"), 200),
                kind: text(r.get("type"), 20),
                query: text(r.get("query"), 2000),
                health: text(r.get("health"), 20),
                last_error: r
                    .get("lastError")
                    .and_then(Value::as_str)
                    .filter(|e| !e.is_empty())
                    .map(|e| rollgate_core::text::truncate_chars(e, 300).to_string()),
            });
        }
    }
    Ok(out)
}

/// `data.alerts[]` of `/api/v1/alerts`.
pub fn parse_alerts(endpoint: &str, data: &Value) -> Result<Vec<Alert>, ProbeError> {
    let alerts = data
        .get("alerts")
        .and_then(Value::as_array)
        .ok_or_else(|| ProbeError::Invalid {
            endpoint: endpoint.to_string(),
            message: "`data.alerts` is not a list".into(),
        })?;
    Ok(alerts
        .iter()
        .take(MAX_SERIES)
        .map(|a| Alert {
            labels: a
                .get("labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), text(Some(v), 200)))
                        .collect()
                })
                .unwrap_or_default(),
            state: text(a.get("state"), 20),
        })
        .collect())
}

/// The HTTP client of an operator's API (Prometheus, Alertmanager) and its bearer token:
/// `ca_file`'s certificates (else the probes' trust roots), the token read from
/// `bearer_token_file`. `section` names the configuration table in errors.
pub(crate) fn api_client(
    url: &str,
    bearer_token_file: Option<&std::path::Path>,
    ca_file: Option<&std::path::Path>,
    limits: &ProbeLimits,
    section: &str,
) -> Result<(HttpClient, Option<String>), ProbeError> {
    let endpoint = redact_url(url);
    let certs: Vec<reqwest::Certificate> = match ca_file {
        Some(path) => {
            let ders = crate::pccs::read_certificates(path).map_err(|source| ProbeError::Io {
                endpoint: endpoint.clone(),
                what: format!("cannot read {section}.ca_file {}", path.display()),
                source,
            })?;
            let certs: Vec<reqwest::Certificate> = ders
                .iter()
                .filter_map(|d| reqwest::Certificate::from_der(d).ok())
                .collect();
            if certs.is_empty() {
                return Err(ProbeError::Invalid {
                    endpoint,
                    message: format!("{section}.ca_file {} holds no certificate", path.display()),
                });
            }
            certs
        }
        None => trust_roots().certs.clone(),
    };
    let client = base_builder(limits)
        .tls_certs_only(certs)
        .build()
        .map_err(|source| ProbeError::Request {
            endpoint: endpoint.clone(),
            source,
        })?;
    let bearer = match bearer_token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ProbeError::Io {
                endpoint: endpoint.clone(),
                what: format!("cannot read {section}.bearer_token_file {}", path.display()),
                source,
            })?;
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(ProbeError::Invalid {
                    endpoint,
                    message: format!("{section}.bearer_token_file {} is empty", path.display()),
                });
            }
            Some(token)
        }
        None => None,
    };
    Ok((HttpClient::with_client(client, limits), bearer))
}

/// The samples of an answer, or why there are none: Prometheus' own error (`errorType`,
/// `error`) for a non-2xx status with an API body, the status and body start otherwise.
pub fn parse_answer(endpoint: &str, fetched: &Fetched) -> Result<Vec<Sample>, ProbeError> {
    let doc: Option<Value> = serde_json::from_slice(&fetched.body).ok();
    if let Some(doc) = &doc
        && doc.get("status").and_then(Value::as_str) == Some("error")
    {
        let kind = doc
            .get("errorType")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let text = doc.get("error").and_then(Value::as_str).unwrap_or("");
        return Err(ProbeError::Invalid {
            endpoint: endpoint.to_string(),
            message: format!(
                "query failed (HTTP {}, errorType {}): {}",
                fetched.status,
                rollgate_core::text::truncate_chars(kind, 40),
                rollgate_core::text::truncate_chars(text, 300)
            ),
        });
    }
    if !(200..300).contains(&fetched.status) {
        return Err(ProbeError::Status {
            endpoint: endpoint.to_string(),
            status: fetched.status,
            body: snippet(&fetched.body, 120),
        });
    }
    parse_query(endpoint, &fetched.body)
}

/// Parse the body of a successful `/api/v1/query` (or `query_range`) answer. A `vector`
/// gives one sample per series, a `scalar` one unlabelled sample, a `matrix` the last point
/// of each series; a `string` result is not a number and is an error.
pub fn parse_query(endpoint: &str, body: &[u8]) -> Result<Vec<Sample>, ProbeError> {
    let invalid = |message: String| ProbeError::Invalid {
        endpoint: endpoint.to_string(),
        message,
    };
    // `endpoint` is already redacted; `parse_json` redacts it again, which leaves it as it is
    // (`redact_url` is idempotent).
    let doc = parse_json(endpoint, body)?;
    match doc.get("status").and_then(Value::as_str) {
        Some("success") => {}
        Some(other) => {
            return Err(invalid(format!(
                "answer status `{}`, not success",
                rollgate_core::text::truncate_chars(other, 40)
            )));
        }
        None => return Err(invalid("not a Prometheus API answer (no `status`)".into())),
    }
    let data = doc
        .get("data")
        .ok_or_else(|| invalid("answer without `data`".into()))?;
    let kind = data
        .get("resultType")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("answer without `data.resultType`".into()))?;
    let result = data
        .get("result")
        .ok_or_else(|| invalid("answer without `data.result`".into()))?;
    match kind {
        "scalar" => Ok(vec![Sample {
            labels: String::new(),
            value: point_value(result).map_err(invalid)?,
        }]),
        "vector" | "matrix" => {
            let series = result
                .as_array()
                .ok_or_else(|| invalid(format!("`data.result` of a {kind} is not an array")))?;
            let mut out = Vec::with_capacity(series.len().min(MAX_SERIES));
            for s in series.iter().take(MAX_SERIES) {
                let labels = labels_of(s.get("metric"));
                let point = if kind == "vector" {
                    s.get("value")
                } else {
                    s.get("values")
                        .and_then(Value::as_array)
                        .and_then(|v| v.last())
                };
                match point {
                    Some(p) => out.push(Sample {
                        labels,
                        value: point_value(p).map_err(|m| {
                            invalid(format!(
                                "series {labels_shown}: {m}",
                                labels_shown = labels_of(s.get("metric"))
                            ))
                        })?,
                    }),
                    // A matrix series without points carries no value: skip it.
                    None if kind == "matrix" => {}
                    None => return Err(invalid(format!("series {labels} has no `value`"))),
                }
            }
            Ok(out)
        }
        "string" => Err(invalid("the query returned a string, not a number".into())),
        other => Err(invalid(format!(
            "unknown resultType `{}`",
            rollgate_core::text::truncate_chars(other, 40)
        ))),
    }
}

/// `[timestamp, "value"]` → the value; Prometheus writes values as strings (`"1.5"`, `"NaN"`,
/// `"+Inf"`, `"-Inf"`).
fn point_value(p: &Value) -> Result<f64, String> {
    let text = p
        .as_array()
        .filter(|a| a.len() == 2)
        .and_then(|a| a[1].as_str())
        .ok_or_else(|| "a point is not [timestamp, \"value\"]".to_string())?;
    parse_value(text).ok_or_else(|| {
        format!(
            "value `{}` is not a number",
            rollgate_core::text::truncate_chars(text, 40)
        )
    })
}

/// A Prometheus sample value: a decimal number, `NaN`, `+Inf`, `-Inf` (also `Inf`).
pub fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => {
            let v: f64 = text.parse().ok()?;
            // Rust also reads `inf` and `nan` spelled otherwise; Prometheus never writes them.
            v.is_finite().then_some(v)
        }
    }
}

/// `name{a="1", b="2"}` as PromQL prints a series (labels sorted, values escaped, capped).
fn labels_of(metric: Option<&Value>) -> String {
    let Some(map) = metric.and_then(Value::as_object) else {
        return String::new();
    };
    let name = map.get("__name__").and_then(Value::as_str).unwrap_or("");
    let mut pairs: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            format!("{k}={:?}", rollgate_core::text::truncate_chars(&v, 100))
        })
        .collect();
    let text = if inner.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", inner.join(", "))
    };
    rollgate_core::text::truncate_chars(&text, 300).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: &str = "http://127.0.0.1:9090/api/v1/query";

    fn parse(body: &str) -> Result<Vec<Sample>, ProbeError> {
        parse_query(EP, body.as_bytes())
    }

    #[test]
    fn vectors_scalars_and_matrices_parse() {
        let v = parse(
            r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","job":"node","instance":"a"},"value":[1.5,"1"]},
            {"metric":{},"value":[1.5,"NaN"]}]}}"#,
        )
        .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].labels, r#"up{instance="a", job="node"}"#);
        assert_eq!(v[0].value, 1.0);
        assert!(v[1].value.is_nan());
        let s = parse(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#)
            .unwrap();
        assert_eq!(s[0].value, f64::INFINITY);
        let m = parse(r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"a":"1"},"values":[[1,"1"],[2,"-Inf"]]},{"metric":{"a":"2"},"values":[]}]}}"#)
        .unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].value, f64::NEG_INFINITY);
        let empty =
            parse(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn anything_else_is_an_error_naming_the_endpoint() {
        for bad in [
            "",
            "<html>",
            "null",
            "[]",
            r#"{"status":"success"}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":{}}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{}}]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1]}]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1, 2]}]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"inf"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"scalar","result":"x"}}"#,
            r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#,
            r#"{"status":"success","data":{"resultType":"histogram","result":[]}}"#,
            r#"{"status":"pending"}"#,
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.detail().starts_with(EP), "{bad}: {}", e.detail());
        }
    }

    #[test]
    fn api_errors_carry_their_error_type() {
        let f = Fetched {
            status: 400,
            body: br#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#
                .to_vec(),
        };
        let e = parse_answer(EP, &f).unwrap_err().detail();
        assert!(e.contains("errorType bad_data"), "{e}");
        assert!(e.contains("parse error at char 5"), "{e}");
        let f = Fetched {
            status: 502,
            body: b"bad gateway".to_vec(),
        };
        assert!(
            parse_answer(EP, &f)
                .unwrap_err()
                .detail()
                .contains("HTTP 502")
        );
    }
}

//! HTTP probes: a client that bounds every request in time and size, and the JSON readiness
//! probe with JSON-pointer expectations.
//!
//! Every request runs under one overall `tokio::time::timeout` (connect, headers and the whole
//! body), so a server that accepts and never answers, or drips its body forever, costs at most
//! `probe.timeout`. Bodies are read chunk by chunk and abandoned at `probe.max_body`: a
//! multi-megabyte answer is never buffered whole.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rollgate_core::config::{Expect, Expectation, JsonType, ProbeLimits, Readiness};
use rollgate_core::redact::redact_url;
use serde_json::{Value, json};

use crate::errors::ProbeError;
use crate::outcome::{Outcome, show_value, snippet};

/// A response whose body was read within the limits.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The HTTP client every HTTP-based probe shares, with the configured limits.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    limits: ProbeLimits,
}

impl HttpClient {
    /// A plain-HTTP(S) client trusting [`trust_roots`], for node endpoints. Build it once and
    /// clone it (a clone shares the connection pool): building one costs a TLS configuration
    /// and a pool, and every poll through a new client opens new connections.
    pub fn new(limits: &ProbeLimits) -> Result<HttpClient, ProbeError> {
        let client = base_builder(limits)
            .tls_certs_only(trust_roots().certs.iter().cloned())
            .build()
            .map_err(|source| ProbeError::Request {
                endpoint: "http client".into(),
                source,
            })?;
        Ok(HttpClient {
            client,
            limits: limits.clone(),
        })
    }

    /// Wrap a client built elsewhere (the PCCS probe brings its own TLS configuration).
    pub fn with_client(client: reqwest::Client, limits: &ProbeLimits) -> HttpClient {
        HttpClient {
            client,
            limits: limits.clone(),
        }
    }

    pub fn limits(&self) -> &ProbeLimits {
        &self.limits
    }

    /// GET `url`, any status; the body read within the size cap.
    pub async fn get(&self, url: &str) -> Result<Fetched, ProbeError> {
        self.send(url, self.client.get(url)).await
    }

    /// GET `url` with a bearer token when given, any status; errors name `endpoint` instead of
    /// `url` (a query string such as a PromQL query is noise there, and may be long).
    pub async fn get_as(
        &self,
        url: &reqwest::Url,
        endpoint: &str,
        bearer: Option<&str>,
    ) -> Result<Fetched, ProbeError> {
        self.request_as(reqwest::Method::GET, url, endpoint, bearer, None)
            .await
    }

    /// Any method on `url` with a bearer token and a JSON body when given, any status; errors
    /// name `endpoint` (see [`HttpClient::get_as`]).
    pub async fn request_as(
        &self,
        method: reqwest::Method,
        url: &reqwest::Url,
        endpoint: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Fetched, ProbeError> {
        let mut req = self.client.request(method, url.clone());
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        self.send(endpoint, req).await
    }

    /// POST a JSON body to `url`, any status.
    pub async fn post_json(&self, url: &str, body: &Value) -> Result<Fetched, ProbeError> {
        let req = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.send(url, req).await
    }

    /// GET `url`, require a 2xx status and a JSON body.
    pub async fn get_json(&self, url: &str) -> Result<Value, ProbeError> {
        let fetched = self.get(url).await?;
        require_success(url, &fetched)?;
        parse_json(url, &fetched.body)
    }

    async fn send(&self, url: &str, req: reqwest::RequestBuilder) -> Result<Fetched, ProbeError> {
        let endpoint = redact_url(url);
        let limit = self.limits.max_body;
        let work = async {
            let mut resp = req.send().await.map_err(|e| ProbeError::Request {
                endpoint: endpoint.clone(),
                source: e.without_url(),
            })?;
            let status = resp.status().as_u16();
            if resp.status().is_redirection() {
                return Err(redirect(&endpoint, &resp));
            }
            if resp.content_length().is_some_and(|n| n > limit) {
                return Err(ProbeError::TooLarge {
                    endpoint: endpoint.clone(),
                    limit,
                });
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| ProbeError::Request {
                endpoint: endpoint.clone(),
                source: e.without_url(),
            })? {
                if body.len() as u64 + chunk.len() as u64 > limit {
                    // Dropping `resp` closes the connection: the rest is never read.
                    return Err(ProbeError::TooLarge {
                        endpoint: endpoint.clone(),
                        limit,
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Fetched { status, body })
        };
        match tokio::time::timeout(self.limits.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError::Timeout {
                endpoint,
                after: self.limits.timeout,
            }),
        }
    }
}

/// A 3xx answer as an error naming where it pointed (resolved against the request URL and
/// redacted).
fn redirect(endpoint: &str, resp: &reqwest::Response) -> ProbeError {
    let location = match resp
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    {
        Some(loc) => {
            let loc = resp.url().join(&loc).map(|u| u.to_string()).unwrap_or(loc);
            let loc: String = loc.chars().filter(|c| !c.is_control()).collect();
            redact_url(rollgate_core::text::truncate_chars(&loc, 300))
        }
        None => "nowhere (no Location header)".to_string(),
    };
    ProbeError::Redirect {
        endpoint: endpoint.to_string(),
        status: resp.status().as_u16(),
        location,
    }
}

/// Where the trust roots of HTTPS probes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootSource {
    /// The platform's store: `SSL_CERT_FILE` / `SSL_CERT_DIR` when set, else the
    /// distribution's bundle (`ca-certificates`).
    Platform,
    /// The Mozilla roots compiled into rollgate (`webpki-root-certs`): the platform's store
    /// held no usable certificate (a slim image without `ca-certificates`).
    Bundled,
}

/// The trust roots of HTTPS probes and where they came from.
#[derive(Debug, Clone)]
pub struct TrustRoots {
    pub source: RootSource,
    pub certs: Vec<reqwest::Certificate>,
}

/// The certificates of `platform` that parse as trust anchors, or — when none does — the
/// bundled roots.
pub fn choose_roots(platform: Vec<rustls::pki_types::CertificateDer<'static>>) -> TrustRoots {
    let usable =
        |ders: Vec<rustls::pki_types::CertificateDer<'static>>| -> Vec<reqwest::Certificate> {
            ders.into_iter()
                .filter(|der| rustls::RootCertStore::empty().add(der.clone()).is_ok())
                .filter_map(|der| reqwest::Certificate::from_der(&der).ok())
                .collect()
        };
    let certs = usable(platform);
    if !certs.is_empty() {
        return TrustRoots {
            source: RootSource::Platform,
            certs,
        };
    }
    TrustRoots {
        source: RootSource::Bundled,
        certs: usable(webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec()),
    }
}

/// The roots every HTTPS probe trusts, read from the platform once per process (reading and
/// parsing the system bundle is the most expensive part of building a client).
pub fn trust_roots() -> &'static TrustRoots {
    static ROOTS: OnceLock<TrustRoots> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let native = rustls_native_certs::load_native_certs();
        let roots = choose_roots(native.certs);
        if roots.source == RootSource::Bundled {
            tracing::warn!(
                errors = ?native.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                "no usable CA certificate in the platform's store (SSL_CERT_FILE, SSL_CERT_DIR, ca-certificates): HTTPS probes trust rollgate's bundled Mozilla roots"
            );
        }
        roots
    })
}

static CLIENTS_BUILT: AtomicU64 = AtomicU64::new(0);

/// How many probe HTTP clients this process has built: each poll of a gate loop must reuse
/// its clients, not build new ones (tests and the benchmark read it).
pub fn clients_built() -> u64 {
    CLIENTS_BUILT.load(Ordering::Relaxed)
}

/// The builder every probe client starts from: bounded connect time, no proxies (node
/// endpoints are local, and a proxy from the environment would probe the wrong thing), no
/// redirects (a readiness endpoint that redirects would be judged on another server's answer:
/// a 3xx is a failed check naming the Location).
pub(crate) fn base_builder(limits: &ProbeLimits) -> reqwest::ClientBuilder {
    CLIENTS_BUILT.fetch_add(1, Ordering::Relaxed);
    reqwest::Client::builder()
        .connect_timeout(limits.timeout)
        .timeout(limits.timeout + Duration::from_millis(500))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("rollgate/", env!("CARGO_PKG_VERSION")))
}

/// A non-2xx status is an error carrying the start of the body.
pub fn require_success(url: &str, fetched: &Fetched) -> Result<(), ProbeError> {
    if (200..300).contains(&fetched.status) {
        Ok(())
    } else {
        let body = String::from_utf8_lossy(&fetched.body[..fetched.body.len().min(200)]);
        let body: String = body.chars().filter(|c| !c.is_control()).take(120).collect();
        Err(ProbeError::Status {
            endpoint: redact_url(url),
            status: fetched.status,
            body,
        })
    }
}

/// Parse a body as JSON; the error shows how the body starts.
pub fn parse_json(url: &str, body: &[u8]) -> Result<Value, ProbeError> {
    serde_json::from_slice(body).map_err(|source| ProbeError::NotJson {
        endpoint: redact_url(url),
        snippet: snippet(body, 40),
        source,
    })
}

/// Judge one expectation against a document; `None` when it holds, else why not.
pub fn judge(doc: &Value, expect: &Expect) -> Option<String> {
    let p = &expect.pointer;
    let at = doc.pointer(p);
    match (&expect.check, at) {
        (Expectation::Present(true), Some(_)) | (Expectation::Present(false), None) => None,
        (Expectation::Present(true), None) => Some(format!("{p} is missing")),
        (Expectation::Present(false), Some(v)) => Some(format!(
            "{p} is present ({}), expected absent",
            show_value(v, 60)
        )),
        (_, None) => Some(format!("{p} is missing")),
        (Expectation::Equals(want), Some(v)) => {
            if values_equal(v, want) {
                None
            } else {
                Some(format!(
                    "{p} is {}, expected {}",
                    show_value(v, 60),
                    show_value(want, 60)
                ))
            }
        }
        (Expectation::OneOf(wants), Some(v)) => {
            if wants.iter().any(|w| values_equal(v, w)) {
                None
            } else {
                let list: Vec<String> = wants.iter().map(|w| show_value(w, 30)).collect();
                Some(format!(
                    "{p} is {}, expected one of {}",
                    show_value(v, 60),
                    list.join(", ")
                ))
            }
        }
        (Expectation::Type(t), Some(v)) => {
            if t.matches(v) {
                None
            } else {
                Some(format!(
                    "{p} is {} {}, expected {}",
                    JsonType::of(v).as_str(),
                    show_value(v, 60),
                    t.as_str()
                ))
            }
        }
    }
}

/// Equality where `1` and `1.0` are the same number (TOML and JSON disagree on integer-ness).
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || x.as_f64().zip(y.as_f64()).is_some_and(|(x, y)| x == y)
        }
        _ => a == b,
    }
}

/// The readiness probe: GET the status URL, require 2xx and JSON, judge every expectation.
/// `observed` is the raw document (the baseline keeps it), or `null` when there is none.
pub async fn probe_readiness(http: &HttpClient, readiness: &Readiness) -> Outcome {
    let endpoint = redact_url(&readiness.url);
    let fetched = match http.get(&readiness.url).await {
        Ok(f) => f,
        Err(e) => return e.into(),
    };
    let doc = match (
        require_success(&readiness.url, &fetched),
        parse_json(&readiness.url, &fetched.body),
    ) {
        (Ok(()), Ok(doc)) => doc,
        (Ok(()), Err(e)) | (Err(e), Err(_)) => return e.into(),
        // A JSON error body is kept: it usually says why the node is not ready.
        (Err(e), Ok(doc)) => return Outcome::fail(e.detail(), doc),
    };
    let failures: Vec<String> = readiness
        .expect
        .iter()
        .filter_map(|e| judge(&doc, e))
        .collect();
    if failures.is_empty() {
        Outcome::pass(
            format!("{endpoint}: {} expectation(s) hold", readiness.expect.len()),
            doc,
        )
    } else {
        Outcome::fail(format!("{endpoint}: {}", failures.join("; ")), doc)
    }
}

/// Deployment-service health: any 2xx answer within the limits. A JSON body is kept as the
/// observation; other bodies are not judged (the health path's format is not published).
pub async fn probe_health(http: &HttpClient, url: &str) -> Outcome {
    let endpoint = redact_url(url);
    match http.get(url).await {
        Ok(f) if (200..300).contains(&f.status) => {
            let observed = serde_json::from_slice(&f.body).unwrap_or(Value::Null);
            Outcome::pass(
                format!("{endpoint}: HTTP {}", f.status),
                json!({"status": f.status, "body": observed}),
            )
        }
        Ok(f) => match require_success(url, &f) {
            Err(e) => Outcome::fail(e.detail(), json!({"status": f.status})),
            Ok(()) => Outcome::fail(format!("{endpoint}: HTTP {}", f.status), Value::Null),
        },
        Err(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_platform_store_falls_back_to_the_bundled_roots() {
        let bundled = choose_roots(Vec::new());
        assert_eq!(bundled.source, RootSource::Bundled);
        assert!(bundled.certs.len() > 100, "{}", bundled.certs.len());
        // Garbage in the platform's store is not a usable root either.
        let junk = vec![rustls::pki_types::CertificateDer::from(vec![
            0x30, 0x03, 1, 2, 3,
        ])];
        assert_eq!(choose_roots(junk).source, RootSource::Bundled);
        // A usable platform root is used alone.
        let one = webpki_root_certs::TLS_SERVER_ROOT_CERTS[0].clone();
        let platform = choose_roots(vec![one]);
        assert_eq!(platform.source, RootSource::Platform);
        assert_eq!(platform.certs.len(), 1);
    }

    fn ex(pointer: &str, check: Expectation) -> Expect {
        Expect {
            pointer: pointer.into(),
            check,
        }
    }

    #[test]
    fn expectations_table() {
        let doc = json!({"health": "Healthy", "n": 1, "ok": true, "s": "x", "nil": null});
        let cases: Vec<(Expect, Option<&str>)> = vec![
            (ex("/health", Expectation::Equals(json!("Healthy"))), None),
            (
                ex("/health", Expectation::Equals(json!("Running"))),
                Some("/health is \"Healthy\", expected \"Running\""),
            ),
            (ex("/n", Expectation::Equals(json!(1.0))), None),
            (
                ex("/ok", Expectation::OneOf(vec![json!(false), json!(true)])),
                None,
            ),
            (
                ex("/s", Expectation::OneOf(vec![json!("a"), json!("b")])),
                Some("/s is \"x\", expected one of \"a\", \"b\""),
            ),
            (ex("/nil", Expectation::Present(true)), None),
            (
                ex("/gone", Expectation::Present(true)),
                Some("/gone is missing"),
            ),
            (ex("/gone", Expectation::Present(false)), None),
            (ex("/ok", Expectation::Type(JsonType::Boolean)), None),
            (ex("/n", Expectation::Type(JsonType::Number)), None),
            (
                ex("/s", Expectation::Type(JsonType::Integer)),
                Some("/s is string \"x\", expected integer"),
            ),
            (
                ex("/gone", Expectation::Equals(json!(1))),
                Some("/gone is missing"),
            ),
        ];
        for (e, want) in cases {
            assert_eq!(judge(&doc, &e).as_deref(), want, "{e:?}");
        }
    }
}

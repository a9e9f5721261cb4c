//! The admin server: one router for the pages, the API, `/metrics` and the probes.
//!
//! | endpoint | auth | answer |
//! |---|---|---|
//! | `GET /` | read | status page (HTML) |
//! | `GET /rollouts/{id}` | read | the rollout report (HTML, as `rollgate show ID --html`) |
//! | `GET /metrics` | read | Prometheus text exposition ([`crate::metrics`]) |
//! | `GET /live` | | 200 while the process serves |
//! | `GET /ready` | | 200 when the journal can be read, else 503 |
//! | `GET /api/v1/status` | read | [`crate::state::ServeStatus`] |
//! | `GET /api/v1/history?limit=N` | read | as `rollgate history --format json` |
//! | `GET /api/v1/rollouts/{id}` | read | as `rollgate show ID --format json` |
//! | `GET /api/v1/action` | read | the latest action started through the API |
//! | `POST /api/v1/rollouts` | token | start a rollout `{"layer", "value", "bake"?}`: 202 ([`crate::actions`]) |
//! | `POST /api/v1/rollback` | token | `{"to"?}`: as `rollgate rollback` |
//! | `POST /api/v1/resume` | token | as `rollgate resume` |
//! | `POST /api/v1/freeze` | token | `{"reason"}`: the kill switch |
//! | `POST /api/v1/unfreeze` | token | lift it |
//!
//! "token" means `Authorization: Bearer <[serve].token>`: 401 without it or with a wrong one,
//! 403 when the server has no token configured (changing endpoints are then disabled).
//! "read" means: open when no `[serve].read_token` is configured (allowed on loopback only),
//! else `Authorization: Bearer` with the read token or the write token, 401 without.
//! Every request must name this machine in `Host` on loopback ([`crate::hosts`]): 421 if not.
//! Every answer body is scrubbed of the configuration's secrets ([`rollgate_core::secrets`]).
//! Request logs carry the method, path, status and time, never headers or bodies.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::api;
use crate::errors::{ApiError, ServeError};
use crate::html::{esc, page};
use crate::metrics::{self, MetricsInput};
use crate::report::render_report_html;
use crate::state::{ActionState, AppState, ProbeSnapshot, ServeOptions, now_rfc3339};
use crate::status_page::{StatusPage, render_status_html};

/// Refuse a listen address beyond loopback unless a read token guards what it shows.
pub fn check_listen(addr: SocketAddr, has_read_token: bool) -> Result<(), ServeError> {
    if addr.ip().is_loopback() || has_read_token {
        Ok(())
    } else {
        Err(ServeError::NoReadToken { addr })
    }
}

/// Serve on `listener` until `shutdown` completes (mini-redis style: tests bind port 0).
///
/// After shutdown, a rollout started through the API gets `shutdown_grace` to finish; past it,
/// it is interrupted like any crash, and `rollgate resume` finishes it.
pub async fn run(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(ServeError::Io)?;
    check_listen(addr, options.read_token.is_some())?;
    if let Some(runner) = &options.runner {
        rollgate_journal::redact::install(&runner.config);
    }
    let mut app = AppState::new(options)?;
    app.hosts = crate::hosts::HostPolicy::new(addr, &app.options.allowed_hosts);
    let app = Arc::new(app);
    let prober = spawn_prober(&app);
    tracing::info!(%addr, node = %app.options.node, changes = app.options.token.is_some() && app.options.runner.is_some(), "rollgate serve listening");
    let served = axum::serve(listener, router(app.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    if let Some(p) = prober {
        p.abort();
    }
    if let Some(task) = app.action_task.lock().await.take()
        && !task.is_finished()
    {
        let grace = app.options.shutdown_grace;
        tracing::warn!(
            "waiting up to {} for the running rollout to finish",
            humantime::format_duration(grace)
        );
        if tokio::time::timeout(grace, task).await.is_err() {
            tracing::warn!(
                "the running rollout is interrupted by the shutdown: `rollgate resume` finishes it"
            );
        }
    }
    tracing::info!("rollgate serve stopped");
    served.map_err(ServeError::Io)
}

/// The light probe: the readiness checks every `probe_interval`, for `/metrics` and the page.
fn spawn_prober(app: &Arc<AppState>) -> Option<tokio::task::JoinHandle<()>> {
    let interval = app.options.probe_interval.filter(|i| !i.is_zero())?;
    let config = app.config()?.clone();
    let app = Arc::downgrade(app);
    Some(tokio::spawn(async move {
        // Built once: every probe round reuses the clients and their connections.
        let clients = rollgate_runner::checks::ProbeClients::new(&config).ok();
        loop {
            let checks = match &clients {
                Some(c) => rollgate_runner::checks::readiness_checks_using(&config, c).await,
                None => rollgate_runner::checks::readiness_checks(&config).await,
            };
            let ok = rollgate_runner::checks::all_green(&checks);
            let Some(app) = app.upgrade() else { return };
            *app.probes.write().unwrap_or_else(|p| p.into_inner()) = Some(ProbeSnapshot {
                at: now_rfc3339(),
                ok,
                checks,
            });
            drop(app);
            tokio::time::sleep(interval).await;
        }
    }))
}

/// Every route, with the token check on those that change something.
pub fn router(app: Arc<AppState>) -> Router {
    let changing = Router::new()
        .route("/api/v1/rollouts", post(api::start_rollout))
        .route("/api/v1/rollback", post(api::rollback))
        .route("/api/v1/resume", post(api::resume))
        .route("/api/v1/freeze", post(api::freeze))
        .route("/api/v1/unfreeze", post(api::unfreeze))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token));
    let reading = Router::new()
        .route("/", get(status_page))
        .route("/rollouts/{id}", get(report_page))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/status", get(api::status))
        .route("/api/v1/history", get(api::history))
        .route("/api/v1/rollouts/{id}", get(api::rollout))
        .route("/api/v1/action", get(api::action))
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            require_read_token,
        ));
    Router::new()
        .route("/live", get(live))
        .route("/ready", get(ready))
        .merge(reading)
        .merge(changing)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(middleware::from_fn(scrub_secrets))
        .layer(middleware::from_fn_with_state(app.clone(), check_host))
        .layer(middleware::from_fn(headers_and_log))
        .with_state(app)
}

/// 421 for a `Host` this server does not serve (DNS rebinding, [`crate::hosts`]).
async fn check_host(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    match (&app.hosts, host) {
        (Some(policy), Some(host)) if !policy.allows(&host) => {
            let shown: String = host.chars().take(100).collect();
            ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "host `{shown}` is not served here: on loopback only localhost, 127.0.0.1, [::1] and the listen address are (a guard against DNS rebinding); add the name to [serve].allowed_hosts"
                ),
            )
            .into_response()
        }
        _ => next.run(req).await,
    }
}

/// With a read token configured, reading needs it (or the write token).
async fn require_read_token(
    State(app): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(read) = &app.options.read_token else {
        return next.run(req).await;
    };
    let write = app.options.token.as_ref();
    if read.authorizes(req.headers()) || write.is_some_and(|t| t.authorizes(req.headers())) {
        next.run(req).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "reading needs a token: send `Authorization: Bearer <token>` with [serve].read_token (or the write token)",
        )
        .into_response()
    }
}

/// The largest answer scrubbed; larger ones (none today) are refused rather than sent unread.
const MAX_SCRUBBED_BODY: usize = 64 * 1024 * 1024;

/// Replace the configuration's secrets in every answer body: the journal is scrubbed when
/// written, but an answer also holds live state (an action's error, the latest probes).
async fn scrub_secrets(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if rollgate_core::secrets::count() == 0 {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_SCRUBBED_BODY).await {
        Ok(b) => b,
        Err(e) => {
            return ApiError::internal(format!("failed to read the answer: {e}")).into_response();
        }
    };
    let body = match std::str::from_utf8(&bytes) {
        Ok(text) => match rollgate_core::secrets::scrub_json_text(text) {
            std::borrow::Cow::Owned(clean) => {
                parts.headers.remove(header::CONTENT_LENGTH);
                axum::body::Body::from(clean)
            }
            std::borrow::Cow::Borrowed(_) => axum::body::Body::from(bytes),
        },
        Err(_) => axum::body::Body::from(bytes),
    };
    Response::from_parts(parts, body)
}

async fn require_token(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    match &app.options.token {
        None => ApiError::new(StatusCode::FORBIDDEN, "endpoints that change the node are disabled: configure [serve].token or [serve].token_file").into_response(),
        Some(t) if t.authorizes(req.headers()) => next.run(req).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "this endpoint changes the node: send `Authorization: Bearer <token>` with the configured token").into_response(),
    }
}

/// Security headers on every answer, and one log line per request (method, path, status).
async fn headers_and_log(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = Instant::now();
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'",
        ),
    );
    let status = resp.status().as_u16();
    let ms = started.elapsed().as_millis() as u64;
    if method == Method::GET || method == Method::HEAD {
        tracing::debug!(%method, %path, status, ms, "request");
    } else {
        tracing::info!(%method, %path, status, ms, "request");
    }
    resp
}

fn html_error(status: StatusCode, message: &str) -> Response {
    let body = format!(
        r#"<h1>{} {}</h1><p>{}</p><p><a href="/">status page</a></p>"#,
        status.as_u16(),
        esc(status.canonical_reason().unwrap_or("")),
        esc(message)
    );
    (
        status,
        Html(page(
            &format!("rollgate · {}", status.as_u16()),
            "",
            &body,
            None,
        )),
    )
        .into_response()
}

async fn not_found() -> Response {
    ApiError::not_found("no such endpoint (see /api/v1/status, /metrics, /)").into_response()
}

async fn live() -> &'static str {
    "ok\n"
}

async fn ready(State(app): State<Arc<AppState>>) -> Response {
    match tokio::time::timeout(api::READY_TIMEOUT, app.read(|j| j.schema_version())).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", e.message),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the journal did not answer in time\n",
        )
            .into_response(),
    }
}

async fn metrics_text(State(app): State<Arc<AppState>>) -> Response {
    let dir = app.options.state_dir.clone();
    let facts = app
        .with_journal(move |j, me| {
            let mut cache = me.facts.lock().unwrap_or_else(|p| p.into_inner());
            metrics::gather(j, &dir, &mut cache)
        })
        .await;
    if let Err(e) = &facts {
        tracing::warn!("metrics without the journal: {}", e.message);
    }
    let probes: Option<ProbeSnapshot> = app.probes();
    let body = metrics::render(&MetricsInput {
        node: &app.options.node,
        journal: facts.as_ref().ok(),
        frozen: app.frozen().is_some(),
        probes: probes.as_ref(),
        action_running: app
            .action()
            .is_some_and(|a| a.state == ActionState::Running),
        now: std::time::SystemTime::now(),
    });
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response()
}

async fn status_page(State(app): State<Arc<AppState>>) -> Response {
    let page = async {
        let status = app.status().await?;
        let n = app.options.recent;
        let known_good = status.last_known_good.as_ref().map(|k| k.id.clone());
        let (recent, latest, known_good) = app
            .read(move |j| {
                let recent = j.history(n)?;
                let latest = match recent.first() {
                    Some(h) => j.rollout(&h.rollout_id)?,
                    None => None,
                };
                let known_good = match known_good {
                    Some(id) => j.baseline(&id)?,
                    None => None,
                };
                Ok((recent, latest, known_good))
            })
            .await?;
        Ok::<_, ApiError>(render_status_html(&StatusPage {
            status,
            recent,
            latest,
            known_good,
        }))
    };
    match page.await {
        Ok(html) => Html(html).into_response(),
        Err(e) => html_error(e.status, &e.message),
    }
}

async fn report_page(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let wanted = id.clone();
    match app.read(move |j| j.rollout(&wanted)).await {
        Ok(Some(d)) => Html(render_report_html(&d)).into_response(),
        Ok(None) => html_error(
            StatusCode::NOT_FOUND,
            &format!("no rollout `{id}` in the journal"),
        ),
        Err(e) => html_error(e.status, &e.message),
    }
}

/// How long a test or a caller may wait for the server to come up.
pub const STARTUP: Duration = Duration::from_secs(5);

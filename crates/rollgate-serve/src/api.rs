//! The JSON API under `/api/v1`. Read endpoints are open (like `/metrics`); endpoints that
//! change something need the bearer token (see [`crate::server`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rollgate_runner::RolloutOptions;
use serde::Deserialize;
use serde_json::json;

use crate::actions::{self, Job};
use crate::errors::ApiError;
use crate::state::AppState;

type Api = Result<Response, ApiError>;

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(t)| t).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {}", e.body_text()),
        )
    })
}

/// `GET /api/v1/status`: see [`crate::state::ServeStatus`].
pub async fn status(State(app): State<Arc<AppState>>) -> Api {
    Ok(Json(app.status().await?).into_response())
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    limit: Option<usize>,
}

/// `GET /api/v1/history?limit=N` (default 50, at most 1000): `{"rollouts": [HistoryEntry…]}`,
/// newest first, exactly as `rollgate history --format json`.
pub async fn history(State(app): State<Arc<AppState>>, Query(q): Query<HistoryQuery>) -> Api {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    Ok(Json(rollgate_journal::History::from(
        app.read(move |j| j.history(limit)).await?,
    ))
    .into_response())
}

/// `GET /api/v1/rollouts/{id}`: the decision record, as `rollgate show ID --format json`.
pub async fn rollout(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Api {
    let wanted = id.clone();
    match app.read(move |j| j.rollout(&wanted)).await? {
        Some(d) => Ok(Json(d).into_response()),
        None => Err(ApiError::not_found(format!(
            "no rollout `{id}` in the journal"
        ))),
    }
}

/// `GET /api/v1/action`: the latest action started through the API, `null` when none.
pub async fn action(State(app): State<Arc<AppState>>) -> Api {
    Ok(Json(app.action()).into_response())
}

/// `POST /api/v1/rollouts` `{"layer": "operator-image", "value": "…", "bake": "10m"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    layer: String,
    value: String,
    /// The bake period (`"10m"`, `"0s"`); default `[rollout].bake`.
    #[serde(default)]
    bake: Option<String>,
}

pub async fn start_rollout(
    State(app): State<Arc<AppState>>,
    b: Result<Json<RolloutRequest>, JsonRejection>,
) -> Api {
    let req = body(b)?;
    if req.layer.trim().is_empty() || req.value.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "name the change with non-empty `layer` and `value`",
        ));
    }
    let bake = match &req.bake {
        None => None,
        Some(s) => Some(humantime::parse_duration(s).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("invalid `bake` {s:?}: {e}"),
            )
        })?),
    };
    let options = RolloutOptions {
        bake,
        ..Default::default()
    };
    actions::start(
        &app,
        Job::Rollout {
            layer: req.layer,
            value: req.value,
            options,
        },
    )
    .await
}

/// `POST /api/v1/rollback` `{"to": "b-…"}` (optional): as `rollgate rollback [--to ID]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    #[serde(default)]
    to: Option<String>,
}

pub async fn rollback(State(app): State<Arc<AppState>>, b: Option<Json<RollbackRequest>>) -> Api {
    let to = b.map(|Json(r)| r.to).unwrap_or_default();
    actions::start(&app, Job::Rollback { to }).await
}

/// `POST /api/v1/resume`: as `rollgate resume`.
pub async fn resume(State(app): State<Arc<AppState>>) -> Api {
    actions::start(&app, Job::Resume).await
}

/// `POST /api/v1/freeze` `{"reason": "…"}`: the kill switch, as `rollgate freeze --reason`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeRequest {
    reason: String,
}

pub async fn freeze(
    State(app): State<Arc<AppState>>,
    b: Result<Json<FreezeRequest>, JsonRejection>,
) -> Api {
    let req = body(b)?;
    let dir = app.options.state_dir.clone();
    let info = tokio::task::spawn_blocking(move || {
        rollgate_runner::killswitch::freeze_by(&dir, &req.reason, "serve api")
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| match e {
        rollgate_runner::killswitch::KillSwitchError::NoReason => ApiError::new(
            StatusCode::BAD_REQUEST,
            "a freeze needs a non-empty `reason`",
        ),
        other => ApiError::internal(crate::errors::chain(&other)),
    })?;
    tracing::warn!(reason = %info.reason, "node frozen through the API");
    Ok(Json(info).into_response())
}

/// `POST /api/v1/unfreeze`: `{"unfrozen": true, "was": {…}}`.
pub async fn unfreeze(State(app): State<Arc<AppState>>) -> Api {
    let dir = app.options.state_dir.clone();
    let was = tokio::task::spawn_blocking(move || rollgate_runner::killswitch::unfreeze(&dir))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(crate::errors::chain(&e)))?;
    if was.is_some() {
        tracing::warn!("node unfrozen through the API");
    }
    Ok(Json(json!({"unfrozen": was.is_some(), "was": was})).into_response())
}

/// How long `/ready` waits for the journal.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);

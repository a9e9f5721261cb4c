//! Rollouts, rollbacks and resumes started through the API. One at a time; each runs in a
//! background task with [`rollgate_runner::Runner`], exactly as the CLI runs it (same lock,
//! same journal, same gates), while the request answers as soon as the rollout has an id:
//!
//! - `202 Accepted` with the action (`rollout_id`, links to `/api/v1/rollouts/{id}` and the
//!   report) once the journal shows the rollout, the usual case: poll `GET /api/v1/action` or
//!   `GET /api/v1/rollouts/{id}` for the end;
//! - `200 OK` with the decision record when the runner finished before that (a refusal that
//!   needed no change);
//! - the runner's error when it could not run at all: 400 (unknown layer, nothing to change),
//!   404 (nothing to resume or roll back to), 409 (another rollout holds the lock or must be
//!   resumed first).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rollgate_core::vocab::GateResult;
use rollgate_runner::{Progress, RolloutOptions};
use serde_json::{Value, json};

use crate::errors::{ApiError, chain, runner_error};
use crate::html::path_segment;
use crate::state::{ActionKind, ActionState, ActionStatus, AppState, now_rfc3339};

/// How long a request waits for the rollout id before answering 202 without it.
const ID_WAIT: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub enum Job {
    Rollout {
        layer: String,
        value: String,
        options: RolloutOptions,
    },
    Rollback {
        to: Option<String>,
    },
    Resume,
}

impl Job {
    fn kind(&self) -> ActionKind {
        match self {
            Job::Rollout { .. } => ActionKind::Rollout,
            Job::Rollback { .. } => ActionKind::Rollback,
            Job::Resume => ActionKind::Resume,
        }
    }

    fn request(&self) -> Value {
        match self {
            Job::Rollout {
                layer,
                value,
                options,
            } => {
                json!({"layer": layer, "value": value, "bake_s": options.bake.map(|b| b.as_secs_f64())})
            }
            Job::Rollback { to } => json!({"to": to}),
            Job::Resume => json!({}),
        }
    }
}

/// Live progress of the running action, for `/api/v1/action` and the status page.
struct ServeProgress {
    action: Arc<Mutex<Option<ActionStatus>>>,
    id: u64,
}

impl ServeProgress {
    fn update(&self, f: impl FnOnce(&mut ActionStatus)) {
        let mut g = self.action.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = g.as_mut()
            && a.id == self.id
        {
            f(a);
        }
    }
}

impl Progress for ServeProgress {
    fn step(&self, kind: &str, _detail: &str) {
        self.update(|a| a.step = Some(kind.to_string()));
    }

    fn gates(&self, phase: &str, _elapsed: Duration, _deadline: Duration, gates: &[GateResult]) {
        self.update(|a| {
            a.phase = Some(phase.to_string());
            a.gates = gates.to_vec();
        });
    }
}

fn accepted(a: &ActionStatus) -> Response {
    let links = a.rollout_id.as_ref().map(|id| {
        json!({"rollout": format!("/api/v1/rollouts/{}", path_segment(id)), "report": format!("/rollouts/{}", path_segment(id)), "action": "/api/v1/action"})
    });
    let body = json!({"rollout_id": a.rollout_id, "action": a, "links": links.unwrap_or_else(|| json!({"action": "/api/v1/action"}))});
    let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
    let location = match &a.rollout_id {
        Some(id) => format!("/api/v1/rollouts/{}", path_segment(id)),
        None => "/api/v1/action".to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// What a crashed runner task said: its panic message, or that it was cancelled.
fn crash_message(err: tokio::task::JoinError) -> String {
    if !err.is_panic() {
        return "cancelled".into();
    }
    let payload = err.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .map(|m| format!("panicked: {}", rollgate_core::redact::redact_text(&m)))
        .unwrap_or_else(|| "panicked".into())
}

/// Start `job` in the background and answer as described in the module docs.
pub async fn start(app: &Arc<AppState>, job: Job) -> Result<Response, ApiError> {
    let Some(runner) = app.options.runner.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server was started without a runner: it cannot change the node",
        ));
    };
    if matches!(job, Job::Rollout { .. })
        && let Some(f) = app.frozen()
    {
        return Err(ApiError::new(
            StatusCode::LOCKED,
            format!("no rollout starts: {}", f.summary()),
        ));
    }
    let mut slot = app.action_task.lock().await;
    if let Some(h) = slot.as_ref()
        && !h.is_finished()
    {
        let running = app
            .action()
            .map(|a| format!("{:?} {}", a.kind, a.rollout_id.unwrap_or_default()))
            .unwrap_or_default();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("an action started through the API is still running ({running}); wait for it"),
        ));
    }
    let (before, interrupted) = app
        .read(|j| {
            let newest = j.history(1)?.into_iter().next().map(|h| h.rollout_id);
            let active = j.state()?.interrupted.map(|a| a.rollout_id);
            Ok((newest, active))
        })
        .await?;

    let id = app
        .next_action
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let kind = job.kind();
    let status = ActionStatus {
        id,
        kind,
        state: ActionState::Running,
        request: job.request(),
        requested_at: now_rfc3339(),
        finished_at: None,
        rollout_id: if kind == ActionKind::Resume {
            interrupted
        } else {
            None
        },
        step: None,
        phase: None,
        gates: vec![],
        outcome: None,
        reason: None,
        error: None,
        report: None,
        error_status: None,
    };
    *app.action.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
    let mut runner = runner;
    runner.progress = Arc::new(ServeProgress {
        action: app.action.clone(),
        id,
    });
    let action = app.action.clone();
    tracing::info!(action = id, kind = ?kind, "starting an action requested through the API");
    let handle = tokio::spawn(async move {
        // The runner runs in a task of its own, so a panic in it (a bug) ends that task and
        // is recorded here as a failed action instead of leaving it "running" for ever.
        let run = tokio::spawn(async move {
            match &job {
                Job::Rollout {
                    layer,
                    value,
                    options,
                } => runner.rollout(layer, value, options).await,
                Job::Rollback { to } => runner.rollback(to.as_deref()).await,
                Job::Resume => runner.resume().await,
            }
        })
        .await;
        let mut g = action.lock().unwrap_or_else(|p| p.into_inner());
        let Some(a) = g.as_mut().filter(|a| a.id == id) else {
            return;
        };
        a.finished_at = Some(now_rfc3339());
        let result = match run {
            Ok(result) => result,
            Err(crash) => {
                let why = crash_message(crash);
                tracing::error!(action = id, "action crashed: {why}");
                a.state = ActionState::Failed;
                a.error = Some(format!(
                    "the action crashed (a bug in rollgate: {why}); `rollgate resume` finishes an interrupted rollout"
                ));
                a.error_status = Some(StatusCode::INTERNAL_SERVER_ERROR.as_u16());
                return;
            }
        };
        match result {
            Ok(report) => {
                tracing::info!(action = id, rollout = %report.rollout_id, outcome = report.outcome.as_str(), "action finished");
                a.state = ActionState::Finished;
                a.rollout_id = Some(report.rollout_id.clone());
                a.outcome = Some(report.outcome);
                a.reason = Some(report.reason.clone());
                a.gates = report.gates.clone();
                a.report = Some(report);
            }
            Err(e) => {
                let api = runner_error(&e);
                tracing::warn!(action = id, "action could not run: {}", chain(&e));
                a.state = ActionState::Failed;
                a.error = Some(api.message);
                a.error_status = Some(api.status.as_u16());
            }
        }
    });
    *slot = Some(handle);
    drop(slot);

    // Answer once the rollout has an id (or the action ended first).
    let deadline = Instant::now() + ID_WAIT;
    loop {
        let Some(a) = app.action().filter(|a| a.id == id) else {
            return Err(ApiError::internal("the action vanished"));
        };
        match a.state {
            ActionState::Finished => {
                return Ok((StatusCode::OK, Json(a.report.clone())).into_response());
            }
            ActionState::Failed => {
                let status = a
                    .error_status
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return Err(ApiError::new(status, a.error.unwrap_or_default()));
            }
            ActionState::Running if a.rollout_id.is_some() => return Ok(accepted(&a)),
            ActionState::Running => {}
        }
        let newest = app
            .read(|j| Ok(j.history(1)?.into_iter().next().map(|h| h.rollout_id)))
            .await?;
        if newest.is_some() && newest != before {
            let mut g = app.action.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(a) = g.as_mut().filter(|a| a.id == id && a.rollout_id.is_none()) {
                a.rollout_id = newest;
            }
            continue;
        }
        if Instant::now() >= deadline {
            return Ok(accepted(&a));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

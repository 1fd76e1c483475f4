//! Handlers of the internal API. Each single route and each batch row goes
//! through the same `parse_op` and `Store::apply`.

use super::auth::IngestAuth;
use super::ops::{parse_batch_op, parse_op, Fields, OpKind};
use crate::http::body::{read_json, read_limited};
use crate::http::{json_response, ApiError, AppState};
use crate::store::Applied;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most rows in one batch; the body limit bounds it too, this keeps one batch
/// from holding a worker for long.
pub const MAX_BATCH_OPS: usize = 10_000;

#[derive(Serialize)]
struct WriteAnswer {
    success: bool,
    changed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    closed: Option<usize>,
}

fn ok_json(body: &impl Serialize) -> HttpResponse {
    json_response(
        StatusCode::OK,
        serde_json::to_string(body).unwrap_or_default(),
    )
}

async fn single(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
    kind: OpKind,
    id: &str,
) -> Result<HttpResponse, ApiError> {
    let bytes = read_limited(&req, payload, state.max_body_bytes).await?;
    let op = parse_op(kind, id, Fields::Body(&bytes))?;
    let Applied { written, closed } = state.apply(op).await?;
    Ok(ok_json(&WriteAnswer {
        success: true,
        changed: written.changed(),
        cursor: written.change.map(|c| c.to_string()),
        closed,
    }))
}

macro_rules! single_route {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        pub async fn $name(
            _: IngestAuth,
            req: HttpRequest,
            state: web::Data<AppState>,
            path: web::Path<String>,
            payload: web::Payload,
        ) -> Result<HttpResponse, ApiError> {
            single(req, state, payload, $kind, &path).await
        }
    };
}

single_route!(
    /// `PUT /internal/v1/users/{id}`: create or replace the profile.
    put_user,
    OpKind::PutUser
);
single_route!(
    /// `DELETE /internal/v1/users/{id}`
    delete_user,
    OpKind::DeleteUser
);
single_route!(
    /// `POST /internal/v1/users/{id}/tokens`
    add_token,
    OpKind::AddToken
);
single_route!(
    /// `DELETE /internal/v1/users/{id}/tokens`
    revoke_token,
    OpKind::RevokeToken
);
single_route!(
    /// `PUT /internal/v1/users/{id}/status`
    set_status,
    OpKind::SetStatus
);
single_route!(
    /// `PUT /internal/v1/connections/{id}`: open, or refresh as a heartbeat.
    put_connection,
    OpKind::PutConnection
);
single_route!(
    /// `DELETE /internal/v1/connections/{id}`
    delete_connection,
    OpKind::DeleteConnection
);
single_route!(
    /// `DELETE /internal/v1/instances/{id}`: every connection of a dead instance.
    delete_instance,
    OpKind::DeleteInstance
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    ops: Vec<Value>,
}

#[derive(Serialize)]
struct BatchError {
    index: usize,
    error: String,
    #[serde(rename = "errorType")]
    error_type: &'static str,
}

#[derive(Serialize)]
struct BatchAnswer {
    success: bool,
    applied: usize,
    errors: Vec<BatchError>,
    cursor: String,
}

/// `POST /internal/v1/batch`: applies the rows in order; a bad row is reported
/// by index and the others still apply.
pub async fn batch(
    _: IngestAuth,
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: BatchBody = read_json(&req, payload, state.max_body_bytes).await?;
    if body.ops.len() > MAX_BATCH_OPS {
        return Err(ApiError::invalid_params(format!(
            "ops: {} rows given, at most {MAX_BATCH_OPS} are allowed per batch",
            body.ops.len()
        )));
    }
    let mut applied = 0;
    let mut errors = Vec::new();
    let mut refuse = |index, e: ApiError| {
        errors.push(BatchError {
            index,
            error: e.message().to_owned(),
            error_type: e.error_type().unwrap_or("error-invalid-params"),
        });
    };
    match &state.cluster {
        None => {
            for (index, row) in body.ops.into_iter().enumerate() {
                match parse_batch_op(row).and_then(|op| Ok(state.store.apply(op)?)) {
                    Ok(_) => applied += 1,
                    Err(e) => refuse(index, e),
                }
            }
        }
        Some(cluster) => {
            // Parsed first, so the valid rows go to Redis in one pipeline.
            let mut ops = Vec::with_capacity(body.ops.len());
            let mut indexes = Vec::with_capacity(body.ops.len());
            for (index, row) in body.ops.into_iter().enumerate() {
                match parse_batch_op(row) {
                    Ok(op) => {
                        ops.push(op);
                        indexes.push(index);
                    }
                    Err(e) => refuse(index, e),
                }
            }
            let results = cluster.apply_batch(&ops).await?;
            for (index, result) in indexes.into_iter().zip(results) {
                match result {
                    Ok(()) => applied += 1,
                    Err(e) => refuse(index, e.into()),
                }
            }
            errors.sort_by_key(|e| e.index);
        }
    }
    Ok(ok_json(&BatchAnswer {
        success: true,
        applied,
        errors,
        cursor: state.store.cursor().to_string(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SettingsBody {
    #[serde(default)]
    broadcast_disabled: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SettingsAnswer {
    success: bool,
    broadcast_disabled: bool,
}

/// `PUT /internal/v1/settings`: runtime settings; answers their new values.
pub async fn put_settings(
    _: IngestAuth,
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: SettingsBody = read_json(&req, payload, state.max_body_bytes).await?;
    if let Some(disabled) = body.broadcast_disabled {
        state.store.set_broadcast_disabled(disabled);
    }
    Ok(ok_json(&SettingsAnswer {
        success: true,
        broadcast_disabled: state.store.broadcast_disabled(),
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatsAnswer {
    success: bool,
    users: usize,
    online: usize,
    connections: usize,
    expired_connections: u64,
    log_entries: usize,
    /// Seconds between the oldest retained change and now.
    window_covered_secs: f64,
    cursor: String,
    broadcast_disabled: bool,
}

/// `GET /internal/v1/stats`
pub async fn stats(_: IngestAuth, state: web::Data<AppState>) -> HttpResponse {
    let stats = state.store.stats();
    let now_ms = crate::clock::wall_ms();
    let covered_ms = stats
        .log
        .oldest_ts
        .map_or(0, |oldest| now_ms.saturating_sub(oldest).max(0));
    ok_json(&StatsAnswer {
        success: true,
        users: stats.users,
        online: stats.online,
        connections: stats.connections,
        expired_connections: stats.expired,
        log_entries: stats.log.entries,
        window_covered_secs: covered_ms as f64 / 1000.0,
        cursor: stats.log.head.to_string(),
        broadcast_disabled: state.store.broadcast_disabled(),
    })
}

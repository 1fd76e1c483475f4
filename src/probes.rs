//! Operator endpoints: `/health` (alive), `/ready` (serving), `/metrics`
//! (Prometheus text exposition, see [`crate::metrics`]).

use crate::http::{json_response, AppState};
use crate::metrics::CONTENT_TYPE;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

/// `GET /health`: the process is up and answering.
pub async fn health() -> HttpResponse {
    json_response(StatusCode::OK, r#"{"status":"ok"}"#.to_owned())
}

/// `GET /ready`: the store is loaded and requests are served, which holds as
/// soon as it listens; but when the last snapshot write failed, `503
/// {"ready":false,"reason":"persistence: <path>: <error>"}` until one succeeds
/// (the service keeps serving meanwhile). In cluster mode, also 503 while the
/// replica has not loaded from Redis or is not following it (`"reason":
/// "cluster: ..."`); reads are still served from memory meanwhile. In upstream
/// mode, likewise while the chat server's picture is not taken or its socket is
/// down (`"reason": "upstream: ..."`).
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let cluster = state.cluster.as_ref().and_then(|c| c.problem());
    let upstream = || state.upstream.as_ref().and_then(|u| u.problem());
    match cluster
        .or_else(upstream)
        .or_else(|| state.persistence.as_ref().and_then(|s| s.problem()))
    {
        Some(reason) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "ready": false, "reason": reason }).to_string(),
        ),
        None => json_response(StatusCode::OK, r#"{"ready":true}"#.to_owned()),
    }
}

/// `GET /metrics`
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(state.metrics.render())
}

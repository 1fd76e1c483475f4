//! Operator endpoints: `/health` (alive), `/ready` (serving), `/metrics`
//! (Prometheus text exposition of the store's counts).

use crate::http::{json_response, AppState};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use std::fmt::Write as _;

/// `GET /health`: the process is up and answering.
pub async fn health() -> HttpResponse {
    json_response(StatusCode::OK, r#"{"status":"ok"}"#.to_owned())
}

/// `GET /ready`: the store is loaded and requests are served, which holds as
/// soon as it listens; but when the last snapshot write failed, `503
/// {"ready":false,"reason":"persistence: <path>: <error>"}` until one succeeds
/// (the service keeps serving meanwhile).
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.persistence.as_ref().and_then(|s| s.problem()) {
        Some(reason) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "ready": false, "reason": reason }).to_string(),
        ),
        None => json_response(StatusCode::OK, r#"{"ready":true}"#.to_owned()),
    }
}

/// `GET /metrics`
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let stats = state.store.stats();
    let mut out = String::with_capacity(1024);
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    gauge("presenced_users", "Users known.", stats.users as f64);
    gauge(
        "presenced_users_online",
        "Users whose visible status is not offline.",
        stats.online as f64,
    );
    gauge(
        "presenced_connections",
        "Open connections.",
        stats.connections as f64,
    );
    gauge(
        "presenced_changelog_entries",
        "Changes held in the change log.",
        stats.log.entries as f64,
    );
    gauge(
        "presenced_changelog_head",
        "Sequence number of the newest change.",
        stats.log.head.seq() as f64,
    );
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    counter(
        "presenced_connections_expired_total",
        "Connections expired for lack of heartbeats.",
        stats.expired,
    );
    counter(
        "presenced_snapshot_rebuilds_total",
        "Times the full users.presence answer was rendered.",
        state.snapshots.rebuilds(),
    );
    counter(
        "presenced_answer_reuses_total",
        "Deltas and id lists served from an answer rendered for an earlier poll.",
        state.recent.hits(),
    );
    counter(
        "presenced_not_modified_total",
        "users.presence answers that were 304 Not Modified.",
        state.counters.not_modified_total(),
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}

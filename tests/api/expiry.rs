//! Connection expiry over real time (docs/api.md §1): a connection not refreshed within
//! `connection_ttl` closes, and the change shows like any other.
//!
//! These tests wait on the wall clock because the real server's expiry task is
//! the thing under test; every wait is a bounded polling loop.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(1);
/// The TTL of tests that heartbeat: long next to the 250 ms between heartbeats,
/// so a loaded CI machine stalling a heartbeat cannot expire the connection.
const HEARTBEAT_TTL: Duration = Duration::from_secs(3);
const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

async fn spawn_with_short_ttl() -> TestApp {
    spawn_with_ttl(TTL).await
}

async fn spawn_with_ttl(ttl: Duration) -> TestApp {
    spawn_app_with(|s| s.presence.connection_ttl = ttl).await
}

/// The status `viewer` reads for `id` with `users.getStatus`.
async fn status_of(app: &TestApp, viewer: &Login, id: &str) -> String {
    let answer = app
        .public(
            viewer,
            Method::GET,
            &format!("/api/v1/users.getStatus?userId={id}"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["status"].as_str().expect("status").to_owned()
}

async fn heartbeat(app: &TestApp, connection: &str, user: &str) -> Value {
    app.ingest_ok(
        Method::PUT,
        &format!("/connections/{connection}"),
        Some(json!({"userId": user, "status": "online"})),
    )
    .await
}

#[tokio::test]
async fn unrefreshed_connection_expires_and_the_user_goes_offline_in_deltas() {
    let app = spawn_with_short_ttl().await;
    let viewer = app.login("viewer").await;
    let jane = app.login("jane").await;
    app.connect("jane", "online").await;

    // Baselines taken while jane is online, after her connection opened.
    let baseline = app.presence(&viewer, "").await;
    assert_eq!(baseline.user("jane").expect("online")["status"], "online");
    let cursor = baseline.cursor();
    let from = iso_ms(now_ms());
    assert_eq!(app.stats().await["connections"], 1);

    wait_until("jane's connection expires", || async {
        status_of(&app, &viewer, "jane").await == "offline"
    })
    .await;

    let since = app.presence(&viewer, &format!("since={cursor}")).await;
    assert!(!since.full());
    assert_eq!(since.ids(), ["jane"], "{}", since.body);
    assert_eq!(since.user("jane").expect("jane")["status"], "offline");

    let delta = app.presence(&viewer, &format!("from={from}")).await;
    assert!(!delta.full());
    assert_eq!(delta.ids(), ["jane"], "{}", delta.body);
    assert_eq!(delta.user("jane").expect("jane")["status"], "offline");

    // Jane herself sees the expiry too: no connection is left.
    let own = app
        .public(&jane, Method::GET, "/api/v1/users.getStatus", None)
        .await;
    assert_eq!(own.body["connectionStatus"], "offline", "{}", own.body);

    let stats = app.stats().await;
    assert_eq!(stats["expiredConnections"], 1, "{stats}");
    assert_eq!(stats["connections"], 0, "{stats}");
    assert_eq!(stats["online"], 0, "{stats}");
}

#[tokio::test]
async fn heartbeats_keep_a_connection_alive_past_its_ttl_and_it_expires_once_they_stop() {
    let app = spawn_with_ttl(HEARTBEAT_TTL).await;
    let viewer = app.login("viewer").await;
    app.user("jane").await;
    let opened = heartbeat(&app, "c-jane", "jane").await;
    assert_eq!(opened["changed"], true, "{opened}");

    // Refresh for a second longer than the TTL, never leaving a gap near it.
    let mut ticks = tokio::time::interval(HEARTBEAT_EVERY);
    let started = Instant::now();
    while started.elapsed() < HEARTBEAT_TTL + Duration::from_secs(1) {
        ticks.tick().await;
        let answer = heartbeat(&app, "c-jane", "jane").await;
        assert_eq!(
            answer["changed"], false,
            "a heartbeat is not a change: {answer}"
        );
        assert_eq!(status_of(&app, &viewer, "jane").await, "online");
    }
    assert_eq!(status_of(&app, &viewer, "jane").await, "online");
    let stats = app.stats().await;
    assert_eq!(stats["expiredConnections"], 0, "{stats}");
    assert_eq!(stats["connections"], 1, "{stats}");

    let cursor = app.presence(&viewer, "").await.cursor();
    wait_until(
        "jane's connection expires after the heartbeats stop",
        || async { status_of(&app, &viewer, "jane").await == "offline" },
    )
    .await;

    let since = app.presence(&viewer, &format!("since={cursor}")).await;
    assert_eq!(since.ids(), ["jane"], "{}", since.body);
    assert_eq!(since.user("jane").expect("jane")["status"], "offline");
    assert_eq!(app.stats().await["expiredConnections"], 1);
}

#[tokio::test]
async fn expiry_of_one_connection_leaves_the_refreshed_one_open() {
    let app = spawn_with_ttl(HEARTBEAT_TTL).await;
    let viewer = app.login("viewer").await;
    app.user("jane").await;
    app.ingest_ok(
        Method::PUT,
        "/connections/phone",
        Some(json!({"userId": "jane", "status": "away"})),
    )
    .await;
    heartbeat(&app, "laptop", "jane").await;
    assert_eq!(status_of(&app, &viewer, "jane").await, "online");

    // Only the laptop heartbeats; the phone expires, jane stays online.
    let mut ticks = tokio::time::interval(HEARTBEAT_EVERY);
    let deadline = Instant::now() + GIVE_UP_AFTER;
    loop {
        ticks.tick().await;
        heartbeat(&app, "laptop", "jane").await;
        if app.stats().await["expiredConnections"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the phone never expired");
    }
    assert_eq!(status_of(&app, &viewer, "jane").await, "online");
    assert_eq!(app.stats().await["connections"], 1);
}

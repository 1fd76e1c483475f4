//! Bounds over HTTP: request heads (414, 431, and actix-http's own bounds
//! answered rather than dropped), connections per user and users in all, through
//! the single routes and the batch. A refused write changes nothing.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

#[tokio::test]
async fn a_url_over_max_url_bytes_is_414_naming_the_limit_and_the_post_form() {
    let app = spawn_app_with(|s| s.server.max_url_bytes = 2048).await;
    let jane = app.login("jane").await;
    let ids = vec!["jane"; 600].join(",");
    let answer = app
        .public(
            &jane,
            Method::GET,
            &format!("/api/v1/users.presence?ids={ids}"),
            None,
        )
        .await;
    let error = answer.assert_error(414, "error-uri-too-long");
    assert!(error.contains("server.max_url_bytes"), "{error}");
    assert!(error.contains("2048"), "{error}");
    assert!(error.contains("POST /api/v1/users.presence"), "{error}");
    // The same ids as a body are fine.
    let ids: Vec<&str> = vec!["jane"; 600];
    let answer = app
        .public(
            &jane,
            Method::POST,
            "/api/v1/users.presence",
            Some(json!({ "ids": ids })),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

#[tokio::test]
async fn headers_over_max_header_bytes_are_431_naming_the_limit() {
    let app = spawn_app_with(|s| s.server.max_header_bytes = 4096).await;
    let jane = app.login("jane").await;
    let answer = send(
        app.as_user(&jane, Method::GET, "/api/v1/users.presence")
            .header("X-Padding", "p".repeat(5000)),
    )
    .await;
    let error = answer.assert_error(431, "error-headers-too-large");
    assert!(error.contains("server.max_header_bytes"), "{error}");
    assert!(error.contains("4096"), "{error}");
    let text = app.metrics().await;
    assert_eq!(
        sample(
            &text,
            r#"presenced_rejected_requests_total{reason="error-headers-too-large"}"#
        ),
        Some(1.0),
        "{text}"
    );
}

/// Writes `request` on a fresh connection and reads until the server closes it
/// or 10 s pass; returns what came back.
fn raw_exchange(base: &str, request: &[u8]) -> String {
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout set");
    stream.write_all(request).expect("request written");
    let mut answer = Vec::new();
    // A reset after the answer is fine: what was read is kept.
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn actix_https_own_bounds_are_answered_not_dropped() {
    let app = spawn_app().await;
    let base = app.base.clone();
    let (too_many, long_uri) = tokio::task::spawn_blocking(move || {
        // More header fields than actix-http parses (96).
        let fields: String = (0..120).map(|i| format!("X-Field-{i}: 1\r\n")).collect();
        let too_many = raw_exchange(
            &base,
            format!("GET /health HTTP/1.1\r\nHost: x\r\n{fields}Connection: close\r\n\r\n")
                .as_bytes(),
        );
        // A request target over the URI parser's 64 KiB.
        let long_uri = raw_exchange(
            &base,
            format!(
                "GET /health?pad={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                "p".repeat(70_000)
            )
            .as_bytes(),
        );
        (too_many, long_uri)
    })
    .await
    .expect("raw requests ran");
    assert!(
        too_many.starts_with("HTTP/1.1 431 "),
        "expected a 431 status line, got {too_many:?}"
    );
    assert!(
        long_uri.starts_with("HTTP/1.1 400 ") || long_uri.starts_with("HTTP/1.1 414 "),
        "expected a status line, got {long_uri:?}"
    );
    // The service still answers.
    let health = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("sent");
    assert_eq!(health.status(), StatusCode::OK);
}

async fn open(app: &TestApp, connection: &str, user: &str) -> Answer {
    app.ingest(
        Method::PUT,
        &format!("/connections/{connection}"),
        Some(json!({"userId": user, "status": "online"})),
    )
    .await
}

#[tokio::test]
async fn max_connections_per_user_is_configurable_and_refuses_one_more_with_the_limit_named() {
    let app = spawn_app_with(|s| s.presence.max_connections_per_user = 2).await;
    app.user("u1").await;
    app.user("u2").await;
    for c in ["c1", "c2"] {
        assert_eq!(open(&app, c, "u1").await.status, StatusCode::OK);
    }
    let before = app.stats().await;
    let refused = open(&app, "c3", "u1").await;
    let error = refused.assert_error(400, "error-limit-exceeded");
    assert!(
        error.contains("presence.max_connections_per_user"),
        "{error}"
    );
    assert!(
        error.contains("\"u1\" already has 2 open connections"),
        "{error}"
    );
    assert_eq!(app.stats().await["connections"], before["connections"]);
    // A heartbeat of an open one, and another user's connection, are fine.
    assert_eq!(open(&app, "c1", "u1").await.status, StatusCode::OK);
    assert_eq!(open(&app, "c3", "u2").await.status, StatusCode::OK);

    // Through the batch: the row over the cap fails alone, naming the limit.
    let body = app
        .ingest_ok(
            Method::POST,
            "/batch",
            Some(json!({"ops": [
                {"op": "putConnection", "connectionId": "c4", "userId": "u2", "status": "away"},
                {"op": "putConnection", "connectionId": "c5", "userId": "u2", "status": "away"},
            ]})),
        )
        .await;
    assert_eq!(body["applied"], 1, "{body}");
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["index"], 1);
    assert_eq!(errors[0]["errorType"], "error-limit-exceeded");
    let error = errors[0]["error"].as_str().expect("text");
    assert!(
        error.contains("presence.max_connections_per_user"),
        "{error}"
    );
    assert_eq!(app.stats().await["connections"], 4);
}

#[tokio::test]
async fn max_connections_per_user_of_zero_means_no_limit() {
    let app = spawn_app_with(|s| s.presence.max_connections_per_user = 0).await;
    app.user("u1").await;
    let ops: Vec<Value> = (0..300)
        .map(|i| json!({"op": "putConnection", "connectionId": format!("c{i}"), "userId": "u1", "status": "online"}))
        .collect();
    let body = app
        .ingest_ok(Method::POST, "/batch", Some(json!({ "ops": ops })))
        .await;
    assert_eq!(body["applied"], 300, "{body}");
    assert_eq!(app.stats().await["connections"], 300);
}

#[tokio::test]
async fn max_users_refuses_a_new_user_with_507_and_frees_a_place_on_deletion() {
    let app = spawn_app_with(|s| s.presence.max_users = 2).await;
    app.user("a").await;
    app.user("b").await;
    let before = app.stats().await;
    let refused = app
        .ingest(Method::PUT, "/users/c", Some(json!({"username": "c"})))
        .await;
    let error = refused.assert_error(507, "error-too-many-users");
    assert!(error.contains("presence.max_users"), "{error}");
    assert!(error.contains("2 users are held"), "{error}");
    let after = app.stats().await;
    assert_eq!(
        (&after["users"], &after["cursor"]),
        (&before["users"], &before["cursor"]),
        "a refused creation changes nothing"
    );
    // Updating a user who exists is not a creation.
    app.put_user("a", json!({"username": "a", "name": "Alice"}))
        .await;

    // Through the batch: a deletion makes room for exactly one creation.
    let body = app
        .ingest_ok(
            Method::POST,
            "/batch",
            Some(json!({"ops": [
                {"op": "putUser", "userId": "c", "username": "c"},
                {"op": "deleteUser", "userId": "b"},
                {"op": "putUser", "userId": "c", "username": "c"},
                {"op": "putUser", "userId": "d", "username": "d"},
            ]})),
        )
        .await;
    assert_eq!(body["applied"], 2, "{body}");
    let failed = batch_errors(&body);
    assert_eq!(
        failed,
        [(0, "error-too-many-users"), (3, "error-too-many-users")]
    );
    assert_eq!(app.stats().await["users"], 2);
}

#[tokio::test]
async fn concurrent_creations_never_overshoot_max_users() {
    let app = spawn_app_with(|s| s.presence.max_users = 10).await;
    let app = &app;
    let creations = (0..40).map(|i| async move {
        app.ingest(
            Method::PUT,
            &format!("/users/u{i}"),
            Some(json!({ "username": format!("u{i}") })),
        )
        .await
    });
    let answers = futures_util::future::join_all(creations).await;
    let created = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    let refused = answers
        .iter()
        .filter(|a| a.status == StatusCode::INSUFFICIENT_STORAGE)
        .count();
    assert_eq!((created, refused), (10, 30));
    assert_eq!(app.stats().await["users"], 10);
}

//! `GET /metrics` over HTTP: requests by route pattern and status, latencies,
//! refusals by reason, and the store's figures read when scraped.

use crate::helpers::*;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn requests_are_counted_by_route_pattern_and_status_never_by_raw_path() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    app.connect("jane", "online").await;
    for _ in 0..3 {
        app.presence(&jane, "ids=jane").await;
    }
    let unknown = app.client.get(app.url("/no/such/route")).send().await;
    assert_eq!(unknown.expect("sent").status(), StatusCode::NOT_FOUND);

    let text = app.metrics().await;
    let presence = r#"route="/api/v1/users.presence""#;
    assert_eq!(
        sample(
            &text,
            &format!(r#"presenced_http_requests_total{{{presence},status="200"}}"#)
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("presenced_http_request_duration_seconds_count{{{presence}}}")
        ),
        Some(3.0),
        "{text}"
    );
    // Ingest routes carry their pattern, never the id in the path.
    assert_eq!(
        sample(
            &text,
            r#"presenced_http_requests_total{route="/internal/v1/users/{id}",status="200"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"presenced_http_requests_total{route="/internal/v1/connections/{id}",status="200"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"presenced_http_requests_total{route="unmatched",status="404"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains("jane"),
        "a user id leaked into a label:\n{text}"
    );
    assert!(!text.contains("/no/such/route"), "{text}");
}

#[tokio::test]
async fn refusals_are_counted_by_error_type_or_by_what_the_status_means() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    let bad_from = app
        .public(
            &jane,
            Method::GET,
            "/api/v1/users.presence?from=yesterday",
            None,
        )
        .await;
    bad_from.assert_error(400, "error-invalid-params");
    let stranger = Login {
        id: "jane".into(),
        token: "wrong".into(),
    };
    let refused = app
        .public(&stranger, Method::GET, "/api/v1/users.presence", None)
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let no_token = app
        .internal(Method::GET, "/stats")
        .send()
        .await
        .expect("sent");
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);

    let text = app.metrics().await;
    for (reason, count) in [
        ("error-invalid-params", 1.0),
        ("login-required", 1.0),
        ("error-unauthorized", 1.0),
    ] {
        let series = format!(r#"presenced_rejected_requests_total{{reason="{reason}"}}"#);
        assert_eq!(sample(&text, &series), Some(count), "{series} in\n{text}");
    }
}

#[tokio::test]
async fn store_figures_are_read_when_scraped() {
    let app = spawn_app().await;
    for user in ["a", "b", "c"] {
        app.user(user).await;
    }
    app.connect("a", "online").await;
    app.connect("b", "away").await;
    app.set_status("c", "busy").await;

    let text = app.metrics().await;
    assert!(
        text.lines().any(|l| l == "# TYPE presenced_users gauge"),
        "{text}"
    );
    for (name, value) in [
        ("presenced_users", 3.0),
        ("presenced_users_online", 3.0),
        ("presenced_connections", 2.0),
        ("presenced_connections_expired_total", 0.0),
        ("presenced_snapshot_rebuilds_total", 0.0),
        ("presenced_not_modified_total", 0.0),
    ] {
        assert_eq!(sample(&text, name), Some(value), "{name} in\n{text}");
    }
    let entries = app.stats().await["logEntries"].as_f64();
    assert_eq!(
        sample(&text, "presenced_changelog_entries"),
        entries,
        "{text}"
    );
    let span = sample(&text, "presenced_changelog_span_seconds").expect("span");
    assert!(span >= 0.0, "{text}");
    let head = sample(&text, "presenced_changelog_head").expect("head");
    assert!(
        head >= 6.0,
        "three creations and three visible changes: {text}"
    );
}

#[tokio::test]
async fn a_full_answer_rendered_once_then_reused_and_revalidated_is_counted() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    app.connect("jane", "online").await;
    let first = app.presence(&jane, "").await;
    let tag = first.headers["etag"].to_str().expect("ascii").to_owned();
    app.presence(&jane, "").await;
    let revalidated = send(
        app.as_user(&jane, Method::GET, "/api/v1/users.presence")
            .header("If-None-Match", tag),
    )
    .await;
    assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED);
    // Kept when asked a second time, reused the third.
    app.presence(&jane, "ids=jane").await;
    app.presence(&jane, "ids=jane").await;
    app.presence(&jane, "ids=jane").await;

    let text = app.metrics().await;
    assert_eq!(
        sample(&text, "presenced_snapshot_rebuilds_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "presenced_not_modified_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "presenced_answer_reuses_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"presenced_http_requests_total{route="/api/v1/users.presence",status="304"}"#
        ),
        Some(1.0),
        "{text}"
    );
    // A 304 is not a refusal.
    assert!(
        !text.contains("presenced_rejected_requests_total{"),
        "{text}"
    );
}

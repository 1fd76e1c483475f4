//! Rate limits over HTTP, exhausted in a loop (no waiting: refill is tested in
//! `rate_limit`'s unit tests with made-up instants). A limited request gets
//! upstream's 429 body and the `X-RateLimit-*` headers, and changes nothing.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn too_many(seconds: u64) -> Value {
    json!({
        "success": false,
        "error": format!("Error, too many requests. Please slow down. You must wait {seconds} seconds before trying this endpoint again. [error-too-many-requests]")
    })
}

/// The three `X-RateLimit-*` headers as numbers, if all are there.
fn rate_headers(answer: &Answer) -> Option<(u64, u64, u64)> {
    let number = |name: &str| answer.headers.get(name)?.to_str().ok()?.parse().ok();
    Some((
        number("x-ratelimit-limit")?,
        number("x-ratelimit-remaining")?,
        number("x-ratelimit-reset")?,
    ))
}

async fn set_status(app: &TestApp, login: &Login, body: Value) -> Answer {
    app.public(login, Method::POST, "/api/v1/users.setStatus", Some(body))
        .await
}

#[tokio::test]
async fn status_messages_are_limited_per_user_with_upstreams_429_and_headers() {
    let app = spawn_app_with(|s| s.limits.set_status_per_minute = 3).await;
    let jane = app.login("jane").await;
    let john = app.login("john").await;
    let before_ms = u64::try_from(now_ms()).expect("after 1970");
    for (i, remaining) in [2, 1, 0].into_iter().enumerate() {
        let answer = set_status(&app, &jane, json!({"message": format!("take {i}")})).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let (limit, left, reset) = rate_headers(&answer).expect("rate-limit headers");
        assert_eq!((limit, left), (3, remaining));
        // Rocket.Chat's X-RateLimit-Reset: ms since the epoch when the budget is whole again.
        assert!(
            reset > before_ms && reset <= before_ms + 3 * 60_000 + 5_000,
            "{reset}"
        );
    }
    let limited = set_status(
        &app,
        &jane,
        json!({"status": "away", "message": "one more"}),
    )
    .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    // One token refills in 60 s / 3 = 20 s.
    assert_eq!(limited.body, too_many(20));
    assert_eq!(rate_headers(&limited).map(|(l, r, _)| (l, r)), Some((3, 0)));
    assert_eq!(limited.headers["retry-after"], "20");
    let shown = app
        .public(&jane, Method::GET, "/api/v1/users.getStatus", None)
        .await;
    assert_eq!(
        shown.body["message"], "take 2",
        "the limited request changed nothing"
    );
    assert_eq!(shown.body["status"], "offline");

    // A status without a message is not limited, and reports the spent budget.
    let status_only = set_status(&app, &jane, json!({"status": "busy"})).await;
    assert_eq!(status_only.status, StatusCode::OK, "{}", status_only.body);
    assert_eq!(
        rate_headers(&status_only).map(|(l, r, _)| (l, r)),
        Some((3, 0))
    );
    // Another user has a budget of their own.
    let other = set_status(&app, &john, json!({"message": "hello"})).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(rate_headers(&other).map(|(_, r, _)| r), Some(2));
}

#[tokio::test]
async fn an_admin_setting_anothers_message_spends_the_targets_budget() {
    let app = spawn_app_with(|s| s.limits.set_status_per_minute = 1).await;
    let admin = app
        .login_with("boss", json!({"username": "boss", "roles": ["admin"]}))
        .await;
    let jane = app.login("jane").await;
    let first = set_status(&app, &admin, json!({"userId": "jane", "message": "out"})).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let second = set_status(&app, &jane, json!({"message": "back"})).await;
    assert_eq!(
        second.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        second.body
    );
    let own = set_status(&app, &admin, json!({"message": "mine"})).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
}

#[tokio::test]
async fn a_set_status_limit_of_zero_is_off_and_sends_no_headers() {
    let app = spawn_app_with(|s| s.limits.set_status_per_minute = 0).await;
    let jane = app.login("jane").await;
    for i in 0..20 {
        let answer = set_status(&app, &jane, json!({"message": format!("m{i}")})).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(rate_headers(&answer), None);
    }
}

#[tokio::test]
async fn failed_logins_are_limited_per_client_and_then_even_good_credentials_get_429() {
    let app = spawn_app_with(|s| s.limits.failed_auth_per_minute = 3).await;
    let jane = app.login("jane").await;
    let guess = Login {
        id: "jane".into(),
        token: "guess".into(),
    };
    for remaining in [2, 1, 0] {
        let answer = app
            .public(&guess, Method::GET, "/api/v1/users.presence", None)
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.body, login_required());
        assert_eq!(
            rate_headers(&answer).map(|(l, r, _)| (l, r)),
            Some((3, remaining))
        );
    }
    for login in [&guess, &jane] {
        let answer = app
            .public(
                login,
                Method::POST,
                "/api/v1/users.setStatus",
                Some(json!({"message": "x"})),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            answer.body
        );
        assert_eq!(answer.body, too_many(20));
        assert_eq!(answer.headers["retry-after"], "20");
    }
    let shown = app
        .public(&jane, Method::GET, "/api/v1/users.getStatus", None)
        .await;
    assert_eq!(shown.status, StatusCode::TOO_MANY_REQUESTS);
    // The internal API and the probes are not behind the public login.
    assert_eq!(app.stats().await["users"], 1);
    let text = app.metrics().await;
    assert_eq!(
        sample(
            &text,
            r#"presenced_rejected_requests_total{reason="error-too-many-requests"}"#
        ),
        Some(3.0),
        "{text}"
    );
}

#[tokio::test]
async fn successful_logins_spend_nothing_and_carry_no_rate_headers() {
    let app = spawn_app_with(|s| s.limits.failed_auth_per_minute = 1).await;
    let jane = app.login("jane").await;
    for _ in 0..10 {
        let answer = app.presence(&jane, "").await;
        assert_eq!(rate_headers(&answer), None);
    }
}

#[tokio::test]
async fn behind_trusted_proxies_each_forwarded_client_has_its_own_budget() {
    let app = spawn_app_with(|s| {
        s.limits.failed_auth_per_minute = 1;
        s.limits.forwarded_for_hops = 1;
    })
    .await;
    let jane = app.login("jane").await;
    let from = |client: &str, token: &str| {
        app.client
            .get(app.url("/api/v1/users.presence"))
            .header("X-User-Id", "jane")
            .header("X-Auth-Token", token)
            .header("X-Forwarded-For", client)
    };
    let first = send(from("198.51.100.7", "guess")).await;
    assert_eq!(first.status, StatusCode::UNAUTHORIZED);
    let second = send(from("198.51.100.7", &jane.token)).await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    let other = send(from("203.0.113.9", &jane.token)).await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.body);
}

#[tokio::test]
async fn without_trusted_proxies_a_forged_forwarded_header_does_not_escape_the_limit() {
    let app = spawn_app_with(|s| s.limits.failed_auth_per_minute = 1).await;
    let jane = app.login("jane").await;
    let from = |client: &str| {
        app.client
            .get(app.url("/api/v1/users.presence"))
            .header("X-User-Id", "jane")
            .header("X-Auth-Token", "guess")
            .header("X-Forwarded-For", client)
    };
    assert_eq!(
        send(from("198.51.100.7")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(from("203.0.113.9")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let good = app
        .public(&jane, Method::GET, "/api/v1/users.presence", None)
        .await;
    assert_eq!(good.status, StatusCode::TOO_MANY_REQUESTS);
}

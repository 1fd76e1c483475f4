//! Public-API auth (docs/api.md §3): who gets the upstream 401 body, hashed tokens,
//! the 404 of unknown routes, and the operator probes.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Every public route, with a request that succeeds for a valid login.
const ROUTES: [(&str, &str); 4] = [
    ("GET", "/api/v1/users.presence"),
    ("POST", "/api/v1/users.presence"),
    ("POST", "/api/v1/users.setStatus"),
    ("GET", "/api/v1/users.getStatus"),
];

/// Request headers as `(name, value)` pairs.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// Calls `method path` with exactly the given headers. Writes carry a body that
/// would be accepted from a logged-in user.
async fn call(app: &TestApp, method: &str, path: &str, headers: Headers<'_>) -> Answer {
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = app.client.request(method.clone(), app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if method == Method::POST {
        let body = if path.ends_with("users.setStatus") {
            json!({"status": "busy", "message": "should not be applied"})
        } else {
            json!({})
        };
        request = request.json(&body);
    }
    send(request).await
}

/// Asserts every public route answers the upstream 401 for these headers.
async fn assert_rejected_everywhere(app: &TestApp, headers: Headers<'_>, case: &str) {
    for (method, path) in ROUTES {
        let answer = call(app, method, path, headers).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{case}: {method} {path}: {}",
            answer.body
        );
        assert_eq!(answer.body, login_required(), "{case}: {method} {path}");
    }
}

/// Asserts every public route answers 200 for these headers.
async fn assert_accepted_everywhere(app: &TestApp, headers: Headers<'_>, case: &str) {
    for (method, path) in ROUTES {
        let answer = call(app, method, path, headers).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{case}: {method} {path}: {}",
            answer.body
        );
        assert_eq!(answer.body["success"], true, "{case}: {method} {path}");
    }
}

/// The two auth headers, naming user `id` and presenting `token`.
fn auth<'a>(id: &'a str, token: &'a str) -> [(&'static str, &'a str); 2] {
    [("X-User-Id", id), ("X-Auth-Token", token)]
}

fn headers_of(login: &Login) -> [(&str, &str); 2] {
    auth(&login.id, &login.token)
}

/// The `users.getStatus` body the user reads of itself.
async fn own_status(app: &TestApp, login: &Login) -> Value {
    let answer = app
        .public(login, Method::GET, "/api/v1/users.getStatus", None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

#[tokio::test]
async fn valid_login_is_accepted_on_every_public_route() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    assert_accepted_everywhere(&app, &headers_of(&jane), "valid login").await;
}

#[tokio::test]
async fn request_without_auth_headers_gets_the_upstream_401_body() {
    let app = spawn_app().await;
    app.login("jane").await;
    assert_rejected_everywhere(&app, &[], "no headers").await;
}

#[tokio::test]
async fn request_with_only_one_auth_header_gets_401() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    assert_rejected_everywhere(&app, &[("X-User-Id", &jane.id)], "only X-User-Id").await;
    assert_rejected_everywhere(&app, &[("X-Auth-Token", &jane.token)], "only X-Auth-Token").await;
}

#[tokio::test]
async fn wrong_or_empty_token_gets_401() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    let wrong = format!("{}x", jane.token);
    assert_rejected_everywhere(&app, &auth(&jane.id, &wrong), "wrong token").await;
    assert_rejected_everywhere(&app, &auth(&jane.id, ""), "empty token").await;
    assert_eq!(own_status(&app, &jane).await["status"], "offline");
}

#[tokio::test]
async fn token_of_another_user_gets_401() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    let john = app.login("john").await;
    assert_rejected_everywhere(&app, &auth(&jane.id, &john.token), "john's token as jane").await;
    assert_eq!(own_status(&app, &jane).await["status"], "offline");
    assert_eq!(own_status(&app, &john).await["status"], "offline");
}

#[tokio::test]
async fn unknown_user_id_gets_401_even_with_a_valid_token_of_someone_else() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    assert_rejected_everywhere(&app, &auth("nobody", &jane.token), "unknown user id").await;
}

#[tokio::test]
async fn deactivated_user_gets_401_and_is_accepted_again_when_reactivated() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    assert_accepted_everywhere(&app, &headers_of(&jane), "before deactivation").await;

    app.put_user("jane", json!({"username": "jane", "active": false}))
        .await;
    assert_rejected_everywhere(&app, &headers_of(&jane), "deactivated").await;

    app.put_user("jane", json!({"username": "jane", "active": true}))
        .await;
    assert_accepted_everywhere(&app, &headers_of(&jane), "reactivated").await;
}

#[tokio::test]
async fn revoked_token_gets_401_while_other_tokens_of_the_user_still_work() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    app.add_token("jane", json!({"token": "second-device"}))
        .await;
    app.revoke_token("jane", json!({"token": jane.token})).await;

    assert_rejected_everywhere(&app, &headers_of(&jane), "revoked token").await;
    let second = Login {
        id: "jane".to_owned(),
        token: "second-device".to_owned(),
    };
    assert_accepted_everywhere(&app, &headers_of(&second), "remaining token").await;
}

#[tokio::test]
async fn deleted_user_gets_401() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    app.ingest_ok(Method::DELETE, "/users/jane", None).await;
    assert_rejected_everywhere(&app, &headers_of(&jane), "deleted user").await;
}

#[tokio::test]
async fn rejected_set_status_changes_nothing() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    let before = own_status(&app, &jane).await;
    let cursor = app.stats().await["cursor"].clone();

    assert_rejected_everywhere(&app, &auth(&jane.id, "not-jane's"), "wrong token").await;

    assert_eq!(own_status(&app, &jane).await, before);
    assert_eq!(app.stats().await["cursor"], cursor, "a change was logged");
}

#[tokio::test]
async fn token_registered_as_hashed_token_authenticates_with_the_raw_token() {
    let app = spawn_app().await;
    app.user("jane").await;
    let raw = "raw-login-token-of-jane";
    app.add_token("jane", json!({"hashedToken": hashed(raw)}))
        .await;

    assert_accepted_everywhere(
        &app,
        &auth("jane", raw),
        "raw token of a hashed registration",
    )
    .await;
    // The stored form is not itself a token.
    let stored = hashed(raw);
    assert_rejected_everywhere(&app, &auth("jane", &stored), "hash presented as the token").await;
}

#[tokio::test]
async fn token_registered_raw_can_be_revoked_by_its_hash() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    app.revoke_token("jane", json!({"hashedToken": hashed(&jane.token)}))
        .await;
    assert_rejected_everywhere(&app, &headers_of(&jane), "revoked by hash").await;
}

#[tokio::test]
async fn unknown_routes_answer_404_resource_not_found() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    let with_login = headers_of(&jane);
    let cases: [(&str, &str, Headers); 7] = [
        ("GET", "/api/v1/nope", &with_login),
        ("GET", "/api/v1/nope", &[]),
        ("GET", "/nope", &[]),
        ("DELETE", "/api/v1/users.presence", &with_login),
        ("GET", "/api/v1/users.setStatus", &with_login),
        ("POST", "/api/v1/users.getStatus", &with_login),
        ("GET", "/internal/v1/nope", &[]),
    ];
    for (method, path, headers) in cases {
        let answer = call(&app, method, path, headers).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            answer.body
        );
        assert_eq!(answer.body, not_found_body(), "{method} {path}");
    }
    let answer = app.ingest(Method::GET, "/nope", None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.body);
    assert_eq!(answer.body, not_found_body());
}

#[tokio::test]
async fn health_and_ready_answer_200_without_auth() {
    let app = spawn_app().await;
    for path in ["/health", "/ready"] {
        let response = app.client.get(app.url(path)).send().await.expect("sent");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn metrics_are_prometheus_text_counting_the_users() {
    let app = spawn_app().await;
    app.user("jane").await;
    app.user("john").await;
    app.connect("jane", "online").await;

    let response = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.expect("text");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"# TYPE presenced_users gauge"), "{text}");
    assert!(lines.contains(&"presenced_users 2"), "{text}");
    assert!(lines.contains(&"presenced_users_online 1"), "{text}");
}

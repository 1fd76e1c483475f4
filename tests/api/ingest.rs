//! The internal (ingest) API, SPEC §4, route by route over HTTP: auth, every row
//! of the table and every error path. A rejected request must leave the state as
//! it was; [`World::assert_unchanged`] checks the stats, the full snapshot and
//! the change log (an empty delta since the state before).

use crate::helpers::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use presenced::config::Settings;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------
// Support shared with `batch.rs`.
// ---------------------------------------------------------------------------

/// A running app, a caller who reads presence (`watcher`, offline), and the log
/// head from before the first change.
pub(crate) struct World {
    pub app: TestApp,
    pub watcher: Login,
    /// A delta since this cursor holds every user's latest state, offline and
    /// deleted ones included.
    pub origin: String,
}

/// What a rejected request must leave as it was.
#[derive(Debug)]
pub(crate) struct State {
    /// `/internal/v1/stats` without the clock-dependent `windowCoveredSecs`.
    pub stats: Value,
    /// The full snapshot, sorted by id.
    pub online: Vec<Value>,
    /// The log head.
    pub cursor: String,
}

impl World {
    pub async fn new() -> World {
        World::with(|_| {}).await
    }

    pub async fn with(configure: impl FnOnce(&mut Settings)) -> World {
        let app = spawn_app_with(configure).await;
        let origin = app.stats().await["cursor"]
            .as_str()
            .expect("stats carry a cursor")
            .to_owned();
        let watcher = app.login("watcher").await;
        World {
            app,
            watcher,
            origin,
        }
    }

    pub async fn state(&self) -> State {
        let mut stats = self.app.stats().await;
        stats
            .as_object_mut()
            .expect("stats object")
            .remove("windowCoveredSecs");
        let cursor = stats["cursor"].as_str().expect("cursor").to_owned();
        State {
            online: self.app.full_state(&self.watcher).await,
            stats,
            cursor,
        }
    }

    /// Asserts that nothing changed since `before` was taken.
    pub async fn assert_unchanged(&self, before: &State) {
        let after = self.state().await;
        assert_eq!(after.stats, before.stats, "stats changed");
        assert_eq!(after.online, before.online, "full snapshot changed");
        let delta = self.since(&before.cursor).await;
        assert_eq!(
            delta.body["users"],
            json!([]),
            "changes were logged: {}",
            delta.body
        );
    }

    /// The delta since `cursor`, asserted to be a delta (`full: false`).
    pub async fn since(&self, cursor: &str) -> Answer {
        let answer = self
            .app
            .presence(&self.watcher, &format!("since={cursor}"))
            .await;
        assert!(!answer.full(), "not a delta: {}", answer.body);
        answer
    }

    /// The users of the delta since `cursor`.
    pub async fn changes_since(&self, cursor: &str) -> Value {
        self.since(cursor).await.body["users"].clone()
    }

    /// The latest visible state of `id` (offline or deleted included), `None`
    /// if it never existed.
    pub async fn latest(&self, id: &str) -> Option<Value> {
        self.since(&self.origin).await.user(id).cloned()
    }

    /// The latest visible status of `id`, which must have existed.
    pub async fn status(&self, id: &str) -> String {
        let user = self
            .latest(id)
            .await
            .unwrap_or_else(|| panic!("{id} unknown"));
        user["status"].as_str().expect("status").to_owned()
    }

    /// `id` as the full snapshot shows it: `None` when offline or unknown.
    pub async fn shown(&self, id: &str) -> Option<Value> {
        self.app
            .full_state(&self.watcher)
            .await
            .into_iter()
            .find(|u| u["_id"] == id)
    }

    /// Returns true if `token` logs `id` in on the public API, false on the
    /// upstream 401.
    pub async fn logs_in(&self, id: &str, token: &str) -> bool {
        logs_in(&self.app, id, token).await
    }
}

pub(crate) async fn logs_in(app: &TestApp, id: &str, token: &str) -> bool {
    let login = Login {
        id: id.to_owned(),
        token: token.to_owned(),
    };
    let answer = app
        .public(&login, Method::GET, "/api/v1/users.presence", None)
        .await;
    match answer.status {
        StatusCode::OK => true,
        StatusCode::UNAUTHORIZED => {
            assert_eq!(
                answer.body,
                json!({
                    "success": false,
                    "status": "error",
                    "message": "You must be logged in to do this.",
                    "error": "You must be logged in to do this."
                })
            );
            false
        }
        other => panic!("login of {id}: unexpected {other}: {}", answer.body),
    }
}

/// `base64(sha256(token))`, standard alphabet, padded.
pub(crate) fn hashed(token: &str) -> String {
    STANDARD.encode(Sha256::digest(token.as_bytes()))
}

/// A request to `/internal/v1{path}` with no auth header.
pub(crate) fn internal(app: &TestApp, method: Method, path: &str) -> reqwest::RequestBuilder {
    app.client
        .request(method, app.url(&format!("/internal/v1{path}")))
}

/// Sends `request` and parses its answer.
pub(crate) async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body reads");
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// Sends `body` verbatim, with the ingest token and a JSON content type.
pub(crate) async fn send_raw(app: &TestApp, method: Method, path: &str, body: &str) -> Answer {
    send(
        internal(app, method, path)
            .bearer_auth(INGEST_TOKEN)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_owned()),
    )
    .await
}

/// Asserts a 400 `error-invalid-params` whose text mentions `needle`.
#[track_caller]
pub(crate) fn assert_invalid(answer: &Answer, needle: &str) {
    let error = answer.assert_error(400, "error-invalid-params");
    assert!(error.contains(needle), "{needle:?} not in {error:?}");
}

// ---------------------------------------------------------------------------
// Auth
// ---------------------------------------------------------------------------

/// One request per internal route; each would change something visible (or
/// read the stats) if it got through.
fn every_route() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (
            Method::PUT,
            "/users/target",
            Some(json!({"username": "renamed"})),
        ),
        (
            Method::PUT,
            "/users/intruder",
            Some(json!({"username": "intruder"})),
        ),
        (Method::DELETE, "/users/target", None),
        (
            Method::POST,
            "/users/target/tokens",
            Some(json!({"token": "sneaky"})),
        ),
        (
            Method::DELETE,
            "/users/target/tokens",
            Some(json!({"token": "token-of-target"})),
        ),
        (
            Method::PUT,
            "/users/target/status",
            Some(json!({"status": "busy"})),
        ),
        (
            Method::PUT,
            "/connections/c-target",
            Some(json!({"userId": "target", "status": "away"})),
        ),
        (Method::DELETE, "/connections/c-target", None),
        (Method::DELETE, "/instances/i-1", None),
        (
            Method::POST,
            "/batch",
            Some(json!({"ops": [{"op": "deleteUser", "userId": "target"}]})),
        ),
        (
            Method::PUT,
            "/settings",
            Some(json!({"broadcastDisabled": true})),
        ),
        (Method::GET, "/stats", None),
    ]
}

/// A world with `target` (token `token-of-target`) online on connection
/// `c-target` of instance `i-1`.
async fn world_with_target() -> World {
    let w = World::new().await;
    w.app.login("target").await;
    w.app
        .ingest_ok(
            Method::PUT,
            "/connections/c-target",
            Some(json!({"userId": "target", "status": "online", "instanceId": "i-1"})),
        )
        .await;
    w
}

/// Sends every route with `authorization` (or none) and asserts each is refused
/// with `status` / `error_type`.
async fn assert_every_route_refused(
    app: &TestApp,
    authorization: Option<&str>,
    status: u16,
    error_type: &str,
) {
    for (method, path, body) in every_route() {
        let mut request = internal(app, method.clone(), path);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = send(request).await;
        assert_eq!(
            answer.status.as_u16(),
            status,
            "{method} {path} with {authorization:?}: {}",
            answer.body
        );
        answer.assert_error(status, error_type);
    }
}

/// What must still hold after every route was refused on `world_with_target`.
async fn assert_target_untouched(w: &World, before: &State) {
    w.assert_unchanged(before).await;
    assert!(w.logs_in("target", "token-of-target").await);
    assert!(!w.logs_in("target", "sneaky").await);
    assert_eq!(w.status("target").await, "online");
    assert_eq!(w.state().await.stats["broadcastDisabled"], false);
}

#[tokio::test]
async fn every_internal_route_answers_403_ingest_disabled_when_no_token_is_configured() {
    let app = spawn_app_with(|s| s.ingest.token = None).await;
    for authorization in [None, Some("Bearer test-ingest-token"), Some("Bearer ")] {
        assert_every_route_refused(&app, authorization, 403, "error-ingest-disabled").await;
    }
    let answer = send(internal(&app, Method::GET, "/stats")).await;
    let error = answer.assert_error(403, "error-ingest-disabled");
    assert!(error.contains("token"), "{error}");
}

#[tokio::test]
async fn a_request_without_an_authorization_header_is_rejected_with_401_and_changes_nothing() {
    let w = world_with_target().await;
    let before = w.state().await;
    assert_every_route_refused(&w.app, None, 401, "error-unauthorized").await;
    assert_target_untouched(&w, &before).await;
}

#[tokio::test]
async fn a_wrong_bearer_token_is_rejected_with_401_and_changes_nothing() {
    let w = world_with_target().await;
    let before = w.state().await;
    for authorization in [
        "Bearer wrong",
        "Bearer test-ingest-token2",
        "Bearer test-ingest-toke",
        "Bearer TEST-INGEST-TOKEN",
        "Bearer ",
        "Bearer",
        "test-ingest-token",
        "Token test-ingest-token",
    ] {
        assert_every_route_refused(&w.app, Some(authorization), 401, "error-unauthorized").await;
    }
    assert_target_untouched(&w, &before).await;
}

#[tokio::test]
async fn a_basic_authorization_scheme_is_rejected_with_401_even_carrying_the_right_token() {
    let w = world_with_target().await;
    let before = w.state().await;
    let user_and_token = format!(
        "Basic {}",
        STANDARD.encode(format!("ingest:{INGEST_TOKEN}"))
    );
    let token_only = format!("Basic {}", STANDARD.encode(INGEST_TOKEN));
    let plain = format!("Basic {INGEST_TOKEN}");
    for authorization in [&user_and_token, &token_only, &plain] {
        assert_every_route_refused(&w.app, Some(authorization), 401, "error-unauthorized").await;
    }
    assert_target_untouched(&w, &before).await;
}

#[tokio::test]
async fn the_configured_bearer_token_is_accepted() {
    let app = spawn_app().await;
    let answer = send(
        internal(&app, Method::PUT, "/users/u1")
            .header(AUTHORIZATION, format!("Bearer {INGEST_TOKEN}"))
            .json(&json!({"username": "u1"})),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["success"], true);
    let stats = send(
        internal(&app, Method::GET, "/stats")
            .header(AUTHORIZATION, format!("Bearer {INGEST_TOKEN}")),
    )
    .await;
    assert_eq!(stats.status, StatusCode::OK);
    assert_eq!(stats.body["success"], true);
    assert_eq!(stats.body["users"], 1);
}

#[tokio::test]
async fn an_unknown_internal_route_answers_404_resource_not_found() {
    let app = spawn_app().await;
    for path in ["/nope", "/users", "/users/u/tokens/extra", "/instances"] {
        let answer = app.ingest(Method::GET, path, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            answer.body,
            json!({"success": false, "error": "Resource not found"}),
            "{path}"
        );
    }
}

// ---------------------------------------------------------------------------
// PUT /internal/v1/users/{id}
// ---------------------------------------------------------------------------

#[tokio::test]
async fn putting_a_new_user_answers_changed_with_a_cursor_and_logs_its_creation() {
    let w = World::new().await;
    let before = w.state().await;
    let body = w
        .app
        .put_user(
            "jane",
            json!({"username": "jane.doe", "name": "Jane Doe", "utcOffset": -3, "avatarETag": "abc"}),
        )
        .await;
    assert_eq!(body["changed"], true, "{body}");
    let cursor = body["cursor"].as_str().expect("a cursor").to_owned();
    assert_ne!(cursor, before.cursor);
    assert_eq!(
        w.changes_since(&before.cursor).await,
        json!([{"_id": "jane", "username": "jane.doe", "name": "Jane Doe",
                "status": "offline", "utcOffset": -3, "avatarETag": "abc"}])
    );
    // Every change up to the answer's cursor is visible: nothing is after it.
    assert_eq!(w.changes_since(&cursor).await, json!([]));
    let stats = w.app.stats().await;
    assert_eq!(stats["users"], before.stats["users"].as_u64().unwrap() + 1);
    assert_eq!(stats["online"], before.stats["online"]);
    // A user without connections is offline, so not in the full snapshot.
    assert_eq!(w.shown("jane").await, None);
}

#[tokio::test]
async fn re_sending_an_identical_profile_is_not_a_change() {
    let w = World::new().await;
    let profile = json!({"username": "sam", "name": "Sam", "utcOffset": 5.5,
                         "avatarETag": "e1", "roles": ["user"], "active": true});
    w.app.put_user("sam", profile.clone()).await;
    w.app.connect("sam", "online").await;
    let before = w.state().await;
    let body = w.app.put_user("sam", profile).await;
    assert_eq!(body, json!({"success": true, "changed": false}));
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn updating_name_utc_offset_and_avatar_etag_shows_in_presence_answers() {
    let w = World::new().await;
    w.app.user("sam").await;
    w.app.connect("sam", "online").await;
    let before = w.state().await;
    let body = w
        .app
        .put_user(
            "sam",
            json!({"username": "sam", "name": "Sam Smith", "utcOffset": 5.5, "avatarETag": "v2"}),
        )
        .await;
    assert_eq!(body["changed"], true);
    let cursor = body["cursor"].as_str().expect("cursor").to_owned();
    let expected = json!({"_id": "sam", "username": "sam", "name": "Sam Smith",
                          "status": "online", "utcOffset": 5.5, "avatarETag": "v2"});
    assert_eq!(w.shown("sam").await, Some(expected.clone()));
    assert_eq!(w.changes_since(&before.cursor).await, json!([expected]));
    let by_ids = w.app.presence(&w.watcher, "ids=sam").await;
    assert_eq!(by_ids.body["users"], json!([expected]));

    // Whole hours are written as integers, as Rocket.Chat does.
    w.app
        .put_user(
            "sam",
            json!({"username": "sam", "name": "Sam Smith", "utcOffset": -2, "avatarETag": "v3"}),
        )
        .await;
    let shown = w.shown("sam").await.expect("sam online");
    assert!(shown["utcOffset"].is_i64(), "{shown}");
    assert_eq!(shown["utcOffset"], -2);
    assert_eq!(shown["avatarETag"], "v3");
    assert_eq!(
        w.changes_since(&cursor).await,
        json!([{"_id": "sam", "username": "sam", "name": "Sam Smith",
                "status": "online", "utcOffset": -2, "avatarETag": "v3"}])
    );
}

#[tokio::test]
async fn putting_a_user_replaces_the_profile_so_omitted_optional_fields_are_removed() {
    let w = World::new().await;
    let admin = w
        .app
        .login_with(
            "boss",
            json!({"username": "boss", "name": "The Boss", "utcOffset": 2,
                   "avatarETag": "e1", "roles": ["admin"]}),
        )
        .await;
    w.app.connect("boss", "online").await;
    let set_watcher_status = json!({"userId": "watcher", "status": "away"});
    let answer = w
        .app
        .public(
            &admin,
            Method::POST,
            "/api/v1/users.setStatus",
            Some(set_watcher_status.clone()),
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "admin acts on others: {}",
        answer.body
    );

    let body = w.app.put_user("boss", json!({"username": "boss"})).await;
    assert_eq!(body["changed"], true);
    assert_eq!(
        w.shown("boss").await,
        Some(json!({"_id": "boss", "username": "boss", "status": "online"}))
    );
    // `roles` is replaced too: without `admin`, acting on another user is forbidden.
    let answer = w
        .app
        .public(
            &admin,
            Method::POST,
            "/api/v1/users.setStatus",
            Some(set_watcher_status),
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({"success": false, "error": "unauthorized"})
    );
}

#[tokio::test]
async fn a_username_of_another_user_is_rejected_with_409_and_changes_nothing() {
    let w = World::new().await;
    w.app.user("alice").await;
    w.app.user("bob").await;
    let before = w.state().await;
    // Renaming onto a taken username.
    let answer = w
        .app
        .ingest(
            Method::PUT,
            "/users/bob",
            Some(json!({"username": "alice"})),
        )
        .await;
    let error = answer.assert_error(409, "error-username-taken");
    assert!(error.contains("alice"), "{error}");
    // Creating a new user with a taken username.
    let answer = w
        .app
        .ingest(
            Method::PUT,
            "/users/carol",
            Some(json!({"username": "alice", "name": "Carol"})),
        )
        .await;
    answer.assert_error(409, "error-username-taken");
    w.assert_unchanged(&before).await;
    assert_eq!(w.latest("bob").await.unwrap()["username"], "bob");
    assert_eq!(w.latest("carol").await, None);
}

#[tokio::test]
async fn renaming_a_user_frees_its_old_username() {
    let w = World::new().await;
    w.app.user("alice").await;
    w.app.user("bob").await;
    w.app
        .put_user("alice", json!({"username": "alice.new"}))
        .await;
    assert_eq!(w.latest("alice").await.unwrap()["username"], "alice.new");
    let body = w.app.put_user("bob", json!({"username": "alice"})).await;
    assert_eq!(body["changed"], true);
    assert_eq!(w.latest("bob").await.unwrap()["username"], "alice");
    // The new name is taken now.
    let before = w.state().await;
    let answer = w
        .app
        .ingest(
            Method::PUT,
            "/users/carol",
            Some(json!({"username": "alice.new"})),
        )
        .await;
    answer.assert_error(409, "error-username-taken");
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn profile_fields_over_their_limits_are_rejected_naming_them() {
    let w = World::new().await;
    w.app.user("u1").await;
    let before = w.state().await;
    for (body, field) in [
        (json!({"username": "u1", "name": "n".repeat(257)}), "name"),
        (
            json!({"username": "u1", "avatarETag": "e".repeat(129)}),
            "avatarETag",
        ),
        (json!({"username": "u1", "roles": vec!["r"; 65]}), "roles"),
        (json!({"username": "u1", "roles": [""]}), "roles"),
    ] {
        for id in ["u1", "u2"] {
            let answer = w
                .app
                .ingest(Method::PUT, &format!("/users/{id}"), Some(body.clone()))
                .await;
            assert_invalid(&answer, field);
        }
    }
    w.assert_unchanged(&before).await;
    // At the limits is fine.
    let body = w
        .app
        .put_user(
            "u1",
            json!({"username": "u1", "name": "é".repeat(256), "avatarETag": "e".repeat(128),
                   "roles": vec!["r"; 64]}),
        )
        .await;
    assert_eq!(body["changed"], true);
}

#[tokio::test]
async fn an_invalid_user_id_in_the_path_is_rejected_naming_user_id() {
    let w = World::new().await;
    let before = w.state().await;
    let too_long = "x".repeat(65);
    for id in ["a%20b", too_long.as_str(), "%C3%A9", "a,b", "a+b", "a%00"] {
        let answer = w
            .app
            .ingest(
                Method::PUT,
                &format!("/users/{id}"),
                Some(json!({"username": "valid"})),
            )
            .await;
        assert_invalid(&answer, "userId");
    }
    w.assert_unchanged(&before).await;
    // 64 characters of the allowed set are fine.
    let longest = "a.B_c-9".repeat(9) + "a";
    assert_eq!(longest.len(), 64);
    let body = w.app.put_user(&longest, json!({"username": longest})).await;
    assert_eq!(body["changed"], true);
}

#[tokio::test]
async fn an_invalid_username_is_rejected_naming_username() {
    let w = World::new().await;
    w.app.user("u1").await;
    let before = w.state().await;
    for username in [
        json!(""),
        json!("a b"),
        json!("x".repeat(65)),
        json!("é"),
        json!("a/b"),
        json!("@jane"),
    ] {
        for id in ["u1", "u2"] {
            let answer = w
                .app
                .ingest(
                    Method::PUT,
                    &format!("/users/{id}"),
                    Some(json!({ "username": username })),
                )
                .await;
            assert_invalid(&answer, "username");
        }
    }
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn a_utc_offset_outside_minus_14_to_14_is_rejected() {
    let w = World::new().await;
    w.app.user("u1").await;
    let before = w.state().await;
    for offset in [14.5, -14.25, 15.0, -100.0, 1e300] {
        let answer = w
            .app
            .ingest(
                Method::PUT,
                "/users/u1",
                Some(json!({"username": "u1", "utcOffset": offset})),
            )
            .await;
        assert_invalid(&answer, "utcOffset");
    }
    w.assert_unchanged(&before).await;
    for offset in [14.0, -14.0, 0.0, -9.5] {
        w.app
            .put_user("u1", json!({"username": "u1", "utcOffset": offset}))
            .await;
        let shown = w.latest("u1").await.unwrap()["utcOffset"].as_f64();
        assert_eq!(shown, Some(offset));
    }
}

#[tokio::test]
async fn an_unknown_field_in_a_user_body_is_rejected_naming_it() {
    let w = World::new().await;
    w.app.user("u1").await;
    let before = w.state().await;
    for (id, body) in [
        ("u1", json!({"username": "u1", "nickname": "x"})),
        ("u2", json!({"username": "u2", "status": "online"})),
        ("u2", json!({"username": "u2", "_id": "u2"})),
    ] {
        let answer = w
            .app
            .ingest(Method::PUT, &format!("/users/{id}"), Some(body.clone()))
            .await;
        let unknown = body
            .as_object()
            .unwrap()
            .keys()
            .find(|k| *k != "username")
            .unwrap()
            .clone();
        assert_invalid(&answer, &unknown);
    }
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn user_fields_of_the_wrong_type_or_a_missing_username_are_rejected() {
    let w = World::new().await;
    w.app.user("u1").await;
    let before = w.state().await;
    for body in [
        json!({"username": 5}),
        json!({"username": null}),
        json!({"username": "u1", "name": 3}),
        json!({"username": "u1", "utcOffset": "2"}),
        json!({"username": "u1", "avatarETag": ["e"]}),
        json!({"username": "u1", "roles": "admin"}),
        json!({"username": "u1", "roles": [1]}),
        json!({"username": "u1", "active": "yes"}),
        json!({"name": "No Username"}),
        json!({}),
        json!([]),
        json!("u1"),
    ] {
        for id in ["u1", "u2"] {
            let answer = w
                .app
                .ingest(Method::PUT, &format!("/users/{id}"), Some(body.clone()))
                .await;
            answer.assert_error(400, "error-invalid-params");
        }
    }
    let answer = w.app.ingest(Method::PUT, "/users/u2", None).await;
    assert_invalid(&answer, "username");
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn a_user_body_that_is_not_json_is_rejected() {
    let w = World::new().await;
    w.app.user("u1").await;
    let before = w.state().await;
    for body in [
        "{not json",
        "{\"username\": \"u1\"",
        "username=u1",
        "{\"username\": \"u1\"} trailing",
        "\u{feff}{\"username\": \"u1\"}",
    ] {
        for id in ["u1", "u2"] {
            let answer = send_raw(&w.app, Method::PUT, &format!("/users/{id}"), body).await;
            assert_invalid(&answer, "body");
        }
    }
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn a_json_array_body_is_rejected_instead_of_read_as_positional_fields() {
    let w = World::new().await;
    w.app.user("u1").await;
    w.app.connect("u1", "online").await;
    let before = w.state().await;
    for (method, path, body) in [
        (Method::PUT, "/users/arr", json!(["arr"])),
        (Method::PUT, "/users/u1", json!(["renamed", "Name"])),
        (Method::POST, "/users/u1/tokens", json!(["positional"])),
        (Method::PUT, "/users/u1/status", json!(["busy", "text"])),
        (Method::PUT, "/connections/c-x", json!(["u1", "away"])),
        (Method::PUT, "/settings", json!([true])),
        (
            Method::POST,
            "/batch",
            json!([[{"op": "deleteUser", "userId": "u1"}]]),
        ),
    ] {
        let answer = w.app.ingest(method.clone(), path, Some(body)).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{method} {path}: {}",
            answer.body
        );
        answer.assert_error(400, "error-invalid-params");
    }
    w.assert_unchanged(&before).await;
    assert!(!w.logs_in("u1", "positional").await);
}

#[tokio::test]
async fn an_inactive_user_reads_offline_and_cannot_log_in() {
    let w = World::new().await;
    let login = w.app.login("ina").await;
    w.app.connect("ina", "online").await;
    assert!(w.shown("ina").await.is_some());
    assert!(w.logs_in(&login.id, &login.token).await);

    let before = w.state().await;
    let body = w
        .app
        .put_user("ina", json!({"username": "ina", "active": false}))
        .await;
    assert_eq!(body["changed"], true);
    assert_eq!(w.shown("ina").await, None);
    assert_eq!(
        w.changes_since(&before.cursor).await,
        json!([{"_id": "ina", "username": "ina", "status": "offline"}])
    );
    assert!(!w.logs_in(&login.id, &login.token).await);
    let by_ids = w.app.presence(&w.watcher, "ids=ina").await;
    assert_eq!(by_ids.body["users"], json!([]));

    // Reactivated: the connection and the token are still there.
    w.app
        .put_user("ina", json!({"username": "ina", "active": true}))
        .await;
    assert_eq!(w.shown("ina").await.unwrap()["status"], "online");
    assert!(w.logs_in(&login.id, &login.token).await);
}

#[tokio::test]
async fn a_user_created_inactive_cannot_log_in() {
    let w = World::new().await;
    let login = w
        .app
        .login_with("sleeper", json!({"username": "sleeper", "active": false}))
        .await;
    w.app.connect("sleeper", "online").await;
    assert!(!w.logs_in(&login.id, &login.token).await);
    assert_eq!(w.shown("sleeper").await, None);
    assert_eq!(w.status("sleeper").await, "offline");
}

// ---------------------------------------------------------------------------
// DELETE /internal/v1/users/{id}
// ---------------------------------------------------------------------------

#[tokio::test]
async fn deleting_a_user_removes_it_from_the_snapshot_and_leaves_a_tombstone_in_deltas() {
    let w = World::new().await;
    w.app
        .put_user(
            "gone",
            json!({"username": "gone.user", "name": "Gone", "utcOffset": 1, "avatarETag": "x"}),
        )
        .await;
    w.app.connect("gone", "online").await;
    w.app
        .ingest_ok(
            Method::PUT,
            "/users/gone/status",
            Some(json!({"status": "busy", "statusText": "brb"})),
        )
        .await;
    assert!(w.shown("gone").await.is_some());
    let before = w.state().await;

    let body = w.app.ingest_ok(Method::DELETE, "/users/gone", None).await;
    assert_eq!(body["changed"], true);
    let cursor = body["cursor"].as_str().expect("cursor").to_owned();
    assert_eq!(w.shown("gone").await, None);
    let tombstone = json!({"_id": "gone", "username": "gone.user", "status": "offline"});
    assert_eq!(w.changes_since(&before.cursor).await, json!([tombstone]));
    assert_eq!(w.latest("gone").await, Some(tombstone));
    assert_eq!(w.changes_since(&cursor).await, json!([]));
    let stats = w.app.stats().await;
    let minus_one = |key: &str| before.stats[key].as_u64().unwrap() - 1;
    assert_eq!(stats["users"], minus_one("users"));
    assert_eq!(stats["online"], minus_one("online"));
    assert_eq!(stats["connections"], minus_one("connections"));
}

#[tokio::test]
async fn a_deleted_users_tokens_stop_working_even_when_it_is_created_again() {
    let w = World::new().await;
    let login = w.app.login("gone").await;
    assert!(w.logs_in(&login.id, &login.token).await);
    w.app.ingest_ok(Method::DELETE, "/users/gone", None).await;
    assert!(!w.logs_in(&login.id, &login.token).await);
    w.app.user("gone").await;
    assert!(!w.logs_in(&login.id, &login.token).await);
}

#[tokio::test]
async fn a_deleted_users_connections_and_username_are_released() {
    let w = World::new().await;
    w.app.user("gone").await;
    w.app
        .ingest_ok(
            Method::PUT,
            "/connections/c-gone",
            Some(json!({"userId": "gone", "status": "online", "instanceId": "i-1"})),
        )
        .await;
    assert_eq!(w.app.stats().await["connections"], 1);
    w.app.ingest_ok(Method::DELETE, "/users/gone", None).await;
    let stats = w.app.stats().await;
    assert_eq!(stats["connections"], 0);
    assert_eq!(stats["online"], 0);

    // The connection id is free: another user may open it (no 409), and the
    // dead instance no longer holds it.
    w.app.put_user("heir", json!({"username": "gone"})).await;
    w.app
        .ingest_ok(
            Method::PUT,
            "/connections/c-gone",
            Some(json!({"userId": "heir", "status": "away"})),
        )
        .await;
    let body = w
        .app
        .ingest_ok(Method::DELETE, "/instances/i-1", None)
        .await;
    assert_eq!(body["closed"], 0);
    assert_eq!(w.status("heir").await, "away");
    assert_eq!(w.latest("heir").await.unwrap()["username"], "gone");
}

#[tokio::test]
async fn deleting_an_unknown_user_succeeds_without_a_change() {
    let w = World::new().await;
    w.app.user("keep").await;
    let before = w.state().await;
    let body = w.app.ingest_ok(Method::DELETE, "/users/never", None).await;
    assert_eq!(body, json!({"success": true, "changed": false}));
    w.assert_unchanged(&before).await;

    // Deleting twice: the second time is the unknown case.
    w.app.ingest_ok(Method::DELETE, "/users/keep", None).await;
    let after_delete = w.state().await;
    let body = w.app.ingest_ok(Method::DELETE, "/users/keep", None).await;
    assert_eq!(body, json!({"success": true, "changed": false}));
    w.assert_unchanged(&after_delete).await;
}

#[tokio::test]
async fn deleting_a_user_with_a_bad_body_or_id_is_rejected_and_keeps_the_user() {
    let w = World::new().await;
    w.app.user("keep").await;
    w.app.connect("keep", "online").await;
    let before = w.state().await;
    let answer = w
        .app
        .ingest(Method::DELETE, "/users/keep", Some(json!({"force": true})))
        .await;
    assert_invalid(&answer, "force");
    let answer = send_raw(&w.app, Method::DELETE, "/users/keep", "{oops").await;
    assert_invalid(&answer, "body");
    let answer = w.app.ingest(Method::DELETE, "/users/a%20b", None).await;
    assert_invalid(&answer, "userId");
    w.assert_unchanged(&before).await;
    assert_eq!(w.status("keep").await, "online");
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_token_registered_in_raw_form_lets_its_user_log_in() {
    let w = World::new().await;
    w.app.user("u1").await;
    w.app.user("u2").await;
    let before = w.state().await;
    let body = w
        .app
        .ingest_ok(
            Method::POST,
            "/users/u1/tokens",
            Some(json!({"token": "secret-1"})),
        )
        .await;
    // A token is not a visible change.
    assert_eq!(body, json!({"success": true, "changed": false}));
    w.assert_unchanged(&before).await;
    assert!(w.logs_in("u1", "secret-1").await);
    assert!(!w.logs_in("u1", "secret-2").await);
    assert!(!w.logs_in("u2", "secret-1").await);
    // Registering the same token again is harmless.
    w.app
        .ingest_ok(
            Method::POST,
            "/users/u1/tokens",
            Some(json!({"token": "secret-1"})),
        )
        .await;
    assert!(w.logs_in("u1", "secret-1").await);
}

#[tokio::test]
async fn a_token_registered_in_hashed_form_lets_its_user_log_in_with_the_raw_token() {
    // The helper agrees with a known SHA-256 digest, standard base64, padded.
    assert_eq!(
        hashed("abc"),
        "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
    );
    let w = World::new().await;
    w.app.user("u1").await;
    let before = w.state().await;
    let body = w
        .app
        .ingest_ok(
            Method::POST,
            "/users/u1/tokens",
            Some(json!({"hashedToken": hashed("raw-secret")})),
        )
        .await;
    assert_eq!(body, json!({"success": true, "changed": false}));
    w.assert_unchanged(&before).await;
    assert!(w.logs_in("u1", "raw-secret").await);
    // The hash itself is not a token.
    assert!(!w.logs_in("u1", &hashed("raw-secret")).await);
}

#[tokio::test]
async fn a_token_body_needs_exactly_one_of_token_and_hashed_token() {
    let w = World::new().await;
    let login = w.app.login("u1").await;
    let before = w.state().await;
    for method in [Method::POST, Method::DELETE] {
        for body in [
            Some(json!({"token": "new-1", "hashedToken": hashed("new-1")})),
            Some(json!({"token": login.token, "hashedToken": hashed(&login.token)})),
            Some(json!({})),
            None,
        ] {
            let answer = w
                .app
                .ingest(method.clone(), "/users/u1/tokens", body.clone())
                .await;
            assert_invalid(&answer, "token");
        }
    }
    w.assert_unchanged(&before).await;
    assert!(!w.logs_in("u1", "new-1").await);
    assert!(w.logs_in("u1", &login.token).await);
}

#[tokio::test]
async fn a_malformed_token_body_is_rejected() {
    let w = World::new().await;
    let login = w.app.login("u1").await;
    let before = w.state().await;
    let digest = Sha256::digest(b"secret");
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let url_safe = hashed("abc").replace('+', "-").replace('/', "_");
    let short = STANDARD.encode(&digest[..31]);
    assert_eq!(short.len(), 44);
    let long = STANDARD.encode([&digest[..], &[0u8]].concat());
    let unpadded = hashed("secret").trim_end_matches('=').to_owned();
    for bad in [
        "",
        "abc",
        unpadded.as_str(),
        hex.as_str(),
        url_safe.as_str(),
        short.as_str(),
        long.as_str(),
        "!!!!v48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
    ] {
        for method in [Method::POST, Method::DELETE] {
            let answer = w
                .app
                .ingest(
                    method,
                    "/users/u1/tokens",
                    Some(json!({"hashedToken": bad})),
                )
                .await;
            assert_invalid(&answer, "hashedToken");
        }
    }
    let too_long = "t".repeat(513);
    for body in [
        json!({"token": ""}),
        json!({"token": too_long}),
        json!({"token": 5}),
        json!({"hashedToken": null, "token": null}),
        json!({"token": "x", "expires": 1}),
    ] {
        let answer = w
            .app
            .ingest(Method::POST, "/users/u1/tokens", Some(body))
            .await;
        answer.assert_error(400, "error-invalid-params");
    }
    let answer = w
        .app
        .ingest(
            Method::POST,
            "/users/u1/tokens",
            Some(json!({"token": "x", "expires": 1})),
        )
        .await;
    assert_invalid(&answer, "expires");
    let answer = send_raw(&w.app, Method::POST, "/users/u1/tokens", "{\"token\": ").await;
    assert_invalid(&answer, "body");
    w.assert_unchanged(&before).await;
    assert!(!w.logs_in("u1", "x").await);
    assert!(w.logs_in("u1", &login.token).await);
}

#[tokio::test]
async fn a_token_for_an_unknown_user_is_rejected_with_error_invalid_user() {
    let w = World::new().await;
    let before = w.state().await;
    for (method, body) in [
        (Method::POST, json!({"token": "t"})),
        (Method::POST, json!({"hashedToken": hashed("t")})),
        (Method::DELETE, json!({"token": "t"})),
        (Method::DELETE, json!({"hashedToken": hashed("t")})),
    ] {
        let answer = w
            .app
            .ingest(method, "/users/nobody/tokens", Some(body))
            .await;
        let error = answer.assert_error(400, "error-invalid-user");
        assert!(error.contains("nobody"), "{error}");
    }
    let answer = w
        .app
        .ingest(
            Method::POST,
            "/users/a%20b/tokens",
            Some(json!({"token": "t"})),
        )
        .await;
    assert_invalid(&answer, "userId");
    w.assert_unchanged(&before).await;
    // Nothing was kept aside for a user of that id.
    w.app.user("nobody").await;
    assert!(!w.logs_in("nobody", "t").await);
}

#[tokio::test]
async fn a_user_holds_at_most_256_tokens() {
    let w = World::new().await;
    w.app.user("u1").await;
    let ops: Vec<Value> = (0..256)
        .map(|i| json!({"op": "addToken", "userId": "u1", "token": format!("t{i}")}))
        .collect();
    let body = w
        .app
        .ingest_ok(Method::POST, "/batch", Some(json!({ "ops": ops })))
        .await;
    assert_eq!(body["applied"], 256, "{body}");
    let before = w.state().await;
    let answer = w
        .app
        .ingest(
            Method::POST,
            "/users/u1/tokens",
            Some(json!({"token": "one-too-many"})),
        )
        .await;
    let error = answer.assert_error(400, "error-limit-exceeded");
    assert!(error.contains("256"), "{error}");
    w.assert_unchanged(&before).await;
    assert!(!w.logs_in("u1", "one-too-many").await);
    assert!(w.logs_in("u1", "t255").await);
    // Re-adding a held token is not a new one; revoking one makes room.
    w.app
        .ingest_ok(
            Method::POST,
            "/users/u1/tokens",
            Some(json!({"token": "t0"})),
        )
        .await;
    w.app
        .ingest_ok(
            Method::DELETE,
            "/users/u1/tokens",
            Some(json!({"token": "t0"})),
        )
        .await;
    w.app
        .ingest_ok(
            Method::POST,
            "/users/u1/tokens",
            Some(json!({"token": "one-too-many"})),
        )
        .await;
    assert!(w.logs_in("u1", "one-too-many").await);
}

#[tokio::test]
async fn revoking_a_token_stops_it_working_and_leaves_the_others() {
    let w = World::new().await;
    w.app.user("u1").await;
    for body in [
        json!({"token": "tok-a"}),
        json!({"token": "tok-b"}),
        json!({"hashedToken": hashed("tok-c")}),
    ] {
        w.app
            .ingest_ok(Method::POST, "/users/u1/tokens", Some(body))
            .await;
    }
    let before = w.state().await;
    let body = w
        .app
        .ingest_ok(
            Method::DELETE,
            "/users/u1/tokens",
            Some(json!({"token": "tok-a"})),
        )
        .await;
    assert_eq!(body, json!({"success": true, "changed": false}));
    assert!(!w.logs_in("u1", "tok-a").await);
    assert!(w.logs_in("u1", "tok-b").await);

    // Revoked by hash, registered raw.
    w.app
        .ingest_ok(
            Method::DELETE,
            "/users/u1/tokens",
            Some(json!({"hashedToken": hashed("tok-b")})),
        )
        .await;
    assert!(!w.logs_in("u1", "tok-b").await);
    assert!(w.logs_in("u1", "tok-c").await);

    // Revoked raw, registered by hash.
    w.app
        .ingest_ok(
            Method::DELETE,
            "/users/u1/tokens",
            Some(json!({"token": "tok-c"})),
        )
        .await;
    assert!(!w.logs_in("u1", "tok-c").await);

    // Revoking a token that is not registered is not an error.
    let body = w
        .app
        .ingest_ok(
            Method::DELETE,
            "/users/u1/tokens",
            Some(json!({"token": "never-registered"})),
        )
        .await;
    assert_eq!(body, json!({"success": true, "changed": false}));
    w.assert_unchanged(&before).await;
}

// ---------------------------------------------------------------------------
// PUT /internal/v1/users/{id}/status
// ---------------------------------------------------------------------------

#[tokio::test]
async fn setting_a_status_and_status_text_shows_in_presence_answers() {
    let w = World::new().await;
    w.app.user("u1").await;
    w.app.connect("u1", "online").await;
    let before = w.state().await;
    let body = w
        .app
        .ingest_ok(
            Method::PUT,
            "/users/u1/status",
            Some(json!({"status": "busy", "statusText": "In a meeting"})),
        )
        .await;
    assert_eq!(body["changed"], true);
    let cursor = body["cursor"].as_str().expect("cursor").to_owned();
    let busy =
        json!({"_id": "u1", "username": "u1", "status": "busy", "statusText": "In a meeting"});
    assert_eq!(w.shown("u1").await, Some(busy.clone()));
    assert_eq!(w.changes_since(&before.cursor).await, json!([busy]));
    assert_eq!(w.changes_since(&cursor).await, json!([]));

    // The same again is not a change.
    let again = w.state().await;
    let body = w
        .app
        .ingest_ok(
            Method::PUT,
            "/users/u1/status",
            Some(json!({"status": "busy", "statusText": "In a meeting"})),
        )
        .await;
    assert_eq!(body, json!({"success": true, "changed": false}));
    w.assert_unchanged(&again).await;

    // Without statusText the text stays; an empty one clears it.
    w.set_status_body("u1", json!({"status": "away"})).await;
    assert_eq!(
        w.shown("u1").await,
        Some(
            json!({"_id": "u1", "username": "u1", "status": "away", "statusText": "In a meeting"})
        )
    );
    w.set_status_body("u1", json!({"status": "online", "statusText": ""}))
        .await;
    assert_eq!(
        w.shown("u1").await,
        Some(json!({"_id": "u1", "username": "u1", "status": "online"}))
    );
}

impl World {
    async fn set_status_body(&self, id: &str, body: Value) -> Value {
        self.app
            .ingest_ok(Method::PUT, &format!("/users/{id}/status"), Some(body))
            .await
    }
}

#[tokio::test]
async fn status_text_is_trimmed_and_cut_to_120_characters() {
    let w = World::new().await;
    w.app.user("u1").await;
    w.app.connect("u1", "online").await;
    w.set_status_body(
        "u1",
        json!({"status": "online", "statusText": "  at lunch \n"}),
    )
    .await;
    assert_eq!(w.shown("u1").await.unwrap()["statusText"], "at lunch");
    w.set_status_body(
        "u1",
        json!({"status": "online", "statusText": "é".repeat(200)}),
    )
    .await;
    let text = w.shown("u1").await.unwrap()["statusText"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(text, "é".repeat(120));
}

#[tokio::test]
async fn a_manual_status_takes_effect_at_once_until_the_next_connection_event() {
    let w = World::new().await;
    w.app.user("u1").await;
    let body = w.set_status_body("u1", json!({"status": "away"})).await;
    assert_eq!(body["changed"], true);
    assert_eq!(w.shown("u1").await.unwrap()["status"], "away");
    // A connection event recomputes: chosen away over an online connection.
    w.app.connect("u1", "online").await;
    assert_eq!(w.status("u1").await, "away");
    // Without connections the rule gives offline again.
    w.app.disconnect("u1").await;
    assert_eq!(w.status("u1").await, "offline");
    assert_eq!(w.shown("u1").await, None);
}

#[tokio::test]
async fn offline_status_makes_a_connected_user_invisible() {
    let w = World::new().await;
    w.app.user("u1").await;
    w.app.connect("u1", "online").await;
    let body = w.set_status_body("u1", json!({"status": "offline"})).await;
    assert_eq!(body["changed"], true);
    assert_eq!(w.shown("u1").await, None);
    assert_eq!(w.status("u1").await, "offline");
    // A heartbeat or a status change of the connection does not reveal the user.
    w.app.connect("u1", "away").await;
    assert_eq!(w.status("u1").await, "offline");
    // Choosing online takes effect at once (SPEC §1 exception) ...
    w.set_status_body("u1", json!({"status": "online"})).await;
    assert_eq!(w.status("u1").await, "online");
    // ... and the next connection event recomputes from the away connections.
    put_connection(&w, "u1-2", json!({"userId": "u1", "status": "away"})).await;
    assert_eq!(w.status("u1").await, "away");
}

#[tokio::test]
async fn an_invalid_status_is_rejected_with_error_invalid_status() {
    let w = World::new().await;
    w.app.user("u1").await;
    w.app.connect("u1", "online").await;
    let before = w.state().await;
    for status in ["busyy", "Online", "invisible", "", "dnd"] {
        let answer = w
            .app
            .ingest(
                Method::PUT,
                "/users/u1/status",
                Some(json!({"status": status, "statusText": "x"})),
            )
            .await;
        let error = answer.assert_error(400, "error-invalid-status");
        assert!(error.contains("status"), "{error}");
    }
    for body in [
        json!({"statusText": "only text"}),
        json!({"status": 1}),
        json!({"status": "away", "statusText": 5}),
        json!({}),
    ] {
        let answer = w
            .app
            .ingest(Method::PUT, "/users/u1/status", Some(body))
            .await;
        answer.assert_error(400, "error-invalid-params");
    }
    let answer = w
        .app
        .ingest(
            Method::PUT,
            "/users/u1/status",
            Some(json!({"status": "away", "message": "x"})),
        )
        .await;
    assert_invalid(&answer, "message");
    let answer = w
        .app
        .ingest(
            Method::PUT,
            "/users/a%20b/status",
            Some(json!({"status": "away"})),
        )
        .await;
    assert_invalid(&answer, "userId");
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn offline_status_is_rejected_when_invisibility_is_not_allowed() {
    let w = World::with(|s| s.presence.allow_invisible = false).await;
    w.app.user("u1").await;
    w.app.connect("u1", "online").await;
    let before = w.state().await;
    let answer = w
        .app
        .ingest(
            Method::PUT,
            "/users/u1/status",
            Some(json!({"status": "offline", "statusText": "hiding"})),
        )
        .await;
    answer.assert_error(400, "error-status-not-allowed");
    w.assert_unchanged(&before).await;
    // The other statuses still are.
    w.set_status_body("u1", json!({"status": "busy"})).await;
    assert_eq!(w.status("u1").await, "busy");
}

#[tokio::test]
async fn a_status_for_an_unknown_user_is_rejected_with_error_invalid_user() {
    let w = World::new().await;
    let before = w.state().await;
    let answer = w
        .app
        .ingest(
            Method::PUT,
            "/users/nobody/status",
            Some(json!({"status": "away"})),
        )
        .await;
    let error = answer.assert_error(400, "error-invalid-user");
    assert!(error.contains("nobody"), "{error}");
    w.assert_unchanged(&before).await;
    assert_eq!(w.latest("nobody").await, None);
}

// ---------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------

async fn put_connection(w: &World, connection: &str, body: Value) -> Value {
    w.app
        .ingest_ok(
            Method::PUT,
            &format!("/connections/{connection}"),
            Some(body),
        )
        .await
}

#[tokio::test]
async fn opening_a_connection_makes_its_user_online_or_away() {
    let w = World::new().await;
    w.app.user("on").await;
    w.app.user("idle").await;
    let before = w.state().await;
    let body = put_connection(&w, "c1", json!({"userId": "on", "status": "online"})).await;
    assert_eq!(body["changed"], true);
    assert!(body["cursor"].is_string(), "{body}");
    put_connection(
        &w,
        "c2",
        json!({"userId": "idle", "status": "away", "instanceId": "i-1"}),
    )
    .await;
    assert_eq!(
        w.shown("on").await,
        Some(json!({"_id": "on", "username": "on", "status": "online"}))
    );
    assert_eq!(
        w.shown("idle").await,
        Some(json!({"_id": "idle", "username": "idle", "status": "away"}))
    );
    let changes = w.changes_since(&before.cursor).await;
    assert_eq!(changes.as_array().unwrap().len(), 2, "{changes}");
    let stats = w.app.stats().await;
    assert_eq!(stats["connections"], 2);
    assert_eq!(stats["online"], 2);
}

#[tokio::test]
async fn the_visible_status_follows_the_connections_and_the_chosen_status() {
    let w = World::new().await;
    w.app.user("u").await;
    // statusConnection: online if any is online, else away if any is away.
    put_connection(&w, "u-1", json!({"userId": "u", "status": "away"})).await;
    assert_eq!(w.status("u").await, "away");
    put_connection(&w, "u-2", json!({"userId": "u", "status": "online"})).await;
    assert_eq!(w.status("u").await, "online");
    put_connection(&w, "u-1", json!({"userId": "u", "status": "online"})).await;
    put_connection(&w, "u-2", json!({"userId": "u", "status": "away"})).await;
    assert_eq!(w.status("u").await, "online");
    w.app
        .ingest_ok(Method::DELETE, "/connections/u-1", None)
        .await;
    assert_eq!(w.status("u").await, "away");
    w.app
        .ingest_ok(Method::DELETE, "/connections/u-2", None)
        .await;
    assert_eq!(w.status("u").await, "offline");

    // A chosen status other than online wins over the connections' status.
    for chosen in ["busy", "away"] {
        w.app.user(chosen).await;
        w.app.set_status(chosen, chosen).await;
        w.app.connect(chosen, "online").await;
        assert_eq!(w.status(chosen).await, chosen);
        w.app.connect(chosen, "away").await;
        assert_eq!(w.status(chosen).await, chosen);
        w.app.disconnect(chosen).await;
        assert_eq!(w.status(chosen).await, "offline");
    }
    // Chosen online follows the connections.
    w.app.set_status("u", "online").await;
    w.app.connect("u", "away").await;
    assert_eq!(w.status("u").await, "away");
}

#[tokio::test]
async fn a_heartbeat_with_the_same_status_is_not_a_change() {
    let w = World::new().await;
    w.app.user("u").await;
    let open = json!({"userId": "u", "status": "online", "instanceId": "i-1"});
    put_connection(&w, "c-u", open.clone()).await;
    let before = w.state().await;
    let body = put_connection(&w, "c-u", open).await;
    assert_eq!(body, json!({"success": true, "changed": false}));
    let body = put_connection(&w, "c-u", json!({"userId": "u", "status": "online"})).await;
    assert_eq!(body, json!({"success": true, "changed": false}));
    w.assert_unchanged(&before).await;

    // A different status on the same connection is a change.
    let body = put_connection(&w, "c-u", json!({"userId": "u", "status": "away"})).await;
    assert_eq!(body["changed"], true);
    assert_eq!(w.status("u").await, "away");
    assert_eq!(w.app.stats().await["connections"], 1);
}

#[tokio::test]
async fn a_heartbeat_can_move_a_connection_to_another_instance() {
    let w = World::new().await;
    w.app.user("u").await;
    put_connection(
        &w,
        "c-u",
        json!({"userId": "u", "status": "online", "instanceId": "i-old"}),
    )
    .await;
    let body = put_connection(
        &w,
        "c-u",
        json!({"userId": "u", "status": "online", "instanceId": "i-new"}),
    )
    .await;
    assert_eq!(body["changed"], false);
    let body = w
        .app
        .ingest_ok(Method::DELETE, "/instances/i-old", None)
        .await;
    assert_eq!(body["closed"], 0);
    assert_eq!(w.status("u").await, "online");
    let body = w
        .app
        .ingest_ok(Method::DELETE, "/instances/i-new", None)
        .await;
    assert_eq!(body["closed"], 1);
    assert_eq!(w.status("u").await, "offline");
}

#[tokio::test]
async fn a_connection_of_another_user_is_rejected_with_409_and_changes_nothing() {
    let w = World::new().await;
    w.app.user("owner").await;
    w.app.user("thief").await;
    put_connection(&w, "shared", json!({"userId": "owner", "status": "online"})).await;
    let before = w.state().await;
    for status in ["online", "away"] {
        let answer = w
            .app
            .ingest(
                Method::PUT,
                "/connections/shared",
                Some(json!({"userId": "thief", "status": status})),
            )
            .await;
        let error = answer.assert_error(409, "error-connection-conflict");
        assert!(error.contains("shared"), "{error}");
    }
    w.assert_unchanged(&before).await;
    assert_eq!(w.status("owner").await, "online");
    assert_eq!(w.status("thief").await, "offline");
}

#[tokio::test]
async fn connection_for_an_unknown_user_is_rejected_and_changes_nothing() {
    let w = World::new().await;
    w.app.user("real").await;
    let before = w.state().await;
    let answer = w
        .app
        .ingest(
            Method::PUT,
            "/connections/c-ghost",
            Some(json!({"userId": "ghost", "status": "online", "instanceId": "i-1"})),
        )
        .await;
    let error = answer.assert_error(400, "error-invalid-user");
    assert!(error.contains("ghost"), "{error}");
    w.assert_unchanged(&before).await;
    assert_eq!(w.latest("ghost").await, None);
    // The connection id was not claimed: another user may open it.
    put_connection(&w, "c-ghost", json!({"userId": "real", "status": "online"})).await;
    assert_eq!(w.status("real").await, "online");
}

#[tokio::test]
async fn a_connection_status_other_than_online_or_away_is_rejected() {
    let w = World::new().await;
    w.app.user("u").await;
    let before = w.state().await;
    for status in [json!("busy"), json!("offline"), json!("ONLINE"), json!("")] {
        let answer = w
            .app
            .ingest(
                Method::PUT,
                "/connections/c-u",
                Some(json!({"userId": "u", "status": status})),
            )
            .await;
        let error = answer.assert_error(400, "error-invalid-params");
        assert!(error.contains("status"), "{error}");
    }
    for body in [
        json!({"userId": "u", "status": 1}),
        json!({"userId": "u", "status": null}),
        json!({"userId": "u"}),
        json!({"status": "online"}),
        json!({"userId": 7, "status": "online"}),
    ] {
        let answer = w
            .app
            .ingest(Method::PUT, "/connections/c-u", Some(body))
            .await;
        answer.assert_error(400, "error-invalid-params");
    }
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn an_invalid_connection_instance_or_user_id_is_rejected_naming_it() {
    let w = World::new().await;
    w.app.user("u").await;
    let before = w.state().await;
    let too_long = "c".repeat(65);
    for connection in ["a%20b", too_long.as_str(), "c%2Cd", "%C3%A9"] {
        let path = format!("/connections/{connection}");
        let answer = w
            .app
            .ingest(
                Method::PUT,
                &path,
                Some(json!({"userId": "u", "status": "online"})),
            )
            .await;
        assert_invalid(&answer, "connectionId");
        let answer = w.app.ingest(Method::DELETE, &path, None).await;
        assert_invalid(&answer, "connectionId");
    }
    let answer = w
        .app
        .ingest(
            Method::PUT,
            "/connections/c-u",
            Some(json!({"userId": "u", "status": "online", "instanceId": "i 1"})),
        )
        .await;
    assert_invalid(&answer, "instanceId");
    let answer = w
        .app
        .ingest(
            Method::PUT,
            "/connections/c-u",
            Some(json!({"userId": "u u", "status": "online"})),
        )
        .await;
    assert_invalid(&answer, "userId");
    let answer = w
        .app
        .ingest(
            Method::PUT,
            "/connections/c-u",
            Some(json!({"userId": "u", "status": "online", "device": "phone"})),
        )
        .await;
    assert_invalid(&answer, "device");
    let answer = send_raw(&w.app, Method::PUT, "/connections/c-u", "{\"userId\":").await;
    assert_invalid(&answer, "body");
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn a_user_holds_at_most_256_connections() {
    let w = World::new().await;
    w.app.user("u1").await;
    let ops: Vec<Value> = (0..256)
        .map(|i| {
            json!({"op": "putConnection", "connectionId": format!("c{i}"),
                   "userId": "u1", "status": "online"})
        })
        .collect();
    let body = w
        .app
        .ingest_ok(Method::POST, "/batch", Some(json!({ "ops": ops })))
        .await;
    assert_eq!(body["applied"], 256, "{body}");
    let before = w.state().await;
    let answer = w
        .app
        .ingest(
            Method::PUT,
            "/connections/c256",
            Some(json!({"userId": "u1", "status": "away"})),
        )
        .await;
    let error = answer.assert_error(400, "error-limit-exceeded");
    assert!(error.contains("256"), "{error}");
    w.assert_unchanged(&before).await;
    // A heartbeat of an open connection is still fine.
    let body = w
        .app
        .ingest_ok(
            Method::PUT,
            "/connections/c0",
            Some(json!({"userId": "u1", "status": "online"})),
        )
        .await;
    assert_eq!(body["changed"], false);
}

#[tokio::test]
async fn closing_a_connection_takes_its_user_offline() {
    let w = World::new().await;
    w.app.user("u").await;
    w.app.connect("u", "online").await;
    let before = w.state().await;
    let body = w
        .app
        .ingest_ok(Method::DELETE, "/connections/c-u", None)
        .await;
    assert_eq!(body["changed"], true);
    assert!(body["cursor"].is_string(), "{body}");
    assert_eq!(w.shown("u").await, None);
    assert_eq!(
        w.changes_since(&before.cursor).await,
        json!([{"_id": "u", "username": "u", "status": "offline"}])
    );
    let stats = w.app.stats().await;
    assert_eq!(stats["connections"], 0);
    assert_eq!(stats["online"], 0);
}

#[tokio::test]
async fn closing_an_unknown_connection_succeeds_without_a_change() {
    let w = World::new().await;
    w.app.user("u").await;
    w.app.connect("u", "online").await;
    let before = w.state().await;
    let body = w
        .app
        .ingest_ok(Method::DELETE, "/connections/never", None)
        .await;
    assert_eq!(body, json!({"success": true, "changed": false}));
    w.assert_unchanged(&before).await;
    // Closing twice: the second time is the unknown case.
    w.app.disconnect("u").await;
    let closed = w.state().await;
    let body = w
        .app
        .ingest_ok(Method::DELETE, "/connections/c-u", None)
        .await;
    assert_eq!(body, json!({"success": true, "changed": false}));
    w.assert_unchanged(&closed).await;
}

#[tokio::test]
async fn closing_a_connection_with_unknown_body_fields_is_rejected_and_keeps_it() {
    let w = World::new().await;
    w.app.user("u").await;
    w.app.connect("u", "online").await;
    let before = w.state().await;
    let answer = w
        .app
        .ingest(
            Method::DELETE,
            "/connections/c-u",
            Some(json!({"userId": "u"})),
        )
        .await;
    assert_invalid(&answer, "userId");
    w.assert_unchanged(&before).await;
    assert_eq!(w.status("u").await, "online");
}

// ---------------------------------------------------------------------------
// DELETE /internal/v1/instances/{id}
// ---------------------------------------------------------------------------

#[tokio::test]
async fn deleting_an_instance_closes_exactly_its_connections() {
    let w = World::new().await;
    for id in ["a", "b", "c", "d"] {
        w.app.user(id).await;
    }
    for (connection, user, status, instance) in [
        ("ca", "a", "online", Some("i-1")),
        ("cb1", "b", "online", Some("i-1")),
        ("cb2", "b", "away", Some("i-2")),
        ("cc", "c", "online", Some("i-2")),
        ("cd", "d", "online", None),
    ] {
        let mut body = json!({"userId": user, "status": status});
        if let Some(instance) = instance {
            body["instanceId"] = json!(instance);
        }
        put_connection(&w, connection, body).await;
    }
    let before = w.state().await;
    let body = w
        .app
        .ingest_ok(Method::DELETE, "/instances/i-1", None)
        .await;
    assert_eq!(body["closed"], 2, "{body}");
    assert_eq!(body["changed"], true);
    assert_eq!(w.status("a").await, "offline");
    assert_eq!(w.status("b").await, "away");
    assert_eq!(w.status("c").await, "online");
    assert_eq!(w.status("d").await, "online");
    let mut changed: Vec<String> = w
        .changes_since(&before.cursor)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["_id"].as_str().unwrap().to_owned())
        .collect();
    changed.sort();
    assert_eq!(changed, ["a", "b"]);
    let stats = w.app.stats().await;
    assert_eq!(stats["connections"], 3);
    assert_eq!(stats["online"], 3);

    // Again: nothing left to close.
    let after = w.state().await;
    let body = w
        .app
        .ingest_ok(Method::DELETE, "/instances/i-1", None)
        .await;
    assert_eq!(
        body,
        json!({"success": true, "changed": false, "closed": 0})
    );
    let body = w
        .app
        .ingest_ok(Method::DELETE, "/instances/i-never", None)
        .await;
    assert_eq!(
        body,
        json!({"success": true, "changed": false, "closed": 0})
    );
    w.assert_unchanged(&after).await;
}

#[tokio::test]
async fn deleting_an_instance_with_a_bad_id_or_body_is_rejected_and_closes_nothing() {
    let w = World::new().await;
    w.app.user("u").await;
    put_connection(
        &w,
        "c-u",
        json!({"userId": "u", "status": "online", "instanceId": "i-1"}),
    )
    .await;
    let before = w.state().await;
    let too_long = "i".repeat(65);
    for instance in ["i%201", too_long.as_str()] {
        let answer = w
            .app
            .ingest(Method::DELETE, &format!("/instances/{instance}"), None)
            .await;
        assert_invalid(&answer, "instanceId");
    }
    let answer = w
        .app
        .ingest(
            Method::DELETE,
            "/instances/i-1",
            Some(json!({"graceful": true})),
        )
        .await;
    assert_invalid(&answer, "graceful");
    w.assert_unchanged(&before).await;
}

// ---------------------------------------------------------------------------
// PUT /internal/v1/settings
// ---------------------------------------------------------------------------

#[tokio::test]
async fn disabling_broadcast_empties_presence_answers_until_it_is_enabled_again() {
    let w = World::new().await;
    w.app.user("u").await;
    w.app.connect("u", "online").await;
    let cursor = w.state().await.cursor;
    let body = w
        .app
        .ingest_ok(
            Method::PUT,
            "/settings",
            Some(json!({"broadcastDisabled": true})),
        )
        .await;
    assert_eq!(body, json!({"success": true, "broadcastDisabled": true}));
    assert_eq!(w.app.stats().await["broadcastDisabled"], true);
    for query in [
        "",
        "ids=u",
        &format!("since={cursor}"),
        &format!("since={}", w.origin),
    ] {
        let answer = w.app.presence(&w.watcher, query).await;
        assert_eq!(answer.body["users"], json!([]), "{query}");
        assert!(answer.full(), "{query}");
    }

    let body = w
        .app
        .ingest_ok(
            Method::PUT,
            "/settings",
            Some(json!({"broadcastDisabled": false})),
        )
        .await;
    assert_eq!(body, json!({"success": true, "broadcastDisabled": false}));
    assert_eq!(w.app.stats().await["broadcastDisabled"], false);
    assert_eq!(w.shown("u").await.unwrap()["status"], "online");
}

#[tokio::test]
async fn settings_without_fields_change_nothing_and_answer_the_current_values() {
    let w = World::new().await;
    let before = w.state().await;
    for body in [Some(json!({})), None] {
        let answer = w.app.ingest_ok(Method::PUT, "/settings", body).await;
        assert_eq!(answer, json!({"success": true, "broadcastDisabled": false}));
    }
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn settings_with_an_unknown_field_or_a_wrong_type_are_rejected_and_change_nothing() {
    let w = World::new().await;
    w.app.user("u").await;
    w.app.connect("u", "online").await;
    let before = w.state().await;
    let answer = w
        .app
        .ingest(
            Method::PUT,
            "/settings",
            Some(json!({"broadcastDisabled": true, "maxIds": 5})),
        )
        .await;
    assert_invalid(&answer, "maxIds");
    let answer = w
        .app
        .ingest(
            Method::PUT,
            "/settings",
            Some(json!({"broadcast_disabled": true})),
        )
        .await;
    assert_invalid(&answer, "broadcast_disabled");
    for body in [
        json!({"broadcastDisabled": "yes"}),
        json!({"broadcastDisabled": 1}),
        json!(null),
    ] {
        let answer = w.app.ingest(Method::PUT, "/settings", Some(body)).await;
        answer.assert_error(400, "error-invalid-params");
    }
    let answer = send_raw(
        &w.app,
        Method::PUT,
        "/settings",
        "{\"broadcastDisabled\": tru}",
    )
    .await;
    assert_invalid(&answer, "body");
    w.assert_unchanged(&before).await;
    assert_eq!(w.shown("u").await.unwrap()["status"], "online");
}

// ---------------------------------------------------------------------------
// GET /internal/v1/stats
// ---------------------------------------------------------------------------

#[tokio::test]
async fn stats_count_users_online_users_connections_and_log_entries() {
    let app = spawn_app().await;
    let stats = app.stats().await;
    for (key, value) in [
        ("users", 0),
        ("online", 0),
        ("connections", 0),
        ("logEntries", 0),
        ("expiredConnections", 0),
    ] {
        assert_eq!(stats[key], value, "{key}: {stats}");
    }
    assert_eq!(stats["broadcastDisabled"], false);
    assert!(stats["cursor"].is_string(), "{stats}");
    assert!(stats["windowCoveredSecs"].is_number(), "{stats}");

    for id in ["a", "b", "c"] {
        app.user(id).await; // 3 changes
    }
    app.connect("a", "online").await; // a online: 1 change
    app.ingest_ok(
        Method::PUT,
        "/connections/a-2",
        Some(json!({"userId": "a", "status": "online"})),
    )
    .await; // a already online: no change
    app.connect("b", "away").await; // b away: 1 change
    app.connect("b", "away").await; // heartbeat: no change
    let stats = app.stats().await;
    for (key, value) in [
        ("users", 3),
        ("online", 2),
        ("connections", 3),
        ("logEntries", 5),
    ] {
        assert_eq!(stats[key], value, "{key}: {stats}");
    }
    assert!(stats["windowCoveredSecs"].as_f64().unwrap() >= 0.0);

    app.ingest_ok(Method::DELETE, "/users/a", None).await; // 1 change
    let stats = app.stats().await;
    for (key, value) in [
        ("users", 2),
        ("online", 1),
        ("connections", 1),
        ("logEntries", 6),
    ] {
        assert_eq!(stats[key], value, "{key}: {stats}");
    }
}

// ---------------------------------------------------------------------------
// Body limit
// ---------------------------------------------------------------------------

/// A valid JSON object of `fields` padded with whitespace to about `size` bytes.
fn padded(fields: &Value, size: usize) -> String {
    let compact = fields.to_string();
    let inner = &compact[1..compact.len() - 1];
    format!(
        "{{{inner}{}}}",
        " ".repeat(size.saturating_sub(compact.len()))
    )
}

#[tokio::test]
async fn a_body_over_the_size_limit_is_rejected_with_413_and_changes_nothing() {
    let w = World::with(|s| s.server.max_body_bytes = 1024).await;
    w.app.user("u").await;
    w.app.connect("u", "online").await;
    let before = w.state().await;
    for (method, path, fields) in [
        (Method::PUT, "/users/big", json!({"username": "big"})),
        (Method::PUT, "/users/u", json!({"username": "renamed"})),
        (
            Method::POST,
            "/users/u/tokens",
            json!({"token": "big-token"}),
        ),
        (Method::PUT, "/users/u/status", json!({"status": "busy"})),
        (
            Method::PUT,
            "/connections/c-u",
            json!({"userId": "u", "status": "away"}),
        ),
        (Method::DELETE, "/connections/c-u", json!({})),
        (
            Method::POST,
            "/batch",
            json!({"ops": [{"op": "deleteUser", "userId": "u"}]}),
        ),
        (Method::PUT, "/settings", json!({"broadcastDisabled": true})),
    ] {
        let answer = send_raw(&w.app, method.clone(), path, &padded(&fields, 1025)).await;
        let error = answer.assert_error(413, "error-payload-too-large");
        assert!(error.contains("1024"), "{method} {path}: {error}");
    }
    let name = "n".repeat(256);
    let answer = w
        .app
        .ingest(
            Method::PUT,
            "/users/big",
            Some(
                json!({"username": "big", "name": name, "avatarETag": "e".repeat(128),
                        "roles": vec!["r".repeat(60); 12]}),
            ),
        )
        .await;
    answer.assert_error(413, "error-payload-too-large");
    w.assert_unchanged(&before).await;
    assert!(!w.logs_in("u", "big-token").await);

    // At the limit is fine.
    let body = padded(&json!({"username": "big"}), 1024);
    assert_eq!(body.len(), 1024);
    let answer = send_raw(&w.app, Method::PUT, "/users/big", &body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["changed"], true);
}

#[tokio::test]
async fn a_chunked_body_over_the_size_limit_is_rejected_with_413_and_changes_nothing() {
    let w = World::with(|s| s.server.max_body_bytes = 1024).await;
    let before = w.state().await;
    let address = w.app.base.trim_start_matches("http://").to_owned();
    let body = padded(&json!({"username": "big"}), 1100);
    let response = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut request = format!(
            "PUT /internal/v1/users/big HTTP/1.1\r\nHost: {address}\r\n\
             Authorization: Bearer {INGEST_TOKEN}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        for chunk in body.as_bytes().chunks(600) {
            request.push_str(&format!("{:x}\r\n", chunk.len()));
            request.push_str(std::str::from_utf8(chunk).unwrap());
            request.push_str("\r\n");
        }
        request.push_str("0\r\n\r\n");
        let mut stream = std::net::TcpStream::connect(address).expect("connects");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        stream
            .write_all(request.as_bytes())
            .expect("request written");
        let mut response = Vec::new();
        // The server may close before reading the rest; what was answered is what counts.
        let _ = stream.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    })
    .await
    .expect("blocking task");
    assert!(
        response.starts_with("HTTP/1.1 413"),
        "unexpected answer: {response}"
    );
    assert!(response.contains("error-payload-too-large"), "{response}");
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn a_heartbeat_ends_a_manual_status_set_like_any_connection_event() {
    let w = World::new().await;
    w.app.user("u1").await;
    w.app.connect("u1", "away").await;
    w.app.set_status("u1", "online").await;
    assert_eq!(w.status("u1").await, "online", "a manual set shows at once");
    // The same connection, same status: a heartbeat, which recomputes by the rule.
    w.app.connect("u1", "away").await;
    assert_eq!(w.status("u1").await, "away");
}

#[tokio::test]
async fn deleting_an_instance_reports_a_change_only_when_something_visible_changed() {
    let w = World::new().await;
    w.app.user("u1").await;
    for (connection, instance) in [("c1", "node-a"), ("c2", "node-b")] {
        w.app
            .ingest_ok(
                Method::PUT,
                &format!("/connections/{connection}"),
                Some(json!({"userId": "u1", "status": "online", "instanceId": instance})),
            )
            .await;
    }
    let answer = w
        .app
        .ingest_ok(Method::DELETE, "/instances/node-a", None)
        .await;
    assert_eq!(
        (answer["closed"].clone(), answer["changed"].clone()),
        (json!(1), json!(false))
    );
    let answer = w
        .app
        .ingest_ok(Method::DELETE, "/instances/node-b", None)
        .await;
    assert_eq!(
        (answer["closed"].clone(), answer["changed"].clone()),
        (json!(1), json!(true))
    );
    assert_eq!(w.status("u1").await, "offline");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let w = World::new().await;
    for scheme in ["bearer", "BEARER"] {
        let answer = w
            .app
            .client
            .get(w.app.url("/internal/v1/stats"))
            .header(AUTHORIZATION, format!("{scheme} {INGEST_TOKEN}"))
            .send()
            .await
            .expect("request sent");
        assert_eq!(answer.status(), StatusCode::OK, "{scheme}");
    }
}

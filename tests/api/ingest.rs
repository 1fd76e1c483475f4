//! The internal (ingest) API, docs/api.md §4, route by route over HTTP: auth, every row
//! of the table and every error path. A rejected request must leave the state as
//! it was; [`World::assert_unchanged`] checks the stats, the full snapshot and
//! the change log (an empty delta since the state before).

use crate::helpers::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use presenced::config::Settings;
use reqwest::header::AUTHORIZATION;
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

/// A refusal: the HTTP status and the `errorType`.
type Refusal = (u16, &'static str);

const INVALID_PARAMS: Refusal = (400, "error-invalid-params");
const INVALID_USER: Refusal = (400, "error-invalid-user");
const INVALID_STATUS: Refusal = (400, "error-invalid-status");
const STATUS_NOT_ALLOWED: Refusal = (400, "error-status-not-allowed");
const LIMIT_EXCEEDED: Refusal = (400, "error-limit-exceeded");
const UNAUTHORIZED: Refusal = (401, "error-unauthorized");
const INGEST_DISABLED: Refusal = (403, "error-ingest-disabled");
const USERNAME_TAKEN: Refusal = (409, "error-username-taken");
const CONNECTION_CONFLICT: Refusal = (409, "error-connection-conflict");
const PAYLOAD_TOO_LARGE: Refusal = (413, "error-payload-too-large");

/// The needle every error text contains: the error need not name anything.
pub(crate) const ANY: &str = "";

/// Asserts `answer` is `refusal` with an error text containing `needle`; `what`
/// names the request in failure messages.
#[track_caller]
fn assert_refusal(answer: &Answer, refusal: Refusal, needle: &str, what: &str) {
    let (status, error_type) = refusal;
    assert_eq!(answer.status.as_u16(), status, "{what}: {}", answer.body);
    let error = answer.assert_error(status, error_type);
    assert!(
        error.contains(needle),
        "{what}: {needle:?} not in {error:?}"
    );
}

/// The answer of a successful request that changed nothing visible.
fn not_a_change() -> Value {
    json!({"success": true, "changed": false})
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

    /// Sends `method path` with `body` and the ingest token, and asserts it is
    /// refused with `refusal`, the error text containing `needle`.
    pub async fn assert_refused(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        refusal: Refusal,
        needle: &str,
    ) {
        let what = match &body {
            Some(body) => format!("{method} {path} {body}"),
            None => format!("{method} {path}"),
        };
        let answer = self.app.ingest(method, path, body).await;
        assert_refusal(&answer, refusal, needle, &what);
    }

    /// Asserts `method path` with `body` is refused as invalid params, the error
    /// naming `field`.
    pub async fn assert_invalid(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        field: &str,
    ) {
        self.assert_refused(method, path, body, INVALID_PARAMS, field)
            .await;
    }

    /// Asserts `method path` with the verbatim body `raw`, which is not valid
    /// JSON, is refused as invalid params naming the body.
    pub async fn assert_not_json(&self, method: Method, path: &str, raw: &str) {
        let answer = self.app.ingest_raw(method.clone(), path, raw).await;
        assert_refusal(
            &answer,
            INVALID_PARAMS,
            "body",
            &format!("{method} {path} {raw}"),
        );
    }

    /// `DELETE path`, asserting success.
    pub async fn delete(&self, path: &str) -> Value {
        self.app.ingest_ok(Method::DELETE, path, None).await
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
            assert_eq!(answer.body, login_required());
            false
        }
        other => panic!("login of {id}: unexpected {other}: {}", answer.body),
    }
}

// ---------------------------------------------------------------------------
// Worlds and requests of this file.
// ---------------------------------------------------------------------------

impl World {
    /// A world with these users, offline.
    async fn with_users(ids: &[&str]) -> World {
        let w = World::new().await;
        for id in ids {
            w.app.user(id).await;
        }
        w
    }

    /// A world with user `id` online on connection `c-<id>`.
    async fn with_online(id: &str) -> World {
        let w = World::with_users(&[id]).await;
        w.app.connect(id, "online").await;
        w
    }

    /// `PUT /users/{id}/status` with `body`, asserting success.
    async fn set_status_body(&self, id: &str, body: Value) -> Value {
        self.app
            .ingest_ok(Method::PUT, &format!("/users/{id}/status"), Some(body))
            .await
    }

    /// `PUT /connections/{connection}` with `body`, asserting success.
    async fn put_connection(&self, connection: &str, body: Value) -> Value {
        self.app
            .ingest_ok(
                Method::PUT,
                &format!("/connections/{connection}"),
                Some(body),
            )
            .await
    }

    /// `PUT /settings` with `body`, asserting success.
    async fn put_settings(&self, body: Value) -> Value {
        self.app
            .ingest_ok(Method::PUT, "/settings", Some(body))
            .await
    }

    /// Asserts both an update (`PUT /users/u1`; `u1` must exist) and a creation
    /// (`PUT /users/u2`) with `body` are refused as invalid params naming `field`.
    async fn assert_put_user_invalid(&self, body: Value, field: &str) {
        for id in ["u1", "u2"] {
            let path = format!("/users/{id}");
            self.assert_invalid(Method::PUT, &path, Some(body.clone()), field)
                .await;
        }
    }
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
    w.put_connection(
        "c-target",
        json!({"userId": "target", "status": "online", "instanceId": "i-1"}),
    )
    .await;
    w
}

/// Sends every route with `authorization` (or none) and asserts each is refused
/// with `refusal`.
async fn assert_every_route_refused(app: &TestApp, authorization: Option<&str>, refusal: Refusal) {
    for (method, path, body) in every_route() {
        let mut request = app.internal(method.clone(), path);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = send(request).await;
        let what = format!("{method} {path} with {authorization:?}");
        assert_refusal(&answer, refusal, ANY, &what);
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
        assert_every_route_refused(&app, authorization, INGEST_DISABLED).await;
    }
    let answer = send(app.internal(Method::GET, "/stats")).await;
    assert_refusal(&answer, INGEST_DISABLED, "token", "GET /stats");
}

#[tokio::test]
async fn a_request_without_an_authorization_header_is_rejected_with_401_and_changes_nothing() {
    let w = world_with_target().await;
    let before = w.state().await;
    assert_every_route_refused(&w.app, None, UNAUTHORIZED).await;
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
        assert_every_route_refused(&w.app, Some(authorization), UNAUTHORIZED).await;
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
        assert_every_route_refused(&w.app, Some(authorization), UNAUTHORIZED).await;
    }
    assert_target_untouched(&w, &before).await;
}

#[tokio::test]
async fn the_configured_bearer_token_is_accepted() {
    let app = spawn_app().await;
    let bearer = format!("Bearer {INGEST_TOKEN}");
    let answer = send(
        app.internal(Method::PUT, "/users/u1")
            .header(AUTHORIZATION, &bearer)
            .json(&json!({"username": "u1"})),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["success"], true);
    let stats = send(
        app.internal(Method::GET, "/stats")
            .header(AUTHORIZATION, &bearer),
    )
    .await;
    assert_eq!(stats.status, StatusCode::OK);
    assert_eq!(stats.body["success"], true);
    assert_eq!(stats.body["users"], 1);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let w = World::new().await;
    for scheme in ["bearer", "BEARER"] {
        let request = w
            .app
            .internal(Method::GET, "/stats")
            .header(AUTHORIZATION, format!("{scheme} {INGEST_TOKEN}"));
        assert_eq!(send(request).await.status, StatusCode::OK, "{scheme}");
    }
}

#[tokio::test]
async fn an_unknown_internal_route_answers_404_resource_not_found() {
    let app = spawn_app().await;
    for path in ["/nope", "/users", "/users/u/tokens/extra", "/instances"] {
        let answer = app.ingest(Method::GET, path, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.body, not_found_body(), "{path}");
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
    assert_eq!(w.app.put_user("sam", profile).await, not_a_change());
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn updating_name_utc_offset_and_avatar_etag_shows_in_presence_answers() {
    let w = World::with_online("sam").await;
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
    let set_status = |body| {
        w.app
            .public(&admin, Method::POST, "/api/v1/users.setStatus", Some(body))
    };
    let answer = set_status(set_watcher_status.clone()).await;
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
    let answer = set_status(set_watcher_status).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({"success": false, "error": "unauthorized"})
    );
}

#[tokio::test]
async fn a_username_of_another_user_is_rejected_with_409_and_changes_nothing() {
    let w = World::with_users(&["alice", "bob"]).await;
    let before = w.state().await;
    // Renaming onto a taken username.
    let rename = json!({"username": "alice"});
    w.assert_refused(
        Method::PUT,
        "/users/bob",
        Some(rename),
        USERNAME_TAKEN,
        "alice",
    )
    .await;
    // Creating a new user with a taken username.
    let create = json!({"username": "alice", "name": "Carol"});
    w.assert_refused(
        Method::PUT,
        "/users/carol",
        Some(create),
        USERNAME_TAKEN,
        ANY,
    )
    .await;
    w.assert_unchanged(&before).await;
    assert_eq!(w.latest("bob").await.unwrap()["username"], "bob");
    assert_eq!(w.latest("carol").await, None);
}

#[tokio::test]
async fn renaming_a_user_frees_its_old_username() {
    let w = World::with_users(&["alice", "bob"]).await;
    w.app
        .put_user("alice", json!({"username": "alice.new"}))
        .await;
    assert_eq!(w.latest("alice").await.unwrap()["username"], "alice.new");
    let body = w.app.put_user("bob", json!({"username": "alice"})).await;
    assert_eq!(body["changed"], true);
    assert_eq!(w.latest("bob").await.unwrap()["username"], "alice");
    // The new name is taken now.
    let before = w.state().await;
    let body = json!({"username": "alice.new"});
    w.assert_refused(Method::PUT, "/users/carol", Some(body), USERNAME_TAKEN, ANY)
        .await;
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn profile_fields_over_their_limits_are_rejected_naming_them() {
    let w = World::with_users(&["u1"]).await;
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
        w.assert_put_user_invalid(body, field).await;
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
        let body = json!({"username": "valid"});
        w.assert_invalid(Method::PUT, &format!("/users/{id}"), Some(body), "userId")
            .await;
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
    let w = World::with_users(&["u1"]).await;
    let before = w.state().await;
    for username in [
        json!(""),
        json!("a b"),
        json!("x".repeat(65)),
        json!("é"),
        json!("a/b"),
        json!("@jane"),
    ] {
        w.assert_put_user_invalid(json!({ "username": username }), "username")
            .await;
    }
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn a_utc_offset_outside_minus_14_to_14_is_rejected() {
    let w = World::with_users(&["u1"]).await;
    let before = w.state().await;
    for offset in [14.5, -14.25, 15.0, -100.0, 1e300] {
        let body = json!({"username": "u1", "utcOffset": offset});
        w.assert_invalid(Method::PUT, "/users/u1", Some(body), "utcOffset")
            .await;
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
    let w = World::with_users(&["u1"]).await;
    let before = w.state().await;
    for (id, body, unknown) in [
        ("u1", json!({"username": "u1", "nickname": "x"}), "nickname"),
        (
            "u2",
            json!({"username": "u2", "status": "online"}),
            "status",
        ),
        ("u2", json!({"username": "u2", "_id": "u2"}), "_id"),
    ] {
        w.assert_invalid(Method::PUT, &format!("/users/{id}"), Some(body), unknown)
            .await;
    }
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn user_fields_of_the_wrong_type_or_a_missing_username_are_rejected() {
    let w = World::with_users(&["u1"]).await;
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
        w.assert_put_user_invalid(body, ANY).await;
    }
    w.assert_invalid(Method::PUT, "/users/u2", None, "username")
        .await;
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn a_user_body_that_is_not_json_is_rejected() {
    let w = World::with_users(&["u1"]).await;
    let before = w.state().await;
    for body in [
        "{not json",
        "{\"username\": \"u1\"",
        "username=u1",
        "{\"username\": \"u1\"} trailing",
        "\u{feff}{\"username\": \"u1\"}",
    ] {
        for id in ["u1", "u2"] {
            w.assert_not_json(Method::PUT, &format!("/users/{id}"), body)
                .await;
        }
    }
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn a_json_array_body_is_rejected_instead_of_read_as_positional_fields() {
    let w = World::with_online("u1").await;
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
        w.assert_invalid(method, path, Some(body), ANY).await;
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
    w.set_status_body("gone", json!({"status": "busy", "statusText": "brb"}))
        .await;
    assert!(w.shown("gone").await.is_some());
    let before = w.state().await;

    let body = w.delete("/users/gone").await;
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
    w.delete("/users/gone").await;
    assert!(!w.logs_in(&login.id, &login.token).await);
    w.app.user("gone").await;
    assert!(!w.logs_in(&login.id, &login.token).await);
}

#[tokio::test]
async fn a_deleted_users_connections_and_username_are_released() {
    let w = World::with_users(&["gone"]).await;
    w.put_connection(
        "c-gone",
        json!({"userId": "gone", "status": "online", "instanceId": "i-1"}),
    )
    .await;
    assert_eq!(w.app.stats().await["connections"], 1);
    w.delete("/users/gone").await;
    assert_counts(&w.app.stats().await, &[("connections", 0), ("online", 0)]);

    // The connection id is free: another user may open it (no 409), and the
    // dead instance no longer holds it.
    w.app.put_user("heir", json!({"username": "gone"})).await;
    w.put_connection("c-gone", json!({"userId": "heir", "status": "away"}))
        .await;
    assert_eq!(w.delete("/instances/i-1").await["closed"], 0);
    assert_eq!(w.status("heir").await, "away");
    assert_eq!(w.latest("heir").await.unwrap()["username"], "gone");
}

#[tokio::test]
async fn deleting_an_unknown_user_succeeds_without_a_change() {
    let w = World::with_users(&["keep"]).await;
    let before = w.state().await;
    assert_eq!(w.delete("/users/never").await, not_a_change());
    w.assert_unchanged(&before).await;

    // Deleting twice: the second time is the unknown case.
    w.delete("/users/keep").await;
    let after_delete = w.state().await;
    assert_eq!(w.delete("/users/keep").await, not_a_change());
    w.assert_unchanged(&after_delete).await;
}

#[tokio::test]
async fn deleting_a_user_with_a_bad_body_or_id_is_rejected_and_keeps_the_user() {
    let w = World::with_online("keep").await;
    let before = w.state().await;
    let force = json!({"force": true});
    w.assert_invalid(Method::DELETE, "/users/keep", Some(force), "force")
        .await;
    w.assert_not_json(Method::DELETE, "/users/keep", "{oops")
        .await;
    w.assert_invalid(Method::DELETE, "/users/a%20b", None, "userId")
        .await;
    w.assert_unchanged(&before).await;
    assert_eq!(w.status("keep").await, "online");
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_token_registered_in_raw_form_lets_its_user_log_in() {
    let w = World::with_users(&["u1", "u2"]).await;
    let before = w.state().await;
    let body = w.app.add_token("u1", json!({"token": "secret-1"})).await;
    // A token is not a visible change.
    assert_eq!(body, not_a_change());
    w.assert_unchanged(&before).await;
    assert!(w.logs_in("u1", "secret-1").await);
    assert!(!w.logs_in("u1", "secret-2").await);
    assert!(!w.logs_in("u2", "secret-1").await);
    // Registering the same token again is harmless.
    w.app.add_token("u1", json!({"token": "secret-1"})).await;
    assert!(w.logs_in("u1", "secret-1").await);
}

#[tokio::test]
async fn a_token_registered_in_hashed_form_lets_its_user_log_in_with_the_raw_token() {
    // The helper agrees with a known SHA-256 digest, standard base64, padded.
    assert_eq!(
        hashed("abc"),
        "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
    );
    let w = World::with_users(&["u1"]).await;
    let before = w.state().await;
    let body = w
        .app
        .add_token("u1", json!({"hashedToken": hashed("raw-secret")}))
        .await;
    assert_eq!(body, not_a_change());
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
            w.assert_invalid(method.clone(), "/users/u1/tokens", body, "token")
                .await;
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
            let body = json!({"hashedToken": bad});
            w.assert_invalid(method, "/users/u1/tokens", Some(body), "hashedToken")
                .await;
        }
    }
    let too_long = "t".repeat(513);
    for (body, field) in [
        (json!({"token": ""}), ANY),
        (json!({"token": too_long}), ANY),
        (json!({"token": 5}), ANY),
        (json!({"hashedToken": null, "token": null}), ANY),
        (json!({"token": "x", "expires": 1}), "expires"),
    ] {
        w.assert_invalid(Method::POST, "/users/u1/tokens", Some(body), field)
            .await;
    }
    w.assert_not_json(Method::POST, "/users/u1/tokens", "{\"token\": ")
        .await;
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
        let path = "/users/nobody/tokens";
        w.assert_refused(method, path, Some(body), INVALID_USER, "nobody")
            .await;
    }
    let body = json!({"token": "t"});
    w.assert_invalid(Method::POST, "/users/a%20b/tokens", Some(body), "userId")
        .await;
    w.assert_unchanged(&before).await;
    // Nothing was kept aside for a user of that id.
    w.app.user("nobody").await;
    assert!(!w.logs_in("nobody", "t").await);
}

#[tokio::test]
async fn a_user_holds_at_most_256_tokens() {
    let w = World::with_users(&["u1"]).await;
    let ops: Vec<Value> = (0..256)
        .map(|i| json!({"op": "addToken", "userId": "u1", "token": format!("t{i}")}))
        .collect();
    let body = w
        .app
        .ingest_ok(Method::POST, "/batch", Some(json!({ "ops": ops })))
        .await;
    assert_eq!(body["applied"], 256, "{body}");
    let before = w.state().await;
    let body = json!({"token": "one-too-many"});
    w.assert_refused(
        Method::POST,
        "/users/u1/tokens",
        Some(body),
        LIMIT_EXCEEDED,
        "256",
    )
    .await;
    w.assert_unchanged(&before).await;
    assert!(!w.logs_in("u1", "one-too-many").await);
    assert!(w.logs_in("u1", "t255").await);
    // Re-adding a held token is not a new one; revoking one makes room.
    w.app.add_token("u1", json!({"token": "t0"})).await;
    w.app.revoke_token("u1", json!({"token": "t0"})).await;
    w.app
        .add_token("u1", json!({"token": "one-too-many"}))
        .await;
    assert!(w.logs_in("u1", "one-too-many").await);
}

#[tokio::test]
async fn revoking_a_token_stops_it_working_and_leaves_the_others() {
    let w = World::with_users(&["u1"]).await;
    for body in [
        json!({"token": "tok-a"}),
        json!({"token": "tok-b"}),
        json!({"hashedToken": hashed("tok-c")}),
    ] {
        w.app.add_token("u1", body).await;
    }
    let before = w.state().await;
    let body = w.app.revoke_token("u1", json!({"token": "tok-a"})).await;
    assert_eq!(body, not_a_change());
    assert!(!w.logs_in("u1", "tok-a").await);
    assert!(w.logs_in("u1", "tok-b").await);

    // Revoked by hash, registered raw.
    w.app
        .revoke_token("u1", json!({"hashedToken": hashed("tok-b")}))
        .await;
    assert!(!w.logs_in("u1", "tok-b").await);
    assert!(w.logs_in("u1", "tok-c").await);

    // Revoked raw, registered by hash.
    w.app.revoke_token("u1", json!({"token": "tok-c"})).await;
    assert!(!w.logs_in("u1", "tok-c").await);

    // Revoking a token that is not registered is not an error.
    let body = w
        .app
        .revoke_token("u1", json!({"token": "never-registered"}))
        .await;
    assert_eq!(body, not_a_change());
    w.assert_unchanged(&before).await;
}

// ---------------------------------------------------------------------------
// PUT /internal/v1/users/{id}/status
// ---------------------------------------------------------------------------

#[tokio::test]
async fn setting_a_status_and_status_text_shows_in_presence_answers() {
    let w = World::with_online("u1").await;
    let before = w.state().await;
    let in_a_meeting = json!({"status": "busy", "statusText": "In a meeting"});
    let body = w.set_status_body("u1", in_a_meeting.clone()).await;
    assert_eq!(body["changed"], true);
    let cursor = body["cursor"].as_str().expect("cursor").to_owned();
    let busy =
        json!({"_id": "u1", "username": "u1", "status": "busy", "statusText": "In a meeting"});
    assert_eq!(w.shown("u1").await, Some(busy.clone()));
    assert_eq!(w.changes_since(&before.cursor).await, json!([busy]));
    assert_eq!(w.changes_since(&cursor).await, json!([]));

    // The same again is not a change.
    let again = w.state().await;
    let body = w.set_status_body("u1", in_a_meeting).await;
    assert_eq!(body, not_a_change());
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

#[tokio::test]
async fn status_text_is_trimmed_and_cut_to_120_characters() {
    let w = World::with_online("u1").await;
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
    let w = World::with_users(&["u1"]).await;
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
    let w = World::with_online("u1").await;
    let body = w.set_status_body("u1", json!({"status": "offline"})).await;
    assert_eq!(body["changed"], true);
    assert_eq!(w.shown("u1").await, None);
    assert_eq!(w.status("u1").await, "offline");
    // A heartbeat or a status change of the connection does not reveal the user.
    w.app.connect("u1", "away").await;
    assert_eq!(w.status("u1").await, "offline");
    // Choosing online takes effect at once (docs/api.md §1 exception) ...
    w.set_status_body("u1", json!({"status": "online"})).await;
    assert_eq!(w.status("u1").await, "online");
    // ... and the next connection event recomputes from the away connections.
    w.put_connection("u1-2", json!({"userId": "u1", "status": "away"}))
        .await;
    assert_eq!(w.status("u1").await, "away");
}

#[tokio::test]
async fn an_invalid_status_is_rejected_with_error_invalid_status() {
    let w = World::with_online("u1").await;
    let before = w.state().await;
    for status in ["busyy", "Online", "invisible", "", "dnd"] {
        let body = json!({"status": status, "statusText": "x"});
        w.assert_refused(
            Method::PUT,
            "/users/u1/status",
            Some(body),
            INVALID_STATUS,
            "status",
        )
        .await;
    }
    for (path, body, field) in [
        ("/users/u1/status", json!({"statusText": "only text"}), ANY),
        ("/users/u1/status", json!({"status": 1}), ANY),
        (
            "/users/u1/status",
            json!({"status": "away", "statusText": 5}),
            ANY,
        ),
        ("/users/u1/status", json!({}), ANY),
        (
            "/users/u1/status",
            json!({"status": "away", "message": "x"}),
            "message",
        ),
        ("/users/a%20b/status", json!({"status": "away"}), "userId"),
    ] {
        w.assert_invalid(Method::PUT, path, Some(body), field).await;
    }
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn offline_status_is_rejected_when_invisibility_is_not_allowed() {
    let w = World::with(|s| s.presence.allow_invisible = false).await;
    w.app.user("u1").await;
    w.app.connect("u1", "online").await;
    let before = w.state().await;
    let body = json!({"status": "offline", "statusText": "hiding"});
    w.assert_refused(
        Method::PUT,
        "/users/u1/status",
        Some(body),
        STATUS_NOT_ALLOWED,
        ANY,
    )
    .await;
    w.assert_unchanged(&before).await;
    // The other statuses still are.
    w.set_status_body("u1", json!({"status": "busy"})).await;
    assert_eq!(w.status("u1").await, "busy");
}

#[tokio::test]
async fn a_status_for_an_unknown_user_is_rejected_with_error_invalid_user() {
    let w = World::new().await;
    let before = w.state().await;
    let body = json!({"status": "away"});
    w.assert_refused(
        Method::PUT,
        "/users/nobody/status",
        Some(body),
        INVALID_USER,
        "nobody",
    )
    .await;
    w.assert_unchanged(&before).await;
    assert_eq!(w.latest("nobody").await, None);
}

// ---------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------

#[tokio::test]
async fn opening_a_connection_makes_its_user_online_or_away() {
    let w = World::with_users(&["on", "idle"]).await;
    let before = w.state().await;
    let body = w
        .put_connection("c1", json!({"userId": "on", "status": "online"}))
        .await;
    assert_eq!(body["changed"], true);
    assert!(body["cursor"].is_string(), "{body}");
    w.put_connection(
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
    assert_counts(&w.app.stats().await, &[("connections", 2), ("online", 2)]);
}

#[tokio::test]
async fn the_visible_status_follows_the_connections_and_the_chosen_status() {
    let w = World::with_users(&["u"]).await;
    // statusConnection: online if any is online, else away if any is away.
    let put =
        |connection, status| w.put_connection(connection, json!({"userId": "u", "status": status}));
    put("u-1", "away").await;
    assert_eq!(w.status("u").await, "away");
    put("u-2", "online").await;
    assert_eq!(w.status("u").await, "online");
    put("u-1", "online").await;
    put("u-2", "away").await;
    assert_eq!(w.status("u").await, "online");
    w.delete("/connections/u-1").await;
    assert_eq!(w.status("u").await, "away");
    w.delete("/connections/u-2").await;
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
    let w = World::with_users(&["u"]).await;
    let open = json!({"userId": "u", "status": "online", "instanceId": "i-1"});
    w.put_connection("c-u", open.clone()).await;
    let before = w.state().await;
    for heartbeat in [open, json!({"userId": "u", "status": "online"})] {
        assert_eq!(w.put_connection("c-u", heartbeat).await, not_a_change());
    }
    w.assert_unchanged(&before).await;

    // A different status on the same connection is a change.
    let body = w
        .put_connection("c-u", json!({"userId": "u", "status": "away"}))
        .await;
    assert_eq!(body["changed"], true);
    assert_eq!(w.status("u").await, "away");
    assert_eq!(w.app.stats().await["connections"], 1);
}

#[tokio::test]
async fn a_heartbeat_can_move_a_connection_to_another_instance() {
    let w = World::with_users(&["u"]).await;
    let on = |instance| json!({"userId": "u", "status": "online", "instanceId": instance});
    w.put_connection("c-u", on("i-old")).await;
    assert_eq!(w.put_connection("c-u", on("i-new")).await["changed"], false);
    assert_eq!(w.delete("/instances/i-old").await["closed"], 0);
    assert_eq!(w.status("u").await, "online");
    assert_eq!(w.delete("/instances/i-new").await["closed"], 1);
    assert_eq!(w.status("u").await, "offline");
}

#[tokio::test]
async fn a_heartbeat_ends_a_manual_status_set_like_any_connection_event() {
    let w = World::with_users(&["u1"]).await;
    w.app.connect("u1", "away").await;
    w.app.set_status("u1", "online").await;
    assert_eq!(w.status("u1").await, "online", "a manual set shows at once");
    // The same connection, same status: a heartbeat, which recomputes by the rule.
    w.app.connect("u1", "away").await;
    assert_eq!(w.status("u1").await, "away");
}

#[tokio::test]
async fn a_connection_of_another_user_is_rejected_with_409_and_changes_nothing() {
    let w = World::with_users(&["owner", "thief"]).await;
    w.put_connection("shared", json!({"userId": "owner", "status": "online"}))
        .await;
    let before = w.state().await;
    for status in ["online", "away"] {
        let body = json!({"userId": "thief", "status": status});
        let path = "/connections/shared";
        w.assert_refused(Method::PUT, path, Some(body), CONNECTION_CONFLICT, "shared")
            .await;
    }
    w.assert_unchanged(&before).await;
    assert_eq!(w.status("owner").await, "online");
    assert_eq!(w.status("thief").await, "offline");
}

#[tokio::test]
async fn connection_for_an_unknown_user_is_rejected_and_changes_nothing() {
    let w = World::with_users(&["real"]).await;
    let before = w.state().await;
    let body = json!({"userId": "ghost", "status": "online", "instanceId": "i-1"});
    w.assert_refused(
        Method::PUT,
        "/connections/c-ghost",
        Some(body),
        INVALID_USER,
        "ghost",
    )
    .await;
    w.assert_unchanged(&before).await;
    assert_eq!(w.latest("ghost").await, None);
    // The connection id was not claimed: another user may open it.
    w.put_connection("c-ghost", json!({"userId": "real", "status": "online"}))
        .await;
    assert_eq!(w.status("real").await, "online");
}

#[tokio::test]
async fn a_connection_status_other_than_online_or_away_is_rejected() {
    let w = World::with_users(&["u"]).await;
    let before = w.state().await;
    for status in [json!("busy"), json!("offline"), json!("ONLINE"), json!("")] {
        let body = json!({"userId": "u", "status": status});
        w.assert_invalid(Method::PUT, "/connections/c-u", Some(body), "status")
            .await;
    }
    for body in [
        json!({"userId": "u", "status": 1}),
        json!({"userId": "u", "status": null}),
        json!({"userId": "u"}),
        json!({"status": "online"}),
        json!({"userId": 7, "status": "online"}),
    ] {
        w.assert_invalid(Method::PUT, "/connections/c-u", Some(body), ANY)
            .await;
    }
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn an_invalid_connection_instance_or_user_id_is_rejected_naming_it() {
    let w = World::with_users(&["u"]).await;
    let before = w.state().await;
    let too_long = "c".repeat(65);
    for connection in ["a%20b", too_long.as_str(), "c%2Cd", "%C3%A9"] {
        let path = format!("/connections/{connection}");
        let body = json!({"userId": "u", "status": "online"});
        w.assert_invalid(Method::PUT, &path, Some(body), "connectionId")
            .await;
        w.assert_invalid(Method::DELETE, &path, None, "connectionId")
            .await;
    }
    for (body, field) in [
        (
            json!({"userId": "u", "status": "online", "instanceId": "i 1"}),
            "instanceId",
        ),
        (json!({"userId": "u u", "status": "online"}), "userId"),
        (
            json!({"userId": "u", "status": "online", "device": "phone"}),
            "device",
        ),
    ] {
        w.assert_invalid(Method::PUT, "/connections/c-u", Some(body), field)
            .await;
    }
    w.assert_not_json(Method::PUT, "/connections/c-u", "{\"userId\":")
        .await;
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn a_user_holds_at_most_256_connections() {
    let w = World::with_users(&["u1"]).await;
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
    let body = json!({"userId": "u1", "status": "away"});
    w.assert_refused(
        Method::PUT,
        "/connections/c256",
        Some(body),
        LIMIT_EXCEEDED,
        "256",
    )
    .await;
    w.assert_unchanged(&before).await;
    // A heartbeat of an open connection is still fine.
    let body = w
        .put_connection("c0", json!({"userId": "u1", "status": "online"}))
        .await;
    assert_eq!(body["changed"], false);
}

#[tokio::test]
async fn closing_a_connection_takes_its_user_offline() {
    let w = World::with_online("u").await;
    let before = w.state().await;
    let body = w.delete("/connections/c-u").await;
    assert_eq!(body["changed"], true);
    assert!(body["cursor"].is_string(), "{body}");
    assert_eq!(w.shown("u").await, None);
    assert_eq!(
        w.changes_since(&before.cursor).await,
        json!([{"_id": "u", "username": "u", "status": "offline"}])
    );
    assert_counts(&w.app.stats().await, &[("connections", 0), ("online", 0)]);
}

#[tokio::test]
async fn closing_an_unknown_connection_succeeds_without_a_change() {
    let w = World::with_online("u").await;
    let before = w.state().await;
    assert_eq!(w.delete("/connections/never").await, not_a_change());
    w.assert_unchanged(&before).await;
    // Closing twice: the second time is the unknown case.
    w.app.disconnect("u").await;
    let closed = w.state().await;
    assert_eq!(w.delete("/connections/c-u").await, not_a_change());
    w.assert_unchanged(&closed).await;
}

#[tokio::test]
async fn closing_a_connection_with_unknown_body_fields_is_rejected_and_keeps_it() {
    let w = World::with_online("u").await;
    let before = w.state().await;
    let body = json!({"userId": "u"});
    w.assert_invalid(Method::DELETE, "/connections/c-u", Some(body), "userId")
        .await;
    w.assert_unchanged(&before).await;
    assert_eq!(w.status("u").await, "online");
}

// ---------------------------------------------------------------------------
// DELETE /internal/v1/instances/{id}
// ---------------------------------------------------------------------------

#[tokio::test]
async fn deleting_an_instance_closes_exactly_its_connections() {
    let w = World::with_users(&["a", "b", "c", "d"]).await;
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
        w.put_connection(connection, body).await;
    }
    let before = w.state().await;
    let body = w.delete("/instances/i-1").await;
    assert_eq!(body["closed"], 2, "{body}");
    assert_eq!(body["changed"], true);
    for (user, status) in [
        ("a", "offline"),
        ("b", "away"),
        ("c", "online"),
        ("d", "online"),
    ] {
        assert_eq!(w.status(user).await, status, "{user}");
    }
    assert_eq!(w.since(&before.cursor).await.ids(), ["a", "b"]);
    assert_counts(&w.app.stats().await, &[("connections", 3), ("online", 3)]);

    // Again: nothing left to close.
    let after = w.state().await;
    for path in ["/instances/i-1", "/instances/i-never"] {
        assert_eq!(
            w.delete(path).await,
            json!({"success": true, "changed": false, "closed": 0}),
            "{path}"
        );
    }
    w.assert_unchanged(&after).await;
}

#[tokio::test]
async fn deleting_an_instance_reports_a_change_only_when_something_visible_changed() {
    let w = World::with_users(&["u1"]).await;
    for (connection, instance) in [("c1", "node-a"), ("c2", "node-b")] {
        let body = json!({"userId": "u1", "status": "online", "instanceId": instance});
        w.put_connection(connection, body).await;
    }
    for (instance, changed) in [("node-a", false), ("node-b", true)] {
        let answer = w.delete(&format!("/instances/{instance}")).await;
        assert_eq!(
            (answer["closed"].clone(), answer["changed"].clone()),
            (json!(1), json!(changed)),
            "{instance}"
        );
    }
    assert_eq!(w.status("u1").await, "offline");
}

#[tokio::test]
async fn deleting_an_instance_with_a_bad_id_or_body_is_rejected_and_closes_nothing() {
    let w = World::with_users(&["u"]).await;
    w.put_connection(
        "c-u",
        json!({"userId": "u", "status": "online", "instanceId": "i-1"}),
    )
    .await;
    let before = w.state().await;
    let too_long = "i".repeat(65);
    for instance in ["i%201", too_long.as_str()] {
        let path = format!("/instances/{instance}");
        w.assert_invalid(Method::DELETE, &path, None, "instanceId")
            .await;
    }
    let body = json!({"graceful": true});
    w.assert_invalid(Method::DELETE, "/instances/i-1", Some(body), "graceful")
        .await;
    w.assert_unchanged(&before).await;
}

// ---------------------------------------------------------------------------
// PUT /internal/v1/settings
// ---------------------------------------------------------------------------

#[tokio::test]
async fn disabling_broadcast_empties_presence_answers_until_it_is_enabled_again() {
    let w = World::with_online("u").await;
    let cursor = w.state().await.cursor;
    let body = w.put_settings(json!({"broadcastDisabled": true})).await;
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

    let body = w.put_settings(json!({"broadcastDisabled": false})).await;
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
    let w = World::with_online("u").await;
    let before = w.state().await;
    for (body, field) in [
        (json!({"broadcastDisabled": true, "maxIds": 5}), "maxIds"),
        (json!({"broadcast_disabled": true}), "broadcast_disabled"),
        (json!({"broadcastDisabled": "yes"}), ANY),
        (json!({"broadcastDisabled": 1}), ANY),
        (json!(null), ANY),
    ] {
        w.assert_invalid(Method::PUT, "/settings", Some(body), field)
            .await;
    }
    w.assert_not_json(Method::PUT, "/settings", "{\"broadcastDisabled\": tru}")
        .await;
    w.assert_unchanged(&before).await;
    assert_eq!(w.shown("u").await.unwrap()["status"], "online");
}

// ---------------------------------------------------------------------------
// GET /internal/v1/stats
// ---------------------------------------------------------------------------

/// Asserts each `(key, count)` of `stats`.
#[track_caller]
fn assert_counts(stats: &Value, counts: &[(&str, u64)]) {
    for (key, count) in counts {
        assert_eq!(stats[*key], *count, "{key}: {stats}");
    }
}

#[tokio::test]
async fn stats_count_users_online_users_connections_and_log_entries() {
    let app = spawn_app().await;
    let stats = app.stats().await;
    assert_counts(
        &stats,
        &[
            ("users", 0),
            ("online", 0),
            ("connections", 0),
            ("logEntries", 0),
            ("expiredConnections", 0),
        ],
    );
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
    assert_counts(
        &stats,
        &[
            ("users", 3),
            ("online", 2),
            ("connections", 3),
            ("logEntries", 5),
        ],
    );
    assert!(stats["windowCoveredSecs"].as_f64().unwrap() >= 0.0);

    app.ingest_ok(Method::DELETE, "/users/a", None).await; // 1 change
    assert_counts(
        &app.stats().await,
        &[
            ("users", 2),
            ("online", 1),
            ("connections", 1),
            ("logEntries", 6),
        ],
    );
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
        let what = format!("{method} {path}");
        let answer = w.app.ingest_raw(method, path, &padded(&fields, 1025)).await;
        assert_refusal(&answer, PAYLOAD_TOO_LARGE, "1024", &what);
    }
    let big = json!({"username": "big", "name": "n".repeat(256), "avatarETag": "e".repeat(128),
                     "roles": vec!["r".repeat(60); 12]});
    w.assert_refused(Method::PUT, "/users/big", Some(big), PAYLOAD_TOO_LARGE, ANY)
        .await;
    w.assert_unchanged(&before).await;
    assert!(!w.logs_in("u", "big-token").await);

    // At the limit is fine.
    let body = padded(&json!({"username": "big"}), 1024);
    assert_eq!(body.len(), 1024);
    let answer = w.app.ingest_raw(Method::PUT, "/users/big", &body).await;
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

//! Spawns the real application on a loopback port and talks to it over HTTP.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use presenced::config::Settings;
use presenced::Application;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

pub const INGEST_TOKEN: &str = "test-ingest-token";

/// A loopback port nobody listens on right now, for a server the test starts
/// as another process (an in-process one binds port 0 itself).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A running presenced on 127.0.0.1 with a free port; stopped when dropped
/// if this test started it in-process.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    handle: Option<presenced::StopHandle>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // The stop command is sent at once; its completion future is not needed.
        if let Some(handle) = &self.handle {
            drop(handle.stop(false));
        }
    }
}

/// A user that can call the public API.
#[derive(Debug, Clone)]
pub struct Login {
    pub id: String,
    pub token: String,
}

/// The settings tests start from: loopback, port 0, two workers, an ingest token.
pub fn test_settings() -> Settings {
    let mut settings = Settings::default();
    settings.server.bind = "127.0.0.1:0".parse().expect("loopback address");
    settings.server.workers = 2;
    settings.ingest.token = Some(INGEST_TOKEN.to_owned());
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings();
    configure(&mut settings);
    spawn_settings(&settings, false).await
}

pub async fn spawn_settings(settings: &Settings, demo: bool) -> TestApp {
    spawn_serving(settings, demo).0
}

/// As [`spawn_settings`], also returning the task that serves: it ends once the
/// server has stopped and written its final snapshot.
pub fn spawn_serving(
    settings: &Settings,
    demo: bool,
) -> (TestApp, tokio::task::JoinHandle<std::io::Result<()>>) {
    let app = Application::build(settings, demo).expect("application builds");
    let mut test_app = TestApp::at(app.port());
    test_app.handle = Some(app.handle());
    (test_app, tokio::spawn(app.run_until_stopped()))
}

/// A parsed answer: status and JSON body (`Value::Null` when empty or not JSON).
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Asserts a `{"success":false,"error":..,"errorType":..}` answer and returns the error text.
    #[track_caller]
    pub fn assert_error(&self, status: u16, error_type: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["success"], false, "body: {}", self.body);
        assert_eq!(self.body["errorType"], error_type, "body: {}", self.body);
        let error = self.body["error"].as_str().expect("error text").to_owned();
        assert!(!error.is_empty());
        error
    }

    /// The ids of `users`, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.body["users"]
            .as_array()
            .unwrap_or_else(|| panic!("no users in {}", self.body))
            .iter()
            .map(|u| u["_id"].as_str().expect("_id").to_owned())
            .collect();
        ids.sort();
        ids
    }

    /// The user with this id in `users`, if present.
    pub fn user(&self, id: &str) -> Option<&Value> {
        self.body["users"]
            .as_array()?
            .iter()
            .find(|u| u["_id"] == id)
    }

    pub fn cursor(&self) -> String {
        self.body["cursor"].as_str().expect("cursor").to_owned()
    }

    pub fn full(&self) -> bool {
        self.body["full"].as_bool().expect("full")
    }
}

/// Sends `request` and parses its answer (the one place a raw request is sent).
pub async fn send(request: RequestBuilder) -> Answer {
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

/// Adds `body`, if any, as JSON.
fn with_json(request: RequestBuilder, body: Option<Value>) -> RequestBuilder {
    match body {
        Some(body) => request.json(&body),
        None => request,
    }
}

/// `path`, followed by `?query` unless the query is empty.
pub fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// `base64(sha256(token))`, standard alphabet, padded: how Rocket.Chat stores
/// login tokens.
pub fn hashed(token: &str) -> String {
    STANDARD.encode(Sha256::digest(token.as_bytes()))
}

/// The upstream 401 body of the public API.
pub fn login_required() -> Value {
    json!({
        "success": false,
        "status": "error",
        "message": "You must be logged in to do this.",
        "error": "You must be logged in to do this."
    })
}

/// The 404 body of an unknown route.
pub fn not_found_body() -> Value {
    json!({"success": false, "error": "Resource not found"})
}

impl TestApp {
    /// A client of a presenced already listening on 127.0.0.1:`port`, such
    /// as a child process; it is not stopped on drop.
    pub fn at(port: u16) -> TestApp {
        TestApp {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            handle: None,
        }
    }

    /// Stops an in-process server as SIGTERM would: no new connections,
    /// in-flight requests finish.
    pub async fn stop(&self) {
        if let Some(handle) = &self.handle {
            handle.stop(true).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request to `/internal/v1{path}` with no auth header.
    pub fn internal(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(&format!("/internal/v1{path}")))
    }

    /// Calls the internal API with the ingest token.
    pub async fn ingest(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let request = self.internal(method, path).bearer_auth(INGEST_TOKEN);
        send(with_json(request, body)).await
    }

    /// Calls the internal API with the ingest token and `body` sent verbatim as JSON.
    pub async fn ingest_raw(&self, method: Method, path: &str, body: &str) -> Answer {
        let request = self.internal(method, path).bearer_auth(INGEST_TOKEN);
        send(
            request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_owned()),
        )
        .await
    }

    /// Calls the internal API and asserts success.
    pub async fn ingest_ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let answer = self.ingest(method, path, body).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
        assert_eq!(answer.body["success"], true);
        answer.body
    }

    pub async fn put_user(&self, id: &str, body: Value) -> Value {
        self.ingest_ok(Method::PUT, &format!("/users/{id}"), Some(body))
            .await
    }

    /// Creates a user named after its id.
    pub async fn user(&self, id: &str) {
        self.put_user(id, json!({ "username": id })).await;
    }

    /// Opens (or refreshes) a connection `c-<user>` of `user`.
    pub async fn connect(&self, user: &str, status: &str) {
        self.ingest_ok(
            Method::PUT,
            &format!("/connections/c-{user}"),
            Some(json!({ "userId": user, "status": status })),
        )
        .await;
    }

    pub async fn disconnect(&self, user: &str) {
        self.ingest_ok(Method::DELETE, &format!("/connections/c-{user}"), None)
            .await;
    }

    pub async fn set_status(&self, user: &str, status: &str) {
        self.ingest_ok(
            Method::PUT,
            &format!("/users/{user}/status"),
            Some(json!({ "status": status })),
        )
        .await;
    }

    /// Creates a user with a login token.
    pub async fn login(&self, id: &str) -> Login {
        self.login_with(id, json!({ "username": id })).await
    }

    pub async fn login_with(&self, id: &str, profile: Value) -> Login {
        self.put_user(id, profile).await;
        let token = format!("token-of-{id}");
        self.add_token(id, json!({ "token": token })).await;
        Login {
            id: id.to_owned(),
            token,
        }
    }

    /// A request to a public route with the auth headers of `login`.
    pub fn as_user(&self, login: &Login, method: Method, path_and_query: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path_and_query))
            .header("X-User-Id", &login.id)
            .header("X-Auth-Token", &login.token)
    }

    /// `POST /users/{id}/tokens` with `body` (`token` or `hashedToken`), asserting success.
    pub async fn add_token(&self, id: &str, body: Value) -> Value {
        self.ingest_ok(Method::POST, &format!("/users/{id}/tokens"), Some(body))
            .await
    }

    /// `DELETE /users/{id}/tokens` with `body` (`token` or `hashedToken`), asserting success.
    pub async fn revoke_token(&self, id: &str, body: Value) -> Value {
        self.ingest_ok(Method::DELETE, &format!("/users/{id}/tokens"), Some(body))
            .await
    }

    /// Calls a public route as `login`.
    pub async fn public(
        &self,
        login: &Login,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Answer {
        send(with_json(self.as_user(login, method, path_and_query), body)).await
    }

    /// `GET /api/v1/users.presence?<query>` as `login`, asserting 200.
    pub async fn presence(&self, login: &Login, query: &str) -> Answer {
        let path = with_query("/api/v1/users.presence", query);
        let answer = self.public(login, Method::GET, &path, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.body);
        assert_eq!(answer.body["success"], true);
        answer
    }

    /// The full snapshot's users, sorted by id, as JSON values.
    pub async fn full_state(&self, login: &Login) -> Vec<Value> {
        let answer = self.presence(login, "").await;
        assert!(answer.full());
        sorted_users(&answer.body)
    }

    pub async fn stats(&self) -> Value {
        self.ingest_ok(Method::GET, "/stats", None).await
    }

    /// The text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("text body")
    }
}

/// The value of the sample `series` (a name with its labels, as exposed) in
/// `metrics`, if it is there.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

/// A batch answer's `errors` as `(index, errorType)` pairs.
pub fn batch_errors(body: &Value) -> Vec<(u64, &str)> {
    body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap_or(u64::MAX),
                e["errorType"].as_str().unwrap_or_default(),
            )
        })
        .collect()
}

/// The `users` of a presence body, sorted by `_id`.
pub fn sorted_users(body: &Value) -> Vec<Value> {
    let mut users = body["users"].as_array().cloned().unwrap_or_default();
    users.sort_by(|a, b| a["_id"].as_str().cmp(&b["_id"].as_str()));
    users
}

/// The current time as an ISO 8601 string with milliseconds, for `from`.
pub fn iso_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("in range")
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Waits for the wall clock to reach the next millisecond and returns it: every
/// change made before the call is stamped earlier, every change after it not.
/// (At most a millisecond of spinning; bounded by the clock itself.)
pub fn next_ms() -> i64 {
    let start = now_ms();
    loop {
        let now = now_ms();
        if now > start {
            return now;
        }
        std::hint::spin_loop();
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Polls `check` every 100 ms until it returns true; fails after 10 s.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    const POLL_EVERY: Duration = Duration::from_millis(100);
    const GIVE_UP_AFTER: Duration = Duration::from_secs(10);
    let deadline = Instant::now() + GIVE_UP_AFTER;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "gave up after {GIVE_UP_AFTER:?} waiting until {what}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

//! `GET /api/v1/users.presence.stream` (issue 15): the change stream over
//! Server-Sent Events, read with reqwest chunk by chunk under a deadline.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

const STREAM: &str = "/api/v1/users.presence.stream";

/// How long any one read may take before the test fails (a hang, not a timing claim).
const DEADLINE: Duration = Duration::from_secs(20);

/// One event of the stream.
#[derive(Debug, Clone, Default)]
pub struct Event {
    /// `event:`; empty for an answer.
    pub kind: String,
    pub id: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }

    /// The ids of an answer's users, in order.
    pub fn ids(&self) -> Vec<String> {
        self.json()["users"]
            .as_array()
            .unwrap_or_else(|| panic!("no users in {}", self.data))
            .iter()
            .map(|u| u["_id"].as_str().expect("_id").to_owned())
            .collect()
    }
}

/// An open stream.
pub struct Sse {
    response: reqwest::Response,
    buffer: String,
    /// Heartbeat blocks seen (comments, and id-only blocks).
    pub heartbeats: usize,
    /// The last `id:` seen, as a browser would send back as `Last-Event-ID`.
    pub last_id: Option<String>,
}

impl Sse {
    /// Opens `request`, asserting a 200 `text/event-stream`.
    pub async fn open(request: reqwest::RequestBuilder) -> Sse {
        let response = request.send().await.expect("stream request sent");
        assert_eq!(response.status(), StatusCode::OK);
        let kind = response.headers()["content-type"].to_str().unwrap();
        assert_eq!(kind, "text/event-stream");
        Sse {
            response,
            buffer: String::new(),
            heartbeats: 0,
            last_id: None,
        }
    }

    /// The next event with data (heartbeats are counted and skipped), or
    /// `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<Event> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event::default();
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "event" => event.kind = value.to_owned(),
                        "id" => event.id = Some(value.to_owned()),
                        "data" => event.data.push_str(value),
                        _ => {}
                    }
                }
                if event.id.is_some() {
                    self.last_id = event.id.clone();
                }
                if event.data.is_empty() {
                    self.heartbeats += 1;
                } else {
                    return Some(event);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no event within {DEADLINE:?}"))
                .expect("stream reads");
            match chunk {
                Some(bytes) => self
                    .buffer
                    .push_str(std::str::from_utf8(&bytes).expect("utf-8")),
                None => return None,
            }
        }
    }

    /// The next event, which must be an answer; returns its JSON.
    pub async fn answer(&mut self) -> (String, Value) {
        let event = self.next().await.expect("the stream goes on");
        assert_eq!(event.kind, "", "not an answer: {event:?}");
        let body = event.json();
        assert_eq!(body["success"], true, "{body}");
        let id = event.id.clone().expect("an answer has an id");
        assert_eq!(body["cursor"], id.as_str(), "the id is the answer's cursor");
        (id, body)
    }

    /// Reads to the goodbye and the end; returns the goodbye's reason.
    pub async fn goodbye(&mut self) -> String {
        let event = self.next().await.expect("a goodbye before the end");
        assert_eq!(event.kind, "bye", "{event:?}");
        let body = event.json();
        assert!(!body["message"].as_str().unwrap_or("").is_empty(), "{body}");
        assert!(self.next().await.is_none(), "the stream ends after bye");
        body["reason"].as_str().expect("reason").to_owned()
    }
}

fn users_of(body: &Value) -> Vec<String> {
    let mut ids: Vec<String> = body["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users in {body}"))
        .iter()
        .map(|u| u["_id"].as_str().expect("_id").to_owned())
        .collect();
    ids.sort();
    ids
}

impl TestApp {
    /// A stream request as `login`, with `query`.
    pub fn stream_request(&self, login: &Login, query: &str) -> reqwest::RequestBuilder {
        self.as_user(login, Method::GET, &with_query(STREAM, query))
    }

    /// Opens a stream as `login`.
    pub async fn stream(&self, login: &Login, query: &str) -> Sse {
        Sse::open(self.stream_request(login, query)).await
    }
}

/// Creates `user` and connects it `status`.
async fn online(app: &TestApp, user: &str, status: &str) {
    app.user(user).await;
    app.connect(user, status).await;
}

#[tokio::test]
async fn a_change_written_after_the_stream_opened_is_pushed_with_its_cursor() {
    // A closed client is noticed when its stream next writes.
    let app = spawn_app_with(|s| s.stream.heartbeat = Duration::from_secs(1)).await;
    let me = app.login("me").await;
    online(&app, "ann", "online").await;
    app.user("bob").await;
    let mut sse = app.stream(&me, "").await;
    let (first_id, first) = sse.answer().await;
    assert_eq!(first["full"], true, "without since: the full answer");
    assert_eq!(users_of(&first), ["ann"]);
    let metrics = app.metrics().await;
    assert_eq!(sample(&metrics, "presenced_streams_open"), Some(1.0));

    app.connect("bob", "away").await;
    let (id, change) = sse.answer().await;
    assert_eq!(change["full"], false);
    assert_eq!(
        change["users"],
        json!([{"_id": "bob", "username": "bob", "status": "away"}])
    );
    assert_ne!(id, first_id);
    // The stream's cursor is what a poll gets for the same position.
    assert_eq!(app.presence(&me, "").await.cursor(), id);

    app.disconnect("ann").await;
    let (_, gone) = sse.answer().await;
    assert_eq!(gone["users"][0]["_id"], "ann");
    assert_eq!(gone["users"][0]["status"], "offline");

    drop(sse);
    wait_until("the closed stream is no longer counted", || async {
        sample(&app.metrics().await, "presenced_streams_open") == Some(0.0)
    })
    .await;
    let metrics = app.metrics().await;
    assert!(sample(&metrics, "presenced_stream_events_total").unwrap_or(0.0) >= 3.0);
}

#[tokio::test]
async fn since_resumes_with_exactly_the_later_changes_as_a_poll_would() {
    let app = spawn_app().await;
    let me = app.login("me").await;
    online(&app, "ann", "online").await;
    let cursor = app.presence(&me, "").await.cursor();
    online(&app, "bob", "online").await;
    let poll = app.presence(&me, &format!("since={cursor}")).await;
    let mut sse = app.stream(&me, &format!("since={cursor}")).await;
    let (id, first) = sse.answer().await;
    assert_eq!(
        first, poll.body,
        "the first event is the since poll's answer"
    );
    assert_eq!(id, poll.cursor());
}

#[tokio::test]
async fn last_event_id_resumes_across_a_closed_stream_without_gap_or_duplicate() {
    // The server ends every stream after a second, as it would to rebalance.
    let app = spawn_app_with(|s| s.stream.max_lifetime = Duration::from_secs(1)).await;
    let me = app.login("me").await;
    online(&app, "ann", "online").await;
    // The URL keeps its first since, as a browser's EventSource does: the
    // header must win.
    let start = app.presence(&me, "").await.cursor();
    let url = format!("since={start}");
    app.user("bob").await;
    app.user("cat").await;
    let mut sse = app.stream(&me, &url).await;
    let (seen, _) = sse.answer().await;
    app.connect("bob", "online").await;
    let (seen_bob, bob) = sse.answer().await;
    assert_eq!(users_of(&bob), ["bob"]);
    assert_ne!(seen, seen_bob);
    assert_eq!(sse.goodbye().await, "reconnect");
    assert_eq!(sse.last_id.as_deref(), Some(seen_bob.as_str()));
    // Changes while no stream is open.
    app.connect("cat", "away").await;
    app.set_status("bob", "busy").await;
    let resumed = app
        .stream_request(&me, &url)
        .header("Last-Event-ID", &seen_bob);
    let mut sse = Sse::open(resumed).await;
    let (_, missed) = sse.answer().await;
    assert_eq!(missed["full"], false);
    // Exactly the users changed after the last id: not ann (a duplicate), both others.
    assert_eq!(users_of(&missed), ["bob", "cat"]);
    let bob = missed["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["_id"] == "bob")
        .unwrap();
    assert_eq!(bob["status"], "busy");
}

#[tokio::test]
async fn a_cursor_the_log_no_longer_covers_gets_the_full_answer_flagged() {
    let app = spawn_app_with(|s| s.presence.changelog_capacity = 2).await;
    let me = app.login("me").await;
    let old = app.presence(&me, "").await.cursor();
    for user in ["ann", "bob", "cat"] {
        online(&app, user, "online").await;
    }
    for since in [old.as_str(), "1.0"] {
        let mut sse = app.stream(&me, &format!("since={since}")).await;
        let (_, first) = sse.answer().await;
        assert_eq!(first["full"], true, "{since}: {first}");
        assert_eq!(users_of(&first), ["ann", "bob", "cat"]);
    }
    let mut sse = Sse::open(app.stream_request(&me, "").header("Last-Event-ID", &old)).await;
    assert_eq!(sse.answer().await.1["full"], true);
}

#[tokio::test]
async fn an_ids_stream_sees_only_those_users_in_every_ids_spelling() {
    let app = spawn_app().await;
    let me = app.login("me").await;
    for user in ["ann", "bob", "cat"] {
        online(&app, user, "online").await;
    }
    for query in [
        "ids=ann,cat",
        "ids[]=ann&ids[]=cat",
        "ids%5B%5D=ann&ids=cat",
    ] {
        let mut sse = app.stream(&me, query).await;
        let (_, first) = sse.answer().await;
        assert_eq!(
            first["full"], true,
            "{query}: the state of just these users"
        );
        assert_eq!(users_of(&first), ["ann", "cat"], "{query}");
        // A change of bob first: if the filter let it through, it would come first.
        app.set_status("bob", "busy").await;
        app.set_status("cat", "away").await;
        let (_, change) = sse.answer().await;
        assert_eq!(users_of(&change), ["cat"], "{query}");
        app.set_status("bob", "online").await;
        app.set_status("cat", "online").await;
    }
    // With since too: the delta of those users.
    let cursor = app.presence(&me, "").await.cursor();
    app.set_status("ann", "away").await;
    app.set_status("bob", "away").await;
    let mut sse = app.stream(&me, &format!("since={cursor}&ids=ann")).await;
    let (_, first) = sse.answer().await;
    assert_eq!(first["full"], false);
    assert_eq!(users_of(&first), ["ann"]);
}

#[tokio::test]
async fn bad_parameters_get_the_polls_400s_and_from_is_refused() {
    let app = spawn_app_with(|s| s.presence.max_ids = 2).await;
    let me = app.login("me").await;
    let cases = [
        ("since=nope", None, "since"),
        ("ids=a,b,c", None, "ids"),
        ("from=2024-01-01T00:00:00Z", None, "from"),
        ("", Some("garbage"), "Last-Event-ID"),
    ];
    for (query, last_event_id, field) in cases {
        let mut request = app.stream_request(&me, query);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let answer = send(request).await;
        let error = answer.assert_error(400, "error-invalid-params");
        assert!(error.starts_with(field), "{query}: {error}");
        // The poll says the same of the same since and ids.
        if matches!(field, "since" | "ids") {
            let poll = app
                .public(
                    &me,
                    Method::GET,
                    &with_query("/api/v1/users.presence", query),
                    None,
                )
                .await;
            assert_eq!(poll.body, answer.body);
        }
    }
    let anonymous = send(app.client.get(app.url(STREAM))).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.body, login_required());
}

#[tokio::test]
async fn the_login_cookies_authenticate_a_stream_as_an_event_source_sends_them() {
    let app = spawn_app().await;
    let me = app.login("me").await;
    let cookies = format!("theme=x; rc_uid={}; rc_token={}", me.id, me.token);
    let request = app.client.get(app.url(STREAM)).header("Cookie", &cookies);
    let mut sse = Sse::open(request).await;
    assert_eq!(sse.answer().await.1["full"], true);
    let wrong = format!("rc_uid={}; rc_token=wrong", me.id);
    let refused = send(app.client.get(app.url(STREAM)).header("Cookie", wrong)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    // Cookies are for the stream only: the poll wants its headers.
    let poll = send(
        app.client
            .get(app.url("/api/v1/users.presence"))
            .header("Cookie", cookies),
    )
    .await;
    assert_eq!(poll.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn over_the_limits_a_stream_is_refused_429_with_retry_after_until_one_closes() {
    let app = spawn_app_with(|s| {
        s.stream.max_streams = 2;
        s.stream.max_streams_per_user = 1;
        // A closed client is noticed when its stream next writes.
        s.stream.heartbeat = Duration::from_secs(1);
    })
    .await;
    let (ann, bob, cat) = (
        app.login("ann").await,
        app.login("bob").await,
        app.login("cat").await,
    );
    let first = app.stream(&ann, "").await;
    let again = send(app.stream_request(&ann, "")).await;
    let error = again.assert_error(429, "error-too-many-streams");
    assert!(error.contains("stream.max_streams_per_user"), "{error}");
    assert_eq!(again.headers["retry-after"], "10");
    let _second = app.stream(&bob, "").await;
    let full = send(app.stream_request(&cat, "")).await;
    let error = full.assert_error(429, "error-too-many-streams");
    assert!(error.contains("stream.max_streams)"), "{error}");
    assert!(full.headers.contains_key("retry-after"));
    drop(first);
    wait_until("a closed stream frees its place", || async {
        let response = app.stream_request(&ann, "").send().await;
        response.is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
}

#[tokio::test]
async fn with_max_streams_zero_the_stream_is_off() {
    let app = spawn_app_with(|s| s.stream.max_streams = 0).await;
    let me = app.login("me").await;
    send(app.stream_request(&me, ""))
        .await
        .assert_error(404, "error-stream-disabled");
}

#[tokio::test]
async fn a_graceful_shutdown_ends_every_stream_with_a_goodbye_at_once() {
    let mut settings = test_settings();
    // Far longer than the test's deadline: the streams must end, not time out.
    settings.server.shutdown_grace = Duration::from_secs(600);
    let (app, serving) = spawn_serving(&settings, false);
    let me = app.login("me").await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut sse = app.stream(&me, "").await;
        sse.answer().await;
        streams.push(sse);
    }
    let stopping = app.stop();
    let read = async {
        for sse in &mut streams {
            assert_eq!(sse.goodbye().await, "shutdown");
        }
    };
    tokio::join!(stopping, read);
    tokio::time::timeout(DEADLINE, serving)
        .await
        .expect("the server stops without waiting out its grace")
        .expect("serving task")
        .expect("served");
}

#[tokio::test]
async fn broadcast_disabled_streams_the_empty_answer_then_the_full_one_when_enabled() {
    let app = spawn_app_with(|s| s.presence.broadcast_disabled = true).await;
    let me = app.login("me").await;
    online(&app, "ann", "online").await;
    let mut sse = app.stream(&me, "").await;
    let (_, first) = sse.answer().await;
    assert_eq!(first["users"], json!([]));
    assert_eq!(first["full"], true);
    online(&app, "bob", "online").await;
    app.ingest_ok(
        Method::PUT,
        "/settings",
        Some(json!({"broadcastDisabled": false})),
    )
    .await;
    // Nothing about bob leaked while disabled: the next answer is the full state.
    online(&app, "cat", "online").await;
    let (_, enabled) = sse.answer().await;
    assert_eq!(enabled["full"], true, "{enabled}");
    assert!(users_of(&enabled).contains(&"bob".to_owned()));
    app.ingest_ok(
        Method::PUT,
        "/settings",
        Some(json!({"broadcastDisabled": true})),
    )
    .await;
    app.set_status("ann", "busy").await;
    let (_, disabled) = sse.answer().await;
    assert_eq!(disabled["users"], json!([]), "{disabled}");
    assert_eq!(disabled["full"], true);
}

/// Writes `rounds` batches of changes to 200 users each, with long names:
/// an unread stream's socket fills, and then the buffer laps it.
async fn write_rounds(app: &TestApp, rounds: usize, tag: &str) {
    for round in 0..rounds {
        let ops: Vec<Value> = (0..200)
            .map(|n| {
                json!({"op": "putUser", "userId": format!("u{n}"), "username": format!("u{n}"),
                       "name": format!("{}{tag}{round}", "x".repeat(100))})
            })
            .collect();
        app.ingest_ok(Method::POST, "/batch", Some(json!({ "ops": ops })))
            .await;
    }
}

/// Reads `sse` up to the log's head; returns whether a full answer came, or
/// the reason of the goodbye that ended the stream first.
async fn read_to_head(app: &TestApp, me: &Login, sse: &mut Sse) -> Result<bool, String> {
    let head = app.presence(me, "").await.cursor();
    let mut full = false;
    loop {
        let event = sse.next().await.ok_or("ended without a goodbye")?;
        if event.kind == "bye" {
            return Err(event.json()["reason"].as_str().unwrap_or("").to_owned());
        }
        let body = event.json();
        full |= body["full"] == true;
        if event.id.as_deref() == Some(head.as_str()) {
            return Ok(full);
        }
    }
}

/// A server whose ring holds one batch, allowing `max_lags` lags a minute, and
/// a stream on it (of `query`) left unread while ever more is written, until reading it
/// shows that it fell behind: a full answer came (`Ok`), or it was dropped
/// (`Err` with the goodbye's reason).
async fn fall_behind(max_lags: u32, query: &str) -> (TestApp, Sse, Result<(), String>) {
    let app = spawn_app_with(|s| {
        s.stream.buffer_batches = 1;
        s.stream.batch_interval = Duration::ZERO;
        s.stream.max_lags_per_minute = max_lags;
    })
    .await;
    let me = app.login("me").await;
    let mut sse = app.stream(&me, query).await;
    sse.answer().await;
    let mut rounds = 10;
    loop {
        write_rounds(&app, rounds, &rounds.to_string()).await;
        match read_to_head(&app, &me, &mut sse).await {
            Err(reason) => return (app, sse, Err(reason)),
            Ok(true) => return (app, sse, Ok(())),
            Ok(false) => {}
        }
        rounds *= 2;
        assert!(rounds <= 640, "the stream never fell behind");
    }
}

#[tokio::test]
async fn a_stream_that_falls_behind_gets_the_full_answer_and_goes_on() {
    let (app, mut sse, fell) = fall_behind(1000, "").await;
    assert_eq!(fell, Ok(()));
    let lagged = sample(&app.metrics().await, "presenced_stream_lagged_total");
    assert!(lagged.unwrap_or(0.0) >= 1.0, "{lagged:?}");
    goes_on_with_deltas(&app, &mut sse, "me").await;
}

/// After falling behind, a stream goes on with deltas: a change of `user`
/// comes as a delta of that user alone. The follower may still have been
/// handing out batches up to the head when the stream read to it, and those
/// can lap a one-batch buffer once more (a full answer, rightly), so changes
/// are made until one comes as a delta.
async fn goes_on_with_deltas(app: &TestApp, sse: &mut Sse, user: &str) {
    for status in ["busy", "away", "busy", "away"] {
        app.set_status(user, status).await;
        // Answers up to the one that shows this change (earlier ones may lag behind it).
        let body = loop {
            let (_, body) = sse.answer().await;
            let shows = body["users"].as_array().is_some_and(|users| {
                users
                    .iter()
                    .any(|u| u["_id"] == user && u["status"] == status)
            });
            if shows {
                break body;
            }
        };
        if body["full"] == false {
            assert_eq!(users_of(&body), [user], "{body}");
            return;
        }
    }
    panic!("four changes of {user} after falling behind, and none came as a delta");
}

#[tokio::test]
async fn a_stream_that_falls_behind_too_often_is_dropped_with_a_reason() {
    let (app, mut sse, fell) = fall_behind(0, "").await;
    assert_eq!(fell, Err("too-slow".to_owned()));
    // read_to_head stopped at the goodbye; the stream ends after it.
    assert!(sse.next().await.is_none());
    let dropped = sample(&app.metrics().await, "presenced_stream_dropped_total");
    assert_eq!(dropped, Some(1.0));
}

#[tokio::test]
#[cfg_attr(presenced_without_redis, ignore = "needs redis-server on PATH")]
async fn a_replica_streams_what_it_follows_and_its_ids_resume_on_another() {
    use crate::cluster::{replica, wait_known, TestRedis};
    let redis = TestRedis::start();
    let (a, b) = (replica(&redis).await, replica(&redis).await);
    let me = a.login("me").await;
    a.user("ann").await;
    a.user("bob").await;
    wait_known(&b, &me).await;
    wait_until("B has followed A's writes", || async {
        b.presence(&me, "").await.cursor() == a.presence(&me, "").await.cursor()
    })
    .await;
    let mut on_b = b.stream(&me, "").await;
    let (_, first) = on_b.answer().await;
    assert_eq!(first["full"], true);
    // Written through A, pushed by B, which learns it from the Redis stream.
    a.connect("ann", "online").await;
    let (seen, change) = on_b.answer().await;
    assert_eq!(users_of(&change), ["ann"]);
    assert_eq!(change["users"][0]["status"], "online");
    drop(on_b);
    a.connect("bob", "away").await;
    // B's event id is a cursor A understands: the resume has just bob.
    let resumed = a.stream_request(&me, "").header("Last-Event-ID", &seen);
    let mut on_a = Sse::open(resumed).await;
    let (_, missed) = on_a.answer().await;
    assert_eq!(missed["full"], false, "{missed}");
    assert_eq!(users_of(&missed), ["bob"]);
}

#[tokio::test]
async fn an_ids_stream_moves_its_resume_point_past_changes_it_left_out() {
    let app = spawn_app_with(|s| s.stream.heartbeat = Duration::from_secs(1)).await;
    let me = app.login("me").await;
    online(&app, "ann", "online").await;
    online(&app, "bob", "online").await;
    let mut sse = app.stream(&me, "ids=ann").await;
    let (first, _) = sse.answer().await;
    app.set_status("bob", "busy").await;
    let head = app.presence(&me, "").await.cursor();
    assert_ne!(head, first);
    // No event about bob; a heartbeat carries the id past his change.
    heartbeat_moves_id_to(&mut sse, &head).await;
    let resumed = app
        .stream_request(&me, "ids=ann")
        .header("Last-Event-ID", &head);
    let (_, body) = Sse::open(resumed).await.answer().await;
    assert_eq!(body["full"], false);
    assert_eq!(body["users"], json!([]));
}

/// Reads `sse` until a heartbeat has moved its resume point to `head`,
/// failing on any event with data (the filter should have left it out).
async fn heartbeat_moves_id_to(sse: &mut Sse, head: &str) {
    let deadline = Instant::now() + DEADLINE;
    while sse.last_id.as_deref() != Some(head) {
        assert!(
            Instant::now() < deadline,
            "no heartbeat moved the id to {head}"
        );
        let read = tokio::time::timeout(Duration::from_millis(200), sse.next()).await;
        if let Ok(event) = read {
            panic!("an event the filter should have left out: {event:?}");
        }
    }
}

async fn followed_users(app: &TestApp) -> Option<f64> {
    sample(&app.metrics().await, "presenced_stream_followed_users")
}

#[tokio::test]
async fn many_ids_streams_on_one_user_all_get_its_change_and_the_others_only_a_heartbeat() {
    let app = spawn_app_with(|s| {
        s.stream.heartbeat = Duration::from_secs(1);
        s.stream.max_streams_per_user = 100;
    })
    .await;
    let me = app.login("me").await;
    for user in ["ann", "bob", "cat"] {
        online(&app, user, "online").await;
    }
    let mut on_ann = Vec::new();
    for _ in 0..20 {
        let mut sse = app.stream(&me, "ids=ann").await;
        sse.answer().await;
        on_ann.push(sse);
    }
    // Follows users of whom nobody changes, one of them unknown.
    let mut elsewhere = app.stream(&me, "ids=bob,nobody").await;
    elsewhere.answer().await;
    assert_eq!(followed_users(&app).await, Some(3.0));

    // cat, then ann: the batch with ann ends at the head, whether or not cat
    // is in it; each ann stream gets ann alone, at that cursor, and the
    // stream of bob nothing but a moved resume point.
    app.set_status("cat", "away").await;
    app.set_status("ann", "busy").await;
    let head = app.presence(&me, "").await.cursor();
    for sse in &mut on_ann {
        let (id, change) = sse.answer().await;
        assert_eq!(id, head);
        assert_eq!(users_of(&change), ["ann"]);
        assert_eq!(change["users"][0]["status"], "busy");
    }
    heartbeat_moves_id_to(&mut elsewhere, &head).await;

    // A stream following two changed users gets them in one event.
    let mut both = app.stream(&me, "ids=ann,cat").await;
    both.answer().await;
    app.set_status("ann", "online").await;
    app.set_status("cat", "online").await;
    let head = app.presence(&me, "").await.cursor();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let (id, change) = both.answer().await;
        seen.extend(users_of(&change));
        if id == head {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, ["ann", "cat"], "each change once");
}

#[tokio::test]
async fn closed_ids_streams_leave_the_interest_index_empty() {
    // A closed client is noticed when its stream next writes.
    let app = spawn_app_with(|s| s.stream.heartbeat = Duration::from_secs(1)).await;
    let me = app.login("me").await;
    online(&app, "ann", "online").await;
    let mut streams = Vec::new();
    for query in ["ids=ann", "ids=ann,bob", "ids=cat", ""] {
        let mut sse = app.stream(&me, query).await;
        sse.answer().await;
        streams.push(sse);
    }
    assert_eq!(followed_users(&app).await, Some(3.0));
    let everyone = streams.pop();
    streams.truncate(1);
    wait_until("the closed streams' users leave the index", || async {
        followed_users(&app).await == Some(1.0)
    })
    .await;
    drop(streams);
    wait_until("the last ids stream leaves the index", || async {
        followed_users(&app).await == Some(0.0)
    })
    .await;
    // The stream of everyone still gets every change.
    let mut everyone = everyone.expect("four streams opened");
    app.set_status("ann", "busy").await;
    let (_, change) = everyone.answer().await;
    assert_eq!(users_of(&change), ["ann"]);
}

#[tokio::test]
async fn an_ids_stream_that_falls_behind_its_mailbox_gets_the_full_answer_and_goes_on() {
    let ids: Vec<String> = (0..200).map(|n| format!("u{n}")).collect();
    let query = format!("ids={}", ids.join(","));
    let (app, mut sse, fell) = fall_behind(1000, &query).await;
    assert_eq!(fell, Ok(()));
    let lagged = sample(&app.metrics().await, "presenced_stream_lagged_total");
    assert!(lagged.unwrap_or(0.0) >= 1.0, "{lagged:?}");
    goes_on_with_deltas(&app, &mut sse, "u7").await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_after_the_send_timeout_and_frees_its_place() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = spawn_app_with(|s| {
        s.server.send_timeout = Duration::from_secs(1);
        s.stream.max_streams_per_user = 1;
    })
    .await;
    let me = app.login("me").await;
    // A raw client with a small receive buffer: it reads the head and the
    // first answer, then reads nothing more, so its window shuts.
    let address: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut client = socket.connect(address).await.unwrap();
    let request = format!(
        "GET {STREAM} HTTP/1.1\r\nHost: {address}\r\nX-User-Id: {}\r\nX-Auth-Token: {}\r\n\r\n",
        me.id, me.token
    );
    client.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0; 1024];
    let read = tokio::time::timeout(DEADLINE, client.read(&mut head)).await;
    let n = read.expect("the stream's head in time").unwrap();
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let open = |text: &str| sample(text, "presenced_streams_open");
    assert_eq!(open(&app.metrics().await), Some(1.0));
    // Changes pile up unread until the client's window shuts; the kernel then
    // gives up on the client after the send timeout (no lag, no goodbye: the
    // buffer holds all of it).
    write_rounds(&app, 3, "unread").await;
    let deadline = Instant::now() + DEADLINE;
    while open(&app.metrics().await) != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "the unread stream was never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = app.metrics().await;
    assert_eq!(
        sample(&text, "presenced_stream_dropped_total"),
        Some(0.0),
        "{text}"
    );
    // Its place is free: the same user (one stream each) may open another.
    let mut again = app.stream(&me, "").await;
    again.answer().await;
    // And the client finds its connection reset once it reads what it was sent.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, client.read_to_end(&mut rest)).await;
    assert!(
        read.expect("the reset in time").is_err(),
        "a stalled connection is reset, not ended cleanly"
    );
}

#[tokio::test]
async fn a_quiet_stream_of_everyone_gets_comment_heartbeats_that_leave_its_resume_point() {
    let app = spawn_app_with(|s| s.stream.heartbeat = Duration::from_secs(1)).await;
    let me = app.login("me").await;
    let mut sse = app.stream(&me, "").await;
    let (id, _) = sse.answer().await;
    // Nothing changes: only heartbeats come, and they move no id.
    let deadline = Instant::now() + DEADLINE;
    while sse.heartbeats < 2 {
        assert!(Instant::now() < deadline, "no heartbeat on a quiet stream");
        let read = tokio::time::timeout(Duration::from_millis(200), sse.next()).await;
        if let Ok(event) = read {
            panic!("an event on a quiet stream: {event:?}");
        }
    }
    assert_eq!(sse.last_id.as_deref(), Some(id.as_str()));
}

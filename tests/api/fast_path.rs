//! `GET users.presence` is answered before the router while CORS is off (see
//! `src/api/fast_path.rs`); `POST` always goes through it. The two must be one
//! service seen from outside: the same status, bytes, tags and headers for the
//! same question, the same errors, and the same metrics label.

use crate::helpers::*;
use reqwest::header::{
    HeaderName, ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, VARY,
};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{json, Value};

/// What a client sees of an answer, the `Date` aside.
#[derive(Debug, PartialEq)]
struct Seen {
    status: StatusCode,
    headers: Vec<(String, Option<String>)>,
    body: Vec<u8>,
}

impl Seen {
    /// The value of header `name` (one of those compared), if sent.
    fn header(&self, name: &HeaderName) -> Option<&str> {
        let (_, value) = self.headers.iter().find(|(n, _)| n == name.as_str())?;
        value.as_deref()
    }
}

async fn seen(request: RequestBuilder) -> Seen {
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let headers = [CONTENT_TYPE, CACHE_CONTROL, ETAG, VARY, CONTENT_ENCODING]
        .iter()
        .map(|name| {
            let value = response.headers().get(name);
            let value = value.map(|v| v.to_str().expect("ascii header").to_owned());
            (name.to_string(), value)
        })
        .collect();
    let body = response.bytes().await.expect("body reads").to_vec();
    Seen {
        status,
        headers,
        body,
    }
}

/// One question asked both ways: as a query string and as the JSON body of a POST.
struct Question {
    query: String,
    body: Value,
}

fn questions(cursor: &str) -> Vec<Question> {
    let recent = iso_ms(now_ms() - 1000);
    let ask = |query: String, body: Value| Question { query, body };
    vec![
        ask(String::new(), json!({})),
        ask(format!("since={cursor}"), json!({ "since": cursor })),
        ask(format!("from={recent}"), json!({ "from": recent })),
        ask("from=2019-05-22".into(), json!({"from": "2019-05-22"})),
        ask(
            "ids=u1,u2,nobody".into(),
            json!({"ids": ["u1", "u2", "nobody"]}),
        ),
        ask(
            format!("ids=u3&since={cursor}"),
            json!({"ids": ["u3"], "since": cursor}),
        ),
        // Errors: each names the field, the same whichever way it was asked.
        ask("since=soon".into(), json!({"since": "soon"})),
        ask("from=yesterday".into(), json!({"from": "yesterday"})),
    ]
}

/// Enough online users that the full answer is compressed when a client accepts it.
async fn populated() -> (TestApp, Login) {
    let app = spawn_app().await;
    let caller = app.login("caller").await;
    let ops: Vec<Value> = (0..200)
        .flat_map(|i| {
            let id = format!("u{i}");
            [
                json!({"op": "putUser", "userId": id, "username": format!("user.{i}"), "name": "A Long Enough Name"}),
                json!({"op": "putConnection", "connectionId": format!("c{i}"), "userId": id, "status": "online"}),
            ]
        })
        .collect();
    app.ingest_ok(reqwest::Method::POST, "/batch", Some(json!({ "ops": ops })))
        .await;
    (app, caller)
}

fn get(app: &TestApp, login: &Login, query: &str) -> RequestBuilder {
    app.client
        .get(app.url(&with_query("/api/v1/users.presence", query)))
        .header("X-User-Id", &login.id)
        .header("X-Auth-Token", &login.token)
}

fn post(app: &TestApp, login: &Login, body: &Value) -> RequestBuilder {
    app.client
        .post(app.url("/api/v1/users.presence"))
        .header("X-User-Id", &login.id)
        .header("X-Auth-Token", &login.token)
        .json(body)
}

#[tokio::test]
async fn a_get_answers_what_the_routed_post_answers_to_the_same_question() {
    let (app, caller) = populated().await;
    let cursor = app.presence(&caller, "").await.cursor();
    app.connect("u3", "away").await;
    for question in questions(&cursor) {
        for gzip in [false, true] {
            let accept = if gzip { "gzip" } else { "identity" };
            let fast =
                seen(get(&app, &caller, &question.query).header(ACCEPT_ENCODING, accept)).await;
            let routed =
                seen(post(&app, &caller, &question.body).header(ACCEPT_ENCODING, accept)).await;
            assert_eq!(fast, routed, "{} ({accept})", question.query);
            if fast.status != StatusCode::OK {
                continue;
            }
            // One tag for one question: revalidating either way gives the same 304.
            let tag = fast.header(&ETAG).expect("tagged").to_owned();
            let fast = seen(get(&app, &caller, &question.query).header(IF_NONE_MATCH, &tag)).await;
            let routed =
                seen(post(&app, &caller, &question.body).header(IF_NONE_MATCH, &tag)).await;
            assert_eq!(fast.status, StatusCode::NOT_MODIFIED, "{}", question.query);
            assert_eq!(fast, routed, "{}", question.query);
        }
    }
    // At least one answer was big enough to be compressed, or gzip was not compared.
    let full = seen(get(&app, &caller, "").header(ACCEPT_ENCODING, "gzip")).await;
    assert_eq!(full.header(&CONTENT_ENCODING), Some("gzip"));
}

#[tokio::test]
async fn a_get_is_refused_as_the_routed_post_is() {
    let (app, caller) = populated().await;
    let strangers = [
        Login {
            id: caller.id.clone(),
            token: "not-the-token".into(),
        },
        Login {
            id: "nobody".into(),
            token: caller.token.clone(),
        },
    ];
    for stranger in &strangers {
        let fast = seen(get(&app, stranger, "")).await;
        let routed = seen(post(&app, stranger, &json!({}))).await;
        assert_eq!(fast.status, StatusCode::UNAUTHORIZED);
        assert_eq!(fast, routed);
    }
    let bare = seen(app.client.get(app.url("/api/v1/users.presence"))).await;
    let bare_post = seen(
        app.client
            .post(app.url("/api/v1/users.presence"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(bare.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bare, bare_post);
}

/// The requests counted under users.presence with `status`.
async fn counted(app: &TestApp, status: u16) -> f64 {
    let series = format!(
        r#"presenced_http_requests_total{{route="/api/v1/users.presence",status="{status}"}}"#
    );
    sample(&app.metrics().await, &series).unwrap_or(0.0)
}

#[tokio::test]
async fn a_get_is_counted_under_its_route_on_either_path() {
    // CORS on: GETs go through the router; off: they do not. Same label.
    let routed =
        spawn_app_with(|s| s.cors.allowed_origins = vec!["https://chat.example".into()]).await;
    let fast = spawn_app().await;
    for app in [&routed, &fast] {
        let caller = app.login("caller").await;
        for _ in 0..3 {
            assert_eq!(app.presence(&caller, "").await.status, StatusCode::OK);
        }
        let _ = get(
            app,
            &Login {
                id: "caller".into(),
                token: "wrong".into(),
            },
            "",
        )
        .send()
        .await;
        assert_eq!(counted(app, 200).await, 3.0);
        assert_eq!(counted(app, 401).await, 1.0);
    }
}

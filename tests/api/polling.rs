//! Polling aids (docs/api.md §3.1): `ETag` / `If-None-Match` -> 304, compression, and
//! the full answer rendered once per log position.

use crate::helpers::*;
use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING, ETAG, IF_NONE_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::Read as _;

async fn populated() -> (TestApp, Login) {
    let app = spawn_app().await;
    let caller = app.login("caller").await;
    for id in ["a", "b"] {
        app.user(id).await;
        app.connect(id, "online").await;
    }
    (app, caller)
}

/// A GET of users.presence with extra headers; the raw response.
async fn get(
    app: &TestApp,
    caller: &Login,
    query: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app
        .client
        .get(app.url(&format!("/api/v1/users.presence?{query}")))
        .header("X-User-Id", &caller.id)
        .header("X-Auth-Token", &caller.token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("request sent")
}

fn etag(response: &reqwest::Response) -> String {
    response.headers()[ETAG]
        .to_str()
        .expect("ascii etag")
        .to_owned()
}

/// The queries of every branch, for a given cursor.
fn variants(cursor: &str) -> Vec<String> {
    vec![
        String::new(),
        format!("since={cursor}"),
        format!("from={}", iso_ms(now_ms() - 1000)),
        "from=2019-05-22".to_owned(),
        "ids=a,b".to_owned(),
        format!("ids[]=a&since={cursor}"),
    ]
}

#[tokio::test]
async fn every_variant_revalidates_to_304_with_no_body_until_something_changes() {
    let (app, caller) = populated().await;
    let cursor = app.presence(&caller, "").await.cursor();
    for query in variants(&cursor) {
        let first = get(&app, &caller, &query, &[]).await;
        assert_eq!(first.status(), StatusCode::OK, "{query}");
        assert_eq!(first.headers()["cache-control"], "no-cache");
        let tag = etag(&first);
        assert!(tag.starts_with("W/\""), "{tag}");

        let again = get(&app, &caller, &query, &[("if-none-match", &tag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{query}");
        assert_eq!(etag(&again), tag);
        assert_eq!(again.headers()["cache-control"], "no-cache");
        assert!(again.bytes().await.unwrap().is_empty());

        let other = get(
            &app,
            &caller,
            &query,
            &[("if-none-match", "W/\"0000\", \"x\"")],
        )
        .await;
        assert_eq!(
            other.status(),
            StatusCode::OK,
            "a tag the client does not hold: {query}"
        );
    }
    assert_eq!(metric(&app, "presenced_not_modified_total").await, 6);
}

#[tokio::test]
async fn a_visible_change_changes_the_tag_and_the_body() {
    let (app, caller) = populated().await;
    let cursor = app.presence(&caller, "").await.cursor();
    let before: Vec<(String, String)> = {
        let mut tags = Vec::new();
        for query in [
            "".to_owned(),
            format!("since={cursor}"),
            "ids=a,b".to_owned(),
        ] {
            let tag = etag(&get(&app, &caller, &query, &[]).await);
            tags.push((query, tag));
        }
        tags
    };
    app.connect("a", "away").await;
    for (query, tag) in before {
        let answer = get(&app, &caller, &query, &[(IF_NONE_MATCH.as_str(), &tag)]).await;
        assert_eq!(answer.status(), StatusCode::OK, "{query}");
        assert_ne!(etag(&answer), tag);
        let body: Value = answer.json().await.unwrap();
        let a = body["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["_id"] == "a")
            .cloned();
        assert_eq!(a.unwrap()["status"], "away", "{query}");
    }
}

#[tokio::test]
async fn post_answers_revalidate_like_get() {
    let (app, caller) = populated().await;
    let post = |tag: Option<String>| {
        let mut request = app
            .client
            .post(app.url("/api/v1/users.presence"))
            .header("X-User-Id", &caller.id)
            .header("X-Auth-Token", &caller.token)
            .json(&json!({"ids": ["a", "b"]}));
        if let Some(tag) = tag {
            request = request.header(IF_NONE_MATCH, tag);
        }
        request.send()
    };
    let first = post(None).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let again = post(Some(etag(&first))).await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn broadcast_disabled_answers_carry_their_own_tag() {
    let (app, caller) = populated().await;
    let enabled = etag(&get(&app, &caller, "", &[]).await);
    app.ingest_ok(
        Method::PUT,
        "/settings",
        Some(json!({"broadcastDisabled": true})),
    )
    .await;
    let disabled = get(&app, &caller, "", &[(IF_NONE_MATCH.as_str(), &enabled)]).await;
    assert_eq!(
        disabled.status(),
        StatusCode::OK,
        "the empty answer is not the one the client holds"
    );
    let body: Value = disabled.json().await.unwrap();
    assert_eq!(body["users"], json!([]));
}

fn gunzip(bytes: &[u8]) -> Value {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .expect("valid gzip");
    serde_json::from_str(&text).expect("json inside")
}

#[tokio::test]
async fn large_answers_are_gzipped_when_accepted_and_tiny_ones_never() {
    let app = spawn_app().await;
    let caller = app.login("caller").await;
    let ops: Vec<Value> = (0..60)
        .flat_map(|i| {
            let id = format!("user{i:03}");
            [
                json!({"op": "putUser", "userId": id, "username": id, "name": "Some Long Display Name"}),
                json!({"op": "putConnection", "connectionId": format!("c{i}"), "userId": id, "status": "online"}),
            ]
        })
        .collect();
    app.ingest_ok(Method::POST, "/batch", Some(json!({ "ops": ops })))
        .await;

    let plain: Value = get(&app, &caller, "", &[]).await.json().await.unwrap();
    let packed = get(&app, &caller, "", &[(ACCEPT_ENCODING.as_str(), "br, gzip")]).await;
    assert_eq!(packed.headers()[CONTENT_ENCODING], "gzip");
    assert_eq!(packed.headers()["vary"], "Accept-Encoding");
    assert_eq!(gunzip(&packed.bytes().await.unwrap()), plain);

    let refused = get(&app, &caller, "", &[(ACCEPT_ENCODING.as_str(), "gzip;q=0")]).await;
    assert!(refused.headers().get(CONTENT_ENCODING).is_none());

    let tiny = get(
        &app,
        &caller,
        "ids=user001",
        &[(ACCEPT_ENCODING.as_str(), "gzip")],
    )
    .await;
    assert!(
        tiny.headers().get(CONTENT_ENCODING).is_none(),
        "a tiny body goes out as it is"
    );
    let body: Value = tiny.json().await.unwrap();
    assert_eq!(body["users"][0]["_id"], "user001");
}

async fn rebuilds(app: &TestApp) -> u64 {
    metric(app, "presenced_snapshot_rebuilds_total").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_full_answer_is_rendered_once_per_log_position_however_many_poll_at_once() {
    let (app, caller) = populated().await;
    for round in 0..3 {
        app.connect("a", if round % 2 == 0 { "away" } else { "online" })
            .await;
        let before = rebuilds(&app).await;
        let polls: Vec<_> = (0..16).map(|_| get(&app, &caller, "", &[])).collect();
        let answers = futures_util::future::join_all(polls).await;
        let tags: std::collections::HashSet<String> = answers.iter().map(etag).collect();
        assert_eq!(tags.len(), 1, "every poll got the same answer");
        assert_eq!(rebuilds(&app).await - before, 1, "round {round}");
    }
}

async fn metric(app: &TestApp, name: &str) -> u64 {
    let metrics = app.metrics().await;
    let value = sample(&metrics, name).unwrap_or_else(|| panic!("no {name} in {metrics}"));
    // Counters are whole numbers, printed without a fraction.
    value as u64
}

#[tokio::test]
async fn polls_asking_the_same_question_share_one_rendering_and_no_other_poll_gets_it() {
    let (app, caller) = populated().await;
    let other = app.login("other").await;
    let cursor = app.presence(&caller, "").await.cursor();
    let from = iso_ms(next_ms());
    app.connect("a", "away").await;
    app.connect("caller", "online").await;
    app.connect("other", "online").await;

    let reuses = metric(&app, "presenced_answer_reuses_total").await;
    let mine = app.presence(&caller, &format!("since={cursor}")).await;
    let theirs = app.presence(&other, &format!("since={cursor}")).await;
    assert_eq!(mine.body, theirs.body, "the same question, the same answer");
    assert_eq!(mine.ids(), ["a", "caller", "other"]);
    assert_eq!(
        metric(&app, "presenced_answer_reuses_total").await,
        reuses + 1
    );

    // `from` leaves the caller out: each caller gets an answer of its own.
    let mine = app.presence(&caller, &format!("from={from}")).await;
    let theirs = app.presence(&other, &format!("from={from}")).await;
    assert_eq!(mine.ids(), ["a", "other"]);
    assert_eq!(theirs.ids(), ["a", "caller"]);
    // Another question at the same position is answered afresh, not from the table.
    assert_eq!(
        app.presence(&caller, &format!("since={cursor}&ids=a"))
            .await
            .ids(),
        ["a"]
    );
}

#[tokio::test]
async fn a_kept_id_list_answers_only_the_same_list_asked_again() {
    let (app, caller) = populated().await;
    for id in ["ab", "c", "bc"] {
        app.user(id).await;
        app.connect(id, "online").await;
    }
    let cursor = app.presence(&caller, "").await.cursor();
    let reuses = |app| async move { metric(app, "presenced_answer_reuses_total").await };
    // Each question below is asked three times: answered, answered again and
    // kept (a question asked once is not kept), then reused. Its other
    // spellings are asked right after, while it is surely still in the table
    // (a later question may take its slot: the table is direct-mapped).
    for (query, spellings, want) in [
        (
            "ids=a,bc".to_owned(),
            // Repeated, spaced, as ids[]: the same list, the same question.
            vec!["ids[]=a&ids[]=%20bc&ids=a", "ids=a&ids=bc"],
            vec!["a", "bc"],
        ),
        (
            "ids=ab,c".to_owned(),
            vec!["ids%5B%5D=ab&ids%5B%5D=c"],
            vec!["ab", "c"],
        ),
        // The same ids in another order: another question (ids() sorts).
        ("ids=bc,a".to_owned(), vec![], vec!["a", "bc"]),
        (format!("since={cursor}&ids=ab,c"), vec![], vec![]),
    ] {
        let before = reuses(&app).await;
        let first = app.presence(&caller, &query).await;
        assert_eq!(first.ids(), want, "{query}");
        assert_eq!(reuses(&app).await, before, "{query} was new");
        let second = app.presence(&caller, &query).await;
        assert_eq!(second.body, first.body, "{query}");
        assert_eq!(reuses(&app).await, before, "{query} was asked once before");
        let again = app.presence(&caller, &query).await;
        assert_eq!(again.body, first.body, "{query}");
        assert_eq!(reuses(&app).await, before + 1, "{query} was kept");
        for (n, spelled) in (2..).zip(spellings) {
            let answer = app.presence(&caller, spelled).await;
            assert_eq!(answer.body, first.body, "{spelled}");
            assert_eq!(reuses(&app).await, before + n, "{spelled} is {query}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_with_cursors_of_another_epoch_share_one_full_rendering() {
    let (app, caller) = populated().await;
    let (other, other_caller) = populated().await;
    let foreign = other.presence(&other_caller, "").await.cursor();
    app.connect("a", "away").await;
    let before = rebuilds(&app).await;
    // As after a restart: every client comes back with a cursor of the old epoch.
    let query = format!("since={foreign}");
    let polls: Vec<_> = (0..12).map(|_| get(&app, &caller, &query, &[])).collect();
    for answer in futures_util::future::join_all(polls).await {
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["full"], true);
        assert_eq!(body["users"].as_array().unwrap().len(), 2);
    }
    assert_eq!(rebuilds(&app).await - before, 1);
}

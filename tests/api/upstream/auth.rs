//! Clients' tokens checked with the chat server: one call per unknown token,
//! TTLs, and the chat server down.

use super::stand_in::{RcUser, StandIn};
use super::*;
use reqwest::Method;

const PRESENCE: &str = "/api/v1/users.presence";

async fn chat_server() -> StandIn {
    let upstream = StandIn::start().await;
    for id in ["alice", "bob", "carol"] {
        upstream.add_user(id, RcUser::new(id, "online"));
    }
    upstream
}

/// Sends `count` polls as `login` at once and returns their statuses.
async fn burst(app: &TestApp, login: &Login, count: usize) -> Vec<u16> {
    let polls = (0..count).map(|_| app.public(login, Method::GET, PRESENCE, None));
    futures_util::future::join_all(polls)
        .await
        .iter()
        .map(|answer| answer.status.as_u16())
        .collect()
}

#[tokio::test]
async fn a_burst_with_one_unknown_token_makes_one_upstream_call() {
    let upstream = chat_server().await;
    let app = following(&upstream).await;
    let alice = upstream.login("alice");
    assert_eq!(burst(&app, &alice, 20).await, vec![200; 20]);
    assert_eq!(upstream.me_calls(), 1);
    // Later polls are answered from the cache.
    assert_eq!(burst(&app, &alice, 5).await, vec![200; 5]);
    assert_eq!(upstream.me_calls(), 1);

    let forged = Login {
        id: "alice".to_owned(),
        token: "forged-token".to_owned(),
    };
    let answers = futures_util::future::join_all(
        (0..20).map(|_| app.public(&forged, Method::GET, PRESENCE, None)),
    )
    .await;
    for answer in &answers {
        assert_eq!(answer.status, 401);
        assert_eq!(answer.body, login_required());
    }
    assert_eq!(upstream.me_calls(), 2, "the refusal is cached too");
    assert_eq!(
        metric(
            &app,
            r#"presenced_upstream_auth_calls_total{verdict="accepted"}"#
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &app,
            r#"presenced_upstream_auth_calls_total{verdict="refused"}"#
        )
        .await,
        1.0
    );
    // An id that could never be valid is refused without a call.
    let bad = Login {
        id: "not an id".to_owned(),
        token: "t".to_owned(),
    };
    assert_eq!(
        app.public(&bad, Method::GET, PRESENCE, None).await.status,
        401
    );
    assert_eq!(upstream.me_calls(), 2);
}

#[tokio::test]
async fn with_the_chat_server_down_a_cached_token_works_and_an_unseen_one_is_not_let_in() {
    let upstream = chat_server().await;
    let app = following(&upstream).await;
    let alice = upstream.login("alice");
    let bob = upstream.login("bob");
    assert_eq!(burst(&app, &alice, 1).await, [200]);

    upstream.go_down();
    wait_ready_status(&app, 503).await;
    let full = app.presence(&alice, "").await;
    assert_eq!(full.ids(), ["alice", "bob", "carol"]);
    // Bob's token is valid upstream, but it cannot be checked now.
    let answer = app.public(&bob, Method::GET, PRESENCE, None).await;
    let error = answer.assert_error(503, "error-unavailable");
    assert!(error.contains("chat server cannot be reached"), "{error}");
    // Neither is a forged one let in.
    let forged = Login {
        id: "bob".to_owned(),
        token: "forged".to_owned(),
    };
    assert_eq!(
        app.public(&forged, Method::GET, PRESENCE, None)
            .await
            .status,
        503
    );
    // Not cached: once the chat server is back, Bob is asked about again.
    upstream.come_back();
    assert_eq!(burst(&app, &bob, 1).await, [200]);
    assert_eq!(
        app.public(&forged, Method::GET, PRESENCE, None)
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn a_logout_is_honoured_after_the_positive_ttl_and_a_refusal_ends_after_the_negative_ttl() {
    let upstream = chat_server().await;
    let app = spawn_following(&upstream, |s| {
        s.upstream.auth_positive_ttl = Duration::from_millis(300);
        s.upstream.auth_negative_ttl = Duration::from_millis(300);
    })
    .await;
    crate::cluster::wait_ready(&app).await;
    let alice = upstream.login("alice");
    assert_eq!(burst(&app, &alice, 1).await, [200]);
    upstream.logout(&alice);
    wait_until("the logout is honoured", || async {
        app.public(&alice, Method::GET, PRESENCE, None).await.status == 401
    })
    .await;
    let calls = upstream.me_calls();
    assert!(calls >= 2, "asked again once the TTL was over: {calls}");

    // A token refused now, valid later (a login that had not reached the
    // chat server yet), is accepted once the refusal has expired.
    let carol = Login {
        id: "carol".to_owned(),
        token: "resume-carol-late".to_owned(),
    };
    assert_eq!(burst(&app, &carol, 1).await, [401]);
    upstream.add_login(&carol);
    wait_until("the refusal expires", || async {
        app.public(&carol, Method::GET, PRESENCE, None).await.status == 200
    })
    .await;
}

#[tokio::test]
async fn a_change_stream_is_let_in_by_the_chat_servers_verdict_on_its_login_cookies() {
    let upstream = chat_server().await;
    let app = following(&upstream).await;
    let alice = upstream.login("alice");
    let open = |token: &str| {
        app.client
            .get(app.url("/api/v1/users.presence.stream"))
            .header("Cookie", format!("rc_uid={}; rc_token={token}", alice.id))
            .send()
    };
    let stream = open(&alice.token).await.expect("stream answers");
    assert_eq!(stream.status(), 200);
    assert_eq!(
        stream.headers()["content-type"].to_str().ok(),
        Some("text/event-stream")
    );
    drop(stream);
    assert_eq!(upstream.me_calls(), 1, "the stream asked the chat server");
    let refused = open("forged-token").await.expect("refusal answers");
    assert_eq!(refused.status(), 401);
    assert_eq!(upstream.me_calls(), 2);
}

//! What a client sees when things go wrong in cluster mode: Redis down or
//! restarted, and every documented error path answered as a single process answers it.

use super::{
    ready_status, replica, replica_at, replica_with, wait_for_state, wait_known, wait_ready,
    CutProxy, TestRedis,
};
use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
#[cfg_attr(presenced_without_redis, ignore = "needs redis-server on PATH")]
async fn with_redis_down_reads_go_on_writes_get_503_and_after_it_returns_nothing_acknowledged_is_lost(
) {
    let mut redis = TestRedis::start_durable();
    let (a, b) = (replica(&redis).await, replica(&redis).await);
    let caller = a.login("caller").await;
    for user in ["u1", "u2"] {
        a.user(user).await;
        a.connect(user, "online").await;
    }
    let before = a.full_state(&caller).await;
    wait_for_state(&b, &caller, &before).await;
    let cursor = b.presence(&caller, "").await.cursor();

    redis.kill();
    for replica in [&a, &b] {
        wait_until("/ready reports Redis gone", || async {
            ready_status(replica).await == 503
        })
        .await;
        assert_eq!(replica.full_state(&caller).await, before, "reads go on");
        let write = replica
            .ingest(Method::PUT, "/users/u3", Some(json!({"username": "u3"})))
            .await;
        let error = write.assert_error(503, "error-unavailable");
        assert!(error.contains("Redis"), "{error}");
        let set = replica
            .public(
                &caller,
                Method::POST,
                "/api/v1/users.setStatus",
                Some(json!({"status": "away"})),
            )
            .await;
        set.assert_error(503, "error-unavailable");
    }
    let ready = send(a.client.get(a.url("/ready"))).await;
    assert!(
        ready.body["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("cluster:"),
        "{}",
        ready.body
    );

    redis.restart();
    wait_ready(&a).await;
    wait_ready(&b).await;
    a.user("u3").await;
    a.connect("u3", "away").await;
    let after = a.full_state(&caller).await;
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    wait_for_state(&b, &caller, &after).await;
    // Same data, same generation: the old cursor still gives a delta.
    let delta = b.presence(&caller, &format!("since={cursor}")).await;
    assert!(!delta.full(), "{}", delta.body);
    assert_eq!(delta.ids(), ["u3"]);
}

#[tokio::test]
#[cfg_attr(presenced_without_redis, ignore = "needs redis-server on PATH")]
async fn when_redis_comes_back_without_its_data_replicas_resync_and_old_cursors_get_full() {
    let mut redis = TestRedis::start();
    let a = replica(&redis).await;
    let caller = a.login("caller").await;
    a.user("u1").await;
    a.connect("u1", "online").await;
    let cursor = a.presence(&caller, "").await.cursor();
    redis.restart();
    // Redis forgot everyone, the caller included: what the replica holds
    // must follow, so the caller's token no longer works.
    wait_until("the replica resynced to the empty Redis", || async {
        a.public(&caller, Method::GET, "/api/v1/users.presence", None)
            .await
            .status
            == 401
    })
    .await;
    wait_ready(&a).await;
    let caller = a.login("caller").await;
    let answer = a.presence(&caller, &format!("since={cursor}")).await;
    assert!(answer.full(), "an old generation's cursor: {}", answer.body);
    assert!(answer.ids().is_empty());
}

#[tokio::test]
#[cfg_attr(presenced_without_redis, ignore = "needs redis-server on PATH")]
async fn a_replica_cut_off_while_the_stream_is_trimmed_past_it_resyncs_and_converges() {
    // Small stream nodes, so that `MAXLEN ~` trims at a fine grain (the
    // stream keeps at least 100 entries whatever the capacity).
    let redis = TestRedis::start_with(&["--stream-node-max-entries", "10"]);
    let proxy = CutProxy::start(redis.port()).await;
    let small = |s: &mut presenced::Settings| s.presence.changelog_capacity = 20;
    let a = replica_with(&redis, small).await;
    let b = replica_at(proxy.url(), small).await;
    let caller = a.login("caller").await;
    a.user("gone").await;
    a.connect("gone", "online").await;
    let seen = a.full_state(&caller).await;
    wait_for_state(&b, &caller, &seen).await;
    let old = b.presence(&caller, "").await.cursor();

    proxy.cut();
    wait_until("B reports it lost Redis", || async {
        ready_status(&b).await == 503
    })
    .await;
    // A deletion, then far more entries than the stream keeps: followed
    // from where B stopped, the stream no longer holds the deletion.
    a.ingest_ok(Method::DELETE, "/users/gone", None).await;
    a.user("u1").await;
    a.connect("u1", "online").await;
    for i in 0..300 {
        a.ingest_ok(
            Method::PUT,
            "/users/u1/status",
            Some(json!({"status": "online", "statusText": format!("t{i}")})),
        )
        .await;
    }
    proxy.mend();

    wait_ready(&b).await;
    let want = a.full_state(&caller).await;
    wait_for_state(&b, &caller, &want).await;
    let status = b
        .public(
            &caller,
            Method::GET,
            "/api/v1/users.getStatus?userId=gone",
            None,
        )
        .await;
    status.assert_error(400, "error-invalid-user");
    let answer = b.presence(&caller, &format!("since={old}")).await;
    assert!(
        answer.full(),
        "a cursor from before the resync: {}",
        answer.body
    );
}

#[tokio::test]
#[cfg_attr(presenced_without_redis, ignore = "needs redis-server on PATH")]
async fn connections_expire_in_redis_and_every_replica_sees_it() {
    let redis = TestRedis::start();
    let ttl =
        |s: &mut presenced::Settings| s.presence.connection_ttl = std::time::Duration::from_secs(1);
    let (a, b) = (
        replica_with(&redis, ttl).await,
        replica_with(&redis, ttl).await,
    );
    let caller = a.login("caller").await;
    a.user("u1").await;
    a.connect("u1", "online").await;
    let cursor = a.presence(&caller, "").await.cursor();
    wait_known(&b, &caller).await;
    for replica in [&a, &b] {
        wait_until("the connection expired", || async {
            let delta = replica.presence(&caller, &format!("since={cursor}")).await;
            delta.user("u1").is_some_and(|u| u["status"] == "offline")
        })
        .await;
    }
}

#[tokio::test]
#[cfg_attr(presenced_without_redis, ignore = "needs redis-server on PATH")]
async fn every_spec_error_path_answers_in_cluster_mode_as_in_a_single_process() {
    let redis = TestRedis::start();
    let a = replica_with(&redis, |s| {
        s.presence.allow_invisible = false;
        s.presence.max_connections_per_user = 1;
        s.server.max_body_bytes = 4096;
    })
    .await;
    let jane = a.login("jane").await;
    a.login("bob").await;
    a.connect("bob", "online").await;
    // Internal API.
    a.ingest(Method::PUT, "/users/x", Some(json!({"username": "jane"})))
        .await
        .assert_error(409, "error-username-taken");
    a.ingest(
        Method::PUT,
        "/users/nobody/status",
        Some(json!({"status": "away"})),
    )
    .await
    .assert_error(400, "error-invalid-user");
    a.ingest(
        Method::PUT,
        "/users/jane/status",
        Some(json!({"status": "offline"})),
    )
    .await
    .assert_error(400, "error-status-not-allowed");
    a.ingest(
        Method::PUT,
        "/users/jane/status",
        Some(json!({"status": "gone"})),
    )
    .await
    .assert_error(400, "error-invalid-status");
    a.ingest(
        Method::POST,
        "/users/nobody/tokens",
        Some(json!({"token": "t"})),
    )
    .await
    .assert_error(400, "error-invalid-user");
    a.ingest(
        Method::PUT,
        "/connections/c-new",
        Some(json!({"userId": "nobody", "status": "online"})),
    )
    .await
    .assert_error(400, "error-invalid-user");
    a.ingest(
        Method::PUT,
        "/connections/c1",
        Some(json!({"userId": "jane", "status": "online"})),
    )
    .await;
    a.ingest(
        Method::PUT,
        "/connections/c1",
        Some(json!({"userId": "bob", "status": "online"})),
    )
    .await
    .assert_error(409, "error-connection-conflict");
    a.ingest(
        Method::PUT,
        "/connections/c2",
        Some(json!({"userId": "jane", "status": "online"})),
    )
    .await
    .assert_error(400, "error-limit-exceeded");
    a.ingest(Method::PUT, "/users/a%20b", Some(json!({"username": "ab"})))
        .await
        .assert_error(400, "error-invalid-params");
    a.ingest(
        Method::PUT,
        "/users/jane",
        Some(json!({"username": "jane", "nick": "x"})),
    )
    .await
    .assert_error(400, "error-invalid-params");
    let batch = a
        .ingest_ok(
            Method::POST,
            "/batch",
            Some(json!({"ops": [
                {"op": "putUser", "userId": "u9", "username": "u9"},
                {"op": "setStatus", "userId": "nobody", "status": "away"},
                {"op": "explode"},
                {"op": "setStatus", "userId": "u9", "status": "offline"},
                {"op": "putUser", "userId": "u8", "username": "jane"},
                {"op": "setStatus", "userId": "u9", "status": "busy"},
            ]})),
        )
        .await;
    assert_eq!(batch["applied"], 2, "{batch}");
    let errors = batch_errors(&batch);
    assert_eq!(
        errors,
        [
            (1, "error-invalid-user"),
            (2, "error-invalid-params"),
            (3, "error-status-not-allowed"),
            (4, "error-username-taken"),
        ]
    );
    let big = format!(r#"{{"username": "big", "name": "{}"}}"#, "x".repeat(5000));
    a.ingest_raw(Method::PUT, "/users/big", &big)
        .await
        .assert_error(413, "error-payload-too-large");
    let unknown = a.ingest(Method::GET, "/nowhere", None).await;
    assert_eq!(
        (unknown.status.as_u16(), unknown.body.clone()),
        (404, not_found_body())
    );
    // Public API.
    let bob = Login {
        id: "bob".into(),
        token: "token-of-bob".into(),
    };
    let set_status = |login: &Login, body| {
        let login = login.clone();
        let a = &a;
        async move {
            a.public(&login, Method::POST, "/api/v1/users.setStatus", Some(body))
                .await
        }
    };
    set_status(&jane, json!({"status": "busy", "userId": "bob"}))
        .await
        .body
        .get("error")
        .map(|e| assert_eq!(e, "unauthorized"))
        .expect("403 body");
    set_status(&jane, json!({"status": "offline"}))
        .await
        .assert_error(400, "error-status-not-allowed");
    set_status(&jane, json!({"status": "nap"}))
        .await
        .assert_error(400, "error-invalid-status");
    a.put_user("root", json!({"username": "root", "roles": ["admin"]}))
        .await;
    a.add_token("root", json!({"token": "token-of-root"})).await;
    let root = Login {
        id: "root".into(),
        token: "token-of-root".into(),
    };
    set_status(&root, json!({"status": "away", "userId": "ghost"}))
        .await
        .assert_error(400, "error-invalid-user");
    let ok = set_status(
        &root,
        json!({"status": "away", "message": "  brb  ", "username": "bob"}),
    )
    .await;
    assert_eq!(ok.body, json!({"success": true}));
    let status = a
        .public(&bob, Method::GET, "/api/v1/users.getStatus", None)
        .await;
    assert_eq!(status.body["status"], "away");
    assert_eq!(status.body["message"], "brb");
    let wrong = Login {
        id: "jane".into(),
        token: "wrong".into(),
    };
    let answer = a
        .public(&wrong, Method::GET, "/api/v1/users.presence", None)
        .await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body, login_required());
    a.public(
        &jane,
        Method::GET,
        "/api/v1/users.presence?since=nope",
        None,
    )
    .await
    .assert_error(400, "error-invalid-params");
}

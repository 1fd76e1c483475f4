//! `POST /internal/v1/batch` (docs/api.md §4): rows applied in order, per-row errors by
//! index with the rest still applied, every op kind, and the whole-batch
//! rejections, which must change nothing.

use crate::helpers::hashed;
use crate::ingest::{World, ANY};
use reqwest::Method;
use serde_json::{json, Value};

/// Posts a batch of `ops` and asserts it was accepted.
async fn batch(w: &World, ops: Value) -> Value {
    w.app
        .ingest_ok(Method::POST, "/batch", Some(json!({ "ops": ops })))
        .await
}

/// The `(index, errorType)` pairs of a batch answer.
fn error_types(answer: &Value) -> Vec<(u64, String)> {
    answer["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array in {answer}"))
        .iter()
        .map(|e| {
            assert!(!e["error"].as_str().expect("error text").is_empty(), "{e}");
            (
                e["index"].as_u64().expect("index"),
                e["errorType"].as_str().expect("errorType").to_owned(),
            )
        })
        .collect()
}

/// The error text of the row at `index`.
fn error_at(answer: &Value, index: u64) -> String {
    answer["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .find(|e| e["index"] == index)
        .unwrap_or_else(|| panic!("no error at {index} in {answer}"))["error"]
        .as_str()
        .expect("error text")
        .to_owned()
}

#[tokio::test]
async fn a_bad_row_is_reported_by_index_and_the_other_rows_still_apply() {
    let w = World::new().await;
    let before = w.state().await;
    let answer = batch(
        &w,
        json!([
            {"op": "putUser", "userId": "u1", "username": "u1"},
            {"op": "putUser", "userId": "nick", "username": "nick", "nickname": "x"},
            {"op": "explode", "userId": "u1"},
            {"op": "putConnection", "connectionId": "c-ghost", "userId": "ghost", "status": "online"},
            {"op": "putConnection", "connectionId": "c-u1", "userId": "u1", "status": "online"},
            {"op": "setStatus", "userId": "u1", "status": "away", "statusText": "back soon"},
        ]),
    )
    .await;
    assert_eq!(answer["applied"], 3, "{answer}");
    assert_eq!(
        error_types(&answer),
        [
            (1, "error-invalid-params".to_owned()),
            (2, "error-invalid-params".to_owned()),
            (3, "error-invalid-user".to_owned()),
        ]
    );
    assert!(error_at(&answer, 1).contains("nickname"));
    assert!(error_at(&answer, 2).contains("explode"));
    assert!(error_at(&answer, 3).contains("ghost"));

    // Rows 0, 4, 5 applied; rows 1 and 3 left nothing behind.
    assert_eq!(
        w.shown("u1").await,
        Some(json!({"_id": "u1", "username": "u1", "status": "away", "statusText": "back soon"}))
    );
    assert_eq!(w.latest("nick").await, None);
    assert_eq!(w.latest("ghost").await, None);
    let stats = w.app.stats().await;
    assert_eq!(stats["users"], before.stats["users"].as_u64().unwrap() + 1);
    assert_eq!(stats["connections"], 1);
    let changed = w.since(&before.cursor).await.ids();
    assert_eq!(changed, ["u1"]);
}

#[tokio::test]
async fn batch_rows_apply_in_order() {
    let w = World::new().await;
    let answer = batch(
        &w,
        json!([
            // Before the user exists: refused.
            {"op": "putConnection", "connectionId": "c-u", "userId": "u", "status": "online"},
            {"op": "putUser", "userId": "u", "username": "u"},
            // After: accepted.
            {"op": "putConnection", "connectionId": "c-u", "userId": "u", "status": "online"},
            {"op": "setStatus", "userId": "u", "status": "busy"},
            {"op": "putUser", "userId": "u", "username": "u", "name": "First"},
            {"op": "putUser", "userId": "u", "username": "u", "name": "Second"},
            // Username uniqueness sees the rows before it.
            {"op": "putUser", "userId": "x", "username": "dup"},
            {"op": "putUser", "userId": "y", "username": "dup"},
            {"op": "deleteUser", "userId": "x"},
            {"op": "putUser", "userId": "y", "username": "dup"},
        ]),
    )
    .await;
    assert_eq!(answer["applied"], 8, "{answer}");
    assert_eq!(
        error_types(&answer),
        [
            (0, "error-invalid-user".to_owned()),
            (7, "error-username-taken".to_owned()),
        ]
    );
    assert_eq!(
        w.shown("u").await,
        Some(json!({"_id": "u", "username": "u", "name": "Second", "status": "busy"}))
    );
    assert_eq!(
        w.latest("x").await,
        Some(json!({"_id": "x", "username": "dup", "status": "offline"}))
    );
    assert_eq!(w.latest("y").await.unwrap()["username"], "dup");
}

#[tokio::test]
async fn every_op_kind_can_be_used_in_a_batch() {
    let w = World::new().await;
    let answer = batch(
        &w,
        json!([
            {"op": "putUser", "userId": "u1", "username": "one", "name": "One", "utcOffset": 1,
             "avatarETag": "e1", "roles": ["user"], "active": true},
            {"op": "putUser", "userId": "u2", "username": "two"},
            {"op": "addToken", "userId": "u1", "token": "t1"},
            {"op": "addToken", "userId": "u2", "hashedToken": hashed("t2")},
            {"op": "setStatus", "userId": "u2", "status": "busy", "statusText": "focus"},
            {"op": "putConnection", "connectionId": "c1", "userId": "u1", "status": "online", "instanceId": "i1"},
            {"op": "putConnection", "connectionId": "c2", "userId": "u2", "status": "away", "instanceId": "i2"},
            {"op": "putConnection", "connectionId": "c3", "userId": "u2", "status": "online", "instanceId": "i2"},
        ]),
    )
    .await;
    assert_eq!(answer["applied"], 8, "{answer}");
    assert_eq!(answer["errors"], json!([]));
    assert!(w.logs_in("u1", "t1").await);
    assert!(w.logs_in("u2", "t2").await);
    assert_eq!(
        w.shown("u1").await,
        Some(
            json!({"_id": "u1", "username": "one", "name": "One", "status": "online",
                    "utcOffset": 1, "avatarETag": "e1"})
        )
    );
    assert_eq!(
        w.shown("u2").await,
        Some(json!({"_id": "u2", "username": "two", "status": "busy", "statusText": "focus"}))
    );
    assert_eq!(w.app.stats().await["connections"], 3);

    let answer = batch(
        &w,
        json!([
            {"op": "deleteConnection", "connectionId": "c1"},
            {"op": "deleteInstance", "instanceId": "i2"},
            {"op": "revokeToken", "userId": "u1", "token": "t1"},
            {"op": "revokeToken", "userId": "u2", "hashedToken": hashed("t2")},
            {"op": "deleteUser", "userId": "u2"},
        ]),
    )
    .await;
    assert_eq!(answer["applied"], 5, "{answer}");
    assert_eq!(answer["errors"], json!([]));
    assert_eq!(w.status("u1").await, "offline");
    assert!(!w.logs_in("u1", "t1").await);
    assert!(!w.logs_in("u2", "t2").await);
    assert_eq!(
        w.latest("u2").await,
        Some(json!({"_id": "u2", "username": "two", "status": "offline"}))
    );
    let stats = w.app.stats().await;
    assert_eq!(stats["connections"], 0);
    assert_eq!(stats["online"], 0);
}

#[tokio::test]
async fn batch_row_errors_carry_the_error_type_of_the_single_route() {
    let w = World::with(|s| s.presence.allow_invisible = false).await;
    w.app.user("a").await;
    w.app.user("b").await;
    w.app.connect("a", "online").await;
    let before = w.state().await;
    let answer = batch(
        &w,
        json!([
            {"op": "putUser", "userId": "b", "username": "a"},
            {"op": "putConnection", "connectionId": "c-a", "userId": "b", "status": "online"},
            {"op": "setStatus", "userId": "a", "status": "dnd"},
            {"op": "setStatus", "userId": "a", "status": "offline"},
            {"op": "setStatus", "userId": "nobody", "status": "away"},
            {"op": "addToken", "userId": "nobody", "token": "t"},
            {"op": "addToken", "userId": "a", "hashedToken": "not-a-hash"},
            {"op": "addToken", "userId": "a", "token": "t", "hashedToken": hashed("t")},
            {"op": "putConnection", "connectionId": "c-a", "userId": "a", "status": "busy"},
            {"op": "putUser", "userId": "a", "username": "a", "utcOffset": 15},
            {"op": "putUser", "userId": "a b", "username": "ab"},
        ]),
    )
    .await;
    assert_eq!(answer["applied"], 0, "{answer}");
    let invalid = "error-invalid-params".to_owned();
    assert_eq!(
        error_types(&answer),
        [
            (0, "error-username-taken".to_owned()),
            (1, "error-connection-conflict".to_owned()),
            (2, "error-invalid-status".to_owned()),
            (3, "error-status-not-allowed".to_owned()),
            (4, "error-invalid-user".to_owned()),
            (5, "error-invalid-user".to_owned()),
            (6, invalid.clone()),
            (7, invalid.clone()),
            (8, invalid.clone()),
            (9, invalid.clone()),
            (10, invalid),
        ]
    );
    assert!(error_at(&answer, 6).contains("hashedToken"));
    assert!(error_at(&answer, 9).contains("utcOffset"));
    assert!(error_at(&answer, 10).contains("userId"));
    w.assert_unchanged(&before).await;
    assert!(!w.logs_in("a", "t").await);
}

#[tokio::test]
async fn a_row_without_op_or_without_its_id_field_is_an_error_of_that_row() {
    let w = World::new().await;
    w.app.user("w1").await;
    w.app.connect("w1", "online").await;
    let before = w.state().await;
    let answer = batch(
        &w,
        json!([
            {"userId": "x", "username": "x"},
            {"op": "putUser", "username": "x"},
            {"op": "putConnection", "userId": "w1", "status": "online"},
            {"op": "deleteConnection", "userId": "w1"},
            {"op": "deleteInstance", "userId": "w1"},
            {"op": "deleteUser"},
            42,
            "putUser",
            null,
            {"op": 7, "userId": "x", "username": "x"},
            {"op": "putUser", "userId": 5, "username": "x"},
            {"op": "deleteUser", "userId": "w1", "force": true},
            {"op": "PutUser", "userId": "x", "username": "x"},
        ]),
    )
    .await;
    assert_eq!(answer["applied"], 0, "{answer}");
    let types = error_types(&answer);
    assert_eq!(types.len(), 13, "{answer}");
    for (i, (index, error_type)) in types.iter().enumerate() {
        assert_eq!(*index, i as u64);
        assert_eq!(error_type, "error-invalid-params", "row {i}");
    }
    for (index, needle) in [
        (0, "op"),
        (1, "userId"),
        (2, "connectionId"),
        (3, "connectionId"),
        (4, "instanceId"),
        (5, "userId"),
        (6, "op"),
        (7, "op"),
        (8, "op"),
        (9, "op"),
        (10, "userId"),
        (11, "force"),
        (12, "PutUser"),
    ] {
        let error = error_at(&answer, index);
        assert!(
            error.contains(needle),
            "row {index}: {needle:?} not in {error:?}"
        );
    }
    w.assert_unchanged(&before).await;
    assert_eq!(w.status("w1").await, "online");
}

#[tokio::test]
async fn a_batch_without_an_ops_array_is_rejected_and_changes_nothing() {
    let w = World::new().await;
    w.app.user("u").await;
    let before = w.state().await;
    for body in [
        json!({}),
        json!({"ops": null}),
        json!({"ops": {"op": "deleteUser", "userId": "u"}}),
        json!({"ops": "deleteUser"}),
        json!({"ops": 1}),
        json!({"operations": [{"op": "deleteUser", "userId": "u"}]}),
        json!({"ops": [{"op": "deleteUser", "userId": "u"}], "atomic": true}),
        json!(null),
        json!("ops"),
    ] {
        w.assert_invalid(Method::POST, "/batch", Some(body), ANY)
            .await;
    }
    for (body, field) in [
        (
            Some(json!({"ops": [{"op": "deleteUser", "userId": "u"}], "atomic": true})),
            "atomic",
        ),
        (Some(json!({})), "ops"),
        (None, "ops"),
    ] {
        w.assert_invalid(Method::POST, "/batch", body, field).await;
    }
    for raw in [
        "{\"ops\": [",
        "ops=[]",
        "{\"ops\": [{\"op\": \"deleteUser\", \"userId\": \"u\"},]}",
    ] {
        w.assert_not_json(Method::POST, "/batch", raw).await;
    }
    w.assert_unchanged(&before).await;
    assert_eq!(w.latest("u").await.unwrap()["status"], "offline");
}

#[tokio::test]
async fn an_empty_batch_applies_nothing() {
    let w = World::new().await;
    let before = w.state().await;
    let answer = batch(&w, json!([])).await;
    assert_eq!(answer["applied"], 0);
    assert_eq!(answer["errors"], json!([]));
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn a_batch_answer_carries_a_cursor_covering_its_changes() {
    let w = World::new().await;
    let before = w.state().await;
    let answer = batch(
        &w,
        json!([
            {"op": "putUser", "userId": "a", "username": "a"},
            {"op": "putUser", "userId": "b", "username": "b"},
            {"op": "putConnection", "connectionId": "c-a", "userId": "a", "status": "online"},
        ]),
    )
    .await;
    let cursor = answer["cursor"].as_str().expect("cursor").to_owned();
    assert_eq!(w.changes_since(&cursor).await, json!([]));
    assert_eq!(w.since(&before.cursor).await.ids(), ["a", "b"]);
}

/// `n` valid rows, each creating user `b<i>`.
fn put_user_rows(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"op": "putUser", "userId": format!("b{i}"), "username": format!("b{i}")}))
        .collect()
}

#[tokio::test]
async fn a_batch_of_more_than_10000_ops_is_rejected_and_applies_nothing() {
    let w = World::new().await;
    let before = w.state().await;
    let answer = w
        .app
        .ingest(
            Method::POST,
            "/batch",
            Some(json!({ "ops": put_user_rows(10_001) })),
        )
        .await;
    let error = answer.assert_error(400, "error-invalid-params");
    assert!(error.contains("10000"), "{error}");
    w.assert_unchanged(&before).await;
}

#[tokio::test]
async fn a_batch_of_exactly_10000_ops_is_applied() {
    let w = World::new().await;
    let users_before = w.app.stats().await["users"].as_u64().unwrap();
    let answer = batch(&w, Value::Array(put_user_rows(10_000))).await;
    assert_eq!(answer["applied"], 10_000);
    assert_eq!(answer["errors"], json!([]));
    let stats = w.app.stats().await;
    assert_eq!(stats["users"], users_before + 10_000);
    assert_eq!(w.latest("b9999").await.unwrap()["username"], "b9999");
}

#[tokio::test]
async fn a_batch_over_the_body_limit_is_rejected_with_413_and_applies_nothing() {
    let w = World::with(|s| s.server.max_body_bytes = 1024).await;
    w.app.user("u").await;
    let before = w.state().await;
    let ops = put_user_rows(30);
    let body = json!({ "ops": ops }).to_string();
    assert!(body.len() > 1024, "{}", body.len());
    let answer = w.app.ingest_raw(Method::POST, "/batch", &body).await;
    answer.assert_error(413, "error-payload-too-large");
    w.assert_unchanged(&before).await;
    // A small batch still goes through.
    let answer = batch(&w, json!([{"op": "deleteUser", "userId": "u"}])).await;
    assert_eq!(answer["applied"], 1);
}

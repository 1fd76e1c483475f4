//! `users.presence`: every branch of docs/api.md §3.1, in order, over HTTP.

use crate::helpers::*;
use reqwest::Method;
use serde_json::json;

/// An app with a caller (offline: no connection) and users `on` (online),
/// `away` (away), `off` (offline, known).
async fn populated() -> (TestApp, Login) {
    let app = spawn_app().await;
    let caller = app.login("caller").await;
    for id in ["on", "away", "off"] {
        app.user(id).await;
    }
    app.connect("on", "online").await;
    app.connect("away", "away").await;
    (app, caller)
}

#[tokio::test]
async fn full_snapshot_lists_every_user_not_offline_with_full_true() {
    let (app, caller) = populated().await;
    let answer = app.presence(&caller, "").await;
    assert!(answer.full());
    assert_eq!(answer.ids(), ["away", "on"]);
    assert_eq!(answer.user("away").unwrap()["status"], "away");
    assert!(!answer.cursor().is_empty());
}

#[tokio::test]
async fn full_snapshot_includes_the_caller_when_online() {
    let (app, caller) = populated().await;
    app.connect("caller", "online").await;
    assert_eq!(
        app.presence(&caller, "").await.ids(),
        ["away", "caller", "on"]
    );
}

#[tokio::test]
async fn users_carry_only_the_fields_that_are_set_never_null() {
    let app = spawn_app().await;
    let caller = app.login("caller").await;
    app.put_user(
        "full",
        json!({"username": "full.user", "name": "Full User", "utcOffset": 5.5, "avatarETag": "etag1"}),
    )
    .await;
    app.put_user("bare", json!({"username": "bare", "name": ""}))
        .await;
    for id in ["full", "bare"] {
        app.connect(id, "online").await;
    }
    app.ingest_ok(
        Method::PUT,
        "/users/full/status",
        Some(json!({"status": "busy", "statusText": "  deep work "})),
    )
    .await;
    let answer = app.presence(&caller, "").await;
    assert_eq!(
        answer.user("full").unwrap(),
        &json!({"_id": "full", "username": "full.user", "name": "Full User", "status": "busy",
                "utcOffset": 5.5, "avatarETag": "etag1", "statusText": "deep work"})
    );
    assert_eq!(
        answer.user("bare").unwrap(),
        &json!({"_id": "bare", "username": "bare", "status": "online"})
    );
}

#[tokio::test]
async fn presence_answers_are_not_cached_by_intermediaries() {
    let (app, caller) = populated().await;
    let answer = app.presence(&caller, "").await;
    assert_eq!(answer.headers["cache-control"], "no-cache");
    assert!(answer.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
}

#[tokio::test]
async fn broadcast_disabled_answers_an_empty_full_list_whatever_the_parameters() {
    let (app, caller) = populated().await;
    app.ingest_ok(
        Method::PUT,
        "/settings",
        Some(json!({"broadcastDisabled": true})),
    )
    .await;
    for query in [
        "",
        "ids=on",
        "from=2019-05-22",
        "since=garbage",
        "from=garbage",
    ] {
        let answer = app.presence(&caller, query).await;
        assert_eq!(answer.body["users"], json!([]), "{query}");
        assert!(answer.full(), "{query}");
        assert!(!answer.cursor().is_empty());
    }
    app.ingest_ok(
        Method::PUT,
        "/settings",
        Some(json!({"broadcastDisabled": false})),
    )
    .await;
    assert_eq!(app.presence(&caller, "").await.ids(), ["away", "on"]);
}

#[tokio::test]
async fn broadcast_disabled_in_settings_applies_from_start_up() {
    let app = spawn_app_with(|s| s.presence.broadcast_disabled = true).await;
    let caller = app.login("caller").await;
    app.connect("caller", "online").await;
    let answer = app.presence(&caller, "").await;
    assert_eq!(
        (answer.body["users"].clone(), answer.full()),
        (json!([]), true)
    );
}

// ---- ids ----

#[tokio::test]
async fn every_accepted_ids_form_selects_the_same_users() {
    let (app, caller) = populated().await;
    for query in [
        "ids=on,away",
        "ids=on&ids=away",
        "ids[]=on&ids[]=away",
        "ids%5B%5D=on&ids%5B%5D=away",
        "ids[0]=on&ids[1]=away",
        "ids=on,on&ids[]=away,on",
    ] {
        let answer = app.presence(&caller, query).await;
        assert_eq!(answer.ids(), ["away", "on"], "{query}");
        assert!(!answer.full(), "{query}");
        assert_eq!(
            answer.body["users"].as_array().unwrap().len(),
            2,
            "duplicates collapse: {query}"
        );
    }
}

#[tokio::test]
async fn ids_leaves_out_offline_and_unknown_users_includes_the_caller_and_ignores_from() {
    let (app, caller) = populated().await;
    app.connect("caller", "away").await;
    let answer = app
        .presence(&caller, "ids=on,off,ghost,caller&from=not-a-date")
        .await;
    assert_eq!(answer.ids(), ["caller", "on"]);
    assert!(!answer.full());
}

#[tokio::test]
async fn empty_ids_falls_through_to_the_full_snapshot() {
    let (app, caller) = populated().await;
    for query in ["ids=", "ids[]=", "ids=,,"] {
        let answer = app.presence(&caller, query).await;
        assert!(answer.full(), "{query}");
        assert_eq!(answer.ids(), ["away", "on"]);
    }
}

#[tokio::test]
async fn more_ids_than_max_ids_is_a_clear_error_and_changes_nothing() {
    let app = spawn_app_with(|s| s.presence.max_ids = 3).await;
    let caller = app.login("caller").await;
    let before = app.stats().await;
    let answer = app
        .public(
            &caller,
            Method::GET,
            "/api/v1/users.presence?ids=a,b,c,d",
            None,
        )
        .await;
    let error = answer.assert_error(400, "error-invalid-params");
    assert!(
        error.contains("ids") && error.contains("at most 3"),
        "{error}"
    );
    // Three distinct ids, written five times, is within the limit.
    app.presence(&caller, "ids=a,b,c,a,b").await;
    assert_eq!(app.stats().await["cursor"], before["cursor"]);
}

#[tokio::test]
async fn post_takes_the_parameters_as_a_json_body_for_long_id_lists() {
    let (app, caller) = populated().await;
    let mut ids: Vec<String> = (0..900).map(|i| format!("unknown-user-{i:04}")).collect();
    ids.push("on".into());
    let answer = app
        .public(
            &caller,
            Method::POST,
            "/api/v1/users.presence",
            Some(json!({ "ids": ids })),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        (answer.ids(), answer.full()),
        (vec!["on".to_owned()], false)
    );

    let since = app.presence(&caller, "").await.cursor();
    app.disconnect("on").await;
    let answer = app
        .public(
            &caller,
            Method::POST,
            "/api/v1/users.presence",
            Some(json!({ "since": since })),
        )
        .await;
    assert_eq!(
        (answer.ids(), answer.full()),
        (vec!["on".to_owned()], false)
    );
    assert_eq!(answer.user("on").unwrap()["status"], "offline");
}

#[tokio::test]
async fn post_with_a_malformed_body_is_rejected() {
    let (app, caller) = populated().await;
    let request = app
        .as_user(&caller, Method::POST, "/api/v1/users.presence")
        .body("{not json");
    let answer = send(request).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["errorType"], "error-invalid-params");
    let answer = app
        .public(
            &caller,
            Method::POST,
            "/api/v1/users.presence",
            Some(json!({"ids": "on"})),
        )
        .await;
    answer.assert_error(400, "error-invalid-params");
}

// ---- from ----

#[tokio::test]
async fn from_returns_changes_at_or_after_it_without_the_caller_but_with_offline_users() {
    let (app, caller) = populated().await;
    app.connect("caller", "away").await;
    let from = next_ms();
    app.disconnect("on").await; // now offline: still listed
    app.set_status("away", "busy").await;
    app.connect("caller", "online").await; // the caller's own change: left out
    let answer = app
        .presence(&caller, &format!("from={}", iso_ms(from)))
        .await;
    assert!(!answer.full());
    assert_eq!(answer.ids(), ["away", "on"]);
    assert_eq!(answer.user("on").unwrap()["status"], "offline");
    assert_eq!(answer.user("away").unwrap()["status"], "busy");
}

#[tokio::test]
async fn from_after_the_last_change_returns_nothing() {
    let (app, caller) = populated().await;
    app.connect("on", "away").await;
    // Past the change's millisecond: the delta is empty, not a full answer.
    let after = now_ms() + 1;
    let answer = app
        .presence(&caller, &format!("from={}", iso_ms(after)))
        .await;
    assert_eq!((answer.ids().len(), answer.full()), (0, false));
}

#[tokio::test]
async fn from_in_the_future_answers_an_empty_partial_list() {
    let (app, caller) = populated().await;
    let answer = app.presence(&caller, "from=2999-01-01T00:00:00Z").await;
    assert_eq!(answer.body["users"], json!([]));
    assert!(!answer.full());
}

#[tokio::test]
async fn from_older_than_the_window_answers_the_full_snapshot() {
    let (app, caller) = populated().await;
    let answer = app.presence(&caller, "from=2019-05-22T12:11:45.392Z").await;
    assert!(answer.full());
    assert_eq!(answer.ids(), ["away", "on"]);
}

#[tokio::test]
async fn from_before_this_process_began_answers_the_full_snapshot() {
    let (app, caller) = populated().await;
    // Well within the 10-minute window, but before the log's epoch began.
    let answer = app
        .presence(&caller, &format!("from={}", iso_ms(now_ms() - 60_000)))
        .await;
    assert!(answer.full());
    assert_eq!(answer.ids(), ["away", "on"]);
}

#[tokio::test]
async fn from_that_the_log_no_longer_covers_answers_the_full_snapshot() {
    let app = spawn_app_with(|s| s.presence.changelog_capacity = 3).await;
    let caller = app.login("caller").await;
    let from = now_ms();
    for i in 0..5 {
        app.user(&format!("u{i}")).await;
    }
    app.connect("u0", "online").await;
    let answer = app
        .presence(&caller, &format!("from={}", iso_ms(from)))
        .await;
    assert!(
        answer.full(),
        "a partial answer here would silently miss users"
    );
    assert_eq!(answer.ids(), ["u0"]);
}

#[tokio::test]
async fn from_accepts_an_offset_whose_plus_arrived_as_a_space() {
    let (app, caller) = populated().await;
    let from = chrono::DateTime::from_timestamp_millis(next_ms())
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap());
    app.connect("off", "online").await;
    // `+` sent unencoded, as some clients do: the server reads it as a space.
    let raw = from.format("%Y-%m-%dT%H:%M:%S%.3f+02:00").to_string();
    let answer = app.presence(&caller, &format!("from={raw}")).await;
    assert!(
        !answer.full(),
        "parsed as the right instant, within the window"
    );
    assert_eq!(answer.ids(), ["off"]);
    // The same with the offset written without a colon, and percent-encoded.
    let encoded = from.format("%Y-%m-%dT%H:%M:%S%.3f%%2B0200").to_string();
    assert_eq!(
        app.presence(&caller, &format!("from={encoded}"))
            .await
            .ids(),
        ["off"]
    );
}

#[tokio::test]
async fn from_accepts_each_iso_8601_form() {
    let (app, caller) = populated().await;
    for from in [
        "2019-05-22",
        "2019-05-22T12:11",
        "2019-05-22T12:11:45",
        "2019-05-22T12:11:45.3",
        "2019-05-22T12:11:45.392",
        "2019-05-22T12:11:45.392123456",
        "2019-05-22T12:11:45.392Z",
        "2019-05-22T12:11:45.392%2B02:00",
        "2019-05-22T12:11:45%2B0200",
        "2019-05-22T12:11:45-05:30",
        "2019-05-22%2012:11:45Z",
        "2019-05-22T12:11:45%2002:00",
    ] {
        let answer = app.presence(&caller, &format!("from={from}")).await;
        assert!(answer.full(), "{from}: old, so the full answer");
    }
}

#[tokio::test]
async fn an_invalid_from_is_rejected_naming_the_parameter_and_a_valid_example() {
    let (app, caller) = populated().await;
    let before = app.stats().await;
    for bad in [
        "yesterday",
        "1558527105392",
        "2019-13-01",
        "2019-05-22T25:00",
        "2019-05-22T12:11:45.1234567890Z",
        "",
    ] {
        let answer = app
            .public(
                &caller,
                Method::GET,
                &format!("/api/v1/users.presence?from={bad}"),
                None,
            )
            .await;
        if bad.is_empty() {
            answer.assert_error(400, "error-invalid-params");
            continue;
        }
        let error = answer.assert_error(400, "error-invalid-params");
        assert!(error.starts_with("from:"), "{error}");
        assert!(error.contains("2019-05-22T12:11:45.392Z"), "{error}");
    }
    assert_eq!(app.stats().await["cursor"], before["cursor"]);
}

// ---- since ----

#[tokio::test]
async fn since_returns_every_user_changed_after_the_cursor_caller_and_offline_included() {
    let (app, caller) = populated().await;
    let cursor = app.presence(&caller, "").await.cursor();
    app.disconnect("on").await;
    app.connect("caller", "online").await;
    let answer = app.presence(&caller, &format!("since={cursor}")).await;
    assert!(!answer.full());
    assert_eq!(answer.ids(), ["caller", "on"]);
    assert_eq!(answer.user("on").unwrap()["status"], "offline");
    // The delta's own cursor starts the next one: nothing changed since.
    let next = app
        .presence(&caller, &format!("since={}", answer.cursor()))
        .await;
    assert_eq!((next.ids().len(), next.full()), (0, false));
}

#[tokio::test]
async fn since_lists_a_user_once_with_its_latest_state() {
    let (app, caller) = populated().await;
    let cursor = app.presence(&caller, "").await.cursor();
    app.connect("off", "online").await;
    app.connect("off", "away").await;
    app.set_status("off", "busy").await;
    let answer = app.presence(&caller, &format!("since={cursor}")).await;
    assert_eq!(
        answer.body["users"],
        json!([{"_id": "off", "username": "off", "status": "busy"}])
    );
}

#[tokio::test]
async fn since_with_ids_keeps_only_those_users() {
    let (app, caller) = populated().await;
    let cursor = app.presence(&caller, "").await.cursor();
    app.disconnect("on").await;
    app.disconnect("away").await;
    let answer = app
        .presence(&caller, &format!("since={cursor}&ids[]=away&ids[]=ghost"))
        .await;
    assert_eq!(
        (answer.ids(), answer.full()),
        (vec!["away".to_owned()], false)
    );
}

#[tokio::test]
async fn since_shows_a_deleted_user_as_id_username_and_offline() {
    let (app, caller) = populated().await;
    let cursor = app.presence(&caller, "").await.cursor();
    app.ingest_ok(Method::DELETE, "/users/on", None).await;
    let answer = app.presence(&caller, &format!("since={cursor}")).await;
    assert_eq!(
        answer.body["users"],
        json!([{"_id": "on", "username": "on", "status": "offline"}])
    );
    assert_eq!(app.presence(&caller, "").await.ids(), ["away"]);
}

#[tokio::test]
async fn a_cursor_from_another_epoch_gets_the_full_snapshot() {
    let (app, caller) = populated().await;
    let (other, other_caller) = populated().await;
    let foreign = other.presence(&other_caller, "").await.cursor();
    let answer = app.presence(&caller, &format!("since={foreign}")).await;
    assert!(answer.full());
    assert_eq!(answer.ids(), ["away", "on"]);
}

#[tokio::test]
async fn a_cursor_older_than_the_log_gets_the_full_snapshot() {
    let app = spawn_app_with(|s| s.presence.changelog_capacity = 2).await;
    let caller = app.login("caller").await;
    let cursor = app.presence(&caller, "").await.cursor();
    for i in 0..4 {
        app.user(&format!("u{i}")).await;
    }
    app.connect("u3", "online").await;
    let answer = app.presence(&caller, &format!("since={cursor}")).await;
    assert!(
        answer.full(),
        "a partial answer here would silently miss users"
    );
    assert_eq!(answer.ids(), ["u3"]);
}

#[tokio::test]
async fn an_unparsable_since_is_rejected_naming_the_parameter() {
    let (app, caller) = populated().await;
    // `%3Ccursor%3E` is README's old `<cursor>` placeholder as a client sends it: the
    // raw `<` never reaches a route (actix-http refuses it; docs/api.md §3.4).
    for bad in ["nope", "1", "x.y", "1.2.3", "%3Ccursor%3E", ""] {
        let answer = app
            .public(
                &caller,
                Method::GET,
                &format!("/api/v1/users.presence?since={bad}"),
                None,
            )
            .await;
        let error = answer.assert_error(400, "error-invalid-params");
        assert!(error.starts_with("since:"), "{error}");
    }
}

#[tokio::test]
async fn since_takes_precedence_over_ids_and_from() {
    let (app, caller) = populated().await;
    let cursor = app.presence(&caller, "").await.cursor();
    app.connect("off", "online").await;
    let answer = app
        .presence(
            &caller,
            &format!("from=2019-05-22&ids=off,on&since={cursor}"),
        )
        .await;
    assert_eq!(
        (answer.ids(), answer.full()),
        (vec!["off".to_owned()], false)
    );
}

#[tokio::test]
async fn unknown_query_parameters_are_ignored() {
    let (app, caller) = populated().await;
    let answer = app.presence(&caller, "foo=bar&_=123&idss=x").await;
    assert!(answer.full());
    assert_eq!(answer.ids(), ["away", "on"]);
}

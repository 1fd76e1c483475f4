//! `users.setStatus` and `users.getStatus` (docs/api.md §3.2), and the status rule of
//! docs/api.md §1 observed over HTTP.

use crate::helpers::*;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SET: &str = "/api/v1/users.setStatus";
const GET: &str = "/api/v1/users.getStatus";

async fn set(app: &TestApp, login: &Login, body: Value) -> Answer {
    app.public(login, Method::POST, SET, Some(body)).await
}

/// `POST users.setStatus` as `login`, asserting the bare `{"success": true}`.
async fn set_ok(app: &TestApp, login: &Login, body: Value) {
    let answer = set(app, login, body.clone()).await;
    assert_eq!(answer.status, StatusCode::OK, "{body}: {}", answer.body);
    assert_eq!(answer.body, json!({"success": true}), "{body}");
}

/// `POST users.setStatus` with a raw body, sent as JSON.
async fn set_raw(app: &TestApp, login: &Login, body: &'static str) -> Answer {
    let request = app
        .as_user(login, Method::POST, SET)
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    send(request).await
}

/// `GET users.getStatus?<query>` as `login`, asserting 200.
async fn get_status(app: &TestApp, login: &Login, query: &str) -> Value {
    let answer = app
        .public(login, Method::GET, &with_query(GET, query), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.body);
    answer.body
}

/// The `status` and `message` of `login`'s own `users.getStatus`.
async fn own_status_and_message(app: &TestApp, login: &Login) -> (Value, Value) {
    let own = get_status(app, login, "").await;
    (own["status"].clone(), own["message"].clone())
}

/// The status `viewer` sees for `id` in a full presence snapshot (`offline` when absent).
async fn visible_status(app: &TestApp, viewer: &Login, id: &str) -> String {
    let answer = app.presence(viewer, "").await;
    match answer.user(id) {
        Some(user) => user["status"].as_str().expect("status").to_owned(),
        None => "offline".to_owned(),
    }
}

/// Everything a rejected request could have changed about `target`: its own view
/// of its status, what `viewer` sees of it, and the head of the change log.
async fn observe(app: &TestApp, viewer: &Login, target: &Login) -> Value {
    let presence = app.presence(viewer, "").await;
    json!({
        "own": get_status(app, target, "").await,
        "seen": presence.user(&target.id).cloned(),
        "cursor": app.stats().await["cursor"],
    })
}

/// Opens connection `id` of `user` with a connection status.
async fn open(app: &TestApp, id: &str, user: &str, status: &str) {
    app.ingest_ok(
        Method::PUT,
        &format!("/connections/{id}"),
        Some(json!({"userId": user, "status": status})),
    )
    .await;
}

async fn close(app: &TestApp, id: &str) {
    app.ingest_ok(Method::DELETE, &format!("/connections/{id}"), None)
        .await;
}

fn keys(body: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

async fn admin(app: &TestApp, id: &str) -> Login {
    app.login_with(id, json!({"username": id, "roles": ["admin"]}))
        .await
}

// ---- users.setStatus ----

#[tokio::test]
async fn set_status_sets_own_status_and_message() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    let john = app.login("john").await;
    app.connect("jane", "online").await;

    set_ok(
        &app,
        &jane,
        json!({"status": "away", "message": "at lunch"}),
    )
    .await;

    let own = get_status(&app, &jane, "").await;
    assert_eq!(own["status"], "away");
    assert_eq!(own["message"], "at lunch");
    let seen = app.presence(&john, "").await;
    let user = seen.user("jane").expect("jane is visible");
    assert_eq!(user["status"], "away");
    assert_eq!(user["statusText"], "at lunch");
}

#[tokio::test]
async fn set_status_with_only_a_message_keeps_the_status_and_vice_versa() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    app.connect("jane", "online").await;
    set_ok(&app, &jane, json!({"status": "busy"})).await;

    set_ok(&app, &jane, json!({"message": "focusing"})).await;
    assert_eq!(
        own_status_and_message(&app, &jane).await,
        (json!("busy"), json!("focusing"))
    );

    set_ok(&app, &jane, json!({"status": "away"})).await;
    assert_eq!(
        own_status_and_message(&app, &jane).await,
        (json!("away"), json!("focusing"))
    );
}

#[tokio::test]
async fn set_status_message_is_trimmed() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    set_ok(&app, &jane, json!({"message": " \t in a meeting \n "})).await;
    assert_eq!(get_status(&app, &jane, "").await["message"], "in a meeting");
}

#[tokio::test]
async fn set_status_message_is_cut_to_120_characters_not_bytes() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    let john = app.login("john").await;
    let cases = [
        ("a".repeat(121), "a".repeat(120)),
        ("é".repeat(200), "é".repeat(120)),
        (
            format!("ab{}", "🙂".repeat(200)),
            format!("ab{}", "🙂".repeat(118)),
        ),
        (format!("  {}  ", "日本".repeat(70)), "日本".repeat(60)),
        ("ü".repeat(120), "ü".repeat(120)),
    ];
    for (sent, kept) in cases {
        set_ok(&app, &jane, json!({"status": "busy", "message": sent})).await;
        let own = get_status(&app, &jane, "").await;
        assert_eq!(own["message"], kept.as_str(), "sent {sent:?}");
        assert_eq!(kept.chars().count(), 120);
        let seen = app.presence(&john, "ids=jane").await;
        assert_eq!(
            seen.user("jane").expect("jane is busy")["statusText"],
            kept.as_str()
        );
    }
}

#[tokio::test]
async fn set_status_without_status_or_message_is_400_invalid_params_and_changes_nothing() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    let john = app.login("john").await;
    set_ok(&app, &jane, json!({"status": "busy", "message": "hi"})).await;
    let before = observe(&app, &john, &jane).await;

    for body in [
        json!({}),
        json!({"userId": "jane"}),
        json!({"username": "jane"}),
    ] {
        set(&app, &jane, body)
            .await
            .assert_error(400, "error-invalid-params");
    }
    set_raw(&app, &jane, "")
        .await
        .assert_error(400, "error-invalid-params");

    assert_eq!(observe(&app, &john, &jane).await, before);
}

#[tokio::test]
async fn set_status_with_an_unknown_status_is_400_invalid_status_and_changes_nothing() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    let john = app.login("john").await;
    app.connect("jane", "online").await;
    let before = observe(&app, &john, &jane).await;

    for bad in ["invisible", "ONLINE", "", "dnd", "busy "] {
        let answer = set(
            &app,
            &jane,
            json!({"status": bad, "message": "not applied"}),
        )
        .await;
        answer.assert_error(400, "error-invalid-status");
    }

    assert_eq!(observe(&app, &john, &jane).await, before);
}

#[tokio::test]
async fn set_status_offline_is_400_status_not_allowed_when_invisible_is_off() {
    let app = spawn_app_with(|s| s.presence.allow_invisible = false).await;
    let jane = app.login("jane").await;
    let john = app.login("john").await;
    app.connect("jane", "online").await;
    let before = observe(&app, &john, &jane).await;

    set(&app, &jane, json!({"status": "offline"}))
        .await
        .assert_error(400, "error-status-not-allowed");
    set(
        &app,
        &jane,
        json!({"status": "offline", "message": "hiding"}),
    )
    .await
    .assert_error(400, "error-status-not-allowed");
    assert_eq!(observe(&app, &john, &jane).await, before);

    // The other statuses are still allowed.
    set_ok(&app, &jane, json!({"status": "busy"})).await;
    assert_eq!(visible_status(&app, &john, "jane").await, "busy");
}

#[tokio::test]
async fn set_status_offline_is_allowed_by_default() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    let john = app.login("john").await;
    app.connect("jane", "online").await;
    set_ok(&app, &jane, json!({"status": "offline"})).await;
    assert_eq!(visible_status(&app, &john, "jane").await, "offline");
}

#[tokio::test]
async fn set_status_on_another_user_without_admin_is_403_unauthorized_and_changes_nothing() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    let mallory = app.login("mallory").await;
    app.connect("jane", "online").await;
    let before = observe(&app, &mallory, &jane).await;
    let mallory_before = get_status(&app, &mallory, "").await;

    for body in [
        json!({"userId": "jane", "status": "busy"}),
        json!({"username": "jane", "status": "busy", "message": "pwned"}),
        json!({"userId": "jane", "message": "pwned"}),
    ] {
        let answer = set(&app, &mallory, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{body}: {}",
            answer.body
        );
        assert_eq!(
            answer.body,
            json!({"success": false, "error": "unauthorized"}),
            "{body}"
        );
    }

    assert_eq!(observe(&app, &mallory, &jane).await, before);
    assert_eq!(get_status(&app, &mallory, "").await, mallory_before);
}

#[tokio::test]
async fn admin_sets_the_status_of_another_user_by_user_id_or_username() {
    let app = spawn_app().await;
    let boss = admin(&app, "boss").await;
    let jane = app.login("jane").await;
    let john = app.login("john").await;
    app.connect("jane", "online").await;
    app.connect("john", "online").await;
    app.connect("boss", "online").await;

    let by_id = json!({"userId": "jane", "status": "busy", "message": "set by boss"});
    set_ok(&app, &boss, by_id).await;
    assert_eq!(
        own_status_and_message(&app, &jane).await,
        (json!("busy"), json!("set by boss"))
    );

    set_ok(&app, &boss, json!({"username": "john", "status": "away"})).await;
    assert_eq!(get_status(&app, &john, "").await["status"], "away");

    // The admin's own status is untouched.
    let own = get_status(&app, &boss, "").await;
    assert_eq!(own["status"], "online");
    assert!(own.get("message").is_none(), "{own}");
}

#[tokio::test]
async fn admin_naming_an_unknown_user_is_400_invalid_user() {
    let app = spawn_app().await;
    let boss = admin(&app, "boss").await;
    let cursor = app.stats().await["cursor"].clone();
    for body in [
        json!({"userId": "ghost", "status": "busy"}),
        json!({"username": "ghost", "status": "busy"}),
    ] {
        set(&app, &boss, body)
            .await
            .assert_error(400, "error-invalid-user");
    }
    assert_eq!(app.stats().await["cursor"], cursor, "a change was logged");
}

#[tokio::test]
async fn naming_yourself_by_user_id_or_username_needs_no_admin() {
    let app = spawn_app().await;
    let jane = app
        .login_with("jane", json!({"username": "jane.doe"}))
        .await;

    set_ok(&app, &jane, json!({"userId": "jane", "status": "busy"})).await;
    assert_eq!(get_status(&app, &jane, "").await["status"], "busy");

    set_ok(
        &app,
        &jane,
        json!({"username": "jane.doe", "status": "away"}),
    )
    .await;
    assert_eq!(get_status(&app, &jane, "").await["status"], "away");
}

#[tokio::test]
async fn set_status_with_invalid_json_is_400_and_changes_nothing() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    let john = app.login("john").await;
    let before = observe(&app, &john, &jane).await;
    for body in [
        "{\"status\": \"busy\"",
        "status=busy",
        "[\"busy\"]",
        "{\"status\": 3}",
    ] {
        set_raw(&app, &jane, body)
            .await
            .assert_error(400, "error-invalid-params");
    }
    assert_eq!(observe(&app, &john, &jane).await, before);
}

#[tokio::test]
async fn manual_status_takes_effect_without_connections_until_the_next_connection_event() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    let john = app.login("john").await;

    set_ok(&app, &jane, json!({"status": "away"})).await;
    assert_eq!(visible_status(&app, &john, "jane").await, "away");
    assert_eq!(
        get_status(&app, &john, "userId=jane").await["status"],
        "away"
    );

    // A connection event recomputes by the rule: chosen away over an online connection.
    open(&app, "c1", "jane", "online").await;
    assert_eq!(visible_status(&app, &john, "jane").await, "away");
    close(&app, "c1").await;
    assert_eq!(visible_status(&app, &john, "jane").await, "offline");

    // Chosen online without connections also shows at once, then follows the connection.
    set_ok(&app, &jane, json!({"status": "online"})).await;
    assert_eq!(visible_status(&app, &john, "jane").await, "online");
    open(&app, "c2", "jane", "away").await;
    assert_eq!(visible_status(&app, &john, "jane").await, "away");
}

#[tokio::test]
async fn invisible_user_with_an_online_connection_reads_offline_to_others() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    let john = app.login("john").await;
    app.connect("jane", "online").await;
    assert_eq!(visible_status(&app, &john, "jane").await, "online");

    set_ok(&app, &jane, json!({"status": "offline"})).await;

    assert_eq!(visible_status(&app, &john, "jane").await, "offline");
    assert!(app.presence(&john, "ids=jane").await.ids().is_empty());
    assert_eq!(
        get_status(&app, &john, "userId=jane").await,
        json!({"_id": "jane", "status": "offline", "success": true})
    );
    // A connection event does not reveal the user.
    open(&app, "c-extra", "jane", "away").await;
    assert_eq!(visible_status(&app, &john, "jane").await, "offline");
}

// ---- users.getStatus ----

#[tokio::test]
async fn get_status_of_self_has_id_status_connection_status_and_success() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    app.connect("jane", "away").await;

    assert_eq!(
        get_status(&app, &jane, "").await,
        json!({"_id": "jane", "status": "away", "connectionStatus": "away", "success": true})
    );
}

#[tokio::test]
async fn get_status_of_self_includes_the_message_only_when_set() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    app.connect("jane", "online").await;
    set_ok(
        &app,
        &jane,
        json!({"status": "busy", "message": "deep work"}),
    )
    .await;

    assert_eq!(
        get_status(&app, &jane, "").await,
        json!({
            "_id": "jane",
            "status": "busy",
            "connectionStatus": "online",
            "message": "deep work",
            "success": true
        })
    );

    set_ok(&app, &jane, json!({"message": "   "})).await;
    let own = get_status(&app, &jane, "").await;
    assert_eq!(
        keys(&own),
        ["_id", "connectionStatus", "status", "success"],
        "{own}"
    );
}

#[tokio::test]
async fn get_status_of_self_by_user_id_or_username_is_the_own_shape() {
    let app = spawn_app().await;
    let jane = app
        .login_with("jane", json!({"username": "jane.doe"}))
        .await;
    app.connect("jane", "online").await;
    let own = get_status(&app, &jane, "").await;
    assert_eq!(keys(&own), ["_id", "connectionStatus", "status", "success"]);
    assert_eq!(get_status(&app, &jane, "userId=jane").await, own);
    assert_eq!(get_status(&app, &jane, "username=jane.doe").await, own);
}

#[tokio::test]
async fn get_status_of_another_user_by_user_id_or_username_has_exactly_id_status_and_success() {
    let app = spawn_app().await;
    let jane = app
        .login_with("jane", json!({"username": "jane.doe"}))
        .await;
    let john = app.login("john").await;
    app.connect("jane", "online").await;
    set_ok(&app, &jane, json!({"status": "busy", "message": "private"})).await;

    let want = json!({"_id": "jane", "status": "busy", "success": true});
    assert_eq!(get_status(&app, &john, "userId=jane").await, want);
    assert_eq!(get_status(&app, &john, "username=jane.doe").await, want);
}

#[tokio::test]
async fn get_status_of_an_invisible_user_reads_offline_to_others_and_to_itself() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    let john = app.login("john").await;
    app.connect("jane", "online").await;
    set_ok(&app, &jane, json!({"status": "offline"})).await;

    assert_eq!(
        get_status(&app, &john, "userId=jane").await,
        json!({"_id": "jane", "status": "offline", "success": true})
    );
    let own = get_status(&app, &jane, "").await;
    assert_eq!(own["status"], "offline", "{own}");
    assert_eq!(own["connectionStatus"], "online", "{own}");
}

#[tokio::test]
async fn get_status_of_an_unknown_user_is_400_invalid_user() {
    let app = spawn_app().await;
    let jane = app.login("jane").await;
    for query in ["userId=ghost", "username=ghost"] {
        let answer = app
            .public(&jane, Method::GET, &format!("{GET}?{query}"), None)
            .await;
        answer.assert_error(400, "error-invalid-user");
    }
}

// ---- the status rule (docs/api.md §1) over HTTP ----

/// `(connections, chosen) -> visible` for every combination.
const TRUTH_TABLE: [(&[&str], &str, &str); 16] = [
    (&[], "online", "offline"),
    (&[], "away", "offline"),
    (&[], "busy", "offline"),
    (&[], "offline", "offline"),
    (&["away"], "online", "away"),
    (&["away"], "away", "away"),
    (&["away"], "busy", "busy"),
    (&["away"], "offline", "offline"),
    (&["online"], "online", "online"),
    (&["online"], "away", "away"),
    (&["online"], "busy", "busy"),
    (&["online"], "offline", "offline"),
    (&["away", "online"], "online", "online"),
    (&["away", "online"], "away", "away"),
    (&["away", "online"], "busy", "busy"),
    (&["away", "online"], "offline", "offline"),
];

#[tokio::test]
async fn visible_status_follows_the_rule_for_every_connection_set_and_chosen_status() {
    let app = spawn_app().await;
    // After the log's epoch began, so that a `from` delta can be proven complete.
    let start = now_ms();
    let viewer = app.login("viewer").await;

    for (i, (connections, chosen, _)) in TRUTH_TABLE.iter().enumerate() {
        let user = format!("u{i}");
        app.user(&user).await;
        // The manual set first: it takes effect at once, and the connection
        // events after it recompute by the rule.
        app.set_status(&user, chosen).await;
        if connections.is_empty() {
            open(&app, &format!("{user}-tmp"), &user, "online").await;
            close(&app, &format!("{user}-tmp")).await;
        }
        for (n, status) in connections.iter().enumerate() {
            open(&app, &format!("{user}-{n}"), &user, status).await;
        }
    }

    let snapshot = app.presence(&viewer, "").await;
    for (i, (connections, chosen, want)) in TRUTH_TABLE.iter().enumerate() {
        let user = format!("u{i}");
        let case = format!("connections {connections:?}, chosen {chosen}");
        let shown = snapshot.user(&user).map(|u| u["status"].clone());
        if *want == "offline" {
            assert_eq!(
                shown, None,
                "{case}: offline users are not in a full snapshot"
            );
        } else {
            assert_eq!(shown, Some(json!(want)), "{case}");
        }
        assert_eq!(
            get_status(&app, &viewer, &format!("userId={user}")).await["status"],
            *want,
            "{case}"
        );
    }

    // A `from` delta lists offline users too, with their status.
    let from = iso_ms(start);
    let delta = app.presence(&viewer, &format!("from={from}")).await;
    assert!(!delta.full());
    for (i, (connections, chosen, want)) in TRUTH_TABLE.iter().enumerate() {
        let user = delta.user(&format!("u{i}")).expect("in the delta");
        assert_eq!(
            user["status"], *want,
            "connections {connections:?}, chosen {chosen}"
        );
    }
}

#[tokio::test]
async fn closing_the_online_connection_of_an_away_and_online_user_leaves_away() {
    let app = spawn_app().await;
    let viewer = app.login("viewer").await;
    app.user("jane").await;
    open(&app, "phone", "jane", "away").await;
    open(&app, "laptop", "jane", "online").await;
    assert_eq!(visible_status(&app, &viewer, "jane").await, "online");
    close(&app, "laptop").await;
    assert_eq!(visible_status(&app, &viewer, "jane").await, "away");
    close(&app, "phone").await;
    assert_eq!(visible_status(&app, &viewer, "jane").await, "offline");
}

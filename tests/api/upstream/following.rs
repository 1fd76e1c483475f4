//! The full picture, live events, reconnection and bad input.

use super::stand_in::{user_status_frame, RcUser, StandIn};
use super::*;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// A user with every field set and this status text.
fn with_text(id: &str, status: &'static str, text: &str) -> RcUser {
    let mut user = RcUser::new(id, status);
    user.status_text = text.to_owned();
    user
}

/// A user with nothing but its username and status.
fn bare(id: &str, status: &'static str) -> RcUser {
    let mut user = RcUser::new(id, status);
    (user.name, user.utc_offset, user.avatar_etag) = (None, None, None);
    user
}

/// A chat server with a caller and users in every status.
async fn chat_server() -> StandIn {
    let upstream = StandIn::start().await;
    upstream.add_user("caller", RcUser::new("caller", "online"));
    upstream.add_user("u-away", with_text("u-away", "away", "in a meeting"));
    upstream.add_user("u-busy", bare("u-busy", "busy"));
    upstream.add_user("u-off", RcUser::new("u-off", "offline"));
    upstream
}

/// What presenced should show of `ids`, as the chat server holds them now.
fn expected(upstream_users: &[(&str, RcUser)]) -> Vec<Value> {
    let mut users: Vec<Value> = upstream_users
        .iter()
        .map(|(id, u)| u.presenced_json(id))
        .collect();
    users.sort_by(|a, b| a["_id"].as_str().cmp(&b["_id"].as_str()));
    users
}

#[tokio::test]
async fn the_full_picture_shows_every_user_not_offline_with_its_fields() {
    let upstream = chat_server().await;
    let app = following(&upstream).await;
    let login = upstream.login("caller");
    let full = app.full_state(&login).await;
    let want = expected(&[
        ("caller", RcUser::new("caller", "online")),
        ("u-away", with_text("u-away", "away", "in a meeting")),
        ("u-busy", bare("u-busy", "busy")),
    ]);
    assert_eq!(full, want);
    // The offline user is not in the picture, so presenced never heard of it.
    let ids = app.presence(&login, "ids=u-off,u-away").await;
    assert_eq!(ids.ids(), ["u-away"]);
    assert_eq!(upstream.info_calls(), 0, "the picture carries every field");
}

#[tokio::test]
async fn live_events_land_in_since_and_from_deltas_and_a_new_user_gets_its_profile() {
    let upstream = chat_server().await;
    let app = following(&upstream).await;
    let login = upstream.login("caller");
    let before = app.presence(&login, "").await;
    let from = iso_ms(next_ms());
    upstream.set_status("u-away", "online", "back");
    upstream.set_status("u-busy", "offline", "");
    upstream.set_status("caller", "away", "");
    // A user presenced has not seen: its utcOffset and avatarETag come from users.info.
    upstream.add_user("u-new", RcUser::new("u-new", "offline"));
    upstream.set_status("u-new", "busy", "new here");
    let since = format!("since={}", before.cursor());
    wait_until("the events are applied", || async {
        app.presence(&login, &since)
            .await
            .ids()
            .contains(&"u-new".to_owned())
    })
    .await;
    let delta = app.presence(&login, &since).await;
    assert!(!delta.full());
    let want = expected(&[
        ("caller", RcUser::new("caller", "away")),
        ("u-away", with_text("u-away", "online", "back")),
        ("u-busy", bare("u-busy", "offline")),
        ("u-new", with_text("u-new", "busy", "new here")),
    ]);
    assert_eq!(sorted_users(&delta.body), want);
    // `from` leaves the caller out, keeps the user who went offline.
    let by_time = app.presence(&login, &format!("from={from}")).await;
    assert_eq!(by_time.ids(), ["u-away", "u-busy", "u-new"]);
    assert_eq!(upstream.info_calls(), 1);
    // Counted just after its writes show: waited for, not raced.
    wait_until("the four events are counted", || async {
        metric(&app, "presenced_upstream_events_applied_total").await == 4.0
    })
    .await;
    // A repeated event changes nothing visible, so no delta grows.
    let after = app.presence(&login, &since).await;
    upstream.set_status("u-away", "online", "back");
    upstream.set_status("caller", "away", "");
    wait_until("the repeats are applied", || async {
        metric(&app, "presenced_upstream_events_applied_total").await == 6.0
    })
    .await;
    let unchanged = app
        .presence(&login, &format!("since={}", after.cursor()))
        .await;
    assert_eq!(unchanged.ids(), Vec::<String>::new());
}

#[tokio::test]
async fn after_a_dropped_socket_the_changes_made_meanwhile_show_in_deltas() {
    let upstream = chat_server().await;
    let app = following(&upstream).await;
    let login = upstream.login("caller");
    // Used once, so that it is cached while the chat server is away.
    let before = app.presence(&login, "").await;
    assert_eq!(metric(&app, "presenced_upstream_connected").await, 1.0);

    upstream.go_down();
    wait_ready_status(&app, 503).await;
    let down = ready(&app).await;
    assert_eq!(down.body["ready"], false);
    let reason = down.body["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("upstream: not following the chat server"),
        "{reason}"
    );
    assert_eq!(metric(&app, "presenced_upstream_connected").await, 0.0);
    // Answers go on from the last known state.
    assert_eq!(app.full_state(&login).await, sorted_users(&before.body));

    // Changed while presenced cannot hear: one goes offline, one changes its
    // text, one comes online for the first time.
    upstream.set_status("u-away", "offline", "");
    upstream.set_status("u-busy", "busy", "still busy");
    upstream.add_user("u-off", RcUser::new("u-off", "online"));
    upstream.come_back();
    wait_ready_status(&app, 200).await;

    let delta = app
        .presence(&login, &format!("since={}", before.cursor()))
        .await;
    assert!(!delta.full());
    assert_eq!(delta.ids(), ["u-away", "u-busy", "u-off"]);
    assert_eq!(delta.user("u-away").expect("u-away")["status"], "offline");
    assert_eq!(
        delta.user("u-busy").expect("u-busy")["statusText"],
        "still busy"
    );
    assert_eq!(
        delta.user("u-off").expect("u-off"),
        &RcUser::new("u-off", "online").presenced_json("u-off")
    );
    assert_eq!(
        metric(&app, "presenced_upstream_reconnects_total").await,
        1.0
    );
    assert_eq!(metric(&app, "presenced_upstream_connected").await, 1.0);
    assert!(upstream.sockets() >= 2);
    // And it follows live events again.
    upstream.set_status("u-off", "away", "");
    wait_until("the event after the reconnection is applied", || async {
        app.presence(&login, "ids=u-off").await.body["users"][0]["status"] == "away"
    })
    .await;
}

#[tokio::test]
async fn bad_input_from_the_chat_server_is_counted_and_skipped_and_the_follower_goes_on() {
    let upstream = chat_server().await;
    // Bad users in the picture itself.
    upstream.add_presence_entry(json!({"_id": "bad id!", "username": "x", "status": "online"}));
    upstream.add_presence_entry(json!({"_id": "u-odd", "username": "odd", "status": "dancing"}));
    upstream.add_presence_entry(json!({"username": "no-id"}));
    let app = following(&upstream).await;
    let login = upstream.login("caller");
    let before = app.full_state(&login).await;
    assert_eq!(before.len(), 3, "only the good users: {before:?}");

    let event = |args: Value| {
        json!({"msg": "changed", "collection": "stream-notify-logged", "id": "id",
            "fields": {"eventName": "user-status", "args": args}})
    };
    // All in one write, as a busy server sends frames.
    upstream.push_batch(vec![
        Message::Text("not json".into()),
        Message::Text("[1,2,3]".into()),
        Message::Text(r#"{"msg":"ready"}"#.into()),
        Message::Binary(vec![0xde, 0xad].into()),
        Message::Text(event(json!([["u-away", "u-away", 7]])).to_string().into()),
        Message::Text(event(json!([["bad id!", "x", 1]])).to_string().into()),
        Message::Text(event(json!([["u-away", "bad name", 1]])).to_string().into()),
        Message::Text(event(json!("nope")).to_string().into()),
    ]);
    // Then a good event: once it shows, every frame before it was read.
    let busy = with_text("u-away", "busy", "after the garbage");
    upstream.push(Message::Text(
        user_status_frame("u-away", &busy).to_string().into(),
    ));
    wait_until("the good event is applied", || async {
        app.presence(&login, "ids=u-away").await.body["users"][0]["status"] == "busy"
    })
    .await;

    let metrics = app.metrics().await;
    let bad = |kind: &str| {
        sample(
            &metrics,
            &format!("presenced_upstream_bad_input_total{{kind=\"{kind}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(bad("malformed-frame"), 4.0);
    assert_eq!(bad("unknown-status"), 2.0, "one in the picture, one event");
    assert_eq!(bad("invalid-id"), 2.0, "one in the picture, one event");
    assert_eq!(bad("invalid-username"), 1.0);
    assert_eq!(bad("malformed-event"), 1.0);
    assert_eq!(bad("malformed-user"), 1.0);
    // Nothing else changed, and the follower never dropped its socket.
    let mut after = app.full_state(&login).await;
    let away = after
        .iter_mut()
        .find(|u| u["_id"] == "u-away")
        .expect("u-away");
    assert_eq!(away["statusText"], "after the garbage");
    away["status"] = json!("away");
    away["statusText"] = json!("in a meeting");
    assert_eq!(after, before);
    assert_eq!(upstream.sockets(), 1);
    assert_eq!(ready(&app).await.status, 200);
}

#[tokio::test]
async fn ready_waits_for_the_first_picture_and_names_a_refused_service_login() {
    let upstream = chat_server().await;
    upstream.go_down();
    let app = spawn_following(&upstream, |_| {}).await;
    let not_yet = ready(&app).await;
    assert_eq!(not_yet.status, 503);
    assert!(
        not_yet.body["reason"]
            .as_str()
            .expect("reason")
            .starts_with("upstream: "),
        "{}",
        not_yet.body
    );
    upstream.come_back();
    wait_ready_status(&app, 200).await;

    let refused = chat_server().await;
    refused.refuse_service_login();
    let app = spawn_following(&refused, |_| {}).await;
    wait_not_ready_because(&app, "the service account's login").await;
}

#[tokio::test]
async fn users_set_status_is_left_to_the_chat_server() {
    let upstream = chat_server().await;
    let app = following(&upstream).await;
    let login = upstream.login("caller");
    let answer = app
        .public(
            &login,
            reqwest::Method::POST,
            "/api/v1/users.setStatus",
            Some(json!({"status": "away"})),
        )
        .await;
    let error = answer.assert_error(400, "error-not-allowed");
    assert!(error.contains("route only users.presence"), "{error}");
    // users.getStatus reads what the chat server said.
    let own = app
        .public(
            &login,
            reqwest::Method::GET,
            "/api/v1/users.getStatus",
            None,
        )
        .await;
    assert_eq!(own.body["status"], "online");
}

#[tokio::test]
async fn a_failing_picture_keeps_ready_at_503_until_it_is_taken() {
    let upstream = chat_server().await;
    upstream.fail_presence(true);
    let app = spawn_following(&upstream, |_| {}).await;
    wait_not_ready_because(&app, "GET /api/v1/users.presence: answered 500").await;
    upstream.fail_presence(false);
    wait_ready_status(&app, 200).await;
    let login = upstream.login("caller");
    assert_eq!(app.full_state(&login).await.len(), 3);
}

#[tokio::test]
async fn a_new_user_whose_profile_cannot_be_read_is_shown_with_what_the_event_says() {
    let upstream = chat_server().await;
    let app = following(&upstream).await;
    let login = upstream.login("caller");
    upstream.fail_info(true);
    upstream.add_user("u-new", RcUser::new("u-new", "offline"));
    upstream.set_status("u-new", "online", "hi");
    wait_until("the event is applied", || async {
        app.presence(&login, "ids=u-new").await.ids() == ["u-new"]
    })
    .await;
    let answer = app.presence(&login, "ids=u-new").await;
    assert_eq!(
        answer.body["users"][0],
        json!({"_id": "u-new", "username": "u-new", "name": "Name of u-new",
            "status": "online", "statusText": "hi"})
    );
    assert_eq!(
        metric(
            &app,
            r#"presenced_upstream_bad_input_total{kind="user-info-failed"}"#
        )
        .await,
        1.0
    );
    // Known now: its next event needs no lookup.
    upstream.fail_info(false);
    upstream.set_status("u-new", "away", "");
    wait_until("the next event is applied", || async {
        app.presence(&login, "ids=u-new").await.body["users"][0]["status"] == "away"
    })
    .await;
    assert_eq!(upstream.info_calls(), 1, "only the one that failed");
}

#[tokio::test]
async fn pings_are_answered_and_a_silent_socket_is_pinged_then_given_up() {
    let upstream = chat_server().await;
    let app = spawn_following(&upstream, |s| {
        s.upstream.heartbeat = Duration::from_millis(200);
    })
    .await;
    crate::cluster::wait_ready(&app).await;
    upstream.push(Message::Text(r#"{"msg":"ping","id":"p-1"}"#.into()));
    wait_until("the ping is answered", || async {
        upstream
            .heartbeats()
            .contains(&json!({"msg": "pong", "id": "p-1"}))
    })
    .await;
    // The stand-in goes quiet: presenced pings it, then reconnects.
    upstream.mute(true);
    wait_until("presenced gives the silent socket up", || async {
        upstream.sockets() >= 2
    })
    .await;
    assert!(upstream.heartbeats().contains(&json!({"msg": "ping"})));
    upstream.mute(false);
    wait_ready_status(&app, 200).await;
    wait_until("the reconnection is counted", || async {
        metric(&app, "presenced_upstream_reconnects_total").await >= 1.0
    })
    .await;
}

#[tokio::test]
async fn upstream_mode_with_another_source_of_truth_stops_start_up_naming_both_keys() {
    let mut settings = test_settings();
    settings.upstream.url = Some("http://127.0.0.1:1".to_owned());
    settings.upstream.user_id = Some("svc".to_owned());
    settings.upstream.token = Some("tok".to_owned());
    // test_settings has an ingest token.
    let error = presenced::Application::build(&settings, false)
        .err()
        .expect("refused");
    let message = error.to_string();
    assert!(
        message.starts_with("upstream.url cannot be combined with this: ingest.token is set"),
        "{message}"
    );
    settings.ingest.token = None;
    settings.upstream.token = None;
    let message = presenced::Application::build(&settings, false)
        .err()
        .expect("refused")
        .to_string();
    assert!(message.contains("upstream.token"), "{message}");
}

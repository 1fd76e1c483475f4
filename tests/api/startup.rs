//! Building the application: settings it cannot honour together are refused, not ignored.

use crate::helpers::*;
use presenced::Application;

#[tokio::test]
async fn cluster_mode_with_a_snapshot_file_or_the_demo_stops_start_up_with_the_key_named() {
    let mut settings = test_settings();
    settings.cluster.redis_url = Some("redis://127.0.0.1:1".into());
    settings.persistence.path = Some("/tmp/presenced-never-written.snapshot".into());
    let error = Application::build(&settings, false).err().expect("refused");
    assert!(
        error.to_string().starts_with("cluster.redis_url"),
        "{error}"
    );
    assert!(error.to_string().contains("persistence.path"), "{error}");
    settings.persistence.path = None;
    let error = Application::build(&settings, true).err().expect("refused");
    assert!(error.to_string().contains("--demo"), "{error}");
}

#[tokio::test]
async fn a_redis_url_the_client_cannot_use_stops_start_up_without_echoing_it() {
    let mut settings = test_settings();
    settings.cluster.redis_url = Some("redis://:hunter2@127.0.0.1:notaport".into());
    let error = Application::build(&settings, false).err().expect("refused");
    let message = error.to_string();
    assert!(message.starts_with("cluster.redis_url"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn the_demo_seed_answers_the_upstream_example_request() {
    let app = spawn_settings(&test_settings(), true).await;
    let caller = Login {
        id: presenced::demo::CALLER_ID.to_owned(),
        token: presenced::demo::CALLER_TOKEN.to_owned(),
    };
    let answer = app.presence(&caller, "").await;
    assert!(answer.full());
    assert_eq!(
        answer.user("rocket.cat").expect("rocket.cat is online"),
        &serde_json::json!({"_id": "rocket.cat", "name": "Rocket.Cat", "username": "rocket.cat",
                            "status": "online", "utcOffset": 0, "avatarETag": "5BB9B5ny5DkKdrwkq"})
    );
    assert_eq!(
        answer
            .user("rocketchat.internal.admin.test")
            .expect("admin test user is online"),
        &serde_json::json!({"_id": "rocketchat.internal.admin.test", "name": "RocketChat Internal Admin Test",
                            "username": "rocketchat.internal.admin.test", "status": "online",
                            "utcOffset": -2, "avatarETag": "iEbEm4bTT327NJjXt"})
    );
    assert!(
        answer.user(presenced::demo::CALLER_ID).is_none(),
        "the caller has no connection"
    );
    let simulated = answer
        .ids()
        .iter()
        .filter(|id| id.starts_with("sim"))
        .count();
    assert!(simulated > 0, "some simulated users are online");
}

#[tokio::test]
async fn a_placeholder_ingest_token_is_refused_on_a_non_loopback_bind() {
    for (bind, token) in [
        ("0.0.0.0:0", "changeme"),
        ("0.0.0.0:0", "change-me"),
        ("[::]:0", "Secret"),
        ("0.0.0.0:0", "token"),
        ("0.0.0.0:0", "password"),
        ("0.0.0.0:0", presenced::demo::INGEST_TOKEN),
    ] {
        let mut settings = test_settings();
        settings.server.bind = bind.parse().expect("address");
        settings.ingest.token = Some(token.to_owned());
        let error = Application::build(&settings, false)
            .err()
            .unwrap_or_else(|| panic!("{token} on {bind} was accepted"));
        let message = error.to_string();
        assert!(
            message.starts_with("ingest.token is a well-known placeholder"),
            "{message}"
        );
        assert!(message.contains("PRESENCED_INGEST_TOKEN"), "{message}");
    }
    // --demo without a token of its own would use its published one.
    let mut settings = test_settings();
    settings.server.bind = "0.0.0.0:0".parse().expect("address");
    settings.ingest.token = None;
    assert!(Application::build(&settings, true).is_err());
}

#[tokio::test]
async fn a_loopback_bind_may_use_a_placeholder_token() {
    let mut settings = test_settings();
    settings.ingest.token = Some("changeme".to_owned());
    let app = spawn_settings(&settings, false).await;
    let answer = send(
        app.internal(reqwest::Method::GET, "/stats")
            .bearer_auth("changeme"),
    )
    .await;
    assert_eq!(answer.status, reqwest::StatusCode::OK, "{}", answer.body);
}

//! Building the application: settings it cannot honour yet are refused, not ignored.

use crate::helpers::*;
use presenced::Application;

/// Sets one setting on the settings a test starts from.
type Setter = fn(&mut presenced::Settings);

#[tokio::test]
async fn settings_for_features_not_built_yet_stop_start_up_with_the_key_named() {
    let cases: [(&str, Setter); 2] = [
        ("persistence.path", |s| {
            s.persistence.path = Some("/tmp/presenced.snapshot".into())
        }),
        ("cluster.redis_url", |s| {
            s.cluster.redis_url = Some("redis://127.0.0.1:6379".into())
        }),
    ];
    for (key, set) in cases {
        let mut settings = test_settings();
        set(&mut settings);
        let error = Application::build(&settings, false).err().expect("refused");
        assert!(error.to_string().starts_with(key), "{error}");
    }
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

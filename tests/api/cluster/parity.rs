//! The status rules exist twice: in Rust for a single process, in Lua for a
//! cluster. The same op sequences, sent to one of each, must get the same
//! answers and leave the same state.

use super::{replica, TestRedis};
use crate::helpers::*;
use crate::invariant::{request, RandomOp};
use reqwest::Method;
use serde_json::{json, Value};

/// What must agree of a write's answer: not the cursor, whose numbering differs.
fn outcome(answer: &Answer) -> Value {
    json!({
        "status": answer.status.as_u16(),
        "changed": answer.body["changed"],
        "closed": answer.body["closed"],
        "errorType": answer.body["errorType"],
    })
}

/// One more op the shared random ops lack: the public `users.setStatus`,
/// with and without a status, by an admin on behalf of a user.
fn public_status(rng: &mut fastrand::Rng) -> Value {
    let user = format!("u{}", rng.u8(0..6));
    let message = ["", "hi", " lunch "][rng.usize(0..3)];
    let status = ["online", "away", "busy", "offline"][rng.usize(0..4)];
    match rng.u8(0..3) {
        0 => json!({"userId": user, "message": message}),
        1 => json!({"userId": user, "status": status}),
        _ => json!({"userId": user, "status": "busy", "message": "x"}),
    }
}

#[tokio::test]
#[cfg_attr(presenced_without_redis, ignore = "needs redis-server on PATH")]
async fn lua_and_rust_give_the_same_answers_and_state_for_the_same_ops() {
    let redis = TestRedis::start();
    let single = spawn_app().await;
    let cluster = replica(&redis).await;
    let mut admins = Vec::new();
    for app in [&single, &cluster] {
        app.put_user("root", json!({"username": "root", "roles": ["admin"]}))
            .await;
        app.add_token("root", json!({"token": "token-of-root"}))
            .await;
        admins.push(Login {
            id: "root".into(),
            token: "token-of-root".into(),
        });
    }
    let root = &admins[0];
    for seed in 0..3u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        for step in 0..120 {
            let answers = if rng.u8(0..8) == 0 {
                let body = public_status(&mut rng);
                let mut answers = Vec::new();
                for app in [&single, &cluster] {
                    let answer = app
                        .public(
                            root,
                            Method::POST,
                            "/api/v1/users.setStatus",
                            Some(body.clone()),
                        )
                        .await;
                    answers.push((outcome(&answer), format!("setStatus {body}")));
                }
                answers
            } else {
                let op = RandomOp::draw(&mut rng);
                let (method, path, body) = request(op);
                let mut answers = Vec::new();
                for app in [&single, &cluster] {
                    let answer = app.ingest(method.clone(), &path, body.clone()).await;
                    answers.push((outcome(&answer), format!("{method} {path} {body:?}")));
                }
                answers
            };
            assert_eq!(answers[0], answers[1], "seed {seed} step {step}");
            if step % 10 == 9 {
                assert_eq!(
                    single.full_state(root).await,
                    cluster.full_state(root).await,
                    "seed {seed} step {step}"
                );
                for user in 0..6 {
                    let path = format!("/api/v1/users.getStatus?userId=u{user}");
                    let mut bodies = Vec::new();
                    for app in [&single, &cluster] {
                        bodies.push(app.public(root, Method::GET, &path, None).await.body);
                    }
                    assert_eq!(bodies[0], bodies[1], "seed {seed} step {step} u{user}");
                }
            }
        }
    }
}

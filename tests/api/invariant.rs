//! The delta invariant (docs/api.md §2, promise 2) over HTTP: a full snapshot plus the deltas
//! since its cursor (or since a time before it) equals the next full snapshot.
//! Checked on random op sequences, and with concurrent writers while readers poll.

use crate::helpers::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const USERS: u8 = 6;
const CONNECTIONS: u8 = 8;

/// One random write, as an index into a small universe so that ops collide.
#[derive(Debug, Clone, Copy)]
pub struct RandomOp {
    pub kind: u8,
    pub a: u8,
    pub b: u8,
}

impl RandomOp {
    /// A random op drawn from `rng`.
    pub fn draw(rng: &mut fastrand::Rng) -> RandomOp {
        RandomOp {
            kind: rng.u8(0..9),
            a: rng.u8(..),
            b: rng.u8(..),
        }
    }
}

fn random_op() -> impl Strategy<Value = RandomOp> {
    (0u8..9, any::<u8>(), any::<u8>()).prop_map(|(kind, a, b)| RandomOp { kind, a, b })
}

/// The internal-API request an op stands for: (method, path, body).
pub fn request(op: RandomOp) -> (Method, String, Option<Value>) {
    let user = format!("u{}", op.a % USERS);
    let connection = format!("c{}", op.b % CONNECTIONS);
    // A connection id always belongs to the same user, so ops don't conflict.
    let owner = format!("u{}", (op.b % CONNECTIONS) % USERS);
    let pick = |choices: &[&'static str]| choices[usize::from(op.b) % choices.len()];
    match op.kind {
        0 => (
            Method::PUT,
            format!("/users/{user}"),
            Some(
                json!({"username": user, "name": pick(&["", "Ann", "Bob"]), "utcOffset": op.b % 3}),
            ),
        ),
        1 => (Method::DELETE, format!("/users/{user}"), None),
        2 => (
            Method::PUT,
            format!("/users/{user}/status"),
            Some(
                json!({"status": pick(&["online", "away", "busy", "offline"]), "statusText": pick(&["", "hi", "lunch"])}),
            ),
        ),
        3 | 4 => (
            Method::PUT,
            format!("/connections/{connection}"),
            Some(
                json!({"userId": owner, "status": pick(&["online", "away"]), "instanceId": format!("i{}", op.a % 2)}),
            ),
        ),
        5 => (Method::DELETE, format!("/connections/{connection}"), None),
        6 => (Method::DELETE, format!("/instances/i{}", op.a % 2), None),
        7 => (
            Method::PUT,
            format!("/users/{user}"),
            Some(json!({"username": user, "active": op.b % 4 != 0})),
        ),
        _ => (
            Method::PUT,
            format!("/users/{owner}"),
            Some(json!({"username": owner})),
        ),
    }
}

/// Applies a request; refusals (a connection of a deleted user, say) are part of the game.
pub async fn send(app: &TestApp, op: RandomOp) {
    let (method, path, body) = request(op);
    let answer = app.ingest(method, &path, body).await;
    assert!(
        answer.status == 200 || answer.status == 400,
        "{path}: {} {}",
        answer.status,
        answer.body
    );
}

pub type Mirror = BTreeMap<String, Value>;

pub fn mirror_of(body: &Value) -> Mirror {
    sorted_users(body)
        .into_iter()
        .map(|u| (u["_id"].as_str().unwrap_or_default().to_owned(), u))
        .collect()
}

/// What a client does with a delta: offline (or deleted) users leave its roster.
pub fn apply_delta(mirror: &mut Mirror, body: &Value) {
    for user in body["users"].as_array().into_iter().flatten() {
        let id = user["_id"].as_str().unwrap_or_default().to_owned();
        if user["status"] == "offline" {
            mirror.remove(&id);
        } else {
            mirror.insert(id, user.clone());
        }
    }
}

#[test]
fn snapshot_plus_deltas_equals_the_next_snapshot_for_random_op_sequences() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (app, caller) = runtime.block_on(async {
        let app = spawn_app().await;
        let caller = app.login("caller").await;
        (app, caller)
    });
    let mut runner = TestRunner::new(Config {
        cases: 40,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(random_op(), 1..40), |ops| {
        runtime.block_on(async {
            let from = now_ms();
            let before = app.presence(&caller, "").await;
            for op in &ops {
                send(&app, *op).await;
            }
            let since = app
                .presence(&caller, &format!("since={}", before.cursor()))
                .await;
            let by_time = app
                .presence(&caller, &format!("from={}", iso_ms(from)))
                .await;
            let after = app.presence(&caller, "").await;
            prop_assert!(
                !since.full() && !by_time.full(),
                "the log covers these deltas"
            );
            let want = mirror_of(&after.body);
            for delta in [&since, &by_time] {
                let mut mirror = mirror_of(&before.body);
                apply_delta(&mut mirror, &delta.body);
                prop_assert_eq!(&mirror, &want, "ops {:?}", ops);
            }
            // Applying the since-delta's cursor onward yields nothing more.
            let rest = app
                .presence(&caller, &format!("since={}", since.cursor()))
                .await;
            prop_assert_eq!(rest.ids().len(), 0);
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Polls `since` (or `from`) until told to stop, keeping a roster the way a client does.
async fn follow(
    app: &TestApp,
    caller: &Login,
    by_time: bool,
    stop: &AtomicBool,
) -> (Mirror, usize) {
    let first = app.presence(caller, "").await;
    let mut mirror = mirror_of(&first.body);
    let mut cursor = first.cursor();
    let mut from = now_ms();
    let mut polls = 0;
    loop {
        // Read the flag before polling: the last poll then sees every write.
        let last = stop.load(Ordering::SeqCst);
        let sent_at = now_ms();
        let query = if by_time {
            format!("from={}", iso_ms(from))
        } else {
            format!("since={cursor}")
        };
        let answer = app.presence(caller, &query).await;
        assert!(!answer.full(), "the log covers every poll");
        apply_delta(&mut mirror, &answer.body);
        cursor = answer.cursor();
        from = sent_at;
        polls += 1;
        if last {
            return (mirror, polls);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pollers_converge_on_the_full_state_while_writers_run_concurrently() {
    let app = Arc::new(spawn_app().await);
    let caller = app.login("caller").await;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = [false, true]
        .into_iter()
        .map(|by_time| {
            let (app, caller, stop) = (app.clone(), caller.clone(), stop.clone());
            tokio::spawn(async move { follow(&app, &caller, by_time, &stop).await })
        })
        .collect();
    let writers: Vec<_> = (0..4u64)
        .map(|seed| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed);
                for _ in 0..150 {
                    send(&app, RandomOp::draw(&mut rng)).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    stop.store(true, Ordering::SeqCst);
    let want = mirror_of(&app.presence(&caller, "").await.body);
    for reader in readers {
        let (mirror, polls) = reader.await.expect("reader");
        assert!(polls > 1, "the reader polled while writers ran");
        assert_eq!(mirror, want);
    }
}

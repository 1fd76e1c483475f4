//! Replicas agree: writes through one show on all, cursors mean the same on
//! every replica, and the delta invariant holds across them.

use super::{replica, replica_with, wait_for_state, wait_known, TestRedis};
use crate::helpers::*;
use crate::invariant::{apply_delta, mirror_of, send as send_op, RandomOp};
use reqwest::Method;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[tokio::test]
#[cfg_attr(presenced_without_redis, ignore = "needs redis-server on PATH")]
async fn writes_through_one_replica_are_visible_and_authenticate_on_the_others() {
    let redis = TestRedis::start();
    let (a, b, c) = (
        replica(&redis).await,
        replica(&redis).await,
        replica(&redis).await,
    );
    let jane = a
        .login_with("jane", json!({"username": "jane", "name": "Jane"}))
        .await;
    a.connect("jane", "online").await;
    a.set_status("jane", "busy").await;
    let want = vec![json!({"_id": "jane", "username": "jane", "name": "Jane", "status": "busy"})];
    for replica in [&a, &b, &c] {
        // A write answers once its own replica applied it: no wait on A.
        wait_for_state(replica, &jane, &want).await;
        let own = replica
            .public(&jane, Method::GET, "/api/v1/users.getStatus", None)
            .await;
        assert_eq!(own.body["connectionStatus"], "online", "{}", own.body);
    }
    assert_eq!(a.full_state(&jane).await, want, "read your writes on A");
    // A revoked token stops working everywhere.
    a.revoke_token("jane", json!({"token": jane.token})).await;
    for replica in [&b, &c] {
        wait_until("the revoked token is refused", || async {
            replica
                .public(&jane, Method::GET, "/api/v1/users.presence", None)
                .await
                .status
                == 401
        })
        .await;
    }
}

#[tokio::test]
#[cfg_attr(presenced_without_redis, ignore = "needs redis-server on PATH")]
async fn a_cursor_from_one_replica_gives_exactly_the_later_changes_on_another() {
    let redis = TestRedis::start();
    let (a, b) = (replica(&redis).await, replica(&redis).await);
    let caller = a.login("caller").await;
    for user in ["u1", "u2", "u3"] {
        a.user(user).await;
        a.connect(user, "online").await;
    }
    let before = a.presence(&caller, "").await;
    wait_known(&b, &caller).await;
    b.set_status("u2", "away").await;
    a.disconnect("u3").await;
    let answer = a
        .ingest_ok(Method::PUT, "/users/u4", Some(json!({"username": "u4"})))
        .await;
    let last = answer["cursor"].as_str().expect("cursor").to_owned();
    // B may not have applied A's last write yet: the delta waits for it.
    let delta = b
        .presence(&caller, &format!("since={}", before.cursor()))
        .await;
    assert!(!delta.full(), "{}", delta.body);
    assert_eq!(delta.ids(), ["u2", "u3", "u4"]);
    assert_eq!(delta.user("u3").expect("u3")["status"], "offline");
    assert_eq!(
        delta.cursor(),
        last,
        "the cursor is the same on every replica"
    );
    let rest = a.presence(&caller, &format!("since={last}")).await;
    assert!(!rest.full() && rest.ids().is_empty(), "{}", rest.body);
}

#[tokio::test]
#[cfg_attr(presenced_without_redis, ignore = "needs redis-server on PATH")]
async fn a_cursor_no_replica_has_reached_gets_the_full_answer_not_a_gap() {
    let redis = TestRedis::start();
    let a = replica(&redis).await;
    let caller = a.login("caller").await;
    let cursor = a.presence(&caller, "").await.cursor();
    let (epoch, seq) = cursor.split_once('.').expect("epoch.seq");
    let seq = u64::from_str_radix(seq, 16).expect("hex");
    let ahead = format!("{epoch}.{:x}", seq + (1 << 40));
    let answer = a.presence(&caller, &format!("since={ahead}")).await;
    assert!(answer.full(), "{}", answer.body);
    let other_epoch = a.presence(&caller, &format!("since=1.{seq:x}")).await;
    assert!(other_epoch.full());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(presenced_without_redis, ignore = "needs redis-server on PATH")]
async fn snapshot_plus_deltas_equals_the_snapshot_across_replicas_under_concurrent_writers() {
    let redis = TestRedis::start();
    let replicas = Arc::new([replica(&redis).await, replica(&redis).await]);
    let caller = replicas[0].login("caller").await;
    wait_known(&replicas[1], &caller).await;
    let stop = Arc::new(AtomicBool::new(false));
    // The reader alternates replicas: each cursor is used on the other one.
    let reader = {
        let (replicas, caller, stop) = (replicas.clone(), caller.clone(), stop.clone());
        tokio::spawn(async move {
            let first = replicas[0].presence(&caller, "").await;
            let mut mirror = mirror_of(&first.body);
            let mut cursor = first.cursor();
            let mut polls = 0usize;
            loop {
                let last = stop.load(Ordering::SeqCst);
                let replica = &replicas[polls % 2];
                let answer = replica.presence(&caller, &format!("since={cursor}")).await;
                if answer.full() {
                    // The other replica was too far behind to wait for: a
                    // client starts over from the full answer, never a gap.
                    mirror = mirror_of(&answer.body);
                } else {
                    apply_delta(&mut mirror, &answer.body);
                }
                cursor = answer.cursor();
                polls += 1;
                if last {
                    return (mirror, cursor, polls);
                }
            }
        })
    };
    let writers: Vec<_> = (0..4u64)
        .map(|seed| {
            let replicas = replicas.clone();
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed);
                for _ in 0..100 {
                    send_op(&replicas[seed as usize % 2], RandomOp::draw(&mut rng)).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    // Every write is acknowledged; the last poll starts after this flag.
    stop.store(true, Ordering::SeqCst);
    let (mut mirror, cursor, polls) = reader.await.expect("reader");
    assert!(polls > 1);
    // The last poll may have run on a replica still catching up: one more
    // delta from its cursor, on each replica, finishes the picture.
    for replica in replicas.iter() {
        let want_cursor = replicas[0].presence(&caller, "").await.cursor();
        wait_until("both replicas reached the same head", || async {
            replica.presence(&caller, "").await.cursor() == want_cursor
        })
        .await;
        let rest = replica.presence(&caller, &format!("since={cursor}")).await;
        assert!(!rest.full());
        let mut mine = mirror.clone();
        apply_delta(&mut mine, &rest.body);
        assert_eq!(mine, mirror_of(&replica.presence(&caller, "").await.body));
        mirror = mine;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(presenced_without_redis, ignore = "needs redis-server on PATH")]
async fn a_replica_stopped_and_started_again_mid_traffic_converges() {
    let redis = TestRedis::start();
    let a = Arc::new(replica(&redis).await);
    let caller = a.login("caller").await;
    let writer = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(7);
            for _ in 0..300 {
                send_op(&a, RandomOp::draw(&mut rng)).await;
            }
        })
    };
    let b = replica(&redis).await;
    wait_until("B has seen some of the traffic", || async {
        !b.presence(&caller, "").await.ids().is_empty()
    })
    .await;
    b.stop().await;
    drop(b);
    let b = replica(&redis).await;
    writer.await.expect("writer");
    let want = a.full_state(&caller).await;
    wait_for_state(&b, &caller, &want).await;
}

#[tokio::test]
#[cfg_attr(presenced_without_redis, ignore = "needs redis-server on PATH")]
async fn a_cursor_from_before_a_replica_started_gets_the_full_answer_there() {
    let redis = TestRedis::start();
    let a = replica(&redis).await;
    let caller = a.login("caller").await;
    let before = a.presence(&caller, "").await.cursor();
    a.user("u1").await;
    a.connect("u1", "online").await;
    let b = replica_with(&redis, |s| {
        s.presence.delta_window = std::time::Duration::from_secs(60)
    })
    .await;
    let answer = b.presence(&caller, &format!("since={before}")).await;
    assert!(answer.full(), "{}", answer.body);
    assert_eq!(answer.ids(), ["u1"]);
    // From B's own starting point on, deltas work.
    let start = answer.cursor();
    a.set_status("u1", "away").await;
    wait_until("B shows the change as a delta", || async {
        let delta = b.presence(&caller, &format!("since={start}")).await;
        !delta.full() && delta.ids() == ["u1"]
    })
    .await;
    // And `from` before B started is not provable there.
    let from = b
        .presence(&caller, &format!("from={}", iso_ms(now_ms() - 30_000)))
        .await;
    assert!(from.full());
}

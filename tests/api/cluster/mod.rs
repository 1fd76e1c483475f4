//! Cluster mode (issue 6) against a real `redis-server` on a free loopback
//! port, with several in-process replicas on their own ports. Built on a machine
//! without `redis-server` on the PATH, these tests are reported as ignored, with
//! the reason, unless `PRESENCED_REQUIRE_REDIS=1` (CI sets it), when they run and
//! fail: see `build.rs`.

mod failures;
mod parity;
mod replication;
mod server;

use crate::helpers::*;
use presenced::config::Settings;
pub use server::{CutProxy, TestRedis};

/// A replica of the cluster on `redis`, ready (loaded from Redis).
pub async fn replica(redis: &TestRedis) -> TestApp {
    replica_with(redis, |_| {}).await
}

/// A replica with settings of its own, ready.
pub async fn replica_with(redis: &TestRedis, configure: impl FnOnce(&mut Settings)) -> TestApp {
    replica_at(redis.url(), configure).await
}

/// A replica of the Redis at `url`, ready.
pub async fn replica_at(url: String, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let app = spawn_app_with(|s| {
        s.cluster.redis_url = Some(url);
        configure(s);
    })
    .await;
    wait_ready(&app).await;
    app
}

/// Polls `/ready` until it answers 200.
pub async fn wait_ready(app: &TestApp) {
    wait_until("the replica is ready", || async {
        ready_status(app).await == 200
    })
    .await;
}

/// The status `/ready` answers.
pub async fn ready_status(app: &TestApp) -> u16 {
    match app.client.get(app.url("/ready")).send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// Polls `app` until the full snapshot, as `login` reads it, equals `want`
/// (the replica may not know `login` yet: 401 until then).
pub async fn wait_for_state(app: &TestApp, login: &Login, want: &[serde_json::Value]) {
    wait_until("the replica shows the expected state", || async {
        let answer = app
            .public(login, reqwest::Method::GET, "/api/v1/users.presence", None)
            .await;
        answer.status == 200 && sorted_users(&answer.body) == want
    })
    .await;
}

/// Polls `app` until it authenticates `login` (created through another replica).
pub async fn wait_known(app: &TestApp, login: &Login) {
    wait_until("the replica knows the login", || async {
        app.public(login, reqwest::Method::GET, "/api/v1/users.presence", None)
            .await
            .status
            == 200
    })
    .await;
}

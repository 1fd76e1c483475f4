//! Persistence across restarts (docs/configuration.md), in process: a server with a snapshot
//! file in a temporary directory is stopped as SIGTERM would stop it, and a new
//! one started from the same file. The real binary under signals is in `signals`.

use crate::helpers::*;
use presenced::config::Settings;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SNAPSHOT: &str = "presence.snapshot";

/// Test settings writing `dir/presence.snapshot`, only at start and on stop
/// unless `interval` says otherwise.
fn persisted_in(dir: &Path) -> Settings {
    let mut settings = test_settings();
    settings.persistence.path = Some(dir.join(SNAPSHOT));
    settings.persistence.interval = Duration::from_secs(3600);
    settings
}

/// A server started from the settings' snapshot, and the task serving it.
struct Serving {
    app: TestApp,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

fn start(settings: &Settings) -> Serving {
    let (app, served) = spawn_serving(settings, false);
    Serving { app, served }
}

impl Serving {
    /// Stops as SIGTERM would and waits for the final snapshot.
    async fn stop(self) {
        self.app.stop().await;
        self.served
            .await
            .expect("the serving task ends")
            .expect("the final snapshot is written");
    }
}

/// What a user sees of itself (`users.getStatus`).
async fn own_status(app: &TestApp, login: &Login) -> Value {
    let answer = app
        .public(login, Method::GET, "/api/v1/users.getStatus", None)
        .await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{}: {}",
        login.id,
        answer.body
    );
    answer.body
}

async fn ready(app: &TestApp) -> (StatusCode, Value) {
    let answer = send(app.client.get(app.url("/ready"))).await;
    (answer.status, answer.body)
}

/// Everything the service shows of its users: the full answer, each login's
/// own status, and the counts.
async fn everything(app: &TestApp, logins: &[Login]) -> Value {
    let mut own = Vec::new();
    for login in logins {
        own.push(own_status(app, login).await);
    }
    let stats = app.stats().await;
    json!({
        "full": app.full_state(&logins[0]).await,
        "own": own,
        "counts": [stats["users"], stats["online"], stats["connections"]],
    })
}

#[tokio::test]
async fn a_restart_brings_back_users_tokens_statuses_and_connections_in_a_new_epoch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = persisted_in(dir.path());
    let first = start(&settings);
    let app = &first.app;
    let watcher = app.login("watcher").await;
    let jane = app
        .login_with(
            "jane",
            json!({"username": "jane", "name": "Jane Doe", "utcOffset": 5.5, "avatarETag": "e1"}),
        )
        .await;
    app.ingest_ok(
        Method::PUT,
        "/connections/c1",
        Some(json!({"userId": "jane", "status": "online", "instanceId": "node-a"})),
    )
    .await;
    app.ingest_ok(
        Method::PUT,
        "/connections/c2",
        Some(json!({"userId": "jane", "status": "away", "instanceId": "node-b"})),
    )
    .await;
    app.ingest_ok(
        Method::PUT,
        "/users/jane/status",
        Some(json!({"status": "busy", "statusText": "in a meeting"})),
    )
    .await;
    let joe = app.login("joe").await;
    app.connect("joe", "away").await;
    let kim = app.login("kim").await;
    app.add_token("kim", json!({"hashedToken": hashed("kims-other-device")}))
        .await;
    app.set_status("kim", "busy").await; // a manual set, without any connection
    app.put_user("boss", json!({"username": "boss", "roles": ["admin"]}))
        .await;
    app.add_token("boss", json!({"token": "boss-token"})).await;
    app.put_user("gone", json!({"username": "gone", "active": false}))
        .await;
    app.connect("gone", "online").await;
    app.user("deleted").await;
    app.ingest_ok(Method::DELETE, "/users/deleted", None).await;
    let logins = [watcher.clone(), jane.clone(), joe, kim.clone()];
    let before = everything(app, &logins).await;
    let old_cursor = app.presence(&watcher, "").await.cursor();
    let old_from = iso_ms(now_ms() - 1_000);
    first.stop().await;
    assert!(dir.path().join(SNAPSHOT).is_file());

    let second = start(&settings);
    let app = &second.app;
    assert_eq!(everything(app, &logins).await, before);
    assert_eq!(
        own_status(app, &jane).await,
        json!({"_id": "jane", "status": "busy", "connectionStatus": "online",
               "message": "in a meeting", "success": true})
    );
    let kim_elsewhere = Login {
        id: "kim".into(),
        token: "kims-other-device".into(),
    };
    assert_eq!(own_status(app, &kim_elsewhere).await["status"], "busy");
    // Roles came back: the admin may still act on another user.
    let boss = Login {
        id: "boss".into(),
        token: "boss-token".into(),
    };
    let answer = app
        .public(
            &boss,
            Method::POST,
            "/api/v1/users.setStatus",
            Some(json!({"userId": "joe", "status": "away"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

    // Cursors and times from before the restart get the full answer.
    let answer = app.presence(&watcher, &format!("since={old_cursor}")).await;
    assert!(answer.full(), "{}", answer.body);
    assert!(answer.user("jane").is_some());
    assert!(app
        .presence(&watcher, &format!("from={old_from}"))
        .await
        .full());
    // A cursor of the new epoch gets deltas as usual.
    let cursor = app.presence(&watcher, "").await.cursor();
    app.ingest_ok(Method::DELETE, "/instances/node-a", None)
        .await;
    let answer = app.presence(&watcher, &format!("since={cursor}")).await;
    assert!(!answer.full());
    // jane's online connection was node-a's; her choice, busy, still shows.
    assert_eq!(
        own_status(app, &jane).await["connectionStatus"],
        "away",
        "instances came back with their connections"
    );
    second.stop().await;
}

#[tokio::test]
async fn a_connection_whose_ttl_ran_out_while_stopped_expires_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = persisted_in(dir.path());
    let first = start(&settings);
    let watcher = first.app.login("watcher").await;
    first.app.user("jane").await;
    first.app.connect("jane", "online").await;
    let refreshed_by = now_ms();
    first.stop().await;

    // The next start's TTL is 1 s: wait until more than that has passed
    // since the last refresh (a bounded wait for a condition on the clock).
    settings.presence.connection_ttl = Duration::from_secs(1);
    wait_until("a second has passed since the refresh", || async {
        now_ms() > refreshed_by + 1_000
    })
    .await;
    let second = start(&settings);
    let app = &second.app;
    wait_until("the stale connection expired", || async {
        app.stats().await["connections"] == 0
    })
    .await;
    let stats = app.stats().await;
    assert_eq!(
        (stats["users"].clone(), stats["expiredConnections"].clone()),
        (json!(2), json!(1))
    );
    assert!(app.full_state(&watcher).await.is_empty(), "jane is offline");
    second.stop().await;
}

#[tokio::test]
async fn a_missing_snapshot_is_a_fresh_start_that_writes_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = persisted_in(dir.path());
    let path = dir.path().join(SNAPSHOT);
    let serving = start(&settings);
    assert_eq!(serving.app.stats().await["users"], 0);
    wait_until("the first snapshot is written", || async { path.is_file() }).await;
    assert_eq!(ready(&serving.app).await.0, StatusCode::OK);
    let loaded = presenced::persistence::load(&path, &Default::default())
        .expect("a valid snapshot")
        .expect("a file");
    assert_eq!(loaded.users, 0);
    serving.stop().await;
}

/// `dir/blocker/presence.snapshot`, with `blocker` a regular file: writing
/// there fails whoever runs the test, root included.
pub(crate) fn under_a_regular_file(dir: &Path) -> (PathBuf, PathBuf) {
    let blocker = dir.join("blocker");
    std::fs::write(&blocker, b"not a directory").expect("blocker written");
    (blocker.clone(), blocker.join(SNAPSHOT))
}

/// Waits until `/ready` reports that writing `path` fails, then checks that
/// the service still serves reads and writes (creating user `jane`).
pub(crate) async fn failing_writes_leave_it_serving(app: &TestApp, path: &Path) {
    wait_until("/ready reports the failed write", || async {
        ready(app).await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let (_, body) = ready(app).await;
    assert_eq!(body["ready"], false);
    let reason = body["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with(&format!("persistence: {}: cannot create ", path.display())),
        "{reason}"
    );
    assert!(reason.contains("Not a directory"), "{reason}");
    let jane = app.login("jane").await;
    app.connect("jane", "online").await;
    assert!(app.presence(&jane, "").await.user("jane").is_some());
}

#[tokio::test]
async fn an_unwritable_path_shows_in_ready_while_serving_and_clears_once_a_write_succeeds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (blocker, path) = under_a_regular_file(dir.path());
    let mut settings = persisted_in(dir.path());
    settings.persistence.path = Some(path.clone());
    settings.persistence.interval = Duration::from_secs(1);
    let serving = start(&settings);
    let app = &serving.app;
    failing_writes_leave_it_serving(app, &path).await;

    std::fs::remove_file(&blocker).expect("blocker removed");
    std::fs::create_dir(&blocker).expect("directory made");
    wait_until("a write succeeds and /ready recovers", || async {
        ready(app).await.0 == StatusCode::OK
    })
    .await;
    let loaded = presenced::persistence::load(&path, &Default::default())
        .expect("a valid snapshot")
        .expect("a file");
    assert_eq!(loaded.users, 1);
    serving.stop().await;
}

/// A full disk as the writer meets it: its temp file is a link to `/dev/full`,
/// where every write fails with ENOSPC, so no mount or privilege is needed.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_full_disk_shows_in_ready_leaves_the_previous_snapshot_and_clears_once_a_write_succeeds()
{
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = persisted_in(dir.path());
    settings.persistence.interval = Duration::from_secs(1);
    let path = settings.persistence.path.clone().expect("a path");
    let mut temp = path.clone().into_os_string();
    temp.push(".tmp");
    let serving = start(&settings);
    let app = &serving.app;
    let jane = app.login("jane").await;
    wait_until("the first snapshot is written", || async { path.is_file() }).await;

    // The link can only be made while no write is under way (a write holds the
    // temp name from open to rename), so once it exists every write fails until
    // one removes it, and the snapshot read now is the one that must survive.
    wait_until("the temp name is free to link to /dev/full", || async {
        std::os::unix::fs::symlink("/dev/full", &temp).is_ok()
    })
    .await;
    let before = std::fs::read(&path).expect("the snapshot");
    app.connect("jane", "online").await;
    wait_until("/ready reports the full disk", || async {
        let (status, body) = ready(app).await;
        status == StatusCode::SERVICE_UNAVAILABLE
            && body["reason"]
                .as_str()
                .is_some_and(|r| r.contains("No space left on device"))
    })
    .await;
    assert_eq!(std::fs::read(&path).expect("the snapshot"), before);
    assert!(app.presence(&jane, "").await.user("jane").is_some());

    // A failed write removes its temp file, the link with it: the next succeeds.
    app.connect("jane", "away").await;
    wait_until("a write succeeds and /ready recovers", || async {
        ready(app).await.0 == StatusCode::OK
    })
    .await;
    assert_ne!(std::fs::read(&path).expect("the snapshot"), before);
    serving.stop().await;
}

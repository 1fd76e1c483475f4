//! The real binary with a snapshot file, under signals and faults (docs/configuration.md):
//! SIGTERM and SIGINT drain, write the final snapshot and exit 0; SIGKILL in
//! the middle of a write leaves the previous snapshot whole; a damaged file
//! stops start-up naming it and stays as it was; an unwritable path is logged
//! and shown by `/ready` while the service keeps serving.
//!
//! Every wait is a bounded poll; no test depends on how long anything takes.

use crate::cli::{path_str, refused, start_listening};
use crate::helpers::*;
use crate::persistence::{failing_writes_leave_it_serving, under_a_regular_file};
use presenced::persistence::{load, temp_path, Loaded};
use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const SNAPSHOT: &str = "presence.snapshot";

/// The environment of a child writing `path` every `interval_secs`.
fn persisted_env(path: &Path, interval_secs: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PRESENCED_INGEST_TOKEN", INGEST_TOKEN.to_owned()),
        ("PRESENCED_PERSISTENCE_PATH", path_str(path).to_owned()),
        (
            "PRESENCED_PERSISTENCE_INTERVAL_SECS",
            interval_secs.to_owned(),
        ),
    ]
}

fn borrowed<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Loads the snapshot as the service would, failing the test if it is not a
/// whole, valid one.
fn loaded(path: &Path) -> Loaded {
    load(path, &Default::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("a snapshot file")
}

#[tokio::test]
async fn sigterm_and_sigint_drain_then_write_the_final_snapshot_and_exit_0() {
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(SNAPSHOT);
        // An hour between writes: what the child did is saved on the way out.
        let vars = persisted_env(&path, "3600");
        let (mut child, port) = start_listening(&[], &borrowed(&vars)).await;
        let app = TestApp::at(port);
        app.login("jane").await;
        app.connect("jane", "online").await;

        child.signal(signal);
        let stderr = child.exits_with(0).await;
        assert!(stderr.contains("holds the final state"), "{stderr}");
        let snapshot = loaded(&path);
        assert_eq!(snapshot.users, 1, "SIG{signal}");
        assert!(snapshot
            .store
            .authenticate("jane", "token-of-jane")
            .is_some());
        assert_eq!(snapshot.store.stats().connections, 1);
    }
}

/// Reads from `stream` until `buf` holds `want`; fails on end of stream.
async fn read_until_contains(stream: &mut TcpStream, buf: &mut Vec<u8>, want: &str) {
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(buf).contains(want) {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("an answer within 10 s")
            .expect("the stream reads");
        assert!(
            read > 0,
            "the connection closed; got:\n{}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..read]);
    }
}

#[tokio::test]
async fn a_request_in_flight_when_sigterm_arrives_is_answered_and_saved() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(SNAPSHOT);
    let vars = persisted_env(&path, "3600");
    let (mut child, port) = start_listening(&[], &borrowed(&vars)).await;
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connects");
    // A first request: from its answer on, a worker serves this connection.
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("written");
    let mut answer = Vec::new();
    read_until_contains(&mut stream, &mut answer, "{\"status\":\"ok\"}").await;
    // The second request's head and the first half of its body.
    let body = br#"{"username":"late"}"#;
    let head = format!(
        "PUT /internal/v1/users/late HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {INGEST_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("written");
    stream.write_all(&body[..8]).await.expect("written");

    child.signal("TERM");
    wait_until("the service refuses new connections", || async {
        TcpStream::connect(("127.0.0.1", port)).await.is_err()
    })
    .await;
    stream.write_all(&body[8..]).await.expect("written");
    let mut answer = Vec::new();
    read_until_contains(&mut stream, &mut answer, "\"success\":true").await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(stream);

    child.exits_with(0).await;
    assert!(loaded(&path).store.contains("late"));
}

/// The users a trailer line says the file at `path` holds, if it is there.
fn users_in_trailer(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let trailer: serde_json::Value = serde_json::from_str(text.lines().last()?).ok()?;
    trailer["users"].as_u64()
}

#[tokio::test]
async fn sigkill_during_a_snapshot_write_leaves_the_previous_snapshot_to_load() {
    const SEEDED: usize = 30_000;
    const PATIENCE: Duration = Duration::from_secs(120);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(SNAPSHOT);
    let temp = temp_path(&path);
    let vars = persisted_env(&path, "1");
    let (mut child, port) = start_listening(&[], &borrowed(&vars)).await;
    let app = TestApp::at(port);
    // Users with a token and a connection each, so a write takes a while.
    for first in (0..SEEDED).step_by(3_000) {
        let ops: Vec<_> = (first..first + 3_000)
            .flat_map(|i| {
                let id = format!("s{i}");
                [
                    json!({"op": "putUser", "userId": id, "username": id, "name": "Seeded User"}),
                    json!({"op": "addToken", "userId": id, "token": format!("token-of-{id}")}),
                    json!({"op": "putConnection", "userId": id, "connectionId": format!("c-{id}"), "status": "online"}),
                ]
            })
            .collect();
        let answer = app
            .ingest_ok(Method::POST, "/batch", Some(json!({ "ops": ops })))
            .await;
        assert_eq!(answer["errors"], json!([]));
    }
    let deadline = Instant::now() + PATIENCE;
    while users_in_trailer(&path) != Some(SEEDED as u64) {
        assert!(Instant::now() < deadline, "no snapshot of the seeded users");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let previous = std::fs::read(&path).expect("snapshot read");

    // Change something so that the next round writes, and kill the child as
    // soon as that write's temp file shows; a write missed between two polls
    // is fine, the loop changes something again.
    let mut late = 0;
    'caught: loop {
        app.user(&format!("late{late}")).await;
        late += 1;
        let round = Instant::now() + Duration::from_secs(5);
        while Instant::now() < round {
            if temp.exists() {
                child.signal("KILL");
                break 'caught;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(Instant::now() < deadline, "never saw a write under way");
    }
    let status = child.wait().await;
    assert_eq!(status.code(), None, "killed by the signal: {status}");

    // Whatever the kill interrupted, the file at the path is a whole snapshot.
    let interrupted = temp.exists();
    let snapshot = loaded(&path);
    let users = snapshot.users;
    if interrupted {
        eprintln!("the kill landed during a write: the previous snapshot is in place");
        assert_eq!(std::fs::read(&path).expect("snapshot read"), previous);
    } else {
        eprintln!("the kill landed after the write's rename: the new snapshot is in place");
    }
    let seeded_and_late = SEEDED as u64..=(SEEDED + late) as u64;
    assert!(seeded_and_late.contains(&users), "{users} users");
    drop(snapshot);

    // A restart loads it and clears the temp file away.
    let (mut child, port) = start_listening(&[], &borrowed(&vars)).await;
    let app = TestApp::at(port);
    assert_eq!(app.stats().await["users"], users);
    assert!(!temp.exists());
    let seeded = Login {
        id: "s12345".into(),
        token: "token-of-s12345".into(),
    };
    let answer = app
        .public(&seeded, Method::GET, "/api/v1/users.getStatus", None)
        .await;
    assert_eq!(answer.body["connectionStatus"], "online", "{}", answer.body);
    child.signal("TERM");
    child.exits_with(0).await;
}

/// A real snapshot of three users, written by a server stopped as SIGTERM would.
async fn real_snapshot(path: &Path) -> Vec<u8> {
    let mut settings = test_settings();
    settings.persistence.path = Some(path.to_owned());
    let (app, served) = spawn_serving(&settings, false);
    for id in ["ann", "bob", "cat"] {
        app.login(id).await;
        app.connect(id, "online").await;
    }
    app.stop().await;
    served.await.expect("joined").expect("final snapshot");
    std::fs::read(path).expect("snapshot read")
}

/// `bytes` with the trailer recomputed for its other lines, after `edit`
/// changed them: damage a checksum would not catch.
fn resealed(bytes: &[u8], edit: impl Fn(&mut Vec<String>)) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.pop();
    edit(&mut lines);
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let sha = format!("{:x}", Sha256::digest(body.as_bytes()));
    format!(
        "{body}{{\"users\":{},\"sha256\":\"{sha}\"}}\n",
        lines.len() - 1
    )
    .into_bytes()
}

#[tokio::test]
async fn a_damaged_snapshot_stops_start_up_naming_file_and_line_and_is_left_as_it_was() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(SNAPSHOT);
    let good = real_snapshot(&path).await;
    let mut garbage = good.clone();
    let middle = good.len() / 2;
    garbage[middle..middle + 8].copy_from_slice(b"\x00garbage");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "cut short",
            good[..good.len() - 30].to_vec(),
            "line 5: the file ends in the middle of this line",
        ),
        ("garbage", garbage, ": line "),
        (
            "another version",
            resealed(&good, |lines| {
                lines[0] = lines[0].replace("\"version\":1", "\"version\":9")
            }),
            "line 1: snapshot format version 9 is not one this build reads",
        ),
        (
            "a bad field",
            resealed(&good, |lines| {
                lines[2] = lines[2].replace(
                    "\"statusDefault\":\"online\"",
                    "\"statusDefault\":\"lunch\"",
                )
            }),
            "line 3: statusDefault: \"lunch\" is not a status",
        ),
        ("empty", Vec::new(), "the file is empty"),
    ];
    let vars = persisted_env(&path, "1");
    for (what, bytes, want) in cases {
        std::fs::write(&path, &bytes).expect("damage written");
        let stderr = refused(&[], &borrowed(&vars)).await;
        assert!(
            stderr.contains(&format!(
                "cannot start from the snapshot: {}",
                path.display()
            )),
            "{what}: {stderr}"
        );
        assert!(stderr.contains(want), "{what}: {stderr}\nwanted: {want}");
        assert!(
            stderr.contains("The file was left as it is"),
            "{what}: {stderr}"
        );
        assert_eq!(
            std::fs::read(&path).expect("file read"),
            bytes,
            "{what}: the bytes survive"
        );
    }
}

#[tokio::test]
async fn an_unwritable_path_is_logged_and_in_ready_while_serving_and_the_last_write_failing_exits_1(
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, path) = under_a_regular_file(dir.path());
    let vars = persisted_env(&path, "1");
    let (mut child, port) = start_listening(&[], &borrowed(&vars)).await;
    failing_writes_leave_it_serving(&TestApp::at(port), &path).await;
    let stderr = child.stderr();
    assert!(
        stderr.contains(&format!("snapshot: {}: cannot create", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("the service keeps serving"), "{stderr}");

    child.signal("TERM");
    let stderr = child.exits_with(1).await;
    assert!(stderr.contains("the final snapshot failed"), "{stderr}");
}

//! `--demo`: the users of the upstream API page, a caller whose `curl` works
//! verbatim, and a few hundred simulated users whose presence churns.

use crate::background::BackgroundTask;
use crate::domain::{
    ConnStatus, ConnectionId, InstanceId, Profile, Status, StatusText, TokenHash, UserId, Username,
};
use crate::store::Store;
use std::time::Duration;

/// The caller of the upstream page's `curl`.
pub const CALLER_ID: &str = "aobEdbYhXfu5hkeqG";
pub const CALLER_TOKEN: &str = "9HqLlyZOugoStsXCUfD_0YdwnNnunAJF8V47U3QHXSq";
/// The ingest token `--demo` uses when none is configured. Demo only.
pub const INGEST_TOKEN: &str = "demo-ingest-token";
/// How many simulated users churn.
pub const SIMULATED_USERS: usize = 300;

const INSTANCE: &str = "demo";

fn user(
    store: &Store,
    id: &str,
    username: &str,
    name: &str,
    utc_offset: f64,
    etag: Option<&str>,
    roles: &[String],
) {
    let (Ok(id), Ok(username)) = (UserId::parse(id), Username::parse(username)) else {
        return;
    };
    let profile = Profile::new(
        username,
        Some(name.to_owned()),
        Some(utc_offset),
        etag.map(str::to_owned),
        roles,
        true,
    );
    if let Ok(profile) = profile {
        let _ = store.put_user(&id, profile);
    }
}

fn connect(store: &Store, user: &str, status: ConnStatus) {
    let (Ok(connection), Ok(id), Ok(instance)) = (
        ConnectionId::parse(&format!("demo-{user}")),
        UserId::parse(user),
        InstanceId::parse(INSTANCE),
    ) else {
        return;
    };
    let _ = store.put_connection(&connection, &id, status, Some(instance));
}

fn simulated_id(i: usize) -> String {
    format!("sim{i:04}")
}

/// Seeds the demo users. The caller stays offline, so the page's example answer
/// (two users, `full: true`) is what the seed's `curl` shows first, plus the
/// simulated users that happen to be online.
pub fn seed(store: &Store) {
    user(
        store,
        "rocket.cat",
        "rocket.cat",
        "Rocket.Cat",
        0.0,
        Some("5BB9B5ny5DkKdrwkq"),
        &[],
    );
    user(
        store,
        "rocketchat.internal.admin.test",
        "rocketchat.internal.admin.test",
        "RocketChat Internal Admin Test",
        -2.0,
        Some("iEbEm4bTT327NJjXt"),
        &["admin".to_owned()],
    );
    user(
        store,
        CALLER_ID,
        "demo.caller",
        "Demo Caller",
        0.0,
        None,
        &["admin".to_owned()],
    );
    if let (Ok(id), Ok(hash)) = (UserId::parse(CALLER_ID), TokenHash::of_token(CALLER_TOKEN)) {
        let _ = store.add_token(&id, hash);
    }
    connect(store, "rocket.cat", ConnStatus::Online);
    connect(store, "rocketchat.internal.admin.test", ConnStatus::Online);
    const OFFSETS: [f64; 8] = [-8.0, -5.0, -3.0, 0.0, 1.0, 2.0, 5.5, 9.0];
    for i in 0..SIMULATED_USERS {
        let id = simulated_id(i);
        let offset = OFFSETS[i % OFFSETS.len()];
        user(
            store,
            &id,
            &format!("sim.user.{i}"),
            &format!("Simulated User {i}"),
            offset,
            None,
            &[],
        );
        if i % 3 == 0 {
            connect(store, &id, ConnStatus::Online);
        }
    }
}

/// One random step of one simulated user.
fn churn_one(store: &Store) {
    let id = simulated_id(fastrand::usize(..SIMULATED_USERS));
    let Ok(user) = UserId::parse(&id) else { return };
    match fastrand::u8(..6) {
        0 => connect(store, &id, ConnStatus::Online),
        1 => connect(store, &id, ConnStatus::Away),
        2 => {
            if let Ok(connection) = ConnectionId::parse(&format!("demo-{id}")) {
                store.delete_connection(&connection);
            }
        }
        3 => {
            let status = [Status::Online, Status::Busy, Status::Away][fastrand::usize(..3)];
            let _ = store.set_status(&user, Some(status), None);
        }
        4 => {
            let text = ["", "In a meeting", "On a call", "Lunch", "Focusing"][fastrand::usize(..5)];
            let _ = store.set_status(&user, None, Some(StatusText::new(text)));
        }
        _ => {}
    }
}

/// Every second a few simulated users change; every 30 s all demo
/// connections are refreshed so only the churn closes them, not expiry.
pub fn spawn_churn(store: Store) -> BackgroundTask {
    BackgroundTask::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for n in 0u64.. {
            tick.tick().await;
            for _ in 0..fastrand::usize(1..6) {
                churn_one(&store);
            }
            if n % 30 == 0 {
                store.refresh_instance(INSTANCE);
            }
        }
    })
}

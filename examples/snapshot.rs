//! Snapshot cost: fills a store with N users (username, name, a login token,
//! one online connection with an instance each; default 100,000 and
//! 1,000,000), then times writing the snapshot file, its size, and loading it
//! back (which checks every line and the checksum).
//!
//! `cargo run --release --example snapshot [N...]`; the file goes to a
//! temporary directory (`$TMPDIR`), so the disk is whatever backs it.

use presenced::domain::{ConnStatus, Status, TokenHash};
use presenced::persistence::{load, save};
use presenced::store::{ConnectionImage, Restoring, Store, StoreOptions, UserImage};
use std::time::Instant;

/// A store of `users` users, built the way a load builds one.
fn filled(users: usize) -> Store {
    let mut restoring = Restoring::new(&StoreOptions::default());
    let now = chrono::Utc::now().timestamp_millis();
    for i in 0..users {
        let Ok(token) = TokenHash::of_token(&format!("token-{i}")) else {
            unreachable!("a generated token is valid");
        };
        let user = UserImage {
            username: format!("user.{i}").into(),
            name: Some(format!("User Number {i}").into()),
            utc_offset: Some(0.0),
            status: Status::Online,
            tokens: [token].into_iter().collect(),
            connections: [ConnectionImage {
                id: format!("conn-{i:017}").into(),
                instance: Some("node-a".into()),
                status: ConnStatus::Online,
                refreshed_at_ms: now,
            }]
            .into_iter()
            .collect(),
            ..UserImage::new(&format!("{i:017}"))
        };
        restoring.add(user).unwrap_or_else(|e| panic!("{e}"));
    }
    restoring.finish()
}

fn main() {
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![100_000, 1_000_000];
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary directory: {e}"));
    for users in sizes {
        let store = filled(users);
        let path = dir.path().join(format!("snapshot-{users}"));
        let started = Instant::now();
        let saved = save(&path, &store).unwrap_or_else(|e| panic!("{e}"));
        let write = started.elapsed();
        drop(store);
        let started = Instant::now();
        let loaded = load(&path, &StoreOptions::default())
            .unwrap_or_else(|e| panic!("{e}"))
            .expect("the file just written");
        let read = started.elapsed();
        assert_eq!(loaded.users, users as u64);
        println!(
            "{users:>9} users: write {:>6} ms, load {:>6} ms, file {:>6.1} MiB ({} bytes per user)",
            write.as_millis(),
            read.as_millis(),
            saved.bytes as f64 / (1024.0 * 1024.0),
            saved.bytes / users.max(1) as u64,
        );
        let _ = std::fs::remove_file(&path);
    }
}

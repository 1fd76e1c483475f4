//! Snapshot cost: fills a store with N users (username, name, a login token,
//! one online connection with an instance each; default 100,000 and
//! 1,000,000), then times writing the snapshot file, its size, and loading it
//! back (which checks every line and the checksum).
//!
//! `cargo run --release --example snapshot [N...]`; the file goes to a
//! temporary directory (`$TMPDIR`), so the disk is whatever backs it.

use presenced::domain::{
    ConnStatus, ConnectionId, InstanceId, Profile, TokenHash, UserId, Username,
};
use presenced::persistence::{load, save};
use presenced::store::{Store, StoreOptions};
use std::time::Instant;

fn filled(users: usize) -> Store {
    let store = Store::new(&StoreOptions::default());
    let instance = InstanceId::parse("node-a").ok();
    for i in 0..users {
        let (Ok(id), Ok(username), Ok(connection), Ok(token)) = (
            UserId::parse(&format!("{i:017}")),
            Username::parse(&format!("user.{i}")),
            ConnectionId::parse(&format!("conn-{i:017}")),
            TokenHash::of_token(&format!("token-{i}")),
        ) else {
            unreachable!("generated ids are valid");
        };
        let Ok(profile) = Profile::new(
            username,
            Some(format!("User Number {i}")),
            Some(0.0),
            None,
            &[],
            true,
        ) else {
            unreachable!("generated profile is valid");
        };
        let ok = store.put_user(&id, profile).is_ok()
            && store.add_token(&id, token).is_ok()
            && store
                .put_connection(&connection, &id, ConnStatus::Online, instance.clone())
                .is_ok();
        assert!(ok);
    }
    store
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

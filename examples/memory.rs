//! Resident memory per user: loads N users (username, name, one online
//! connection each; default 1,000,000) into a store and reports the growth of
//! the process's RSS divided by N. Linux only (reads /proc/self/status).
//!
//! `cargo run --release --example memory [N] [CHANGELOG_CAPACITY]`: a capacity
//! of 1 leaves the load's own changes out of the log, to tell the users' share
//! from the log's.

use presenced::domain::{ConnStatus, ConnectionId, Profile, UserId, Username};
use presenced::store::{Store, StoreOptions};
use std::time::Instant;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let users: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let before = rss_bytes();
    let capacity: usize = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(StoreOptions::default().changelog_capacity);
    let store = Store::new(&StoreOptions {
        changelog_capacity: capacity,
        ..StoreOptions::default()
    });
    let started = Instant::now();
    for i in 0..users {
        let (Ok(id), Ok(username), Ok(connection)) = (
            UserId::parse(&format!("{i:017}")),
            Username::parse(&format!("user.{i}")),
            ConnectionId::parse(&format!("conn-{i:017}")),
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
        let created = store.put_user(&id, profile).is_ok();
        let connected = store
            .put_connection(&connection, &id, ConnStatus::Online, None)
            .is_ok();
        assert!(created && connected);
    }
    let loaded = started.elapsed();
    let after = rss_bytes();
    let stats = store.stats();
    println!(
        "users {users}, online {}, log entries {}, load {:.2}s ({:.0} writes/s)",
        stats.online,
        stats.log.entries,
        loaded.as_secs_f64(),
        (2 * users) as f64 / loaded.as_secs_f64()
    );
    println!(
        "RSS {} MiB -> {} MiB: {} bytes per user",
        before >> 20,
        after >> 20,
        (after - before) / users as u64
    );
}

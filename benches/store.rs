//! Store hot paths: applying writes and answering deltas and snapshots.
//! Compare results as ratios within one run; absolute numbers vary by machine.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use presenced::domain::{ConnStatus, ConnectionId, Profile, Status, UserId, Username};
use presenced::store::{Store, StoreOptions};
use std::hint::black_box;
use std::time::Duration;

fn store_with(users: usize) -> (Store, Vec<UserId>) {
    let store = Store::new(&StoreOptions {
        changelog_capacity: 1_000_000,
        delta_window: Duration::from_secs(600),
        connection_ttl: Duration::from_secs(300),
        allow_invisible: true,
        broadcast_disabled: false,
    });
    let ids: Vec<UserId> = (0..users)
        .map(|i| {
            let id = UserId::parse(&format!("user{i:07}")).expect("valid id");
            let profile = Profile::new(
                Username::parse(&format!("name{i:07}")).expect("valid username"),
                Some(format!("User Number {i}")),
                Some(0.0),
                None,
                &[],
                true,
            )
            .expect("valid profile");
            store.put_user(&id, profile).expect("new user");
            if i % 10 == 0 {
                let connection = ConnectionId::parse(&format!("conn{i:07}")).expect("valid id");
                store
                    .put_connection(&connection, &id, ConnStatus::Online, None)
                    .expect("user exists");
            }
            id
        })
        .collect();
    (store, ids)
}

fn writes(c: &mut Criterion) {
    let (store, ids) = store_with(10_000);
    let connection = ConnectionId::parse("conn0000000").expect("valid id");
    c.bench_function("heartbeat (no visible change)", |b| {
        b.iter(|| store.put_connection(&connection, &ids[0], ConnStatus::Online, None))
    });
    let mut flip = false;
    c.bench_function("status change (logged)", |b| {
        b.iter(|| {
            flip = !flip;
            let status = if flip { Status::Busy } else { Status::Away };
            store.set_status(&ids[1], Some(status), None)
        })
    });
}

fn reads(c: &mut Criterion) {
    let mut group = c.benchmark_group("delta of 100 changes");
    for users in [10_000, 100_000] {
        let (store, ids) = store_with(users);
        let cursor = store.cursor();
        for id in ids.iter().step_by(users / 100) {
            let _ = store.set_status(id, Some(Status::Busy), None);
        }
        group.bench_with_input(BenchmarkId::new("ring", users), &users, |b, _| {
            b.iter(|| black_box(store.changed_since(cursor, |_| true)))
        });
        group.bench_with_input(BenchmarkId::new("full snapshot", users), &users, |b, _| {
            b.iter(|| black_box(store.online()))
        });
    }
    group.finish();
}

criterion_group!(benches, writes, reads);
criterion_main!(benches);

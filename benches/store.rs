//! Criterion benches of the store's hot paths (issue 3). Each query is measured
//! beside a naive equivalent that walks every user, and the interesting number
//! is the ratio within one run; absolute times vary by machine.
//!
//! `cargo bench --bench store` (about 5 minutes; needs ~2 GiB for the 1M-user
//! store). `PRESENCED_BENCH_QUICK=1` skips the 1M-user cases.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use presenced::api::answer_cache::SnapshotCache;
use presenced::api::id_list::IdList;
use presenced::api::plan::Answer;
use presenced::domain::{ConnStatus, ConnectionId, Profile, Status, UserId, Username};
use presenced::store::{Cursor, Store, StoreOptions};
use std::borrow::Cow;
use std::collections::HashSet;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const CHANGES: [usize; 3] = [0, 100, 10_000];

fn sizes() -> Vec<usize> {
    if std::env::var_os("PRESENCED_BENCH_QUICK").is_some() {
        vec![10_000, 100_000]
    } else {
        vec![10_000, 100_000, 1_000_000]
    }
}

fn empty_store() -> Store {
    Store::new(&StoreOptions::default())
}

fn id(i: usize) -> UserId {
    UserId::parse(&format!("user{i:07}")).expect("valid id")
}

/// `users` users with a username and a name; every tenth has an online connection.
fn loaded(users: usize) -> Store {
    let store = empty_store();
    for i in 0..users {
        let profile = Profile::new(
            Username::parse(&format!("name{i:07}")).expect("valid username"),
            Some(format!("User Number {i}")),
            Some(0.0),
            None,
            &[],
            true,
        )
        .expect("valid profile");
        store.put_user(&id(i), profile).expect("new user");
        if i % 10 == 0 {
            let connection = ConnectionId::parse(&format!("conn{i:07}")).expect("valid id");
            store
                .put_connection(&connection, &id(i), ConnStatus::Online, None)
                .expect("user exists");
        }
    }
    store
}

/// Makes `n` visible changes, to `n` different users.
fn change(store: &Store, users: usize, n: usize, status: Status) {
    for i in 0..n {
        let _ = store.set_status(&id(i * (users / n.max(1))), Some(status), None);
    }
}

/// The cursor `back` changes before the head.
fn cursor_back(store: &Store, back: usize) -> Cursor {
    let head = store.cursor();
    format!("{:x}.{:x}", head.epoch(), head.seq() - back as u64)
        .parse()
        .expect("valid cursor")
}

fn writes(c: &mut Criterion) {
    let store = loaded(100_000);
    let user = id(0);
    let connection = ConnectionId::parse("conn0000000").expect("valid id");
    let mut group = c.benchmark_group("apply one update");
    group.throughput(Throughput::Elements(1));
    group.bench_function("heartbeat (not a change)", |b| {
        b.iter(|| store.put_connection(&connection, &user, ConnStatus::Online, None))
    });
    let mut flip = false;
    group.bench_function("connection status change (logged)", |b| {
        b.iter(|| {
            flip = !flip;
            let status = if flip {
                ConnStatus::Away
            } else {
                ConnStatus::Online
            };
            store.put_connection(&connection, &user, status, None)
        })
    });
    group.bench_function("chosen status change (logged)", |b| {
        b.iter(|| {
            flip = !flip;
            let status = if flip { Status::Busy } else { Status::Away };
            store.set_status(&user, Some(status), None)
        })
    });
    group.finish();
}

fn deltas(c: &mut Criterion) {
    let mut group = c.benchmark_group("delta since a cursor");
    for users in sizes() {
        let store = loaded(users);
        change(&store, users, 10_000, Status::Busy);
        for changes in CHANGES {
            let cursor = cursor_back(&store, changes);
            let label = format!("{users} users, {changes} changes");
            group.bench_function(BenchmarkId::new("ring", &label), |b| {
                b.iter(|| {
                    let delta = store.changed_since(cursor, |_| true).expect("in the log");
                    black_box(Answer::delta(delta).render())
                })
            });
            // What the server does: the same delta written straight into the body.
            group.bench_function(BenchmarkId::new("ring, written in place", &label), |b| {
                b.iter(|| {
                    let answer = Answer::delta_written(|out| {
                        store.write_changed_since(cursor, |_| true, out)
                    })
                    .expect("in the log");
                    black_box(answer.render())
                })
            });
            group.bench_function(BenchmarkId::new("naive scan", &label), |b| {
                b.iter(|| {
                    let users = store.changed_since_by_scan(cursor);
                    black_box(Answer::partial(users, cursor).render())
                })
            });
        }
    }
    group.finish();
}

fn snapshots_and_ids(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("full snapshot of 10k online users");
    let store = loaded(100_000);
    let cache =
        SnapshotCache::new(prometheus::IntCounter::new("rebuilds", "renders").expect("valid name"));
    group.bench_function("build", |b| {
        b.iter(|| black_box(Answer::online(&store).render()))
    });
    group.bench_function("cached", |b| {
        b.iter(|| black_box(runtime.block_on(cache.get(&store)).body.clone()))
    });
    group.finish();

    let mut group = c.benchmark_group("ids=100 of 100k users");
    let ids: Vec<String> = (0..100).map(|i| id(i * 997).to_string()).collect();
    group.bench_function("map lookups", |b| {
        b.iter(|| {
            let ids = IdList::Parsed(
                ids.iter()
                    .map(|id| (Cow::Borrowed(id.as_str()), store.hash_id(id)))
                    .collect(),
            );
            black_box(Answer::online_among(&store, &ids, false).render())
        })
    });
    group.bench_function("naive scan", |b| {
        let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
        b.iter(|| {
            let snapshot = store.online();
            let users = snapshot
                .users
                .into_iter()
                .filter(|v| wanted.contains(v.id()))
                .collect();
            black_box(Answer::partial(users, snapshot.cursor).render())
        })
    });
    group.finish();
}

fn contended(c: &mut Criterion) {
    let users = 100_000;
    let store = loaded(users);
    let step = users / 100;
    change(&store, users, 100, Status::Busy);
    // The last 100 changes, whatever the head: 100 distinct users either way,
    // since the writer below cycles through the same 100 users.
    let query = || {
        let delta = store
            .changed_since(cursor_back(&store, 100), |_| true)
            .expect("in the log");
        black_box(Answer::delta(delta).render())
    };
    let mut group = c.benchmark_group("delta of the last 100 changes while a writer runs");
    group.bench_function("alone", |b| b.iter(query));
    let stop = AtomicBool::new(false);
    let written = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let status = if (n / 100) % 2 == 0 {
                    Status::Away
                } else {
                    Status::Busy
                };
                let _ = store.set_status(&id((n % 100) * step), Some(status), None);
                n += 1;
            }
            n
        });
        group.bench_function("with a writer", |b| b.iter(query));
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap_or(0)
    });
    group.finish();
    println!("the writer applied {written} logged changes meanwhile");
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = writes, deltas, snapshots_and_ids, contended
}
criterion_main!(benches);

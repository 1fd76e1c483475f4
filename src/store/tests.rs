//! Store-level checks of the delta invariant (docs/api.md §2, promise 2) with every kind of
//! write, expiry included (which over HTTP would need real time), and with
//! writer threads racing a reader.

use super::*;
use crate::domain::Profile;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::collections::BTreeMap;

pub(super) const TTL: Duration = Duration::from_secs(300);

pub(super) fn store(capacity: usize) -> Store {
    Store::new(&StoreOptions {
        changelog_capacity: capacity,
        connection_ttl: TTL,
        ..StoreOptions::default()
    })
}

fn user_id(i: u8) -> UserId {
    UserId::parse(&format!("u{}", i % 5)).unwrap()
}

#[derive(Debug, Clone)]
pub(super) enum Step {
    Op(Op),
    /// Every connection's TTL runs out.
    ExpireAll,
    /// Heartbeats for every connection of instance i0.
    Refresh,
}

pub(super) fn step() -> impl Strategy<Value = Step> {
    let statuses = [Status::Online, Status::Away, Status::Busy, Status::Offline];
    (0u8..10, any::<u8>(), any::<u8>()).prop_map(move |(kind, a, b)| {
        let id = user_id(a);
        let connection = ConnectionId::parse(&format!("c{}", b % 7)).unwrap();
        let owner = user_id(b % 7);
        let instance = InstanceId::parse(&format!("i{}", a % 2)).unwrap();
        match kind {
            // Half the time a name from a pool smaller than the users, so
            // renames and refused claims happen too.
            0 => Step::Op(Op::PutUser {
                profile: Profile::new(
                    Username::parse(&if b % 2 == 0 {
                        id.to_string()
                    } else {
                        format!("n{}", a % 3)
                    })
                    .unwrap(),
                    Some(["", "Ann", "Bob"][usize::from(b % 3)].to_owned()),
                    Some(f64::from(b % 3)),
                    None,
                    &[],
                    b % 5 != 0,
                )
                .unwrap(),
                id,
            }),
            1 => Step::Op(Op::DeleteUser { id }),
            2 => Step::Op(Op::SetStatus {
                id,
                status: statuses[usize::from(b % 4)],
                text: Some(StatusText::new(["", "hi"][usize::from(b % 2)])),
            }),
            3 | 4 => Step::Op(Op::PutConnection {
                connection,
                user: owner,
                status: if b % 2 == 0 {
                    ConnStatus::Online
                } else {
                    ConnStatus::Away
                },
                instance: Some(instance),
            }),
            5 => Step::Op(Op::DeleteConnection { connection }),
            6 => Step::Op(Op::DeleteInstance { instance }),
            7 => Step::ExpireAll,
            8 => Step::Refresh,
            _ => Step::Op(Op::PutUser {
                profile: Profile::new(
                    Username::parse(owner.as_str()).unwrap(),
                    None,
                    None,
                    None,
                    &[],
                    true,
                )
                .unwrap(),
                id: owner,
            }),
        }
    })
}

pub(super) fn run(store: &Store, step: &Step) {
    match step {
        Step::Op(op) => {
            let _ = store.apply(op.clone());
        }
        Step::ExpireAll => {
            store.expire_due(Instant::now() + TTL + Duration::from_secs(1));
        }
        Step::Refresh => {
            store.refresh_instance("i0");
        }
    }
}

pub(super) type Roster = BTreeMap<String, String>;

pub(super) fn roster(snapshot: &Snapshot) -> Roster {
    snapshot
        .users
        .iter()
        .map(|v| (v.id().to_string(), v.json().to_owned()))
        .collect()
}

fn apply(roster: &mut Roster, users: &[Arc<UserView>]) {
    for v in users {
        if v.status() == Status::Offline {
            roster.remove(v.id());
        } else {
            roster.insert(v.id().to_string(), v.json().to_owned());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn snapshot_plus_delta_equals_the_next_snapshot(setup in proptest::collection::vec(step(), 0..20),
                                                     steps in proptest::collection::vec(step(), 1..40)) {
        let store = store(1_000);
        setup.iter().for_each(|s| run(&store, s));
        let from = chrono::Utc::now().timestamp_millis();
        let before = store.online();
        steps.iter().for_each(|s| run(&store, s));
        let after = roster(&store.online());
        prop_assert_eq!(store.stats().online, after.len(), "the kept count is the walked one");
        let since = store.changed_since(before.cursor, |_| true).unwrap();
        let by_time = store.changed_from(from, |_| true).unwrap();
        // The ring finds what a walk over every user finds (the walk cannot see deletions).
        let mut walked: Vec<String> = store.changed_since_by_scan(before.cursor).iter().map(|v| v.id().to_string()).collect();
        let mut ringed: Vec<String> = since.users.iter().filter(|v| !v.is_deleted()).map(|v| v.id().to_string()).collect();
        walked.sort();
        ringed.sort();
        prop_assert_eq!(walked, ringed);
        for delta in [since, by_time] {
            let mut mirror = roster(&before);
            apply(&mut mirror, &delta.users);
            prop_assert_eq!(&mirror, &after);
        }
    }

    #[test]
    fn users_written_in_place_are_the_views_joined(setup in proptest::collection::vec(step(), 0..20),
                                                   steps in proptest::collection::vec(step(), 0..40)) {
        let store = store(1_000);
        setup.iter().for_each(|s| run(&store, s));
        let from = chrono::Utc::now().timestamp_millis();
        let before = store.cursor();
        steps.iter().for_each(|s| run(&store, s));
        let joined = |views: &[Arc<UserView>]| views.iter().map(|v| v.json()).collect::<Vec<_>>().join(",");
        // Deltas, deletions among them, with and without a filter.
        let keep = |id: &str| id != "u2";
        let mut written = String::new();
        let cursor = store.write_changed_since(before, keep, &mut written).unwrap();
        let delta = store.changed_since(before, keep).unwrap();
        prop_assert_eq!(&written, &joined(&delta.users));
        prop_assert_eq!(cursor, delta.cursor);
        let mut written = String::new();
        let cursor = store.write_changed_from(from, |_| true, &mut written).unwrap();
        let delta = store.changed_from(from, |_| true).unwrap();
        prop_assert_eq!(&written, &joined(&delta.users));
        prop_assert_eq!(cursor, delta.cursor);
        let mut written = String::new();
        let cursor = store.write_online(&mut written);
        let online = store.online();
        prop_assert_eq!(&written, &joined(&online.users));
        prop_assert_eq!(cursor, online.cursor);
    }

    /// An `ids` answer copies users' kept renderings: after every kind of
    /// write (deletion and creation in a reused slot, expiry, heartbeats), each
    /// answer must still be what rendering every user afresh gives.
    #[test]
    fn ids_answers_from_kept_renderings_follow_every_write(steps in proptest::collection::vec(step(), 0..60)) {
        let store = store(1_000);
        let joined = |views: &[Arc<UserView>]| views.iter().map(|v| v.json()).collect::<Vec<_>>().join(",");
        let ids = ["u3", "nobody", "u0", "u4", "u1", "u2"];
        for step in std::iter::once(None).chain(steps.iter().map(Some)) {
            if let Some(step) = step {
                run(&store, step);
            }
            // Twice: the first may render and keep, the second copies.
            for _ in 0..2 {
                let mut written = String::new();
                let hashed = ids.map(|id| (id, store.hash_id(id)));
                let cursor = store.write_online_among(hashed, &mut written);
                let among = store.online_among(ids);
                prop_assert_eq!(&written, &joined(&among.users), "after {:?}", step);
                prop_assert_eq!(cursor, among.cursor);
            }
        }
    }

    #[test]
    fn a_log_too_short_for_the_delta_says_so_instead_of_answering(steps in proptest::collection::vec(step(), 1..60)) {
        let store = store(4);
        let before = store.online();
        steps.iter().for_each(|s| run(&store, s));
        let head = store.cursor().seq();
        match store.changed_since(before.cursor, |_| true) {
            Ok(delta) => {
                // Only possible when nothing was evicted.
                prop_assert!(head <= 4, "{} changes cannot fit in 4 entries", head);
                let mut mirror = roster(&before);
                apply(&mut mirror, &delta.users);
                prop_assert_eq!(mirror, roster(&store.online()));
            }
            Err(Lagged) => prop_assert!(head > 4),
        }
    }
}

#[test]
fn a_reader_following_the_log_converges_while_writer_threads_race() {
    let store = store(1_000_000);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..3u64)
            .map(|seed| {
                let store = &store;
                scope.spawn(move || {
                    let mut runner = proptest::test_runner::TestRunner::new_with_rng(
                        ProptestConfig::default(),
                        proptest::test_runner::TestRng::from_seed(
                            proptest::test_runner::RngAlgorithm::ChaCha,
                            &[seed as u8; 32],
                        ),
                    );
                    for _ in 0..3_000 {
                        let s = step().new_tree(&mut runner).unwrap().current();
                        run(store, &s);
                    }
                })
            })
            .collect();
        let reader = scope.spawn(|| {
            let first = store.online();
            let mut mirror = roster(&first);
            let mut cursor = first.cursor;
            let mut polls = 0u64;
            loop {
                let last = done.load(std::sync::atomic::Ordering::SeqCst);
                let delta = store
                    .changed_since(cursor, |_| true)
                    .expect("the log holds everything");
                assert!(delta.cursor.seq() >= cursor.seq(), "cursors never go back");
                apply(&mut mirror, &delta.users);
                cursor = delta.cursor;
                polls += 1;
                if last {
                    return (mirror, polls);
                }
            }
        });
        for writer in writers {
            writer.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let (mirror, polls) = reader.join().unwrap();
        assert!(polls > 1);
        assert_eq!(mirror, roster(&store.online()));
    });
    assert_indexes_exact(&store);
}

/// Every user of `store`, as [`Store::export`] hands them out.
pub(super) fn every_user(store: &Store) -> Vec<UserImage> {
    let mut everyone = Vec::new();
    store
        .export(|users| {
            everyone.extend(users);
            Ok::<(), Moved>(())
        })
        .unwrap();
    everyone
}

/// Every user and what the indexes say of it: each username finds its owner,
/// no name is held twice, each connection is refused to a stranger exactly
/// when someone holds it, and once closed is free to open.
pub(super) fn assert_indexes_exact(store: &Store) {
    let everyone = every_user(store);
    let mut names = BTreeMap::new();
    for user in &everyone {
        assert_eq!(
            store
                .find_username(&user.username)
                .as_ref()
                .map(UserId::as_str),
            Some(user.id.as_str())
        );
        assert!(
            names
                .insert(user.username.clone(), user.id.clone())
                .is_none(),
            "a username held twice"
        );
    }
    for free in ["n0", "n1", "n2", "u0", "u1", "u2", "u3", "u4"] {
        if !names.contains_key(free) {
            assert_eq!(store.find_username(free), None, "{free} is held by no one");
        }
    }
    let stranger = UserId::parse("stranger").unwrap();
    let profile = Profile::new(
        Username::parse("stranger").unwrap(),
        None,
        None,
        None,
        &[],
        true,
    );
    store.put_user(&stranger, profile.unwrap()).unwrap();
    let open = store.stats().connections;
    let mut held = 0;
    for c in 0..7 {
        let connection = ConnectionId::parse(&format!("c{c}")).unwrap();
        let take = || store.put_connection(&connection, &stranger, ConnStatus::Online, None);
        if let Err(StoreError::ConnectionOfAnotherUser(_)) = take() {
            held += 1;
            store.delete_connection(&connection);
        }
        take().expect("a closed connection is free to open");
        assert!(store.delete_connection(&connection).changed());
    }
    assert_eq!(
        held, open,
        "the count of open connections matches the index"
    );
    assert_eq!(store.stats().connections, 0);
}

#[test]
fn writers_racing_on_names_connections_and_deletes_neither_deadlock_nor_lose_track() {
    let store = store(1_000);
    let (finished, watchdog) = std::sync::mpsc::channel();
    let racers = store.clone();
    std::thread::spawn(move || {
        std::thread::scope(|scope| {
            for seed in 0..4u8 {
                let store = &racers;
                scope.spawn(move || {
                    let mut runner = proptest::test_runner::TestRunner::new_with_rng(
                        ProptestConfig::default(),
                        proptest::test_runner::TestRng::from_seed(
                            proptest::test_runner::RngAlgorithm::ChaCha,
                            &[seed.wrapping_add(100); 32],
                        ),
                    );
                    for _ in 0..5_000 {
                        let s = step().new_tree(&mut runner).unwrap().current();
                        run(store, &s);
                    }
                });
            }
        });
        let _ = finished.send(());
    });
    // Every lock is held for microseconds; a minute without an end is a deadlock.
    watchdog
        .recv_timeout(Duration::from_secs(60))
        .expect("writers deadlocked");
    assert_indexes_exact(&store);
}

#[test]
fn usernames_follow_renames_and_deletions_and_stay_unique() {
    let store = store(100);
    let put = |id: &str, name: &str| {
        let profile = Profile::new(Username::parse(name).unwrap(), None, None, None, &[], true);
        store.put_user(&UserId::parse(id).unwrap(), profile.unwrap())
    };
    let owner = |name: &str| store.find_username(name).map(|id| id.to_string());
    put("a", "ann").unwrap();
    put("b", "bob").unwrap();
    assert_eq!(
        put("a", "bob"),
        Err(StoreError::UsernameTaken(Username::parse("bob").unwrap()))
    );
    assert_eq!(
        owner("ann").as_deref(),
        Some("a"),
        "a refused rename keeps the old name"
    );
    put("a", "cat").unwrap();
    assert_eq!((owner("ann"), owner("cat").as_deref()), (None, Some("a")));
    put("b", "ann").unwrap();
    assert_eq!((owner("ann").as_deref(), owner("bob")), (Some("b"), None));
    store.delete_user(&UserId::parse("b").unwrap());
    assert_eq!(owner("ann"), None);
    put("c", "ann").unwrap();
    assert_eq!(owner("ann").as_deref(), Some("c"));
}

#[test]
fn a_user_deleted_and_created_again_is_one_entry_of_a_delta() {
    let store = store(100);
    let start = store.cursor();
    let (id, _) = online_user(&store);
    store.delete_user(&id);
    online_user(&store);
    let delta = store.changed_since(start, |_| true).unwrap();
    assert_eq!(delta.users.len(), 1);
    assert!(!delta.users[0].is_deleted());
    assert_eq!(delta.users[0].status(), Status::Online);
    store.delete_user(&id);
    let delta = store.changed_since(start, |_| true).unwrap();
    assert_eq!(delta.users.len(), 1);
    assert!(delta.users[0].is_deleted());
}

#[test]
fn keep_filters_by_id_without_breaking_deduplication() {
    let store = store(100);
    let start = store.cursor();
    let (id, _) = online_user(&store);
    store.delete_user(&id);
    let kept = store.changed_since(start, |user| user == "u0").unwrap();
    assert_eq!(kept.users.len(), 1);
    assert!(kept.users[0].is_deleted());
    assert!(store
        .changed_since(start, |user| user == "u1")
        .unwrap()
        .users
        .is_empty());
}

/// Creates `u0` with one online connection `c0`.
fn online_user(store: &Store) -> (UserId, ConnectionId) {
    let id = user_id(0);
    let connection = ConnectionId::parse("c0").unwrap();
    let profile =
        Profile::new(Username::parse("u0").unwrap(), None, None, None, &[], true).unwrap();
    store.put_user(&id, profile).unwrap();
    store
        .put_connection(&connection, &id, ConnStatus::Online, None)
        .unwrap();
    (id, connection)
}

/// Expiry on tokio's paused clock: no real waiting, no sleep-and-hope.
#[tokio::test(start_paused = true)]
async fn the_expiry_task_closes_unrefreshed_connections_and_logs_the_change() {
    let store = store(100);
    let _sweeper = spawn_sweeper(store.clone());
    let (id, connection) = online_user(&store);
    let cursor = store.cursor();

    tokio::time::sleep(TTL - Duration::from_secs(1)).await;
    // A heartbeat moves the deadline: the first one comes due, finds it, and reschedules.
    assert!(!store
        .put_connection(&connection, &id, ConnStatus::Online, None)
        .unwrap()
        .changed());
    tokio::time::sleep(TTL - Duration::from_secs(1)).await;
    assert_eq!(store.status_of("u0").unwrap().status, Status::Online);
    assert_eq!(store.stats().expired, 0);

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(store.status_of("u0").unwrap().status, Status::Offline);
    assert_eq!(store.stats().expired, 1);
    assert_eq!(store.stats().connections, 0);
    let delta = store.changed_since(cursor, |_| true).unwrap();
    assert_eq!(delta.users.len(), 1);
    assert_eq!(delta.users[0].status(), Status::Offline);
}

#[tokio::test(start_paused = true)]
async fn a_stale_expiry_entry_does_not_close_a_reopened_connection() {
    let store = store(100);
    let (id, connection) = online_user(&store);
    let first_deadline = Instant::now() + TTL;
    store.delete_connection(&connection);
    tokio::time::advance(Duration::from_secs(10)).await;
    store
        .put_connection(&connection, &id, ConnStatus::Online, None)
        .unwrap();
    // The first connection's deadline, long before the second's.
    assert!(store
        .expire_due(first_deadline)
        .is_some_and(|next| next > first_deadline));
    assert_eq!(store.status_of("u0").unwrap().status, Status::Online);
    assert_eq!(store.stats().expired, 0);
}

//! A fleet of clients, each asking its own `since`, `from` or `ids` question,
//! answered by the server's own code (`presence::answer_get`, which the fast
//! path calls, with its caches and the recent changes) and compared byte for
//! byte with a plain reference: a walk of every user in the store, with the
//! deletions the test itself saw, over random change histories.
//!
//! Times are exact: between stretches of writes the test waits for the clock
//! to move on, notes the millisecond and the cursor, and waits again, so that
//! `from` at that millisecond is exactly "the changes after that cursor".

use super::presence::answer_get;
use crate::clock::wall_ms;
use crate::domain::{
    ConnStatus, ConnectionId, Profile, Status, StatusText, TokenHash, UserId, Username,
};
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::store::{Cursor, Op, Store, StoreOptions, UserView};
use actix_web::http::header;
use actix_web::test::TestRequest;
use std::collections::{BTreeMap, HashSet};
use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

const USERS: u8 = 6;
const CONNECTIONS: u8 = 8;

fn user(i: u8) -> UserId {
    UserId::parse(&format!("u{}", i % USERS)).unwrap()
}

fn token_of(id: &str) -> String {
    format!("token-of-{id}")
}

/// A random write among a few users and connections, so that writes collide.
fn random_op(rng: &mut fastrand::Rng) -> Op {
    let id = user(rng.u8(..));
    let pick =
        |rng: &mut fastrand::Rng, choices: &[&'static str]| choices[rng.usize(..choices.len())];
    match rng.u8(0..10) {
        0 | 1 => {
            // Half the time a name from a pool smaller than the users: renames
            // and refused claims happen too.
            let username = if rng.bool() {
                id.to_string()
            } else {
                format!("n{}", rng.u8(0..3))
            };
            let profile = Profile::new(
                Username::parse(&username).unwrap(),
                Some(pick(rng, &["", "Ann", "Bob \"B\""]).to_owned()),
                Some([0.0, 5.5, -3.0][rng.usize(..3)]),
                None,
                &[],
                rng.u8(0..5) != 0,
            )
            .unwrap();
            Op::PutUser { id, profile }
        }
        2 => Op::DeleteUser { id },
        3 | 4 => Op::SetStatus {
            id,
            status: [Status::Online, Status::Away, Status::Busy, Status::Offline][rng.usize(..4)],
            text: Some(StatusText::new(pick(rng, &["", "hi", "at lunch"]))),
        },
        5..=7 => {
            let c = rng.u8(0..CONNECTIONS);
            Op::PutConnection {
                connection: ConnectionId::parse(&format!("c{c}")).unwrap(),
                // A connection id always belongs to the same user.
                user: user(c),
                status: if rng.bool() {
                    ConnStatus::Online
                } else {
                    ConnStatus::Away
                },
                instance: None,
            }
        }
        _ => Op::DeleteConnection {
            connection: ConnectionId::parse(&format!("c{}", rng.u8(0..CONNECTIONS))).unwrap(),
        },
    }
}

/// A point between two stretches of writes: its millisecond and the cursor then.
#[derive(Debug, Clone, Copy)]
struct Mark {
    ms: i64,
    cursor: Cursor,
}

/// The store, the deletions it logged, and the marks between writes.
struct History {
    store: Store,
    created_ms: i64,
    tombstones: Vec<(u64, Arc<UserView>)>,
    marks: Vec<Mark>,
}

impl History {
    fn new() -> History {
        let created_ms = wall_ms();
        let store = Store::new(&StoreOptions::default());
        let mut history = History {
            store,
            created_ms,
            tombstones: Vec::new(),
            marks: Vec::new(),
        };
        history.mark();
        history
    }

    fn apply(&mut self, op: Op) {
        let deleted = match &op {
            Op::DeleteUser { id } => self.view_of(id.as_str()),
            _ => None,
        };
        let change = self.store.apply(op).ok().and_then(|a| a.written.change);
        if let (Some(view), Some(change)) = (deleted, change) {
            let fields: serde_json::Value = serde_json::from_str(view.json()).unwrap();
            let username = fields["username"].as_str().unwrap();
            let tombstone = UserView::deleted(view.id(), username);
            self.tombstones.push((change.seq(), Arc::new(tombstone)));
        }
    }

    fn view_of(&self, id: &str) -> Option<Arc<UserView>> {
        let users = self.store.scan_with_changes();
        users
            .into_iter()
            .find(|(_, v)| v.id() == id)
            .map(|(_, v)| v)
    }

    /// Waits for the clock to pass every change so far, notes the time and the
    /// cursor, and waits for it to pass that time too.
    fn mark(&mut self) {
        let after = |ms: i64| loop {
            let now = wall_ms();
            if now > ms {
                return now;
            }
            std::hint::spin_loop();
        };
        let ms = after(wall_ms());
        let cursor = self.store.cursor();
        after(ms);
        self.marks.push(Mark { ms, cursor });
    }

    /// The users' objects, joined, of the users changed after `seq` (each by
    /// its latest change, in the order of those changes; a deleted user by its
    /// tombstone), among `ids` if given, without `caller` if given.
    fn changed_after(&self, seq: u64, ids: Option<&[String]>, caller: Option<&str>) -> String {
        let users = self.store.scan_with_changes();
        let current: HashSet<&str> = users.iter().map(|(_, v)| v.id()).collect();
        let mut changed: Vec<(u64, Arc<UserView>)> =
            users.iter().filter(|(s, _)| *s > seq).cloned().collect();
        // A user created again after its deletion changed after it too.
        let mut gone = BTreeMap::new();
        for (s, tombstone) in self.tombstones.iter().filter(|(s, _)| *s > seq) {
            if !current.contains(tombstone.id()) {
                gone.insert(tombstone.id(), (*s, Arc::clone(tombstone)));
            }
        }
        changed.extend(gone.into_values());
        changed.sort_by_key(|(s, _)| *s);
        let wanted = |v: &UserView| {
            ids.is_none_or(|ids| ids.iter().any(|id| id == v.id()))
                && caller.is_none_or(|caller| caller != v.id())
        };
        joined(changed.iter().map(|(_, v)| v).filter(|v| wanted(v)))
    }

    /// The users' objects, joined, of the users among `ids` not offline, in order.
    fn online_among(&self, ids: &[String]) -> String {
        let users = self.store.scan_with_changes();
        joined(ids.iter().filter_map(|id| {
            users
                .iter()
                .map(|(_, v)| v)
                .find(|v| v.id() == id && v.status() != Status::Offline)
        }))
    }

    fn full(&self) -> String {
        joined(self.store.online().users.iter())
    }
}

fn joined<'a>(views: impl Iterator<Item = &'a Arc<UserView>>) -> String {
    views.map(|v| v.json()).collect::<Vec<_>>().join(",")
}

fn body(users: &str, full: bool, head: Cursor) -> String {
    format!(r#"{{"users":[{users}],"full":{full},"cursor":"{head}","success":true}}"#)
}

/// One client's question, as a query string, and the answer the reference gives.
fn question(history: &History, rng: &mut fastrand::Rng, caller: &str) -> (String, String) {
    let head = history.store.cursor();
    let full = || body(&history.full(), true, head);
    // Unknown ids and repeats too; the answer has each once, in first-seen order.
    let ids = |rng: &mut fastrand::Rng| -> Vec<String> {
        (0..rng.usize(1..9))
            .map(|_| format!("u{}", rng.u8(0..USERS + 2)))
            .collect()
    };
    let distinct = |ids: &[String]| {
        let mut seen = HashSet::new();
        ids.iter()
            .filter(|id| seen.insert(id.as_str()))
            .cloned()
            .collect::<Vec<_>>()
    };
    let mark = history.marks[rng.usize(..history.marks.len())];
    match rng.u8(0..8) {
        0 | 1 => {
            // A cursor of a mark, or any position up to just past the head.
            let cursor = if rng.bool() {
                mark.cursor
            } else {
                Cursor::new(head.epoch(), rng.u64(0..head.seq() + 2))
            };
            let answer = if cursor.seq() > head.seq() {
                full()
            } else {
                body(
                    &history.changed_after(cursor.seq(), None, None),
                    false,
                    head,
                )
            };
            (format!("since={cursor}"), answer)
        }
        2 => {
            let other = Cursor::new(head.epoch() ^ 1, mark.cursor.seq());
            (format!("since={other}"), full())
        }
        3 => {
            let asked = ids(rng);
            let answer = body(
                &history.changed_after(mark.cursor.seq(), Some(&distinct(&asked)), None),
                false,
                head,
            );
            (
                format!("since={}&ids={}", mark.cursor, asked.join(",")),
                answer,
            )
        }
        4 => {
            let asked = ids(rng);
            let answer = body(&history.online_among(&distinct(&asked)), false, head);
            (format!("ids={}", asked.join(",")), answer)
        }
        5 | 6 => {
            let answer = body(
                &history.changed_after(mark.cursor.seq(), None, Some(caller)),
                false,
                head,
            );
            (format!("from={}", date(mark.ms)), answer)
        }
        _ => match rng.u8(0..3) {
            0 => (
                format!("from={}", date(wall_ms() + 60_000)),
                body("", false, head),
            ),
            1 => (format!("from={}", date(history.created_ms - 1_000)), full()),
            _ => (String::new(), full()),
        },
    }
}

fn date(ms: i64) -> String {
    let at = chrono::DateTime::from_timestamp_millis(ms).unwrap();
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The body `state` answers `query` with as `caller`, decompressed if it came gzipped.
async fn answer(state: &AppState, caller: &str, query: &str, gzip: bool) -> String {
    let mut request = TestRequest::get()
        .uri(&format!("/api/v1/users.presence?{query}"))
        .insert_header(("X-User-Id", caller))
        .insert_header(("X-Auth-Token", token_of(caller)));
    if gzip {
        request = request.insert_header((header::ACCEPT_ENCODING, "gzip"));
    }
    let response = answer_get(&request.to_http_request(), state)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e:?}"));
    assert_eq!(response.status(), 200, "{query}");
    let zipped = response.headers().contains_key(header::CONTENT_ENCODING);
    let bytes = actix_web::body::to_bytes(response.into_body())
        .await
        .unwrap();
    let mut text = String::new();
    if zipped {
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap();
    } else {
        text = String::from_utf8(bytes.to_vec()).unwrap();
    }
    text
}

#[actix_web::test]
async fn every_fleet_answer_is_what_a_plain_scan_of_the_store_gives() {
    for seed in 0..64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut history = History::new();
        let metrics = Arc::new(Metrics::new(history.store.clone()).unwrap());
        let state = AppState::new(
            history.store.clone(),
            Duration::from_secs(600),
            1000,
            1 << 20,
            None,
            metrics,
        );
        for _round in 0..3 {
            for _stretch in 0..rng.usize(1..4) {
                for _ in 0..rng.usize(0..12) {
                    history.apply(random_op(&mut rng));
                }
                history.mark();
            }
            let callers: Vec<String> = (0..USERS)
                .map(|i| user(i).to_string())
                .filter(|id| {
                    let hash = TokenHash::of_token(&token_of(id)).unwrap();
                    let id = UserId::parse(id).unwrap();
                    history.store.add_token(&id, hash).is_ok()
                        && history
                            .store
                            .authenticate(id.as_str(), &token_of(id.as_str()))
                            .is_some()
                })
                .collect();
            if callers.is_empty() {
                continue;
            }
            for _ in 0..40 {
                let caller = &callers[rng.usize(..callers.len())];
                let (query, expected) = question(&history, &mut rng, caller);
                // Asked twice: the second answer may come from what the first left.
                for gzip in [rng.bool(), rng.bool()] {
                    let got = answer(&state, caller, &query, gzip).await;
                    assert_eq!(
                        got, expected,
                        "seed {seed}, {caller} asks {query:?}, gzip {gzip}"
                    );
                }
            }
        }
    }
}

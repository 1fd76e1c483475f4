//! `since` and `from` answers of a fleet, each client with its own cursor or
//! time, from one rendering per log position.
//!
//! The answer to "changes after cursor C" at head H is the users whose latest
//! change is after C, in the order of those changes; for a later cursor it is
//! a suffix of the same list, and a `from` finds its suffix by time the same
//! way. So the users changed most recently are written once per head
//! ([`Store::write_latest`]), and every `since` or `from` within their reach is
//! answered with a slice of those bytes after a fixed prefix (the head's
//! tail is written after the users): no user rendered, no body copied,
//! whatever the cursor. A `from`
//! leaves its caller out: when the caller is in its suffix, the answer is the
//! two slices around it.
//!
//! What is out of reach (older than the floor), asks for `ids` too, or wants
//! gzip goes the way of [`super::answer_cache::RecentAnswers`] as before.

use super::plan::{close_users, USERS_OPEN};
use crate::store::{Cursor, Store, WrittenLatest};
use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;
use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock};
use std::convert::Infallible;
use std::hash::BuildHasher as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The most users written per head: the reach of a rendering, and a bound on
/// its cost (a few hundred µs) and size (~130 bytes a user).
const MAX_USERS: usize = 1024;
/// The most log entries looked back over, for a log whose last entries are
/// the same few users many times over.
const MAX_ENTRIES: usize = 64 * MAX_USERS;

const PREFIX: Bytes = Bytes::from_static(USERS_OPEN.as_bytes());

/// Where a user's object is in the written bytes, and when its latest change was.
#[derive(Debug, Clone, Copy)]
struct Mark {
    seq: u64,
    ts: i64,
    start: u32,
    id_start: u32,
    id_end: u32,
}

/// The users changed most recently at one head, written once.
#[derive(Debug)]
pub struct ChangesAt {
    head: Cursor,
    floor: u64,
    floor_ts: Option<i64>,
    epoch_start_ms: i64,
    /// The users' objects, separated by commas, then the head's tail
    /// (`],"full":false,"cursor":"<head>","success":true}`): an answer's last
    /// piece is then one slice, and is sent with what comes before it.
    json: Bytes,
    /// Where the objects end and the tail begins.
    tail_at: usize,
    marks: Box<[Mark]>,
    /// Indices into `marks`, by a hash of the user's id.
    by_id: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
}

impl ChangesAt {
    /// Writes the users changed most recently in `store`.
    fn build(store: &Store) -> ChangesAt {
        let mut json = String::new();
        let written: WrittenLatest = store.write_latest(MAX_USERS, MAX_ENTRIES, &mut json);
        // At most MAX_USERS users of bounded size: offsets fit in 32 bits.
        let at = |offset: usize| u32::try_from(offset).unwrap_or(u32::MAX);
        let marks: Box<[Mark]> = written
            .users
            .iter()
            .map(|user| Mark {
                seq: user.seq,
                ts: user.ts,
                start: at(user.json.start),
                id_start: at(user.id.start),
                id_end: at(user.id.end),
            })
            .collect();
        let hasher = foldhash::fast::FixedState::with_seed(written.head.seq());
        let mut by_id = HashTable::with_capacity(marks.len());
        for (i, user) in written.users.iter().enumerate() {
            let hash = hasher.hash_one(json.get(user.id.clone()).unwrap_or_default());
            by_id.insert_unique(hash, at(i), |&i| {
                let mark = &marks[i as usize];
                hasher.hash_one(
                    json.get(mark.id_start as usize..mark.id_end as usize)
                        .unwrap_or_default(),
                )
            });
        }
        let tail_at = json.len();
        close_users(&mut json, false, written.head);
        ChangesAt {
            head: written.head,
            floor: written.floor,
            floor_ts: written.floor_ts,
            epoch_start_ms: written.epoch_start_ms,
            json: Bytes::from(json),
            tail_at,
            marks,
            by_id,
            hasher,
        }
    }

    /// The head these are the answers at.
    pub fn head(&self) -> Cursor {
        self.head
    }

    /// The answer to `since=cursor`, if within reach.
    pub fn since(&self, cursor: Cursor) -> Option<Pieces> {
        let reached = cursor.epoch() == self.head.epoch()
            && (self.floor..=self.head.seq()).contains(&cursor.seq());
        reached.then(|| {
            let first = self.marks.partition_point(|m| m.seq <= cursor.seq());
            self.suffix(first, None)
        })
    }

    /// The answer to `from=from_ms` asked by `caller`, if within reach: the
    /// users changed at or after `from_ms`, but the caller.
    pub fn from(&self, from_ms: i64, caller: &str) -> Option<Pieces> {
        let reached = from_ms >= self.epoch_start_ms && self.floor_ts.is_none_or(|ts| ts < from_ms);
        reached.then(|| {
            let first = self.marks.partition_point(|m| m.ts < from_ms);
            let caller = self.find(caller).filter(|&i| i >= first);
            self.suffix(first, caller)
        })
    }

    /// The index of the user `id` among the marks, if written.
    fn find(&self, id: &str) -> Option<usize> {
        let id_of = |mark: &Mark| {
            self.json
                .get(mark.id_start as usize..mark.id_end as usize)
                .unwrap_or_default()
        };
        self.by_id
            .find(self.hasher.hash_one(id), |&i| {
                id_of(&self.marks[i as usize]) == id.as_bytes()
            })
            .map(|&i| i as usize)
    }

    /// The answer of the users from mark `first` on, but mark `without`.
    fn suffix(&self, first: usize, without: Option<usize>) -> Pieces {
        let start = |i: usize| self.marks.get(i).map_or(self.tail_at, |m| m.start as usize);
        let end = self.json.len();
        let (left, right) = match without {
            None => (start(first)..end, end..end),
            Some(skip) if skip + 1 < self.marks.len() => {
                (start(first)..start(skip), start(skip + 1)..end)
            }
            // The last one: the comma before it goes with it.
            Some(skip) => (
                start(first)..start(skip).saturating_sub(1).max(start(first)),
                self.tail_at..end,
            ),
        };
        let pieces = Pieces::new([PREFIX, self.json.slice(left), self.json.slice(right)]);
        // actix sends what it holds once it holds 32 KiB, and a piece after
        // that goes in a write of its own, which Nagle's algorithm holds until
        // the client acknowledges the first (a 40 ms delayed ACK): so a body
        // whose large part is not its last piece is sent as one.
        if pieces.parts[1].len() > SPLIT_AT && !pieces.parts[2].is_empty() {
            return Pieces::new([pieces.to_bytes(), Bytes::new(), Bytes::new()]);
        }
        pieces
    }
}

/// The most bytes before an answer's last piece (see [`ChangesAt::suffix`]).
const SPLIT_AT: usize = 16 * 1024;

/// The latest [`ChangesAt`], rewritten on demand when the log has moved.
#[derive(Debug, Default)]
pub struct RecentChanges {
    // Readers clone the Arc under a read lock held for a pointer copy.
    current: RwLock<Option<Arc<ChangesAt>>>,
    // One rewrite at a time; requests arriving meanwhile go the other way
    // rather than wait.
    writing: Mutex<()>,
}

impl RecentChanges {
    fn fresh(&self, head: Cursor) -> Option<Arc<ChangesAt>> {
        self.current
            .read()
            .as_ref()
            .filter(|c| c.head == head)
            .cloned()
    }

    /// The changes at `head`, written now if they were not yet (then marked
    /// [`Reach::Written`]); `None` if another request is writing them or the
    /// log moved past `head` meanwhile.
    pub fn at(&self, store: &Store, head: Cursor) -> Option<(Arc<ChangesAt>, Reach)> {
        if let Some(fresh) = self.fresh(head) {
            return Some((fresh, Reach::Reused));
        }
        let _writing = self.writing.try_lock()?;
        if let Some(fresh) = self.fresh(head) {
            return Some((fresh, Reach::Reused));
        }
        let written = Arc::new(ChangesAt::build(store));
        // The one it replaces is freed after the lock is let go.
        let replaced = self.current.write().replace(Arc::clone(&written));
        drop(replaced);
        (written.head == head).then_some((written, Reach::Written))
    }
}

/// Whether [`RecentChanges::at`] wrote the changes for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Written for an earlier request: an answer from them is a reuse.
    Reused,
    Written,
}

/// A body of a few shared slices, sent one after the other: an answer put
/// together without copying its bytes into one buffer.
#[derive(Debug)]
pub struct Pieces {
    parts: [Bytes; 3],
    next: usize,
    len: usize,
}

impl Pieces {
    fn new(parts: [Bytes; 3]) -> Pieces {
        let len = parts.iter().map(Bytes::len).sum();
        Pieces {
            parts,
            next: 0,
            len,
        }
    }

    /// Returns the body's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns true if and only if the body is empty (an answer never is).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole body in one buffer (tests, and clients that want it compressed).
    pub fn to_bytes(&self) -> Bytes {
        let mut body = Vec::with_capacity(self.len);
        self.parts
            .iter()
            .for_each(|part| body.extend_from_slice(part));
        Bytes::from(body)
    }
}

impl MessageBody for Pieces {
    type Error = Infallible;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.len as u64)
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Infallible>>> {
        let this = &mut *self;
        while let Some(part) = this.parts.get_mut(this.next) {
            this.next += 1;
            if !part.is_empty() {
                return Poll::Ready(Some(Ok(std::mem::take(part))));
            }
        }
        Poll::Ready(None)
    }
}

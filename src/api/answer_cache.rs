//! Rendered answers, shared by every poll that asks the same question at the
//! same log position.
//!
//! - [`SnapshotCache`]: the full answer, rendered once per log position. A stale
//!   entry is rebuilt by one request while the others wait for it (single flight).
//! - [`RecentAnswers`]: the latest deltas and id lists, by plan. Clients that
//!   polled after the same change hold the same cursor, so their next `since`
//!   polls are the same question: one render serves them all. An answer is
//!   found by its key alone (a 64-bit hash of the plan and the log position),
//!   as a `304` is given on its `ETag`, which is the same key: keeping a copy
//!   of the question to compare would cost more than the answer's filing
//!   (a hundred ids packed per kept `ids` answer) and buy nothing the tag
//!   does not already rely on.

use super::plan::{Answer, Plan};
use super::recent_changes::RecentChanges;
use crate::http::encoding::gzip;
use crate::http::etag::Tag;
use crate::store::{Cursor, Store};
use actix_web::http::header::HeaderValue;
use actix_web::web::Bytes;
use flate2::Compression;
use parking_lot::{Mutex, RwLock};
use prometheus::IntCounter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// One rendered answer.
#[derive(Debug)]
pub struct Rendered {
    pub cursor: Cursor,
    pub body: Bytes,
    /// The `ETag` of the plan it answers, formatted once for every request it serves.
    pub etag: HeaderValue,
    level: Compression,
    /// Compressed on first demand, once.
    gzip: OnceLock<Bytes>,
}

impl Rendered {
    /// Renders `answer`, tagged `tag`; `level` is the gzip level to use if a
    /// client asks for it.
    pub fn new(answer: Answer, tag: Tag, level: Compression) -> Rendered {
        Rendered {
            cursor: answer.cursor,
            body: Bytes::from(answer.render()),
            etag: tag.header_value(),
            level,
            gzip: OnceLock::new(),
        }
    }

    /// Returns the gzip form, compressing it if no request has yet.
    pub fn gzipped(&self) -> Bytes {
        self.gzip
            .get_or_init(|| gzip(&self.body, self.level))
            .clone()
    }
}

/// How many questions asked once are remembered (see [`RecentAnswers::put`]).
const ASKED_SLOTS: usize = 1024;

/// The cache of the full answer.
#[derive(Debug)]
pub struct SnapshotCache {
    // Readers clone the Arc under a read lock held for a pointer copy.
    current: RwLock<Option<Arc<Rendered>>>,
    // Async, so requests waiting for a rebuild park their task, not the worker thread.
    rebuild: tokio::sync::Mutex<()>,
    rebuilds: IntCounter,
}

impl SnapshotCache {
    /// An empty cache counting its renders in `rebuilds`.
    pub fn new(rebuilds: IntCounter) -> SnapshotCache {
        SnapshotCache {
            current: RwLock::default(),
            rebuild: tokio::sync::Mutex::default(),
            rebuilds,
        }
    }

    fn fresh(&self, head: Cursor) -> Option<Arc<Rendered>> {
        self.current
            .read()
            .as_ref()
            .filter(|r| r.cursor == head)
            .cloned()
    }

    /// Returns the full answer at the log's current position, rendering it only
    /// if no request has since the log last moved.
    pub async fn get(&self, store: &Store) -> Arc<Rendered> {
        if let Some(rendered) = self.fresh(store.cursor()) {
            return rendered;
        }
        let _flight = self.rebuild.lock().await;
        // Whoever held the lock before us may have rendered this very position.
        if let Some(rendered) = self.fresh(store.cursor()) {
            return rendered;
        }
        // Built once and served many times: worth gzip's default level.
        let answer = Answer::online(store);
        let tag = Plan::Full.etag(answer.cursor);
        let rendered = Arc::new(Rendered::new(answer, tag, Compression::default()));
        *self.current.write() = Some(Arc::clone(&rendered));
        self.rebuilds.inc();
        rendered
    }
}

/// How many recent answers are kept; a slot is chosen by the answer's key.
const RECENT_SLOTS: usize = 64;
/// The largest answer kept, so the table holds at most 64 × 256 KiB. Larger
/// deltas are rare (thousands of users changed since the cursor) and rendered anew.
const MAX_KEPT_BYTES: usize = 256 * 1024;

/// The answer a plan got at a cursor.
#[derive(Debug)]
pub struct Recent {
    /// `plan.key(rendered.cursor)`.
    key: u64,
    pub rendered: Rendered,
}

/// What [`RecentAnswers::put`] did with an answer.
#[derive(Debug)]
pub enum Filed {
    /// Kept, and shared from here on.
    Kept(Arc<Recent>),
    /// Not kept: the answer of this one request.
    Passed(Rendered),
}

/// Recently rendered answers other than the full one, in a small fixed table:
/// memory stays bounded and a lookup costs one hash and one short lock.
#[derive(Debug)]
pub struct RecentAnswers {
    slots: Box<[Mutex<Option<Arc<Recent>>>]>,
    /// Keys of questions asked lately, one per slot: an answer is kept only
    /// for a question asked a second time.
    asked: Box<[AtomicU64]>,
    /// The `since` and `from` answers of the log's recent past, at its head.
    pub changes: RecentChanges,
    hits: IntCounter,
}

impl RecentAnswers {
    /// An empty table counting the answers it serves in `hits`.
    pub fn new(hits: IntCounter) -> RecentAnswers {
        RecentAnswers {
            slots: (0..RECENT_SLOTS).map(|_| Mutex::new(None)).collect(),
            asked: (0..ASKED_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            changes: RecentChanges::default(),
            hits,
        }
    }

    fn slot(&self, key: u64) -> &Mutex<Option<Arc<Recent>>> {
        // The remainder is below RECENT_SLOTS, so it fits in usize.
        &self.slots[(key % RECENT_SLOTS as u64) as usize]
    }

    /// Counts an answer served from an earlier rendering other than the table's.
    pub fn count_reuse(&self) {
        self.hits.inc();
    }

    /// Returns the answer of the plan whose key at `head` is `key`
    /// ([`Plan::key`]), if held.
    pub fn get(&self, key: u64, head: Cursor) -> Option<Arc<Recent>> {
        let held = self
            .slot(key)
            .lock()
            .as_ref()
            .filter(|recent| recent.key == key && recent.rendered.cursor == head)
            .cloned();
        if held.is_some() {
            self.hits.inc();
        }
        held
    }

    /// Keeps `rendered` as the answer of the plan whose key at its cursor is
    /// `key` ([`Plan::key`]) if the same question was asked at that position
    /// before, and it is not too large to keep; else gives it back.
    /// A question asked once (a fleet's own `ids` list) is not kept: keeping it
    /// would cost copying the question and evicting an answer others may ask
    /// again. The table must stay small whatever is asked of it.
    pub fn put(&self, key: u64, rendered: Rendered) -> Filed {
        // Other bits of the key than the slot's, so that the two tables' clashes differ.
        let asked = &self.asked[(key >> 32) as usize % ASKED_SLOTS];
        if asked.swap(key, Ordering::Relaxed) != key || rendered.body.len() > MAX_KEPT_BYTES {
            return Filed::Passed(rendered);
        }
        let recent = Arc::new(Recent { key, rendered });
        // Filed under the cursor it was rendered at, which the next poll asks
        // for. The answer it evicts is freed after the lock is let go.
        let evicted = self.slot(key).lock().replace(Arc::clone(&recent));
        drop(evicted);
        Filed::Kept(recent)
    }
}

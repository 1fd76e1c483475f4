//! What every handler shares: the store and the settings that shape answers.

use crate::api::answer_cache::{RecentAnswers, SnapshotCache};
use crate::persistence::SnapshotFile;
use crate::store::Store;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Counts of HTTP-level events, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    not_modified: AtomicU64,
}

impl Counters {
    /// Counts a `304 Not Modified`.
    pub fn not_modified(&self) {
        self.not_modified.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns how many `304 Not Modified` were answered.
    pub fn not_modified_total(&self) -> u64 {
        self.not_modified.load(Ordering::Relaxed)
    }
}

/// Built once, outside the worker factory, and shared by all workers.
#[derive(Debug)]
pub struct AppState {
    pub store: Store,
    pub delta_window: Duration,
    pub max_ids: usize,
    pub max_body_bytes: usize,
    /// The full `users.presence` answer, rendered once per log position.
    pub snapshots: SnapshotCache,
    /// Recent deltas and id lists, shared by polls that ask the same question.
    pub recent: RecentAnswers,
    pub counters: Counters,
    /// The snapshot file, when persistence is on; `/ready` reports its failures.
    pub persistence: Option<Arc<SnapshotFile>>,
    /// SHA-256 of the ingest token; `None` disables the internal API.
    ingest_token_hash: Option<[u8; 32]>,
}

impl AppState {
    pub fn new(
        store: Store,
        delta_window: Duration,
        max_ids: usize,
        max_body_bytes: usize,
        ingest_token: Option<&str>,
    ) -> AppState {
        AppState {
            store,
            delta_window,
            max_ids,
            max_body_bytes,
            snapshots: SnapshotCache::default(),
            recent: RecentAnswers::default(),
            counters: Counters::default(),
            persistence: None,
            ingest_token_hash: ingest_token.map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    /// Returns whether the internal API is enabled.
    pub fn ingest_enabled(&self) -> bool {
        self.ingest_token_hash.is_some()
    }

    /// Returns true if and only if `presented` is the ingest token. Both sides are
    /// hashed first so the comparison takes the same time whatever their lengths.
    pub fn is_ingest_token(&self, presented: &str) -> bool {
        self.ingest_token_hash.is_some_and(|expected| {
            let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
            expected.ct_eq(&presented).into()
        })
    }
}

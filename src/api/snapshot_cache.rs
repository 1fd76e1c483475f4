//! The full answer, rendered once per log position and shared by every poll
//! until the log moves. A stale entry is rebuilt by one request while the others
//! wait for it (single flight), not by each of them.

use super::presence::Answer;
use crate::http::encoding::gzip;
use crate::store::{Cursor, Store};
use actix_web::web::Bytes;
use flate2::Compression;
use parking_lot::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// One rendered full answer.
#[derive(Debug)]
pub struct Rendered {
    pub cursor: Cursor,
    pub body: Bytes,
    /// Compressed on first demand, once.
    gzip: OnceLock<Bytes>,
}

impl Rendered {
    fn new(cursor: Cursor, body: Bytes) -> Rendered {
        Rendered {
            cursor,
            body,
            gzip: OnceLock::new(),
        }
    }

    /// Returns the gzip form, compressing it if no request has yet.
    pub fn gzipped(&self) -> Bytes {
        // Built once and served many times, so worth the default level.
        self.gzip
            .get_or_init(|| gzip(&self.body, Compression::default()))
            .clone()
    }
}

/// The cache of the full answer.
#[derive(Debug, Default)]
pub struct SnapshotCache {
    // Readers clone the Arc under a read lock held for a pointer copy.
    current: RwLock<Option<Arc<Rendered>>>,
    // Async, so requests waiting for a rebuild park their task, not the worker thread.
    rebuild: tokio::sync::Mutex<()>,
    rebuilds: AtomicU64,
}

impl SnapshotCache {
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
        let answer = Answer::full(store.online());
        let rendered = Arc::new(Rendered::new(answer.cursor, Bytes::from(answer.render())));
        *self.current.write() = Some(Arc::clone(&rendered));
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        rendered
    }

    /// Returns how many times the full answer was rendered.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds.load(Ordering::Relaxed)
    }
}

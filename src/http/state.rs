//! What every handler shares: the store, the settings that shape answers, the
//! metrics and the rate limits.

use super::rate_limits::RateLimits;
use super::ApiError;
use crate::api::answer_cache::{RecentAnswers, SnapshotCache};
use crate::cluster::Cluster;
use crate::config::StreamSettings;
use crate::domain::{Status, StatusText, UserId};
use crate::metrics::Metrics;
use crate::persistence::SnapshotFile;
use crate::store::{Applied, Op, Store};
use crate::stream::StreamHub;
use crate::upstream::Upstream;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

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
    pub metrics: Arc<Metrics>,
    /// Off until [`AppState::with_rate_limits`] sets them.
    pub limits: RateLimits,
    /// The snapshot file, when persistence is on; `/ready` reports its failures.
    pub persistence: Option<Arc<SnapshotFile>>,
    /// Cluster mode: writes go through Redis, and the store follows it.
    pub cluster: Option<Cluster>,
    /// Upstream mode: the chat server feeds the store and checks tokens.
    pub upstream: Option<Upstream>,
    /// The change stream's limits, channel and shutdown (default settings
    /// until the application sets its own).
    pub streams: Arc<StreamHub>,
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
        metrics: Arc<Metrics>,
    ) -> AppState {
        AppState {
            store,
            delta_window,
            max_ids,
            max_body_bytes,
            snapshots: SnapshotCache::new(metrics.snapshot_rebuilds.clone()),
            streams: Arc::new(StreamHub::new(
                StreamSettings::default(),
                metrics.streams.clone(),
            )),
            recent: RecentAnswers::new(metrics.answer_reuses.clone()),
            metrics,
            limits: RateLimits::default(),
            persistence: None,
            cluster: None,
            upstream: None,
            ingest_token_hash: ingest_token.map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    /// The same state with `limits` applied.
    pub fn with_rate_limits(mut self, limits: RateLimits) -> AppState {
        self.limits = limits;
        self
    }

    /// Applies a write: to the store, or in cluster mode through Redis (the
    /// store then learns it from the stream before this returns).
    pub async fn apply(&self, op: Op) -> Result<Applied, ApiError> {
        match &self.cluster {
            None => Ok(self.store.apply(op)?),
            Some(cluster) => Ok(cluster.apply(&op).await?),
        }
    }

    /// Sets a chosen status and/or status text, as `users.setStatus` does: in the
    /// store, or in cluster mode through Redis, like [`AppState::apply`].
    pub async fn set_status(
        &self,
        id: &UserId,
        status: Option<Status>,
        text: Option<StatusText>,
    ) -> Result<(), ApiError> {
        match &self.cluster {
            None => self.store.set_status(id, status, text).map(drop)?,
            Some(cluster) => cluster.set_status(id, status, text).await.map(drop)?,
        }
        Ok(())
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

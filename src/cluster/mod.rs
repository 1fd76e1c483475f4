//! Cluster mode: several replicas sharing one Redis (or Valkey), set by
//! `cluster.redis_url`. Without it none of this runs and presenced is the
//! single in-memory process it always was.
//!
//! # Design
//!
//! - **Redis holds the truth.** Profiles, tokens, chosen statuses and
//!   connections live in Redis, under keys that all share the hash tag
//!   `{presenced}` (so one Redis Cluster slot holds them all):
//!   `u:<id>` (hash: profile, chosen `ch` and docs/api.md §1 `st` status, text),
//!   `t:<id>` (token hashes), `c:<id>` (connection id → "status instance"),
//!   `owners`, `names`, `ids`, `i:<instance>`, `due` (connection deadlines,
//!   sorted by Redis `TIME`), `gen` (the stream's generation) and `log` (the
//!   change stream).
//! - **Writes are one Lua script** (`presence.lua`, the only place cluster mode
//!   applies the docs/api.md §1 status rules): it reads the stored state, applies the
//!   op, recomputes the status and, only if something changed, writes the
//!   state and `XADD`s one entry with the user's full state (see `entry.rs`) to
//!   the stream, trimmed with `MAXLEN ~ changelog_capacity` (at least 100). Changes of nothing
//!   visible (tokens, roles, `statusConnection`) are entries too, marked
//!   hidden, so that every replica authenticates locally; they never enter a
//!   change log. A heartbeat that changes nothing writes no entry. A batch is
//!   one pipeline of script calls.
//! - **Reads stay local.** Every replica follows the stream (`follower.rs`,
//!   `XREAD BLOCK`) and applies entries in stream order to its own store and
//!   change log, so queries cost what they cost in one process. A write is
//!   answered only once this replica has applied the entry it wrote.
//! - **Cursors and timestamps come from the stream**: a cursor is the stream's
//!   generation and an entry's position, the same on every replica; a change's
//!   timestamp is its entry id's milliseconds (Redis's clock). A `since`
//!   cursor ahead of this replica waits (at most [`SINCE_WAIT`]) for it to
//!   catch up, else gets the full answer: never a gap.
//! - **Bootstrap** records the stream's last id, loads every user, then follows
//!   from that id (replay is idempotent: entries carry full state). Cursors and
//!   `from` times before that point get `full: true`.
//! - **Expiry**: any replica sweeps `due` with the script, which closes only what
//!   is due by Redis `TIME`; concurrent sweeps are harmless.
//! - **Redis down**: reads go on from memory, `/ready` answers 503, writes
//!   answer 503 `error-unavailable`. The follower reconnects with backoff and
//!   resumes from the last applied id; if Redis trimmed the stream past it or
//!   lost its data (a new generation), it resyncs as at bootstrap and logs it.

mod entry;
mod follower;
mod link;
pub mod position;
mod writer;

use crate::background::BackgroundTask;
use crate::config::Settings;
use crate::store::{Store, StoreError};
use link::Link;
use parking_lot::Mutex;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The change stream's key; every other key is derived from it.
pub const STREAM: &str = "{presenced}:log";

/// The fewest entries the stream keeps, whatever `changelog_capacity` says.
const MIN_STREAM_LENGTH: usize = 100;

/// How long a `since` cursor ahead of this replica waits for it.
pub const SINCE_WAIT: Duration = Duration::from_millis(500);

/// How long a write waits for this replica to apply its own entry.
const APPLY_WAIT: Duration = Duration::from_secs(5);

/// Why a write was not done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Refused, as the single process would refuse it; nothing changed.
    Refused(StoreError),
    /// Redis could not be reached, or this replica is not following it.
    Unavailable(String),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Refused(e) => e.fmt(f),
            WriteError::Unavailable(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for WriteError {}

impl From<redis::RedisError> for WriteError {
    fn from(e: redis::RedisError) -> WriteError {
        WriteError::Unavailable(format!(
            "the shared store (Redis) is unavailable: {e}; nothing was written, retry later"
        ))
    }
}

/// What the script needs to know of the settings.
#[derive(Debug, Clone)]
struct Limits {
    stream_capacity: usize,
    connection_ttl_ms: u64,
    max_users: usize,
    max_connections_per_user: usize,
    allow_invisible: bool,
}

#[derive(Debug)]
struct Shared {
    client: redis::Client,
    link: Link,
    limits: Limits,
    /// Position of the last entry applied locally; writers wait on it.
    applied: watch::Sender<u64>,
    /// The stream generation followed (0 until bootstrap).
    generation: AtomicU64,
    /// Why this replica is not ready, if it is not.
    problem: Mutex<Option<String>>,
    store: Store,
}

/// The handle to this replica's part of the cluster. Cloning it is cheap.
#[derive(Debug, Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

impl Cluster {
    /// Prepares cluster mode for `store` (a [`Store::replica`]); nothing
    /// connects until [`Cluster::spawn`].
    ///
    /// # Errors
    /// When the URL is not one the Redis client accepts.
    pub fn new(url: &str, settings: &Settings, store: Store) -> Result<Cluster, String> {
        // The URL may hold a password: the error does not repeat it.
        let client = redis::Client::open(url).map_err(|e| {
            format!(
                "cluster.redis_url is not a usable Redis URL: {:?}",
                e.kind()
            )
        })?;
        let presence = &settings.presence;
        Ok(Cluster {
            shared: Arc::new(Shared {
                link: Link::new(client.clone()),
                client,
                limits: Limits {
                    // A floor keeps a tiny log capacity from trimming the
                    // stream under a follower that is merely one entry behind.
                    stream_capacity: presence.changelog_capacity.max(MIN_STREAM_LENGTH),
                    connection_ttl_ms: u64::try_from(presence.connection_ttl.as_millis())
                        .unwrap_or(u64::MAX),
                    max_users: presence.max_users,
                    max_connections_per_user: presence.max_connections_per_user,
                    allow_invisible: presence.allow_invisible,
                },
                applied: watch::channel(0).0,
                generation: AtomicU64::new(0),
                problem: Mutex::new(Some("cluster: not yet loaded from Redis".to_owned())),
                store,
            }),
        })
    }

    /// Starts following the stream and sweeping expired connections; both
    /// stop when the returned guard is dropped.
    pub fn spawn(&self) -> [BackgroundTask; 2] {
        [
            BackgroundTask::spawn(follower::follow(self.clone())),
            BackgroundTask::spawn(follower::sweep(self.clone())),
        ]
    }

    /// Why this replica is not ready (not loaded, or not following Redis), if so.
    pub fn problem(&self) -> Option<String> {
        self.shared.problem.lock().clone()
    }

    fn set_problem(&self, problem: Option<String>) {
        *self.shared.problem.lock() = problem;
    }

    /// The stream generation this replica follows.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// Waits, at most `limit`, until this replica has applied the entry at
    /// `position`. Returns true if and only if it has.
    pub async fn caught_up(&self, position: u64, limit: Duration) -> bool {
        let mut applied = self.shared.applied.subscribe();
        tokio::time::timeout(limit, applied.wait_for(|&a| a >= position))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    async fn wait_applied(&self, position: u64) -> Result<(), WriteError> {
        if self.caught_up(position, APPLY_WAIT).await {
            Ok(())
        } else {
            Err(WriteError::Unavailable(
                "the write was stored in Redis, but this replica has not caught up with it \
                 yet; it will show here once this replica follows Redis again"
                    .to_owned(),
            ))
        }
    }
}

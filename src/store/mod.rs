//! The store: every user, their connections and tokens, and the change log.
//!
//! [`Store`] is one cheap `Clone` handle over shared state. Callers get methods,
//! never a lock guard. Users live in 64 shards, each a `RwLock` over slots and an
//! id table (see the `shard` module): a concurrent map like DashMap's, laid out so that a
//! user costs a few hundred bytes at a million users. Writers hold one user's
//! shard while they change it and append the change to the log, so the log's
//! order is each user's order and a change is in the map before its cursor is
//! published (docs/api.md §2, invariant 1). Readers hold a shard's read lock only while
//! they copy one user out.
//!
//! The username and connection indexes hold hashes and slots, not keys, so a
//! match must be confirmed by reading the record it points to; whoever adds or
//! removes an entry holds that index shard's lock, so what an index says cannot
//! change while a writer holds it. Lock order, to stay deadlock-free: username
//! index shards (ascending), then connection index shards (ascending), then at
//! most one user shard at a time, then the log or the expiry queue. Nothing holds
//! two user shards at once.
//!
//! This file holds the handle, its shared state and the lock-order helpers; the
//! write paths are in `write.rs` (the writes, logging, publishing), with
//! `op.rs` turning an ingest operation into them (`Store::apply`), the read
//! paths in `read.rs` (snapshot, deltas by time or cursor, ids, lookups).

pub mod changelog;
pub(crate) mod expiry;
pub mod image;
mod latest;
mod op;
mod read;
mod replica;
mod shard;
mod user;
pub mod view;
mod write;

#[cfg(test)]
mod tests;

pub use changelog::{Changed, Cursor, CursorError, Delta, Lagged, LogStats};
pub use expiry::spawn_sweeper;
pub use image::{ConnectionImage, ImageError, Moved, Restoring, UserImage};
pub use latest::{WrittenChange, WrittenLatest};
pub use op::{Applied, Op};
pub use read::write_views;
pub use replica::{Logged, Replicated, UserState};
pub use view::UserView;

use crate::domain::{
    ConnStatus, ConnectionId, InstanceId, Profile, Status, StatusText, TokenHash, UserId, Username,
};
use changelog::ChangeLog;
use expiry::{Clock, Deadline, ExpiryQueue};
use parking_lot::{Mutex, MutexGuard, RwLock};
use shard::{shard_of, KeyIndex, Slot, UserKey, UserShard, SHARDS};
use std::collections::HashSet;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use user::{Touched, UserRecord};

/// Most login tokens one user may hold (one per device, typically a handful).
pub const MAX_TOKENS_PER_USER: usize = 256;

/// What the store needs to know of the settings.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    pub changelog_capacity: usize,
    pub delta_window: Duration,
    pub connection_ttl: Duration,
    pub allow_invisible: bool,
    pub broadcast_disabled: bool,
    /// Most open connections of one user; 0 means no limit.
    pub max_connections_per_user: usize,
    /// Most users; 0 means no limit.
    pub max_users: usize,
}

impl Default for StoreOptions {
    /// The defaults of docs/configuration.md, as in `config/default.toml`.
    fn default() -> StoreOptions {
        StoreOptions {
            changelog_capacity: 1_000_000,
            delta_window: Duration::from_secs(600),
            connection_ttl: Duration::from_secs(300),
            allow_invisible: true,
            broadcast_disabled: false,
            max_connections_per_user: 256,
            max_users: 0,
        }
    }
}

/// Why a write was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    UnknownUser(UserId),
    UsernameTaken(Username),
    InvisibleNotAllowed,
    ConnectionOfAnotherUser(ConnectionId),
    TooManyTokens,
    /// The user already has `limit` connections.
    TooManyConnections {
        user: UserId,
        limit: usize,
    },
    /// The store already holds `limit` users.
    TooManyUsers {
        limit: usize,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::UnknownUser(id) => write!(f, "userId: no user with id {:?}", id.as_str()),
            StoreError::UsernameTaken(name) => {
                write!(
                    f,
                    "username: {:?} already belongs to another user",
                    name.as_str()
                )
            }
            StoreError::InvisibleNotAllowed => {
                f.write_str("status: offline (invisible) is not allowed here")
            }
            StoreError::ConnectionOfAnotherUser(id) => {
                write!(f, "connectionId: {:?} belongs to another user", id.as_str())
            }
            StoreError::TooManyTokens => {
                write!(f, "token: a user may hold at most {MAX_TOKENS_PER_USER} tokens; revoke old ones first")
            }
            StoreError::TooManyConnections { user, limit } => write!(
                f,
                "connectionId: user {:?} already has {limit} open connections, the most allowed \
                 (presence.max_connections_per_user); close one first",
                user.as_str()
            ),
            StoreError::TooManyUsers { limit } => write!(
                f,
                "userId: cannot create another user: {limit} users are held, the most allowed \
                 (presence.max_users); delete users or raise the limit"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

/// The result of an accepted write: the cursor of the change it made, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub change: Option<Cursor>,
}

impl Written {
    const NOTHING: Written = Written { change: None };

    /// Returns true if and only if the write changed something visible.
    pub fn changed(&self) -> bool {
        self.change.is_some()
    }
}

/// An authenticated caller of the public API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: UserId,
    pub username: Username,
    pub is_admin: bool,
}

/// A set of users with the log position they are consistent with: every change
/// up to `cursor` is reflected (some later ones may be too; a delta since
/// `cursor` repeats them, which is harmless).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub cursor: Cursor,
    pub users: Vec<Arc<UserView>>,
}

/// What `users.getStatus` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub id: UserId,
    pub status: Status,
    pub connection_status: Status,
    pub status_text: String,
}

/// Counts for `/internal/v1/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    pub users: usize,
    pub online: usize,
    pub connections: usize,
    pub expired: u64,
    pub log: LogStats,
}

/// The maps' hasher: randomly seeded per process like std's, but several times
/// faster on short keys; SipHash was the largest single cost of an `ids` poll.
type Hasher = foldhash::fast::RandomState;

/// A user id's hash as the store's id table hashes it ([`Store::hash_id`]).
/// An `ids` request works it out once per id and uses it three times: to drop
/// repeated ids, to key the answer, and to find the user. Seeded per process,
/// like the table, so it means nothing to another process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdHash(u64);

impl IdHash {
    /// The hash's bits, for tables of ids other than the store's.
    pub fn get(self) -> u64 {
        self.0
    }

    /// Any bits, for tests of those tables (collisions on purpose).
    #[cfg(test)]
    pub(crate) fn forged(bits: u64) -> IdHash {
        IdHash(bits)
    }
}

/// Index shards held together, locked in ascending order (the lock order).
struct Locked<'a> {
    guards: Vec<(usize, MutexGuard<'a, KeyIndex>)>,
}

impl<'a> Locked<'a> {
    fn lock(shards: &'a [Mutex<KeyIndex>], hashes: impl IntoIterator<Item = u64>) -> Locked<'a> {
        let mut numbers: Vec<usize> = hashes.into_iter().map(shard_of).collect();
        numbers.sort_unstable();
        numbers.dedup();
        Locked {
            guards: numbers.into_iter().map(|n| (n, shards[n].lock())).collect(),
        }
    }

    /// The locked shard for `hash`; it must have been among the hashes locked.
    fn get(&mut self, hash: u64) -> &mut KeyIndex {
        let n = shard_of(hash);
        match self.guards.iter_mut().find(|(m, _)| *m == n) {
            Some((_, guard)) => guard,
            None => unreachable!("index shard {n} was not locked"),
        }
    }
}

/// The username index shards a user's change of name touches, locked (none
/// when the name stays): from `old` (none for a new user) to `new`.
struct Rename<'a> {
    renamed: bool,
    old_hash: Option<u64>,
    new_hash: u64,
    names: Locked<'a>,
}

impl<'a> Rename<'a> {
    fn lock(sh: &'a Shared, old: Option<&str>, new: &str) -> Rename<'a> {
        let renamed = old != Some(new);
        let old_hash = old.map(|o| sh.hash(o));
        let new_hash = sh.hash(new);
        let names = if renamed {
            Locked::lock(
                &sh.usernames,
                [Some(new_hash), old_hash].into_iter().flatten(),
            )
        } else {
            Locked { guards: Vec::new() }
        };
        Rename {
            renamed,
            old_hash,
            new_hash,
            names,
        }
    }

    /// Who the index says may hold the new name already. Call only on a rename.
    fn new_candidates(&mut self) -> impl Iterator<Item = Slot> + '_ {
        let hash = self.new_hash;
        self.names.get(hash).candidates(hash)
    }

    /// Moves the user in `slot` from its old name to the new one in the index.
    fn move_to(&mut self, slot: Slot) {
        if !self.renamed {
            return;
        }
        if let Some(old_hash) = self.old_hash {
            self.names.get(old_hash).remove(old_hash, slot);
        }
        self.names.get(self.new_hash).insert(self.new_hash, slot);
    }
}

#[derive(Debug)]
struct Shared {
    hasher: Hasher,
    users: Box<[RwLock<UserShard>]>,
    /// username -> owner, so `users.setStatus?username=` finds its user and
    /// usernames stay unique.
    usernames: Box<[Mutex<KeyIndex>]>,
    /// connection id -> owner: closing and expiring name only the connection.
    connections: Box<[Mutex<KeyIndex>]>,
    log: ChangeLog<UserKey>,
    expiry: ExpiryQueue,
    clock: Clock,
    connection_ttl_ms: u64,
    allow_invisible: bool,
    broadcast_disabled: AtomicBool,
    next_generation: AtomicU64,
    expired: AtomicU64,
    /// Users whose current view is not offline, kept as views change so that
    /// `/metrics` need not walk every user.
    online: AtomicUsize,
    open_connections: AtomicUsize,
    /// Users held, kept by creation and deletion so that `max_users` is
    /// checked without walking the shards (which would take a second user shard).
    user_count: AtomicUsize,
    max_users: usize,
    max_connections_per_user: usize,
}

impl Shared {
    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn users_of(&self, hash: u64) -> &RwLock<UserShard> {
        &self.users[shard_of(hash)]
    }

    /// Reads the user `id`, if it exists.
    fn with_user<T>(&self, id: &str, f: impl FnOnce(&UserRecord) -> T) -> Option<T> {
        let hash = self.hash(id);
        let shard = self.users_of(hash).read();
        shard.find(hash, id).and_then(|slot| shard.get(slot)).map(f)
    }

    /// Counts a user about to be created, or refuses if `max_users` are held.
    /// Exact under concurrent creators: the check and the count are one atomic step.
    fn reserve_user(&self) -> Result<(), StoreError> {
        let limit = self.max_users;
        self.user_count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (limit == 0 || n < limit).then_some(n + 1)
            })
            .map(drop)
            .map_err(|_| StoreError::TooManyUsers { limit })
    }

    /// The first of `candidates` whose record `is_it` accepts. Takes each
    /// candidate's user shard in turn: call it holding no user shard.
    fn confirm(
        &self,
        candidates: impl Iterator<Item = Slot>,
        is_it: impl Fn(&UserRecord) -> bool,
    ) -> Option<Slot> {
        let mut candidates = candidates;
        candidates.find(|&slot| {
            self.users[slot.shard()]
                .read()
                .get(slot)
                .is_some_and(&is_it)
        })
    }

    /// The user among `candidates` (an index's matches for the connection's
    /// hash) who holds the connection `link`. Call it holding no user shard.
    fn link_holder(&self, candidates: impl Iterator<Item = Slot>, link: &str) -> Option<Slot> {
        self.confirm(candidates, |r| r.connection(link).is_some())
    }

    /// Queues the first look at the connection of `generation` of the user in
    /// `owner`, one TTL after its refresh; see the `expiry` module.
    fn schedule_expiry(&self, owner: Slot, refreshed_ms: u64, generation: u64) {
        self.expiry.schedule(Deadline {
            at_ms: refreshed_ms.saturating_add(self.connection_ttl_ms),
            generation,
            owner,
        });
    }
}

/// The handle to all presence state. Cloning it is cheap.
#[derive(Debug, Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// The wall clock in ms; the log makes it non-decreasing.
fn now_ms() -> i64 {
    crate::clock::wall_ms()
}

fn key(slot: Slot, record: &UserRecord) -> UserKey {
    UserKey {
        slot,
        generation: record.generation,
    }
}

fn locks<T: Default>() -> Box<[T]> {
    (0..SHARDS).map(|_| T::default()).collect()
}

impl Store {
    /// Creates an empty store whose log epoch starts now.
    pub fn new(options: &StoreOptions) -> Store {
        let log = ChangeLog::new(options.changelog_capacity, options.delta_window, now_ms());
        Store::with_log(options, log)
    }

    fn with_log(options: &StoreOptions, log: ChangeLog<UserKey>) -> Store {
        Store {
            shared: Arc::new(Shared {
                hasher: Hasher::default(),
                users: (0..SHARDS)
                    .map(|n| RwLock::new(UserShard::new(n)))
                    .collect(),
                usernames: locks(),
                connections: locks(),
                log,
                expiry: ExpiryQueue::default(),
                clock: Clock::reaching_back(options.connection_ttl),
                connection_ttl_ms: u64::try_from(options.connection_ttl.as_millis())
                    .unwrap_or(u64::MAX),
                allow_invisible: options.allow_invisible,
                broadcast_disabled: AtomicBool::new(options.broadcast_disabled),
                next_generation: AtomicU64::new(1),
                expired: AtomicU64::new(0),
                online: AtomicUsize::new(0),
                open_connections: AtomicUsize::new(0),
                user_count: AtomicUsize::new(0),
                max_users: options.max_users,
                max_connections_per_user: options.max_connections_per_user,
            }),
        }
    }

    /// Creates the empty store of a cluster replica: its log numbers changes
    /// by stream position, and lags every cursor until [`Store::rebase`].
    pub fn replica(options: &StoreOptions) -> Store {
        let log = ChangeLog::replicated(options.changelog_capacity, options.delta_window);
        Store::with_log(options, log)
    }
}

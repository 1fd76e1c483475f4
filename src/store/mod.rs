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

pub mod changelog;
pub(crate) mod expiry;
pub mod image;
mod latest;
mod op;
mod rendered;
mod replica;
mod shard;
mod user;
pub mod view;

#[cfg(test)]
mod tests;

pub use changelog::{Changed, Cursor, CursorError, Delta, Lagged, LogStats};
pub use expiry::spawn_sweeper;
pub use image::{ConnectionImage, ImageError, Moved, Restoring, UserImage};
pub use latest::{WrittenChange, WrittenLatest};
pub use op::{Applied, Op};
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

    /// Logs the change a transition made, if it made one visible to others.
    /// Must be called with the user's shard still held.
    fn publish(&self, key: UserKey, record: &mut UserRecord, touched: Touched) -> Written {
        match touched {
            Touched::Hidden => Written::NOTHING,
            Touched::Visible { before } => {
                self.count_online(before, record.visible_status());
                self.log_change(key, record)
            }
        }
    }

    /// Keeps the online count as a view goes from `before` to `after`.
    fn count_online(&self, before: Status, after: Status) {
        match (before == Status::Offline, after == Status::Offline) {
            (true, false) => self.shared.online.fetch_add(1, Ordering::Relaxed),
            (false, true) => self.shared.online.fetch_sub(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// Logs a change of `record`.
    fn log_change(&self, key: UserKey, record: &mut UserRecord) -> Written {
        let cursor = self.shared.log.append(key, None, now_ms());
        record.changed_seq = cursor.seq();
        Written {
            change: Some(cursor),
        }
    }

    /// Changes the user `id` under its shard's write lock.
    fn with_user_mut<T>(
        &self,
        id: &UserId,
        f: impl FnOnce(UserKey, &mut UserRecord) -> T,
    ) -> Result<T, StoreError> {
        let hash = self.shared.hash(id.as_str());
        let mut shard = self.shared.users_of(hash).write();
        let slot = shard.find(hash, id.as_str());
        match slot.and_then(|slot| Some((slot, shard.get_mut(slot)?))) {
            Some((slot, record)) => Ok(f(key(slot, record), record)),
            None => Err(StoreError::UnknownUser(id.clone())),
        }
    }

    /// Creates the user or replaces its profile.
    pub fn put_user(&self, id: &UserId, profile: Profile) -> Result<Written, StoreError> {
        let sh = &*self.shared;
        let hash = sh.hash(id.as_str());
        let new = profile.username.as_str();
        // Reads the current username, locks the index shards of both names, then
        // writes if the user still has that name; a concurrent rename or delete
        // of this user sends it round again.
        loop {
            let old = sh.with_user(id.as_str(), |r| {
                compact_str::CompactString::from(r.username())
            });
            let mut names = Rename::lock(sh, old.as_deref(), new);
            if names.renamed {
                let candidates = names.new_candidates();
                if sh
                    .confirm(candidates, |r| r.username() == new && r.id() != id.as_str())
                    .is_some()
                {
                    return Err(StoreError::UsernameTaken(profile.username.clone()));
                }
            }
            let mut shard = sh.users_of(hash).write();
            let slot = shard.find(hash, id.as_str());
            let current = slot.and_then(|s| shard.get(s)).map(UserRecord::username);
            if current != old.as_deref() {
                continue;
            }
            let written = match slot.and_then(|slot| Some((slot, shard.get_mut(slot)?))) {
                Some((slot, record)) => {
                    let touched = record.set_profile(&profile);
                    names.move_to(slot);
                    self.publish(key(slot, record), record, touched)
                }
                None => {
                    sh.reserve_user()?;
                    let (slot, record) = shard.insert(
                        hash,
                        |generation| UserRecord::new(id, &profile, generation),
                        |id| sh.hash(id),
                    );
                    names.move_to(slot);
                    self.log_change(key(slot, record), record)
                }
            };
            return Ok(written);
        }
    }

    /// Deletes the user with its tokens and connections. Deleting an unknown user
    /// changes nothing and is not an error, so a pusher may retry freely.
    pub fn delete_user(&self, id: &UserId) -> Written {
        let sh = &*self.shared;
        let hash = sh.hash(id.as_str());
        // Reads the keys to unindex, locks their index shards, then deletes if
        // they are still the user's; a concurrent change sends it round again.
        loop {
            let Some((name, links)) = sh.with_user(id.as_str(), |r| {
                let links: Vec<compact_str::CompactString> =
                    r.connections.iter().map(|c| c.id.clone()).collect();
                (compact_str::CompactString::from(r.username()), links)
            }) else {
                return Written::NOTHING;
            };
            let name_hash = sh.hash(&name);
            let link_hashes: Vec<u64> = links.iter().map(|c| sh.hash(c)).collect();
            let mut names = Locked::lock(&sh.usernames, [name_hash]);
            let mut indexed = Locked::lock(&sh.connections, link_hashes.iter().copied());
            let mut shard = sh.users_of(hash).write();
            let Some(slot) = shard.find(hash, id.as_str()) else {
                return Written::NOTHING;
            };
            let Some(record) = shard.get(slot) else {
                return Written::NOTHING;
            };
            let unchanged = record.username() == name
                && record.connections.len() == links.len()
                && record
                    .connections
                    .iter()
                    .zip(&links)
                    .all(|(c, l)| c.id == *l);
            if !unchanged {
                continue;
            }
            let user = key(slot, record);
            self.count_online(record.visible_status(), Status::Offline);
            names.get(name_hash).remove(name_hash, slot);
            for &h in &link_hashes {
                indexed.get(h).remove(h, slot);
            }
            sh.open_connections
                .fetch_sub(links.len(), Ordering::Relaxed);
            let tombstone = Arc::new(UserView::deleted(id.as_str(), &name));
            let cursor = sh.log.append(user, Some(tombstone), now_ms());
            shard.remove(hash, slot);
            sh.user_count.fetch_sub(1, Ordering::Relaxed);
            return Written {
                change: Some(cursor),
            };
        }
    }

    /// Registers a login token hash for the user.
    pub fn add_token(&self, id: &UserId, hash: TokenHash) -> Result<Written, StoreError> {
        if self.with_user_mut(id, |_, r| r.add_token(hash, MAX_TOKENS_PER_USER))? {
            Ok(Written::NOTHING)
        } else {
            Err(StoreError::TooManyTokens)
        }
    }

    /// Revokes a login token hash; revoking one that is not there is not an error.
    pub fn revoke_token(&self, id: &UserId, hash: TokenHash) -> Result<Written, StoreError> {
        self.with_user_mut(id, |_, r| r.revoke_token(&hash))?;
        Ok(Written::NOTHING)
    }

    /// Sets the chosen status and/or status text, as `users.setStatus` does.
    pub fn set_status(
        &self,
        id: &UserId,
        status: Option<Status>,
        text: Option<StatusText>,
    ) -> Result<Written, StoreError> {
        if status == Some(Status::Offline) && !self.shared.allow_invisible {
            return Err(StoreError::InvisibleNotAllowed);
        }
        self.with_user_mut(id, |key, record| {
            let touched = record.choose(status, text);
            self.publish(key, record, touched)
        })
    }

    /// Opens a connection, or refreshes it (a heartbeat) if it is already open.
    pub fn put_connection(
        &self,
        connection: &ConnectionId,
        user: &UserId,
        status: ConnStatus,
        instance: Option<InstanceId>,
    ) -> Result<Written, StoreError> {
        let sh = &*self.shared;
        let link = connection.as_str();
        let link_hash = sh.hash(link);
        let mut indexed = sh.connections[shard_of(link_hash)].lock();
        let hash = sh.hash(user.as_str());
        let own = shard_of(hash);
        let taken = || StoreError::ConnectionOfAnotherUser(connection.clone());
        // Owners in other shards are other users: confirmed before this user's
        // shard is taken, as no one holds two user shards.
        let elsewhere = indexed
            .candidates(link_hash)
            .filter(|slot| slot.shard() != own);
        if sh.link_holder(elsewhere, link).is_some() {
            return Err(taken());
        }
        let mut shard = sh.users[own].write();
        let slot = shard
            .find(hash, user.as_str())
            .ok_or_else(|| StoreError::UnknownUser(user.clone()))?;
        let here = indexed.candidates(link_hash).any(|other| {
            other.shard() == own
                && other != slot
                && shard
                    .get(other)
                    .is_some_and(|r| r.connection(link).is_some())
        });
        if here {
            return Err(taken());
        }
        let Some(record) = shard.get_mut(slot) else {
            return Err(StoreError::UnknownUser(user.clone()));
        };
        let limit = sh.max_connections_per_user;
        if limit > 0 && record.connection(link).is_none() && record.connections.len() >= limit {
            return Err(StoreError::TooManyConnections {
                user: user.clone(),
                limit,
            });
        }
        let now = sh.clock.stamp(Instant::now());
        let (touched, opened) = record.put_connection(link, status, instance, now, || {
            sh.next_generation.fetch_add(1, Ordering::Relaxed)
        });
        if let Some(generation) = opened {
            indexed.insert(link_hash, slot);
            sh.open_connections.fetch_add(1, Ordering::Relaxed);
            sh.schedule_expiry(slot, now, generation);
        }
        Ok(self.publish(key(slot, record), record, touched))
    }

    /// Closes a connection; closing an unknown one changes nothing (it may have
    /// expired already).
    pub fn delete_connection(&self, connection: &ConnectionId) -> Written {
        self.close_connection(connection.as_str(), |_| true)
            .unwrap_or(Written::NOTHING)
    }

    /// Closes the connection if it exists and `pred` holds for it; `None` if not.
    fn close_connection(
        &self,
        connection: &str,
        pred: impl FnOnce(&user::Connection) -> bool,
    ) -> Option<Written> {
        let sh = &*self.shared;
        let link_hash = sh.hash(connection);
        let mut indexed = sh.connections[shard_of(link_hash)].lock();
        let owner = sh.link_holder(indexed.candidates(link_hash), connection)?;
        // The index shard is held, so the connection is still the owner's.
        let mut shard = sh.users[owner.shard()].write();
        let record = shard.get_mut(owner)?;
        let touched = record.remove_connection(connection, pred)?;
        indexed.remove(link_hash, owner);
        sh.open_connections.fetch_sub(1, Ordering::Relaxed);
        Some(self.publish(key(owner, record), record, touched))
    }

    /// Closes every connection of a chat-server instance. Returns how many
    /// closed, and the last change that made.
    pub fn delete_instance(&self, instance: &InstanceId) -> (usize, Written) {
        let mut doomed = Vec::new();
        for shard in self.shared.users.iter() {
            for record in shard.read().iter() {
                doomed.extend(
                    record
                        .connections
                        .iter()
                        .filter(|c| c.instance.as_ref() == Some(instance))
                        .map(|c| c.id.clone()),
                );
            }
        }
        let mut closed = 0;
        let mut last = Written::NOTHING;
        for connection in &doomed {
            if let Some(written) =
                self.close_connection(connection, |c| c.instance.as_ref() == Some(instance))
            {
                closed += 1;
                if written.changed() {
                    last = written;
                }
            }
        }
        (closed, last)
    }

    /// Refreshes every connection of an instance, as one heartbeat for all of
    /// them. Returns how many were refreshed. Walks every user: connections
    /// name their instance, and an index by instance would cost memory per
    /// connection for a call that comes once per instance heartbeat.
    pub fn refresh_instance(&self, instance: &str) -> usize {
        let now = self.shared.clock.stamp(Instant::now());
        let mut refreshed = 0;
        for shard in self.shared.users.iter() {
            for record in shard.write().iter_mut() {
                for c in record.connections.iter_mut() {
                    if c.instance.as_ref().is_some_and(|i| i.as_str() == instance) {
                        c.refreshed_ms = now;
                        refreshed += 1;
                    }
                }
            }
        }
        refreshed
    }

    /// Expires every connection not refreshed within the TTL as of `now`.
    /// Returns the next deadline, if any connection is open.
    pub fn expire_due(&self, now: Instant) -> Option<Instant> {
        let sh = &*self.shared;
        let ttl = sh.connection_ttl_ms;
        let now_ms = sh.clock.passed(now);
        for due in sh.expiry.pop_due(now_ms) {
            let found = sh.users[due.owner.shard()]
                .read()
                .get(due.owner)
                .and_then(|r| {
                    r.connections
                        .iter()
                        .find(|c| c.generation == due.generation)
                })
                .map(|c| c.id.clone());
            // Gone: closed since, maybe reopened, with a deadline of its own.
            let Some(connection) = found else { continue };
            let mut reschedule = None;
            let closed = self.close_connection(&connection, |c| {
                if c.generation != due.generation {
                    return false;
                }
                let deadline = c.refreshed_ms.saturating_add(ttl);
                if deadline > now_ms {
                    reschedule = Some(deadline);
                    return false;
                }
                true
            });
            if let Some(at_ms) = reschedule {
                sh.expiry.schedule(Deadline { at_ms, ..due });
            } else if closed.is_some() {
                sh.expired.fetch_add(1, Ordering::Relaxed);
            }
        }
        sh.expiry.next_deadline().map(|ms| sh.clock.instant(ms))
    }

    /// Returns the caller if `token` is a live login token of the active user `id`.
    pub fn authenticate(&self, id: &str, token: &str) -> Option<Caller> {
        let hash = TokenHash::of_token(token).ok()?;
        self.shared
            .with_user(id, |r| {
                if !(r.active && hash.is_among(&r.tokens)) {
                    return None;
                }
                Some(Caller {
                    id: UserId::parse(r.id()).ok()?,
                    username: Username::parse(r.username()).ok()?,
                    is_admin: r.is_admin,
                })
            })
            .flatten()
    }

    /// Returns every user whose visible status is not offline.
    pub fn online(&self) -> Snapshot {
        // The cursor first: every change up to it is already in the map.
        let cursor = self.shared.log.cursor();
        let users = self.render_all(is_online);
        Snapshot { cursor, users }
    }

    /// Returns the users among `ids` whose visible status is not offline.
    pub fn online_among<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Snapshot {
        let cursor = self.shared.log.cursor();
        let mut users = Vec::new();
        self.each_online_among(ids, |r| users.push(Arc::new(r.render())));
        Snapshot { cursor, users }
    }

    /// The users of [`Store::online`], appended to `out` as JSON objects separated
    /// by commas, with the cursor they are consistent with: an answer's body is
    /// written in place, without a string and an `Arc` per user.
    pub fn write_online(&self, out: &mut String) -> Cursor {
        let cursor = self.shared.log.cursor();
        let mut list = JsonList::new(out);
        self.each_record(is_online, |r| list.push(r));
        cursor
    }

    /// The users of [`Store::online_among`], appended to `out` as
    /// [`Store::write_online`] appends them.
    pub fn write_online_among<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        out: &mut String,
    ) -> Cursor {
        let cursor = self.shared.log.cursor();
        let mut list = JsonList::new(out);
        let sh = &*self.shared;
        for id in ids {
            // As `each_online_among`, with the shard at hand: its kept
            // renderings save most of what a user cost here.
            let hash = sh.hash(id);
            let shard = sh.users_of(hash).read();
            let found = shard.find(hash, id);
            if let Some((slot, record)) = found.and_then(|s| Some((s, shard.get(s)?))) {
                if is_online(record) {
                    list.separate();
                    shard.write_user(slot, record, list.out);
                }
            }
        }
        cursor
    }

    /// Calls `f` with each user among `ids` that is not offline, in that order.
    fn each_online_among<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        mut f: impl FnMut(&UserRecord),
    ) {
        for id in ids {
            self.shared.with_user(id, |r| {
                if is_online(r) {
                    f(r);
                }
            });
        }
    }

    /// Every user changed after `cursor` whose id `keep` accepts (see
    /// [`ChangeLog::since`]).
    pub fn changed_since(
        &self,
        cursor: Cursor,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Delta, Lagged> {
        self.shared
            .log
            .since(cursor)
            .map(|changed| self.render(changed, keep))
    }

    /// Every user changed at or after `from_ms` whose id `keep` accepts.
    pub fn changed_from(&self, from_ms: i64, keep: impl Fn(&str) -> bool) -> Result<Delta, Lagged> {
        self.shared
            .log
            .since_time(from_ms)
            .map(|changed| self.render(changed, keep))
    }

    /// The users of [`Store::changed_since`], appended to `out` as
    /// [`Store::write_online`] appends them, with the cursor they lead to.
    pub fn write_changed_since(
        &self,
        cursor: Cursor,
        keep: impl Fn(&str) -> bool,
        out: &mut String,
    ) -> Result<Cursor, Lagged> {
        self.shared
            .log
            .since(cursor)
            .map(|changed| self.write_changed(changed, keep, out))
    }

    /// The users of [`Store::changed_from`], appended to `out` as
    /// [`Store::write_online`] appends them, with the cursor they lead to.
    pub fn write_changed_from(
        &self,
        from_ms: i64,
        keep: impl Fn(&str) -> bool,
        out: &mut String,
    ) -> Result<Cursor, Lagged> {
        self.shared
            .log
            .since_time(from_ms)
            .map(|changed| self.write_changed(changed, keep, out))
    }

    /// What [`Store::render`] renders, written into `out`: in place when no
    /// user in the range was deleted (the common case), else through the views,
    /// which sort out a user deleted and created again.
    fn write_changed(
        &self,
        changed: Changed<UserKey>,
        keep: impl Fn(&str) -> bool,
        out: &mut String,
    ) -> Cursor {
        if changed
            .users
            .iter()
            .any(|(_, tombstone)| tombstone.is_some())
        {
            let delta = self.render(changed, keep);
            write_views(&delta.users, out);
            return delta.cursor;
        }
        let mut list = JsonList::new(out);
        for (user, _) in &changed.users {
            let shard = self.shared.users[user.slot.shard()].read();
            if let Some(record) = shard.get_key(*user).filter(|r| keep(r.id())) {
                list.push(record);
            }
        }
        changed.cursor
    }

    /// Renders the users of `changed` as they are now. A user whose last logged
    /// change is not its deletion but who is gone was deleted after the range
    /// ended: left out, its tombstone comes with the next delta.
    fn render(&self, changed: Changed<UserKey>, keep: impl Fn(&str) -> bool) -> Delta {
        let mut users: Vec<Arc<UserView>> = changed
            .users
            .into_iter()
            .filter_map(|(user, tombstone)| match tombstone {
                Some(tombstone) => keep(tombstone.id()).then_some(tombstone),
                None => {
                    let shard = self.shared.users[user.slot.shard()].read();
                    let record = shard.get_key(user).filter(|r| keep(r.id()))?;
                    Some(Arc::new(record.render()))
                }
            })
            .collect();
        if users.iter().any(|v| v.is_deleted()) {
            // A user deleted and created again under the same id is two users to
            // the log: keep only the later, which is what the id means now.
            let mut seen = HashSet::with_capacity(users.len());
            let mut latest: Vec<bool> = users.iter().rev().map(|v| seen.insert(v.id())).collect();
            drop(seen);
            users.retain(|_| latest.pop().unwrap_or(true));
        }
        Delta {
            cursor: changed.cursor,
            users,
        }
    }

    /// The users changed after `cursor` found the slow way, by walking every
    /// user: O(users), and blind to deletions. Kept as the benchmarks' baseline
    /// and as a test oracle for [`Store::changed_since`]; never used to answer.
    pub fn changed_since_by_scan(&self, cursor: Cursor) -> Vec<Arc<UserView>> {
        self.render_all(|r| r.changed_seq > cursor.seq())
    }

    /// Every user with the sequence number of its last change, found by walking
    /// them all: the raw material of the answers' reference scans in tests.
    #[cfg(test)]
    pub(crate) fn scan_with_changes(&self) -> Vec<(u64, Arc<UserView>)> {
        let mut users = Vec::new();
        self.each_record(
            |_| true,
            |r| users.push((r.changed_seq, Arc::new(r.render()))),
        );
        users
    }

    /// Renders every user `pick` accepts.
    fn render_all(&self, pick: impl Fn(&UserRecord) -> bool) -> Vec<Arc<UserView>> {
        let mut users = Vec::new();
        self.each_record(pick, |r| users.push(Arc::new(r.render())));
        users
    }

    /// Calls `f` with every user `pick` accepts, one shard's read lock at a time.
    fn each_record(&self, pick: impl Fn(&UserRecord) -> bool, mut f: impl FnMut(&UserRecord)) {
        for shard in self.shared.users.iter() {
            let shard = shard.read();
            shard.iter().filter(|r| pick(r)).for_each(&mut f);
        }
    }

    /// Returns the cursor of the newest change.
    pub fn cursor(&self) -> Cursor {
        self.shared.log.cursor()
    }

    /// Returns once the log has moved past `seen`: a change was published, or
    /// a replica's log was rebased. One task at a time may wait (the change
    /// stream's follower, see `crate::stream`).
    pub async fn moved_from(&self, seen: Cursor) {
        self.shared.log.moved_from(seen).await;
    }

    /// Returns the id of the user with this username.
    pub fn find_username(&self, username: &str) -> Option<UserId> {
        let sh = &*self.shared;
        let hash = sh.hash(username);
        let names = sh.usernames[shard_of(hash)].lock();
        let owner = names.candidates(hash).find_map(|slot| {
            let shard = sh.users[slot.shard()].read();
            let record = shard.get(slot).filter(|r| r.username() == username)?;
            UserId::parse(record.id()).ok()
        });
        owner
    }

    /// Returns true if and only if a user with this id exists.
    pub fn contains(&self, id: &str) -> bool {
        self.shared.with_user(id, |_| ()).is_some()
    }

    /// What `users.getStatus` shows of a user.
    pub fn status_of(&self, id: &str) -> Option<StatusReport> {
        self.shared
            .with_user(id, |r| {
                Some(StatusReport {
                    id: UserId::parse(r.id()).ok()?,
                    status: r.visible_status(),
                    connection_status: r.connection_status(),
                    status_text: r.status_text().to_owned(),
                })
            })
            .flatten()
    }

    /// Returns true if and only if presence broadcast is disabled (docs/api.md §3.1 branch 1).
    pub fn broadcast_disabled(&self) -> bool {
        self.shared.broadcast_disabled.load(Ordering::Relaxed)
    }

    pub fn set_broadcast_disabled(&self, disabled: bool) {
        self.shared
            .broadcast_disabled
            .store(disabled, Ordering::Relaxed);
    }

    /// Returns counts for `/internal/v1/stats` and `/metrics`.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            users: self.shared.user_count.load(Ordering::Relaxed),
            online: self.shared.online.load(Ordering::Relaxed),
            connections: self.shared.open_connections.load(Ordering::Relaxed),
            expired: self.shared.expired.load(Ordering::Relaxed),
            log: self.shared.log.stats(),
        }
    }
}

/// True if and only if others see the user as not offline.
fn is_online(record: &UserRecord) -> bool {
    record.visible_status() != Status::Offline
}

/// Appends the JSON objects of `views` to `out`, separated by commas, as the
/// store's `write_*` methods append users.
pub fn write_views(views: &[Arc<UserView>], out: &mut String) {
    let mut list = JsonList::new(out);
    views.iter().for_each(|view| list.push_json(view.json()));
}

/// Users' JSON objects appended to a string, separated by commas.
struct JsonList<'o> {
    out: &'o mut String,
    empty: bool,
}

impl<'o> JsonList<'o> {
    fn new(out: &'o mut String) -> JsonList<'o> {
        JsonList { out, empty: true }
    }

    fn push(&mut self, record: &UserRecord) {
        self.separate();
        record.render_into(self.out);
    }

    fn push_json(&mut self, json: &str) {
        self.separate();
        self.out.push_str(json);
    }

    fn separate(&mut self) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
    }
}

//! The store: every user, their connections and tokens, and the change log.
//!
//! [`Store`] is one cheap `Clone` handle over shared state. Callers get methods,
//! never a lock guard. Writers hold one user's map shard while they change it and
//! append the change to the log, so the log's order is each user's order and a
//! change is in the map before its cursor is published (SPEC §2, invariant 1).
//!
//! Lock order, to stay deadlock-free: a `users` shard, then a `usernames` or
//! `connections` shard, then the log. Nothing takes a `users` shard while holding
//! any other of these.

pub mod changelog;
pub(crate) mod expiry;
mod op;
mod user;
pub mod view;

#[cfg(test)]
mod tests;

pub use changelog::{Changed, Cursor, CursorError, Delta, Lagged, LogStats};
pub use expiry::spawn_sweeper;
pub use op::{Applied, Op};
pub use view::UserView;

use crate::domain::{
    ConnStatus, ConnectionId, InstanceId, Profile, Status, StatusText, TokenHash, UserId, Username,
};
use changelog::ChangeLog;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use expiry::{Deadline, ExpiryQueue};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use user::{Touched, UserRecord};

/// Most login tokens one user may hold (one per device, typically a handful).
pub const MAX_TOKENS_PER_USER: usize = 256;
/// Most simultaneous connections of one user.
pub const MAX_CONNECTIONS_PER_USER: usize = 256;

/// What the store needs to know of the settings.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    pub changelog_capacity: usize,
    pub delta_window: Duration,
    pub connection_ttl: Duration,
    pub allow_invisible: bool,
    pub broadcast_disabled: bool,
}

impl Default for StoreOptions {
    /// The defaults of SPEC §5, as in `config/default.toml`.
    fn default() -> StoreOptions {
        StoreOptions {
            changelog_capacity: 1_000_000,
            delta_window: Duration::from_secs(600),
            connection_ttl: Duration::from_secs(300),
            allow_invisible: true,
            broadcast_disabled: false,
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
    TooManyConnections,
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
            StoreError::TooManyConnections => {
                write!(
                    f,
                    "connectionId: a user may have at most {MAX_CONNECTIONS_PER_USER} connections"
                )
            }
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

#[derive(Debug)]
struct ConnectionOwner {
    user: UserId,
    instance: Option<InstanceId>,
}

/// The maps' hasher: randomly seeded per process like std's, but several times
/// faster on short keys; SipHash was the largest single cost of an `ids` poll.
type Hasher = foldhash::fast::RandomState;

#[derive(Debug)]
struct Shared {
    // Boxed: a hash table keeps up to twice as many slots as entries, and a
    // slot the size of a pointer wastes far less than one the size of a record.
    users: DashMap<UserId, Box<UserRecord>, Hasher>,
    /// username -> id, so `users.setStatus?username=` finds its user and
    /// usernames stay unique.
    usernames: DashMap<Username, UserId, Hasher>,
    /// connectionId -> owner: connection events name only the connection.
    connections: DashMap<ConnectionId, ConnectionOwner, Hasher>,
    log: ChangeLog,
    expiry: ExpiryQueue,
    connection_ttl: Duration,
    allow_invisible: bool,
    broadcast_disabled: AtomicBool,
    next_generation: AtomicU64,
    expired: AtomicU64,
    /// Users whose current view is not offline, kept as views change so that
    /// `/metrics` need not walk every user.
    online: AtomicUsize,
}

/// The handle to all presence state. Cloning it is cheap.
#[derive(Debug, Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// The wall clock in ms; the log makes it non-decreasing.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Store {
    /// Creates an empty store whose log epoch starts now.
    pub fn new(options: &StoreOptions) -> Store {
        Store {
            shared: Arc::new(Shared {
                users: DashMap::with_hasher(Hasher::default()),
                usernames: DashMap::with_hasher(Hasher::default()),
                connections: DashMap::with_hasher(Hasher::default()),
                log: ChangeLog::new(options.changelog_capacity, options.delta_window, now_ms()),
                expiry: ExpiryQueue::default(),
                connection_ttl: options.connection_ttl,
                allow_invisible: options.allow_invisible,
                broadcast_disabled: AtomicBool::new(options.broadcast_disabled),
                next_generation: AtomicU64::new(1),
                expired: AtomicU64::new(0),
                online: AtomicUsize::new(0),
            }),
        }
    }

    /// Logs the change a transition made, if it made one visible to others.
    /// Must be called with the user's shard still held.
    fn publish(&self, id: &UserId, record: &mut UserRecord, touched: Touched) -> Written {
        match touched {
            Touched::Hidden => Written::NOTHING,
            Touched::Visible { before } => {
                self.count_online(before, record.visible_status());
                self.log_change(id, record)
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
    fn log_change(&self, id: &UserId, record: &mut UserRecord) -> Written {
        let cursor = self.shared.log.append(id.clone(), None, now_ms());
        record.changed_seq = cursor.seq();
        Written {
            change: Some(cursor),
        }
    }

    fn claim_username(&self, name: &Username, id: &UserId) -> Result<(), StoreError> {
        match self.shared.usernames.entry(name.clone()) {
            Entry::Occupied(owner) if owner.get() != id => {
                Err(StoreError::UsernameTaken(name.clone()))
            }
            Entry::Occupied(_) => Ok(()),
            Entry::Vacant(slot) => {
                slot.insert(id.clone());
                Ok(())
            }
        }
    }

    /// Creates the user or replaces its profile.
    pub fn put_user(&self, id: &UserId, profile: Profile) -> Result<Written, StoreError> {
        match self.shared.users.entry(id.clone()) {
            Entry::Occupied(mut slot) => {
                let record = slot.get_mut();
                let old_name = record.profile.username.clone();
                if old_name != profile.username {
                    self.claim_username(&profile.username, id)?;
                    self.shared
                        .usernames
                        .remove_if(&old_name, |_, owner| owner == id);
                }
                let touched = record.set_profile(profile);
                Ok(self.publish(id, record, touched))
            }
            Entry::Vacant(slot) => {
                self.claim_username(&profile.username, id)?;
                let mut record = Box::new(UserRecord::new(profile));
                let written = self.log_change(id, &mut record);
                slot.insert(record);
                Ok(written)
            }
        }
    }

    /// Deletes the user with its tokens and connections. Deleting an unknown user
    /// changes nothing and is not an error, so a pusher may retry freely.
    pub fn delete_user(&self, id: &UserId) -> Written {
        let Entry::Occupied(slot) = self.shared.users.entry(id.clone()) else {
            return Written::NOTHING;
        };
        let record = slot.get();
        self.shared
            .usernames
            .remove_if(&record.profile.username, |_, owner| owner == id);
        for conn in &record.connections {
            self.shared
                .connections
                .remove_if(&conn.id, |_, owner| &owner.user == id);
        }
        self.count_online(record.visible_status(), Status::Offline);
        let tombstone = Arc::new(UserView::deleted(id, record.profile.username.as_str()));
        let cursor = self
            .shared
            .log
            .append(id.clone(), Some(tombstone), now_ms());
        slot.remove();
        Written {
            change: Some(cursor),
        }
    }

    /// Registers a login token hash for the user.
    pub fn add_token(&self, id: &UserId, hash: TokenHash) -> Result<Written, StoreError> {
        let mut record = self.record_mut(id)?;
        if !hash.is_among(&record.tokens) {
            if record.tokens.len() >= MAX_TOKENS_PER_USER {
                return Err(StoreError::TooManyTokens);
            }
            record.tokens.push(hash);
        }
        Ok(Written::NOTHING)
    }

    /// Revokes a login token hash; revoking one that is not there is not an error.
    pub fn revoke_token(&self, id: &UserId, hash: TokenHash) -> Result<Written, StoreError> {
        self.record_mut(id)?
            .tokens
            .retain(|t| !hash.is_among(std::slice::from_ref(t)));
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
        let mut record = self.record_mut(id)?;
        let touched = record.choose(status, text);
        Ok(self.publish(id, &mut record, touched))
    }

    fn record_mut(
        &self,
        id: &UserId,
    ) -> Result<dashmap::mapref::one::RefMut<'_, UserId, Box<UserRecord>>, StoreError> {
        self.shared
            .users
            .get_mut(id)
            .ok_or_else(|| StoreError::UnknownUser(id.clone()))
    }

    /// Opens a connection, or refreshes it (a heartbeat) if it is already open.
    pub fn put_connection(
        &self,
        connection: &ConnectionId,
        user: &UserId,
        status: ConnStatus,
        instance: Option<InstanceId>,
    ) -> Result<Written, StoreError> {
        let now = Instant::now();
        let mut record = self.record_mut(user)?;
        match self.shared.connections.entry(connection.clone()) {
            Entry::Occupied(owner) if &owner.get().user != user => {
                return Err(StoreError::ConnectionOfAnotherUser(connection.clone()));
            }
            Entry::Occupied(mut owner) => {
                if instance.is_some() && owner.get().instance != instance {
                    owner.get_mut().instance = instance.clone();
                }
            }
            Entry::Vacant(slot) => {
                if record.connections.len() >= MAX_CONNECTIONS_PER_USER {
                    return Err(StoreError::TooManyConnections);
                }
                slot.insert(ConnectionOwner {
                    user: user.clone(),
                    instance: instance.clone(),
                });
            }
        }
        let mut generation = 0;
        let (touched, opened) = record.put_connection(connection, status, instance, now, || {
            generation = self.shared.next_generation.fetch_add(1, Ordering::Relaxed);
            generation
        });
        if opened {
            self.shared.expiry.schedule(Deadline {
                at: now + self.shared.connection_ttl,
                generation,
                connection: connection.clone(),
            });
        }
        Ok(self.publish(user, &mut record, touched))
    }

    /// Closes a connection; closing an unknown one changes nothing (it may have
    /// expired already).
    pub fn delete_connection(&self, connection: &ConnectionId) -> Written {
        self.close_connection(connection, |_| true)
            .unwrap_or(Written::NOTHING)
    }

    /// Closes the connection if it exists and `pred` holds for it; `None` if not.
    fn close_connection(
        &self,
        connection: &ConnectionId,
        pred: impl FnOnce(&user::Connection) -> bool,
    ) -> Option<Written> {
        let owner = self
            .shared
            .connections
            .get(connection)
            .map(|o| o.user.clone())?;
        let mut record = self.shared.users.get_mut(&owner)?;
        let touched = record.remove_connection(connection, pred)?;
        self.shared
            .connections
            .remove_if(connection, |_, o| o.user == owner);
        Some(self.publish(&owner, &mut record, touched))
    }

    /// Closes every connection of a chat-server instance. Returns how many
    /// closed, and the last change that made.
    pub fn delete_instance(&self, instance: &InstanceId) -> (usize, Written) {
        let doomed = self.connections_of(instance.as_str());
        let mut closed = 0;
        let mut last = Written::NOTHING;
        for (connection, _) in &doomed {
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

    /// The open connections of `instance`, with their owners. Walks the
    /// connection index: instances die rarely, so this costs less than keeping
    /// a second index current on every connection event.
    fn connections_of(&self, instance: &str) -> Vec<(ConnectionId, UserId)> {
        self.shared
            .connections
            .iter()
            .filter(|e| {
                e.value()
                    .instance
                    .as_ref()
                    .is_some_and(|i| i.as_str() == instance)
            })
            .map(|e| (e.key().clone(), e.value().user.clone()))
            .collect()
    }

    /// Refreshes every connection of an instance, as one heartbeat for all of
    /// them. Returns how many were refreshed.
    pub fn refresh_instance(&self, instance: &str) -> usize {
        let now = Instant::now();
        let of_instance = self.connections_of(instance);
        of_instance
            .iter()
            .filter(|(connection, user)| {
                let Some(mut record) = self.shared.users.get_mut(user) else {
                    return false;
                };
                let conn = record.connections.iter_mut().find(|c| &c.id == connection);
                conn.map(|c| c.refreshed_at = now).is_some()
            })
            .count()
    }

    /// Expires every connection not refreshed within the TTL as of `now`.
    /// Returns the next deadline, if any connection is open.
    pub fn expire_due(&self, now: Instant) -> Option<Instant> {
        let ttl = self.shared.connection_ttl;
        for due in self.shared.expiry.pop_due(now) {
            let mut reschedule = None;
            let closed = self.close_connection(&due.connection, |c| {
                if c.generation != due.generation {
                    return false; // closed and reopened since: its own entry is queued
                }
                let deadline = c.refreshed_at + ttl;
                if deadline > now {
                    reschedule = Some(deadline);
                    return false;
                }
                true
            });
            if let Some(at) = reschedule {
                self.shared.expiry.schedule(Deadline { at, ..due });
            } else if closed.is_some() {
                self.shared.expired.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.shared.expiry.next_deadline()
    }

    /// Returns the caller if `token` is a live login token of the active user `id`.
    pub fn authenticate(&self, id: &str, token: &str) -> Option<Caller> {
        let hash = TokenHash::of_token(token).ok()?;
        let record = self.shared.users.get(id)?;
        (record.profile.active && hash.is_among(&record.tokens)).then(|| Caller {
            id: record.key().clone(),
            username: record.profile.username.clone(),
            is_admin: record.profile.is_admin,
        })
    }

    /// Returns every user whose visible status is not offline.
    pub fn online(&self) -> Snapshot {
        // The cursor first: every change up to it is already in the map.
        let cursor = self.shared.log.cursor();
        let users = self
            .shared
            .users
            .iter()
            .filter(|entry| entry.visible_status() != Status::Offline)
            .map(|entry| Arc::new(entry.render(entry.key())))
            .collect();
        Snapshot { cursor, users }
    }

    /// Returns the users among `ids` whose visible status is not offline.
    pub fn online_among<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> Snapshot {
        let cursor = self.shared.log.cursor();
        let users = ids
            .into_iter()
            .filter_map(|id| {
                let record = self.shared.users.get(id)?;
                (record.visible_status() != Status::Offline)
                    .then(|| Arc::new(record.render(record.key())))
            })
            .collect();
        Snapshot { cursor, users }
    }

    /// Every user changed after `cursor` that `keep` accepts (see [`ChangeLog::since`]).
    pub fn changed_since(
        &self,
        cursor: Cursor,
        keep: impl Fn(&UserId) -> bool,
    ) -> Result<Delta, Lagged> {
        self.shared
            .log
            .since(cursor, keep)
            .map(|changed| self.render(changed))
    }

    /// Renders the users of `changed` as they are now. A user whose last logged
    /// change is not its deletion but who is gone was deleted after the range
    /// ended: left out, its tombstone comes with the next delta.
    fn render(&self, changed: Changed) -> Delta {
        let users = changed
            .users
            .into_iter()
            .filter_map(|(id, tombstone)| {
                tombstone.or_else(|| {
                    let record = self.shared.users.get(&id)?;
                    Some(Arc::new(record.render(&id)))
                })
            })
            .collect();
        Delta {
            cursor: changed.cursor,
            users,
        }
    }

    /// The users changed after `cursor` found the slow way, by walking every
    /// user: O(users), and blind to deletions. Kept as the benchmarks' baseline
    /// and as a test oracle for [`Store::changed_since`]; never used to answer.
    pub fn changed_since_by_scan(&self, cursor: Cursor) -> Vec<Arc<UserView>> {
        self.shared
            .users
            .iter()
            .filter(|entry| entry.changed_seq > cursor.seq())
            .map(|entry| Arc::new(entry.render(entry.key())))
            .collect()
    }

    /// Every user changed at or after `from_ms` that `keep` accepts.
    pub fn changed_from(
        &self,
        from_ms: i64,
        keep: impl Fn(&UserId) -> bool,
    ) -> Result<Delta, Lagged> {
        self.shared
            .log
            .since_time(from_ms, keep)
            .map(|changed| self.render(changed))
    }

    /// Returns the cursor of the newest change.
    pub fn cursor(&self) -> Cursor {
        self.shared.log.cursor()
    }

    /// Returns the id of the user with this username.
    pub fn find_username(&self, username: &str) -> Option<UserId> {
        self.shared.usernames.get(username).map(|id| id.clone())
    }

    /// Returns true if and only if a user with this id exists.
    pub fn contains(&self, id: &str) -> bool {
        self.shared.users.contains_key(id)
    }

    /// What `users.getStatus` shows of a user.
    pub fn status_of(&self, id: &str) -> Option<StatusReport> {
        let record = self.shared.users.get(id)?;
        Some(StatusReport {
            id: record.key().clone(),
            status: record.visible_status(),
            connection_status: record.connection_status(),
            status_text: record.status_text.as_str().to_owned(),
        })
    }

    /// Returns true if and only if presence broadcast is disabled (SPEC §3.1 branch 1).
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
            users: self.shared.users.len(),
            online: self.shared.online.load(Ordering::Relaxed),
            connections: self.shared.connections.len(),
            expired: self.shared.expired.load(Ordering::Relaxed),
            log: self.shared.log.stats(),
        }
    }
}

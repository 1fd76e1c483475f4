//! The store as plain records, for snapshots: [`Store::export`] walks the users
//! out as [`UserImage`]s and [`Restoring`] builds a new store from them.
//!
//! Export holds one shard's read lock while it copies the shard's users, and
//! hands them to the caller only after releasing it, so the caller may write
//! them to disk without holding up writers. Each user is copied whole, but the
//! shards one after another, so a username or connection id given up by a user
//! already copied and taken by one not yet copied would appear twice, and the
//! image would not load: export notices the repeat and fails with [`Moved`],
//! and the caller walks again. Everything else a shard-by-shard copy can mix
//! (one user as of a moment before another) is a state the store could have
//! been in.
//!
//! Refresh times leave as wall-clock milliseconds, since the store's clock is
//! monotonic and per process, and come back as ages on the new store's clock;
//! a connection older than the TTL comes back already due and expires at the
//! first sweep. A restored store is a new epoch with an empty log: every
//! earlier cursor gets a full answer (SPEC §2.3), and restoring logs nothing.

use super::expiry::Deadline;
use super::{
    now_ms, Locked, Store, StoreOptions, UserRecord, MAX_CONNECTIONS_PER_USER, MAX_TOKENS_PER_USER,
};
use crate::domain::status::visible_status;
use crate::domain::{
    ConnStatus, ConnectionId, InstanceId, Profile, Status, StatusText, TokenHash, UserId, Username,
};
use std::collections::HashSet;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

/// One user as plain data: everything the store keeps of it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserImage {
    pub id: String,
    pub username: String,
    pub name: Option<String>,
    pub utc_offset: Option<f64>,
    pub avatar_etag: Option<String>,
    pub is_admin: bool,
    pub active: bool,
    /// `statusDefault`: what the user chose.
    pub chosen: Status,
    /// `status` before deactivation hides it: `chosen` right after a manual
    /// set, otherwise what the rule derives from the connections.
    pub status: Status,
    pub status_text: String,
    pub tokens: Vec<TokenHash>,
    pub connections: Vec<ConnectionImage>,
}

/// One open connection as plain data.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionImage {
    pub id: String,
    pub instance: Option<String>,
    pub status: ConnStatus,
    /// When it was opened or last refreshed, in wall-clock ms since the Unix epoch.
    pub refreshed_at_ms: i64,
}

/// A username or connection id showed up twice in one walk: it moved from a
/// user already copied to one copied later. Walking again gives an image
/// that loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// `username` or `connectionId`.
    pub field: &'static str,
}

impl fmt::Display for Moved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {} moved from one user to another while the users were copied",
            self.field
        )
    }
}

impl std::error::Error for Moved {}

/// Why a user cannot be restored; `Display` names the field and what is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageError(String);

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ImageError {}

fn invalid(message: String) -> ImageError {
    ImageError(message)
}

/// The error of a domain parser, whose message already names the field.
fn rejected(e: impl fmt::Display) -> ImageError {
    ImageError(e.to_string())
}

/// The usernames and connection ids one walk has seen, by hash: a repeat is
/// a key that moved (or, about once in 2^64, two keys sharing a hash; the next
/// walk hashes with another seed).
struct SeenKeys {
    hasher: foldhash::fast::RandomState,
    usernames: HashSet<u64, foldhash::fast::RandomState>,
    connections: HashSet<u64, foldhash::fast::RandomState>,
}

impl SeenKeys {
    fn new() -> SeenKeys {
        SeenKeys {
            hasher: foldhash::fast::RandomState::default(),
            usernames: HashSet::default(),
            connections: HashSet::default(),
        }
    }

    fn see(&mut self, user: &UserImage) -> Result<(), Moved> {
        if !self
            .usernames
            .insert(self.hasher.hash_one(user.username.as_str()))
        {
            return Err(Moved { field: "username" });
        }
        for c in &user.connections {
            if !self.connections.insert(self.hasher.hash_one(c.id.as_str())) {
                return Err(Moved {
                    field: "connectionId",
                });
            }
        }
        Ok(())
    }
}

impl Store {
    /// Hands every user to `visit`, one shard's users at a time, holding no
    /// lock while `visit` runs.
    ///
    /// # Errors
    /// What `visit` returns, or [`Moved`] when a key moved between users
    /// during the walk; the users visited so far then do not form an image
    /// that loads, and the caller should walk again.
    pub fn export<E: From<Moved>>(
        &self,
        mut visit: impl FnMut(Vec<UserImage>) -> Result<(), E>,
    ) -> Result<(), E> {
        let clock = &self.shared.clock;
        let mut seen = SeenKeys::new();
        for shard in self.shared.users.iter() {
            let users: Vec<UserImage> = {
                let shard = shard.read();
                let (wall_now, clock_now) = (now_ms(), clock.stamp(Instant::now()));
                let wall_ms = |ms: u64| {
                    let age = i64::try_from(clock_now.saturating_sub(ms)).unwrap_or(i64::MAX);
                    wall_now.saturating_sub(age)
                };
                shard.iter().map(|r| r.image(&wall_ms)).collect()
            };
            for user in &users {
                seen.see(user)?;
            }
            visit(users)?;
        }
        Ok(())
    }

    /// Returns a number that grows whenever any user changes in any way,
    /// visible or not (a heartbeat, a token): if it is the same at two
    /// moments, no user changed between them.
    pub fn version(&self) -> u64 {
        self.shared.users.iter().map(|s| s.read().version()).sum()
    }
}

/// A store being rebuilt from an image, user by user, before anyone uses it.
pub struct Restoring {
    store: Store,
    /// The wall clock and the store's clock read at the same moment, to turn
    /// refresh times back into ages.
    wall_now: i64,
    clock_now: u64,
}

impl Restoring {
    /// Starts an empty store, in a new epoch, to restore users into.
    pub fn new(options: &StoreOptions) -> Restoring {
        let store = Store::new(options);
        let clock_now = store.shared.clock.stamp(Instant::now());
        Restoring {
            store,
            wall_now: now_ms(),
            clock_now,
        }
    }

    /// `wall_ms` on the store's clock. A time in the future counts as now; one
    /// further back than the clock reaches (a TTL) as the clock's start,
    /// which is due already.
    fn clock_ms(&self, wall_ms: i64) -> u64 {
        let age = u64::try_from(self.wall_now.saturating_sub(wall_ms)).unwrap_or(0);
        self.clock_now.saturating_sub(age)
    }

    /// Adds a user, checked as the API checks what it is sent, and against the
    /// users added before it (ids, usernames and connection ids are unique).
    ///
    /// # Errors
    /// An [`ImageError`] naming the first bad field; nothing of the user was added.
    pub fn add(&mut self, user: UserImage) -> Result<(), ImageError> {
        let sh = &*self.store.shared;
        let id = UserId::parse(&user.id).map_err(rejected)?;
        let roles = if user.is_admin {
            vec!["admin".to_owned()]
        } else {
            Vec::new()
        };
        let profile = Profile::new(
            Username::parse(&user.username).map_err(rejected)?,
            user.name,
            user.utc_offset,
            user.avatar_etag,
            &roles,
            user.active,
        )
        .map_err(rejected)?;
        let text = StatusText::new(&user.status_text);
        if text.as_str() != user.status_text {
            return Err(invalid(
                "statusText: expected a trimmed text of at most 120 characters".to_owned(),
            ));
        }
        if user.tokens.len() > MAX_TOKENS_PER_USER {
            return Err(invalid(format!(
                "hashedTokens: {} tokens, expected at most {MAX_TOKENS_PER_USER}",
                user.tokens.len()
            )));
        }
        if user.connections.len() > MAX_CONNECTIONS_PER_USER {
            return Err(invalid(format!(
                "connections: {} connections, expected at most {MAX_CONNECTIONS_PER_USER}",
                user.connections.len()
            )));
        }

        let mut record = UserRecord::new(&id, &profile, 0);
        for hash in user.tokens {
            let _ = record.add_token(hash, MAX_TOKENS_PER_USER);
        }
        let mut link_hashes = Vec::with_capacity(user.connections.len());
        for c in user.connections {
            let link = ConnectionId::parse(&c.id).map_err(rejected)?;
            let instance = c
                .instance
                .as_deref()
                .map(InstanceId::parse)
                .transpose()
                .map_err(rejected)?;
            if record.connection(link.as_str()).is_some() {
                return Err(invalid(format!(
                    "connectionId: {:?} appears twice",
                    link.as_str()
                )));
            }
            let refreshed = self.clock_ms(c.refreshed_at_ms);
            let _ = record.put_connection(link.as_str(), c.status, instance, refreshed, || {
                sh.next_generation.fetch_add(1, Ordering::Relaxed)
            });
            link_hashes.push(sh.hash(link.as_str()));
        }
        if !record.restore_status(user.chosen, user.status, text) {
            return Err(invalid(format!(
                "status: {} is neither statusDefault ({}) nor what the connections give ({})",
                user.status,
                user.chosen,
                visible_status(user.chosen, record.connection_status()),
            )));
        }

        let username = profile.username.as_str();
        let name_hash = sh.hash(username);
        let mut names = Locked::lock(&sh.usernames, [name_hash]);
        let candidates = names.get(name_hash).candidates(name_hash);
        if sh.confirm(candidates, |r| r.username() == username).is_some() {
            return Err(invalid(format!(
                "username: {username:?} already belongs to another user"
            )));
        }
        let mut indexed = Locked::lock(&sh.connections, link_hashes.iter().copied());
        for (c, &h) in record.connections.iter().zip(&link_hashes) {
            let candidates = indexed.get(h).candidates(h);
            if sh
                .confirm(candidates, |r| r.connection(&c.id).is_some())
                .is_some()
            {
                return Err(invalid(format!(
                    "connectionId: {:?} already belongs to another user",
                    c.id.as_str()
                )));
            }
        }
        let hash = sh.hash(id.as_str());
        let mut shard = sh.users_of(hash).write();
        if shard.find(hash, id.as_str()).is_some() {
            return Err(invalid(format!("userId: {:?} appears twice", id.as_str())));
        }
        let (slot, record) = shard.insert(
            hash,
            move |generation| {
                let mut record = record;
                record.generation = generation;
                record
            },
            |id| sh.hash(id),
        );
        names.get(name_hash).insert(name_hash, slot);
        for (c, &h) in record.connections.iter().zip(&link_hashes) {
            indexed.get(h).insert(h, slot);
            sh.expiry.schedule(Deadline {
                at_ms: c.refreshed_ms.saturating_add(sh.connection_ttl_ms),
                generation: c.generation,
                owner: slot,
            });
        }
        sh.open_connections
            .fetch_add(record.connections.len(), Ordering::Relaxed);
        if record.visible_status() != Status::Offline {
            sh.online.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The restored store, ready to serve.
    pub fn finish(self) -> Store {
        self.store
    }
}

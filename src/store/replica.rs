//! The store's side of cluster replication (see `crate::cluster`): a replica
//! never decides a write itself; it applies, in stream order, the full state
//! of each user a shared Redis stream carries. Applying a state twice changes
//! nothing, which is what lets a replica load every user and then replay
//! entries it may already reflect.
//!
//! Only the follower calls these, one entry at a time, so they need none of
//! the retry loops of the local writes; they still take the locks in the
//! store's order, as readers run beside them.

use super::shard::shard_of;
use super::user::UserRecord;
use super::view::UserView;
use super::{key, Locked, Rename, Store, Written};
use crate::domain::{Profile, Status, StatusText, TokenHash, UserId, Username};
use compact_str::CompactString;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A user's full state as a cluster stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserState {
    pub id: UserId,
    pub profile: Profile,
    /// `status` by docs/api.md §1 (manual-set exception included), before
    /// deactivation hides it.
    pub status: Status,
    pub status_text: StatusText,
    /// `statusConnection`, derived in Redis from the user's live connections.
    pub connection_status: Status,
    pub tokens: Vec<TokenHash>,
}

/// One replicated change.
#[derive(Debug, Clone, PartialEq)]
pub enum Replicated {
    Put(UserState),
    Delete { id: UserId, username: Username },
}

/// Whether applying a state is a change of the log, and at which stream position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logged {
    /// Loaded at bootstrap, or a change of nothing visible (tokens, roles,
    /// connection status): the map changes, the log does not.
    No,
    /// A visible change at stream `position`, written at `ts` (ms, Redis's clock).
    At { position: u64, ts: i64 },
}

impl Store {
    /// Starts this replica's log over at stream `position` (written at `ts`)
    /// of stream generation `epoch`: cursors from before it get `full: true`.
    pub fn rebase(&self, epoch: u64, position: u64, ts: i64) {
        self.shared.log.rebase(epoch, position, ts);
    }

    /// Applies one replicated change.
    pub fn replicate(&self, change: Replicated, logged: Logged) -> Written {
        match change {
            Replicated::Put(state) => self.replicate_put(&state, logged),
            Replicated::Delete { id, username } => self.replicate_delete(&id, &username, logged),
        }
    }

    fn replicate_put(&self, state: &UserState, logged: Logged) -> Written {
        let sh = &*self.shared;
        let id = state.id.as_str();
        let hash = sh.hash(id);
        let old = sh.with_user(id, |r| CompactString::from(r.username()));
        // Uniqueness is Redis's to enforce: while a replica replays entries
        // older than what it loaded, a name may briefly have two holders here.
        let mut names = Rename::lock(sh, old.as_deref(), state.profile.username.as_str());
        let mut shard = sh.users_of(hash).write();
        let found = shard.find(hash, id);
        let (slot, record, before) = match found.and_then(|s| Some((s, shard.get_mut(s)?))) {
            Some((slot, record)) => {
                let before = record.visible_status();
                names.move_to(slot);
                (slot, record, before)
            }
            None => {
                sh.user_count.fetch_add(1, Ordering::Relaxed);
                let (slot, record) = shard.insert(
                    hash,
                    |generation| UserRecord::new(&state.id, &state.profile, generation),
                    |id| sh.hash(id),
                );
                names.move_to(slot);
                (slot, record, Status::Offline)
            }
        };
        let had = record.connections.len();
        record.replicate(
            &state.profile,
            state.status,
            &state.status_text,
            state.connection_status,
            &state.tokens,
        );
        self.count_online(before, record.visible_status());
        // A replica counts a user's stand-in connection (see `UserRecord::replicate`).
        let has = record.connections.len();
        sh.open_connections.fetch_add(has, Ordering::Relaxed);
        sh.open_connections.fetch_sub(had, Ordering::Relaxed);
        match logged {
            Logged::No => Written { change: None },
            Logged::At { position, ts } => {
                let cursor = sh.log.append_at(key(slot, record), None, ts, position);
                record.changed_seq = cursor.seq();
                Written {
                    change: Some(cursor),
                }
            }
        }
    }

    fn replicate_delete(&self, id: &UserId, username: &Username, logged: Logged) -> Written {
        let sh = &*self.shared;
        let hash = sh.hash(id.as_str());
        let name = sh.with_user(id.as_str(), |r| CompactString::from(r.username()));
        let name_hash = name.as_deref().map(|n| sh.hash(n));
        let mut names = Locked::lock(&sh.usernames, name_hash);
        let mut shard = sh.users_of(hash).write();
        let found = shard.find(hash, id.as_str());
        if let Some((slot, record)) = found.and_then(|s| Some((s, shard.get(s)?))) {
            self.count_online(record.visible_status(), Status::Offline);
            sh.open_connections
                .fetch_sub(record.connections.len(), Ordering::Relaxed);
            let user = key(slot, record);
            if let Some(h) = name_hash {
                names.get(h).remove(h, slot);
            }
            if let Logged::At { position, ts } = logged {
                let tombstone = Arc::new(UserView::deleted(id.as_str(), username.as_str()));
                sh.log.append_at(user, Some(tombstone), ts, position);
            }
            shard.remove(hash, slot);
            sh.user_count.fetch_sub(1, Ordering::Relaxed);
        } else if let Logged::At { position, ts } = logged {
            // Deleted before this replica loaded it: the change is still one
            // of the stream's, and a delta across it must carry the tombstone.
            drop(shard);
            let tombstone = Arc::new(UserView::deleted(id.as_str(), username.as_str()));
            // Truncated: it only needs to differ from its neighbours'.
            let ghost = super::shard::UserKey::ghost(shard_of(hash), position as u32);
            sh.log.append_at(ghost, Some(tombstone), ts, position);
        }
        Written {
            change: match logged {
                Logged::No => None,
                Logged::At { .. } => Some(sh.log.cursor()),
            },
        }
    }

    /// Removes, without logging, every user whose id is not in `keep`: after a
    /// resync, the users deleted while this replica could not follow.
    pub fn retain_replicated(&self, keep: &HashSet<String>) {
        let mut gone = Vec::new();
        for shard in self.shared.users.iter() {
            for record in shard.read().iter() {
                if !keep.contains(record.id()) {
                    gone.push((record.id().to_owned(), record.username().to_owned()));
                }
            }
        }
        for (id, username) in gone {
            if let (Ok(id), Ok(username)) = (UserId::parse(&id), Username::parse(&username)) {
                self.replicate_delete(&id, &username, Logged::No);
            }
        }
    }
}

impl UserRecord {
    /// Takes the full state a cluster stored for this user. The status is
    /// taken as given, not derived here: the rule ran in Redis. The user's
    /// connections are summed up as at most one stand-in connection with their
    /// `statusConnection`, which is all a replica reads of them.
    pub(crate) fn replicate(
        &mut self,
        profile: &Profile,
        status: Status,
        text: &StatusText,
        connection_status: Status,
        tokens: &[TokenHash],
    ) {
        let _ = self.set_profile(profile);
        let _ = self.choose(Some(status), Some(text.clone()));
        self.tokens = tokens.into();
        self.connections.clear();
        let stand_in = match connection_status {
            Status::Online => Some(crate::domain::ConnStatus::Online),
            Status::Away => Some(crate::domain::ConnStatus::Away),
            _ => None,
        };
        if let Some(status) = stand_in {
            self.connections.push(super::user::Connection {
                id: CompactString::default(),
                instance: None,
                status,
                refreshed_ms: 0,
                generation: 0,
            });
        }
    }
}

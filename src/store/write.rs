//! The store's writes: each applies one op to one user under its shard's lock,
//! appends the change (if others can see it) to the log before the lock is
//! released, and so publishes its cursor only once the change is readable
//! (docs/api.md §2, invariant 1). The lock order is the one in the module doc
//! of [`super`].

use super::*;

impl Store {
    /// Turns broadcasting off or on (`presence.broadcast_disabled`, or the
    /// internal settings route): a setting, not a change of any user, so not logged.
    pub fn set_broadcast_disabled(&self, disabled: bool) {
        self.shared
            .broadcast_disabled
            .store(disabled, Ordering::Relaxed);
    }

    /// Logs the change a transition made, if it made one visible to others.
    /// Must be called with the user's shard still held.
    pub(super) fn publish(
        &self,
        key: UserKey,
        record: &mut UserRecord,
        touched: Touched,
    ) -> Written {
        match touched {
            Touched::Hidden => Written::NOTHING,
            Touched::Visible { before } => {
                self.count_online(before, record.visible_status());
                self.log_change(key, record)
            }
        }
    }

    /// Keeps the online count as a view goes from `before` to `after`.
    pub(super) fn count_online(&self, before: Status, after: Status) {
        match (before == Status::Offline, after == Status::Offline) {
            (true, false) => self.shared.online.fetch_add(1, Ordering::Relaxed),
            (false, true) => self.shared.online.fetch_sub(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// Logs a change of `record`.
    pub(super) fn log_change(&self, key: UserKey, record: &mut UserRecord) -> Written {
        let cursor = self.shared.log.append(key, None, now_ms());
        record.changed_seq = cursor.seq();
        Written {
            change: Some(cursor),
        }
    }

    /// Changes the user `id` under its shard's write lock.
    pub(super) fn with_user_mut<T>(
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
    pub(super) fn close_connection(
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
}

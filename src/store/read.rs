//! The store's reads: the full state, the changes since a cursor or a time, the
//! users among some ids, written straight into an answer's body or as views, and
//! the lookups behind auth and `users.getStatus`. A read holds one shard's read
//! lock at a time, only while it copies a user out.

use super::*;

impl Store {
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

    /// Returns the hash the store finds the user `id` by: see [`IdHash`].
    #[inline]
    pub fn hash_id(&self, id: &str) -> IdHash {
        IdHash(self.shared.hash(id))
    }

    /// The users of [`Store::online_among`], appended to `out` as
    /// [`Store::write_online`] appends them; each id comes with its
    /// [`Store::hash_id`]. A user's JSON is the one kept from its last such
    /// answer while the user is unchanged: no other client asks for the same
    /// ids, so this is what saves rendering them every time.
    // `#[inline]` here and on the helpers below: since the reads moved out of
    // mod.rs they sit in another codegen unit than their callers, and without it
    // an `ids` poll of a fleet cost 2.4 % more instructions (BENCHMARKS.md).
    #[inline]
    pub fn write_online_among<'a>(
        &self,
        ids: impl IntoIterator<Item = (&'a str, IdHash)>,
        out: &mut String,
    ) -> Cursor {
        let cursor = self.shared.log.cursor();
        let mut list = JsonList::new(out);
        for (id, IdHash(hash)) in ids {
            let shard = self.shared.users_of(hash).read();
            let render = |r: &UserRecord| {
                is_online(r).then(|| {
                    let mut json = String::new();
                    r.render_into(&mut json);
                    json.into_boxed_str()
                })
            };
            if let Some(json) = shard.kept_json(hash, id, render) {
                list.separate();
                list.out.push_str(json);
            }
        }
        cursor
    }

    /// Calls `f` with each user among `ids` that is not offline, in that order.
    #[inline]
    pub(super) fn each_online_among<'a>(
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
    pub(super) fn write_changed(
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
    pub(super) fn render(&self, changed: Changed<UserKey>, keep: impl Fn(&str) -> bool) -> Delta {
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
    pub(super) fn render_all(&self, pick: impl Fn(&UserRecord) -> bool) -> Vec<Arc<UserView>> {
        let mut users = Vec::new();
        self.each_record(pick, |r| users.push(Arc::new(r.render())));
        users
    }

    /// Calls `f` with every user `pick` accepts, one shard's read lock at a time.
    pub(super) fn each_record(
        &self,
        pick: impl Fn(&UserRecord) -> bool,
        mut f: impl FnMut(&UserRecord),
    ) {
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
#[inline]
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
    #[inline]
    fn new(out: &'o mut String) -> JsonList<'o> {
        JsonList { out, empty: true }
    }

    #[inline]
    fn push(&mut self, record: &UserRecord) {
        self.separate();
        record.render_into(self.out);
    }

    #[inline]
    fn push_json(&mut self, json: &str) {
        self.separate();
        self.out.push_str(json);
    }

    #[inline]
    fn separate(&mut self) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
    }
}

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
//! earlier cursor gets a full answer (docs/api.md §2, promise 3), and restoring logs nothing.

use super::{now_ms, Locked, Store, StoreError, StoreOptions, UserRecord, MAX_TOKENS_PER_USER};
use crate::domain::status::visible_status;
use crate::domain::{
    ConnStatus, ConnectionId, InstanceId, Profile, Status, StatusText, TokenHash, UserId, Username,
};
use compact_str::CompactString;
use smallvec::SmallVec;
use std::collections::HashSet;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

/// One user as plain data: everything the store keeps of it.
///
/// Strings of up to 24 bytes (every id, most names) and a user's first token
/// and connection live inside the image, so copying a typical user out
/// allocates nothing: at a million users, allocating was most of an export's
/// time.
#[derive(Debug, Clone, PartialEq)]
pub struct UserImage {
    pub id: CompactString,
    pub username: CompactString,
    pub name: Option<CompactString>,
    pub utc_offset: Option<f64>,
    pub avatar_etag: Option<CompactString>,
    pub is_admin: bool,
    pub active: bool,
    /// `statusDefault`: what the user chose.
    pub chosen: Status,
    /// `status` before deactivation hides it: `chosen` right after a manual
    /// set, otherwise what the rule derives from the connections.
    pub status: Status,
    pub status_text: CompactString,
    pub tokens: SmallVec<[TokenHash; 1]>,
    pub connections: SmallVec<[ConnectionImage; 1]>,
}

impl UserImage {
    /// A user as `PUT /internal/v1/users/{id}` with just a username (the id)
    /// creates it: active, no roles, chosen online, offline.
    pub fn new(id: &str) -> UserImage {
        UserImage {
            id: id.into(),
            username: id.into(),
            name: None,
            utc_offset: None,
            avatar_etag: None,
            is_admin: false,
            active: true,
            chosen: Status::Online,
            status: Status::Offline,
            status_text: CompactString::default(),
            tokens: SmallVec::new(),
            connections: SmallVec::new(),
        }
    }
}

/// One open connection as plain data.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionImage {
    pub id: CompactString,
    pub instance: Option<CompactString>,
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
                shard.iter().map(|r| r.image(wall_ms)).collect()
            };
            for user in &users {
                seen.see(user)?;
            }
            visit(users)?;
        }
        Ok(())
    }

    /// Returns the user's image (refresh times as 0), if the user exists.
    pub fn image_of(&self, id: &str) -> Option<UserImage> {
        self.shared.with_user(id, |r| r.image(|_| 0))
    }

    /// Returns a number that grows whenever any user changes in any way,
    /// visible or not (a heartbeat, a token): if it is the same at two
    /// moments, no user changed between them.
    pub fn version(&self) -> u64 {
        self.shared.users.iter().map(|s| s.read().version()).sum()
    }
}

/// A store being rebuilt from an image, user by user, before anyone uses it.
///
/// Caps lowered since the image was taken (`presence.max_users`,
/// `presence.max_connections_per_user`) do not refuse what it holds: they
/// refuse new users and connections, as they would had the process kept
/// running. [`Restoring::finish`] logs a warning when the store is over one.
pub struct Restoring {
    store: Store,
    /// Users restored with more connections than the cap allows.
    over_connection_cap: usize,
    /// The wall clock and the store's clock read at the same moment, to turn
    /// refresh times back into ages.
    wall_now: i64,
    clock_now: u64,
}

impl Restoring {
    /// Starts an empty store, in a new epoch, to restore users into.
    pub fn new(options: &StoreOptions) -> Restoring {
        Restoring::at(options, now_ms())
    }

    /// As [`Restoring::new`], with the wall clock reading `wall_now`.
    fn at(options: &StoreOptions, wall_now: i64) -> Restoring {
        let store = Store::new(options);
        let clock_now = store.shared.clock.stamp(Instant::now());
        Restoring {
            store,
            over_connection_cap: 0,
            wall_now,
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
            user.name.map(CompactString::into_string),
            user.utc_offset,
            user.avatar_etag.map(CompactString::into_string),
            &roles,
            user.active,
        )
        .map_err(rejected)?;
        let text = StatusText::new(&user.status_text);
        if user.status_text != text.as_str() {
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
        if sh
            .confirm(candidates, |r| r.username() == username)
            .is_some()
        {
            return Err(invalid(
                StoreError::UsernameTaken(profile.username.clone()).to_string(),
            ));
        }
        let mut indexed = Locked::lock(&sh.connections, link_hashes.iter().copied());
        for (c, &h) in record.connections.iter().zip(&link_hashes) {
            let candidates = indexed.get(h).candidates(h);
            if sh.link_holder(candidates, &c.id).is_some() {
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
            sh.schedule_expiry(slot, c.refreshed_ms, c.generation);
        }
        sh.open_connections
            .fetch_add(record.connections.len(), Ordering::Relaxed);
        sh.user_count.fetch_add(1, Ordering::Relaxed);
        let cap = sh.max_connections_per_user;
        if cap > 0 && record.connections.len() > cap {
            self.over_connection_cap += 1;
        }
        if record.visible_status() != Status::Offline {
            sh.online.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The restored store, ready to serve.
    pub fn finish(self) -> Store {
        let sh = &*self.store.shared;
        let users = sh.user_count.load(Ordering::Relaxed);
        if sh.max_users != 0 && users > sh.max_users {
            tracing::warn!(
                "restored {users} users, more than presence.max_users = {}: \
                 no user can be created until enough are deleted",
                sh.max_users
            );
        }
        if self.over_connection_cap > 0 {
            tracing::warn!(
                "restored {} users with more than presence.max_connections_per_user = {} \
                 connections: they can open no more until some close",
                self.over_connection_cap,
                sh.max_connections_per_user
            );
        }
        self.store
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_indexes_exact, every_user, roster, run, step, store, TTL};
    use super::*;
    use crate::store::StoreError;
    use proptest::prelude::*;
    use smallvec::smallvec;
    use std::time::Duration;

    /// Every user of `store` as images, sorted by id, refresh times left out
    /// (they are wall-clock readings taken during the walk).
    fn images(store: &Store) -> Vec<UserImage> {
        let mut all = every_user(store);
        all.sort_by(|a, b| a.id.cmp(&b.id));
        for user in &mut all {
            user.connections.sort_by(|a, b| a.id.cmp(&b.id));
            user.connections
                .iter_mut()
                .for_each(|c| c.refreshed_at_ms = 0);
        }
        all
    }

    fn restore(users: Vec<UserImage>) -> Store {
        let mut restoring = Restoring::new(&StoreOptions {
            connection_ttl: TTL,
            ..StoreOptions::default()
        });
        for user in users {
            restoring.add(user).unwrap();
        }
        restoring.finish()
    }

    fn token(id: &str) -> String {
        format!("token-of-{id}")
    }

    const IDS: [&str; 5] = ["u0", "u1", "u2", "u3", "u4"];

    /// How `store` answers everything a caller can ask of a user.
    fn answers(store: &Store) -> Vec<String> {
        let mut out = vec![format!("{:?}", roster(&store.online()))];
        let stats = store.stats();
        out.push(format!(
            "{} {} {}",
            stats.users, stats.online, stats.connections
        ));
        for id in IDS {
            out.push(format!("{:?}", store.status_of(id)));
            out.push(format!("{:?}", store.authenticate(id, &token(id))));
        }
        for name in ["u0", "u1", "u2", "u3", "u4", "n0", "n1", "n2"] {
            out.push(format!("{name} {:?}", store.find_username(name)));
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn a_restored_store_answers_like_the_original(steps in proptest::collection::vec(step(), 0..40)) {
            let original = store(1_000);
            steps.iter().for_each(|s| run(&original, s));
            for id in IDS {
                let hash = TokenHash::of_token(&token(id)).unwrap();
                let _ = original.add_token(&UserId::parse(id).unwrap(), hash);
            }
            let restored = restore(images(&original));
            prop_assert_eq!(images(&restored), images(&original));
            prop_assert_eq!(answers(&restored), answers(&original));
            prop_assert_eq!(restored.cursor().seq(), 0, "restoring logs nothing");
            prop_assert_ne!(restored.cursor().epoch(), original.cursor().epoch());
            // Deadlines came back: once the TTL runs out, both expire the same connections.
            let later = Instant::now() + TTL + Duration::from_secs(1);
            original.expire_due(later);
            restored.expire_due(later);
            prop_assert_eq!(answers(&restored), answers(&original));
            prop_assert_eq!(restored.stats().connections, 0);
            assert_indexes_exact(&restored);
        }
    }

    fn user(id: &str) -> UserImage {
        UserImage::new(id)
    }

    fn connection(id: &str, refreshed_at_ms: i64) -> ConnectionImage {
        ConnectionImage {
            id: id.into(),
            instance: None,
            status: ConnStatus::Online,
            refreshed_at_ms,
        }
    }

    fn online(id: &str, connection_id: &str) -> UserImage {
        UserImage {
            status: Status::Online,
            connections: smallvec![connection(connection_id, now_ms())],
            ..user(id)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_times_come_back_as_ages_and_one_older_than_the_ttl_is_due_at_once() {
        const WALL: i64 = 1_700_000_000_000;
        let ttl_ms = TTL.as_millis() as i64;
        let mut restoring = Restoring::at(
            &StoreOptions {
                connection_ttl: TTL,
                ..StoreOptions::default()
            },
            WALL,
        );
        let mut young = online("young", "c-young");
        young.connections[0].refreshed_at_ms = WALL - ttl_ms + 10_000;
        let mut old = online("old", "c-old");
        old.connections[0].refreshed_at_ms = WALL - ttl_ms - 1;
        let mut ahead = online("ahead", "c-ahead");
        ahead.connections[0].refreshed_at_ms = WALL + 60_000;
        for user in [young, old, ahead] {
            restoring.add(user).unwrap();
        }
        let store = restoring.finish();
        let start = Instant::now();
        let status = |id: &str| store.status_of(id).unwrap().status;

        store.expire_due(start);
        assert_eq!(status("old"), Status::Offline, "expired at the first sweep");
        assert_eq!(store.stats().expired, 1);
        store.expire_due(start + Duration::from_millis(9_999));
        assert_eq!(status("young"), Status::Online, "10 s of its TTL were left");
        store.expire_due(start + Duration::from_secs(10));
        assert_eq!(status("young"), Status::Offline);
        store.expire_due(start + TTL - Duration::from_millis(1));
        assert_eq!(
            status("ahead"),
            Status::Online,
            "a time ahead counts as now"
        );
        store.expire_due(start + TTL);
        assert_eq!(status("ahead"), Status::Offline);
    }

    #[test]
    fn a_manual_status_without_connections_and_a_deactivated_user_come_back_as_they_were() {
        let busy = UserImage {
            chosen: Status::Busy,
            status: Status::Busy,
            status_text: "in a meeting".into(),
            ..user("busy")
        };
        let hidden = UserImage {
            active: false,
            ..online("hidden", "c1")
        };
        let store = restore(vec![busy.clone(), hidden.clone()]);
        let report = store.status_of("busy").unwrap();
        assert_eq!(
            (report.status, report.connection_status),
            (Status::Busy, Status::Offline)
        );
        assert_eq!(report.status_text, "in a meeting");
        assert_eq!(store.status_of("hidden").unwrap().status, Status::Offline);
        assert_eq!((store.stats().online, store.stats().connections), (1, 1));
        let mut want = vec![busy, hidden];
        want[1].connections[0].refreshed_at_ms = 0;
        assert_eq!(images(&store), want);
    }

    /// Adds `bad` after a valid `first` and returns the error; checks that
    /// nothing of `bad` stayed behind.
    fn refused(bad: UserImage) -> String {
        let mut restoring = Restoring::new(&StoreOptions::default());
        restoring.add(online("first", "c-first")).unwrap();
        let error = restoring.add(bad.clone()).unwrap_err().to_string();
        let store = restoring.finish();
        assert_eq!(store.stats().users, 1, "{error}");
        assert_eq!(store.stats().connections, 1, "{error}");
        if bad.id != "first" && UserId::parse(&bad.id).is_ok() {
            assert!(!store.contains(&bad.id), "{error}");
        }
        error
    }

    #[test]
    fn a_user_the_api_would_refuse_is_refused_naming_the_field() {
        let cases: Vec<(UserImage, &str)> = vec![
            (user("a b"), "userId: \"a b\" is not valid"),
            (UserImage { username: "x/y".into(), ..user("u") }, "username: \"x/y\" is not valid"),
            (UserImage { utc_offset: Some(15.0), ..user("u") }, "utcOffset: 15 is out of range"),
            (UserImage { name: Some("n".repeat(257).into()), ..user("u") }, "name: at most 256"),
            (UserImage { avatar_etag: Some("e".repeat(129).into()), ..user("u") }, "avatarETag: at most 128"),
            (UserImage { status_text: " padded".into(), ..user("u") }, "statusText: expected a trimmed text"),
            (UserImage { status_text: "x".repeat(121).into(), ..user("u") }, "statusText: expected a trimmed text"),
            (UserImage { tokens: smallvec![TokenHash::of_token("t").unwrap(); 257], ..user("u") }, "hashedTokens: 257 tokens"),
            (UserImage { connections: smallvec![connection("c 1", 0)], ..user("u") }, "connectionId: \"c 1\" is not valid"),
            (UserImage { connections: smallvec![ConnectionImage { instance: Some("i/1".into()), ..connection("c1", 0) }], ..user("u") },
             "instanceId: \"i/1\" is not valid"),
            (UserImage { connections: smallvec![connection("c1", 0), connection("c1", 0)], ..user("u") }, "connectionId: \"c1\" appears twice"),
            (UserImage { chosen: Status::Away, status: Status::Busy, ..user("u") },
             "status: busy is neither statusDefault (away) nor what the connections give (offline)"),
            (UserImage { chosen: Status::Busy, status: Status::Away, ..online("u", "c1") }, "status: away is neither"),
            (user("first"), "username: \"first\" already belongs to another user"),
            (UserImage { username: "other".into(), ..user("first") }, "userId: \"first\" appears twice"),
            (online("u", "c-first"), "connectionId: \"c-first\" already belongs to another user"),
        ];
        for (bad, want) in cases {
            let error = refused(bad);
            assert!(error.starts_with(want), "{error}\nwanted: {want}");
        }
    }

    /// Runs an export whose visitor, after the first shard holding a user,
    /// hands a key from that user to one not yet visited, by `hand_over(from, to)`.
    fn export_while_a_key_moves(
        store: &Store,
        hand_over: impl Fn(&str, &str),
    ) -> Result<(), Moved> {
        let mut visited: Vec<String> = Vec::new();
        let mut moved = false;
        store.export(|users| {
            visited.extend(users.iter().map(|u| u.id.to_string()));
            if !moved && !users.is_empty() {
                let to = (0..20)
                    .map(|i| format!("m{i}"))
                    .find(|id| !visited.contains(id))
                    .expect("20 users do not all share one shard");
                hand_over(&users[0].id, &to);
                moved = true;
            }
            Ok(())
        })
    }

    fn twenty_users() -> Store {
        let store = store(1_000);
        for i in 0..20 {
            let id = UserId::parse(&format!("m{i}")).unwrap();
            let profile = Profile::new(
                Username::parse(&format!("m{i}")).unwrap(),
                None,
                None,
                None,
                &[],
                true,
            );
            store.put_user(&id, profile.unwrap()).unwrap();
            let connection = ConnectionId::parse(&format!("c-m{i}")).unwrap();
            store
                .put_connection(&connection, &id, ConnStatus::Online, None)
                .unwrap();
        }
        store
    }

    #[test]
    fn export_reports_a_username_that_moved_to_a_user_not_yet_copied() {
        let store = twenty_users();
        let rename = |id: &str, name: &str| {
            let profile = Profile::new(Username::parse(name).unwrap(), None, None, None, &[], true);
            store
                .put_user(&UserId::parse(id).unwrap(), profile.unwrap())
                .unwrap();
        };
        let result = export_while_a_key_moves(&store, |from, to| {
            rename(from, "freed");
            rename(to, from);
        });
        assert_eq!(result, Err(Moved { field: "username" }));
        // Walking again, with nothing moving, gives an image that loads.
        restore(images(&store));
    }

    #[test]
    fn export_reports_a_connection_that_moved_to_a_user_not_yet_copied() {
        let store = twenty_users();
        let result = export_while_a_key_moves(&store, |from, to| {
            let connection = ConnectionId::parse(&format!("c-{from}")).unwrap();
            store.delete_connection(&connection);
            let to = UserId::parse(to).unwrap();
            store
                .put_connection(&connection, &to, ConnStatus::Away, None)
                .unwrap();
        });
        assert_eq!(
            result,
            Err(Moved {
                field: "connectionId"
            })
        );
        restore(images(&store));
    }

    #[test]
    fn caps_lowered_since_the_image_refuse_new_users_and_connections_not_restored_ones() {
        let mut restoring = Restoring::new(&StoreOptions {
            max_users: 2,
            max_connections_per_user: 1,
            ..StoreOptions::default()
        });
        let mut busy = online("a", "c1");
        busy.connections.push(connection("c2", now_ms()));
        for user in [busy, user("b"), user("c")] {
            restoring.add(user).unwrap();
        }
        let store = restoring.finish();
        assert_eq!((store.stats().users, store.stats().connections), (3, 2));
        let profile =
            || Profile::new(Username::parse("d").unwrap(), None, None, None, &[], true).unwrap();
        let d = UserId::parse("d").unwrap();
        assert_eq!(
            store.put_user(&d, profile()),
            Err(StoreError::TooManyUsers { limit: 2 })
        );
        let a = UserId::parse("a").unwrap();
        let c3 = ConnectionId::parse("c3").unwrap();
        assert!(store
            .put_connection(&c3, &a, ConnStatus::Online, None)
            .is_err());
        let c1 = ConnectionId::parse("c1").unwrap();
        assert!(
            store
                .put_connection(&c1, &a, ConnStatus::Online, None)
                .is_ok(),
            "a heartbeat"
        );
        // Restored users count: once below the cap, creating works again.
        store.delete_user(&UserId::parse("b").unwrap());
        store.delete_user(&UserId::parse("c").unwrap());
        assert!(store.put_user(&d, profile()).is_ok());
    }

    #[test]
    fn the_version_grows_with_hidden_changes_and_stays_put_without_any() {
        let store = twenty_users();
        let id = UserId::parse("m0").unwrap();
        let before = store.version();
        assert_eq!(store.version(), before);
        store.online();
        assert_eq!(store.version(), before, "reading changes nothing");
        let heartbeat = ConnectionId::parse("c-m0").unwrap();
        assert!(!store
            .put_connection(&heartbeat, &id, ConnStatus::Online, None)
            .unwrap()
            .changed());
        let after_heartbeat = store.version();
        assert!(after_heartbeat > before);
        store
            .add_token(&id, TokenHash::of_token("t").unwrap())
            .unwrap();
        assert!(store.version() > after_heartbeat);
    }
}

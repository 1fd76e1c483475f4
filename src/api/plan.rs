//! What a `users.presence` request asks for, decided before any work ([`Plan`]: the
//! branches of docs/api.md §3.1), and the body that answers it ([`Answer`]). Below the
//! caches and the route: [`super::answer_cache`] and [`super::recent_changes`] keep and
//! slice answers, [`super::presence`] revalidates and responds.

use super::id_list::IdList;
use super::query::{Branch, PresenceParams};
use crate::domain::UserId;
use crate::http::etag::Tag;
use crate::http::{ApiError, AppState};
use crate::store::{write_views, Cursor, Delta, Lagged, Snapshot, Store, UserView};
use std::collections::HashSet;
use std::hash::BuildHasher as _;
use std::sync::Arc;

/// How every answer's body begins.
pub const USERS_OPEN: &str = r#"{"users":["#;

/// Appends what follows an answer's users: `],"full":..,"cursor":"..","success":true}`.
pub fn close_users(body: &mut String, full: bool, cursor: Cursor) {
    body.push_str(if full {
        r#"],"full":true,"cursor":""#
    } else {
        r#"],"full":false,"cursor":""#
    });
    cursor.push_to(body);
    body.push_str(r#"","success":true}"#);
}

/// An answer's body up to its users' end, whether they are the full state,
/// and where in the log the answer stands.
#[derive(Debug, Clone)]
pub struct Answer {
    /// [`USERS_OPEN`], then the users' JSON objects, comma-separated, as the
    /// store writes them: the body is written in one string, in place.
    body: String,
    full: bool,
    pub cursor: Cursor,
}

/// A body's string, begun, with room for about `users` users.
fn begun(users: usize) -> String {
    // ~130 bytes a user, and the tail's ~70.
    let mut body = String::with_capacity(users.saturating_mul(130).saturating_add(96));
    body.push_str(USERS_OPEN);
    body
}

impl Answer {
    pub fn full(snapshot: Snapshot) -> Answer {
        Answer::of_views(&snapshot.users, true, snapshot.cursor)
    }

    /// A partial answer of these users, at `cursor`.
    pub fn partial(users: Vec<Arc<UserView>>, cursor: Cursor) -> Answer {
        Answer::of_views(&users, false, cursor)
    }

    /// A partial answer: the users of `delta`.
    pub fn delta(delta: Delta) -> Answer {
        Answer::partial(delta.users, delta.cursor)
    }

    /// The full answer: everyone not offline, written by the store.
    pub fn online(store: &Store) -> Answer {
        let mut body = begun(store.stats().online);
        let cursor = store.write_online(&mut body);
        Answer::written(body, true, cursor)
    }

    /// The users among `ids` not offline, written by the store; `full` says
    /// whether this is the full state of those users.
    #[inline]
    pub fn online_among(store: &Store, ids: &IdList<'_>, full: bool) -> Answer {
        let mut body = begun(ids.len());
        let cursor = store.write_online_among(ids.hashed(), &mut body);
        Answer::written(body, full, cursor)
    }

    /// The delta `write` appends to a string (one of the store's
    /// `write_changed_*`), or `Lagged` if the log cannot prove it complete.
    pub fn delta_written(
        write: impl FnOnce(&mut String) -> Result<Cursor, Lagged>,
    ) -> Result<Answer, Lagged> {
        let mut body = begun(0);
        let cursor = write(&mut body)?;
        Ok(Answer::written(body, false, cursor))
    }

    fn of_views(views: &[Arc<UserView>], full: bool, cursor: Cursor) -> Answer {
        let mut body = begun(views.len());
        write_views(views, &mut body);
        Answer::written(body, full, cursor)
    }

    fn written(body: String, full: bool, cursor: Cursor) -> Answer {
        Answer { body, full, cursor }
    }

    /// The whole body: `{"users":[...],"full":..,"cursor":"..","success":true}`.
    pub fn render(mut self) -> String {
        close_users(&mut self.body, self.full, self.cursor);
        self.body
    }
}

/// What a request asks for, decided before any work: docs/api.md §3.1's branches,
/// first match wins. The body is a function of the plan and the log position,
/// which is what makes the plan plus the cursor a sound `ETag`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Plan<'a> {
    /// Broadcast disabled: `users: [], full: true`.
    Disabled,
    /// Everyone not offline.
    Full,
    /// Changes after a cursor, of some users or all.
    Since {
        cursor: Cursor,
        ids: Option<IdList<'a>>,
    },
    /// The listed users that are not offline.
    Ids(IdList<'a>),
    /// Changes at or after a time, within the window, without the caller.
    From { from_ms: i64, caller: UserId },
}

impl<'a> Plan<'a> {
    /// Chooses the plan for `params` as `caller`; `now_ms` tells the time, which
    /// only a `from` needs (a clock read is worth saving on a 304).
    pub fn new(
        state: &AppState,
        caller: &UserId,
        params: PresenceParams<'a>,
        now_ms: impl FnOnce() -> i64,
    ) -> Result<Plan<'a>, ApiError> {
        if state.store.broadcast_disabled() {
            return Ok(Plan::Disabled);
        }
        let store = &state.store;
        let branch = params.branch(state.max_ids, |id| store.hash_id(id))?;
        Ok(match branch {
            Branch::Since { cursor, ids } => Plan::Since { cursor, ids },
            Branch::Ids(ids) => Plan::Ids(ids),
            Branch::From(from_ms) => {
                let window_ms = i64::try_from(state.delta_window.as_millis()).unwrap_or(i64::MAX);
                if now_ms().saturating_sub(from_ms) < window_ms {
                    Plan::From {
                        from_ms,
                        caller: caller.clone(),
                    }
                } else {
                    Plan::Full
                }
            }
            Branch::Full => Plan::Full,
        })
    }

    /// A hash of this plan at log position `cursor`: the answer's identity.
    pub fn key(&self, cursor: Cursor) -> u64 {
        // Any hash does, as long as it is the same for the same input within a
        // process; a restart starts a new epoch and so new keys anyway.
        foldhash::fast::FixedState::with_seed(cursor.epoch()).hash_one((self, cursor))
    }

    /// The entity tag of this plan's answer at log position `cursor`.
    pub fn etag(&self, cursor: Cursor) -> Tag {
        Tag::new(self.key(cursor))
    }

    /// Builds the answer, or `None` when it is the full answer of everyone,
    /// which the snapshot cache serves (rendered once however many ask: after a
    /// restart every client's cursor is from another epoch at once).
    pub(crate) fn answer(&self, store: &Store) -> Option<Answer> {
        match self {
            Plan::Disabled => Some(Answer::written(begun(0), true, store.cursor())),
            Plan::Full => None,
            Plan::Since { cursor, ids: None } => {
                Answer::delta_written(|out| store.write_changed_since(*cursor, |_| true, out)).ok()
            }
            Plan::Since {
                cursor,
                ids: Some(ids),
            } => {
                let wanted: HashSet<&str, foldhash::fast::RandomState> = ids.iter().collect();
                let keep = |user: &str| wanted.contains(user);
                Some(
                    match Answer::delta_written(|out| store.write_changed_since(*cursor, keep, out))
                    {
                        Ok(delta) => delta,
                        // The full state of just the users asked about.
                        Err(Lagged) => Answer::online_among(store, ids, true),
                    },
                )
            }
            Plan::Ids(ids) => Some(Answer::online_among(store, ids, false)),
            Plan::From { from_ms, caller } => {
                let keep = |user: &str| user != caller.as_str();
                Answer::delta_written(|out| store.write_changed_from(*from_ms, keep, out)).ok()
            }
        }
    }
}

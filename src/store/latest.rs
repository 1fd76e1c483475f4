//! The users changed most recently, written once as one run of JSON objects
//! with where each one's latest change was: the raw material from which the
//! answer to any cursor or time within its reach is a run of the same bytes
//! (see `crate::api::recent_changes`).
//!
//! The objects are what [`Store::changed_since`] gives for a range starting at
//! the floor, byte for byte: a user gone without a deletion in range (deleted
//! after the head was read) is left out, and a user deleted and created again
//! appears once, by its later change. Keeping the later change of an id is
//! the same whether done over the whole range or over one of its suffixes, so
//! every suffix of these objects is that suffix's answer.

use super::changelog::{Latest, LatestChange};
use super::shard::UserKey;
use super::view::ID_AT;
use super::{Cursor, Store};
use compact_str::CompactString;
use std::collections::HashSet;
use std::ops::Range;

/// Where one user's object is in the written run, and its latest change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenChange {
    pub seq: u64,
    pub ts: i64,
    /// The object, without the comma between it and the next.
    pub json: Range<usize>,
    /// The user's id, inside the object.
    pub id: Range<usize>,
}

/// What [`Store::write_latest`] wrote, and what it covers.
#[derive(Debug, Clone)]
pub struct WrittenLatest {
    pub head: Cursor,
    /// Every change after this position of `head`'s epoch is covered.
    pub floor: u64,
    /// The time of the change at the floor, if any: a `from` after it is covered.
    pub floor_ts: Option<i64>,
    /// A `from` before this reaches before what the log has seen.
    pub epoch_start_ms: i64,
    pub users: Vec<WrittenChange>,
}

impl Store {
    /// Appends to `out` the JSON objects, separated by commas, of the last
    /// `max_users` users changed (looking back over at most `max_entries` log
    /// entries), in the order of their latest change.
    pub fn write_latest(
        &self,
        max_users: usize,
        max_entries: usize,
        out: &mut String,
    ) -> WrittenLatest {
        let latest = self.shared.log.latest(max_users, max_entries);
        let keep = self.later_of_each_id(&latest);
        let mut users = Vec::with_capacity(latest.users.len());
        for (change, _) in latest.users.iter().zip(&keep).filter(|(_, keep)| **keep) {
            let separator = usize::from(!users.is_empty());
            let start = out.len() + separator;
            let written = match &change.tombstone {
                Some(tombstone) => {
                    if separator == 1 {
                        out.push(',');
                    }
                    out.push_str(tombstone.json());
                    Some(tombstone.id().len())
                }
                None => self.write_record(change.user, separator == 1, out),
            };
            if let Some(id_len) = written {
                let id = start + ID_AT..start + ID_AT + id_len;
                users.push(WrittenChange {
                    seq: change.seq,
                    ts: change.ts,
                    json: start..out.len(),
                    id,
                });
            }
        }
        WrittenLatest {
            head: latest.head,
            floor: latest.floor,
            floor_ts: latest.floor_ts,
            epoch_start_ms: latest.epoch_start_ms,
            users,
        }
    }

    /// Writes the record `user` names, after a comma if `separate`; returns its
    /// id's length, or `None` (writing nothing) if the user has left its slot.
    fn write_record(&self, user: UserKey, separate: bool, out: &mut String) -> Option<usize> {
        let shard = self.shared.users[user.slot.shard()].read();
        let record = shard.get_key(user)?;
        if separate {
            out.push(',');
        }
        record.render_into(out);
        Some(record.id().len())
    }

    /// Which of `latest`'s users to write: all, unless one was deleted in range,
    /// in which case only the later of two users with one id (see the module doc).
    fn later_of_each_id(&self, latest: &Latest<UserKey>) -> Vec<bool> {
        if latest.users.iter().all(|u| u.tombstone.is_none()) {
            return vec![true; latest.users.len()];
        }
        let id_of = |change: &LatestChange<UserKey>| -> Option<CompactString> {
            match &change.tombstone {
                Some(tombstone) => Some(tombstone.id().into()),
                None => {
                    let shard = self.shared.users[change.user.slot.shard()].read();
                    shard.get_key(change.user).map(|r| r.id().into())
                }
            }
        };
        let mut seen = HashSet::new();
        let mut keep: Vec<bool> = latest
            .users
            .iter()
            .rev()
            .map(|change| id_of(change).is_some_and(|id| seen.insert(id)))
            .collect();
        keep.reverse();
        keep
    }
}

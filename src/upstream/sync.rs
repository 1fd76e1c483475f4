//! Writing what the chat server says into the store, as ingest writes: a full
//! picture (only differences get logged; users missing from it go offline) or
//! one `user-status` event.

use super::ddp::{self, BadFrame, StatusEvent};
use super::rest::{Rest, RestUser};
use super::BadInput;
use crate::domain::{Profile, Status, StatusText, UserId, Username};
use crate::store::{Moved, Op, Store, StoreError};
use serde_json::Value;
use std::collections::HashSet;

/// One user of a full picture, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: UserId,
    pub profile: Profile,
    pub status: Status,
    pub text: StatusText,
}

/// What a resync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resynced {
    /// Users in the picture.
    pub online: usize,
    /// Writes that changed something visible.
    pub changes: usize,
}

/// Validates one raw user of `users.presence` or `users.info`.
fn entry_of(raw: RestUser) -> Result<Entry, BadFrame> {
    let bad = |kind, detail: String| BadFrame { kind, detail };
    let id = UserId::parse(&raw.id).map_err(|e| bad("invalid-id", format!("user _id: {e}")))?;
    let username = raw.username.as_deref().unwrap_or_default();
    let username = Username::parse(username)
        .map_err(|e| bad("invalid-username", format!("user {id}: username: {e}")))?;
    let status_name = raw.status.as_deref().unwrap_or_default();
    let status = ddp::status_of_name(status_name).ok_or_else(|| {
        bad(
            "unknown-status",
            format!("user {id}: status {status_name:?}: expected online, away, busy or offline"),
        )
    })?;
    let profile = Profile::new(
        username,
        raw.name,
        raw.utc_offset,
        raw.avatar_etag,
        &[],
        true,
    )
    .map_err(|e| bad("invalid-profile", format!("user {id}: {e}")))?;
    Ok(Entry {
        id,
        profile,
        status,
        text: StatusText::new(raw.status_text.as_deref().unwrap_or_default()),
    })
}

/// Validates the users of a `users.presence` answer, skipping (and counting)
/// those that cannot be used.
pub fn picture(raw: Vec<Value>, bad: &BadInput) -> Vec<Entry> {
    raw.into_iter()
        .filter_map(|value| {
            let user = serde_json::from_value::<RestUser>(value).map_err(|e| BadFrame {
                kind: "malformed-user",
                detail: format!("a user of users.presence: {e}"),
            });
            match user.and_then(entry_of) {
                Ok(entry) => Some(entry),
                Err(b) => {
                    bad.skip(b.kind, &b);
                    None
                }
            }
        })
        .collect()
}

/// Makes the store show `entries` and nothing else online: each entry's
/// profile and status written, every other user not offline set offline.
pub fn resync(store: &Store, entries: Vec<Entry>, bad: &BadInput) -> Resynced {
    let mut done = Resynced {
        online: entries.len(),
        changes: 0,
    };
    let mut seen = HashSet::with_capacity(entries.len());
    for entry in entries {
        seen.insert(entry.id.as_str().to_owned());
        done.changes += write(
            store,
            entry.id,
            entry.profile,
            entry.status,
            entry.text,
            bad,
        );
    }
    let mut stale = Vec::new();
    // The follower is the store's only writer, so no key moves during the walk.
    let walked = store.export(|users| {
        stale.extend(
            users
                .into_iter()
                .filter(|u| u.active && u.status != Status::Offline)
                .filter(|u| !seen.contains(u.id.as_str()))
                .filter_map(|u| UserId::parse(&u.id).ok()),
        );
        Ok::<(), Moved>(())
    });
    if let Err(e) = walked {
        tracing::warn!("upstream: resync could not walk the store ({e}); the next one will");
    }
    for id in stale {
        let op = Op::SetStatus {
            id,
            status: Status::Offline,
            text: None,
        };
        done.changes += applied(store, op, bad);
    }
    done
}

/// Writes one event: the profile first if the user is new here (with
/// `utcOffset` and `avatarETag` from `users.info`, which the event lacks) or
/// was renamed, then the status and its text. Returns the changes written.
pub async fn event(store: &Store, rest: &Rest, event: StatusEvent, bad: &BadInput) -> usize {
    let StatusEvent {
        id,
        username,
        status,
        status_text,
        name,
    } = event;
    let (utc_offset, avatar_etag, name) = match store.image_of(id.as_str()) {
        Some(known) => (
            known.utc_offset,
            known.avatar_etag.map(String::from),
            name.or_else(|| known.name.map(String::from)),
        ),
        None => match rest.user_info(&id).await {
            Ok(info) => (info.utc_offset, info.avatar_etag, name.or(info.name)),
            Err(e) => {
                let detail =
                    format!("users.info of {id}: {e}; shown without utcOffset and avatarETag");
                bad.skip("user-info-failed", &detail);
                (None, None, name)
            }
        },
    };
    let profile = match Profile::new(username, name, utc_offset, avatar_etag, &[], true) {
        Ok(profile) => profile,
        Err(e) => {
            bad.skip("invalid-profile", &format!("user {id}: {e}"));
            return 0;
        }
    };
    write(store, id, profile, status, status_text, bad)
}

/// The profile, then the status with its text; returns the changes written.
fn write(
    store: &Store,
    id: UserId,
    profile: Profile,
    status: Status,
    text: StatusText,
    bad: &BadInput,
) -> usize {
    let put = Op::PutUser {
        id: id.clone(),
        profile,
    };
    let set = Op::SetStatus {
        id,
        status,
        text: Some(text),
    };
    applied(store, put, bad) + applied(store, set, bad)
}

/// Applies `op`; 1 if it changed something visible. A refusal (a username
/// another user holds here, the user cap) is counted as bad input.
fn applied(store: &Store, op: Op, bad: &BadInput) -> usize {
    match store.apply(op) {
        Ok(applied) => usize::from(applied.written.changed()),
        Err(e) => {
            let kind = match e {
                StoreError::UsernameTaken(_) => "username-taken",
                _ => "store-refused",
            };
            bad.skip(kind, &e);
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;
    use crate::upstream::metrics::UpstreamMetrics;
    use serde_json::json;

    fn entries(raw: Value, bad: &BadInput) -> Vec<Entry> {
        picture(raw.as_array().cloned().unwrap_or_default(), bad)
    }

    fn status(store: &Store, id: &str) -> Option<Status> {
        store.status_of(id).map(|s| s.status)
    }

    #[test]
    fn a_picture_taken_again_writes_only_what_changed_and_sets_the_missing_offline() {
        let store = Store::new(&StoreOptions::default());
        let metrics = UpstreamMetrics::new().unwrap();
        let bad = &metrics.bad_input;
        let first = json!([
            {"_id": "a", "username": "a", "status": "online", "utcOffset": 1},
            {"_id": "b", "username": "b", "status": "away", "statusText": "lunch"},
            {"_id": "c", "username": "c", "status": "busy"},
        ]);
        let done = resync(&store, entries(first.clone(), bad), bad);
        assert_eq!(done.online, 3);
        // Each new user: created, then its status set.
        assert_eq!(done.changes, 6);
        assert_eq!(resync(&store, entries(first, bad), bad).changes, 0);

        let cursor = store.cursor();
        let second = json!([
            {"_id": "a", "username": "a", "status": "online", "utcOffset": 1},
            {"_id": "b", "username": "b", "status": "away", "statusText": "back soon"},
        ]);
        let done = resync(&store, entries(second, bad), bad);
        assert_eq!(done.changes, 2, "b's text, c offline");
        assert_eq!(status(&store, "c"), Some(Status::Offline));
        let changed: Vec<String> = store
            .changed_since_by_scan(cursor)
            .iter()
            .map(|u| u.id().to_owned())
            .collect();
        assert_eq!(changed.len(), 2, "{changed:?}");
    }

    #[test]
    fn unusable_users_of_a_picture_are_skipped_and_counted_by_kind() {
        let metrics = UpstreamMetrics::new().unwrap();
        let bad = &metrics.bad_input;
        let raw = json!([
            {"_id": "ok", "username": "ok", "status": "disabled"},
            {"_id": "no-name", "status": "online"},
            {"_id": "far", "username": "far", "status": "online", "utcOffset": 99},
            "not a user",
        ]);
        let kept = entries(raw, bad);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].status, Status::Offline, "disabled shows offline");
        assert_eq!(bad.count("invalid-username"), 1);
        assert_eq!(bad.count("invalid-profile"), 1);
        assert_eq!(bad.count("malformed-user"), 1);
    }
}

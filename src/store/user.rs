//! One user's full state as the store keeps it, and the transitions on it.
//!
//! Each transition reports exactly whether it changed what others see (and what
//! the visible status was before), so the store logs a change only for a real
//! one. Nothing is rendered on a write: views are rendered when read.
//!
//! The layout is for a million users: the id, username, name, avatar tag and
//! status text share one allocation, the first connection lives inside the
//! record, and times are milliseconds on the store's clock. BENCHMARKS.md has
//! the bytes this saves per user.

use super::image::{ConnectionImage, UserImage};
use super::view::{needs_escape, write_json, UserView, Visible};
use crate::domain::status::{connection_status, visible_status};
use crate::domain::{ConnStatus, InstanceId, Profile, Status, StatusText, TokenHash, UserId};
use compact_str::CompactString;
use smallvec::SmallVec;

/// Whether a transition changed the user's visible fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Touched {
    Hidden,
    /// Something visible changed; `before` is the visible status it had.
    Visible {
        before: Status,
    },
}

/// A live connection of a user.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    /// Inline up to 24 bytes (a Meteor connection id has 17), so most
    /// connections allocate nothing of their own.
    pub id: CompactString,
    pub instance: Option<InstanceId>,
    pub status: ConnStatus,
    /// When it was opened or last refreshed, on the store's clock.
    pub refreshed_ms: u64,
    /// Unique per opened connection, so a stale expiry entry for a closed and
    /// reopened connection id can tell it is not its own.
    pub generation: u64,
}

/// The strings of a user, end to end in one allocation.
#[derive(Debug, Clone, Default)]
struct Text {
    buf: Box<str>,
    /// Where the id, username, name and avatar tag end; the status text is the
    /// rest. The top bit of the last is [`PLAIN`], not part of the end.
    ends: [u16; 4],
}

/// Set in `Text::ends[3]` when no part needs escaping in JSON, so that every
/// render need not check again: an end is below 2^15 (see [`Text::pack`]), and
/// the flag costs no byte of the record.
const PLAIN: u16 = 1 << 15;

impl Text {
    /// Packs the parts. Their lengths are bounded by validation (ids 64 bytes,
    /// name 256 characters, avatar tag 128, status text 120), far below 2^15.
    fn pack(parts: [&str; 5]) -> Text {
        let mut buf = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0u16; 4];
        for (i, part) in parts.iter().enumerate() {
            buf.push_str(part);
            if let Some(end) = ends.get_mut(i) {
                *end = u16::try_from(buf.len()).unwrap_or(u16::MAX);
            }
        }
        if buf.len() < usize::from(PLAIN) && !parts.iter().any(|part| needs_escape(part)) {
            ends[3] |= PLAIN;
        }
        Text {
            buf: buf.into_boxed_str(),
            ends,
        }
    }

    fn end(&self, i: usize) -> usize {
        usize::from(self.ends[i] & !PLAIN)
    }

    fn part(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.end(i - 1) };
        let end = if i < self.ends.len() {
            self.end(i)
        } else {
            self.buf.len()
        };
        self.buf.get(start..end).unwrap_or_default()
    }

    /// True if no part needs escaping in JSON.
    fn plain(&self) -> bool {
        self.ends[3] & PLAIN != 0
    }
}

#[derive(Debug)]
pub(crate) struct UserRecord {
    text: Text,
    /// Hours from UTC; NaN when unset (a validated offset is finite).
    utc_offset: f64,
    /// Sequence number of the last change (what a scan without the log would filter on).
    pub changed_seq: u64,
    /// Tells this user from an earlier one that held the same slot.
    pub generation: u32,
    /// `statusDefault`: what the user chose.
    chosen: Status,
    /// `status` by docs/api.md §1, including the manual-set exception; deactivation is
    /// applied on top of it when rendering.
    status: Status,
    pub active: bool,
    pub is_admin: bool,
    pub tokens: Box<[TokenHash]>,
    pub connections: SmallVec<[Connection; 1]>,
}

/// `None` for NaN, the record's "unset".
fn offset(value: f64) -> Option<f64> {
    (!value.is_nan()).then_some(value)
}

impl UserRecord {
    /// A new user: no connections, so offline, having chosen `online`.
    pub fn new(id: &UserId, profile: &Profile, generation: u32) -> UserRecord {
        let mut record = UserRecord {
            text: Text::default(),
            utc_offset: f64::NAN,
            changed_seq: 0,
            generation,
            chosen: Status::Online,
            status: Status::Offline,
            active: true,
            is_admin: false,
            tokens: Box::default(),
            connections: SmallVec::new(),
        };
        record.text = Text::pack([id.as_str(), "", "", "", ""]);
        let _ = record.set_profile(profile);
        record
    }

    pub fn id(&self) -> &str {
        self.text.part(0)
    }

    pub fn username(&self) -> &str {
        self.text.part(1)
    }

    fn name(&self) -> Option<&str> {
        Some(self.text.part(2)).filter(|s| !s.is_empty())
    }

    fn avatar_etag(&self) -> Option<&str> {
        Some(self.text.part(3)).filter(|s| !s.is_empty())
    }

    pub fn status_text(&self) -> &str {
        self.text.part(4)
    }

    /// What others see: deactivated users are offline whatever else holds.
    pub fn visible_status(&self) -> Status {
        if self.active {
            self.status
        } else {
            Status::Offline
        }
    }

    /// `statusConnection`, derived from the live connections.
    pub fn connection_status(&self) -> Status {
        connection_status(self.connections.iter().map(|c| c.status))
    }

    pub fn connection(&self, id: &str) -> Option<&Connection> {
        self.connections.iter().find(|c| c.id == id)
    }

    /// What others see of this user.
    fn visible(&self) -> Visible<'_> {
        Visible {
            username: self.username(),
            name: self.name(),
            status: self.visible_status(),
            utc_offset: offset(self.utc_offset),
            avatar_etag: self.avatar_etag(),
            status_text: self.status_text(),
            plain: self.text.plain(),
        }
    }

    pub fn render(&self) -> UserView {
        UserView::render(self.id(), &self.visible())
    }

    /// Appends this user's JSON object to `out`, as [`UserRecord::render`] renders it.
    pub fn render_into(&self, out: &mut String) {
        write_json(out, self.id(), &self.visible());
    }

    /// The record as plain data; `wall_ms` turns a time on the store's clock
    /// into wall-clock milliseconds.
    pub fn image(&self, wall_ms: impl Fn(u64) -> i64) -> UserImage {
        UserImage {
            id: self.id().into(),
            username: self.username().into(),
            name: self.name().map(CompactString::from),
            utc_offset: offset(self.utc_offset),
            avatar_etag: self.avatar_etag().map(CompactString::from),
            is_admin: self.is_admin,
            active: self.active,
            chosen: self.chosen,
            status: self.status,
            status_text: self.status_text().into(),
            tokens: self.tokens.iter().copied().collect(),
            connections: self
                .connections
                .iter()
                .map(|c| ConnectionImage {
                    id: c.id.clone(),
                    instance: c.instance.as_ref().map(|i| i.as_str().into()),
                    status: c.status,
                    refreshed_at_ms: wall_ms(c.refreshed_ms),
                })
                .collect(),
        }
    }

    /// Sets the chosen status, the status and the status text a snapshot
    /// recorded, once the user's connections are back. The status must be what
    /// a manual set leaves (`chosen`) or what the rule derives from the
    /// connections; returns false, changing nothing, if it is neither.
    pub fn restore_status(&mut self, chosen: Status, status: Status, text: StatusText) -> bool {
        let derived = visible_status(chosen, self.connection_status());
        if status != chosen && status != derived {
            return false;
        }
        let _ = self.choose(Some(chosen), Some(text));
        self.status = status;
        true
    }

    /// Visible if `fields` changed or the visible status is no longer `before`.
    fn touched(&self, before: Status, fields: bool) -> Touched {
        if fields || self.visible_status() != before {
            Touched::Visible { before }
        } else {
            Touched::Hidden
        }
    }

    /// Applies the docs/api.md §1 rule after a connection event (which ends a manual
    /// status set's exception). Only the status can change here.
    fn recompute(&mut self) -> Touched {
        let before = self.visible_status();
        self.status = visible_status(self.chosen, self.connection_status());
        self.touched(before, false)
    }

    pub fn set_profile(&mut self, profile: &Profile) -> Touched {
        let before = self.visible_status();
        let name = profile.name.as_deref();
        let etag = profile.avatar_etag.as_deref();
        let fields = self.username() != profile.username.as_str()
            || self.name() != name
            || offset(self.utc_offset) != profile.utc_offset
            || self.avatar_etag() != etag;
        if fields {
            self.text = Text::pack([
                self.id(),
                profile.username.as_str(),
                name.unwrap_or_default(),
                etag.unwrap_or_default(),
                self.status_text(),
            ]);
            self.utc_offset = profile.utc_offset.unwrap_or(f64::NAN);
        }
        self.active = profile.active;
        self.is_admin = profile.is_admin;
        self.touched(before, fields)
    }

    /// A manual status set takes effect at once, even without connections
    /// (`status := chosen`); the next connection event recomputes.
    pub fn choose(&mut self, status: Option<Status>, text: Option<StatusText>) -> Touched {
        let before = self.visible_status();
        if let Some(status) = status {
            self.chosen = status;
            self.status = status;
        }
        let text_changed = text.is_some_and(|text| {
            let changed = text.as_str() != self.status_text();
            if changed {
                let t = &self.text;
                self.text = Text::pack([t.part(0), t.part(1), t.part(2), t.part(3), text.as_str()]);
            }
            changed
        });
        self.touched(before, text_changed)
    }

    /// Adds a token hash unless held already; false if the user holds `max`.
    pub fn add_token(&mut self, hash: TokenHash, max: usize) -> bool {
        if hash.is_among(&self.tokens) {
            return true;
        }
        if self.tokens.len() >= max {
            return false;
        }
        let mut tokens = std::mem::take(&mut self.tokens).into_vec();
        tokens.push(hash);
        self.tokens = tokens.into_boxed_slice();
        true
    }

    pub fn revoke_token(&mut self, hash: &TokenHash) {
        if hash.is_among(&self.tokens) {
            let mut tokens = std::mem::take(&mut self.tokens).into_vec();
            tokens.retain(|t| !hash.is_among(std::slice::from_ref(t)));
            self.tokens = tokens.into_boxed_slice();
        }
    }

    /// Opens or refreshes a connection. Returns whether it was newly opened,
    /// with the generation it got.
    pub fn put_connection(
        &mut self,
        id: &str,
        status: ConnStatus,
        instance: Option<InstanceId>,
        now_ms: u64,
        generation: impl FnOnce() -> u64,
    ) -> (Touched, Option<u64>) {
        if let Some(conn) = self.connections.iter_mut().find(|c| c.id == id) {
            conn.refreshed_ms = now_ms;
            if instance.is_some() {
                conn.instance = instance;
            }
            // A heartbeat is a connection event too: it recomputes, which only
            // matters after a manual status set.
            conn.status = status;
            return (self.recompute(), None);
        }
        let generation = generation();
        self.connections.push(Connection {
            id: CompactString::from(id),
            instance,
            status,
            refreshed_ms: now_ms,
            generation,
        });
        (self.recompute(), Some(generation))
    }

    /// Closes the connection if present and `pred` holds for it.
    pub fn remove_connection(
        &mut self,
        id: &str,
        pred: impl FnOnce(&Connection) -> bool,
    ) -> Option<Touched> {
        let index = self.connections.iter().position(|c| c.id == id)?;
        if !pred(&self.connections[index]) {
            return None;
        }
        self.connections.swap_remove(index);
        if self.connections.is_empty() {
            // Back inline: a user who once had many connections keeps no heap buffer.
            self.connections.shrink_to_fit();
        }
        Some(self.recompute())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Username;

    fn profile(username: &str, name: Option<&str>) -> Profile {
        Profile::new(
            Username::parse(username).unwrap(),
            name.map(str::to_owned),
            Some(5.5),
            None,
            &[],
            true,
        )
        .unwrap()
    }

    #[test]
    fn packed_strings_survive_every_change_of_their_neighbours() {
        let id = UserId::parse("u1").unwrap();
        let mut r = UserRecord::new(&id, &profile("jane", Some("Jane")), 0);
        assert_eq!(
            (r.id(), r.username(), r.name()),
            ("u1", "jane", Some("Jane"))
        );
        let _ = r.choose(None, Some(StatusText::new("at lunch")));
        assert_eq!(r.status_text(), "at lunch");
        let _ = r.set_profile(&profile("jane.doe", None));
        assert_eq!(
            (r.id(), r.username(), r.name(), r.status_text()),
            ("u1", "jane.doe", None, "at lunch")
        );
        assert_eq!(offset(r.utc_offset), Some(5.5));
        let _ = r.choose(None, Some(StatusText::new("")));
        assert_eq!(
            (r.id(), r.username(), r.status_text()),
            ("u1", "jane.doe", "")
        );
    }

    #[test]
    fn a_record_is_plain_until_a_string_needs_escaping_and_renders_the_same_either_way() {
        let id = UserId::parse("u1").unwrap();
        let mut r = UserRecord::new(&id, &profile("jane", Some("Jane")), 0);
        assert!(r.text.plain());
        let checked = |r: &UserRecord| {
            let mut unchecked = r.visible();
            unchecked.plain = false;
            let mut out = String::new();
            write_json(&mut out, r.id(), &unchecked);
            assert_eq!(r.render().json(), out);
        };
        checked(&r);
        let _ = r.choose(None, Some(StatusText::new("say \"hi\"")));
        assert!(!r.text.plain());
        checked(&r);
        let _ = r.choose(None, Some(StatusText::new("back")));
        assert!(r.text.plain());
        assert_eq!(r.status_text(), "back");
        let _ = r.set_profile(&profile("jane", Some("Tab\there")));
        assert!(!r.text.plain());
        checked(&r);
    }

    #[test]
    fn the_first_connection_lives_in_the_record() {
        let id = UserId::parse("u1").unwrap();
        let mut r = UserRecord::new(&id, &profile("jane", None), 0);
        let (_, opened) = r.put_connection("c1", ConnStatus::Online, None, 5, || 7);
        assert_eq!(opened, Some(7));
        assert!(!r.connections.spilled());
        let (_, opened) = r.put_connection("c2", ConnStatus::Away, None, 5, || 8);
        assert_eq!(opened, Some(8));
        assert!(r.remove_connection("c1", |_| true).is_some());
        assert!(r.remove_connection("c2", |_| true).is_some());
        assert!(!r.connections.spilled());
    }
}

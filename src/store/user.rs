//! One user's full state as the store keeps it, and the transitions on it.
//!
//! Each transition reports exactly whether it changed what others see (and what
//! the visible status was before), so the store logs a change only for a real
//! one. Nothing is rendered on a write: views are rendered when read.

use super::view::{UserView, Visible};
use crate::domain::status::{connection_status, visible_status};
use crate::domain::{
    ConnStatus, ConnectionId, InstanceId, Profile, Status, StatusText, TokenHash, UserId,
};
use tokio::time::Instant;

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
    pub id: ConnectionId,
    pub instance: Option<InstanceId>,
    pub status: ConnStatus,
    pub refreshed_at: Instant,
    /// Unique per opened connection, so a stale expiry entry for a closed and
    /// reopened connection id can tell it is not its own.
    pub generation: u64,
}

#[derive(Debug)]
pub(crate) struct UserRecord {
    pub profile: Profile,
    /// `statusDefault`: what the user chose.
    pub chosen: Status,
    pub status_text: StatusText,
    /// `status` by SPEC §1, including the manual-set exception; deactivation is
    /// applied on top of it when rendering.
    pub status: Status,
    pub connections: Vec<Connection>,
    pub tokens: Vec<TokenHash>,
    /// Sequence number of the last change (what a scan without the log would filter on).
    pub changed_seq: u64,
}

impl UserRecord {
    /// A new user: no connections, so offline, having chosen `online`.
    pub fn new(profile: Profile) -> UserRecord {
        UserRecord {
            profile,
            chosen: Status::Online,
            status_text: StatusText::default(),
            status: Status::Offline,
            connections: Vec::new(),
            tokens: Vec::new(),
            changed_seq: 0,
        }
    }

    /// What others see: deactivated users are offline whatever else holds.
    pub fn visible_status(&self) -> Status {
        if self.profile.active {
            self.status
        } else {
            Status::Offline
        }
    }

    /// `statusConnection`, derived from the live connections.
    pub fn connection_status(&self) -> Status {
        connection_status(self.connections.iter().map(|c| c.status))
    }

    pub fn render(&self, id: &UserId) -> UserView {
        UserView::render(
            id,
            &Visible {
                username: self.profile.username.as_str(),
                name: self.profile.name.as_deref(),
                status: self.visible_status(),
                utc_offset: self.profile.utc_offset,
                avatar_etag: self.profile.avatar_etag.as_deref(),
                status_text: self.status_text.as_str(),
            },
        )
    }

    /// Visible if `fields` changed or the visible status is no longer `before`.
    fn touched(&self, before: Status, fields: bool) -> Touched {
        if fields || self.visible_status() != before {
            Touched::Visible { before }
        } else {
            Touched::Hidden
        }
    }

    /// Applies the SPEC §1 rule after a connection event (which ends a manual
    /// status set's exception). Only the status can change here.
    fn recompute(&mut self) -> Touched {
        let before = self.visible_status();
        self.status = visible_status(self.chosen, self.connection_status());
        self.touched(before, false)
    }

    pub fn set_profile(&mut self, profile: Profile) -> Touched {
        let before = self.visible_status();
        let old = &self.profile;
        let fields = old.username != profile.username
            || old.name != profile.name
            || old.utc_offset != profile.utc_offset
            || old.avatar_etag != profile.avatar_etag;
        self.profile = profile;
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
            let changed = text != self.status_text;
            self.status_text = text;
            changed
        });
        self.touched(before, text_changed)
    }

    /// Opens or refreshes a connection. Returns whether it was newly opened.
    pub fn put_connection(
        &mut self,
        id: &ConnectionId,
        status: ConnStatus,
        instance: Option<InstanceId>,
        now: Instant,
        generation: impl FnOnce() -> u64,
    ) -> (Touched, bool) {
        if let Some(conn) = self.connections.iter_mut().find(|c| &c.id == id) {
            conn.refreshed_at = now;
            if instance.is_some() {
                conn.instance = instance;
            }
            // A heartbeat is a connection event too: it recomputes, which only
            // matters after a manual status set.
            conn.status = status;
            return (self.recompute(), false);
        }
        self.connections.push(Connection {
            id: id.clone(),
            instance,
            status,
            refreshed_at: now,
            generation: generation(),
        });
        (self.recompute(), true)
    }

    /// Closes the connection if present and `pred` holds for it.
    pub fn remove_connection(
        &mut self,
        id: &ConnectionId,
        pred: impl FnOnce(&Connection) -> bool,
    ) -> Option<Touched> {
        let index = self.connections.iter().position(|c| &c.id == id)?;
        if !pred(&self.connections[index]) {
            return None;
        }
        self.connections.swap_remove(index);
        Some(self.recompute())
    }
}

//! The visible face of a user: the JSON object `users.presence` returns for it,
//! rendered once per change and shared by the user map and the change log.

use crate::domain::{Status, UserId};
use serde::Serialize;

/// What others see of one user at one change. Immutable once built.
#[derive(Debug, PartialEq, Eq)]
pub struct UserView {
    id: UserId,
    status: Status,
    deleted: bool,
    json: Box<str>,
}

/// The fields a view is rendered from, borrowed from the record that owns them.
pub(crate) struct Visible<'a> {
    pub username: &'a str,
    pub name: Option<&'a str>,
    pub status: Status,
    pub utc_offset: Option<f64>,
    pub avatar_etag: Option<&'a str>,
    pub status_text: &'a str,
}

/// The wire shape: unset or empty fields are omitted, never null (SPEC §3.1).
#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "_id")]
    id: &'a str,
    username: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    status: &'a str,
    #[serde(rename = "utcOffset", skip_serializing_if = "Option::is_none")]
    utc_offset: Option<Offset>,
    #[serde(rename = "avatarETag", skip_serializing_if = "Option::is_none")]
    avatar_etag: Option<&'a str>,
    #[serde(rename = "statusText", skip_serializing_if = "str::is_empty")]
    status_text: &'a str,
}

/// Hours from UTC. Whole hours are written as integers (`-2`, not `-2.0`), as
/// Rocket.Chat does, so byte-for-byte comparisons with upstream answers hold.
struct Offset(f64);

impl Serialize for Offset {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 {
            // Validated to -14..=14, so the cast is exact.
            s.serialize_i64(self.0 as i64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

impl UserView {
    pub(crate) fn render(id: &UserId, visible: &Visible<'_>) -> UserView {
        let wire = Wire {
            id: id.as_str(),
            username: visible.username,
            name: visible.name,
            status: visible.status.as_str(),
            utc_offset: visible.utc_offset.map(Offset),
            avatar_etag: visible.avatar_etag,
            status_text: visible.status_text,
        };
        UserView {
            id: id.clone(),
            status: visible.status,
            deleted: false,
            json: to_json(&wire),
        }
    }

    /// The tombstone a deleted user leaves in the log: `_id`, `username`, `offline`.
    pub(crate) fn deleted(id: &UserId, username: &str) -> UserView {
        let mut view = UserView::render(
            id,
            &Visible {
                username,
                name: None,
                status: Status::Offline,
                utc_offset: None,
                avatar_etag: None,
                status_text: "",
            },
        );
        view.deleted = true;
        view
    }

    /// Returns the user's id.
    pub fn id(&self) -> &UserId {
        &self.id
    }

    /// Returns the visible status (`offline` for a deleted user).
    pub fn status(&self) -> Status {
        self.status
    }

    /// Returns true if and only if this view records the user's deletion.
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// Returns the rendered JSON object.
    pub fn json(&self) -> &str {
        &self.json
    }
}

fn to_json(wire: &Wire<'_>) -> Box<str> {
    // Serializing borrowed strs and numbers into a Vec cannot fail.
    match serde_json::to_string(wire) {
        Ok(s) => s.into_boxed_str(),
        Err(e) => unreachable!("serializing a user view failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> UserId {
        UserId::parse("rocket.cat").unwrap()
    }

    #[test]
    fn unset_fields_are_omitted_and_whole_offsets_are_integers() {
        let v = UserView::render(
            &id(),
            &Visible {
                username: "rocket.cat",
                name: Some("Rocket.Cat"),
                status: Status::Online,
                utc_offset: Some(-2.0),
                avatar_etag: None,
                status_text: "",
            },
        );
        assert_eq!(
            v.json(),
            r#"{"_id":"rocket.cat","username":"rocket.cat","name":"Rocket.Cat","status":"online","utcOffset":-2}"#
        );
    }

    #[test]
    fn fractional_offsets_and_text_are_kept_and_escaped() {
        let v = UserView::render(
            &id(),
            &Visible {
                username: "rocket.cat",
                name: Some("Ann \"Q\""),
                status: Status::Busy,
                utc_offset: Some(5.5),
                avatar_etag: Some("e"),
                status_text: "in a\nmeeting",
            },
        );
        let parsed: serde_json::Value = serde_json::from_str(v.json()).unwrap();
        assert_eq!(parsed["utcOffset"], 5.5);
        assert_eq!(parsed["name"], "Ann \"Q\"");
        assert_eq!(parsed["statusText"], "in a\nmeeting");
    }

    #[test]
    fn deleted_user_renders_as_id_username_offline() {
        let v = UserView::deleted(&id(), "rocket.cat");
        assert!(v.is_deleted());
        assert_eq!(
            v.json(),
            r#"{"_id":"rocket.cat","username":"rocket.cat","status":"offline"}"#
        );
    }
}

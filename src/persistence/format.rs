//! The snapshot file's lines: a header, one JSON object per user, a trailer.
//!
//! ```text
//! {"format":"presenced-snapshot","version":1,"writtenAt":1700000000000}
//! {"_id":"u1","username":"jane","statusDefault":"busy","status":"busy","hashedTokens":["..."],"connections":[...]}
//! ...
//! {"users":1,"sha256":"<hex of every byte before this line>"}
//! ```
//!
//! JSON lines, because a line is a unit of error reporting ("line 5:
//! username: ..."), `jq` and `grep` read it, and serde_json writes a million
//! users in about a second. Field names are the API's. Only the line's shape is
//! checked here (JSON, types, status names, token encoding); what the API
//! would refuse in a well-shaped line is checked by the store as it restores
//! it. The header and trailer carry only what a reader needs to trust the rest:
//! what the file is, which version, how many users, and a checksum that
//! catches a cut or damaged file.

use crate::domain::{ConnStatus, Status, TokenHash};
use crate::store::{ConnectionImage, UserImage};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::borrow::Cow;

/// What the header's `format` says.
pub const FORMAT: &str = "presenced-snapshot";
/// The version this build writes and reads.
pub const VERSION: u64 = 1;

/// The first line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header<'a> {
    pub format: Cow<'a, str>,
    pub version: u64,
    /// Wall-clock ms when the write began; informational.
    #[serde(default)]
    pub written_at: i64,
}

/// The last line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trailer {
    /// How many user lines come between the header and this line.
    pub users: u64,
    /// SHA-256, in lower-case hex, of every byte of the file before this line.
    pub sha256: String,
}

fn is_false(b: &bool) -> bool {
    !b
}

fn is_true(b: &bool) -> bool {
    *b
}

fn yes() -> bool {
    true
}

/// A user line. The strings borrow when writing, and when reading those
/// without escapes (ids, statuses: nearly all) borrow from the line too.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserLine<'a> {
    #[serde(rename = "_id", borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    username: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<Cow<'a, str>>,
    #[serde(rename = "utcOffset", default, skip_serializing_if = "Option::is_none")]
    utc_offset: Option<f64>,
    #[serde(
        rename = "avatarETag",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    avatar_etag: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "is_false")]
    admin: bool,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    active: bool,
    #[serde(rename = "statusDefault", borrow)]
    chosen: Cow<'a, str>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(
        rename = "statusText",
        default,
        skip_serializing_if = "str::is_empty",
        borrow
    )]
    status_text: Cow<'a, str>,
    #[serde(
        rename = "hashedTokens",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    tokens: Vec<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", borrow)]
    connections: Vec<ConnectionLine<'a>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionLine<'a> {
    #[serde(rename = "connectionId", borrow)]
    id: Cow<'a, str>,
    #[serde(
        rename = "instanceId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    instance: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Cow<'a, str>,
    /// Wall-clock ms since the Unix epoch.
    #[serde(rename = "refreshedAt")]
    refreshed_at: i64,
}

/// Appends `value` as one JSON line.
pub fn push_line(out: &mut Vec<u8>, value: &impl Serialize) -> Result<(), serde_json::Error> {
    serde_json::to_writer(&mut *out, value)?;
    out.push(b'\n');
    Ok(())
}

/// Appends the line of `user`.
pub fn push_user(out: &mut Vec<u8>, user: &UserImage) -> Result<(), serde_json::Error> {
    let tokens: Vec<Cow<'_, str>> = user
        .tokens
        .iter()
        .map(|t| Cow::Owned(t.to_base64()))
        .collect();
    let line = UserLine {
        id: Cow::Borrowed(&user.id),
        username: Cow::Borrowed(&user.username),
        name: user.name.as_deref().map(Cow::Borrowed),
        utc_offset: user.utc_offset,
        avatar_etag: user.avatar_etag.as_deref().map(Cow::Borrowed),
        admin: user.is_admin,
        active: user.active,
        chosen: Cow::Borrowed(user.chosen.as_str()),
        status: Cow::Borrowed(user.status.as_str()),
        status_text: Cow::Borrowed(&user.status_text),
        tokens,
        connections: user
            .connections
            .iter()
            .map(|c| ConnectionLine {
                id: Cow::Borrowed(&c.id),
                instance: c.instance.as_deref().map(Cow::Borrowed),
                status: Cow::Borrowed(c.status.as_str()),
                refreshed_at: c.refreshed_at_ms,
            })
            .collect(),
    };
    push_line(out, &line)
}

/// serde_json's message without its position: a line is one document, so
/// "line 1" would mislead; the column is kept.
pub fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let message = text.split(" at line ").next().unwrap_or(&text);
    format!("{message} (column {})", e.column())
}

fn status(field: &str, value: &str) -> Result<Status, String> {
    Status::parse(value).ok_or_else(|| {
        format!(
            "{field}: {value:?} is not a status: expected {}",
            Status::CHOICES
        )
    })
}

/// Reads a user line; errors name the field at fault.
pub fn parse_user(line: &[u8]) -> Result<UserImage, String> {
    let line: UserLine<'_> = serde_json::from_slice(line).map_err(|e| json_error(&e))?;
    let tokens = line
        .tokens
        .iter()
        .map(|t| TokenHash::parse_hashed(t).map_err(|e| e.to_string()))
        .collect::<Result<SmallVec<_>, _>>()?;
    let connections = line
        .connections
        .into_iter()
        .map(|c| {
            let status = ConnStatus::parse(&c.status).ok_or_else(|| {
                format!(
                    "connections.status: {:?} is not a connection status: expected online | away",
                    c.status
                )
            })?;
            Ok(ConnectionImage {
                id: c.id.into(),
                instance: c.instance.map(Into::into),
                status,
                refreshed_at_ms: c.refreshed_at,
            })
        })
        .collect::<Result<SmallVec<_>, String>>()?;
    Ok(UserImage {
        chosen: status("statusDefault", &line.chosen)?,
        status: status("status", &line.status)?,
        id: line.id.into(),
        username: line.username.into(),
        name: line.name.map(Into::into),
        utc_offset: line.utc_offset,
        avatar_etag: line.avatar_etag.map(Into::into),
        is_admin: line.admin,
        active: line.active,
        status_text: line.status_text.into(),
        tokens,
        connections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jane() -> UserImage {
        UserImage {
            id: "u1".into(),
            username: "jane".into(),
            name: Some("Jane \"J\" Doe\n".into()),
            utc_offset: Some(5.5),
            avatar_etag: Some("e1".into()),
            is_admin: true,
            active: false,
            chosen: Status::Busy,
            status: Status::Busy,
            status_text: "in a meeting".into(),
            tokens: smallvec::smallvec![TokenHash::of_token("t").unwrap()],
            connections: smallvec::smallvec![ConnectionImage {
                id: "c1".into(),
                instance: Some("node-a".into()),
                status: ConnStatus::Away,
                refreshed_at_ms: 1_700_000_000_123,
            }],
        }
    }

    fn line(user: &UserImage) -> Vec<u8> {
        let mut out = Vec::new();
        push_user(&mut out, user).unwrap();
        out
    }

    #[test]
    fn a_user_line_is_one_line_of_json_that_reads_back_the_same() {
        for user in [jane(), UserImage::new("u2")] {
            let bytes = line(&user);
            assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(bytes.last(), Some(&b'\n'));
            assert_eq!(parse_user(&bytes).unwrap(), user);
        }
    }

    #[test]
    fn defaults_are_left_out_of_a_line() {
        let minimal = UserImage::new("u1");
        assert_eq!(
            String::from_utf8(line(&minimal)).unwrap(),
            "{\"_id\":\"u1\",\"username\":\"u1\",\"statusDefault\":\"online\",\"status\":\"offline\"}\n"
        );
    }

    #[test]
    fn a_bad_line_is_refused_naming_the_field_or_the_column() {
        let cases = [
            ("{\"_id\":\"u1\"", "EOF while parsing an object (column 11)"),
            ("{\"_id\":1,\"username\":\"j\",\"statusDefault\":\"online\",\"status\":\"online\"}", "invalid type: integer `1`, expected a string (column 8)"),
            ("{\"_id\":\"u\",\"username\":\"j\",\"statusDefault\":\"online\"}", "missing field `status`"),
            ("{\"_id\":\"u\",\"username\":\"j\",\"statusDefault\":\"online\",\"status\":\"online\",\"colour\":1}", "unknown field `colour`"),
            ("{\"_id\":\"u\",\"username\":\"j\",\"statusDefault\":\"onlime\",\"status\":\"online\"}", "statusDefault: \"onlime\" is not a status: expected online | away | busy | offline"),
            ("{\"_id\":\"u\",\"username\":\"j\",\"statusDefault\":\"online\",\"status\":\"dnd\"}", "status: \"dnd\" is not a status"),
            ("{\"_id\":\"u\",\"username\":\"j\",\"statusDefault\":\"online\",\"status\":\"online\",\"hashedTokens\":[\"abc\"]}", "hashedToken: expected standard base64"),
            ("{\"_id\":\"u\",\"username\":\"j\",\"statusDefault\":\"online\",\"status\":\"online\",\"connections\":[{\"connectionId\":\"c\",\"status\":\"busy\",\"refreshedAt\":0}]}",
             "connections.status: \"busy\" is not a connection status"),
            ("{\"_id\":\"u\",\"username\":\"j\",\"statusDefault\":\"online\",\"status\":\"online\",\"connections\":[{\"connectionId\":\"c\",\"status\":\"away\"}]}",
             "missing field `refreshedAt`"),
            ("\u{0}\u{1}garbage", "expected value (column 1)"),
        ];
        for (text, want) in cases {
            let error = parse_user(text.as_bytes()).unwrap_err();
            assert!(error.starts_with(want), "{text}: {error}");
        }
        let error = parse_user(b"{\"_id\":\"\xff\"}").unwrap_err();
        assert!(error.contains("invalid unicode"), "{error}");
    }
}

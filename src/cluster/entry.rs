//! What the change stream carries: one entry per write that changed a user,
//! holding that user's full state (so replaying an entry twice, or onto a
//! newer state, converges), and how a replica reads it back.
//!
//! Fields: `k` kind (`u` a visible change, `h` a change of nothing visible —
//! tokens, roles, `statusConnection` —, `d` a deletion; `s` marks a state
//! loaded at bootstrap), `id`, `un` username, `nm` name, `off` utcOffset,
//! `et` avatarETag, `st` status (docs/api.md §1, before deactivation), `tx` status
//! text, `ac` active, `ad` admin, `cs` statusConnection, `tk` token hashes
//! separated by spaces. Empty means unset.

use crate::domain::{Profile, Status, StatusText, TokenHash, UserId, Username};
use crate::store::{Replicated, UserState};
use redis::Value;
use std::fmt;

/// How an entry enters a replica's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Visible,
    Hidden,
    Loaded,
}

/// An entry (or loaded state) that does not read as one of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError(pub String);

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unreadable stream entry: {}", self.0)
    }
}

impl std::error::Error for EntryError {}

/// A reply value as text, if it is one.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".to_owned()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A flat `[field, value, ...]` reply's pairs, `None` for one that is not text.
fn text_pairs(items: &[Value]) -> impl Iterator<Item = Option<(String, String)>> + '_ {
    items.chunks(2).map(|pair| match pair {
        [k, v] => Some((text(k)?, text(v)?)),
        _ => None,
    })
}

/// A flat `[field, value, ...]` reply as pairs, if all of them are text.
pub fn pairs(value: &Value) -> Option<Vec<(String, String)>> {
    let Value::Array(items) = value else {
        return None;
    };
    text_pairs(items).collect()
}

/// The text pairs of a flat reply, skipping the others (`XINFO` mixes in
/// entries).
pub fn text_pairs_only(value: &Value) -> Vec<(String, String)> {
    let Value::Array(items) = value else {
        return Vec::new();
    };
    text_pairs(items).flatten().collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Result<&'a str, EntryError> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| EntryError(format!("field {name} is missing")))
}

fn status(fields: &[(String, String)], name: &str) -> Result<Status, EntryError> {
    let raw = field(fields, name)?;
    Status::parse(raw).ok_or_else(|| EntryError(format!("{name}: {raw:?} is not a status")))
}

fn bad(name: &str, e: impl fmt::Display) -> EntryError {
    EntryError(format!("{name}: {e}"))
}

/// Reads an entry's (or a loaded state's) fields.
pub fn parse(fields: &[(String, String)]) -> Result<(Kind, Replicated), EntryError> {
    let id = UserId::parse(field(fields, "id")?).map_err(|e| bad("id", e))?;
    let username = Username::parse(field(fields, "un")?).map_err(|e| bad("un", e))?;
    let kind = match field(fields, "k")? {
        "d" => return Ok((Kind::Visible, Replicated::Delete { id, username })),
        "u" => Kind::Visible,
        "h" => Kind::Hidden,
        "s" => Kind::Loaded,
        other => return Err(EntryError(format!("k: {other:?} is not a kind"))),
    };
    let optional = |name: &str| -> Result<Option<String>, EntryError> {
        Ok(Some(field(fields, name)?.to_owned()).filter(|s| !s.is_empty()))
    };
    let utc_offset = optional("off")?
        .map(|s| s.parse::<f64>().map_err(|e| bad("off", e)))
        .transpose()?;
    let admin = field(fields, "ad")? == "1";
    let roles = if admin {
        vec!["admin".to_owned()]
    } else {
        Vec::new()
    };
    let profile = Profile::new(
        username,
        optional("nm")?,
        utc_offset,
        optional("et")?,
        &roles,
        field(fields, "ac")? == "1",
    )
    .map_err(|e| bad("profile", e))?;
    let tokens = field(fields, "tk")?
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(|t| TokenHash::parse_hashed(t).map_err(|e| bad("tk", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let state = UserState {
        id,
        profile,
        status: status(fields, "st")?,
        status_text: StatusText::new(field(fields, "tx")?),
        connection_status: status(fields, "cs")?,
        tokens,
    };
    Ok((kind, Replicated::Put(state)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn an_entry_reads_back_as_the_full_state_it_carries() {
        let token = crate::domain::TokenHash::of_token("t").unwrap().to_base64();
        let entry = fields(&[
            ("k", "u"),
            ("id", "u1"),
            ("un", "jane"),
            ("nm", ""),
            ("off", "5.5"),
            ("et", "e1"),
            ("st", "busy"),
            ("tx", "hi"),
            ("ac", "1"),
            ("ad", "1"),
            ("cs", "away"),
            ("tk", &token),
        ]);
        let (kind, change) = parse(&entry).unwrap();
        assert_eq!(kind, Kind::Visible);
        let Replicated::Put(state) = change else {
            panic!("not a put")
        };
        assert_eq!(state.profile.name, None);
        assert_eq!(state.profile.utc_offset, Some(5.5));
        assert!(state.profile.is_admin && state.profile.active);
        assert_eq!(
            (state.status, state.connection_status),
            (Status::Busy, Status::Away)
        );
        assert_eq!(state.tokens.len(), 1);
    }

    #[test]
    fn a_broken_entry_names_its_field() {
        let e = parse(&fields(&[("k", "d"), ("id", "u 1"), ("un", "x")])).unwrap_err();
        assert!(e.to_string().contains("id:"), "{e}");
        let e = parse(&fields(&[("k", "u"), ("id", "u1"), ("un", "x")])).unwrap_err();
        assert!(e.to_string().contains("field"), "{e}");
    }
}

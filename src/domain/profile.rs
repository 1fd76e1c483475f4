//! A user's profile (what the chat server pushes) and status text, validated.

use super::ids::Username;
use std::fmt;

/// Longest `name`, in characters. the contract is silent; this bounds memory per user.
pub const MAX_NAME_CHARS: usize = 256;
/// Longest `avatarETag`, in characters.
pub const MAX_ETAG_CHARS: usize = 128;
/// Most roles a user may carry, and the longest role name.
pub const MAX_ROLES: usize = 64;
/// Longest status text, in characters (docs/api.md §1).
pub const MAX_STATUS_TEXT_CHARS: usize = 120;

/// A validated profile. Roles are reduced to the one that means something here.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub username: Username,
    /// `None` when unset or empty: the key is then omitted from responses.
    pub name: Option<Box<str>>,
    /// Hours from UTC, finite, within -14..=14.
    pub utc_offset: Option<f64>,
    pub avatar_etag: Option<Box<str>>,
    /// True if and only if the roles include `admin`, which may act on other users.
    pub is_admin: bool,
    /// Deactivated users cannot authenticate and are shown offline.
    pub active: bool,
}

/// Why a profile was rejected; `Display` names the field and what is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError(String);

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProfileError {}

fn optional_text(
    field: &str,
    value: Option<String>,
    max: usize,
) -> Result<Option<Box<str>>, ProfileError> {
    match value {
        Some(v) if v.chars().count() > max => Err(ProfileError(format!(
            "{field}: at most {max} characters allowed"
        ))),
        Some(v) if v.is_empty() => Ok(None),
        v => Ok(v.map(String::into_boxed_str)),
    }
}

impl Profile {
    /// Validates the fields of a pushed profile.
    pub fn new(
        username: Username,
        name: Option<String>,
        utc_offset: Option<f64>,
        avatar_etag: Option<String>,
        roles: &[String],
        active: bool,
    ) -> Result<Profile, ProfileError> {
        if let Some(offset) = utc_offset {
            if !offset.is_finite() || !(-14.0..=14.0).contains(&offset) {
                return Err(ProfileError(format!(
                    "utcOffset: {offset} is out of range: expected hours from -14 to 14, e.g. -2 or 5.5"
                )));
            }
        }
        if roles.len() > MAX_ROLES || roles.iter().any(|r| r.is_empty() || r.len() > MAX_ROLES) {
            return Err(ProfileError(format!(
                "roles: expected at most {MAX_ROLES} roles of 1-{MAX_ROLES} characters each"
            )));
        }
        Ok(Profile {
            username,
            name: optional_text("name", name, MAX_NAME_CHARS)?,
            utc_offset,
            avatar_etag: optional_text("avatarETag", avatar_etag, MAX_ETAG_CHARS)?,
            is_admin: roles.iter().any(|r| r == "admin"),
            active,
        })
    }
}

/// A status message: trimmed and cut to 120 characters, as upstream does. Empty clears it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusText(Box<str>);

impl StatusText {
    /// Trims `raw` and keeps at most its first 120 characters.
    pub fn new(raw: &str) -> StatusText {
        let trimmed = raw.trim();
        let cut = trimmed
            .char_indices()
            .nth(MAX_STATUS_TEXT_CHARS)
            .map_or(trimmed.len(), |(i, _)| i);
        StatusText(trimmed[..cut].trim_end().into())
    }

    /// Returns the text; empty when no status text is set.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn username() -> Username {
        Username::parse("jane").unwrap()
    }

    #[test]
    fn status_text_is_trimmed_and_cut_to_120_characters() {
        assert_eq!(StatusText::new("  at lunch \n").as_str(), "at lunch");
        let long = "é".repeat(200);
        assert_eq!(StatusText::new(&long).as_str().chars().count(), 120);
        assert_eq!(StatusText::new("   ").as_str(), "");
    }

    #[test]
    fn empty_name_and_etag_count_as_unset() {
        let p = Profile::new(
            username(),
            Some(String::new()),
            None,
            Some(String::new()),
            &[],
            true,
        )
        .unwrap();
        assert_eq!((p.name, p.avatar_etag), (None, None));
    }

    #[test]
    fn utc_offset_outside_minus_14_to_14_is_rejected() {
        for bad in [14.5, -15.0, f64::NAN, f64::INFINITY] {
            let err = Profile::new(username(), None, Some(bad), None, &[], true).unwrap_err();
            assert!(err.to_string().starts_with("utcOffset:"), "{err}");
        }
        assert!(Profile::new(username(), None, Some(5.5), None, &[], true).is_ok());
    }

    #[test]
    fn admin_role_is_recognised_and_role_lists_are_bounded() {
        let roles = vec!["user".to_owned(), "admin".to_owned()];
        assert!(
            Profile::new(username(), None, None, None, &roles, true)
                .unwrap()
                .is_admin
        );
        let too_many = vec!["r".to_owned(); 65];
        assert!(Profile::new(username(), None, None, None, &too_many, true).is_err());
        let name = "n".repeat(257);
        assert!(Profile::new(username(), Some(name), None, None, &[], true).is_err());
    }
}

//! Identifiers that cross the API: user ids, usernames, connection and instance ids.
//!
//! All share one rule (docs/api.md §4): 1–64 characters of `[A-Za-z0-9._-]`. The store
//! keeps its own packed copies, so these are only the values passing through a
//! request or an op: held inline up to 24 bytes (Rocket.Chat's ids are 17), so
//! parsing one on every authenticated request allocates nothing.

use compact_str::CompactString;
use std::fmt;

/// The longest identifier accepted anywhere.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid identifier. `Display` names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdError {
    field: &'static str,
    value: String,
}

impl IdError {
    /// Returns the name of the field that held the bad value (`userId`, `username`, ...).
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {:?} is not valid: expected 1-{} characters of A-Z a-z 0-9 . _ -",
            self.field, self.value, MAX_ID_LEN
        )
    }
}

impl std::error::Error for IdError {}

/// Returns true if and only if `s` satisfies the identifier rule.
fn is_valid_id(s: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Cuts a rejected value short so an error message stays readable whatever was sent.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(MAX_ID_LEN + 8) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_owned(),
    }
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(CompactString);

        impl $name {
            /// The field name used in error messages.
            pub const FIELD: &'static str = $field;

            /// Parses `s`, returning an error naming the field when it breaks the id rule.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                if is_valid_id(s) {
                    Ok(Self(CompactString::new(s)))
                } else {
                    Err(IdError { field: $field, value: excerpt(s) })
                }
            }

            /// Returns the identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.0.as_str(), f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

identifier!(
    /// A user's `_id`.
    UserId,
    "userId"
);
identifier!(
    /// A user's `username`, unique across users.
    Username,
    "username"
);
identifier!(
    /// One websocket (or other) connection of a user, named by the chat server.
    ConnectionId,
    "connectionId"
);
identifier!(
    /// A chat-server instance; all its connections close when it dies.
    InstanceId,
    "instanceId"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_allowed_characters_up_to_64_long_are_accepted() {
        for ok in [
            "a",
            "rocket.cat",
            "aobEdbYhXfu5hkeqG",
            "a-b_c.d",
            &"x".repeat(64),
        ] {
            assert_eq!(
                UserId::parse(ok).map(|id| id.to_string()),
                Ok(ok.to_owned())
            );
        }
    }

    #[test]
    fn ids_that_are_empty_too_long_or_have_other_characters_are_rejected() {
        for bad in ["", "a b", "a/b", "é", "a\0", "a,b", &"x".repeat(65)] {
            let err = UserId::parse(bad).unwrap_err();
            assert_eq!(err.field(), "userId");
            assert!(
                err.to_string().contains("expected 1-64 characters"),
                "{err}"
            );
        }
    }

    #[test]
    fn error_message_of_a_huge_value_stays_short() {
        let err = Username::parse(&"é".repeat(10_000)).unwrap_err();
        assert!(err.to_string().len() < 300);
        assert!(err.to_string().starts_with("username: "));
    }
}

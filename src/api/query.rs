//! The parameters of `users.presence`, from a query string or a JSON body, into
//! one shape; and the branch they select (SPEC §3.1).

use crate::domain::from_date::parse_from_date;
use crate::http::error::excerpt;
use crate::http::ApiError;
use crate::store::Cursor;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashSet;

/// The raw parameters; each is validated only by the branch that uses it, so a
/// parameter the chosen branch ignores cannot fail the request. Values borrow
/// from the query string where they need no decoding, so a poll with a hundred
/// ids does not allocate a hundred strings.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct PresenceParams<'a> {
    /// Present (possibly empty) if any `ids` form was sent.
    #[serde(default)]
    pub ids: Option<Vec<Cow<'a, str>>>,
    #[serde(default, borrow)]
    pub since: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub from: Option<Cow<'a, str>>,
}

/// The key-value pairs of a query string, decoded. A query with nothing to
/// decode (no `%`, no `+`), the common case, is split in place without
/// copying; others go through `form_urlencoded`.
enum QueryPairs<'a> {
    Plain(std::str::Split<'a, char>),
    Encoded(form_urlencoded::Parse<'a>),
}

impl<'a> QueryPairs<'a> {
    fn new(query: &'a str) -> QueryPairs<'a> {
        if query.bytes().any(|b| b == b'%' || b == b'+') {
            QueryPairs::Encoded(form_urlencoded::parse(query.as_bytes()))
        } else {
            QueryPairs::Plain(query.split('&'))
        }
    }
}

impl<'a> Iterator for QueryPairs<'a> {
    type Item = (Cow<'a, str>, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            QueryPairs::Encoded(pairs) => pairs.next(),
            QueryPairs::Plain(pairs) => {
                let pair = pairs.find(|pair| !pair.is_empty())?;
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                Some((Cow::Borrowed(key), Cow::Borrowed(value)))
            }
        }
    }
}

/// Splits a comma-separated value, borrowing the pieces when the value is borrowed.
fn split_commas<'a>(value: Cow<'a, str>, into: &mut Vec<Cow<'a, str>>) {
    match value {
        Cow::Borrowed(v) => into.extend(v.split(',').map(Cow::Borrowed)),
        Cow::Owned(v) => into.extend(v.split(',').map(|piece| Cow::Owned(piece.to_owned()))),
    }
}

/// Trims an id, still borrowing if it was borrowed.
fn trimmed(id: Cow<'_, str>) -> Cow<'_, str> {
    match id {
        Cow::Borrowed(v) => Cow::Borrowed(v.trim()),
        Cow::Owned(v) if v.trim().len() == v.len() => Cow::Owned(v),
        Cow::Owned(v) => Cow::Owned(v.trim().to_owned()),
    }
}

/// Returns true if and only if `key` is one of the accepted spellings of `ids`:
/// `ids`, `ids[]`, `ids[<n>]`.
fn is_ids_key(key: &str) -> bool {
    let Some(rest) = key.strip_prefix("ids") else {
        return false;
    };
    rest.is_empty()
        || rest
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .is_some_and(|index| index.bytes().all(|b| b.is_ascii_digit()))
}

impl<'a> PresenceParams<'a> {
    /// Parses a raw query string. Keys and values are percent-decoded (so
    /// `ids%5B%5D` is `ids[]`) and `+` reads as a space. Unknown keys are ignored;
    /// for `since` and `from` the first occurrence wins.
    pub fn from_query(query: &'a str) -> PresenceParams<'a> {
        let mut params = PresenceParams::default();
        for (key, value) in QueryPairs::new(query) {
            if is_ids_key(&key) {
                split_commas(value, params.ids.get_or_insert_with(Vec::new));
            } else if key == "since" {
                params.since.get_or_insert(value);
            } else if key == "from" {
                params.from.get_or_insert(value);
            }
        }
        params
    }

    /// The distinct non-empty ids, trimmed, in first-seen order; `None` if none were sent.
    fn distinct_ids(
        ids: Option<Vec<Cow<'a, str>>>,
        max_ids: usize,
    ) -> Result<Option<Vec<Cow<'a, str>>>, ApiError> {
        let Some(ids) = ids else {
            return Ok(None);
        };
        let mut ids: Vec<Cow<'a, str>> = ids
            .into_iter()
            .map(trimmed)
            .filter(|id| !id.is_empty())
            .collect();
        let first_seen: Vec<bool> = {
            let mut seen = HashSet::with_capacity_and_hasher(
                ids.len(),
                foldhash::fast::RandomState::default(),
            );
            ids.iter().map(|id| seen.insert(id.as_ref())).collect()
        };
        let mut first_seen = first_seen.into_iter();
        ids.retain(|_| first_seen.next().unwrap_or(false));
        if ids.len() > max_ids {
            return Err(ApiError::invalid_params(format!(
                "ids: {} ids given, at most {max_ids} are allowed per request (presence.max_ids); split the list",
                ids.len()
            )));
        }
        Ok((!ids.is_empty()).then_some(ids))
    }

    /// Chooses the branch of SPEC §3.1 (after "broadcast disabled", which needs no
    /// parameters), validating what that branch uses.
    pub fn branch(self, max_ids: usize) -> Result<Branch<'a>, ApiError> {
        let ids = PresenceParams::distinct_ids(self.ids, max_ids)?;
        if let Some(since) = &self.since {
            let cursor = since.parse::<Cursor>().map_err(|e| {
                ApiError::invalid_params(format!("since: {:?} is {e}", excerpt(since)))
            })?;
            return Ok(Branch::Since { cursor, ids });
        }
        if let Some(ids) = ids {
            return Ok(Branch::Ids(ids));
        }
        if let Some(from) = &self.from {
            let from_ms =
                parse_from_date(from).map_err(|e| ApiError::invalid_params(e.to_string()))?;
            return Ok(Branch::From(from_ms));
        }
        Ok(Branch::Full)
    }
}

/// What a `users.presence` request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Branch<'a> {
    /// Changes after a cursor, optionally only of some users.
    Since {
        cursor: Cursor,
        ids: Option<Vec<Cow<'a, str>>>,
    },
    /// The listed users that are not offline.
    Ids(Vec<Cow<'a, str>>),
    /// Changes at or after a time (ms since the epoch), if still provable.
    From(i64),
    /// Everyone not offline.
    Full,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distinct(query: &str, max_ids: usize) -> Result<Option<Vec<String>>, ApiError> {
        let ids = PresenceParams::distinct_ids(PresenceParams::from_query(query).ids, max_ids)?;
        Ok(ids.map(|ids| ids.into_iter().map(Cow::into_owned).collect()))
    }

    fn ids(query: &str) -> Option<Vec<String>> {
        distinct(query, 1000).unwrap()
    }

    fn strings(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn every_accepted_ids_form_gives_the_same_list() {
        let want = strings(&["a", "b"]);
        for query in [
            "ids=a,b",
            "ids=a&ids=b",
            "ids[]=a&ids[]=b",
            "ids%5B%5D=a&ids%5B%5D=b",
            "ids%5b%5d=a&ids%5b%5d=b",
            "ids[0]=a&ids[1]=b",
            "ids=a&ids[]=b",
            "ids=a,b,a&ids[]=b",
            "ids=,a,,b,",
        ] {
            assert_eq!(ids(query), want, "{query}");
        }
    }

    #[test]
    fn ids_without_escapes_borrow_from_the_query_string() {
        let ids = PresenceParams::from_query("ids=a,b&ids%5B%5D=c%2Cd")
            .ids
            .unwrap();
        assert!(matches!(ids[..2], [Cow::Borrowed("a"), Cow::Borrowed("b")]));
        assert!(matches!(&ids[2..], [Cow::Owned(c), Cow::Owned(d)] if c == "c" && d == "d"));
    }

    #[test]
    fn the_fast_path_and_form_urlencoded_agree() {
        for query in [
            "ids=a,b&from=x&since=1.2",
            "a&=b&&ids&ids[]=c=d",
            "",
            "&&",
            "from=2019-05-22T10:00:00Z",
        ] {
            let fast: Vec<_> = QueryPairs::new(query).collect();
            let slow: Vec<_> = form_urlencoded::parse(query.as_bytes()).collect();
            assert_eq!(fast, slow, "{query}");
        }
    }

    #[test]
    fn empty_or_absent_ids_select_no_list() {
        assert_eq!(PresenceParams::from_query("").ids, None);
        assert_eq!(ids("ids="), None);
        assert_eq!(ids("ids=,,"), None);
        assert_eq!(ids("idsx=a&id=b&ids[x]=c&ids[=d"), None);
    }

    #[test]
    fn more_ids_than_allowed_is_an_error_naming_the_limit() {
        let err = distinct("ids=a,b,c", 2).unwrap_err();
        assert_eq!(err.error_type(), Some("error-invalid-params"));
        assert!(err.message().contains("at most 2"), "{}", err.message());
        // duplicates collapse before counting
        assert!(distinct("ids=a,a,a", 1).is_ok());
    }

    #[test]
    fn a_plus_sent_unencoded_in_from_arrives_as_a_space() {
        let p = PresenceParams::from_query("from=2019-05-22T12:11:45+02:00&x=1");
        assert_eq!(p.from.as_deref(), Some("2019-05-22T12:11:45 02:00"));
        assert!(matches!(p.branch(10), Ok(Branch::From(_))));
    }

    #[test]
    fn branches_are_chosen_in_spec_order() {
        let since = "1.0";
        fn branch(q: &str) -> Result<Branch<'_>, ApiError> {
            PresenceParams::from_query(q).branch(10)
        }
        assert!(matches!(
            branch(&format!("since={since}&ids=a&from=x")),
            Ok(Branch::Since { ids: Some(_), .. })
        ));
        assert_eq!(
            branch("ids=a&from=garbage"),
            Ok(Branch::Ids(vec!["a".into()]))
        );
        assert!(matches!(
            branch("ids=&from=2019-05-22"),
            Ok(Branch::From(_))
        ));
        assert_eq!(branch(""), Ok(Branch::Full));
        assert_eq!(
            branch("since=nope").unwrap_err().error_type(),
            Some("error-invalid-params")
        );
        assert_eq!(
            branch("from=nope").unwrap_err().error_type(),
            Some("error-invalid-params")
        );
    }

    /// Random query strings built from the characters that matter to the parser
    /// never panic, and every answer is either a branch or a 400 naming a field.
    #[test]
    fn arbitrary_query_strings_never_panic() {
        const PIECES: &[&str] = &[
            "ids",
            "ids[]",
            "ids[0]",
            "ids%5B%5D",
            "since",
            "from",
            "=",
            "&",
            ",",
            "%",
            "%2",
            "%zz",
            "+",
            "a",
            "é",
            "\u{0}",
            "1.2",
            "ffffffffffffffff.1",
            "2019-05-22",
            "T12:11:45",
            ".392",
            "Z",
            "+02:00",
            " ",
            "[",
            "]",
        ];
        let mut state = 0x5eed_u64;
        for _ in 0..20_000 {
            let mut query = String::new();
            for _ in 0..(state % 12) {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                query.push_str(PIECES[(state >> 33) as usize % PIECES.len()]);
            }
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if let Err(e) = PresenceParams::from_query(&query).branch(3) {
                let field = e.message().split(':').next().unwrap_or_default();
                assert!(
                    ["ids", "since", "from"].contains(&field),
                    "{query:?}: {}",
                    e.message()
                );
            }
        }
    }
}

//! The parameters of `users.presence`, from a query string or a JSON body, into
//! one shape; and the branch they select (SPEC §3.1).

use crate::domain::from_date::parse_from_date;
use crate::http::error::excerpt;
use crate::http::ApiError;
use crate::store::Cursor;
use serde::Deserialize;

/// The raw parameters; each is validated only by the branch that uses it, so a
/// parameter the chosen branch ignores cannot fail the request.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct PresenceParams {
    /// Present (possibly empty) if any `ids` form was sent.
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
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

impl PresenceParams {
    /// Parses a raw query string. Keys and values are percent-decoded (so
    /// `ids%5B%5D` is `ids[]`) and `+` reads as a space. Unknown keys are ignored;
    /// for `since` and `from` the first occurrence wins.
    pub fn from_query(query: &str) -> PresenceParams {
        let mut params = PresenceParams::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if is_ids_key(&key) {
                params
                    .ids
                    .get_or_insert_with(Vec::new)
                    .extend(value.split(',').map(str::to_owned));
            } else if key == "since" {
                params.since.get_or_insert_with(|| value.into_owned());
            } else if key == "from" {
                params.from.get_or_insert_with(|| value.into_owned());
            }
        }
        params
    }

    /// The distinct non-empty ids, in first-seen order; `None` if none were sent.
    fn distinct_ids(&self, max_ids: usize) -> Result<Option<Vec<String>>, ApiError> {
        let Some(ids) = &self.ids else {
            return Ok(None);
        };
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        let distinct: Vec<String> = ids
            .iter()
            .map(|id| id.trim())
            .filter(|id| !id.is_empty() && seen.insert(*id))
            .map(str::to_owned)
            .collect();
        if distinct.len() > max_ids {
            return Err(ApiError::invalid_params(format!(
                "ids: {} ids given, at most {max_ids} are allowed per request (presence.max_ids); split the list",
                distinct.len()
            )));
        }
        Ok((!distinct.is_empty()).then_some(distinct))
    }

    /// Chooses the branch of SPEC §3.1 (after "broadcast disabled", which needs no
    /// parameters), validating what that branch uses.
    pub fn branch(&self, max_ids: usize) -> Result<Branch, ApiError> {
        let ids = self.distinct_ids(max_ids)?;
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
pub enum Branch {
    /// Changes after a cursor, optionally only of some users.
    Since {
        cursor: Cursor,
        ids: Option<Vec<String>>,
    },
    /// The listed users that are not offline.
    Ids(Vec<String>),
    /// Changes at or after a time (ms since the epoch), if still provable.
    From(i64),
    /// Everyone not offline.
    Full,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(query: &str) -> Option<Vec<String>> {
        PresenceParams::from_query(query)
            .distinct_ids(1000)
            .unwrap()
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
    fn empty_or_absent_ids_select_no_list() {
        assert_eq!(PresenceParams::from_query("").ids, None);
        assert_eq!(ids("ids="), None);
        assert_eq!(ids("ids=,,"), None);
        assert_eq!(ids("idsx=a&id=b&ids[x]=c&ids[=d"), None);
    }

    #[test]
    fn more_ids_than_allowed_is_an_error_naming_the_limit() {
        let err = PresenceParams::from_query("ids=a,b,c")
            .distinct_ids(2)
            .unwrap_err();
        assert_eq!(err.error_type(), Some("error-invalid-params"));
        assert!(err.message().contains("at most 2"), "{}", err.message());
        // duplicates collapse before counting
        assert!(PresenceParams::from_query("ids=a,a,a")
            .distinct_ids(1)
            .is_ok());
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
        let branch = |q: &str| PresenceParams::from_query(q).branch(10);
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
}

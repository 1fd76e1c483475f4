//! The parameters of `users.presence`, from a query string or a JSON body, into
//! one shape; and the branch they select (docs/api.md §3.1).

use super::id_list::IdList;
use crate::domain::from_date::parse_from_date;
use crate::http::error::excerpt;
use crate::http::ApiError;
use crate::store::{Cursor, IdHash};
use serde::Deserialize;
use std::borrow::Cow;

/// The raw parameters; each is validated only by the branch that uses it, so a
/// parameter the chosen branch ignores cannot fail the request. Values borrow
/// from the query string where they need no decoding, so a poll with a hundred
/// ids does not allocate a hundred strings.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct PresenceParams<'a> {
    /// Present (possibly empty) if any `ids` form was sent: from a JSON body one
    /// id each, from a query string each value as sent, commas and all (see
    /// `ids_joined`), split when the branch is chosen, in the one pass over the
    /// ids that also trims, hashes and drops repeats.
    #[serde(default)]
    pub ids: Option<Vec<Cow<'a, str>>>,
    /// True if each of `ids` is a comma-separated list (a query string's).
    #[serde(skip)]
    ids_joined: bool,
    #[serde(default, borrow)]
    pub since: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub from: Option<Cow<'a, str>>,
}

/// The key-value pairs of a query string, decoded. A query with nothing to
/// decode (no `%`, no `+`), the common case, is split in place without
/// copying; others go through `form_urlencoded`.
enum QueryPairs<'a> {
    Plain(AsciiSplit<'a>),
    Encoded(form_urlencoded::Parse<'a>),
}

impl<'a> QueryPairs<'a> {
    fn new(query: &'a str) -> QueryPairs<'a> {
        if memchr::memchr2(b'%', b'+', query.as_bytes()).is_some() {
            QueryPairs::Encoded(form_urlencoded::parse(query.as_bytes()))
        } else {
            QueryPairs::Plain(AsciiSplit::new(query, b'&'))
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

/// The pieces of a string between occurrences of an ASCII byte, as
/// `str::split` would give them, found by `memchr`: `str::split` with a `char`
/// pattern costs about twice as many instructions per short id (counted with
/// benches/instructions.sh).
struct AsciiSplit<'a> {
    rest: Option<&'a str>,
    separator: u8,
}

impl<'a> AsciiSplit<'a> {
    fn new(text: &'a str, separator: u8) -> AsciiSplit<'a> {
        debug_assert!(separator.is_ascii());
        AsciiSplit {
            rest: Some(text),
            separator,
        }
    }
}

impl<'a> Iterator for AsciiSplit<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        // An ASCII byte is a whole character, so both slices end on boundaries.
        match memchr::memchr(self.separator, rest.as_bytes()) {
            Some(at) => {
                self.rest = rest.get(at + 1..);
                rest.get(..at)
            }
            None => self.rest.take(),
        }
    }
}

/// Returns true if `text` may start or end with white space as `str::trim` sees
/// it: a control character or space, or a non-ASCII character (some are white
/// space). Ids almost never do, and this check is cheaper than trimming.
#[inline]
fn may_need_trim(text: &str) -> bool {
    let maybe_space = |b: &u8| *b <= b' ' || !b.is_ascii();
    let bytes = text.as_bytes();
    bytes.first().is_some_and(maybe_space) || bytes.last().is_some_and(maybe_space)
}

/// Trims an id, still borrowing if it was borrowed.
// The check inlined, the trimming not: called once per id, and outlined whole
// it cost 30 instructions an id (benches/instructions.sh).
#[inline(always)]
fn trimmed(id: Cow<'_, str>) -> Cow<'_, str> {
    if may_need_trim(&id) {
        trim(id)
    } else {
        id
    }
}

#[cold]
fn trim(id: Cow<'_, str>) -> Cow<'_, str> {
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

/// Places of the table on the stack: enough for lists of up to 256 ids (the
/// table is at most half full); longer lists get one on the heap.
const ON_STACK: usize = 512;

/// The distinct ids taken so far, in the order first taken, each with its hash,
/// and a table that tells them apart. Ids are told apart by their hashes, and two
/// are compared only when their hashes are equal, in an open-addressing table of
/// positions in the list, on the stack for a poll's usual hundred ids: a general
/// hash table cost a fifth of a fleet's `ids` poll (counted with
/// benches/instructions.sh).
struct FirstOfEach<'a, 't> {
    distinct: Vec<(Cow<'a, str>, IdHash)>,
    /// Positions in `distinct` plus one; 0 is an empty place. At most half
    /// full, so a probe ends soon at an empty place. Its length is a power of two.
    table: &'t mut [u32],
}

impl<'a> FirstOfEach<'a, '_> {
    /// How many places a table for `most` ids needs.
    fn places(most: usize) -> usize {
        most.saturating_mul(2).next_power_of_two().max(16)
    }

    /// Trims `id` and, unless it is empty or was taken before, takes it.
    // Always inlined: each of its three callers is a loop over ids, and as a
    // call it cost more than it does.
    #[inline(always)]
    fn take(&mut self, id: Cow<'a, str>, hash_id: &impl Fn(&str) -> IdHash) {
        let id = trimmed(id);
        if id.is_empty() {
            return;
        }
        let hash = hash_id(&id);
        let mask = self.table.len() - 1;
        let mut place = hash.get() as usize & mask;
        loop {
            match self.table[place] {
                0 => {
                    self.distinct.push((id, hash));
                    // Fewer ids than places, and places are few: it fits in u32.
                    self.table[place] = u32::try_from(self.distinct.len()).unwrap_or(u32::MAX);
                    return;
                }
                taken => {
                    let (seen, seen_hash) = &self.distinct[taken as usize - 1];
                    if *seen_hash == hash && *seen == id {
                        return;
                    }
                    place = (place + 1) & mask;
                }
            }
        }
    }
}

impl<'a> PresenceParams<'a> {
    /// Parses a raw query string. Keys and values are percent-decoded (so
    /// `ids%5B%5D` is `ids[]`) and `+` reads as a space. Unknown keys are ignored;
    /// for `since` and `from` the first occurrence wins.
    pub fn from_query(query: &'a str) -> PresenceParams<'a> {
        let mut params = PresenceParams::default();
        for (key, value) in QueryPairs::new(query) {
            if is_ids_key(&key) {
                params.ids.get_or_insert_with(Vec::new).push(value);
                params.ids_joined = true;
            } else if key == "since" {
                params.since.get_or_insert(value);
            } else if key == "from" {
                params.from.get_or_insert(value);
            }
        }
        params
    }

    /// The distinct non-empty ids, trimmed, in first-seen order, each with its
    /// hash by `hash_id`; `None` if none were sent. With `joined`, each of
    /// `ids` is split at its commas first.
    fn distinct_ids(
        ids: Option<Vec<Cow<'a, str>>>,
        joined: bool,
        max_ids: usize,
        hash_id: impl Fn(&str) -> IdHash,
    ) -> Result<Option<IdList<'a>>, ApiError> {
        let Some(values) = ids else {
            return Ok(None);
        };
        let most = if joined {
            let commas = |v: &Cow<'_, str>| memchr::memchr_iter(b',', v.as_bytes()).count();
            values.iter().map(commas).sum::<usize>() + values.len()
        } else {
            values.len()
        };
        let places = FirstOfEach::places(most);
        let mut on_stack = [0u32; ON_STACK];
        let mut on_heap = Vec::new();
        let mut distinct = FirstOfEach {
            distinct: Vec::with_capacity(most),
            table: if places <= ON_STACK {
                &mut on_stack[..places]
            } else {
                on_heap.resize(places, 0);
                &mut on_heap
            },
        };
        for value in values {
            match value {
                Cow::Borrowed(v) if joined => {
                    for id in AsciiSplit::new(v, b',') {
                        distinct.take(Cow::Borrowed(id), &hash_id);
                    }
                }
                Cow::Owned(v) if joined => {
                    for id in AsciiSplit::new(&v, b',') {
                        distinct.take(Cow::Owned(id.to_owned()), &hash_id);
                    }
                }
                value => distinct.take(value, &hash_id),
            }
        }
        let distinct = distinct.distinct;
        if distinct.len() > max_ids {
            return Err(ApiError::invalid_params(format!(
                "ids: {} ids given, at most {max_ids} are allowed per request (presence.max_ids); split the list",
                distinct.len()
            )));
        }
        Ok((!distinct.is_empty()).then_some(IdList::Parsed(distinct)))
    }

    /// Chooses the branch of docs/api.md §3.1 (after "broadcast disabled", which needs no
    /// parameters), validating what that branch uses.
    /// `hash_id` is the store's ([`crate::store::Store::hash_id`]).
    pub fn branch(
        self,
        max_ids: usize,
        hash_id: impl Fn(&str) -> IdHash,
    ) -> Result<Branch<'a>, ApiError> {
        let ids = PresenceParams::distinct_ids(self.ids, self.ids_joined, max_ids, hash_id)?;
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
        ids: Option<IdList<'a>>,
    },
    /// The listed users that are not offline.
    Ids(IdList<'a>),
    /// Changes at or after a time (ms since the epoch), if still provable.
    From(i64),
    /// Everyone not offline.
    Full,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreOptions};

    /// A store's id hash, as the route passes it.
    fn hash_id() -> impl Fn(&str) -> IdHash {
        let store = Store::new(&StoreOptions::default());
        move |id| store.hash_id(id)
    }

    fn distinct(query: &str, max_ids: usize) -> Result<Option<Vec<String>>, ApiError> {
        let query = PresenceParams::from_query(query);
        let ids = PresenceParams::distinct_ids(query.ids, query.ids_joined, max_ids, hash_id())?;
        Ok(ids.map(|ids| ids.iter().map(str::to_owned).collect()))
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
        let branch = PresenceParams::from_query("ids=a,b&ids%5B%5D=c%2Cd").branch(9, hash_id());
        let Ok(Branch::Ids(IdList::Parsed(ids))) = branch else {
            panic!("{branch:?}");
        };
        let ids: Vec<_> = ids.into_iter().map(|(id, _)| id).collect();
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
    fn ascii_split_gives_the_pieces_str_split_gives() {
        for text in ["", ",", "a", "a,b", ",a,,b,", "é,ü,", "a,,", "ids=a,b&x"] {
            for separator in [b',', b'&'] {
                let ours: Vec<&str> = AsciiSplit::new(text, separator).collect();
                let std: Vec<&str> = text.split(char::from(separator)).collect();
                assert_eq!(ours, std, "{text:?} on {separator}");
            }
        }
    }

    #[test]
    fn ids_are_trimmed_as_str_trim_trims_them() {
        // The shortcut must never skip a trim that str::trim would make.
        for id in [
            "a",
            " a",
            "a ",
            "\ta\n",
            "\u{b}a",
            "a\u{c}",
            "\u{a0}a",
            "a\u{3000}",
            "é",
            "aé",
            "",
            " ",
        ] {
            assert_eq!(trimmed(Cow::Borrowed(id)), id.trim(), "{id:?}");
            assert_eq!(trimmed(Cow::Owned(id.to_owned())), id.trim(), "{id:?}");
        }
    }

    #[test]
    fn distinct_ids_keep_the_first_of_each_in_order() {
        // Against the plain way: trim, drop empties, keep what was not seen before.
        const IDS: &[&str] = &[
            "a", "b", " a", "a ", "", " ", "c", "é", "\u{a0}b", "bb", "A",
        ];
        let mut rng = fastrand::Rng::with_seed(0x1d5);
        for _ in 0..2_000 {
            let raw: Vec<&str> = (0..rng.usize(..9))
                .map(|_| IDS[rng.usize(..IDS.len())])
                .collect();
            let mut seen = std::collections::HashSet::new();
            let want: Vec<&str> = raw
                .iter()
                .map(|id| id.trim())
                .filter(|id| !id.is_empty() && seen.insert(*id))
                .collect();
            let got = ids(&format!("ids={}", raw.join(",")));
            let want = (!want.is_empty()).then(|| want.iter().map(|s| s.to_string()).collect());
            assert_eq!(got, want, "{raw:?}");
        }
    }

    #[test]
    fn ids_with_equal_hashes_are_told_apart_by_their_text() {
        // Every id on one hash, or on a few, and lists past the table on the
        // stack: the first of each still stays, in order.
        for (count, buckets) in [(9, 1), (40, 3), (600, 7), (3000, 1 << 20)] {
            let raw: Vec<String> = (0..count)
                .map(|i| format!("u{}", i % (count / 3 + 1)))
                .collect();
            let hashed = raw.iter().map(|id| {
                let bits = id.bytes().map(u64::from).sum::<u64>() % buckets;
                (Cow::Borrowed(id.as_str()), IdHash::forged(bits))
            });
            let mut table = vec![0; FirstOfEach::places(raw.len())];
            let mut distinct = FirstOfEach {
                distinct: Vec::new(),
                table: &mut table,
            };
            for (id, hash) in hashed {
                distinct.take(id, &|_: &str| hash);
            }
            let got: Vec<&str> = distinct
                .distinct
                .into_iter()
                .map(|(id, _)| match id {
                    Cow::Borrowed(id) => id,
                    Cow::Owned(_) => unreachable!("borrowed in, borrowed out"),
                })
                .collect();
            let mut seen = std::collections::HashSet::new();
            let want: Vec<&str> = raw
                .iter()
                .map(String::as_str)
                .filter(|id| seen.insert(*id))
                .collect();
            assert_eq!(got, want, "{count} ids on {buckets} hashes");
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
        assert!(matches!(p.branch(10, hash_id()), Ok(Branch::From(_))));
    }

    #[test]
    fn branches_are_chosen_in_spec_order() {
        let since = "1.0";
        fn branch(q: &str) -> Result<Branch<'_>, ApiError> {
            PresenceParams::from_query(q).branch(10, hash_id())
        }
        assert!(matches!(
            branch(&format!("since={since}&ids=a&from=x")),
            Ok(Branch::Since { ids: Some(_), .. })
        ));
        assert!(matches!(
            branch("ids=a&from=garbage"),
            Ok(Branch::Ids(ids)) if ids.iter().eq(["a"])
        ));
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
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        for _ in 0..20_000 {
            let query: String = (0..rng.usize(..12))
                .map(|_| PIECES[rng.usize(..PIECES.len())])
                .collect();
            if let Err(e) = PresenceParams::from_query(&query).branch(3, hash_id()) {
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

//! The ids a `users.presence` question names: borrowed from the request while it
//! is answered, packed into one string when kept beyond it (by a change stream
//! filtered by `ids`, for as long as it is open).
//!
//! A hundred ids kept as a hundred `String`s would cost a hundred allocations
//! to keep and a hundred frees to drop. Both forms hash and compare as the same
//! sequence of ids.

use crate::store::IdHash;
use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};

/// A list of ids, distinct and in the order asked, each with its
/// [`IdHash`]: worked out once when the request is parsed, then used to drop
/// repeats, to key the answer (a list hashes as its ids' hashes) and to find
/// the users.
#[derive(Clone)]
pub enum IdList<'a> {
    /// As parsed: each id borrowed from the request where it needed no decoding.
    Parsed(Vec<(Cow<'a, str>, IdHash)>),
    /// Kept: the ids end to end in one string, and where each one ends.
    Packed {
        text: Box<str>,
        ends: Box<[(usize, IdHash)]>,
    },
}

impl<'a> IdList<'a> {
    /// Returns how many ids there are.
    pub fn len(&self) -> usize {
        match self {
            IdList::Parsed(ids) => ids.len(),
            IdList::Packed { ends, .. } => ends.len(),
        }
    }

    /// Returns true if and only if there are no ids.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the ids in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.hashed().map(|(id, _)| id)
    }

    /// Returns the ids in order, each with its hash.
    pub fn hashed(&self) -> Ids<'_> {
        match self {
            IdList::Parsed(ids) => Ids::Parsed(ids.iter()),
            IdList::Packed { text, ends } => Ids::Packed {
                text,
                ends: ends.iter(),
                start: 0,
            },
        }
    }

    /// The same ids in two allocations, owning them.
    pub fn packed(&self) -> IdList<'static> {
        let mut text = String::with_capacity(self.iter().map(str::len).sum());
        let ends = self
            .hashed()
            .map(|(id, hash)| {
                text.push_str(id);
                (text.len(), hash)
            })
            .collect();
        IdList::Packed {
            text: text.into_boxed_str(),
            ends,
        }
    }
}

/// The ids of an [`IdList`], in order, each with its hash.
pub enum Ids<'l> {
    Parsed(std::slice::Iter<'l, (Cow<'l, str>, IdHash)>),
    Packed {
        text: &'l str,
        ends: std::slice::Iter<'l, (usize, IdHash)>,
        start: usize,
    },
}

impl<'l> Iterator for Ids<'l> {
    type Item = (&'l str, IdHash);

    #[inline]
    fn next(&mut self) -> Option<(&'l str, IdHash)> {
        match self {
            Ids::Parsed(ids) => ids.next().map(|(id, hash)| (&**id, *hash)),
            Ids::Packed { text, ends, start } => {
                let &(end, hash) = ends.next()?;
                // The ends were taken after whole ids were pushed: always boundaries.
                let id = text.get(*start..end).unwrap_or_default();
                *start = end;
                Some((id, hash))
            }
        }
    }
}

impl Hash for IdList<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The ids' hashes stand for the ids, folded here in order into one
        // word (a rotation keeps the order, a multiplication spreads it), which
        // is then hashed: a hundred words fed to `state` one by one cost twice
        // as much. Both forms hash alike.
        let folded = self.hashed().fold(self.len() as u64, |folded, (_, hash)| {
            (folded.rotate_left(23) ^ hash.get()).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        });
        state.write_u64(folded);
    }
}

impl PartialEq for IdList<'_> {
    fn eq(&self, other: &Self) -> bool {
        // Hashes first: lists that differ almost always differ there, and a
        // word compares faster than an id.
        self.len() == other.len()
            && self
                .hashed()
                .zip(other.hashed())
                .all(|((one, one_hash), (other, other_hash))| {
                    one_hash == other_hash && one == other
                })
    }
}

impl Eq for IdList<'_> {}

impl fmt::Debug for IdList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreOptions};
    use std::hash::BuildHasher;

    fn store() -> Store {
        Store::new(&StoreOptions::default())
    }

    fn parsed<'a>(store: &Store, ids: &[&'a str]) -> IdList<'a> {
        IdList::Parsed(
            ids.iter()
                .map(|id| (Cow::Borrowed(*id), store.hash_id(id)))
                .collect(),
        )
    }

    #[test]
    fn packed_ids_are_the_same_list_and_hash_the_same() {
        let hasher = foldhash::fast::FixedState::with_seed(7);
        let store = store();
        for ids in [
            &[][..],
            &["a"],
            &["a", "bc", "é日本", "d"],
            &["ab", "c"],
            &["a", "bc"],
        ] {
            let list = parsed(&store, ids);
            let packed = list.packed();
            assert!(matches!(packed, IdList::Packed { .. }));
            assert_eq!(packed.iter().collect::<Vec<_>>(), ids);
            assert_eq!(packed, list);
            assert_eq!(packed.len(), ids.len());
            assert_eq!(hasher.hash_one(&packed), hasher.hash_one(&list), "{ids:?}");
        }
    }

    #[test]
    fn lists_with_the_same_letters_split_differently_differ() {
        let store = store();
        let (one, other) = (parsed(&store, &["ab", "c"]), parsed(&store, &["a", "bc"]));
        assert_ne!(one.packed(), other.packed());
        assert_ne!(one.packed(), other);
        let hasher = foldhash::fast::FixedState::with_seed(7);
        assert_ne!(
            hasher.hash_one(one.packed()),
            hasher.hash_one(other.packed())
        );
    }
}

//! The ids a `users.presence` question names: borrowed from the request while it
//! is answered, packed into one string when kept beside a cached answer.
//!
//! A hundred ids kept as a hundred `String`s cost a hundred allocations to keep
//! and a hundred frees when the answer is evicted, for every question not seen
//! before: most of what filing an `ids` answer cost (counted with
//! benches/instructions.sh). Both forms hash and compare as the same sequence of
//! ids, so a kept question matches the request that asks it again.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};

/// A list of ids, distinct and in the order asked.
#[derive(Clone)]
pub enum IdList<'a> {
    /// As parsed: each id borrowed from the request where it needed no decoding.
    Parsed(Vec<Cow<'a, str>>),
    /// Kept: the ids end to end in one string, and where each one ends.
    Packed { text: Box<str>, ends: Box<[usize]> },
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
    pub fn iter(&self) -> Ids<'_> {
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
            .iter()
            .map(|id| {
                text.push_str(id);
                text.len()
            })
            .collect();
        IdList::Packed {
            text: text.into_boxed_str(),
            ends,
        }
    }
}

impl<'a> From<Vec<Cow<'a, str>>> for IdList<'a> {
    fn from(ids: Vec<Cow<'a, str>>) -> IdList<'a> {
        IdList::Parsed(ids)
    }
}

/// The ids of an [`IdList`], in order.
pub enum Ids<'l> {
    Parsed(std::slice::Iter<'l, Cow<'l, str>>),
    Packed {
        text: &'l str,
        ends: std::slice::Iter<'l, usize>,
        start: usize,
    },
}

impl<'l> Iterator for Ids<'l> {
    type Item = &'l str;

    fn next(&mut self) -> Option<&'l str> {
        match self {
            Ids::Parsed(ids) => ids.next().map(AsRef::as_ref),
            Ids::Packed { text, ends, start } => {
                let end = *ends.next()?;
                // The ends were taken after whole ids were pushed: always boundaries.
                let id = text.get(*start..end).unwrap_or_default();
                *start = end;
                Some(id)
            }
        }
    }
}

impl Hash for IdList<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Each id hashed as a `str` either way, so both forms hash alike.
        state.write_usize(self.len());
        match self {
            IdList::Parsed(ids) => ids.iter().for_each(|id| str::hash(id, state)),
            IdList::Packed { .. } => self.iter().for_each(|id| id.hash(state)),
        }
    }
}

impl PartialEq for IdList<'_> {
    fn eq(&self, other: &Self) -> bool {
        // A cache lookup compares a kept list with a request's: that case without
        // the general iterator, whose every step matches on the form.
        match (self, other) {
            (IdList::Parsed(one), IdList::Parsed(other)) => one == other,
            (IdList::Packed { text, ends }, IdList::Parsed(ids))
            | (IdList::Parsed(ids), IdList::Packed { text, ends }) => {
                let mut start = 0;
                ends.len() == ids.len()
                    && ends.iter().zip(ids).all(|(&end, id)| {
                        let same = text.as_bytes().get(start..end) == Some(id.as_bytes());
                        start = end;
                        same
                    })
            }
            (one, other) => one.len() == other.len() && one.iter().eq(other.iter()),
        }
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
    use std::hash::BuildHasher;

    fn parsed<'a>(ids: &[&'a str]) -> IdList<'a> {
        IdList::from(ids.iter().map(|id| Cow::Borrowed(*id)).collect::<Vec<_>>())
    }

    #[test]
    fn packed_ids_are_the_same_list_and_hash_the_same() {
        let hasher = foldhash::fast::FixedState::with_seed(7);
        for ids in [
            &[][..],
            &["a"],
            &["a", "bc", "é日本", "d"],
            &["ab", "c"],
            &["a", "bc"],
        ] {
            let list = parsed(ids);
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
        let (one, other) = (parsed(&["ab", "c"]), parsed(&["a", "bc"]));
        assert_ne!(one.packed(), other.packed());
        assert_ne!(one.packed(), other);
        let hasher = foldhash::fast::FixedState::with_seed(7);
        assert_ne!(
            hasher.hash_one(one.packed()),
            hasher.hash_one(other.packed())
        );
    }
}

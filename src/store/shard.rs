//! Where users live: shards of slots, found by id, and the indexes that find
//! them by username and by connection id.
//!
//! A user sits in a slot of one shard, chosen by the hash of its id, and is
//! named everywhere else by that slot's 32-bit address ([`Slot`]); the change
//! log adds the slot's generation ([`UserKey`]), so a user who left a slot is
//! never mistaken for the next one in it. The id table of a shard holds slot
//! numbers, not keys: each id is stored once, in its record. The username and
//! connection indexes hold `(32 bits of the key's hash, slot)` pairs: a match is
//! a candidate the caller confirms by reading the record, so they hold no keys
//! either. DashMap cannot do this (its tables own their keys), which is what
//! cost most of the memory per user before.

use super::user::UserRecord;
use hashbrown::HashTable;
use std::sync::OnceLock;

/// Shards of each kind; a power of two. Many more than cores, so writers to
/// different users rarely meet.
pub(crate) const SHARDS: usize = 64;
const SHARD_BITS: u32 = SHARDS.trailing_zeros();

/// Picks a shard from a key's hash. Bits 32.. are used by neither hashbrown's
/// bucket index (low bits) nor its control byte (top 7 bits) for tables of
/// fewer than 2^32 slots, so users within a shard still spread evenly.
pub(crate) fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize & (SHARDS - 1)
}

/// A user's address: shard and index in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Slot(u32);

impl Slot {
    fn new(shard: usize, index: u32) -> Slot {
        Slot(index << SHARD_BITS | shard as u32)
    }

    pub fn shard(self) -> usize {
        (self.0 as usize) & (SHARDS - 1)
    }

    fn index(self) -> usize {
        (self.0 >> SHARD_BITS) as usize
    }
}

/// One user for as long as it exists: its slot and the slot's generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct UserKey {
    pub slot: Slot,
    pub generation: u32,
}

impl UserKey {
    /// A key no record ever has, for the log entry of a deletion whose user a
    /// replica never held; `n` keeps two such entries apart.
    pub fn ghost(shard: usize, n: u32) -> UserKey {
        UserKey {
            slot: Slot::new(shard, u32::MAX >> SHARD_BITS),
            generation: n,
        }
    }
}

/// The users of one shard.
#[derive(Debug, Default)]
pub(crate) struct UserShard {
    records: Vec<Option<UserRecord>>,
    /// Empty slots, with the generation the next user in each gets.
    free: Vec<(u32, u32)>,
    /// Slot indexes, found by id.
    by_id: HashTable<u32>,
    number: usize,
    /// Bumped by every mutable access to a record: if it has not moved, no
    /// user of the shard changed (snapshots skip a write on this).
    version: u64,
    /// By slot, beside `records`: the user's JSON object as last rendered for
    /// an `ids` answer (`None` if the user was offline then, so in no such
    /// answer), until the record is next changed: every mutable access empties
    /// it. An `ids` answer names users no other client asks for the same way,
    /// so it copies these rather than rendering each user. Kept beside the
    /// records, not in them: finding a kept rendering then reads the id table,
    /// this dense vector and the rendering, not the record and its strings,
    /// two cache misses fewer a user at 100 000 users (BENCHMARKS.md). A
    /// `OnceLock` because readers fill it under the shard's read lock.
    kept: Vec<OnceLock<Option<Box<str>>>>,
}

impl UserShard {
    pub fn new(number: usize) -> UserShard {
        UserShard {
            number,
            ..UserShard::default()
        }
    }

    /// The slot of the user `id`, whose hash is `hash`.
    pub fn find(&self, hash: u64, id: &str) -> Option<Slot> {
        let records = &self.records;
        self.by_id
            .find(hash, |&i| {
                records
                    .get(i as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|r| same_key(r.id().as_bytes(), id.as_bytes()))
            })
            .map(|&i| Slot::new(self.number, i))
    }

    /// The JSON object of the user `id` (whose hash is `hash`) as kept for
    /// `ids` answers, rendered by `render` (`None` for a user in no such
    /// answer) and kept if not kept since the record last changed; `None` if
    /// there is no such user or `render` gave none.
    pub fn kept_json(
        &self,
        hash: u64,
        id: &str,
        render: impl FnOnce(&UserRecord) -> Option<Box<str>>,
    ) -> Option<&str> {
        let (records, kept) = (&self.records, &self.kept);
        let found = self.by_id.find(hash, |&i| {
            let i = i as usize;
            match kept.get(i).and_then(OnceLock::get) {
                Some(Some(json)) => renders_id(json, id),
                _ => records
                    .get(i)
                    .and_then(Option::as_ref)
                    .is_some_and(|r| same_key(r.id().as_bytes(), id.as_bytes())),
            }
        })?;
        let index = *found as usize;
        let kept = self.kept.get(index)?;
        if let Some(json) = kept.get() {
            return json.as_deref();
        }
        let record = self.records.get(index)?.as_ref()?;
        kept.get_or_init(|| render(record)).as_deref()
    }

    pub fn get(&self, slot: Slot) -> Option<&UserRecord> {
        debug_assert_eq!(slot.shard(), self.number);
        self.records.get(slot.index())?.as_ref()
    }

    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut UserRecord> {
        self.version += 1;
        let record = self.records.get_mut(slot.index())?.as_mut()?;
        if let Some(kept) = self.kept.get_mut(slot.index()) {
            kept.take();
        }
        Some(record)
    }

    /// The user `key` names, unless it has left its slot.
    pub fn get_key(&self, key: UserKey) -> Option<&UserRecord> {
        self.get(key.slot)
            .filter(|r| r.generation == key.generation)
    }

    /// Puts the record `make` builds (given its generation) in a free slot.
    /// `rehash` gives an id's hash, for when the table grows.
    pub fn insert(
        &mut self,
        hash: u64,
        make: impl FnOnce(u32) -> UserRecord,
        rehash: impl Fn(&str) -> u64,
    ) -> (Slot, &mut UserRecord) {
        let (index, generation) = self.free.pop().unwrap_or_else(|| {
            self.records.push(None);
            self.kept.push(OnceLock::new());
            (u32::try_from(self.records.len() - 1).unwrap_or(u32::MAX), 0)
        });
        let records = &self.records;
        self.by_id.insert_unique(hash, index, |&i| {
            records
                .get(i as usize)
                .and_then(Option::as_ref)
                .map_or(0, |r| rehash(r.id()))
        });
        self.version += 1;
        if let Some(kept) = self.kept.get_mut(index as usize) {
            kept.take();
        }
        let record = self.records[index as usize].insert(make(generation));
        (Slot::new(self.number, index), record)
    }

    /// Empties the slot of the user `id` (whose hash is `hash`).
    pub fn remove(&mut self, hash: u64, slot: Slot) -> Option<UserRecord> {
        let index = slot.index();
        let record = self.records.get_mut(index)?.take()?;
        if let Some(kept) = self.kept.get_mut(index) {
            kept.take();
        }
        self.version += 1;
        if let Ok(entry) = self.by_id.find_entry(hash, |&i| i as usize == index) {
            entry.remove();
        }
        self.free
            .push((index as u32, record.generation.wrapping_add(1)));
        Some(record)
    }

    /// Every user of the shard.
    pub fn iter(&self) -> impl Iterator<Item = &UserRecord> {
        self.records.iter().filter_map(Option::as_ref)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut UserRecord> {
        self.version += 1;
        self.kept.iter_mut().for_each(|kept| {
            kept.take();
        });
        self.records.iter_mut().filter_map(Option::as_mut)
    }

    /// How many times a record of the shard was (possibly) changed: it only
    /// grows, and a change of any record grows it.
    pub fn version(&self) -> u64 {
        self.version
    }
}

/// Returns true if and only if `json`, a user's JSON object, is user `id`'s:
/// it begins `{"_id":"<id>"` (an id needs no escaping: validated as
/// `[A-Za-z0-9._-]`).
#[inline]
fn renders_id(json: &str, id: &str) -> bool {
    const OPEN: usize = r#"{"_id":""#.len();
    let json = json.as_bytes();
    json.get(OPEN..OPEN + id.len())
        .is_some_and(|rendered| same_key(rendered, id.as_bytes()))
        && json.get(OPEN + id.len()) == Some(&b'"')
}

/// Returns true if and only if `a` and `b` are the same bytes. Keys are short
/// (an id is at most 64 bytes, a Meteor id 17), and for them `==` costs a call
/// to `memcmp` and its set-up, a sixth of what finding a user cost in an `ids`
/// poll (counted with benches/instructions.sh); here they are compared a word
/// at a time, the last word overlapping the one before when the length is not
/// a multiple of eight.
#[inline]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() < 8 {
        // At most 56 bits, so equal lengths and equal words mean equal bytes.
        let small = |s: &[u8]| s.iter().fold(0u64, |w, &x| w << 8 | u64::from(x));
        return small(a) == small(b);
    }
    let word = |s: &[u8], at: usize| {
        s.get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map(u64::from_ne_bytes)
    };
    let last = a.len() - 8;
    (0..last).step_by(8).all(|at| word(a, at) == word(b, at)) && word(a, last) == word(b, last)
}

/// Low 32 bits of a key's hash, and the table hash derived from them (the
/// table must rehash from what it holds).
fn short(hash: u64) -> u32 {
    hash as u32
}

fn table_hash(short: u32) -> u64 {
    // Spreads 32 bits over 64 so that both hashbrown's bucket bits and its
    // control byte vary.
    u64::from(short).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    hash: u32,
    owner: Slot,
}

/// Key -> owner, holding only hashes: see the module comment. The caller
/// confirms a candidate by reading its record, and keeps the index exact by
/// adding and removing entries while it holds the index's lock.
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    table: HashTable<Entry>,
}

impl KeyIndex {
    /// The owners of keys whose hash matches `hash`: every owner of the key
    /// itself is among them, with, rarely, others.
    pub fn candidates(&self, hash: u64) -> impl Iterator<Item = Slot> + '_ {
        let short = short(hash);
        self.table
            .iter_hash(table_hash(short))
            .filter(move |e| e.hash == short)
            .map(|e| e.owner)
    }

    pub fn insert(&mut self, hash: u64, owner: Slot) {
        let short = short(hash);
        self.table
            .insert_unique(table_hash(short), Entry { hash: short, owner }, |e| {
                table_hash(e.hash)
            });
    }

    /// Removes one entry of `owner` under `hash`.
    pub fn remove(&mut self, hash: u64, owner: Slot) {
        let short = short(hash);
        if let Ok(entry) = self
            .table
            .find_entry(table_hash(short), |e| e.hash == short && e.owner == owner)
        {
            entry.remove();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_key_is_byte_equality() {
        let keys = [
            "",
            "a",
            "ab",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "AbcdefghijklmnoPq",
            "abcdefghijklmnopq",
            "abcdefghijklmnopr",
            "bbcdefghijklmnopq",
            "é日本語",
            "é日本誤",
        ];
        for a in keys {
            for b in keys {
                assert_eq!(
                    super::same_key(a.as_bytes(), b.as_bytes()),
                    a == b,
                    "{a:?} {b:?}"
                );
            }
        }
        let long: String = "x".repeat(64);
        for at in 0..64 {
            let mut other = long.clone().into_bytes();
            other[at] = b'y';
            let other = String::from_utf8(other).unwrap_or_default();
            assert!(
                !super::same_key(long.as_bytes(), other.as_bytes()),
                "differs at {at}"
            );
        }
    }

    use super::*;

    #[test]
    fn slots_round_trip_and_shards_use_all_their_bits() {
        let slot = Slot::new(SHARDS - 1, 123_456);
        assert_eq!((slot.shard(), slot.index()), (SHARDS - 1, 123_456));
        assert_eq!(shard_of(u64::MAX), SHARDS - 1);
        assert_eq!(shard_of(u64::from(u32::MAX)), 0);
    }

    #[test]
    fn an_index_finds_every_owner_of_a_hash_and_forgets_one_at_a_time() {
        let mut index = KeyIndex::default();
        let (a, b) = (Slot::new(1, 1), Slot::new(2, 2));
        index.insert(42, a);
        index.insert(42, b);
        index.insert(42 | 1 << 40, a); // same short hash, other high bits
        let mut found: Vec<Slot> = index.candidates(42).collect();
        found.sort();
        assert_eq!(found, [a, a, b]);
        index.remove(42, a);
        index.remove(42, a);
        assert_eq!(index.candidates(42).collect::<Vec<_>>(), [b]);
        assert_eq!(index.candidates(43).count(), 0);
        assert_eq!(index.len(), 1);
    }
}

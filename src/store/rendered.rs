//! Users' JSON objects as last rendered, kept for a bounded number of users
//! per shard, so that an `ids` answer, which no other client asks the same
//! way, copies its users' bytes rather than rendering each of them anew.
//!
//! Not per user: a million users rendered would cost their JSON again (~110
//! bytes each, a third of what a user costs), so each shard keeps at most
//! [`KEPT`] renderings, the slot of a user chosen by its slot number (the
//! last render of a slot wins). A kept rendering is its user's only while the
//! record's generation and version are the ones it was rendered at; the
//! version moves with every mutable access to the record.

use super::user::UserRecord;

/// Renderings kept per shard: 64 × 256 = 16 384 users, ~2.5 MiB at most.
const KEPT: usize = 256;

#[derive(Debug)]
struct Kept {
    index: usize,
    generation: u32,
    version: u32,
    json: Box<str>,
}

/// The renderings kept for one shard.
#[derive(Debug, Default)]
pub(crate) struct Rendered {
    kept: Vec<Option<Kept>>,
}

impl Rendered {
    /// The JSON of the record in slot `index` of the shard, if kept and still its own.
    pub fn get(&self, index: usize, record: &UserRecord) -> Option<&str> {
        self.kept
            .get(index % KEPT)?
            .as_ref()
            .filter(|k| {
                k.index == index && k.generation == record.generation && k.version == record.version
            })
            .map(|k| &*k.json)
    }

    /// Keeps `json` as the rendering of the record in slot `index`.
    pub fn put(&mut self, index: usize, record: &UserRecord, json: &str) {
        if self.kept.is_empty() {
            self.kept.resize_with(KEPT, || None);
        }
        self.kept[index % KEPT] = Some(Kept {
            index,
            generation: record.generation,
            version: record.version,
            json: json.into(),
        });
    }
}

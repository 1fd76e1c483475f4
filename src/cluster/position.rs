//! Stream entry ids (`<ms>-<seq>`) as the `u64` positions a replica's log and
//! cursors carry: the milliseconds in the high bits, the sequence in the low 20,
//! so the order is the stream's order.

/// Bits of an entry id's sequence part kept in a position: Redis numbers the
/// entries of one millisecond from 0, and a million in one millisecond is far
/// beyond what one Redis writes.
const SEQ_BITS: u32 = 20;

/// An entry id, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntryId {
    pub ms: u64,
    pub seq: u64,
}

impl EntryId {
    pub const ZERO: EntryId = EntryId { ms: 0, seq: 0 };

    /// Parses `<ms>-<seq>`; `None` for anything else, or a sequence too large to keep.
    pub fn parse(s: &str) -> Option<EntryId> {
        let (ms, seq) = s.split_once('-')?;
        let id = EntryId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        };
        (id.seq < 1 << SEQ_BITS && id.ms < 1 << (63 - SEQ_BITS)).then_some(id)
    }

    /// The log position of this entry.
    pub fn position(self) -> u64 {
        self.ms << SEQ_BITS | self.seq
    }

    /// The milliseconds part, as the change's timestamp.
    pub fn ts(self) -> i64 {
        i64::try_from(self.ms).unwrap_or(i64::MAX)
    }

    /// The entry id at `position`.
    pub fn at(position: u64) -> EntryId {
        EntryId {
            ms: position >> SEQ_BITS,
            seq: position & ((1 << SEQ_BITS) - 1),
        }
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_keep_the_streams_order_and_round_trip() {
        let a = EntryId::parse("1700000000000-0").unwrap();
        let b = EntryId::parse("1700000000000-7").unwrap();
        let c = EntryId::parse("1700000000001-0").unwrap();
        assert!(a.position() < b.position() && b.position() < c.position());
        assert_eq!(EntryId::at(b.position()), b);
        assert_eq!(b.to_string(), "1700000000000-7");
        for bad in ["", "1", "1-", "-1", "a-1", "1-1048576"] {
            assert_eq!(EntryId::parse(bad), None, "{bad}");
        }
    }
}

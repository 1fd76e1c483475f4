//! The change log: a time-ordered ring of recent changes (docs/api.md §2).
//!
//! Each entry is `(timestamp ms, user)`, and a deletion carries the tombstone
//! the user leaves; other states are read from the store when a delta is
//! answered, so the log costs three words per change, not a rendered user.
//! Sequences are contiguous, so an entry's is implied by its place and a cursor
//! finds its place by subtraction; timestamps are non-decreasing, so `from` finds
//! its place by binary search. A reader asking for more history than the ring
//! still holds gets [`Lagged`], never a partial answer (like tokio's broadcast
//! channel's `RecvError::Lagged`).
//!
//! The log is generic over how a user is named: the store names users by slot
//! and generation (8 bytes), its tests by strings.
//!
//! A replica of a cluster (see `crate::cluster`) numbers changes differently:
//! not by a local counter but by the position of their entry in the shared
//! Redis stream, so a cursor means the same on every replica. Those positions
//! are increasing but not contiguous, so such a log keeps them beside the
//! entries and finds a cursor's place by binary search; its epoch is the
//! stream's generation, and its floor (what it cannot reach back before) is
//! where the replica started following. A single process never pays for this:
//! its position list stays empty.

use super::view::UserView;
use parking_lot::RwLock;
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// A position in the log of one epoch (docs/api.md §3.3). Printed as `<epoch>.<seq>` in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    epoch: u64,
    seq: u64,
}

impl Cursor {
    /// The cursor at position `seq` of epoch `epoch`.
    pub fn new(epoch: u64, seq: u64) -> Cursor {
        Cursor { epoch, seq }
    }

    /// Returns the sequence number of the last change this cursor covers (0 = none).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Returns the epoch this cursor belongs to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Cursor {
    /// Appends the cursor as [`fmt::Display`] prints it: every answer's body
    /// ends with one, and `write!`'s hex formatting cost more instructions than
    /// the rest of an `ids` answer's tail (benches/instructions.sh).
    pub fn push_to(&self, out: &mut String) {
        let mut buf = [0u8; 16];
        out.push_str(lower_hex(self.epoch, &mut buf));
        out.push('.');
        out.push_str(lower_hex(self.seq, &mut buf));
    }
}

/// `value` in lower-case hex without leading zeros (`{:x}`), written into the
/// end of `buf`.
fn lower_hex(mut value: u64, buf: &mut [u8; 16]) -> &str {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b"0123456789abcdef"[(value & 0xf) as usize];
        value >>= 4;
        if value == 0 {
            break;
        }
    }
    // Hex digits are ASCII.
    std::str::from_utf8(&buf[start..]).unwrap_or_default()
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 16];
        f.write_str(lower_hex(self.epoch, &mut buf))?;
        f.write_str(".")?;
        f.write_str(lower_hex(self.seq, &mut buf))
    }
}

/// Why a cursor string did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorError;

impl fmt::Display for CursorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "not a cursor: pass back the `cursor` string of an earlier users.presence answer",
        )
    }
}

impl std::error::Error for CursorError {}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Cursor, CursorError> {
        let (epoch, seq) = s.split_once('.').ok_or(CursorError)?;
        let hex = |part: &str| {
            // from_str_radix accepts a leading '+', which no cursor of ours carries.
            if part.is_empty() || part.len() > 16 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(CursorError);
            }
            u64::from_str_radix(part, 16).map_err(|_| CursorError)
        };
        Ok(Cursor {
            epoch: hex(epoch)?,
            seq: hex(seq)?,
        })
    }
}

/// One change: when, whose, and for a deletion the tombstone it leaves.
#[derive(Debug, Clone)]
struct Change<K> {
    ts: i64,
    user: K,
    tombstone: Option<Arc<UserView>>,
}

/// The users changed in a range of the log, each once, ordered by their last
/// change in the range (with its tombstone if that was a deletion); `cursor`
/// is where the range ends.
#[derive(Debug, Clone)]
pub struct Changed<K> {
    pub cursor: Cursor,
    pub users: Vec<(K, Option<Arc<UserView>>)>,
}

/// The log cannot prove a delta from the requested point complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged;

/// The users changed in a range of the log, each once with its latest state in
/// that range, ordered by that change; `cursor` is where the range ends.
#[derive(Debug, Clone)]
pub struct Delta {
    pub cursor: Cursor,
    pub users: Vec<Arc<UserView>>,
}

/// The latest change of each of the users changed most recently: every change
/// after `floor` is one of theirs, so any range of the log starting at or after
/// `floor` is answered by the users in it (see [`ChangeLog::latest`]).
#[derive(Debug, Clone)]
pub struct Latest<K> {
    /// Where the range ends: the log's head when it was read.
    pub head: Cursor,
    /// The newest position not covered; every change after it is.
    pub floor: u64,
    /// The time of the change at `floor`, if there was one: a `from` after it
    /// is covered.
    pub floor_ts: Option<i64>,
    /// A `from` before this reaches before what the log has seen.
    pub epoch_start_ms: i64,
    /// Each user once, in the order of its latest change.
    pub users: Vec<LatestChange<K>>,
}

/// One user's latest change in a [`Latest`].
#[derive(Debug, Clone)]
pub struct LatestChange<K> {
    pub user: K,
    pub tombstone: Option<Arc<UserView>>,
    pub seq: u64,
    pub ts: i64,
}

/// Counts for `/internal/v1/stats` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    pub entries: usize,
    /// Timestamp (ms) of the oldest retained change, if any.
    pub oldest_ts: Option<i64>,
    pub head: Cursor,
}

#[derive(Debug)]
struct Ring<K> {
    entries: VecDeque<Change<K>>,
    /// The stream position of each entry, in a replica's log; empty otherwise.
    positions: VecDeque<u64>,
    epoch: u64,
    /// A `from` before this (ms) reaches before what the log has seen.
    epoch_start_ms: i64,
    /// Sequence of the newest change ever appended (0 = none yet).
    head: u64,
    /// Timestamp of the newest change, or the epoch start: the floor for the next one.
    last_ts: i64,
    /// Newest sequence and timestamp evicted: a delta reaching back to or before
    /// them cannot be proven complete.
    evicted_seq: u64,
    evicted_ts: Option<i64>,
}

/// The ring and the rules for what it can prove.
#[derive(Debug)]
pub struct ChangeLog<K> {
    // A RwLock, not a Mutex: appends hold it for a push (and rarely an eviction),
    // readers hold it shared while they pick the users out of their range.
    ring: RwLock<Ring<K>>,
    capacity: usize,
    window_ms: i64,
    /// True if and only if changes are numbered by stream position (a replica).
    replicated: bool,
    /// Woken after every append and rebase, for the one task that follows the
    /// log (the change stream's, see `crate::stream`). A permit is kept while
    /// nobody waits, so a change published between a read and a wait is not missed.
    published: tokio::sync::Notify,
}

impl<K: Copy + Eq + Hash> ChangeLog<K> {
    /// Creates an empty log for a new epoch starting at `now_ms`.
    pub fn new(capacity: usize, window: Duration, now_ms: i64) -> ChangeLog<K> {
        ChangeLog {
            ring: RwLock::new(Ring {
                entries: VecDeque::new(),
                positions: VecDeque::new(),
                // Any value works as long as a restart is unlikely to pick the same one.
                epoch: fastrand::u64(1..),
                epoch_start_ms: now_ms,
                head: 0,
                last_ts: now_ms,
                evicted_seq: 0,
                evicted_ts: None,
            }),
            capacity: capacity.max(1),
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            replicated: false,
            published: tokio::sync::Notify::new(),
        }
    }

    /// Creates the log of a cluster replica: changes are numbered by their
    /// stream position, and until [`ChangeLog::rebase`] names the stream's
    /// generation and the replica's starting point, every cursor lags.
    pub fn replicated(capacity: usize, window: Duration) -> ChangeLog<K> {
        let mut log = ChangeLog::new(capacity, window, i64::MAX);
        log.replicated = true;
        log.ring.get_mut().epoch = 0;
        log
    }

    /// Forgets every change and starts a replica's log over at stream
    /// position `floor` (written at `floor_ms`) of the stream generation
    /// `epoch`: cursors before the floor, and `from` times at or before
    /// `floor_ms`, lag from now on, as this log cannot prove what happened then.
    pub fn rebase(&self, epoch: u64, floor: u64, floor_ms: i64) {
        let mut ring = self.ring.write();
        ring.entries.clear();
        ring.positions.clear();
        ring.epoch = epoch;
        ring.epoch_start_ms = floor_ms.saturating_add(1);
        ring.head = floor;
        ring.last_ts = floor_ms;
        ring.evicted_seq = floor;
        ring.evicted_ts = Some(floor_ms);
        drop(ring);
        self.published.notify_one();
    }

    /// Appends the change at stream position `position` (written at `ts`) to
    /// a replica's log; see [`ChangeLog::append`]. A position at or before the
    /// head (a replayed entry) is left out: the log already covers it.
    pub fn append_at(
        &self,
        user: K,
        tombstone: Option<Arc<UserView>>,
        ts: i64,
        position: u64,
    ) -> Cursor {
        let mut ring = self.ring.write();
        let appended = position > ring.head;
        if appended {
            ring.positions.push_back(position);
            self.push(&mut ring, user, tombstone, ts, position);
        }
        let cursor = Cursor {
            epoch: ring.epoch,
            seq: ring.head,
        };
        drop(ring);
        if appended {
            self.published.notify_one();
        }
        cursor
    }

    /// Appends a change and publishes it: from the moment this returns, readers
    /// see it, and any cursor they are given covers it. Returns its cursor.
    pub fn append(&self, user: K, tombstone: Option<Arc<UserView>>, now_ms: i64) -> Cursor {
        let mut ring = self.ring.write();
        let seq = ring.head + 1;
        self.push(&mut ring, user, tombstone, now_ms, seq);
        let cursor = Cursor {
            epoch: ring.epoch,
            seq,
        };
        drop(ring);
        self.published.notify_one();
        cursor
    }

    /// Pushes the change numbered `seq`, evicting what falls out of the
    /// capacity or the window.
    fn push(
        &self,
        ring: &mut Ring<K>,
        user: K,
        tombstone: Option<Arc<UserView>>,
        ts: i64,
        seq: u64,
    ) {
        let ts = ts.max(ring.last_ts);
        ring.head = seq;
        ring.last_ts = ts;
        let horizon = ts.saturating_sub(self.window_ms);
        while let Some(front) = ring.entries.front() {
            if ring.entries.len() < self.capacity && front.ts >= horizon {
                break;
            }
            let front_ts = front.ts;
            ring.entries.pop_front();
            ring.evicted_seq = match ring.positions.pop_front() {
                Some(position) => position,
                None => ring.evicted_seq + 1,
            };
            ring.evicted_ts = Some(front_ts);
        }
        ring.entries.push_back(Change {
            ts,
            user,
            tombstone,
        });
    }

    /// Returns the cursor of the newest published change.
    pub fn cursor(&self) -> Cursor {
        let ring = self.ring.read();
        Cursor {
            epoch: ring.epoch,
            seq: ring.head,
        }
    }

    /// Returns the users changed after `cursor` (exclusive), or [`Lagged`] when the cursor is from another epoch, ahead of the log, or
    /// older than its oldest retained change.
    pub fn since(&self, cursor: Cursor) -> Result<Changed<K>, Lagged> {
        let ring = self.ring.read();
        if cursor.epoch != ring.epoch || cursor.seq > ring.head || cursor.seq < ring.evicted_seq {
            return Err(Lagged);
        }
        let start = if self.replicated {
            ring.positions.partition_point(|&p| p <= cursor.seq)
        } else {
            // Sequences are contiguous and the oldest entry held is the one after the
            // last evicted: the first change after the cursor is at this offset.
            usize::try_from(cursor.seq - ring.evicted_seq).map_err(|_| Lagged)?
        };
        Ok(self.latest_from(&ring, start))
    }

    /// Returns the users changed at or after `from_ms`, or
    /// [`Lagged`] when a change at or after `from_ms` may have been evicted or
    /// `from_ms` is before this epoch began.
    pub fn since_time(&self, from_ms: i64) -> Result<Changed<K>, Lagged> {
        let ring = self.ring.read();
        if from_ms < ring.epoch_start_ms || ring.evicted_ts.is_some_and(|ts| ts >= from_ms) {
            return Err(Lagged);
        }
        let start = ring.entries.partition_point(|c| c.ts < from_ms);
        Ok(self.latest_from(&ring, start))
    }

    /// Picks, from `start` to the end, the latest change of each user.
    fn latest_from(&self, ring: &Ring<K>, start: usize) -> Changed<K> {
        let range = ring.entries.range(start..);
        let mut seen: HashSet<K, foldhash::fast::RandomState> =
            HashSet::with_capacity_and_hasher(range.len().min(4096), Default::default());
        let mut users: Vec<(K, Option<Arc<UserView>>)> = range
            .rev()
            .filter(|c| seen.insert(c.user))
            .map(|c| (c.user, c.tombstone.clone()))
            .collect();
        users.reverse();
        Changed {
            cursor: Cursor {
                epoch: ring.epoch,
                seq: ring.head,
            },
            users,
        }
    }

    /// Returns the latest change of each of the last `max_users` users changed,
    /// looking back over at most `max_entries` entries: the one range that
    /// holds the answer to every cursor or time after its floor, each answer
    /// being the users whose latest change is after that point (a suffix).
    pub fn latest(&self, max_users: usize, max_entries: usize) -> Latest<K> {
        let ring = self.ring.read();
        let mut seen: HashSet<K, foldhash::fast::RandomState> = HashSet::with_capacity_and_hasher(
            max_users.min(ring.entries.len()),
            Default::default(),
        );
        let mut users = Vec::new();
        let (mut floor, mut floor_ts) = (ring.evicted_seq, ring.evicted_ts);
        for (i, change) in ring.entries.iter().enumerate().rev() {
            let seq = if self.replicated {
                ring.positions.get(i).copied().unwrap_or(ring.evicted_seq)
            } else {
                ring.evicted_seq + i as u64 + 1
            };
            let walked = ring.entries.len() - i;
            if walked > max_entries || (seen.len() == max_users && !seen.contains(&change.user)) {
                (floor, floor_ts) = (seq, Some(change.ts));
                break;
            }
            if seen.insert(change.user) {
                users.push(LatestChange {
                    user: change.user,
                    tombstone: change.tombstone.clone(),
                    seq,
                    ts: change.ts,
                });
            }
        }
        users.reverse();
        Latest {
            head: Cursor {
                epoch: ring.epoch,
                seq: ring.head,
            },
            floor,
            floor_ts,
            epoch_start_ms: ring.epoch_start_ms,
            users,
        }
    }

    /// Returns once the head is no longer `seen` (at once if it has moved
    /// already). Meant for one waiter at a time: a wake-up goes to one task.
    pub async fn moved_from(&self, seen: Cursor) {
        while self.cursor() == seen {
            self.published.notified().await;
        }
    }

    /// Returns counts describing the ring.
    pub fn stats(&self) -> LogStats {
        let ring = self.ring.read();
        LogStats {
            entries: ring.entries.len(),
            oldest_ts: ring.entries.front().map(|c| c.ts),
            head: Cursor {
                epoch: ring.epoch,
                seq: ring.head,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cursor_prints_as_its_hex_parts_and_reads_back() {
        let mut rng = fastrand::Rng::with_seed(0xc0);
        let edges = [0, 1, 15, 16, 255, u64::MAX, u64::MAX >> 4, 1 << 60];
        for _ in 0..10_000 {
            let mut pick = || match rng.usize(..3) {
                0 => edges[rng.usize(..edges.len())],
                1 => rng.u64(..1 << 20),
                _ => rng.u64(..),
            };
            let cursor = super::Cursor::new(pick(), pick());
            let want = format!("{:x}.{:x}", cursor.epoch(), cursor.seq());
            assert_eq!(cursor.to_string(), want);
            let mut pushed = String::from("x");
            cursor.push_to(&mut pushed);
            assert_eq!(pushed, format!("x{want}"));
            assert_eq!(want.parse(), Ok(cursor));
        }
    }

    use super::*;

    const T0: i64 = 1_700_000_000_000;

    /// A change of `user` at `ts`.
    fn change(log: &Log, user: &'static str, ts: i64) -> Cursor {
        log.append(user, None, ts)
    }

    /// The deletion of `user` at `ts`.
    fn delete(log: &Log, user: &'static str, ts: i64) -> Cursor {
        let tombstone = Arc::new(UserView::deleted(user, user));
        log.append(user, Some(tombstone), ts)
    }

    /// The ids of `changed`, each marked true if its last change was a deletion.
    fn ids(changed: &Changed<&'static str>) -> Vec<(&'static str, bool)> {
        changed
            .users
            .iter()
            .map(|(user, tombstone)| (*user, tombstone.is_some()))
            .collect()
    }

    type Log = ChangeLog<&'static str>;

    fn log(capacity: usize) -> Log {
        ChangeLog::new(capacity, Duration::from_secs(600), T0)
    }

    #[tokio::test]
    async fn moved_from_waits_for_the_next_change_and_misses_none_made_before_the_wait() {
        let log = Arc::new(log(10));
        let seen = log.cursor();
        // Made before anyone waits: the wait returns at once.
        change(&log, "a", T0);
        log.moved_from(seen).await;
        let seen = log.cursor();
        let waiter = {
            let log = Arc::clone(&log);
            tokio::spawn(async move { log.moved_from(seen).await })
        };
        // One thread: the waiter has run up to its wait and nothing woke it.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        change(&log, "b", T0);
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken by the change")
            .expect("waiter");
    }

    #[test]
    fn cursor_round_trips_and_garbage_is_rejected() {
        let log = log(10);
        let c = change(&log, "a", T0);
        assert_eq!(c.to_string().parse::<Cursor>(), Ok(c));
        for bad in [
            "",
            ".",
            "1.",
            ".1",
            "1.2.3",
            "x.1",
            "+1.1",
            "11111111111111111.1",
            "1 .1",
        ] {
            assert_eq!(bad.parse::<Cursor>(), Err(CursorError), "{bad}");
        }
    }

    #[test]
    fn since_returns_each_user_once_by_its_last_change_in_change_order() {
        let log = log(10);
        let start = log.cursor();
        change(&log, "a", T0);
        change(&log, "b", T0);
        delete(&log, "c", T0);
        change(&log, "a", T0);
        let changed = log.since(start).unwrap();
        assert_eq!(ids(&changed), [("b", false), ("c", true), ("a", false)]);
        assert_eq!(changed.cursor, log.cursor());
        assert!(log.since(changed.cursor).unwrap().users.is_empty());
    }

    #[test]
    fn a_user_deleted_then_created_again_is_listed_by_its_last_change() {
        let log = log(10);
        let start = log.cursor();
        delete(&log, "a", T0);
        change(&log, "a", T0);
        assert_eq!(ids(&log.since(start).unwrap()), [("a", false)]);
        delete(&log, "a", T0);
        assert_eq!(ids(&log.since(start).unwrap()), [("a", true)]);
    }

    #[test]
    fn cursor_older_than_the_ring_lags_instead_of_skipping() {
        let log = log(2);
        let start = log.cursor();
        let first = change(&log, "a", T0);
        change(&log, "b", T0);
        change(&log, "c", T0);
        assert_eq!(log.since(start).unwrap_err(), Lagged);
        // `first` is exactly the evicted change: everything after it is still held.
        assert_eq!(ids(&log.since(first).unwrap()).len(), 2);
        assert_eq!(log.stats().entries, 2);
    }

    #[test]
    fn cursors_from_another_epoch_or_the_future_lag() {
        let a = log(10);
        let b = log(10);
        change(&b, "x", T0);
        assert_eq!(a.since(b.cursor()).unwrap_err(), Lagged);
        let ahead = Cursor {
            epoch: a.cursor().epoch,
            seq: 5,
        };
        assert_eq!(a.since(ahead).unwrap_err(), Lagged);
    }

    #[test]
    fn since_time_includes_changes_in_the_same_millisecond() {
        let log = log(10);
        change(&log, "a", T0 + 10);
        change(&log, "b", T0 + 20);
        change(&log, "c", T0 + 20);
        assert_eq!(ids(&log.since_time(T0 + 20).unwrap()).len(), 2);
        assert_eq!(ids(&log.since_time(T0 + 11).unwrap()).len(), 2);
        assert!(log.since_time(T0 + 21).unwrap().users.is_empty());
        assert_eq!(log.since_time(T0 - 1).unwrap_err(), Lagged);
    }

    #[test]
    fn timestamps_never_go_back_when_the_clock_does() {
        let log = log(10);
        change(&log, "a", T0 + 1000);
        change(&log, "b", T0 + 10);
        // b was stamped T0+1000, so a `from` at T0+500 still finds it.
        assert_eq!(ids(&log.since_time(T0 + 500).unwrap()).len(), 2);
    }

    #[test]
    fn changes_older_than_the_window_are_evicted_and_then_lag() {
        let log = Log::new(100, Duration::from_secs(1), T0);
        change(&log, "a", T0);
        change(&log, "b", T0 + 5_000);
        assert_eq!(log.stats().entries, 1);
        assert_eq!(log.since_time(T0).unwrap_err(), Lagged);
        assert_eq!(ids(&log.since_time(T0 + 1).unwrap()), [("b", false)]);
    }

    #[test]
    fn a_replicas_log_finds_cursors_by_stream_position_and_lags_before_its_floor() {
        let log = Log::replicated(2, Duration::from_secs(600));
        // Before it knows the stream, every real cursor lags.
        assert_eq!(
            log.since(Cursor { epoch: 7, seq: 100 }).unwrap_err(),
            Lagged
        );
        log.rebase(7, 100, T0);
        let floor = log.cursor();
        assert_eq!((floor.epoch(), floor.seq()), (7, 100));
        assert!(log.since(floor).unwrap().users.is_empty());
        let b = log.append_at("b", None, T0 + 1, 205);
        // A replayed entry changes nothing.
        assert_eq!(log.append_at("z", None, T0 + 1, 150), b);
        log.append_at("c", None, T0 + 2, 310);
        assert_eq!(
            ids(&log.since(floor).unwrap()),
            [("b", false), ("c", false)]
        );
        assert_eq!(ids(&log.since(b).unwrap()), [("c", false)]);
        // A cursor between two positions gets what follows it.
        let between = Cursor { epoch: 7, seq: 250 };
        assert_eq!(ids(&log.since(between).unwrap()), [("c", false)]);
        assert_eq!(log.since(Cursor { epoch: 7, seq: 99 }).unwrap_err(), Lagged);
        assert_eq!(
            log.since(Cursor { epoch: 8, seq: 205 }).unwrap_err(),
            Lagged
        );
        assert_eq!(log.since_time(T0).unwrap_err(), Lagged);
        log.append_at("d", None, T0 + 3, 400);
        // Capacity 2 evicted b: position 205 is now the floor.
        assert_eq!(log.since(floor).unwrap_err(), Lagged);
        assert_eq!(ids(&log.since(b).unwrap()), [("c", false), ("d", false)]);
    }

    #[test]
    fn latest_covers_back_to_its_floor_and_every_suffix_is_that_cursors_delta() {
        let log = log(10);
        let start = log.cursor();
        let cursors: Vec<Cursor> = [("a", 1), ("b", 2), ("c", 3), ("a", 4), ("d", 5)]
            .iter()
            .map(|&(user, dt)| change(&log, user, T0 + dt))
            .collect();
        // Room for three users: d, a and c; b is the newest change left out.
        let latest = log.latest(3, 100);
        let users: Vec<_> = latest.users.iter().map(|u| (u.user, u.seq, u.ts)).collect();
        assert_eq!(
            users,
            [("c", 3, T0 + 3), ("a", 4, T0 + 4), ("d", 5, T0 + 5)]
        );
        assert_eq!(
            (latest.floor, latest.floor_ts),
            (cursors[1].seq(), Some(T0 + 2))
        );
        assert_eq!(latest.head, log.cursor());
        // From the floor on, a cursor's delta is the users whose latest change is after it.
        for cursor in &cursors[1..] {
            let suffix: Vec<_> = latest
                .users
                .iter()
                .filter(|u| u.seq > cursor.seq())
                .map(|u| (u.user, false))
                .collect();
            assert_eq!(ids(&log.since(*cursor).unwrap()), suffix);
        }
        // Room for every user: the floor is the log's own.
        let all = log.latest(10, 100);
        assert_eq!((all.floor, all.floor_ts), (start.seq(), None));
        assert_eq!(all.users.len(), 4);
        // Looking back over two entries only: the third from the end is the floor.
        let short = log.latest(10, 2);
        assert_eq!(short.floor, cursors[2].seq());
        assert_eq!(short.users.len(), 2);
    }

    #[test]
    fn memory_stays_bounded_by_capacity_whatever_the_write_rate() {
        let log = log(64);
        for i in 0..10_000 {
            change(&log, ["a", "b", "c"][i % 3], T0);
        }
        assert_eq!(log.stats().entries, 64);
        assert_eq!(log.stats().head.seq(), 10_000);
    }
}

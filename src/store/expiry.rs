//! Connection deadlines, the clock they are kept on, and the background task
//! that expires them.
//!
//! A connection gets one deadline when it opens. A heartbeat only moves its
//! `refreshed_ms`; when the deadline comes due the sweep looks at the connection
//! and either expires it or schedules the real deadline. So the queue holds at
//! most one entry per connection and heartbeats never touch it.

use super::shard::Slot;
use super::Store;
use crate::background::BackgroundTask;
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Milliseconds since a point one TTL before the store was created, on tokio's
/// clock (which tests pause). Half the size of an `Instant`, kept per
/// connection and per deadline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    base: Instant,
}

impl Clock {
    /// A clock whose zero lies `lookback` in the past (or as far back as the
    /// platform's clock reaches), so that a refresh restored from a snapshot
    /// up to `lookback` old still has a time on it.
    pub fn reaching_back(lookback: Duration) -> Clock {
        let now = Instant::now();
        Clock {
            base: now.checked_sub(lookback).unwrap_or(now),
        }
    }

    /// `t` in whole milliseconds, rounded up: a deadline computed from a
    /// stamp is never early, at most a millisecond late.
    pub fn stamp(&self, t: Instant) -> u64 {
        let nanos = t.saturating_duration_since(self.base).as_nanos();
        u64::try_from(nanos.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }

    /// `t` in whole milliseconds, rounded down: every deadline at or before
    /// this has passed by `t`.
    pub fn passed(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }

    pub fn instant(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }
}

/// When to look at the connection of generation `generation` of the user in `owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline {
    pub at_ms: u64,
    pub generation: u64,
    pub owner: Slot,
}

#[derive(Debug, Default)]
pub(crate) struct ExpiryQueue {
    // A plain Mutex: pushes happen once per opened connection, pops once per TTL.
    heap: Mutex<BinaryHeap<Reverse<Deadline>>>,
    /// Wakes the sweeper when a deadline earlier than all others arrives.
    earlier: Notify,
}

impl ExpiryQueue {
    pub fn schedule(&self, deadline: Deadline) {
        let mut heap = self.heap.lock();
        let earliest = heap
            .peek()
            .is_none_or(|Reverse(top)| deadline.at_ms < top.at_ms);
        heap.push(Reverse(deadline));
        drop(heap);
        if earliest {
            // notify_one keeps a permit when the sweeper is busy, so no wake-up is lost.
            self.earlier.notify_one();
        }
    }

    /// Removes and returns every deadline at or before `now_ms`.
    pub fn pop_due(&self, now_ms: u64) -> Vec<Deadline> {
        let mut heap = self.heap.lock();
        let mut due = Vec::new();
        while heap.peek().is_some_and(|Reverse(top)| top.at_ms <= now_ms) {
            if let Some(Reverse(d)) = heap.pop() {
                due.push(d);
            }
        }
        due
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.heap.lock().peek().map(|Reverse(d)| d.at_ms)
    }
}

/// Starts expiring `store`'s connections on the current tokio runtime: the task
/// sleeps until the earliest deadline, or until an earlier one is scheduled.
pub fn spawn_sweeper(store: Store) -> BackgroundTask {
    BackgroundTask::spawn(async move {
        loop {
            let next = store.expire_due(Instant::now());
            let earlier = store.shared.expiry.earlier.notified();
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = earlier => {}
                    }
                }
                None => earlier.await,
            }
        }
    })
}

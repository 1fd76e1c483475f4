//! Connection deadlines and the background task that expires them.
//!
//! A connection gets one deadline when it opens. A heartbeat only moves its
//! `refreshed_at`; when the deadline comes due the sweep looks at the connection
//! and either expires it or schedules the real deadline. So the queue holds at
//! most one entry per connection and heartbeats never touch it.

use super::Store;
use crate::background::BackgroundTask;
use crate::domain::ConnectionId;
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline {
    pub at: Instant,
    pub generation: u64,
    pub connection: ConnectionId,
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
        let earliest = heap.peek().is_none_or(|Reverse(top)| deadline.at < top.at);
        heap.push(Reverse(deadline));
        drop(heap);
        if earliest {
            // notify_one keeps a permit when the sweeper is busy, so no wake-up is lost.
            self.earlier.notify_one();
        }
    }

    /// Removes and returns every deadline due at `now`.
    pub fn pop_due(&self, now: Instant) -> Vec<Deadline> {
        let mut heap = self.heap.lock();
        let mut due = Vec::new();
        while heap.peek().is_some_and(|Reverse(top)| top.at <= now) {
            if let Some(Reverse(d)) = heap.pop() {
                due.push(d);
            }
        }
        due
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.lock().peek().map(|Reverse(d)| d.at)
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

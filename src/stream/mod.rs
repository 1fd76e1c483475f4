//! The change stream, `GET /api/v1/users.presence.stream` (docs/streaming.md):
//! presence pushed over Server-Sent Events, resumable from the cursor.
//!
//! One task, [`follow`], follows the store's change log: woken when the log
//! moves, it renders the users changed since its last batch once, as a
//! [`Batch`], and sends it on a `tokio::sync::broadcast` channel that every
//! open stream reads ([`subscriber`]). So a change costs one render however
//! many listen, and each stream only picks its users out and writes shared
//! bytes. A replica of a cluster applies what it follows from Redis to its own
//! store's log, so the same task serves its streams.
//!
//! A stream filtered by `ids` does not read the channel: the [`index`] lists
//! it under its users, and a batch goes only to the streams it has a user for,
//! so a batch wakes O(its followers) streams, not every stream.
//!
//! [`StreamHub`] owns what the streams share: the channel, the interest
//! index, the limits on open streams (in all and per user), and the shutdown
//! signal that ends them all.

pub mod follow;
pub mod index;
pub mod route;
pub mod sse;
pub mod subscriber;

pub use follow::{follow, Batch};

use crate::config::StreamSettings;
use crate::metrics::StreamMetrics;
use crate::store::Cursor;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

/// What every stream of one application shares.
#[derive(Debug)]
pub struct StreamHub {
    pub settings: StreamSettings,
    pub metrics: StreamMetrics,
    batches: broadcast::Sender<Arc<Batch>>,
    /// The streams filtered by `ids`, by user.
    index: Arc<index::Index>,
    /// Set once by [`StreamHub::shut_down`].
    shut_down: AtomicBool,
    open: Mutex<Open>,
}

/// The streams open now, in all and by user.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_user: HashMap<Box<str>, usize>,
}

/// Why a stream was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `stream.max_streams` are open.
    Total(usize),
    /// The user has `stream.max_streams_per_user` open.
    PerUser(usize),
}

impl StreamHub {
    /// A hub with `settings`, counting in `metrics`.
    pub fn new(settings: StreamSettings, metrics: StreamMetrics) -> StreamHub {
        let (batches, _) = broadcast::channel(settings.buffer_batches.max(1));
        StreamHub {
            index: Arc::new(index::Index::new(metrics.followed.clone())),
            settings,
            metrics,
            batches,
            shut_down: AtomicBool::new(false),
            open: Mutex::default(),
        }
    }

    /// Returns true unless `stream.max_streams` is 0.
    pub fn enabled(&self) -> bool {
        self.settings.max_streams > 0
    }

    /// Counts a stream of `user` as open, or refuses it over a limit. The
    /// stream counts until the permit is dropped.
    pub fn admit(self: &Arc<Self>, user: &str) -> Result<Permit, Refusal> {
        let mut open = self.open.lock();
        if open.total >= self.settings.max_streams {
            return Err(Refusal::Total(self.settings.max_streams));
        }
        let mine = open.by_user.get(user).copied().unwrap_or(0);
        if mine >= self.settings.max_streams_per_user {
            return Err(Refusal::PerUser(self.settings.max_streams_per_user));
        }
        open.total += 1;
        open.by_user.insert(user.into(), mine + 1);
        self.metrics.open.inc();
        Ok(Permit {
            hub: Arc::clone(self),
            user: user.into(),
        })
    }

    /// A receiver of the batches sent from now on (a stream of everyone).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.batches.subscribe()
    }

    /// A mailbox for the batches sent from now on that touch a user of
    /// `wanted` (a stream filtered by `ids`), with resets and the shutdown.
    pub fn follow(&self, wanted: index::Wanted) -> index::Inbox {
        self.index.join(wanted)
    }

    /// The cursor of the last batch sent, if any: a filtered stream that has
    /// read its mailbox after asking has everything up to it it wants.
    pub fn dispatched(&self) -> Option<Cursor> {
        self.index.dispatched()
    }

    /// Returns true if and only if some stream is open to receive batches.
    pub fn has_subscribers(&self) -> bool {
        self.batches.receiver_count() > 0 || !self.index.is_empty()
    }

    /// Sends a batch to every open stream it concerns.
    pub fn send(&self, batch: Batch) {
        let batch = Arc::new(batch);
        self.index
            .dispatch(&batch, self.settings.buffer_batches.max(1));
        // An error means nobody listens, which is fine: nobody misses it.
        let _ = self.batches.send(batch);
    }

    /// Ends every open stream (each says goodbye first) and refuses new ones
    /// from now on: called when the server begins its graceful shutdown, which
    /// waits for open responses.
    pub fn shut_down(&self) {
        // Told on the channel the streams wait on anyway, rather than by a
        // watch of its own: a second thing to wait on would cost every stream
        // a registration on a shared lock at every wake-up. The message is the
        // newest in the ring, so even a stream that fell behind receives it; a
        // stream subscribing after it finds the flag set.
        self.shut_down.store(true, Ordering::SeqCst);
        self.send(Batch::Shutdown);
    }

    /// Returns true once [`StreamHub::shut_down`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::SeqCst)
    }
}

/// One open stream, counted against the limits until dropped.
#[derive(Debug)]
pub struct Permit {
    hub: Arc<StreamHub>,
    user: Box<str>,
}

impl Permit {
    /// The hub this stream belongs to.
    pub fn hub(&self) -> &Arc<StreamHub> {
        &self.hub
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.hub.open.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(mine) = open.by_user.get_mut(&self.user) {
            *mine -= 1;
            if *mine == 0 {
                open.by_user.remove(&self.user);
            }
        }
        self.hub.metrics.open.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::{Store, StoreOptions};

    fn hub(max_streams: usize, per_user: usize) -> Arc<StreamHub> {
        let metrics = Metrics::new(Store::new(&StoreOptions::default())).expect("metrics");
        let settings = StreamSettings {
            max_streams,
            max_streams_per_user: per_user,
            ..StreamSettings::default()
        };
        Arc::new(StreamHub::new(settings, metrics.streams.clone()))
    }

    #[test]
    fn permits_count_in_all_and_per_user_and_free_their_place_when_dropped() {
        let hub = hub(3, 2);
        let a1 = hub.admit("a").unwrap();
        let _a2 = hub.admit("a").unwrap();
        assert_eq!(hub.admit("a").unwrap_err(), Refusal::PerUser(2));
        let _b = hub.admit("b").unwrap();
        assert_eq!(hub.admit("c").unwrap_err(), Refusal::Total(3));
        assert_eq!(hub.metrics.open.get(), 3);
        drop(a1);
        assert_eq!(hub.metrics.open.get(), 2);
        let _a3 = hub.admit("a").unwrap();
        assert_eq!(hub.open.lock().by_user.len(), 2);
    }
}

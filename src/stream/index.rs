//! The interest index: which streams filtered by `ids` follow which user, so
//! that a batch wakes only the streams it has a user for, not every stream.
//!
//! A stream that wants everyone reads the hub's `broadcast` channel; a
//! stream filtered by `ids` has a [`Mailbox`] of its own instead, listed here
//! under each of its users while its [`Inbox`] lives. The follower hands every
//! batch to [`Index::dispatch`]: changes go to the mailboxes of the users they
//! touch (each mailbox once), a reset and the shutdown to every mailbox, in
//! the order sent, so a filtered stream sees the same sequence as the
//! broadcast, less the batches it would have left out.
//!
//! What a filtered stream is not woken for still moves its resume point:
//! [`Index::dispatched`] is the cursor of the last batch dispatched, read
//! under the same lock the pushes hold, so once a stream has emptied its
//! mailbox after reading it, every change up to it is either sent or not
//! wanted. A full mailbox is the lag of the broadcast: it is emptied and the
//! stream is told it fell behind (it then sends its full answer).

use super::Batch;
use crate::api::id_list::IdList;
use crate::store::Cursor;
use parking_lot::Mutex;
use prometheus::IntGauge;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::Notify;

type FastState = foldhash::fast::RandomState;

/// The users a filtered stream follows (distinct), shared by the stream (to
/// pick its users out of a batch) and its [`Inbox`] (to leave the index).
pub type Wanted = Arc<IdList<'static>>;

/// The mailboxes of the filtered streams, by user.
#[derive(Debug)]
pub struct Index {
    inner: Mutex<Inner>,
    /// The number of users listed, kept in `presenced_stream_followed_users`.
    followed: IntGauge,
}

#[derive(Debug, Default)]
struct Inner {
    followers: HashMap<Box<str>, Vec<Arc<Mailbox>>, FastState>,
    /// Every mailbox, by key: a reset or the shutdown goes to all of them,
    /// including a stream that follows no id at all.
    members: HashMap<u64, Arc<Mailbox>, FastState>,
    next_key: u64,
    dispatched: Option<Cursor>,
}

/// What one filtered stream has been sent and not yet read.
#[derive(Debug)]
pub struct Mailbox {
    key: u64,
    queue: Mutex<Queue>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    batches: VecDeque<Arc<Batch>>,
    lagged: bool,
}

/// What a stream takes out of its mailbox.
#[derive(Debug)]
pub enum Taken {
    Batch(Arc<Batch>),
    /// The mailbox filled and was emptied: batches were lost.
    Lagged,
}

impl Index {
    /// An empty index, counting its users in `followed`.
    pub fn new(followed: IntGauge) -> Index {
        Index {
            inner: Mutex::default(),
            followed,
        }
    }

    /// Lists a new mailbox under each user of `wanted`; it stays listed until
    /// the returned inbox is dropped.
    pub fn join(self: &Arc<Self>, wanted: Wanted) -> Inbox {
        let mut inner = self.inner.lock();
        let key = inner.next_key;
        inner.next_key += 1;
        let mailbox = Arc::new(Mailbox {
            key,
            queue: Mutex::default(),
            ready: Notify::new(),
        });
        for id in wanted.iter() {
            if let Some(list) = inner.followers.get_mut(id) {
                list.push(Arc::clone(&mailbox));
            } else {
                inner
                    .followers
                    .insert(id.into(), vec![Arc::clone(&mailbox)]);
            }
        }
        inner.members.insert(key, Arc::clone(&mailbox));
        self.followed.set(gauge(inner.followers.len()));
        Inbox {
            index: Arc::clone(self),
            wanted,
            mailbox,
        }
    }

    /// Hands `batch` to the mailboxes it concerns, each holding at most
    /// `capacity` batches.
    pub fn dispatch(&self, batch: &Arc<Batch>, capacity: usize) {
        let mut inner = self.inner.lock();
        match &**batch {
            Batch::Changes { cursor, users, .. } => {
                let mut told = HashSet::with_hasher(FastState::default());
                for user in users {
                    for mailbox in inner.followers.get(user.id()).into_iter().flatten() {
                        if told.insert(mailbox.key) {
                            mailbox.push(batch, capacity);
                        }
                    }
                }
                inner.dispatched = Some(*cursor);
            }
            Batch::Reset { cursor } => {
                inner.members.values().for_each(|m| m.push(batch, capacity));
                inner.dispatched = Some(*cursor);
            }
            Batch::Shutdown => inner.members.values().for_each(|m| m.push(batch, capacity)),
        }
    }

    /// The cursor of the last batch dispatched (none yet: `None`). Every
    /// mailbox holds, or has handed out, each batch up to it that concerns it.
    pub fn dispatched(&self) -> Option<Cursor> {
        self.inner.lock().dispatched
    }

    /// Returns true if and only if some filtered stream is listed.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().members.is_empty()
    }

    fn leave(&self, mailbox: &Mailbox, wanted: &Wanted) {
        let mut inner = self.inner.lock();
        inner.members.remove(&mailbox.key);
        for id in wanted.iter() {
            let Some(list) = inner.followers.get_mut(id) else {
                continue;
            };
            if let Some(at) = list.iter().position(|m| m.key == mailbox.key) {
                list.swap_remove(at);
            }
            if list.is_empty() {
                inner.followers.remove(id);
            }
        }
        self.followed.set(gauge(inner.followers.len()));
    }
}

fn gauge(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

impl Mailbox {
    fn push(&self, batch: &Arc<Batch>, capacity: usize) {
        {
            let mut queue = self.queue.lock();
            if queue.batches.len() >= capacity.max(1) {
                queue.batches.clear();
                queue.lagged = true;
            }
            queue.batches.push_back(Arc::clone(batch));
        }
        self.ready.notify_one();
    }

    /// What is waiting, if anything: a lag before the batches after it.
    pub fn try_take(&self) -> Option<Taken> {
        let mut queue = self.queue.lock();
        if queue.lagged {
            queue.lagged = false;
            return Some(Taken::Lagged);
        }
        let batch = queue.batches.pop_front()?;
        if queue.batches.is_empty() {
            // A lag or a burst can grow the queue; an idle stream holds no
            // more than a few slots.
            queue.batches.shrink_to(4);
        }
        Some(Taken::Batch(batch))
    }

    /// Waits for the next thing sent (cancel-safe: nothing is taken until it
    /// is returned).
    pub async fn take(&self) -> Taken {
        loop {
            if let Some(taken) = self.try_take() {
                return taken;
            }
            self.ready.notified().await;
        }
    }
}

/// A filtered stream's place in the index: its mailbox, listed until dropped.
#[derive(Debug)]
pub struct Inbox {
    index: Arc<Index>,
    wanted: Wanted,
    mailbox: Arc<Mailbox>,
}

impl Inbox {
    /// The mailbox the follower fills (an `Arc`, to hold while the stream it
    /// belongs to is borrowed).
    pub fn mailbox(&self) -> &Arc<Mailbox> {
        &self.mailbox
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.index.leave(&self.mailbox, &self.wanted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Arc<Index> {
        let gauge = IntGauge::new("followed", "users followed").expect("a valid name");
        Arc::new(Index::new(gauge))
    }

    fn wanted(ids: &[&str]) -> Wanted {
        let store = crate::store::Store::new(&crate::store::StoreOptions::default());
        let ids = ids
            .iter()
            .map(|&id| (std::borrow::Cow::Borrowed(id), store.hash_id(id)))
            .collect();
        Arc::new(IdList::Parsed(ids).packed())
    }

    fn reset(seq: u64) -> Arc<Batch> {
        Arc::new(Batch::Reset {
            cursor: Cursor::new(1, seq),
        })
    }

    fn is_reset(taken: Option<Taken>, seq: u64) -> bool {
        matches!(taken, Some(Taken::Batch(b)) if matches!(&*b, Batch::Reset { cursor } if cursor.seq() == seq))
    }

    #[test]
    fn dropping_an_inbox_frees_every_entry_it_made() {
        let index = index();
        let a = index.join(wanted(&["ann", "bob"]));
        let b = index.join(wanted(&["bob", "cid"]));
        assert_eq!(index.followed.get(), 3);
        drop(a);
        assert_eq!(index.followed.get(), 2);
        assert!(!index.is_empty());
        drop(b);
        assert_eq!(index.followed.get(), 0);
        assert!(index.is_empty());
        assert!(index.inner.lock().members.is_empty());
    }

    #[test]
    fn a_reset_reaches_every_mailbox_even_one_without_ids_and_moves_dispatched() {
        let index = index();
        let none = index.join(wanted(&[]));
        let some = index.join(wanted(&["ann"]));
        assert_eq!(index.dispatched(), None);
        index.dispatch(&reset(7), 8);
        assert!(is_reset(none.mailbox().try_take(), 7));
        assert!(is_reset(some.mailbox().try_take(), 7));
        assert!(none.mailbox().try_take().is_none());
        assert_eq!(index.dispatched(), Some(Cursor::new(1, 7)));
    }

    #[test]
    fn a_full_mailbox_is_emptied_and_tells_the_lag_before_the_next_batch() {
        let index = index();
        let inbox = index.join(wanted(&["ann"]));
        for seq in 1..=3 {
            index.dispatch(&reset(seq), 2);
        }
        assert!(matches!(inbox.mailbox().try_take(), Some(Taken::Lagged)));
        assert!(is_reset(inbox.mailbox().try_take(), 3));
        assert!(inbox.mailbox().try_take().is_none());
    }
}

//! One open stream: its first answer, then the batches the follower sends,
//! filtered to the users it asked about, with heartbeats; a full answer when
//! it cannot prove a delta complete, and a goodbye when it must end.
//!
//! A stream of everyone reads the hub's broadcast; a stream filtered by `ids`
//! reads its own mailbox in the interest index, which gets only the batches
//! that touch its users, and at each heartbeat moves its resume point to the
//! last batch dispatched (see [`super::index`]).
//!
//! The stream subscribes to the batches before it reads its first answer, so
//! every change after that answer's cursor is in a batch it will receive;
//! batches at or before the cursor are skipped. A batch may repeat a change
//! the first answer already showed, which is harmless, as for polls.

use super::index::{Inbox, Taken, Wanted};
use super::sse::{self, Goodbye};
use super::{Batch, Permit};
use crate::api::id_list::IdList;
use crate::api::plan::{Answer, Plan};
use crate::api::presence::catch_up;
use crate::http::AppState;
use crate::store::{Cursor, UserView};
use actix_web::web::{self, Bytes};
use futures_util::Stream;
use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};

/// The window `stream.max_lags_per_minute` counts in.
const LAG_WINDOW: Duration = Duration::from_secs(60);

/// What a stream is about: everyone, or the users among `ids`.
#[derive(Debug, Clone)]
pub struct Interest {
    ids: Option<Wanted>,
    /// Only for a long list: the ids as a set to look up (a short list is
    /// scanned, which saves every idle stream the set's allocations).
    set: Option<HashSet<Box<str>, foldhash::fast::RandomState>>,
}

/// The longest list of ids a stream scans rather than keeping a set of.
const SCAN_UP_TO: usize = 16;

impl Interest {
    /// Everyone, or only the users among `ids`.
    pub fn new(ids: Option<IdList<'static>>) -> Interest {
        let set = ids
            .as_ref()
            .filter(|ids| ids.len() > SCAN_UP_TO)
            .map(|ids| ids.iter().map(Box::from).collect());
        Interest {
            ids: ids.map(Arc::new),
            set,
        }
    }

    fn wants(&self, id: &str) -> bool {
        match (&self.set, &self.ids) {
            (Some(set), _) => set.contains(id),
            (None, Some(ids)) => ids.iter().any(|wanted| wanted == id),
            (None, None) => true,
        }
    }

    /// The users of `users` this stream is about.
    fn pick(&self, users: &[Arc<UserView>]) -> Vec<Arc<UserView>> {
        users
            .iter()
            .filter(|user| self.wants(user.id()))
            .cloned()
            .collect()
    }
}

/// The answer a `users.presence` poll would get: the changes after `since`
/// (or, when the log cannot prove them, the full answer, flagged) or without
/// `since` the full answer; of the users `interest` names. Returns its
/// cursor and rendered body.
pub async fn answer(
    state: &AppState,
    since: Option<Cursor>,
    interest: &Interest,
) -> (Cursor, Bytes) {
    let store = &state.store;
    let plan = if store.broadcast_disabled() {
        Plan::Disabled
    } else {
        match (since, &interest.ids) {
            (Some(cursor), ids) => {
                catch_up(state, cursor).await;
                Plan::Since {
                    cursor,
                    ids: ids.as_deref().cloned(),
                }
            }
            // The full state of just these users: it replaces what the client holds.
            (None, Some(ids)) => {
                let answer = Answer::online_among(store, ids, true);
                return (answer.cursor, Bytes::from(answer.render()));
            }
            (None, None) => Plan::Full,
        }
    };
    match plan.answer(store) {
        Some(answer) => (answer.cursor, Bytes::from(answer.render())),
        None => {
            let rendered = state.snapshots.get(store).await;
            (rendered.cursor, rendered.body.clone())
        }
    }
}

/// What woke a stream up.
enum Wake {
    Expired,
    Received(Taken),
    Closed,
    Heartbeat,
}

/// Where a stream's batches come from.
enum Source {
    /// Every batch (a stream of everyone).
    All(broadcast::Receiver<Arc<Batch>>),
    /// The batches that touch its users (a stream filtered by `ids`).
    Some(Inbox),
}

impl Source {
    async fn recv(&mut self) -> Wake {
        match self {
            Source::All(batches) => match batches.recv().await {
                Ok(batch) => Wake::Received(Taken::Batch(batch)),
                Err(RecvError::Lagged(_)) => Wake::Received(Taken::Lagged),
                Err(RecvError::Closed) => Wake::Closed,
            },
            Source::Some(inbox) => Wake::Received(inbox.mailbox().take().await),
        }
    }
}

/// One open stream's state.
pub struct Subscriber {
    state: web::Data<AppState>,
    interest: Interest,
    batches: Source,
    heartbeat: Interval,
    /// When the stream reaches `stream.max_lifetime_secs`, if it has a limit.
    lifetime: Option<Pin<Box<Sleep>>>,
    /// Every change up to here is in what was sent (or not wanted).
    at: Cursor,
    /// The last id the client was given: its resume point.
    told: Cursor,
    /// Whether `presence.broadcast_disabled` was on at the last answer.
    disabled: bool,
    /// When the stream fell behind the buffer, within the last [`LAG_WINDOW`].
    lags: VecDeque<Instant>,
    out: VecDeque<Bytes>,
    ended: bool,
    permit: Permit,
}

impl Subscriber {
    /// Opens a stream for `interest`, resuming after `since` if given: its
    /// first answer is queued.
    pub async fn open(
        state: web::Data<AppState>,
        since: Option<Cursor>,
        interest: Interest,
        permit: Permit,
    ) -> Subscriber {
        let hub = permit.hub();
        let batches = match &interest.ids {
            None => Source::All(hub.subscribe()),
            Some(ids) => Source::Some(hub.follow(Arc::clone(ids))),
        };
        let every = hub.settings.heartbeat;
        let mut heartbeat = tokio::time::interval_at(Instant::now() + every, every);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let limit = hub.settings.max_lifetime;
        let lifetime = (!limit.is_zero()).then(|| Box::pin(tokio::time::sleep(limit)));
        let disabled = state.store.broadcast_disabled();
        let (cursor, body) = answer(&state, since, &interest).await;
        let mut subscriber = Subscriber {
            state,
            interest,
            batches,
            heartbeat,
            lifetime,
            at: cursor,
            told: cursor,
            disabled,
            lags: VecDeque::new(),
            out: VecDeque::new(),
            ended: false,
            permit,
        };
        subscriber.queue_answer(cursor, body, true);
        // Subscribed after the shutdown message went out: the flag tells.
        if subscriber.permit.hub().is_shut_down() {
            subscriber.end(Goodbye::Shutdown);
        }
        subscriber
    }

    /// The response body: the stream's chunks until it ends.
    pub fn into_body(self) -> impl Stream<Item = Result<Bytes, Infallible>> {
        futures_util::stream::unfold(self, |mut subscriber| async move {
            let chunk = subscriber.next_chunk().await?;
            Some((Ok(chunk), subscriber))
        })
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.out.pop_front() {
                return Some(chunk);
            }
            if self.ended {
                return None;
            }
            let Subscriber {
                batches,
                heartbeat,
                lifetime,
                ..
            } = self;
            let expired = async {
                match lifetime {
                    Some(sleep) => sleep.as_mut().await,
                    None => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                biased;
                _ = expired => Wake::Expired,
                received = batches.recv() => received,
                _ = heartbeat.tick() => Wake::Heartbeat,
            };
            match wake {
                Wake::Closed => self.end(Goodbye::Shutdown),
                Wake::Expired => self.end(Goodbye::Reconnect),
                Wake::Received(taken) => self.on_taken(taken).await,
                Wake::Heartbeat => self.on_heartbeat().await,
            }
        }
    }

    async fn on_taken(&mut self, taken: Taken) {
        match taken {
            Taken::Batch(batch) => self.on_batch(&batch).await,
            Taken::Lagged => self.on_lag().await,
        }
    }

    /// A filtered stream is not woken for the batches it leaves out: before
    /// its heartbeat it reads what is in its mailbox, and then everything up
    /// to the last batch dispatched (read first) is sent or not wanted.
    async fn catch_up_to_dispatched(&mut self) {
        let Source::Some(inbox) = &self.batches else {
            return;
        };
        let Some(dispatched) = self.permit.hub().dispatched() else {
            return;
        };
        let mailbox = Arc::clone(inbox.mailbox());
        while let Some(taken) = mailbox.try_take() {
            self.on_taken(taken).await;
            if self.ended {
                return;
            }
        }
        if self.at.epoch() == dispatched.epoch() && self.at.seq() < dispatched.seq() {
            self.at = dispatched;
        }
    }

    async fn on_batch(&mut self, batch: &Batch) {
        if let Batch::Shutdown = batch {
            self.end(Goodbye::Shutdown);
            return;
        }
        if self.follow_disabled().await {
            return;
        }
        match batch {
            Batch::Shutdown => {}
            Batch::Reset { cursor } => {
                if !covers(self.at, *cursor) {
                    self.send_full().await;
                }
            }
            Batch::Changes {
                cursor,
                users,
                event,
            } => {
                // A batch of another epoch predates a reset this stream has
                // answered already, or precedes one it is about to receive.
                if self.at.epoch() != cursor.epoch() || covers(self.at, *cursor) {
                    return;
                }
                self.at = *cursor;
                if self.disabled {
                    return;
                }
                if self.interest.ids.is_none() {
                    self.queue(event.clone());
                    self.told = *cursor;
                    return;
                }
                let picked = self.interest.pick(users);
                if !picked.is_empty() {
                    let json = Answer::partial(picked, *cursor).render();
                    self.queue(sse::answer(*cursor, &json));
                    self.told = *cursor;
                }
            }
        }
    }

    /// Fell behind the buffer: the full answer, or the end if this happens
    /// too often.
    async fn on_lag(&mut self) {
        let metrics = &self.permit.hub().metrics;
        metrics.lagged.inc();
        let now = Instant::now();
        while self
            .lags
            .front()
            .is_some_and(|&at| now.duration_since(at) >= LAG_WINDOW)
        {
            self.lags.pop_front();
        }
        self.lags.push_back(now);
        let allowed =
            usize::try_from(self.permit.hub().settings.max_lags_per_minute).unwrap_or(usize::MAX);
        if self.lags.len() > allowed {
            metrics.dropped.inc();
            self.end(Goodbye::TooSlow);
        } else {
            self.send_full().await;
        }
    }

    async fn on_heartbeat(&mut self) {
        self.catch_up_to_dispatched().await;
        if self.ended || self.follow_disabled().await {
            return;
        }
        let resume = (self.at != self.told).then_some(self.at);
        self.out.push_back(sse::heartbeat(resume));
        self.told = self.at;
    }

    /// Answers a change of `presence.broadcast_disabled` since the last
    /// answer with the answer a poll now gets (empty, or the full state).
    /// Returns true if it did.
    async fn follow_disabled(&mut self) -> bool {
        let disabled = self.state.store.broadcast_disabled();
        if disabled == self.disabled {
            return false;
        }
        self.disabled = disabled;
        self.send_full().await;
        true
    }

    /// Queues the full answer (of the users this stream is about).
    async fn send_full(&mut self) {
        // Boxed: this rare path's future is the largest a stream awaits, and
        // inline it would be part of every idle stream's waiting future.
        let (cursor, body) = Box::pin(answer(&self.state, None, &self.interest)).await;
        self.at = cursor;
        self.queue_answer(cursor, body, false);
    }

    fn queue_answer(&mut self, cursor: Cursor, body: Bytes, first: bool) {
        self.permit.hub().metrics.events.inc();
        self.out.extend(sse::answer_around(cursor, body, first));
        self.told = cursor;
    }

    fn queue(&mut self, event: Bytes) {
        self.permit.hub().metrics.events.inc();
        self.out.push_back(event);
    }

    fn end(&mut self, goodbye: Goodbye) {
        self.queue(goodbye.event());
        self.ended = true;
    }
}

/// True if and only if everything up to `cursor` is covered by `at`: same
/// epoch and not ahead (a cursor of another epoch is never covered).
fn covers(at: Cursor, cursor: Cursor) -> bool {
    at.epoch() == cursor.epoch() && cursor.seq() <= at.seq()
}

//! The one task that follows the store's change log for every stream: a
//! change is rendered here once, whatever the number of streams.

use super::{sse, StreamHub};
use crate::api::plan::Answer;
use crate::store::{Cursor, Lagged, Store, UserView};
use actix_web::web::Bytes;
use std::sync::Arc;

/// What the follower sends to every stream.
#[derive(Debug)]
pub enum Batch {
    /// The users changed after the previous batch, up to `cursor`, each once
    /// as it is now (deleted ones as their tombstone); `event` is the answer
    /// event of them all, for the streams that want everyone.
    Changes {
        cursor: Cursor,
        users: Vec<Arc<UserView>>,
        event: Bytes,
    },
    /// The follower cannot prove what changed since its previous batch (a
    /// replica's log was rebased, or the log lapped the follower): a stream
    /// behind `cursor` sends its full answer.
    Reset { cursor: Cursor },
    /// The server is shutting down: every stream says goodbye and ends.
    Shutdown,
}

impl Batch {
    fn changes(users: Vec<Arc<UserView>>, cursor: Cursor) -> Batch {
        let json = Answer::partial(users.clone(), cursor).render();
        Batch::Changes {
            cursor,
            users,
            event: sse::answer(cursor, &json),
        }
    }
}

/// Follows `store`'s log for `hub`'s streams until dropped (run it as a
/// `BackgroundTask`). Batches are at least `stream.batch_interval` apart, so
/// a burst of changes costs every stream one event, not one per change.
pub async fn follow(store: Store, hub: Arc<StreamHub>) {
    let interval = hub.settings.batch_interval;
    let mut at = store.cursor();
    loop {
        store.moved_from(at).await;
        // The head is read before the streams are counted: a stream that
        // subscribes after the count reads its first answer after this read,
        // so what is skipped here for want of listeners is in that answer.
        let head = store.cursor();
        if !hub.has_subscribers() {
            at = head;
            continue;
        }
        match store.changed_since(at, |_| true) {
            Ok(delta) => {
                at = delta.cursor;
                if !delta.users.is_empty() {
                    hub.send(Batch::changes(delta.users, delta.cursor));
                }
            }
            Err(Lagged) => {
                at = head;
                hub.send(Batch::Reset { cursor: head });
            }
        }
        if !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
    }
}

//! Clients' tokens checked with the chat server: the first request with a
//! token asks `GET /api/v1/me`, later ones are answered from a bounded cache.
//!
//! A cached verdict is kept under the SHA-256 of the user id and the token, so
//! no token is held in memory. An accepted token is trusted for the positive
//! TTL (so a logout upstream is honoured here within it), a refused one stays
//! refused for the negative TTL. Concurrent requests with the same unknown
//! token share one question in flight (a per-key [`OnceCell`]): a burst makes
//! one upstream call. A chat server that cannot be asked gives
//! [`Verdict::Unavailable`], which is never cached, so a cached token keeps
//! working until its TTL and an unseen one is never let in.

use crate::store::Caller;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// What the chat server said of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The token is a live login of this caller.
    Accepted(Caller),
    /// The chat server refused it (or it could never be valid).
    Refused,
    /// The chat server could not be asked, or answered something unusable.
    Unavailable,
}

type Key = [u8; 32];

/// A verdict and when it arrived.
#[derive(Debug)]
struct Answered {
    verdict: Verdict,
    at: Instant,
}

/// A verdict, or the question in flight that every waiter shares.
type Slot = Arc<OnceCell<Answered>>;

/// The cache of verdicts, at most `capacity` of them.
#[derive(Debug)]
pub struct TokenCache {
    positive_ttl: Duration,
    negative_ttl: Duration,
    capacity: usize,
    // A plain map under a mutex held only to find or insert a slot, never
    // across an await: the wait for an answer happens on the slot itself.
    slots: Mutex<HashMap<Key, Slot>>,
}

impl TokenCache {
    pub fn new(positive_ttl: Duration, negative_ttl: Duration, capacity: usize) -> TokenCache {
        TokenCache {
            positive_ttl,
            negative_ttl,
            capacity: capacity.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Returns the verdict on `token` for `user_id`: cached if fresh, else
    /// from `ask`, which runs once however many callers wait for it.
    pub async fn check<F, Fut>(&self, user_id: &str, token: &str, ask: F) -> Verdict
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Verdict>,
    {
        let key = key_of(user_id, token);
        let slot = self.slot(key, Instant::now());
        let answered = slot
            .get_or_init(|| async {
                let verdict = ask().await;
                Answered {
                    verdict,
                    at: Instant::now(),
                }
            })
            .await;
        let verdict = answered.verdict.clone();
        if verdict == Verdict::Unavailable {
            self.forget(&key, &slot);
        }
        verdict
    }

    /// Returns how many verdicts and questions in flight are held.
    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    /// Returns true if and only if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The slot for `key`: the fresh or pending one, else a new empty one.
    fn slot(&self, key: Key, now: Instant) -> Slot {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get(&key) {
            if slot.get().is_none_or(|a| !self.expired(a, now)) {
                return Arc::clone(slot);
            }
        } else if slots.len() >= self.capacity {
            self.make_room(&mut slots, now);
        }
        let slot = Slot::default();
        slots.insert(key, Arc::clone(&slot));
        slot
    }

    fn expired(&self, answered: &Answered, now: Instant) -> bool {
        let ttl = match answered.verdict {
            Verdict::Accepted(_) => self.positive_ttl,
            Verdict::Refused => self.negative_ttl,
            Verdict::Unavailable => Duration::ZERO,
        };
        now.saturating_duration_since(answered.at) >= ttl
    }

    /// Drops the expired verdicts; if the cache is still over 90 % full, drops
    /// answered ones (in the map's arbitrary order) down to that, so that the
    /// scan is paid once per tenth of the capacity rather than on every insert.
    /// Questions in flight are kept: their waiters still hold them anyway.
    fn make_room(&self, slots: &mut HashMap<Key, Slot>, now: Instant) {
        slots.retain(|_, slot| slot.get().is_none_or(|a| !self.expired(a, now)));
        let target = self.capacity - self.capacity.div_ceil(10);
        if slots.len() > target {
            let excess = slots.len() - target;
            let victims: Vec<Key> = slots
                .iter()
                .filter(|(_, slot)| slot.initialized())
                .map(|(key, _)| *key)
                .take(excess)
                .collect();
            for key in victims {
                slots.remove(&key);
            }
        }
    }

    /// Removes `slot` if it is still the one held for `key`.
    fn forget(&self, key: &Key, slot: &Slot) {
        let mut slots = self.slots.lock();
        if slots.get(key).is_some_and(|held| Arc::ptr_eq(held, slot)) {
            slots.remove(key);
        }
    }
}

/// SHA-256 of the id, a separator no id contains, and the token.
fn key_of(user_id: &str, token: &str) -> Key {
    let mut hasher = Sha256::new();
    hasher.update(user_id.as_bytes());
    hasher.update([0]);
    hasher.update(token.as_bytes());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{UserId, Username};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const POSITIVE: Duration = Duration::from_secs(60);
    const NEGATIVE: Duration = Duration::from_secs(10);

    fn caller(id: &str) -> Caller {
        Caller {
            id: UserId::parse(id).unwrap(),
            username: Username::parse(id).unwrap(),
            is_admin: false,
        }
    }

    /// Checks `token` of `id` with an upstream that answers `verdict` after a
    /// second, counting its calls in `calls`.
    async fn check(
        cache: &TokenCache,
        calls: &AtomicUsize,
        id: &str,
        token: &str,
        verdict: Verdict,
    ) -> Verdict {
        cache
            .check(id, token, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                verdict
            })
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_one_unknown_token_asks_once() {
        let cache = TokenCache::new(POSITIVE, NEGATIVE, 100);
        let calls = AtomicUsize::new(0);
        let accepted = Verdict::Accepted(caller("u1"));
        let burst = (0..50).map(|_| check(&cache, &calls, "u1", "t", accepted.clone()));
        let verdicts = futures_util::future::join_all(burst).await;
        assert!(verdicts.iter().all(|v| *v == accepted));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let refused = (0..50).map(|_| check(&cache, &calls, "u1", "other", Verdict::Refused));
        let verdicts = futures_util::future::join_all(refused).await;
        assert!(verdicts.iter().all(|v| *v == Verdict::Refused));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn verdicts_are_kept_for_their_own_ttl() {
        let cache = TokenCache::new(POSITIVE, NEGATIVE, 100);
        let calls = AtomicUsize::new(0);
        let accepted = Verdict::Accepted(caller("u1"));
        check(&cache, &calls, "u1", "good", accepted.clone()).await;
        check(&cache, &calls, "u1", "bad", Verdict::Refused).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Now t = 2 s: "good" was answered at 1 s, "bad" at 2 s. Until each TTL
        // ends, the cached verdict answers, whatever upstream would say now.
        tokio::time::advance(NEGATIVE - Duration::from_millis(1)).await;
        assert_eq!(
            check(&cache, &calls, "u1", "bad", Verdict::Unavailable).await,
            Verdict::Refused
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            check(&cache, &calls, "u1", "bad", accepted.clone()).await,
            accepted
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Now t = 13 s; "good" expires at 61 s.
        tokio::time::advance(Duration::from_millis(47_999)).await;
        assert_eq!(
            check(&cache, &calls, "u1", "good", Verdict::Refused).await,
            accepted
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            check(&cache, &calls, "u1", "good", Verdict::Refused).await,
            Verdict::Refused
        );
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unavailable_upstream_is_asked_again_and_never_lets_an_unseen_token_in() {
        let cache = TokenCache::new(POSITIVE, NEGATIVE, 100);
        let calls = AtomicUsize::new(0);
        let burst = (0..10).map(|_| check(&cache, &calls, "u1", "t", Verdict::Unavailable));
        let verdicts = futures_util::future::join_all(burst).await;
        assert!(verdicts.iter().all(|v| *v == Verdict::Unavailable));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the burst still shares one call"
        );
        assert!(cache.is_empty());
        check(&cache, &calls, "u1", "t", Verdict::Unavailable).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_token_of_another_user_is_another_question() {
        let cache = TokenCache::new(POSITIVE, NEGATIVE, 100);
        let calls = AtomicUsize::new(0);
        check(&cache, &calls, "u1", "t", Verdict::Accepted(caller("u1"))).await;
        assert_eq!(
            check(&cache, &calls, "u2", "t", Verdict::Refused).await,
            Verdict::Refused
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_stays_within_its_capacity() {
        let cache = TokenCache::new(POSITIVE, NEGATIVE, 20);
        let calls = AtomicUsize::new(0);
        for i in 0..200 {
            check(&cache, &calls, "u1", &format!("t{i}"), Verdict::Refused).await;
            assert!(cache.len() <= 20, "{} held", cache.len());
        }
        // The newest verdict survived the evictions.
        check(
            &cache,
            &calls,
            "u1",
            "t199",
            Verdict::Accepted(caller("u1")),
        )
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 200);
    }
}

//! Token-bucket rate limits keyed by user or client address, in bounded memory.
//!
//! A bucket holds up to `limit` tokens and refills at `limit` per period; a
//! request takes one. A bucket is kept as a single number, the moment it will be
//! full again (the "theoretical arrival time" of GCRA), so taking, peeking and
//! refilling are arithmetic on one `u64` and a full bucket needs no entry at all.
//!
//! Time is passed in by the caller, in milliseconds of a monotonic clock, so the
//! refill is tested with made-up instants ([`Clock`] is the real one).
//!
//! Memory is bounded: each of the [`SHARDS`] tables holds at most its share of
//! `max_keys` entries. A table that is full first drops every entry whose bucket
//! has refilled (it means nothing any more); if every one is still draining, one
//! arbitrary entry is dropped, which forgives that key early rather than letting
//! an attack with ever new addresses or users grow the table without end.
//!
//! Why not `governor`, which implements the same GCRA: its keyed limiter has no
//! way to look at a bucket without taking a token (the failed-login budget is
//! checked on every request and spent only on a 401), no bound on the keys it
//! holds (only a `retain_recent` to call from outside), and every check costs a
//! map lookup, where [`RateLimiter::may_refuse_now`] answers the common case with
//! one atomic load. Those three are most of this module's 250 lines.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Tables per limiter, so concurrent requests for different keys rarely share a lock.
pub const SHARDS: usize = 16;

/// Most keys a limiter tracks by default: a few MiB at most.
pub const DEFAULT_MAX_KEYS: usize = 65_536;

/// How many requests a bucket allows per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    limit: u32,
    /// Milliseconds to refill one token: `period / limit`.
    interval_ms: u64,
}

impl Quota {
    /// `limit` requests per minute, or `None` when `limit` is 0 (the limit is off).
    pub fn per_minute(limit: u32) -> Option<Quota> {
        Quota::new(limit, Duration::from_secs(60))
    }

    /// `limit` requests per `period`, or `None` when `limit` is 0.
    pub fn new(limit: u32, period: Duration) -> Option<Quota> {
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        (limit > 0).then(|| Quota {
            limit,
            interval_ms: (period_ms / u64::from(limit)).max(1),
        })
    }

    /// Returns the most requests a full bucket allows at once.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Milliseconds until a bucket whose full moment is `full_at` holds a token
    /// (0 if it holds one now).
    fn wait_ms(&self, full_at: u64, now: u64) -> u64 {
        let debt = full_at.saturating_sub(now);
        let allowed_debt = self.interval_ms * u64::from(self.limit - 1);
        debt.saturating_sub(allowed_debt)
    }

    /// Tokens a bucket whose full moment is `full_at` holds at `now`.
    fn tokens(&self, full_at: u64, now: u64) -> u32 {
        let missing = full_at.saturating_sub(now).div_ceil(self.interval_ms);
        let missing = u32::try_from(missing).unwrap_or(u32::MAX);
        self.limit.saturating_sub(missing)
    }
}

/// What a limiter decided, with what the `X-RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go ahead (a token was taken, or a peek found one).
    pub allowed: bool,
    /// The bucket's size.
    pub limit: u32,
    /// Tokens left after this request.
    pub remaining: u32,
    /// Milliseconds until the bucket is full again.
    pub reset_in_ms: u64,
    /// Milliseconds until a token is there, when refused (else 0).
    pub retry_in_ms: u64,
}

impl Decision {
    fn of(quota: Quota, full_at: u64, now: u64, allowed: bool) -> Decision {
        Decision {
            allowed,
            limit: quota.limit,
            remaining: quota.tokens(full_at, now),
            reset_in_ms: full_at.saturating_sub(now),
            retry_in_ms: if allowed {
                0
            } else {
                quota.wait_ms(full_at, now)
            },
        }
    }

    /// Whole seconds to wait before a retry can succeed, rounded up (at least 1 when refused).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_in_ms.div_ceil(1000)
    }
}

/// One bucket per key, in bounded memory (see the module doc).
#[derive(Debug)]
pub struct RateLimiter<K> {
    quota: Quota,
    hasher: foldhash::fast::RandomState,
    shards: Box<[Mutex<HashMap<K, u64, foldhash::fast::RandomState>>]>,
    max_keys_per_shard: usize,
    /// The latest moment any bucket may still be empty: before it, [`RateLimiter::refuses`]
    /// must look; from it on, every bucket holds a token and it answers without a lock.
    /// 0 once every bucket is known to hold a token, so a check needs no clock.
    empty_until: AtomicU64,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter applying `quota` to each key, tracking at most about `max_keys` keys.
    pub fn new(quota: Quota, max_keys: usize) -> RateLimiter<K> {
        RateLimiter {
            quota,
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            max_keys_per_shard: max_keys.div_ceil(SHARDS).max(1),
            empty_until: AtomicU64::new(0),
        }
    }

    /// Returns the quota each key gets.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    fn shard(&self, key: &K) -> &Mutex<HashMap<K, u64, foldhash::fast::RandomState>> {
        // The remainder is below SHARDS, so it fits in usize.
        &self.shards[(self.hasher.hash_one(key) % SHARDS as u64) as usize]
    }

    /// Takes a token from `key`'s bucket at `now` if it has one.
    pub fn take(&self, key: &K, now: u64) -> Decision {
        let quota = self.quota;
        let mut table = self.shard(key).lock();
        let full_at = table.get(key).copied().unwrap_or(0);
        if quota.wait_ms(full_at, now) > 0 {
            return Decision::of(quota, full_at, now, false);
        }
        let full_at = full_at.max(now) + quota.interval_ms;
        match table.get_mut(key) {
            Some(entry) => *entry = full_at,
            None => {
                if table.len() >= self.max_keys_per_shard {
                    self.make_room(&mut table, now);
                }
                table.insert(key.clone(), full_at);
            }
        }
        drop(table);
        if quota.wait_ms(full_at, now) > 0 {
            // Empty now: until it refills one token, `refuses` must look it up.
            let refill = now + quota.wait_ms(full_at, now);
            self.empty_until.fetch_max(refill, Ordering::Relaxed);
        }
        Decision::of(quota, full_at, now, true)
    }

    /// Reports `key`'s bucket at `now` without taking a token.
    pub fn peek(&self, key: &K, now: u64) -> Decision {
        let full_at = self.shard(key).lock().get(key).copied().unwrap_or(0);
        let allowed = self.quota.wait_ms(full_at, now) == 0;
        Decision::of(self.quota, full_at, now, allowed)
    }

    /// Returns false if every bucket holds a token at `now`, so that no key can
    /// be refused: one atomic load, no lock. True means "look the key up".
    pub fn may_refuse(&self, now: u64) -> bool {
        now < self.empty_until.load(Ordering::Relaxed)
    }

    /// [`RateLimiter::may_refuse`] at the time `clock` tells, which it asks only if
    /// some bucket was emptied since the last check that found them all refilled:
    /// the time to look keys up at, or `None` if no key can be refused. The check
    /// runs on every authenticated request, and a clock read costs more than the load.
    pub fn may_refuse_now(&self, clock: impl FnOnce() -> u64) -> Option<u64> {
        let until = self.empty_until.load(Ordering::Relaxed);
        if until == 0 {
            return None;
        }
        let now = clock();
        if now < until {
            return Some(now);
        }
        // All refilled. A bucket emptied meanwhile raised `until`, so this fails and
        // the next check reads the clock again.
        let _ = self
            .empty_until
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        None
    }

    /// Returns the refusal if `key`'s bucket is empty at `now`, without taking a
    /// token. Costs one atomic load unless some bucket was emptied recently.
    pub fn refuses(&self, key: &K, now: u64) -> Option<Decision> {
        if !self.may_refuse(now) {
            return None;
        }
        Some(self.peek(key, now)).filter(|d| !d.allowed)
    }

    /// Returns how many keys are tracked.
    pub fn tracked(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    fn make_room(&self, table: &mut HashMap<K, u64, foldhash::fast::RandomState>, now: u64) {
        table.retain(|_, full_at| *full_at > now);
        if table.len() >= self.max_keys_per_shard {
            if let Some(victim) = table.keys().next().cloned() {
                table.remove(&victim);
            }
        }
    }
}

/// Milliseconds on a monotonic clock for the limiters, and the wall clock for
/// the `X-RateLimit-Reset` header.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }
}

impl Clock {
    /// Milliseconds since this clock started; never goes back.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(limit: u32, period_secs: u64) -> RateLimiter<&'static str> {
        let quota = Quota::new(limit, Duration::from_secs(period_secs)).unwrap();
        RateLimiter::new(quota, DEFAULT_MAX_KEYS)
    }

    #[test]
    fn a_zero_limit_is_no_limit() {
        assert_eq!(Quota::per_minute(0), None);
        assert_eq!(Quota::per_minute(5).map(|q| q.limit()), Some(5));
    }

    #[test]
    fn a_full_bucket_allows_its_limit_at_once_then_refuses_until_a_token_refills() {
        let five = limiter(5, 60);
        let remaining: Vec<u32> = (0..5).map(|_| five.take(&"u", 1_000).remaining).collect();
        assert_eq!(remaining, [4, 3, 2, 1, 0]);
        let refused = five.take(&"u", 1_000);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_in_ms, 12_000);
        assert_eq!(refused.retry_after_secs(), 12);
        assert_eq!(refused.reset_in_ms, 60_000);
        // One interval later exactly one token is back.
        assert!(!five.take(&"u", 12_999).allowed);
        let again = five.take(&"u", 13_000);
        assert!(again.allowed);
        assert_eq!(again.remaining, 0);
        // A full period of quiet refills the whole bucket.
        let later = five.peek(&"u", 13_000 + 60_000);
        assert_eq!(
            (later.allowed, later.remaining, later.reset_in_ms),
            (true, 5, 0)
        );
    }

    #[test]
    fn keys_have_buckets_of_their_own() {
        let one = limiter(1, 60);
        assert!(one.take(&"a", 0).allowed);
        assert!(!one.take(&"a", 0).allowed);
        assert!(one.take(&"b", 0).allowed);
    }

    #[test]
    fn refusals_do_not_take_tokens_so_waiting_is_enough() {
        let two = limiter(2, 10);
        two.take(&"k", 0);
        two.take(&"k", 0);
        for _ in 0..100 {
            assert!(!two.take(&"k", 1_000).allowed);
        }
        assert!(two.take(&"k", 5_000).allowed);
    }

    #[test]
    fn peek_reports_without_taking() {
        let three = limiter(3, 30);
        let fresh = three.peek(&"k", 0);
        assert_eq!((fresh.allowed, fresh.remaining, fresh.limit), (true, 3, 3));
        three.take(&"k", 0);
        assert_eq!(three.peek(&"k", 0).remaining, 2);
        assert_eq!(three.peek(&"k", 0).remaining, 2);
        // Partly refilled: 5 s of a 10 s interval is not a token yet.
        assert_eq!(three.peek(&"k", 5_000).remaining, 2);
        assert_eq!(three.peek(&"k", 10_000).remaining, 3);
    }

    #[test]
    fn refuses_answers_only_for_an_empty_bucket() {
        let two = limiter(2, 60);
        assert_eq!(two.refuses(&"k", 0), None);
        two.take(&"k", 0);
        assert_eq!(two.refuses(&"k", 0), None);
        two.take(&"k", 0);
        assert!(two.may_refuse(0));
        let refusal = two.refuses(&"k", 0).expect("empty");
        assert_eq!(refusal.retry_in_ms, 30_000);
        assert_eq!(two.refuses(&"other", 0), None);
        assert_eq!(two.refuses(&"k", 30_000), None);
        assert!(!two.may_refuse(30_000));
    }

    #[test]
    fn may_refuse_now_reads_the_clock_only_while_a_bucket_may_be_empty() {
        let two = limiter(2, 60);
        let unread = || -> u64 { panic!("no bucket was emptied: the clock must not be read") };
        assert_eq!(two.may_refuse_now(unread), None);
        two.take(&"k", 0);
        two.take(&"k", 0);
        assert_eq!(two.may_refuse_now(|| 10), Some(10));
        // Refilled by 30 s: found so once, then no clock again.
        assert_eq!(two.may_refuse_now(|| 30_000), None);
        assert_eq!(two.may_refuse_now(unread), None);
        // Emptied again: looked up again.
        two.take(&"k", 40_000);
        two.take(&"k", 40_000);
        assert_eq!(two.may_refuse_now(|| 40_001), Some(40_001));
    }

    #[test]
    fn the_tables_stay_bounded_and_drop_refilled_buckets_first() {
        let quota = Quota::per_minute(1).unwrap();
        let limiter: RateLimiter<u32> = RateLimiter::new(quota, SHARDS * 4);
        for key in 0..10_000 {
            limiter.take(&key, 0);
        }
        assert!(limiter.tracked() <= SHARDS * 4, "{}", limiter.tracked());
        // Every bucket has refilled by now: the first new key in each table drops them all.
        let shard_of = |key: &u32| limiter.hasher.hash_one(key) % SHARDS as u64;
        let mut touched = std::collections::HashSet::new();
        let mut key = 10_000;
        while touched.len() < SHARDS && key < 1_000_000 {
            limiter.take(&key, 60_000);
            touched.insert(shard_of(&key));
            key += 1;
        }
        assert_eq!(touched.len(), SHARDS);
        assert!(limiter.tracked() <= SHARDS * 4);
        let old_kept = (0..10_000)
            .filter(|k| limiter.shard(k).lock().contains_key(k))
            .count();
        assert_eq!(old_kept, 0);
    }

    #[test]
    fn quotas_of_odd_sizes_round_their_interval_down_and_never_to_zero() {
        let seven = Quota::per_minute(7).unwrap();
        assert_eq!(seven.interval_ms, 8_571);
        let many = Quota::new(10_000, Duration::from_millis(1)).unwrap();
        assert_eq!(many.interval_ms, 1);
    }
}

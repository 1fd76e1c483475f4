//! The service's two rate limits, and how HTTP answers report them.
//!
//! - `users.setStatus` with a `message`, per target user (`limits.set_status_per_minute`,
//!   5 by default: upstream limits `setStatusText` to 5 calls a minute per user).
//! - Failed logins of the public API, per client address (`limits.failed_auth_per_minute`,
//!   30 by default). An address that spent its budget gets 429 on every public route,
//!   good credentials or not, until a token refills: otherwise a guess that happened to be
//!   right would still tell itself apart from the refusals.
//!
//! Answers that consulted a limiter carry `X-RateLimit-Limit`, `X-RateLimit-Remaining`
//! and `X-RateLimit-Reset` (ms since the epoch when the bucket is full again, as
//! Rocket.Chat sends it); refusals add `Retry-After` in seconds.

use super::client_ip::client_ip;
use super::error::{ApiError, RateLimitHeaders};
use crate::config::LimitSettings;
use crate::domain::UserId;
use crate::rate_limit::{Clock, Decision, Quota, RateLimiter, DEFAULT_MAX_KEYS};
use actix_web::HttpRequest;
use std::hash::Hash;
use std::net::IpAddr;

fn limiter<K: Hash + Eq + Clone>(per_minute: u32) -> Option<RateLimiter<K>> {
    Quota::per_minute(per_minute).map(|quota| RateLimiter::new(quota, DEFAULT_MAX_KEYS))
}

/// The limiters; each is `None` when its limit is 0 (off).
#[derive(Debug, Default)]
pub struct RateLimits {
    set_status: Option<RateLimiter<UserId>>,
    failed_auth: Option<RateLimiter<IpAddr>>,
    forwarded_for_hops: usize,
    clock: Clock,
}

impl RateLimits {
    /// The limits `settings` ask for.
    pub fn new(settings: &LimitSettings) -> RateLimits {
        RateLimits {
            set_status: limiter(settings.set_status_per_minute),
            failed_auth: limiter(settings.failed_auth_per_minute),
            forwarded_for_hops: settings.forwarded_for_hops,
            clock: Clock::default(),
        }
    }

    fn headers(&self, decision: &Decision) -> RateLimitHeaders {
        let wall_ms = u64::try_from(crate::clock::wall_ms()).unwrap_or(0);
        RateLimitHeaders::of(decision, wall_ms)
    }

    /// Takes a token of `user`'s status-message budget: the headers to answer
    /// with, or the 429 if it is spent.
    pub fn take_set_status(&self, user: &UserId) -> Result<Option<RateLimitHeaders>, ApiError> {
        let Some(limiter) = &self.set_status else {
            return Ok(None);
        };
        let decision = limiter.take(user, self.clock.now_ms());
        let headers = self.headers(&decision);
        if decision.allowed {
            Ok(Some(headers))
        } else {
            Err(ApiError::too_many_requests(headers))
        }
    }

    /// The headers of `user`'s status-message budget, without spending any.
    pub fn peek_set_status(&self, user: &UserId) -> Option<RateLimitHeaders> {
        let limiter = self.set_status.as_ref()?;
        Some(self.headers(&limiter.peek(user, self.clock.now_ms())))
    }

    /// Refuses with 429 a client whose failed-login budget is spent.
    pub fn admit_client(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let Some(limiter) = &self.failed_auth else {
            return Ok(());
        };
        // Checked first so that a request reads the clock and finds its client
        // address (which may parse a header) only while some client may be refused.
        let Some(now) = limiter.may_refuse_now(|| self.clock.now_ms()) else {
            return Ok(());
        };
        let client = client_ip(req, self.forwarded_for_hops);
        match limiter.refuses(&client, now) {
            Some(refusal) => Err(ApiError::too_many_requests(self.headers(&refusal))),
            None => Ok(()),
        }
    }

    /// Counts a failed login of the client of `req` and returns the answer: the
    /// 401 with the budget's headers, or the 429 if this failure found it spent.
    pub fn failed_login(&self, req: &HttpRequest) -> ApiError {
        let Some(limiter) = &self.failed_auth else {
            return ApiError::login_required();
        };
        let client = client_ip(req, self.forwarded_for_hops);
        let decision = limiter.take(&client, self.clock.now_ms());
        let headers = self.headers(&decision);
        if decision.allowed {
            ApiError::login_required().with_rate_limit(Some(headers))
        } else {
            ApiError::too_many_requests(headers)
        }
    }
}

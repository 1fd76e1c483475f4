//! Upstream mode (`upstream.url`): presenced in front of an unmodified Rocket.Chat.
//!
//! # Design
//!
//! - **The chat server holds the truth.** On start, and after every
//!   reconnection, the follower takes the full picture from the chat server's
//!   own `GET /api/v1/users.presence` (every user not offline, with the fields
//!   the answer shows), then follows `stream-notify-logged` / `user-status`
//!   over its realtime API (DDP over WebSocket). See [`follower`].
//! - **Each upstream fact is an ingest write.** A snapshot entry or an event
//!   becomes `Op::PutUser` (profile) and `Op::SetStatus` (status and text)
//!   applied to the store, the path `/internal/v1` takes, so the change log,
//!   deltas, cursors and ETags behave exactly as with a pusher. A write that
//!   changes nothing visible logs nothing, which is what makes a resync write
//!   only the differences; a user missing from a new picture is set offline.
//! - **Tokens are checked upstream** ([`auth`]): `GET /api/v1/me` with the
//!   client's headers, the verdict cached under the SHA-256 of id and token,
//!   one call per unknown token however many requests carry it.
//! - **Upstream unreachable**: answers keep coming from the last known state,
//!   `/ready` says 503, metrics show it; the follower retries with capped,
//!   jittered backoff. Bad input from upstream is counted by kind, logged once
//!   per kind and skipped ([`BadInput`]).
//!
//! `docs/rocketchat.md` is the operator's side of all this.

pub mod auth;
pub mod ddp;
mod follower;
mod metrics;
pub mod rest;
mod sync;

pub use auth::Verdict;
pub use metrics::BadInput;

use crate::background::BackgroundTask;
use crate::config::{Settings, UpstreamSettings};
use crate::metrics::Metrics;
use crate::store::Store;
use auth::TokenCache;
use metrics::UpstreamMetrics;
use parking_lot::Mutex;
use rest::Rest;
use std::sync::Arc;
use std::time::Duration;

/// How the follower reaches the chat server, fixed at start-up.
#[derive(Debug, Clone)]
struct Link {
    /// `ws(s)://…/websocket`, from `upstream.url`.
    websocket: String,
    /// The service account's login (resume) token.
    token: String,
    reconnect_min: Duration,
    reconnect_max: Duration,
    request_timeout: Duration,
    heartbeat: Duration,
}

#[derive(Debug)]
struct Shared {
    link: Link,
    rest: Rest,
    store: Store,
    tokens: TokenCache,
    metrics: UpstreamMetrics,
    /// Why the store may not be following the chat server right now, if so.
    problem: Mutex<Option<String>>,
}

/// The handle to upstream mode. Cloning it is cheap.
#[derive(Debug, Clone)]
pub struct Upstream {
    shared: Arc<Shared>,
}

/// Returns why upstream mode cannot start with these settings, naming the
/// other key, if it cannot: another source of truth (cluster mode, the ingest
/// API, `--demo`), a setting the chat server owns in this mode
/// (`presence.allow_invisible`), or no service account with the URL.
pub fn conflict(settings: &Settings, demo: bool) -> Option<&'static str> {
    let up = &settings.upstream;
    up.url.as_ref()?;
    if up.user_id.is_none() || up.token.is_none() {
        Some(
            "upstream.user_id and upstream.token (the service account) are required with it: \
             set both, or unset upstream.url",
        )
    } else if settings.cluster.redis_url.is_some() {
        Some(
            "cluster.redis_url is set: a cluster and a chat server cannot both hold the truth; \
             unset one of them",
        )
    } else if settings.ingest.token.is_some() {
        Some(
            "ingest.token is set: in upstream mode the chat server's realtime API is the only \
             writer, so the internal API stays off; unset one of them",
        )
    } else if demo {
        Some("--demo seeds and churns users of its own: unset upstream.url to run the demo")
    } else if !settings.presence.allow_invisible {
        Some(
            "presence.allow_invisible is false: in upstream mode the chat server decides who may \
             be invisible (its Accounts_AllowInvisibleStatusOption); leave it true",
        )
    } else {
        None
    }
}

impl Shared {
    fn bad_input(&self) -> &BadInput {
        &self.metrics.bad_input
    }
}

impl Upstream {
    /// Prepares upstream mode for `store` if `settings.url` is set, its
    /// metrics registered in `metrics`; nothing connects until [`Upstream::spawn`].
    /// [`conflict`] must have found none.
    ///
    /// # Errors
    /// When the HTTP client cannot be built or a metric cannot be registered.
    pub fn new(
        settings: &UpstreamSettings,
        store: Store,
        metrics: &Metrics,
    ) -> Result<Option<Upstream>, String> {
        let (Some(url), Some(user_id), Some(token)) =
            (&settings.url, &settings.user_id, &settings.token)
        else {
            return Ok(None);
        };
        let websocket = match url.strip_prefix("https://") {
            Some(rest) => format!("wss://{rest}/websocket"),
            None => format!("ws://{}/websocket", url.trim_start_matches("http://")),
        };
        let rest = Rest::new(url, user_id, token, settings.request_timeout)
            .map_err(|e| format!("upstream: cannot build the HTTP client: {e}"))?;
        let upstream_metrics = UpstreamMetrics::new()
            .and_then(|m| m.register(metrics).map(|()| m))
            .map_err(|e| format!("upstream: cannot register its metrics: {e}"))?;
        Ok(Some(Upstream {
            shared: Arc::new(Shared {
                link: Link {
                    websocket,
                    token: token.clone(),
                    reconnect_min: settings.reconnect_min,
                    reconnect_max: settings.reconnect_max,
                    request_timeout: settings.request_timeout,
                    heartbeat: settings.heartbeat,
                },
                tokens: TokenCache::new(
                    settings.auth_positive_ttl,
                    settings.auth_negative_ttl,
                    settings.auth_cache_size,
                ),
                rest,
                store,
                metrics: upstream_metrics,
                problem: Mutex::new(Some(
                    "upstream: the chat server's full picture is not taken yet".to_owned(),
                )),
            }),
        }))
    }

    /// Starts following the chat server; stops when the guard is dropped.
    pub fn spawn(&self) -> BackgroundTask {
        BackgroundTask::spawn(follower::follow(self.clone()))
    }

    /// Why the store is not following the chat server (not loaded yet, or the
    /// link is down), if so; `/ready` answers 503 with it.
    pub fn problem(&self) -> Option<String> {
        self.shared.problem.lock().clone()
    }

    fn set_problem(&self, problem: Option<String>) {
        self.shared
            .metrics
            .connected
            .set(i64::from(problem.is_none()));
        *self.shared.problem.lock() = problem;
    }

    /// Returns the tally of bad input from the chat server.
    pub fn bad_input(&self) -> &BadInput {
        self.shared.bad_input()
    }

    /// Checks a client's `X-User-Id` / `X-Auth-Token` with the chat server,
    /// or from the cache of its earlier answers.
    pub async fn authenticate(&self, user_id: &str, token: &str) -> Verdict {
        let shared = &self.shared;
        shared
            .tokens
            .check(user_id, token, || async {
                let verdict = shared.rest.me(user_id, token).await;
                shared.metrics.auth_call(&verdict);
                verdict
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream_settings() -> Settings {
        let mut settings = Settings::default();
        settings.upstream.url = Some("http://rocketchat:3000".to_owned());
        settings.upstream.user_id = Some("svc".to_owned());
        settings.upstream.token = Some("tok".to_owned());
        settings
    }

    #[test]
    fn upstream_mode_refuses_another_source_of_truth_and_names_both_keys() {
        assert_eq!(conflict(&upstream_settings(), false), None);
        assert_eq!(conflict(&Settings::default(), true), None);
        let mut cluster = upstream_settings();
        cluster.cluster.redis_url = Some("redis://r".to_owned());
        let mut ingest = upstream_settings();
        ingest.ingest.token = Some("secret".to_owned());
        let mut invisible = upstream_settings();
        invisible.presence.allow_invisible = false;
        let mut account = upstream_settings();
        account.upstream.token = None;
        for (settings, demo, second) in [
            (&cluster, false, "cluster.redis_url"),
            (&ingest, false, "ingest.token"),
            (&upstream_settings(), true, "--demo"),
            (&invisible, false, "presence.allow_invisible"),
            (&account, false, "upstream.token"),
        ] {
            let why = conflict(settings, demo).expect("refused");
            assert!(why.contains(second), "{why}");
        }
    }

    #[test]
    fn the_websocket_url_follows_the_base_url() {
        let store = Store::new(&crate::store::StoreOptions::default());
        let metrics = Metrics::new(store.clone()).unwrap();
        let settings = upstream_settings().upstream;
        let upstream = Upstream::new(&settings, store.clone(), &metrics)
            .unwrap()
            .unwrap();
        assert_eq!(
            upstream.shared.link.websocket,
            "ws://rocketchat:3000/websocket"
        );
        let mut sub = settings.clone();
        sub.url = Some("http://chat.internal/rc".to_owned());
        let metrics = Metrics::new(store.clone()).unwrap();
        let upstream = Upstream::new(&sub, store.clone(), &metrics)
            .unwrap()
            .unwrap();
        assert_eq!(
            upstream.shared.link.websocket,
            "ws://chat.internal/rc/websocket"
        );
        let off = Settings::default().upstream;
        assert!(Upstream::new(&off, store, &metrics).unwrap().is_none());
    }
}

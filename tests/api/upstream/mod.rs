//! Upstream mode (issue 14): presenced following a stand-in Rocket.Chat
//! (`stand_in`) that speaks its REST routes and DDP over a real WebSocket on
//! a loopback port.

mod auth;
mod following;
pub mod stand_in;

use crate::helpers::*;
use presenced::config::Settings;
use stand_in::{StandIn, SERVICE_ID, SERVICE_TOKEN};
use std::time::Duration;

/// A presenced following `upstream`, with settings of its own, not waited for.
pub async fn spawn_following(upstream: &StandIn, configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.ingest.token = None;
        s.upstream.url = Some(upstream.base.clone());
        s.upstream.user_id = Some(SERVICE_ID.to_owned());
        s.upstream.token = Some(SERVICE_TOKEN.to_owned());
        // Quick reconnections keep the tests short; the cap is still exercised.
        s.upstream.reconnect_min = Duration::from_millis(10);
        s.upstream.reconnect_max = Duration::from_millis(200);
        configure(s);
    })
    .await
}

/// A presenced following `upstream`, ready (the full picture taken).
pub async fn following(upstream: &StandIn) -> TestApp {
    let app = spawn_following(upstream, |_| {}).await;
    crate::cluster::wait_ready(&app).await;
    app
}

/// The `/ready` answer: status and body.
pub async fn ready(app: &TestApp) -> Answer {
    send(app.client.get(app.url("/ready"))).await
}

/// Polls until `/ready` answers `status`.
pub async fn wait_ready_status(app: &TestApp, status: u16) {
    wait_until(&format!("/ready answers {status}"), || async {
        crate::cluster::ready_status(app).await == status
    })
    .await;
}

/// Polls until `/ready` answers 503 with a reason that contains `why`.
pub async fn wait_not_ready_because(app: &TestApp, why: &str) {
    wait_until(&format!("/ready answers 503 because {why}"), || async {
        let answer = ready(app).await;
        answer.status == 503
            && answer.body["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains(why))
    })
    .await;
}

/// The value of metric `series` now (0 when absent).
pub async fn metric(app: &TestApp, series: &str) -> f64 {
    sample(&app.metrics().await, series).unwrap_or(0.0)
}

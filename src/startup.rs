//! The application: loads the snapshot, binds the listener, wires the store
//! into the HTTP server, runs the background tasks, and on SIGTERM/SIGINT
//! drains the server and writes the final snapshot.

use crate::api::fast_path::{self, FastPath};
use crate::background::BackgroundTask;
use crate::cluster::Cluster;
use crate::config::{PresenceSettings, Settings};
use crate::http::cors::{self, CrossOrigin};
use crate::http::head_limits::HeadLimits;
use crate::http::observe::Observe;
use crate::http::rate_limits::RateLimits;
use crate::http::send_timeout;
use crate::http::{not_found, AppState};
use crate::metrics::Metrics;
use crate::persistence::SnapshotFile;
use crate::store::{spawn_sweeper, Store, StoreOptions};
use crate::stream::{self, StreamHub};
use crate::ui::{self, Roster};
use crate::upstream::{self, Upstream};
use crate::{api, demo, ingest, probes};
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{web, App, HttpServer};
use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// What the route table depends on besides the shared state, fixed at start-up.
#[derive(Debug, Clone, Default)]
pub struct RouteOptions {
    /// Which origins may read the public API and the client.
    pub cross_origin: CrossOrigin,
    /// The page served at `/`, if any.
    pub roster: Option<Roster>,
}

impl RouteOptions {
    /// Returns the options `settings` (and `--demo`, which always serves the roster) ask for.
    pub fn new(settings: &Settings, demo: bool) -> RouteOptions {
        RouteOptions {
            cross_origin: CrossOrigin::from_settings(&settings.cors),
            roster: (demo || settings.ui.roster).then(|| Roster::new(demo)),
        }
    }

    /// Mounts every route of the service: one table shared by the server and the tests.
    /// Only the public API and the client answer cross-origin; the internal API and the
    /// probes sit outside those scopes, so they never do.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.service(cors::scope(api::SCOPE, &self.cross_origin).configure(api::configure))
            .service(cors::scope("/client", &self.cross_origin).configure(ui::configure_client))
            .configure(ingest::configure)
            .route("/health", web::get().to(probes::health))
            .route("/ready", web::get().to(probes::ready))
            .route("/metrics", web::get().to(probes::metrics));
        if let Some(roster) = self.roster.clone() {
            cfg.service(
                web::resource("/")
                    .route(web::get().to(move || std::future::ready(roster.respond())))
                    .default_service(web::to(not_found)),
            );
        }
    }
}

/// One worker's application: every route, measured by `observe`, with
/// `GET users.presence` answered before the router while cross-origin access is off
/// (see [`crate::api::fast_path`]). The server and the in-process benches build it here.
pub fn app(
    state: &web::Data<AppState>,
    observe: &Observe,
    options: &RouteOptions,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let fast = options.cross_origin == CrossOrigin::Off;
    App::new()
        // Inside `observe`: the fast path is measured like any route.
        .wrap(FastPath::new(state.clone(), fast))
        .wrap(observe.clone().with_front_route(fast_path::PATH))
        .app_data(state.clone())
        .configure(|cfg| options.configure(cfg))
        .default_service(web::to(not_found))
}

/// Every route with the default options: no cross-origin access, no roster page.
pub fn routes(cfg: &mut web::ServiceConfig) {
    RouteOptions::default().configure(cfg);
}

/// Refuses what cluster mode cannot combine with: a snapshot file (Redis
/// holds the state, and a replica's memory is a copy of it) and `--demo`
/// (whose churn writes to one replica's memory only).
fn refuse_cluster_conflicts(settings: &Settings, demo: bool) -> std::io::Result<()> {
    if settings.cluster.redis_url.is_none() {
        return Ok(());
    }
    let conflict = if settings.persistence.path.is_some() {
        Some("persistence.path is set: in cluster mode Redis holds the state; unset one of them")
    } else if demo {
        Some("--demo runs a single process: unset cluster.redis_url to run the demo")
    } else {
        None
    };
    refuse("cluster.redis_url", conflict)
}

/// The start-up error for `key` set together with what `conflict` names, if anything.
fn refuse(key: &str, conflict: Option<&str>) -> std::io::Result<()> {
    match conflict {
        Some(why) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{key} cannot be combined with this: {why}"),
        )),
        None => Ok(()),
    }
}

/// Prepares cluster mode if `cluster.redis_url` is set.
fn open_cluster(settings: &Settings) -> std::io::Result<Option<(Store, Cluster)>> {
    let Some(url) = &settings.cluster.redis_url else {
        return Ok(None);
    };
    let store = Store::replica(&store_options(&settings.presence));
    let cluster = Cluster::new(url, settings, store.clone())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    Ok(Some((store, cluster)))
}

/// Refuses a well-known placeholder ingest token (the `--demo` one included)
/// on a listener others can reach: it would open the internal API to anyone who
/// read the docs. Loopback binds may use one, as tests and `--demo` do.
fn refuse_placeholder_token(settings: &Settings, token: Option<&str>) -> std::io::Result<()> {
    let bind = settings.server.bind;
    match token {
        Some(token) if !bind.ip().is_loopback() && ingest::is_placeholder(token) => {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "ingest.token is a well-known placeholder, which must not guard the internal \
                     API on {bind}, a non-loopback address: set ingest.token or \
                     PRESENCED_INGEST_TOKEN to a long random secret (e.g. `openssl rand -hex 32`), \
                     or bind to 127.0.0.1"
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// The store's part of the settings.
fn store_options(presence: &PresenceSettings) -> StoreOptions {
    StoreOptions {
        changelog_capacity: presence.changelog_capacity,
        delta_window: presence.delta_window,
        connection_ttl: presence.connection_ttl,
        allow_invisible: presence.allow_invisible,
        broadcast_disabled: presence.broadcast_disabled,
        max_connections_per_user: presence.max_connections_per_user,
        max_users: presence.max_users,
    }
}

/// Prefixes an I/O error with what start-up was doing when it failed, keeping its kind, so
/// that the one line `main` prints says which step and which address or file.
fn doing(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> std::io::Error {
    let what = what.to_string();
    move |e| std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Resolves on the first SIGTERM or SIGINT. Both drain gracefully (actix
/// alone would stop at once on SIGINT). The handlers are installed now, not
/// when the future is first polled, so no signal is missed once the service
/// listens.
fn stop_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name} received: no new connections; in-flight requests may finish");
    })
}

/// Loads the snapshot at `settings.persistence.path`, if set.
fn open_snapshot(settings: &Settings) -> std::io::Result<Option<Arc<SnapshotFile>>> {
    let Some(path) = &settings.persistence.path else {
        return Ok(None);
    };
    SnapshotFile::open(path, &store_options(&settings.presence))
        .map(Some)
        .map_err(|e| {
            std::io::Error::other(format!(
                "cannot start from the snapshot: {e}. The file was left as it is: \
                 repair it or move it aside (presenced then starts empty), \
                 or point persistence.path elsewhere"
            ))
        })
}

/// A built, listening, not yet running service.
pub struct Application {
    port: u16,
    server: Server,
    store: Store,
    demo: bool,
    snapshots: Option<Arc<SnapshotFile>>,
    snapshot_interval: Duration,
    cluster: Option<Cluster>,
    upstream: Option<Upstream>,
    streams: Arc<StreamHub>,
}

/// Stops a running [`Application`] as SIGTERM does: ends the open change
/// streams, then stops the server.
#[derive(Clone)]
pub struct StopHandle {
    server: ServerHandle,
    streams: Arc<StreamHub>,
}

impl StopHandle {
    /// Stops the server; `graceful` lets in-flight requests finish (within
    /// `server.shutdown_grace_secs`). Resolves once it has stopped.
    pub fn stop(&self, graceful: bool) -> impl Future<Output = ()> {
        self.streams.shut_down();
        self.server.stop(graceful)
    }
}

impl Application {
    /// Loads the snapshot if persistence is on, binds `settings.server.bind`
    /// (port 0 picks a free port) and builds the server. Must be called
    /// inside a tokio runtime.
    ///
    /// # Errors
    /// When a setting cannot be honoured, the snapshot exists but cannot be
    /// read or trusted (the file is left as it is), or the address cannot be bound.
    pub fn build(settings: &Settings, demo: bool) -> std::io::Result<Application> {
        refuse_cluster_conflicts(settings, demo)?;
        refuse("upstream.url", upstream::conflict(settings, demo))?;
        let mut ingest_token = settings.ingest.token.clone();
        if demo {
            ingest_token.get_or_insert_with(|| demo::INGEST_TOKEN.to_owned());
        }
        refuse_placeholder_token(settings, ingest_token.as_deref())?;
        let bind = settings.server.bind;
        let listener = TcpListener::bind(bind).map_err(doing(format_args!("binding {bind}")))?;
        let port = listener
            .local_addr()
            .map_err(doing(format_args!("reading the address bound at {bind}")))?
            .port();
        let presence = &settings.presence;
        let snapshots = open_snapshot(settings)?;
        let cluster = open_cluster(settings)?;
        let store = match (&snapshots, &cluster) {
            (_, Some((store, _))) => store.clone(),
            (Some(snapshots), None) => snapshots.store().clone(),
            (None, None) => Store::new(&store_options(presence)),
        };
        let cluster = cluster.map(|(_, cluster)| cluster);
        if demo {
            demo::seed(&store);
        }
        if ingest_token.is_none() && settings.upstream.url.is_none() {
            tracing::warn!("no ingest token configured (ingest.token / PRESENCED_INGEST_TOKEN): the internal API answers 403");
        }
        let metrics = Arc::new(
            Metrics::new(store.clone())
                .map_err(|e| std::io::Error::other(format!("registering the metrics: {e}")))?,
        );
        let upstream = Upstream::new(&settings.upstream, store.clone(), &metrics)
            .map_err(|e| std::io::Error::other(format!("preparing upstream mode: {e}")))?;
        let observe = Observe::new(
            Arc::clone(&metrics),
            HeadLimits {
                max_url_bytes: settings.server.max_url_bytes,
                max_header_bytes: settings.server.max_header_bytes,
            },
        );
        let mut state = AppState::new(
            store.clone(),
            presence.delta_window,
            presence.max_ids,
            settings.server.max_body_bytes,
            ingest_token.as_deref(),
            metrics,
        )
        .with_rate_limits(RateLimits::new(&settings.limits));
        state.persistence = snapshots.clone();
        state.cluster = cluster.clone();
        state.upstream = upstream.clone();
        let streams = Arc::new(StreamHub::new(
            settings.stream.clone(),
            state.metrics.streams.clone(),
        ));
        state.streams = Arc::clone(&streams);
        let state = web::Data::new(state);
        let options = RouteOptions::new(settings, demo);
        let signal = stop_signal().map_err(doing("installing the SIGTERM/SIGINT handlers"))?;
        let streams_on_signal = Arc::clone(&streams);
        let mut server = HttpServer::new(move || app(&state, &observe, &options))
            // Before `listen`, which takes the callback for the listener it adds.
            .on_connect(send_timeout::on_connect(settings.server.send_timeout))
            .listen(listener)
            .map_err(doing(format_args!("listening on {bind}")))?
            // Open streams end first: the drain waits for every open response.
            .shutdown_signal(async move {
                signal.await;
                streams_on_signal.shut_down();
            })
            .shutdown_timeout(settings.server.shutdown_grace.as_secs());
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        Ok(Application {
            port,
            server: server.run(),
            store,
            demo,
            snapshots,
            snapshot_interval: settings.persistence.interval,
            cluster,
            upstream,
            streams,
        })
    }

    /// Returns the port the service listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns a handle that stops the server gracefully.
    pub fn handle(&self) -> StopHandle {
        StopHandle {
            server: self.server.handle(),
            streams: Arc::clone(&self.streams),
        }
    }

    /// Serves until the server is stopped (by its handle or a signal) and has
    /// drained, running connection expiry, snapshots (and the demo churn) for
    /// exactly as long; then writes the final snapshot.
    ///
    /// # Errors
    /// When the server fails, or the final snapshot cannot be written.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        // A replica's connections live in Redis, swept there by every replica.
        let sweeper = match &self.cluster {
            None => Some(spawn_sweeper(self.store.clone())),
            Some(_) => None,
        };
        let replication = self.cluster.as_ref().map(Cluster::spawn);
        let following = self.upstream.as_ref().map(Upstream::spawn);
        let churn = self.demo.then(|| demo::spawn_churn(self.store.clone()));
        let follower = BackgroundTask::spawn(stream::follow(
            self.store.clone(),
            Arc::clone(&self.streams),
        ));
        let periodic = self
            .snapshots
            .as_ref()
            .map(|s| s.spawn_periodic(self.snapshot_interval));
        let served = self.server.await;
        // Nothing changes the store from here on, so the last snapshot is exact.
        // A periodic write under way finishes first: writes take turns.
        drop((periodic, churn, sweeper, replication, following, follower));
        if let Some(snapshots) = &self.snapshots {
            snapshots
                .write_in_background()
                .await
                .map_err(|e| std::io::Error::other(format!("the final snapshot failed: {e}")))?;
            tracing::info!(
                "snapshot: {} holds the final state",
                snapshots.path().display()
            );
        }
        served
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stores_defaults_are_the_configs_defaults() {
        assert_eq!(
            store_options(&Settings::default().presence),
            StoreOptions::default()
        );
    }

    #[test]
    fn only_placeholder_tokens_off_loopback_are_refused() {
        let mut settings = Settings::default();
        settings.server.bind = "0.0.0.0:3000".parse().unwrap();
        assert!(refuse_placeholder_token(&settings, Some("change-me")).is_err());
        assert!(refuse_placeholder_token(&settings, Some("k3Jd93-strong-Xq0")).is_ok());
        assert!(refuse_placeholder_token(&settings, None).is_ok());
        settings.server.bind = "[::1]:3000".parse().unwrap();
        assert!(refuse_placeholder_token(&settings, Some("change-me")).is_ok());
    }
}

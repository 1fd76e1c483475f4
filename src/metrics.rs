//! The Prometheus registry behind `GET /metrics`: request counts, latencies and
//! refusals recorded as requests finish, and the store's figures read when scraped.
//!
//! Built on the `prometheus` crate (TiKV's) rather than `metrics` with its
//! Prometheus exporter: its histograms are fixed buckets of atomic counters, so
//! recording is a few atomic adds and memory does not depend on how often, or
//! whether, anyone scrapes; and a label set resolves once into a handle that the
//! request path then uses without hashing or locking.

use crate::store::{Store, StoreStats};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// Latency buckets in seconds: a cached poll answers in tens of microseconds, a
/// full snapshot of many users in milliseconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Every metric of the service.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    rejected: IntCounterVec,
    /// `users.presence` answers that were `304 Not Modified`.
    pub not_modified: IntCounter,
    /// Renders of the full `users.presence` answer.
    pub snapshot_rebuilds: IntCounter,
    /// Deltas and id lists served from an answer rendered for an earlier poll.
    pub answer_reuses: IntCounter,
    /// The change stream's figures (see `crate::stream`).
    pub streams: StreamMetrics,
}

/// The change stream's figures: open streams, events sent, subscribers that
/// fell behind and subscribers dropped.
#[derive(Debug, Clone)]
pub struct StreamMetrics {
    pub open: IntGauge,
    pub events: IntCounter,
    pub lagged: IntCounter,
    pub dropped: IntCounter,
    /// Entries of the interest index: users some `ids` stream follows.
    pub followed: IntGauge,
}

impl StreamMetrics {
    fn new(registry: &Registry) -> Result<StreamMetrics, prometheus::Error> {
        let metrics = StreamMetrics {
            open: IntGauge::new("presenced_streams_open", "Change streams open now.")?,
            events: IntCounter::new(
                "presenced_stream_events_total",
                "Events sent on change streams (answers and goodbyes; not heartbeats).",
            )?,
            lagged: IntCounter::new(
                "presenced_stream_lagged_total",
                "Times a stream subscriber fell behind the buffer and was sent the full answer.",
            )?,
            dropped: IntCounter::new(
                "presenced_stream_dropped_total",
                "Stream subscribers disconnected for falling behind too often.",
            )?,
            followed: IntGauge::new(
                "presenced_stream_followed_users",
                "Users some change stream filtered by ids follows (the interest index's entries).",
            )?,
        };
        registry.register(Box::new(metrics.open.clone()))?;
        registry.register(Box::new(metrics.events.clone()))?;
        registry.register(Box::new(metrics.lagged.clone()))?;
        registry.register(Box::new(metrics.dropped.clone()))?;
        registry.register(Box::new(metrics.followed.clone()))?;
        Ok(metrics)
    }
}

impl Metrics {
    /// Registers every metric, the store's figures included.
    ///
    /// # Errors
    /// Only if a metric's name or labels were invalid, which the tests rule out.
    pub fn new(store: Store) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "presenced_http_requests_total",
                "HTTP requests answered, by route pattern and status code.",
            ),
            &["route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "presenced_http_request_duration_seconds",
                "Time from a request's head to its response, by route pattern.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "presenced_rejected_requests_total",
                "Requests answered 4xx or 5xx, by reason (the errorType, or what the status means).",
            ),
            &["reason"],
        )?;
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        let not_modified = counter(
            "presenced_not_modified_total",
            "users.presence answers that were 304 Not Modified.",
        )?;
        let snapshot_rebuilds = counter(
            "presenced_snapshot_rebuilds_total",
            "Times the full users.presence answer was rendered.",
        )?;
        let answer_reuses = counter(
            "presenced_answer_reuses_total",
            "Deltas and id lists served from an answer rendered for an earlier poll.",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(not_modified.clone()))?;
        registry.register(Box::new(snapshot_rebuilds.clone()))?;
        registry.register(Box::new(answer_reuses.clone()))?;
        registry.register(Box::new(StoreFigures::new(store)?))?;
        let streams = StreamMetrics::new(&registry)?;
        Ok(Metrics {
            streams,
            registry,
            requests,
            latency,
            rejected,
            not_modified,
            snapshot_rebuilds,
            answer_reuses,
        })
    }

    /// Returns the handles of one route, to be kept and reused for its requests.
    pub fn route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            route: route.into(),
            latency: self.latency.with_label_values(&[route]),
            by_status: Vec::new(),
        }
    }

    /// Counts a request refused for `reason`.
    pub fn rejected(&self, reason: &str) {
        self.rejected.with_label_values(&[reason]).inc();
    }

    /// Adds `collector` (another part's metrics, such as upstream mode's) to the registry.
    ///
    /// # Errors
    /// When one of its names is taken or invalid.
    pub fn register(&self, collector: Box<dyn Collector>) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    /// Returns the text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(8192);
        // Encoding into a String fails only on a metric family the registry would
        // not have accepted.
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut text) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        text
    }
}

/// The handles of one route: its latency histogram, and a request counter per
/// status code seen so far.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    route: Box<str>,
    latency: Histogram,
    /// A route answers a handful of status codes: a short list beats a map.
    by_status: Vec<(u16, IntCounter)>,
}

impl RouteMetrics {
    /// Records one request answered with `status` after `seconds`.
    pub fn record(&mut self, metrics: &Metrics, status: u16, seconds: f64) {
        self.latency.observe(seconds);
        if let Some((_, counter)) = self.by_status.iter().find(|(s, _)| *s == status) {
            counter.inc();
            return;
        }
        let counter = metrics
            .requests
            .with_label_values(&[&*self.route, &status.to_string()]);
        counter.inc();
        self.by_status.push((status, counter));
    }
}

/// A figure of the store, read at scrape time.
struct Figure {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    value: fn(&StoreStats, i64) -> f64,
}

/// The store's figures; `now_ms` is the wall clock, for the log's span.
const FIGURES: [Figure; 7] = [
    Figure {
        name: "presenced_users",
        help: "Users known.",
        kind: MetricType::GAUGE,
        value: |s, _| s.users as f64,
    },
    Figure {
        name: "presenced_users_online",
        help: "Users whose visible status is not offline.",
        kind: MetricType::GAUGE,
        value: |s, _| s.online as f64,
    },
    Figure {
        name: "presenced_connections",
        help: "Open connections.",
        kind: MetricType::GAUGE,
        value: |s, _| s.connections as f64,
    },
    Figure {
        name: "presenced_changelog_entries",
        help: "Changes held in the change log.",
        kind: MetricType::GAUGE,
        value: |s, _| s.log.entries as f64,
    },
    Figure {
        name: "presenced_changelog_head",
        help: "Sequence number of the newest change.",
        kind: MetricType::GAUGE,
        value: |s, _| s.log.head.seq() as f64,
    },
    Figure {
        name: "presenced_changelog_span_seconds",
        help: "Seconds between the oldest change held in the log and now (0 when empty).",
        kind: MetricType::GAUGE,
        value: |s, now_ms| {
            s.log.oldest_ts.map_or(0.0, |oldest| {
                now_ms.saturating_sub(oldest).max(0) as f64 / 1000.0
            })
        },
    },
    Figure {
        name: "presenced_connections_expired_total",
        help: "Connections expired for lack of heartbeats.",
        kind: MetricType::COUNTER,
        value: |s, _| s.expired as f64,
    },
];

/// Reads [`FIGURES`] from the store when the registry is gathered, so the
/// store keeps its own counts and nothing copies them on the write path.
struct StoreFigures {
    store: Store,
    descs: Vec<Desc>,
}

impl StoreFigures {
    fn new(store: Store) -> Result<StoreFigures, prometheus::Error> {
        let descs = FIGURES
            .iter()
            .map(|f| Desc::new(f.name.into(), f.help.into(), Vec::new(), Default::default()))
            .collect::<Result<_, _>>()?;
        Ok(StoreFigures { store, descs })
    }
}

impl Collector for StoreFigures {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = self.store.stats();
        let now_ms = crate::clock::wall_ms();
        FIGURES
            .iter()
            .map(|figure| {
                let value = (figure.value)(&stats, now_ms);
                let mut metric = proto::Metric::default();
                if figure.kind == MetricType::COUNTER {
                    let mut counter = proto::Counter::default();
                    counter.set_value(value);
                    metric.set_counter(counter);
                } else {
                    let mut gauge = proto::Gauge::default();
                    gauge.set_value(value);
                    metric.set_gauge(gauge);
                }
                let mut family = MetricFamily::default();
                family.set_name(figure.name.into());
                family.set_help(figure.help.into());
                family.set_field_type(figure.kind);
                family.set_metric(vec![metric]);
                family
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn every_metric_registers_and_renders_with_its_type() {
        let metrics = Metrics::new(Store::new(&StoreOptions::default())).unwrap();
        let mut health = metrics.route("/health");
        health.record(&metrics, 200, 0.000_2);
        health.record(&metrics, 200, 0.3);
        health.record(&metrics, 503, 0.001);
        metrics.rejected("error-invalid-params");
        metrics.not_modified.inc();
        let text = metrics.render();
        for line in [
            "# TYPE presenced_http_requests_total counter",
            r#"presenced_http_requests_total{route="/health",status="200"} 2"#,
            r#"presenced_http_requests_total{route="/health",status="503"} 1"#,
            "# TYPE presenced_http_request_duration_seconds histogram",
            r#"presenced_http_request_duration_seconds_bucket{route="/health",le="0.00025"} 1"#,
            r#"presenced_http_request_duration_seconds_count{route="/health"} 3"#,
            r#"presenced_rejected_requests_total{reason="error-invalid-params"} 1"#,
            "presenced_not_modified_total 1",
            "presenced_snapshot_rebuilds_total 0",
            "presenced_answer_reuses_total 0",
            "# TYPE presenced_users gauge",
            "presenced_users 0",
            "presenced_changelog_span_seconds 0",
            "# TYPE presenced_connections_expired_total counter",
            "presenced_connections_expired_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}

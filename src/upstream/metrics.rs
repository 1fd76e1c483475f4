//! What upstream mode shows in `/metrics`, and the bad-input tally that logs
//! each kind of bad input once.

use super::Verdict;
use crate::metrics::Metrics;
use parking_lot::Mutex;
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts};
use std::collections::HashSet;

/// The upstream metrics, registered into the service's registry.
#[derive(Debug)]
pub struct UpstreamMetrics {
    /// 1 while the follower has the full picture and is subscribed, else 0.
    pub connected: IntGauge,
    pub reconnects: IntCounter,
    pub events_applied: IntCounter,
    /// Seconds from an event's frame arriving to its writes being in the store
    /// (a `users.info` lookup for a user first seen included), for the last event.
    pub event_lag: Gauge,
    /// Unix time of the last frame of any kind, pings included.
    pub last_frame: Gauge,
    auth_calls: IntCounterVec,
    pub bad_input: BadInput,
}

impl UpstreamMetrics {
    pub fn new() -> Result<UpstreamMetrics, prometheus::Error> {
        Ok(UpstreamMetrics {
            connected: IntGauge::new(
                "presenced_upstream_connected",
                "1 while following the chat server (full picture taken, subscribed), else 0.",
            )?,
            reconnects: IntCounter::new(
                "presenced_upstream_reconnects_total",
                "Times the follower lost the chat server and connected again.",
            )?,
            events_applied: IntCounter::new(
                "presenced_upstream_events_applied_total",
                "user-status events from the chat server taken in (one whose profile or write was refused is also counted as bad input).",
            )?,
            event_lag: Gauge::new(
                "presenced_upstream_event_lag_seconds",
                "For the last event: seconds from its frame arriving to its writes being in the store.",
            )?,
            last_frame: Gauge::new(
                "presenced_upstream_last_frame_timestamp_seconds",
                "Unix time of the last frame from the chat server (pings included); 0 before the first.",
            )?,
            auth_calls: IntCounterVec::new(
                Opts::new(
                    "presenced_upstream_auth_calls_total",
                    "Token checks asked of the chat server (GET /api/v1/me), by verdict.",
                ),
                &["verdict"],
            )?,
            bad_input: BadInput {
                counter: IntCounterVec::new(
                    Opts::new(
                        "presenced_upstream_bad_input_total",
                        "Frames, events and users from the chat server skipped as unusable, by kind.",
                    ),
                    &["kind"],
                )?,
                logged: Mutex::new(HashSet::new()),
            },
        })
    }

    /// Registers every metric into the service's registry.
    pub fn register(&self, metrics: &Metrics) -> Result<(), prometheus::Error> {
        metrics.register(Box::new(self.connected.clone()))?;
        metrics.register(Box::new(self.reconnects.clone()))?;
        metrics.register(Box::new(self.events_applied.clone()))?;
        metrics.register(Box::new(self.event_lag.clone()))?;
        metrics.register(Box::new(self.last_frame.clone()))?;
        metrics.register(Box::new(self.auth_calls.clone()))?;
        metrics.register(Box::new(self.bad_input.counter.clone()))?;
        Ok(())
    }

    /// Counts one token check asked of the chat server.
    pub fn auth_call(&self, verdict: &Verdict) {
        let label = match verdict {
            Verdict::Accepted(_) => "accepted",
            Verdict::Refused => "refused",
            Verdict::Unavailable => "unavailable",
        };
        self.auth_calls.with_label_values(&[label]).inc();
    }
}

/// Bad input from the chat server, counted by kind; the first of each kind is
/// logged with its detail, the rest only counted, so a chat server that sends
/// garbage in a loop cannot flood the log.
#[derive(Debug)]
pub struct BadInput {
    counter: IntCounterVec,
    logged: Mutex<HashSet<&'static str>>,
}

impl BadInput {
    /// Counts one piece of bad input of `kind`, described by `detail`.
    pub fn skip(&self, kind: &'static str, detail: &dyn std::fmt::Display) {
        self.counter.with_label_values(&[kind]).inc();
        if self.logged.lock().insert(kind) {
            tracing::warn!(
                "upstream: skipped bad input ({kind}): {detail}; further input of this kind is \
                 only counted (presenced_upstream_bad_input_total)"
            );
        }
    }

    /// Returns how many pieces of bad input of `kind` were skipped.
    pub fn count(&self, kind: &str) -> u64 {
        self.counter.with_label_values(&[kind]).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A log sink for one test: what the subscriber writes, kept.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Kept {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_kind_of_bad_input_is_logged_once_and_counted_every_time() {
        let bad = BadInput {
            counter: IntCounterVec::new(Opts::new("bad", "bad input"), &["kind"]).expect("valid"),
            logged: Mutex::new(HashSet::new()),
        };
        let log = Kept::default();
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for n in 0..3 {
                bad.skip("malformed-frame", &format!("frame {n}"));
            }
            bad.skip("unknown-status", &"status 7");
        });
        assert_eq!(bad.count("malformed-frame"), 3);
        assert_eq!(bad.count("unknown-status"), 1);
        let text = String::from_utf8(log.0.lock().clone()).expect("utf-8 log");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("(malformed-frame): frame 0"), "{text}");
        assert!(lines[1].contains("(unknown-status): status 7"), "{text}");
    }
}

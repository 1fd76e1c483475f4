//! Events applied per second from the chat server's socket into the store
//! (issue 14), beside the same status writes applied to a store directly: the
//! ratio is what the socket, the DDP parsing and the follower cost per event.
//!
//! `cargo bench --bench upstream`. The chat server is the test suite's
//! stand-in (tests/api/upstream/stand_in.rs) on a loopback port, sending each
//! round of events in one write; a round is over when presenced's
//! `presenced_upstream_events_applied_total` has counted all of them.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use presenced::config::Settings;
use presenced::domain::{Profile, Status, StatusText, UserId, Username};
use presenced::store::{Op, Store, StoreOptions};
use presenced::Application;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// What the stand-in needs of the test helpers.
mod helpers {
    #[derive(Debug, Clone)]
    pub struct Login {
        pub id: String,
        pub token: String,
    }
}

#[allow(dead_code)]
#[path = "../tests/api/upstream/stand_in.rs"]
mod stand_in;

use stand_in::{user_status_frame, RcUser, StandIn, SERVICE_ID, SERVICE_TOKEN};

const USERS: usize = 1000;
const EVENTS: usize = 10_000;

/// The status of the `n`th event overall: each user alternates, so every
/// event is a visible change.
fn status_of(n: usize) -> &'static str {
    if (n / USERS) % 2 == 0 {
        "away"
    } else {
        "online"
    }
}

fn user(i: usize) -> String {
    format!("u{i:05}")
}

/// A presenced following a stand-in with `USERS` users online, ready.
async fn following() -> (StandIn, String) {
    let upstream = StandIn::start().await;
    for i in 0..USERS {
        upstream.add_user(&user(i), RcUser::new(&user(i), "online"));
    }
    let mut settings = Settings::default();
    settings.server.bind = "127.0.0.1:0".parse().expect("loopback");
    settings.server.workers = 1;
    settings.upstream.url = Some(upstream.base.clone());
    settings.upstream.user_id = Some(SERVICE_ID.to_owned());
    settings.upstream.token = Some(SERVICE_TOKEN.to_owned());
    let app = Application::build(&settings, false).expect("builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    for _ in 0..1000 {
        let ready = client.get(format!("{base}/ready")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return (upstream, base);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("presenced did not get ready");
}

async fn applied(client: &reqwest::Client, base: &str) -> usize {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix("presenced_upstream_events_applied_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn socket_to_store(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (upstream, base) = runtime.block_on(following());
    let client = reqwest::Client::new();
    let mut sent = 0;
    let mut group = c.benchmark_group("upstream_events");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(20);
    group.bench_function(BenchmarkId::new("socket_to_store", EVENTS), |b| {
        b.iter_custom(|rounds| {
            runtime.block_on(async {
                let mut spent = Duration::ZERO;
                for _ in 0..rounds {
                    let frames: Vec<Message> = (sent..sent + EVENTS)
                        .map(|n| {
                            let id = user(n % USERS);
                            let frame = user_status_frame(&id, &RcUser::new(&id, status_of(n)));
                            Message::Text(frame.to_string().into())
                        })
                        .collect();
                    sent += EVENTS;
                    let start = Instant::now();
                    upstream.push_batch(frames);
                    while applied(&client, &base).await < sent {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    spent += start.elapsed();
                }
                spent
            })
        });
    });

    // The baseline: the two writes each event makes (its profile, unchanged, and
    // its status), applied to a store directly.
    let store = Store::new(&StoreOptions::default());
    for i in 0..USERS {
        let id = UserId::parse(&user(i)).expect("id");
        let username = Username::parse(&user(i)).expect("username");
        let profile = Profile::new(username, None, None, None, &[], true).expect("profile");
        store.apply(Op::PutUser { id, profile }).expect("put");
    }
    let mut written = 0;
    group.bench_function(BenchmarkId::new("direct_store_writes", EVENTS), |b| {
        b.iter(|| {
            for n in written..written + EVENTS {
                let id = UserId::parse(&user(n % USERS)).expect("id");
                let username = Username::parse(&user(n % USERS)).expect("username");
                let profile = Profile::new(username, None, None, None, &[], true).expect("profile");
                store
                    .apply(Op::PutUser {
                        id: id.clone(),
                        profile,
                    })
                    .expect("put");
                let status = Status::parse(status_of(n)).expect("status");
                let op = Op::SetStatus {
                    id,
                    status,
                    text: Some(StatusText::new("")),
                };
                store.apply(op).expect("set");
            }
            written += EVENTS;
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(10));
    targets = socket_to_store
}
criterion_main!(benches);

//! In-process cost of one users.presence request through the real actix app
//! (routing, auth, parameters, answer, headers), beside a handler that returns
//! the same bytes: the difference is what presenced adds per request, without
//! the sockets and the kernel that dominate the wrk numbers.
//!
//! `cargo bench --bench http`

use actix_web::dev::Service as _;
use actix_web::http::StatusCode;
use actix_web::{test, web, App, HttpResponse};
use criterion::{criterion_group, criterion_main, Criterion};
use presenced::domain::{ConnStatus, ConnectionId, Profile, Status, TokenHash, UserId, Username};
use presenced::http::head_limits::HeadLimits;
use presenced::http::observe::Observe;
use presenced::http::AppState;
use presenced::metrics::Metrics;
use presenced::startup::{app, RouteOptions};
use presenced::store::{Store, StoreOptions};
use std::sync::Arc;
use std::time::Duration;

const USERS: usize = 100_000;
const ONLINE_EVERY: usize = 10;

fn id(i: usize) -> UserId {
    UserId::parse(&format!("u{i:07}")).expect("valid id")
}

fn seeded() -> Store {
    let store = Store::new(&StoreOptions::default());
    let profile = |name: &str, full: Option<String>| {
        Profile::new(
            Username::parse(name).expect("valid"),
            full,
            Some(0.0),
            None,
            &[],
            true,
        )
        .expect("valid")
    };
    let caller = UserId::parse("caller").expect("valid");
    store
        .put_user(&caller, profile("caller", None))
        .expect("new");
    store
        .add_token(&caller, TokenHash::of_token("token").expect("valid"))
        .expect("exists");
    for i in 0..USERS {
        store
            .put_user(
                &id(i),
                profile(&format!("user.{i}"), Some(format!("User Number {i}"))),
            )
            .expect("new");
        if i % ONLINE_EVERY == 0 {
            let connection = ConnectionId::parse(&format!("c{i}")).expect("valid");
            store
                .put_connection(&connection, &id(i), ConnStatus::Online, None)
                .expect("exists");
        }
    }
    store
}

fn requests(c: &mut Criterion) {
    let runtime = actix_web::rt::System::new();
    let store = seeded();
    let busy_cursor = store.cursor();
    for i in 0..300 {
        let _ = store.set_status(
            &id(i * ONLINE_EVERY),
            Some(Status::Busy),
            Some(Default::default()),
        );
    }
    std::thread::sleep(Duration::from_millis(2));
    let quiet_from = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let ids: Vec<String> = (0..100).map(|i| id(i * ONLINE_EVERY).to_string()).collect();
    let metrics = Arc::new(Metrics::new(store.clone()).expect("metrics register"));
    let observe = Observe::new(
        Arc::clone(&metrics),
        HeadLimits {
            max_url_bytes: 32_768,
            max_header_bytes: 32_768,
        },
    );
    let state = web::Data::new(AppState::new(
        store,
        Duration::from_secs(600),
        1000,
        1 << 20,
        None,
        metrics,
    ));
    let scenarios = [
        ("quiet delta", format!("from={quiet_from}")),
        ("busy delta", format!("since={busy_cursor}")),
        ("full snapshot", String::new()),
        ("ids=100", format!("ids={}", ids.join(","))),
    ];
    // The application the server runs, fast path included.
    let app = runtime.block_on(test::init_service(app(
        &state,
        &observe,
        &RouteOptions::default(),
    )));
    let mut group = c.benchmark_group("one request in process");
    for (name, query) in &scenarios {
        let uri = format!("/api/v1/users.presence?{query}");
        let request = || {
            test::TestRequest::get()
                .uri(&uri)
                .insert_header(("X-User-Id", "caller"))
                .insert_header(("X-Auth-Token", "token"))
                .to_request()
        };
        let response = runtime.block_on(app.call(request())).expect("answers");
        assert_eq!(response.status(), StatusCode::OK);
        let body = runtime.block_on(test::read_body(response));
        let etag_request = || {
            test::TestRequest::get()
                .uri(&uri)
                .insert_header(("X-User-Id", "caller"))
                .insert_header(("X-Auth-Token", "token"))
        };
        let etag = runtime
            .block_on(app.call(etag_request().to_request()))
            .expect("answers")
            .headers()
            .get("etag")
            .cloned()
            .expect("tagged");
        let static_app =
            runtime.block_on(test::init_service(App::new().default_service(web::to({
                let body = body.clone();
                move || {
                    let body = body.clone();
                    async move {
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(body)
                    }
                }
            }))));
        group.bench_function(format!("{name}: presenced"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    test::read_body(app.call(request()).await.expect("answers")).await
                })
            })
        });
        group.bench_function(format!("{name}: static bytes"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    test::read_body(static_app.call(request()).await.expect("answers")).await
                })
            })
        });
        if *name == "full snapshot" {
            group.bench_function("full snapshot: 304 revalidation", |b| {
                b.iter(|| {
                    let request = etag_request()
                        .insert_header(("If-None-Match", etag.clone()))
                        .to_request();
                    runtime.block_on(app.call(request)).expect("answers")
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = requests
}
criterion_main!(benches);

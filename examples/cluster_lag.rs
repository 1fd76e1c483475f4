//! Cluster benchmarks driven over HTTP (see `benches/cluster.sh`).
//!
//! `cluster_lag lag <A> <B> <writes/s> <seconds> <token>`: writes status
//! texts through replica A at a fixed rate (open loop: a write is sent on
//! schedule whether or not earlier ones were answered), while a watcher polls
//! replica B with `since` as fast as it answers; a write's lag is from A's
//! answer to the first poll of B that shows it. Prints p50/p99 in ms, the rate
//! reached, and how many writes were never seen (should be 0). A poll's own
//! round trip (about 0.2 ms on loopback) is included in the lag.
//!
//! `cluster_lag batch <A> <ops> <token>`: sends `ops` setStatus ops as batches
//! of 1000 through A, 4 at a time, and prints ops/s.
//!
//! Users `l0000`..`l0999` with a login token `lag-token` must exist (the
//! script seeds them).

use reqwest::Client;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const USERS: u64 = 1000;

fn arg(args: &[String], i: usize, what: &str) -> String {
    args.get(i).cloned().unwrap_or_else(|| {
        eprintln!("usage: cluster_lag lag <A> <B> <writes/s> <seconds> <token> | batch <A> <ops> <token>; missing {what}");
        std::process::exit(2)
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match arg(&args, 1, "mode").as_str() {
        "lag" => {
            let rate: f64 = arg(&args, 4, "writes/s")
                .parse()
                .expect("writes/s is a number");
            let secs: f64 = arg(&args, 5, "seconds")
                .parse()
                .expect("seconds is a number");
            lag(
                &arg(&args, 2, "A"),
                &arg(&args, 3, "B"),
                rate,
                secs,
                &arg(&args, 6, "token"),
            )
            .await;
        }
        "batch" => {
            let ops: usize = arg(&args, 3, "ops").parse().expect("ops is a number");
            batch(&arg(&args, 2, "A"), ops, &arg(&args, 4, "token")).await;
        }
        other => {
            eprintln!("unknown mode {other:?}: lag | batch");
            std::process::exit(2)
        }
    }
}

async fn lag(a: &str, b: &str, rate: f64, secs: f64, token: &str) {
    let client = Client::builder()
        .pool_max_idle_per_host(512)
        .build()
        .expect("client");
    // seq -> when A acknowledged it (and how long the write took); seq ->
    // when B first showed it.
    let acked: Arc<Mutex<HashMap<u64, (Instant, Duration)>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let start_cursor = presence(&client, b, "").await["cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let watcher = {
        let (client, b, seen, stop) = (client.clone(), b.to_owned(), seen.clone(), stop.clone());
        tokio::spawn(async move {
            let mut cursor = start_cursor;
            // The newest seq seen per user: a delta shows a user's latest
            // state only, so earlier writes to it are visible by then too.
            let mut newest: HashMap<String, u64> = HashMap::new();
            let mut polls = 0u64;
            loop {
                let last = stop.load(Ordering::SeqCst);
                let body = presence(&client, &b, &format!("since={cursor}")).await;
                let now = Instant::now();
                polls += 1;
                if let Some(users) = body["users"].as_array() {
                    let mut seen = seen.lock().await;
                    for user in users {
                        let (Some(id), Some(text)) =
                            (user["_id"].as_str(), user["statusText"].as_str())
                        else {
                            continue;
                        };
                        let Some(seq) = text.strip_prefix('w').and_then(|s| s.parse::<u64>().ok())
                        else {
                            continue;
                        };
                        let from = newest.get(id).map_or(seq % USERS, |s| s + USERS);
                        let mut s = from;
                        while s <= seq {
                            seen.entry(s).or_insert(now);
                            s += USERS;
                        }
                        let newest = newest.entry(id.to_owned()).or_insert(seq);
                        *newest = (*newest).max(seq);
                    }
                }
                if let Some(c) = body["cursor"].as_str() {
                    cursor = c.to_owned();
                }
                if last {
                    return polls;
                }
            }
        })
    };
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (rate * secs) as u64;
    let began = Instant::now();
    let mut writers = Vec::with_capacity(total as usize);
    for seq in 0..total {
        let due = began + interval.mul_f64(seq as f64);
        tokio::time::sleep_until(due.into()).await;
        let (client, a, acked, token) = (
            client.clone(),
            a.to_owned(),
            acked.clone(),
            token.to_owned(),
        );
        writers.push(tokio::spawn(async move {
            let sent = Instant::now();
            let user = format!("l{:04}", seq % USERS);
            let response = client
                .put(format!("{a}/internal/v1/users/{user}/status"))
                .bearer_auth(&token)
                .json(&json!({"status": "online", "statusText": format!("w{seq}")}))
                .send()
                .await;
            if let Ok(r) = response {
                if r.status().is_success() && r.bytes().await.is_ok() {
                    let now = Instant::now();
                    acked.lock().await.insert(seq, (now, now - sent));
                }
            }
        }));
    }
    for w in writers {
        let _ = w.await;
    }
    let elapsed = began.elapsed().as_secs_f64();
    // Give B a bounded while to show the last writes, then stop the watcher.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (a_n, s_n) = (acked.lock().await.len(), seen.lock().await.len());
        if s_n >= a_n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let polls = watcher.await.unwrap_or(0);
    let acked = acked.lock().await;
    let seen = seen.lock().await;
    let mut lags: Vec<f64> = acked
        .iter()
        .filter_map(|(seq, (at, _))| {
            let shown = seen.get(seq)?;
            Some(shown.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let mut writes: Vec<f64> = acked
        .values()
        .map(|(_, took)| took.as_secs_f64() * 1000.0)
        .collect();
    writes.sort_by(f64::total_cmp);
    let unseen = acked.keys().filter(|s| !seen.contains_key(s)).count();
    println!(
        "target {rate:.0} writes/s: sent {total} in {elapsed:.2}s ({:.0}/s), acknowledged {}, write (send -> A's answer) p50 {:.2} ms p99 {:.2} ms, lag (A's answer -> shown by B) p50 {:.2} ms p99 {:.2} ms max {:.2} ms, never seen on B {unseen}, B polls {polls}",
        total as f64 / elapsed,
        acked.len(),
        percentile(&writes, 50.0),
        percentile(&writes, 99.0),
        percentile(&lags, 50.0),
        percentile(&lags, 99.0),
        lags.last().copied().unwrap_or(f64::NAN),
    );
}

async fn presence(client: &Client, base: &str, query: &str) -> Value {
    let url = if query.is_empty() {
        format!("{base}/api/v1/users.presence")
    } else {
        format!("{base}/api/v1/users.presence?{query}")
    };
    let response = client
        .get(url)
        .header("X-User-Id", "l0000")
        .header("X-Auth-Token", "lag-token")
        .send()
        .await;
    match response {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

async fn batch(a: &str, ops: usize, token: &str) {
    let client = Client::new();
    let chunks: Vec<Value> = (0..ops)
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(|chunk| {
            let rows: Vec<Value> = chunk
                .iter()
                .map(|i| {
                    let status = ["online", "away", "busy"][i % 3];
                    json!({
                        "op": "setStatus", "userId": format!("l{:04}", *i as u64 % USERS),
                        "status": status, "statusText": format!("b{i}")
                    })
                })
                .collect();
            json!({ "ops": rows })
        })
        .collect();
    let began = Instant::now();
    let chunks = Arc::new(Mutex::new(chunks));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (client, chunks, a, token) = (
                client.clone(),
                chunks.clone(),
                a.to_owned(),
                token.to_owned(),
            );
            tokio::spawn(async move {
                let mut applied = 0u64;
                loop {
                    let Some(body) = chunks.lock().await.pop() else {
                        return applied;
                    };
                    let answer: Value = match client
                        .post(format!("{a}/internal/v1/batch"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(r) => r.json().await.unwrap_or(Value::Null),
                        Err(_) => Value::Null,
                    };
                    applied += answer["applied"].as_u64().unwrap_or(0);
                }
            })
        })
        .collect();
    let mut applied = 0;
    for w in workers {
        applied += w.await.unwrap_or(0);
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "batch: {applied} of {ops} ops applied in {secs:.2}s: {:.0} ops/s",
        applied as f64 / secs
    );
}

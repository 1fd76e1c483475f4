//! Soak driver: churns connections and statuses on a running presenced while
//! pollers follow it, samples the server's memory and log, and checks at the end
//! that every poller's mirror equals a fresh snapshot. `benches/soak.sh` starts
//! the server and runs this; see BENCHMARKS.md for a run.
//!
//! Configured by environment (all set by soak.sh): `SOAK_BASE` (server URL),
//! `SOAK_TOKEN` (ingest token), `SOAK_PID` (server pid, for its RSS), `SOAK_SECS`
//! (duration), `SOAK_USERS`, `SOAK_POLLERS`, `SOAK_CAPACITY` (the server's
//! change-log capacity, to check the log against). Exits non-zero on any failed check.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CALLER: &str = "soak.caller";
const CALLER_TOKEN: &str = "soak-caller-token";
/// Most connections the driver keeps per user, well under the server's cap.
const MAX_OPEN: usize = 3;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Counts {
    ops: AtomicU64,
    batches: AtomicU64,
    polls: AtomicU64,
    not_modified: AtomicU64,
    resyncs: AtomicU64,
    errors: AtomicU64,
}

struct Driver {
    http: reqwest::Client,
    base: String,
    token: String,
    counts: Counts,
    stop: AtomicBool,
}

impl Driver {
    async fn batch(&self, ops: Vec<Value>) -> Result<(), String> {
        let answer = self
            .http
            .post(format!("{}/internal/v1/batch", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "ops": ops }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = answer.status();
        let body: Value = answer.json().await.map_err(|e| e.to_string())?;
        let failed = body["errors"].as_array().map_or(0, Vec::len);
        if !status.is_success() || failed > 0 {
            return Err(format!("batch: {status} {body}"));
        }
        Ok(())
    }

    async fn presence(
        &self,
        query: &str,
        etag: Option<&str>,
    ) -> Result<Option<(Value, String)>, String> {
        let mut request = self
            .http
            .get(format!("{}/api/v1/users.presence{query}", self.base))
            .header("X-User-Id", CALLER)
            .header("X-Auth-Token", CALLER_TOKEN);
        if let Some(etag) = etag {
            request = request.header("If-None-Match", etag);
        }
        let answer = request.send().await.map_err(|e| e.to_string())?;
        if answer.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        if !answer.status().is_success() {
            return Err(format!("presence{query}: {}", answer.status()));
        }
        let tag = answer
            .headers()
            .get("etag")
            .and_then(|t| t.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = answer.json().await.map_err(|e| e.to_string())?;
        Ok(Some((body, tag)))
    }

    fn failed(&self, what: &str) {
        if self.counts.errors.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("error: {what}");
        }
    }
}

/// Opens, refreshes, closes and abandons connections (abandoned ones expire by
/// TTL) and sets statuses, in batches, until stopped.
async fn churn(driver: Arc<Driver>, users: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut open: Vec<Vec<String>> = vec![Vec::new(); users];
    let mut next = 0u64;
    while !driver.stop.load(Ordering::Relaxed) {
        let mut ops = Vec::with_capacity(200);
        for _ in 0..200 {
            let u = rng.usize(..users);
            let user = format!("soak.{u}");
            let conns = &mut open[u];
            match rng.u8(..10) {
                0..=2 if conns.len() < MAX_OPEN => {
                    next += 1;
                    let id = format!("c{seed}.{next}");
                    ops.push(
                        json!({"op": "putConnection", "connectionId": id, "userId": user,
                                    "status": if rng.bool() { "online" } else { "away" }}),
                    );
                    conns.push(id);
                }
                3..=5 if !conns.is_empty() => {
                    let id = &conns[rng.usize(..conns.len())];
                    ops.push(
                        json!({"op": "putConnection", "connectionId": id, "userId": user,
                                    "status": if rng.bool() { "online" } else { "away" }}),
                    );
                }
                6 if !conns.is_empty() => {
                    let id = conns.swap_remove(rng.usize(..conns.len()));
                    ops.push(json!({"op": "deleteConnection", "connectionId": id}));
                }
                7 if !conns.is_empty() => {
                    // Forgotten, not closed: the server's TTL must end it.
                    conns.swap_remove(rng.usize(..conns.len()));
                }
                _ => {
                    let status = ["online", "away", "busy", "offline"][rng.usize(..4)];
                    ops.push(json!({"op": "setStatus", "userId": user, "status": status,
                                    "statusText": format!("soak {}", rng.u8(..4))}));
                }
            }
        }
        let n = ops.len() as u64;
        match driver.batch(ops).await {
            Ok(()) => {
                driver.counts.ops.fetch_add(n, Ordering::Relaxed);
                driver.counts.batches.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => driver.failed(&e),
        }
    }
}

type Mirror = HashMap<String, Value>;

/// Applies an answer to a mirror the way a client does: a full answer replaces
/// it, a delta updates it, offline users leave it.
fn apply(mirror: &mut Mirror, answer: &Value) -> Option<String> {
    if answer["full"].as_bool() == Some(true) {
        mirror.clear();
    }
    for user in answer["users"].as_array()? {
        let id = user["_id"].as_str()?.to_owned();
        if user["status"] == "offline" {
            mirror.remove(&id);
        } else {
            mirror.insert(id, user.clone());
        }
    }
    Some(answer["cursor"].as_str()?.to_owned())
}

/// Follows the server like a frontend: a snapshot, then `since` polls with
/// `If-None-Match`, every `every`. Returns its mirror and cursor once stopped.
async fn poll(driver: Arc<Driver>, every: Duration) -> (Mirror, String) {
    let mut mirror = Mirror::new();
    let mut cursor = None;
    let mut etag: Option<String> = None;
    loop {
        let stopping = driver.stop.load(Ordering::Relaxed);
        let query = cursor
            .as_ref()
            .map_or(String::new(), |c: &String| format!("?since={c}"));
        match driver.presence(&query, etag.as_deref()).await {
            Ok(Some((answer, tag))) => {
                if cursor.is_some() && answer["full"].as_bool() == Some(true) {
                    driver.counts.resyncs.fetch_add(1, Ordering::Relaxed);
                }
                match apply(&mut mirror, &answer) {
                    Some(next) => cursor = Some(next),
                    None => driver.failed(&format!("malformed answer {answer}")),
                }
                etag = Some(tag);
            }
            Ok(None) => {
                driver.counts.not_modified.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => driver.failed(&e),
        }
        driver.counts.polls.fetch_add(1, Ordering::Relaxed);
        if stopping {
            return (mirror, cursor.unwrap_or_default());
        }
        tokio::time::sleep(every).await;
    }
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let driver = Arc::new(Driver {
        http: reqwest::Client::new(),
        base: env("SOAK_BASE", "http://127.0.0.1:3000".to_owned()),
        token: env("SOAK_TOKEN", String::new()),
        counts: Counts::default(),
        stop: AtomicBool::new(false),
    });
    let pid: u32 = env("SOAK_PID", 0);
    let secs: u64 = env("SOAK_SECS", 180);
    let users: usize = env("SOAK_USERS", 10_000);
    let pollers: usize = env("SOAK_POLLERS", 8);
    let capacity: u64 = env("SOAK_CAPACITY", u64::MAX);

    let mut seed = vec![
        json!({"op": "putUser", "userId": CALLER, "username": CALLER}),
        json!({"op": "addToken", "userId": CALLER, "token": CALLER_TOKEN}),
    ];
    seed.extend((0..users).map(|u| {
        json!({"op": "putUser", "userId": format!("soak.{u}"), "username": format!("soak.{u}"),
               "name": format!("Soak User {u}"), "utcOffset": (u % 24) as i64 - 11})
    }));
    for chunk in seed.chunks(1_000) {
        if let Err(e) = driver.batch(chunk.to_vec()).await {
            eprintln!("seeding failed: {e}");
            std::process::exit(2);
        }
    }

    let started = Instant::now();
    let writers: Vec<_> = (0..2)
        .map(|w| tokio::spawn(churn(driver.clone(), users, w + 1)))
        .collect();
    let readers: Vec<_> = (0..pollers)
        .map(|_| tokio::spawn(poll(driver.clone(), Duration::from_millis(250))))
        .collect();

    println!("| t (s) | RSS MiB | online | connections | log entries | log covers (s) | expired | ops/s | polls/s | 304s | resyncs | errors |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut over_capacity = false;
    let mut last = (Instant::now(), 0u64, 0u64);
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(10).min(Duration::from_secs(secs))).await;
        let stats: Value = match driver
            .http
            .get(format!("{}/internal/v1/stats", driver.base))
            .bearer_auth(&driver.token)
            .send()
            .await
        {
            Ok(answer) => answer.json().await.unwrap_or_default(),
            Err(e) => {
                driver.failed(&format!("stats: {e}"));
                Value::Null
            }
        };
        let entries = stats["logEntries"].as_u64().unwrap_or(0);
        over_capacity |= entries > capacity;
        let c = &driver.counts;
        let (ops, polls) = (
            c.ops.load(Ordering::Relaxed),
            c.polls.load(Ordering::Relaxed),
        );
        let dt = last.0.elapsed().as_secs_f64();
        let t = started.elapsed().as_secs_f64();
        let rss = rss_mib(pid);
        samples.push((t, rss));
        println!(
            "| {t:.0} | {rss:.1} | {} | {} | {entries} | {:.0} | {} | {:.0} | {:.0} | {} | {} | {} |",
            stats["online"],
            stats["connections"],
            stats["windowCoveredSecs"].as_f64().unwrap_or(0.0),
            stats["expiredConnections"],
            (ops - last.1) as f64 / dt,
            (polls - last.2) as f64 / dt,
            c.not_modified.load(Ordering::Relaxed),
            c.resyncs.load(Ordering::Relaxed),
            c.errors.load(Ordering::Relaxed),
        );
        last = (Instant::now(), ops, polls);
    }

    driver.stop.store(true, Ordering::Relaxed);
    for writer in writers {
        let _ = writer.await;
    }
    let mut mirrors = Vec::new();
    for reader in readers {
        if let Ok(mirror) = reader.await {
            mirrors.push(mirror);
        }
    }
    // The writers have stopped, but abandoned connections go on expiring for a
    // TTL: retry until the log stands still long enough for every mirror, caught
    // up to the head, to be compared with a snapshot taken at that same head.
    let mut converged = false;
    for _ in 0..30 {
        let Ok(Some((snapshot, _))) = driver.presence("", None).await else {
            continue;
        };
        let head = snapshot["cursor"].as_str().unwrap_or_default().to_owned();
        let mut truth = Mirror::new();
        apply(&mut truth, &snapshot);
        let mut all = true;
        for (mirror, cursor) in &mut mirrors {
            if let Ok(Some((delta, _))) = driver.presence(&format!("?since={cursor}"), None).await {
                *cursor = apply(mirror, &delta).unwrap_or_default();
            }
            all &= *cursor == head && *mirror == truth;
        }
        if all {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let errors = driver.counts.errors.load(Ordering::Relaxed);
    let half = samples.len() / 2;
    let first_half = samples[..half].iter().map(|s| s.1).fold(0.0, f64::max);
    let second_half = samples[half..].iter().map(|s| s.1).fold(0.0, f64::max);
    // Too short a run proves nothing either way: it fails rather than passes.
    let plateau = samples.len() >= 4 && second_half <= first_half * 1.05;
    println!();
    println!(
        "{} ops in {} batches, {} polls ({} answered 304, {} resyncs), {errors} errors",
        driver.counts.ops.load(Ordering::Relaxed),
        driver.counts.batches.load(Ordering::Relaxed),
        driver.counts.polls.load(Ordering::Relaxed),
        driver.counts.not_modified.load(Ordering::Relaxed),
        driver.counts.resyncs.load(Ordering::Relaxed),
    );
    let checks = [
        (errors == 0, "no request failed".to_owned()),
        (!over_capacity, format!("the log never held more than its capacity ({capacity})")),
        (
            plateau,
            format!("RSS plateaued: peak {second_half:.1} MiB in the second half against {first_half:.1} MiB in the first (at most +5%, over at least 4 samples)"),
        ),
        (converged, format!("all {} pollers' mirrors equal a fresh snapshot", mirrors.len())),
    ];
    let mut ok = true;
    for (pass, what) in &checks {
        println!("{} {what}", if *pass { "PASS" } else { "FAIL" });
        ok &= pass;
    }
    if !ok {
        std::process::exit(1);
    }
}

//! The change stream under load (benches/stream.sh starts the server and runs
//! this): STREAMS open streams, each following WATCH random users among USERS,
//! while RATE changes a second go in through the batch API; then the same
//! clients polling every POLL_SECS instead. Reports, for each way, delivery
//! latency (from just before the ingest write to the answer holding the change
//! arriving), server CPU, and what went over the wire; and the server's memory
//! per idle stream.
//!
//! Configured by environment: `BENCH_BASE` (server URL), `BENCH_TOKEN` (ingest
//! token), `BENCH_PID` (server pid, for CPU and RSS from /proc), `STREAMS`,
//! `USERS` (seeded as u0000000.. by benches/seed.py), `WATCH`, `RATE`, `SECS`,
//! `POLL_SECS`.

use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The server's resident memory (bytes) and CPU time used so far (seconds).
fn server(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    (rss_kib * 1024, ticks / 100.0)
}

/// Latencies (µs) of the changes stamped into `text` ("statusText":"t<µs>").
fn stamps(text: &[u8], at: u64, into: &mut Vec<u32>) {
    const MARK: &[u8] = b"\"statusText\":\"t";
    let mut rest = text;
    while let Some(i) = memchr::memmem::find(rest, MARK) {
        rest = &rest[i + MARK.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if let Some(t) = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|d| d.parse::<u64>().ok())
        {
            into.push(u32::try_from(at.saturating_sub(t)).unwrap_or(u32::MAX));
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn watched(users: usize, watch: usize) -> String {
    (0..watch)
        .map(|_| format!("u{:07}", fastrand::usize(..users)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Writes RATE stamped status changes a second, in batches every 10 ms, until `end`.
async fn write_changes(
    base: String,
    token: String,
    users: usize,
    rate: usize,
    end: Instant,
) -> u64 {
    let client = reqwest::Client::new();
    let per_tick = (rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut written = 0;
    let mut flip = false;
    while Instant::now() < end {
        tick.tick().await;
        flip = !flip;
        let stamp = now_us();
        let ops: Vec<_> = (0..per_tick)
            .map(|_| {
                json!({"op": "setStatus", "userId": format!("u{:07}", fastrand::usize(..users)),
                       "status": if flip { "away" } else { "online" }, "statusText": format!("t{stamp}")})
            })
            .collect();
        let sent = client
            .post(format!("{base}/internal/v1/batch"))
            .bearer_auth(&token)
            .json(&json!({ "ops": ops }))
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            written += per_tick as u64;
        }
    }
    written
}

/// [`write_changes`] on a thread and runtime of its own, so that the clients
/// (10 000 tasks) cannot starve the writer's pace.
async fn writer(base: String, token: String, users: usize, rate: usize, end: Instant) -> u64 {
    let (done, written) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("writer runtime");
        let _ = done.send(runtime.block_on(write_changes(base, token, users, rate, end)));
    });
    written.await.unwrap_or(0)
}

struct Phase {
    latencies: Vec<u32>,
    bytes: u64,
    requests: u64,
    cpu: f64,
    secs: f64,
    written: u64,
}

impl Phase {
    fn report(mut self, name: &str) {
        self.latencies.sort_unstable();
        println!(
            "{name}: {} changes written ({:.0}/s), {} deliveries, latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms; \
             server CPU {:.2} cores; client received {:.2} MB/s; {:.0} requests/s",
            self.written,
            self.written as f64 / self.secs,
            self.latencies.len(),
            percentile(&self.latencies, 0.5),
            percentile(&self.latencies, 0.99),
            percentile(&self.latencies, 1.0),
            self.cpu / self.secs,
            self.bytes as f64 / self.secs / 1e6,
            self.requests as f64 / self.secs,
        );
    }
}

/// One stream: opens it, reads its first event, then counts bytes and stamps until `end`.
async fn stream(
    addr: String,
    ids: String,
    opened: Arc<AtomicU64>,
    start: Arc<tokio::sync::Notify>,
    end: Arc<parking_lot::Mutex<Option<Instant>>>,
) -> (Vec<u32>, u64) {
    let Ok(mut socket) = TcpStream::connect(&addr).await else {
        return (Vec::new(), 0);
    };
    let request = format!(
        "GET /api/v1/users.presence.stream?ids={ids} HTTP/1.1\r\nHost: {addr}\r\n\
         X-User-Id: caller\r\nX-Auth-Token: bench-caller-token\r\n\r\n"
    );
    if socket.write_all(request.as_bytes()).await.is_err() {
        return (Vec::new(), 0);
    }
    let mut buf = vec![0u8; 16 * 1024];
    // The head and the first event.
    let mut seen = Vec::new();
    while memchr::memmem::find(&seen, b"\n\n").is_none() {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return (Vec::new(), 0),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    opened.fetch_add(1, Ordering::Relaxed);
    start.notified().await;
    let mut latencies = Vec::new();
    let mut bytes = 0u64;
    loop {
        let deadline = match *end.lock() {
            Some(deadline) => deadline,
            None => Instant::now() + Duration::from_secs(3600),
        };
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                bytes += n as u64;
                stamps(&buf[..n], now_us(), &mut latencies);
            }
            _ => return (latencies, bytes),
        }
    }
}

#[tokio::main]
async fn main() {
    let base: String = env("BENCH_BASE", String::new());
    let token: String = env("BENCH_TOKEN", String::new());
    let pid: u32 = env("BENCH_PID", 0);
    let streams: usize = env("STREAMS", 10_000);
    let users: usize = env("USERS", 10_000);
    let watch: usize = env("WATCH", 10);
    let rate: usize = env("RATE", 1000);
    let secs: u64 = env("SECS", 20);
    let poll_secs: u64 = env("POLL_SECS", 2);
    let addr = base.trim_start_matches("http://").to_owned();

    // BASELINE=1: only as many idle keep-alive connections that asked for
    // /health, on a fresh server (freed memory would be reused by what follows).
    if env("BASELINE", 0u8) == 0 {
        return streams_then_polls(
            base, token, pid, streams, users, watch, rate, secs, poll_secs,
        )
        .await;
    }
    let (rss_plain0, _) = server(pid);
    let mut plain = Vec::with_capacity(streams);
    for n in 0..streams {
        if let Ok(mut socket) = TcpStream::connect(&addr).await {
            let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            let mut buf = [0u8; 1024];
            if socket.write_all(request.as_bytes()).await.is_ok()
                && socket.read(&mut buf).await.is_ok()
            {
                plain.push(socket);
            }
        }
        if n % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_plain1, _) = server(pid);
    println!(
        "baseline: {} idle keep-alive connections (after GET /health): {:.1} KiB each",
        plain.len(),
        rss_plain1.saturating_sub(rss_plain0) as f64 / 1024.0 / plain.len().max(1) as f64
    );
}

/// Idle streams (memory), then push under RATE changes a second, then polling.
#[allow(clippy::too_many_arguments)]
async fn streams_then_polls(
    base: String,
    token: String,
    pid: u32,
    streams: usize,
    users: usize,
    watch: usize,
    rate: usize,
    secs: u64,
    poll_secs: u64,
) {
    let addr = base.trim_start_matches("http://").to_owned();
    // Idle streams: memory per stream.
    let (rss_before, _) = server(pid);
    let opened = Arc::new(AtomicU64::new(0));
    let start = Arc::new(tokio::sync::Notify::new());
    let end = Arc::new(parking_lot::Mutex::new(None));
    let mut tasks = Vec::with_capacity(streams);
    for _ in 0..streams {
        tasks.push(tokio::spawn(stream(
            addr.clone(),
            watched(users, watch),
            opened.clone(),
            start.clone(),
            end.clone(),
        )));
        // Not all at once: the listen backlog is finite.
        if tasks.len() % 500 == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while opened.load(Ordering::Relaxed) < streams as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open = opened.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_open, cpu_idle0) = server(pid);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, cpu_idle1) = server(pid);
    println!(
        "idle: {open} of {streams} streams open; server RSS {:.1} MiB -> {:.1} MiB: {:.1} KiB per open stream; idle CPU {:.3} cores",
        rss_before as f64 / 1048576.0,
        rss_open as f64 / 1048576.0,
        (rss_open.saturating_sub(rss_before)) as f64 / 1024.0 / open.max(1) as f64,
        (cpu_idle1 - cpu_idle0) / 5.0
    );

    // Push.
    start.notify_waiters();
    let (_, cpu0) = server(pid);
    let t0 = Instant::now();
    let stop = t0 + Duration::from_secs(secs);
    *end.lock() = Some(stop + Duration::from_secs(1));
    let written = writer(base.clone(), token.clone(), users, rate, stop).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let (_, cpu1) = server(pid);
    let mut phase = Phase {
        latencies: Vec::new(),
        bytes: 0,
        requests: 0,
        cpu: cpu1 - cpu0,
        secs: elapsed,
        written,
    };
    for task in tasks {
        if let Ok((latencies, bytes)) = task.await {
            phase.latencies.extend(latencies);
            phase.bytes += bytes;
        }
    }
    phase.report("push");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The same clients polling every POLL_SECS, each from its cursor.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(streams)
        .build()
        .expect("client");
    let requests = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let stop = t0 + Duration::from_secs(secs);
    let mut pollers = Vec::with_capacity(streams);
    for _ in 0..streams {
        let (client, base, ids) = (client.clone(), base.clone(), watched(users, watch));
        let (requests, bytes) = (requests.clone(), bytes.clone());
        pollers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut cursor: Option<String> = None;
            // Spread over the interval, as independent clients are.
            tokio::time::sleep(Duration::from_millis(fastrand::u64(..poll_secs * 1000))).await;
            let mut tick = tokio::time::interval(Duration::from_secs(poll_secs));
            while Instant::now() < stop {
                tick.tick().await;
                let url = match &cursor {
                    Some(c) => format!("{base}/api/v1/users.presence?ids={ids}&since={c}"),
                    None => format!("{base}/api/v1/users.presence?ids={ids}"),
                };
                let Ok(response) = client
                    .get(url)
                    .header("X-User-Id", "caller")
                    .header("X-Auth-Token", "bench-caller-token")
                    .send()
                    .await
                else {
                    continue;
                };
                let head: usize = response
                    .headers()
                    .iter()
                    .map(|(k, v)| k.as_str().len() + v.len() + 4)
                    .sum();
                let Ok(body) = response.bytes().await else {
                    continue;
                };
                requests.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add((head + 17 + body.len()) as u64, Ordering::Relaxed);
                if cursor.is_some() {
                    stamps(&body, now_us(), &mut latencies);
                }
                cursor = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["cursor"].as_str().map(str::to_owned));
            }
            latencies
        }));
    }
    let (_, cpu0) = server(pid);
    let written = writer(base.clone(), token.clone(), users, rate, stop).await;
    let mut latencies = Vec::new();
    for poller in pollers {
        if let Ok(l) = poller.await {
            latencies.extend(l);
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (_, cpu1) = server(pid);
    Phase {
        latencies,
        bytes: bytes.load(Ordering::Relaxed),
        requests: requests.load(Ordering::Relaxed),
        cpu: cpu1 - cpu0,
        secs: elapsed,
        written,
    }
    .report(&format!("polling every {poll_secs} s"));
}

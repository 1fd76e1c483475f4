//! Following the change stream: bootstrap, then apply every entry in stream
//! order; on any failure, reconnect with backoff and resume from the last
//! applied entry, or resync when that is no longer possible. Also the sweeper
//! that expires connections, which every replica runs.

use super::entry::{self, pairs, text, text_pairs_only, Kind};
use super::position::EntryId;
use super::writer::SWEEP_LIMIT;
use super::{Cluster, STREAM};
use crate::store::Logged;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};
use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

/// How long one `XREAD` blocks waiting for entries.
const BLOCK: Duration = Duration::from_secs(1);
/// Most entries one read returns, and users one bootstrap call loads.
const CHUNK: usize = 1000;
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct FollowError(String);

impl fmt::Display for FollowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<redis::RedisError> for FollowError {
    fn from(e: redis::RedisError) -> FollowError {
        FollowError(e.to_string())
    }
}

/// Where this replica is in the stream.
#[derive(Debug, Clone, Copy)]
struct Followed {
    generation: u64,
    last: EntryId,
}

/// Follows the stream for as long as the task lives.
pub async fn follow(cluster: Cluster) {
    let mut at = None;
    let mut delay = MIN_BACKOFF;
    loop {
        let e = session(&cluster, &mut at, &mut delay).await;
        cluster.set_problem(Some(format!("cluster: not following Redis: {e}")));
        tracing::warn!("cluster: not following Redis ({e}); retrying in {delay:?}");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

/// One connection's worth of following; returns why it ended.
async fn session(
    cluster: &Cluster,
    at: &mut Option<Followed>,
    delay: &mut Duration,
) -> FollowError {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(BLOCK + Duration::from_secs(5)));
    let mut conn = match cluster
        .shared
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await
    {
        Ok(conn) => conn,
        Err(e) => return e.into(),
    };
    match run(cluster, &mut conn, at, delay).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn run(
    cluster: &Cluster,
    conn: &mut MultiplexedConnection,
    at: &mut Option<Followed>,
    delay: &mut Duration,
) -> Result<std::convert::Infallible, FollowError> {
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(super::link::SCRIPT)
        .query_async::<Value>(conn)
        .await?;
    let generation = generation(conn).await?;
    let resync = match *at {
        None => None,
        Some(f) if f.generation != generation => {
            Some("Redis lost its data (the stream has a new generation)")
        }
        Some(f) if trimmed_past(&stream_info(conn).await?, f.last)? => {
            Some("the stream was trimmed past the last entry this replica applied")
        }
        Some(_) => None,
    };
    let mut followed = match (*at, resync) {
        (Some(f), None) => {
            tracing::info!("cluster: following Redis again from entry {}", f.last);
            f
        }
        (_, reason) => {
            if let Some(reason) = reason {
                tracing::warn!("cluster: resyncing every user from Redis: {reason}");
            }
            bootstrap(cluster, conn, generation).await?
        }
    };
    *at = Some(followed);
    cluster.set_problem(None);
    *delay = MIN_BACKOFF;
    loop {
        // One pipeline, which Redis runs back to back: no entry can be
        // trimmed between the check and the read.
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("XINFO").arg("STREAM").arg(STREAM);
        pipe.cmd("XREAD")
            .arg("COUNT")
            .arg(CHUNK)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(followed.last.to_string());
        let replies: Vec<Value> = pipe.query_async(conn).await?;
        let [info, reply] = replies.as_slice() else {
            return Err(FollowError(format!(
                "unexpected reply to XINFO + XREAD: {replies:?}"
            )));
        };
        if trimmed_past(info, followed.last)? {
            tracing::warn!(
                "cluster: fell behind: the stream was trimmed past entry {}; resyncing every user",
                followed.last
            );
            followed = bootstrap(cluster, conn, generation).await?;
            *at = Some(followed);
            continue;
        }
        let entries = read_entries(reply)?;
        if entries.is_empty() {
            continue;
        }
        for (id, fields) in entries {
            apply(cluster, id, &fields);
            followed.last = id;
        }
        *at = Some(followed);
        cluster
            .shared
            .applied
            .send_replace(followed.last.position());
    }
}

/// Applies one entry to the local store.
fn apply(cluster: &Cluster, id: EntryId, fields: &[(String, String)]) {
    match entry::parse(fields) {
        Ok((kind, change)) => {
            let logged = match kind {
                Kind::Visible => Logged::At {
                    position: id.position(),
                    ts: id.ts(),
                },
                Kind::Hidden | Kind::Loaded => Logged::No,
            };
            cluster.shared.store.replicate(change, logged);
        }
        // Only presenced writes the stream: an entry it cannot read is a bug
        // or a foreign writer, worth an error but not a stop.
        Err(e) => tracing::error!("cluster: skipped entry {id}: {e}"),
    }
}

/// The stream generation, named now if Redis has none (first start, or lost data).
async fn generation(conn: &mut MultiplexedConnection) -> Result<u64, FollowError> {
    let key = "{presenced}:gen";
    redis::cmd("SET")
        .arg(key)
        .arg(fastrand::u64(1..))
        .arg("NX")
        .query_async::<Value>(conn)
        .await?;
    let value: Value = redis::cmd("GET").arg(key).query_async(conn).await?;
    text(&value)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| FollowError(format!("{key} holds no generation: {value:?}")))
}

/// `XINFO STREAM` of the change stream; `Nil` while it does not exist.
async fn stream_info(conn: &mut MultiplexedConnection) -> Result<Value, FollowError> {
    match redis::cmd("XINFO")
        .arg("STREAM")
        .arg(STREAM)
        .query_async::<Value>(conn)
        .await
    {
        Ok(info) => Ok(info),
        Err(e) if e.code() == Some("ERR") => Ok(Value::Nil),
        Err(e) => Err(e.into()),
    }
}

/// True if and only if entries after `last` may have been trimmed away, by
/// `XINFO STREAM`'s `info` (Redis 7 or later). Trimming leaves no trace of
/// what it removed, so this is conservative: the stream lost entries
/// (`entries-added` > `length`) and its first entry is after `last`. It errs
/// only when the first entry left is exactly the one after `last`, which costs
/// a resync, never a gap.
fn trimmed_past(info: &Value, last: EntryId) -> Result<bool, FollowError> {
    let fields: Vec<(String, String)> = match info {
        // No stream: nothing was ever written, so nothing was trimmed.
        Value::Nil | Value::ServerError(_) => return Ok(false),
        Value::Map(fields) => fields
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
            .collect(),
        other => text_pairs_only(other),
    };
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| {
                FollowError(format!(
                    "XINFO STREAM has no {name}: Redis 7 or later is needed"
                ))
            })
    };
    let number = |name: &str| -> Result<u64, FollowError> {
        get(name)?
            .parse()
            .map_err(|_| FollowError(format!("XINFO STREAM: {name} is not a number")))
    };
    let (length, added) = (number("length")?, number("entries-added")?);
    let first = EntryId::parse(get("recorded-first-entry-id")?).unwrap_or(EntryId::ZERO);
    Ok(length > 0 && added > length && first > last)
}

/// An entry's id and fields.
type Entry = (EntryId, Vec<(String, String)>);

/// `XREAD`'s reply as entries.
fn read_entries(reply: &Value) -> Result<Vec<Entry>, FollowError> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams.iter().collect::<Vec<_>>(),
        Value::Map(streams) => streams.iter().map(|(_, v)| v).collect(),
        other => return Err(FollowError(format!("unexpected XREAD reply: {other:?}"))),
    };
    let mut out = Vec::new();
    for stream in streams {
        // RESP2: [name, entries]; RESP3 maps name -> entries.
        let entries = match stream {
            Value::Array(parts) if parts.len() == 2 => &parts[1],
            other => other,
        };
        let Value::Array(entries) = entries else {
            continue;
        };
        out.extend(entries.iter().filter_map(read_entry));
    }
    Ok(out)
}

fn read_entry(value: &Value) -> Option<Entry> {
    let Value::Array(parts) = value else {
        return None;
    };
    let [id, fields] = parts.as_slice() else {
        return None;
    };
    Some((EntryId::parse(&text(id)?)?, pairs(fields)?))
}

/// Loads every user, after recording where the stream ends: the entries after
/// that point, replayed onto what was loaded, converge on the current state.
async fn bootstrap(
    cluster: &Cluster,
    conn: &mut MultiplexedConnection,
    generation: u64,
) -> Result<Followed, FollowError> {
    let newest: Value = redis::cmd("XREVRANGE")
        .arg(STREAM)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    let last = match &newest {
        Value::Array(entries) => entries.first().and_then(read_entry).map(|(id, _)| id),
        _ => None,
    }
    .unwrap_or(EntryId::ZERO);
    let store = &cluster.shared.store;
    let mut held = HashSet::new();
    let mut scan = "0".to_owned();
    loop {
        let reply: Value = redis::cmd("SSCAN")
            .arg("{presenced}:ids")
            .arg(&scan)
            .arg("COUNT")
            .arg(CHUNK)
            .query_async(conn)
            .await?;
        let Value::Array(parts) = &reply else {
            return Err(FollowError(format!("unexpected SSCAN reply: {reply:?}")));
        };
        let (next, ids) = match parts.as_slice() {
            [next, Value::Array(ids)] => {
                (text(next), ids.iter().filter_map(text).collect::<Vec<_>>())
            }
            _ => return Err(FollowError(format!("unexpected SSCAN reply: {reply:?}"))),
        };
        if !ids.is_empty() {
            let rows: Value = cluster.invocation("dump", &ids).query_async(conn).await?;
            let Value::Array(rows) = rows else {
                return Err(FollowError(
                    "unexpected reply to the dump script".to_owned(),
                ));
            };
            for row in &rows {
                match pairs(row).map(|fields| entry::parse(&fields)) {
                    Some(Ok((_, change))) => {
                        store.replicate(change, Logged::No);
                    }
                    Some(Err(e)) => tracing::error!("cluster: skipped a user while loading: {e}"),
                    None => tracing::error!("cluster: skipped an unreadable user while loading"),
                }
            }
            held.extend(ids);
        }
        match next {
            Some(next) if next != "0" => scan = next,
            _ => break,
        }
    }
    store.retain_replicated(&held);
    store.rebase(generation, last.position(), last.ts());
    cluster
        .shared
        .generation
        .store(generation, std::sync::atomic::Ordering::Release);
    cluster.shared.applied.send_replace(last.position());
    tracing::info!(
        "cluster: loaded {} users from Redis; following the stream from entry {last}",
        held.len()
    );
    Ok(Followed { generation, last })
}

/// Expires connections for as long as the task lives: every replica sweeps,
/// and the script closes only what Redis's clock says is due.
pub async fn sweep(cluster: Cluster) {
    let ttl = Duration::from_millis(cluster.shared.limits.connection_ttl_ms);
    let period = (ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if cluster.problem().is_some() {
            continue;
        }
        loop {
            match cluster.sweep().await {
                Ok(closed) if closed >= SWEEP_LIMIT => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!("cluster: sweep failed: {e}");
                    break;
                }
            }
        }
    }
}

//! Following the chat server over DDP: connect, log in with the service
//! account's resume token, subscribe to `user-status`, take the full picture
//! once the subscription is ready, then apply events as they come and answer
//! pings; on any failure, back off (capped, jittered) and start over, which
//! takes the picture again so nothing missed while away stays missed.

use super::ddp::{self, Incoming, Outgoing, Read, Resume};
use super::{sync, Upstream};
use futures_util::{SinkExt, StreamExt};
use std::convert::Infallible;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Follows the chat server for as long as the task lives.
pub async fn follow(up: Upstream) {
    let link = &up.shared.link;
    let mut backoff = Backoff::new(link.reconnect_min, link.reconnect_max);
    let mut followed_before = false;
    loop {
        let why = match session(&up, &mut backoff, &mut followed_before).await {
            Ok(never) => match never {},
            Err(why) => why,
        };
        up.set_problem(Some(format!(
            "upstream: not following the chat server: {why}"
        )));
        let pause = backoff.next_pause();
        tracing::warn!(
            "upstream: not following {} ({why}); answers show the last known state; \
             retrying in {pause:?}",
            link.websocket
        );
        tokio::time::sleep(pause).await;
    }
}

/// The pauses between attempts to reach the chat server: from `min`, doubled
/// after each failed attempt up to `max`, back to `min` once a session follows.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    delay: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            delay: min,
        }
    }

    /// The pause before the next attempt (the delay, jittered); the delay
    /// after it doubles, within `max`.
    fn next_pause(&mut self) -> Duration {
        let pause = jittered(self.delay);
        self.delay = (self.delay * 2).min(self.max);
        pause
    }

    /// Called once a session follows: the next failure starts over at `min`.
    fn reset(&mut self) {
        self.delay = self.min;
    }
}

/// Half of `delay` plus a random part of the other half, so that replicas
/// cut off together do not all come back at the same instant.
fn jittered(delay: Duration) -> Duration {
    let half = delay / 2;
    half + half.mul_f64(fastrand::f64())
}

async fn send(socket: &mut Socket, frame: Outgoing<'_>) -> Result<(), String> {
    socket
        .send(Message::Text(frame.to_text().into()))
        .await
        .map_err(|e| format!("cannot write to the WebSocket: {e}"))
}

/// One connection's worth of following; returns why it ended.
async fn session(
    up: &Upstream,
    backoff: &mut Backoff,
    followed_before: &mut bool,
) -> Result<Infallible, String> {
    let shared = &*up.shared;
    let link = &shared.link;
    let metrics = &shared.metrics;
    let (mut socket, _) = tokio::time::timeout(
        link.request_timeout,
        tokio_tungstenite::connect_async(link.websocket.as_str()),
    )
    .await
    .map_err(|_| "the WebSocket handshake timed out".to_owned())?
    .map_err(|e| format!("cannot open the WebSocket: {e}"))?;
    send(
        &mut socket,
        Outgoing::Connect {
            version: "1",
            support: ["1"],
        },
    )
    .await?;
    let mut following = false;
    let mut silent = 0;
    loop {
        let message = match tokio::time::timeout(link.heartbeat, socket.next()).await {
            Err(_) if silent == 0 => {
                silent = 1;
                send(&mut socket, Outgoing::Ping).await?;
                continue;
            }
            Err(_) => return Err(format!("no frame for {:?}", link.heartbeat * 2)),
            Ok(None) => return Err("the chat server closed the WebSocket".to_owned()),
            Ok(Some(Err(e))) => return Err(format!("the WebSocket failed: {e}")),
            Ok(Some(Ok(message))) => message,
        };
        silent = 0;
        let received = Instant::now();
        metrics
            .last_frame
            .set(crate::clock::wall_ms() as f64 / 1000.0);
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => return Err("the chat server closed the WebSocket".to_owned()),
            Message::Binary(_) => {
                let detail = "a binary frame: DDP is JSON text";
                shared.bad_input().skip("malformed-frame", &detail);
                continue;
            }
            // WebSocket-level pings are answered by tungstenite itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        let frame = match ddp::read(text.as_str()) {
            Ok(Read::Frame(frame)) => frame,
            Ok(Read::Ignored) => continue,
            Err(bad) => {
                shared.bad_input().skip(bad.kind, &bad);
                continue;
            }
        };
        match frame {
            Incoming::Connected => {
                send(
                    &mut socket,
                    Outgoing::Method {
                        id: ddp::LOGIN_ID,
                        method: "login",
                        params: [Resume {
                            resume: &link.token,
                        }],
                    },
                )
                .await?;
                // DDP runs a session's messages in order: the subscription
                // starts once the login has been answered.
                send(
                    &mut socket,
                    Outgoing::Sub {
                        id: ddp::SUB_ID,
                        name: ddp::STREAM,
                        params: (ddp::USER_STATUS, false),
                    },
                )
                .await?;
            }
            Incoming::Failed { version } => {
                return Err(format!(
                    "the chat server speaks no DDP version we do (it offered {version:?})"
                ))
            }
            Incoming::Ping { id } => {
                send(&mut socket, Outgoing::Pong { id: id.as_deref() }).await?
            }
            Incoming::Result {
                id,
                error: Some(error),
            } if id == ddp::LOGIN_ID => {
                return Err(format!(
                    "the service account's login (upstream.user_id, upstream.token) was refused: \
                     {error}"
                ))
            }
            Incoming::Nosub { id, error } if id == ddp::SUB_ID => {
                let why = error.map_or_else(|| "no reason given".to_owned(), |e| e.to_string());
                return Err(format!(
                    "the subscription to user-status was refused: {why}"
                ));
            }
            Incoming::Ready { subs } if !following && subs.iter().any(|s| s == ddp::SUB_ID) => {
                // Events from here on queue in the socket while the picture is
                // taken, and are applied after it in order: an event older than
                // the picture rewrites what it already shows, a newer one wins.
                let raw = shared
                    .rest
                    .online_users()
                    .await
                    .map_err(|e| format!("GET /api/v1/users.presence: {e}"))?;
                let entries = sync::picture(raw, shared.bad_input());
                let done = sync::resync(&shared.store, entries, shared.bad_input());
                tracing::info!(
                    "upstream: took the full picture ({} users not offline, {} changes written); \
                     following user-status",
                    done.online,
                    done.changes
                );
                following = true;
                if *followed_before {
                    metrics.reconnects.inc();
                }
                *followed_before = true;
                backoff.reset();
                up.set_problem(None);
            }
            Incoming::Changed { collection, fields } => {
                match ddp::status_event(&collection, &fields) {
                    Ok(Some(event)) => {
                        sync::event(&shared.store, &shared.rest, event, shared.bad_input()).await;
                        metrics.events_applied.inc();
                        metrics.event_lag.set(received.elapsed().as_secs_f64());
                    }
                    Ok(None) => {}
                    Err(bad) => shared.bad_input().skip(bad.kind, &bad),
                }
            }
            Incoming::Error { reason } => {
                let detail = format!("the chat server could not read a frame of ours: {reason:?}");
                shared.bad_input().skip("ddp-error", &detail);
            }
            Incoming::Result { .. }
            | Incoming::Nosub { .. }
            | Incoming::Ready { .. }
            | Incoming::Pong
            | Incoming::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_and_start_over_once_a_session_follows() {
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(1000));
        let mut backoff = Backoff::new(min, max);
        // Each pause is its delay jittered into [delay / 2, delay].
        let delays: Vec<Duration> = (0..7)
            .map(|_| {
                let delay = backoff.delay;
                let pause = backoff.next_pause();
                assert!(
                    pause >= delay / 2 && pause <= delay,
                    "{pause:?} for {delay:?}"
                );
                delay
            })
            .collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            delays,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(1000),
                ms(1000)
            ]
        );
        backoff.reset();
        assert_eq!(backoff.delay, min);
        assert!(backoff.next_pause() <= min);
    }

    #[test]
    fn a_jittered_delay_lies_between_half_the_delay_and_the_delay() {
        let delay = Duration::from_millis(1000);
        for _ in 0..1000 {
            let pause = jittered(delay);
            assert!(pause >= delay / 2 && pause <= delay, "{pause:?}");
        }
    }
}

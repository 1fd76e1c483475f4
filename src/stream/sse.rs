//! The Server-Sent Events framing of the change stream: what each kind of
//! event looks like on the wire (see the HTML standard's `text/event-stream`).
//!
//! An answer event carries `id: <cursor>`, so a browser's `EventSource`
//! reconnects with `Last-Event-ID: <cursor>` and resumes where it was; its
//! data is a `users.presence` answer, one line of JSON (JSON escapes line
//! breaks inside strings). A comment (`:`) keeps an idle stream alive
//! through proxies; an event without data updates the last event id without
//! firing anything, which is how a stream filtered by ids moves its resume
//! point past changes it left out.

use crate::store::Cursor;
use actix_web::web::Bytes;
use serde::Serialize;

/// How long a browser waits before reconnecting a dropped stream (ms).
pub const RETRY_MS: u64 = 2000;

/// An answer event: `json` is a rendered `users.presence` answer at `cursor`.
pub fn answer(cursor: Cursor, json: &str) -> Bytes {
    Bytes::from(format!("id: {cursor}\ndata: {json}\n\n"))
}

/// An answer event around a shared rendered body, as three pieces so the
/// body (a full snapshot can be megabytes) is not copied per stream. The
/// first event of a stream also tells the browser how long to wait before
/// reconnecting; it shares the block of an event with an id, so the browser's
/// resume point is never reset to nothing.
pub fn answer_around(cursor: Cursor, body: Bytes, first: bool) -> [Bytes; 3] {
    let retry = if first {
        format!("retry: {RETRY_MS}\n")
    } else {
        String::new()
    };
    [
        Bytes::from(format!("{retry}id: {cursor}\ndata: ")),
        body,
        Bytes::from_static(b"\n\n"),
    ]
}

/// A heartbeat comment; with `resume`, it also moves the resume point there.
pub fn heartbeat(resume: Option<Cursor>) -> Bytes {
    match resume {
        Some(cursor) => Bytes::from(format!(":\nid: {cursor}\n\n")),
        None => Bytes::from_static(b":\n\n"),
    }
}

/// Why the server ends a stream: sent as the last event before it closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goodbye {
    /// The server is shutting down; reconnecting later (or elsewhere) resumes.
    Shutdown,
    /// The client fell behind the buffer too often (`stream.max_lags_per_minute`).
    TooSlow,
    /// The stream reached `stream.max_lifetime_secs`; reconnecting resumes.
    Reconnect,
}

#[derive(Serialize)]
struct GoodbyeBody {
    reason: &'static str,
    message: &'static str,
}

impl Goodbye {
    /// The event: `event: bye` with `{"reason":..,"message":..}`.
    pub fn event(self) -> Bytes {
        let body = match self {
            Goodbye::Shutdown => GoodbyeBody {
                reason: "shutdown",
                message: "the server is shutting down; reconnect with Last-Event-ID to resume",
            },
            Goodbye::Reconnect => GoodbyeBody {
                reason: "reconnect",
                message: "this stream reached its lifetime (stream.max_lifetime_secs); \
                          reconnect with Last-Event-ID to resume",
            },
            Goodbye::TooSlow => GoodbyeBody {
                reason: "too-slow",
                message: "this client fell behind the change stream too often \
                          (stream.max_lags_per_minute); reconnect with Last-Event-ID, or poll",
            },
        };
        // Two string fields of our own cannot fail to serialize.
        let json = serde_json::to_string(&body).unwrap_or_default();
        Bytes::from(format!("event: bye\ndata: {json}\n\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_one_block_ended_by_a_blank_line() {
        let cursor = Cursor::new(10, 2);
        let pieces = answer_around(cursor, Bytes::from_static(b"{}"), true);
        let joined: Vec<u8> = pieces.concat();
        assert_eq!(joined, b"retry: 2000\nid: a.2\ndata: {}\n\n");
        assert_eq!(&answer(cursor, "{}")[..], b"id: a.2\ndata: {}\n\n");
        assert_eq!(&heartbeat(None)[..], b":\n\n");
        assert_eq!(&heartbeat(Some(cursor))[..], b":\nid: a.2\n\n");
        for goodbye in [Goodbye::Shutdown, Goodbye::TooSlow, Goodbye::Reconnect] {
            let event = goodbye.event();
            let text = std::str::from_utf8(&event).unwrap();
            let data = text
                .strip_prefix("event: bye\ndata: ")
                .and_then(|t| t.strip_suffix("\n\n"))
                .unwrap();
            assert!(!data.contains('\n'));
            let body: serde_json::Value = serde_json::from_str(data).unwrap();
            assert!(body["reason"].is_string() && body["message"].is_string());
        }
    }
}

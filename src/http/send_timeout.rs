//! Connections to clients that stopped reading are closed: every accepted socket
//! gets `TCP_USER_TIMEOUT` (`server.send_timeout_secs`).
//!
//! Nothing else would close them. actix writes a response only while the socket
//! takes bytes, and polls a streaming body only while its own buffer has room,
//! so a change stream whose client stopped reading is never polled again: its
//! lag checks, its heartbeat and its lifetime all wait for a poll that does not
//! come, and actix-http has no write timeout. The kernel does notice: the
//! client's receive window stays shut, and with this option it aborts the
//! connection once sent data (or its window probes) have gone unanswered for
//! the timeout; the pending write then fails, actix drops the connection, and
//! the stream's place is freed. Such a client reads nothing, so no goodbye can
//! tell it why: it sees its connection reset, and an `EventSource` reconnects
//! with `Last-Event-ID`. A client that reads, however slowly, acknowledges what
//! it reads and is never cut off by this (one that reads too slowly for the
//! buffer is told `too-slow`, see `stream::subscriber`); polls are unaffected.

use actix_web::dev::Extensions;
use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Returns what `HttpServer::on_connect` calls for each accepted connection:
/// sets its send timeout to `timeout` (zero: the kernel's default, left alone).
pub fn on_connect(timeout: Duration) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
    move |connection, _| {
        if timeout.is_zero() {
            return;
        }
        let Some(socket) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() else {
            return;
        };
        if let Err(e) = set(socket, timeout) {
            // The same on every connection: said once.
            static SAID: AtomicBool = AtomicBool::new(false);
            if !SAID.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "server.send_timeout_secs: cannot set TCP_USER_TIMEOUT; clients that stop reading keep their connections");
            }
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set(socket: &actix_web::rt::net::TcpStream, timeout: Duration) -> std::io::Result<()> {
    socket2::SockRef::from(socket).set_tcp_user_timeout(Some(timeout))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set(_: &actix_web::rt::net::TcpStream, _: Duration) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "TCP_USER_TIMEOUT is Linux's",
    ))
}

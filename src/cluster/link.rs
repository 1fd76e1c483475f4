//! The writers' connection to Redis: one multiplexed connection shared by
//! every request, opened on first use and dropped when it fails, so the next
//! write reconnects (a write fails fast with 503 meanwhile rather than queueing
//! behind a dead socket). The script is loaded on every new connection, so a
//! Redis that restarted and forgot it is handled by reconnecting.

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisError, Value};
use std::time::Duration;

/// The writes, as one Lua script.
pub const SCRIPT: &str = include_str!("presence.lua");

/// How long a write waits to connect, and for an answer, before it is a 503.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Link {
    client: Client,
    sha: String,
    // A tokio mutex: connecting awaits, and one connect should serve every
    // writer that was waiting for it.
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl Link {
    pub fn new(client: Client) -> Link {
        Link {
            client,
            sha: redis::Script::new(SCRIPT).get_hash().to_owned(),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// The SHA1 the script is invoked by.
    pub fn sha(&self) -> &str {
        &self.sha
    }

    async fn connection(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(SCRIPT)
            .query_async::<Value>(&mut conn)
            .await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Forgets the connection after a failure that may have broken it (a
    /// server error, such as a Redis that forgot the script, is one too: the
    /// next connection loads it). Returns true if and only if the failure was
    /// the connection's, not the command's.
    async fn failed(&self, e: &RedisError) -> bool {
        let broken = e.is_io_error() || e.is_connection_dropped() || e.is_timeout();
        if broken || e.code().is_some() {
            *self.conn.lock().await = None;
        }
        broken
    }

    /// Runs `send` on the connection. A connection found broken (Redis
    /// restarted since the last write) is replaced and `send` runs once more:
    /// every op of the script sets state rather than adds to it, so running
    /// one twice leaves what running it once does.
    async fn retrying<T, F, Fut>(&self, send: F) -> Result<T, RedisError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let mut retried = false;
        loop {
            match send(self.connection().await?).await {
                Err(e) if self.failed(&e).await && !retried => retried = true,
                result => return result,
            }
        }
    }

    /// Runs one command (see [`Link::retrying`]).
    pub async fn query(&self, cmd: &Cmd) -> Result<Value, RedisError> {
        self.retrying(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// Runs a pipeline (not a transaction: each command is atomic on its own).
    pub async fn pipeline(&self, pipe: &Pipeline) -> Result<Vec<Value>, RedisError> {
        self.retrying(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await
    }
}

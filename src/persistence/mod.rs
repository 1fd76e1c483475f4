//! Persistence (docs/configuration.md, `persistence.*`): the store's users, tokens, chosen
//! statuses and connections, saved to one snapshot file every interval and
//! on shutdown, and loaded at start.
//!
//! - `format`: the file's lines (a header, a JSON line per user, a trailer
//!   with a count and a SHA-256).
//! - `save`: writing it atomically (temp file, fsync, rename, fsync of the
//!   directory).
//! - `load`: reading it back, checking every line as the API would.
//!
//! [`SnapshotFile`] ties them to one store: it loads at start, refuses a file it
//! cannot trust rather than overwrite it, writes in the background only when
//! something changed, and remembers the last failure for `/ready`.

mod format;
mod load;
mod save;

pub use load::{load, Loaded};
#[cfg(test)]
use save::hex;
pub use save::{save, temp_path, Saved};

use crate::background::BackgroundTask;
use crate::store::{Store, StoreOptions};
use parking_lot::Mutex;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a snapshot could not be read or written.
///
/// `Display` is the whole message: the file, the line or the step, and the OS
/// error if there is one; `source()` returns that OS error.
#[derive(Debug)]
pub struct SnapshotError {
    message: String,
    source: Option<io::Error>,
}

impl SnapshotError {
    fn new(path: &Path, what: String) -> SnapshotError {
        SnapshotError {
            message: format!("{}: {what}", path.display()),
            source: None,
        }
    }

    fn io(path: &Path, doing: String, e: io::Error) -> SnapshotError {
        SnapshotError {
            message: format!("{}: {doing}: {e}", path.display()),
            source: Some(e),
        }
    }
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SnapshotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The snapshot file of one store.
#[derive(Debug)]
pub struct SnapshotFile {
    path: PathBuf,
    store: Store,
    /// The store's version the file at the path holds, once one was written
    /// or loaded. Held for a whole write: the periodic and the final write
    /// share the temp file, so they take turns.
    written: Mutex<Option<u64>>,
    /// The last write's error, until a write succeeds. Apart from `written`
    /// so that `/ready` never waits for a write.
    failure: Mutex<Option<String>>,
}

impl SnapshotFile {
    /// Loads the snapshot at `path` into a new store, or starts an empty one
    /// when there is no file. A leftover `<path>.tmp` (a write cut short) is
    /// removed.
    ///
    /// # Errors
    /// When the file exists but cannot be read or trusted; it is left as it is.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Arc<SnapshotFile>, SnapshotError> {
        let started = Instant::now();
        let (store, version) = match load(path, options)? {
            Some(loaded) => {
                tracing::info!(
                    "snapshot: loaded {} users ({} connections, {} bytes) from {} in {} ms",
                    loaded.users,
                    loaded.store.stats().connections,
                    loaded.bytes,
                    path.display(),
                    started.elapsed().as_millis()
                );
                let version = loaded.store.version();
                (loaded.store, Some(version))
            }
            None => {
                tracing::info!("snapshot: no file at {}: starting empty", path.display());
                (Store::new(options), None)
            }
        };
        let temp = temp_path(path);
        if std::fs::remove_file(&temp).is_ok() {
            tracing::warn!(
                "snapshot: removed {}, left by a write that was cut short",
                temp.display()
            );
        }
        Ok(Arc::new(SnapshotFile {
            path: path.to_owned(),
            store,
            written: Mutex::new(version),
            failure: Mutex::new(None),
        }))
    }

    /// The store the snapshots are of.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The snapshot file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the last write's error, `persistence: <path>: <what failed>`,
    /// if the last write failed.
    pub fn problem(&self) -> Option<String> {
        self.failure.lock().clone()
    }

    /// Writes the snapshot unless the file already holds the store as it is.
    /// Blocks for the write: call it off the async runtime.
    ///
    /// # Errors
    /// The write's error, which is also logged and kept for [`SnapshotFile::problem`].
    pub fn write_if_changed(&self) -> Result<Option<Saved>, SnapshotError> {
        let mut written = self.written.lock();
        // Read before the walk: a change during the walk makes the next
        // round write again.
        let version = self.store.version();
        if *written == Some(version) {
            return Ok(None);
        }
        let started = Instant::now();
        match save(&self.path, &self.store) {
            Ok(saved) => {
                *written = Some(version);
                let recovered = self.failure.lock().take().is_some();
                let ms = started.elapsed().as_millis();
                if recovered {
                    tracing::info!(
                        "snapshot: writing {} works again ({} users in {ms} ms)",
                        self.path.display(),
                        saved.users
                    );
                } else {
                    tracing::debug!(
                        "snapshot: wrote {} users ({} bytes) to {} in {ms} ms",
                        saved.users,
                        saved.bytes,
                        self.path.display()
                    );
                }
                Ok(Some(saved))
            }
            Err(e) => {
                tracing::error!(
                    "snapshot: {e}; the service keeps serving, and the previous snapshot, if any, stays in place"
                );
                *self.failure.lock() = Some(format!("persistence: {e}"));
                Err(e)
            }
        }
    }

    /// Writes on a blocking thread, so the runtime's workers never wait for the disk.
    pub async fn write_in_background(self: &Arc<Self>) -> Result<Option<Saved>, SnapshotError> {
        let snapshots = Arc::clone(self);
        match tokio::task::spawn_blocking(move || snapshots.write_if_changed()).await {
            Ok(result) => result,
            Err(e) => Err(SnapshotError::new(
                &self.path,
                format!("the write stopped unexpectedly: {e}"),
            )),
        }
    }

    /// Writes now, then every `interval` after the previous write ended,
    /// for as long as the returned task lives.
    pub fn spawn_periodic(self: &Arc<Self>, interval: Duration) -> BackgroundTask {
        let snapshots = Arc::clone(self);
        BackgroundTask::spawn(async move {
            loop {
                // A failure is logged and kept for /ready by write_if_changed.
                let _ = snapshots.write_in_background().await;
                tokio::time::sleep(interval).await;
            }
        })
    }
}

#[cfg(test)]
mod tests;

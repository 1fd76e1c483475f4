//! Writing a snapshot so that the file at the path is always a whole one.
//!
//! The users go to `<path>.tmp` in the same directory, which is then flushed
//! to disk (`fsync`), renamed over the path (atomic on POSIX file systems), and
//! the directory is flushed so the rename itself survives a power cut. A crash
//! at any point leaves either the previous snapshot or the new one at the path,
//! never a mix; a partial `.tmp` is overwritten by the next write. The file is
//! created readable by its owner only: token hashes are as good as passwords
//! against this service.

use super::format::{push_line, push_user, Header, Trailer, FORMAT, VERSION};
use super::SnapshotError;
use crate::store::{Moved, Store};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Walks a snapshot may take before giving up for this round: a walk fails
/// only when a username or connection id moves between users during it.
const WALKS: usize = 3;

/// What a write put on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    pub users: u64,
    pub bytes: u64,
}

/// Where the next snapshot is written before it replaces `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Why one walk failed.
enum Failure {
    Io(String, io::Error),
    Moved(Moved),
}

impl From<Moved> for Failure {
    fn from(moved: Moved) -> Failure {
        Failure::Moved(moved)
    }
}

/// Adds what was being done to an io error.
fn doing(what: impl FnOnce() -> String) -> impl FnOnce(io::Error) -> Failure {
    move |e| Failure::Io(what(), e)
}

/// Writes every user of `store` to `path`, atomically.
///
/// # Errors
/// A [`SnapshotError`] naming the path, the step and the OS error; the file
/// at `path` is then untouched.
pub fn save(path: &Path, store: &Store) -> Result<Saved, SnapshotError> {
    let temp = temp_path(path);
    let mut moved = None;
    for _ in 0..WALKS {
        let result = write_temp(&temp, store).and_then(|saved| {
            std::fs::rename(&temp, path).map_err(doing(|| {
                format!("cannot rename {} to {}", temp.display(), path.display())
            }))?;
            sync_parent(path)?;
            Ok(saved)
        });
        match result {
            Ok(saved) => return Ok(saved),
            Err(failure) => {
                // Best effort: what is left is overwritten by the next write anyway.
                let _ = std::fs::remove_file(&temp);
                match failure {
                    Failure::Io(doing, e) => return Err(SnapshotError::io(path, doing, e)),
                    Failure::Moved(m) => moved = Some(m),
                }
            }
        }
    }
    let why = moved.map_or_else(String::new, |m| m.to_string());
    Err(SnapshotError::new(
        path,
        format!("{why}, in each of {WALKS} walks; the next round tries again"),
    ))
}

/// Writes header, users and trailer to `temp` and flushes it to disk.
fn write_temp(temp: &Path, store: &Store) -> Result<Saved, Failure> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(temp)
        .map_err(doing(|| format!("cannot create {}", temp.display())))?;
    let written = || format!("cannot write {}", temp.display());
    let mut sha = Sha256::new();
    let mut buf = Vec::with_capacity(1 << 20);
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        written_at: crate::clock::wall_ms(),
    };
    let (mut users, mut bytes) = (0u64, 0u64);
    let mut flush = |buf: &mut Vec<u8>, file: &mut File| {
        sha.update(&buf[..]);
        bytes += buf.len() as u64;
        let result = file.write_all(buf);
        buf.clear();
        result
    };
    push_line(&mut buf, &header).map_err(|e| Failure::Io(written(), e.into()))?;
    flush(&mut buf, &mut file).map_err(doing(written))?;
    store.export(|shard| {
        for user in &shard {
            push_user(&mut buf, user).map_err(|e| Failure::Io(written(), e.into()))?;
        }
        users += shard.len() as u64;
        flush(&mut buf, &mut file).map_err(doing(written))
    })?;
    let trailer = Trailer {
        users,
        sha256: hex(&sha.finalize()),
    };
    push_line(&mut buf, &trailer).map_err(|e| Failure::Io(written(), e.into()))?;
    bytes += buf.len() as u64;
    file.write_all(&buf).map_err(doing(written))?;
    file.sync_all()
        .map_err(doing(|| format!("cannot flush {} to disk", temp.display())))?;
    Ok(Saved { users, bytes })
}

/// Flushes the directory holding `path`, so that the rename is on disk too.
fn sync_parent(path: &Path) -> Result<(), Failure> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(doing(|| {
            format!("cannot flush directory {} to disk", dir.display())
        }))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

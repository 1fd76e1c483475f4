//! Reading a snapshot back, trusting nothing in it.
//!
//! The file is read line by line (a million users never sit in memory twice):
//! the header must name the format and a version this build reads, each user
//! line must parse and pass the checks the API applies, and the last line must
//! be a trailer whose count and SHA-256 match what came before it. The first
//! failure names the file and the line. The file is only ever read here.

use super::format::{json_error, parse_user, Header, Trailer, FORMAT, VERSION};
use super::save::hex;
use super::SnapshotError;
use crate::store::{Restoring, Store, StoreOptions};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// Longest line accepted. A user line stays under 100 KiB even with 256
/// tokens and 256 connections; a longer one is damage, and must not make
/// start-up read a whole damaged file into one buffer.
const MAX_LINE: usize = 1 << 20;

/// A store read from a snapshot.
#[derive(Debug)]
pub struct Loaded {
    pub store: Store,
    pub users: u64,
    pub bytes: u64,
}

/// The file's lines, numbered from 1, each with its `\n`.
struct Lines<'a> {
    reader: BufReader<File>,
    path: &'a Path,
    number: usize,
    bytes: u64,
}

impl Lines<'_> {
    fn error(&self, what: impl std::fmt::Display) -> SnapshotError {
        SnapshotError::new(self.path, format!("line {}: {what}", self.number))
    }

    /// Reads the next line into `buf`; false at the end of the file.
    fn next(&mut self, buf: &mut Vec<u8>) -> Result<bool, SnapshotError> {
        buf.clear();
        let limit = MAX_LINE as u64 + 1;
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', buf)
            .map_err(|e| SnapshotError::io(self.path, "cannot read it".to_owned(), e))?;
        if read == 0 {
            return Ok(false);
        }
        self.number += 1;
        self.bytes += read as u64;
        if buf.last() != Some(&b'\n') {
            return Err(if buf.len() > MAX_LINE {
                self.error(format_args!(
                    "longer than {MAX_LINE} bytes: the file is damaged"
                ))
            } else {
                self.error("the file ends in the middle of this line: it was cut short")
            });
        }
        Ok(true)
    }
}

/// Reads the snapshot at `path` into a new store.
///
/// Returns `None` when there is no file at `path` (nor, when its directory is
/// a regular file, can be): a fresh start, with nothing to lose.
///
/// # Errors
/// A [`SnapshotError`] naming the file, and the line when one is at fault,
/// when the file cannot be read or is not a whole, valid snapshot.
pub fn load(path: &Path, options: &StoreOptions) -> Result<Option<Loaded>, SnapshotError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(SnapshotError::io(path, "cannot open it".to_owned(), e)),
    };
    let mut lines = Lines {
        reader: BufReader::with_capacity(1 << 20, file),
        path,
        number: 0,
        bytes: 0,
    };
    let mut sha = Sha256::new();
    let (mut line, mut ahead) = (Vec::new(), Vec::new());

    if !lines.next(&mut line)? {
        return Err(SnapshotError::new(
            path,
            "the file is empty, which no write of presenced leaves behind".to_owned(),
        ));
    }
    check_header(&line).map_err(|e| lines.error(e))?;
    sha.update(&line);
    if !lines.next(&mut line)? {
        return Err(
            lines.error("the file ends after its header, without a trailer: it was cut short")
        );
    }

    let mut restoring = Restoring::new(options);
    let mut users = 0u64;
    // A line is the trailer exactly when no line follows it.
    while lines.next(&mut ahead)? {
        let number = lines.number - 1;
        let at = |what: String| SnapshotError::new(path, format!("line {number}: {what}"));
        sha.update(&line);
        let user = parse_user(&line).map_err(at)?;
        restoring.add(user).map_err(|e| at(e.to_string()))?;
        users += 1;
        std::mem::swap(&mut line, &mut ahead);
    }
    let trailer: Trailer = serde_json::from_slice(&line).map_err(|e| {
        lines.error(format_args!(
            "expected the trailer line {{\"users\":..,\"sha256\":..}} ({}): the file was cut short or damaged",
            json_error(&e)
        ))
    })?;
    if trailer.users != users {
        return Err(lines.error(format_args!(
            "the trailer counts {} users but the file holds {users}: it is damaged",
            trailer.users
        )));
    }
    if trailer.sha256 != hex(&sha.finalize()) {
        return Err(lines.error(
            "the SHA-256 of the lines before the trailer is not the one it records: the file is damaged",
        ));
    }
    Ok(Some(Loaded {
        store: restoring.finish(),
        users,
        bytes: lines.bytes,
    }))
}

fn check_header(line: &[u8]) -> Result<(), String> {
    let not_ours = || {
        format!("not a presenced snapshot: expected a header like {{\"format\":\"{FORMAT}\",\"version\":{VERSION}}}")
    };
    let header: Header<'_> = serde_json::from_slice(line).map_err(|_| not_ours())?;
    if header.format != FORMAT {
        return Err(not_ours());
    }
    if header.version != VERSION {
        return Err(format!(
            "snapshot format version {} is not one this build reads (it reads version {VERSION})",
            header.version
        ));
    }
    Ok(())
}

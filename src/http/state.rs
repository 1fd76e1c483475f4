//! What every handler shares: the store and the settings that shape answers.

use crate::store::Store;
use sha2::{Digest, Sha256};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Built once, outside the worker factory, and shared by all workers.
#[derive(Debug)]
pub struct AppState {
    pub store: Store,
    pub delta_window: Duration,
    pub max_ids: usize,
    pub max_body_bytes: usize,
    /// SHA-256 of the ingest token; `None` disables the internal API.
    ingest_token_hash: Option<[u8; 32]>,
}

impl AppState {
    pub fn new(
        store: Store,
        delta_window: Duration,
        max_ids: usize,
        max_body_bytes: usize,
        ingest_token: Option<&str>,
    ) -> AppState {
        AppState {
            store,
            delta_window,
            max_ids,
            max_body_bytes,
            ingest_token_hash: ingest_token.map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    /// Returns whether the internal API is enabled.
    pub fn ingest_enabled(&self) -> bool {
        self.ingest_token_hash.is_some()
    }

    /// Returns true if and only if `presented` is the ingest token. Both sides are
    /// hashed first so the comparison takes the same time whatever their lengths.
    pub fn is_ingest_token(&self, presented: &str) -> bool {
        self.ingest_token_hash.is_some_and(|expected| {
            let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
            expected.ct_eq(&presented).into()
        })
    }
}

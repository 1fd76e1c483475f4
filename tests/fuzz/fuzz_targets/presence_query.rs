//! The query string of `users.presence` (`ids` in all its spellings, `since`,
//! `from`): any bytes parse to a branch of docs/api.md §3.1 or a clear error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presenced::api::query::PresenceParams;

fuzz_target!(|query: &str| {
    let _ = PresenceParams::from_query(query).branch(1_000);
});

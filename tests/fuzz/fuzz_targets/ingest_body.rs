//! Internal API bodies: the first byte picks a route (or the batch route), the
//! rest is its JSON body. Whatever parses is applied to a real store, so a body
//! that passes validation but breaks the store is found too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presenced::ingest::{parse_batch_op, parse_op, Fields, OpKind};
use presenced::store::{Store, StoreOptions};

const KINDS: [OpKind; 8] = [
    OpKind::PutUser,
    OpKind::DeleteUser,
    OpKind::AddToken,
    OpKind::RevokeToken,
    OpKind::SetStatus,
    OpKind::PutConnection,
    OpKind::DeleteConnection,
    OpKind::DeleteInstance,
];

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    let store = Store::new(&StoreOptions::default());
    let ops = match KINDS.get(usize::from(route % 9)) {
        Some(&kind) => parse_op(kind, "u1", Fields::Body(body))
            .into_iter()
            .collect(),
        None => match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(mut batch)) => match batch.remove("ops") {
                Some(serde_json::Value::Array(rows)) => rows
                    .into_iter()
                    .filter_map(|row| parse_batch_op(row).ok())
                    .collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        },
    };
    for op in ops {
        let _ = store.apply(op);
    }
});

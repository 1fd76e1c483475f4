//! The `from` parser (`users.presence?from=`): any string is an answer or an
//! error, never a panic; an accepted date is within the range chrono can print.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presenced::domain::from_date::parse_from_date;

fuzz_target!(|raw: &str| {
    if let Ok(ms) = parse_from_date(raw) {
        assert!(
            chrono::DateTime::from_timestamp_millis(ms).is_some(),
            "{raw:?} parsed to {ms}, which is no date"
        );
    }
});

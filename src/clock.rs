//! The wall clock as the service counts time: milliseconds since the Unix epoch.
//! Read straight from `SystemTime`: chrono's `Utc::now()` converts to a calendar
//! date and back, which a poll that only compares instants does not need.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in ms since the Unix epoch (negative before it, which no real clock is).
pub fn wall_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_reads_the_same_clock_as_chrono() {
        let before = chrono::Utc::now().timestamp_millis();
        let now = wall_ms();
        let after = chrono::Utc::now().timestamp_millis();
        assert!(
            (before..=after).contains(&now),
            "{before} <= {now} <= {after}"
        );
    }
}

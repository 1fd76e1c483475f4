//! The `from` query parameter of `GET /api/v1/users.presence`: which ISO 8601
//! forms it accepts, how they map to epoch milliseconds, and how a rejection is worded.
//!
//! Why not chrono's or jiff's parsers: neither takes every form a Rocket.Chat client's
//! `new Date(from)` string arrives in as one format (a date alone, minutes without
//! seconds, `+0200` and `+02:00`, a space for `T`, and a `+` that the query decoded to
//! a space), so either would need a rewriting pass plus several format attempts per
//! request, on the path every `from` poll takes, and would still word its own errors.
//! The calendar arithmetic here is checked against chrono over every day of 1001 years.

use std::fmt;

/// The example every error message offers; it is the form Rocket.Chat clients send.
const EXAMPLE: &str = "2019-05-22T12:11:45.392Z";

/// How many characters of a rejected value an error quotes back, so that a
/// hostile multi-kilobyte value cannot bloat logs or responses.
const MAX_QUOTED_CHARS: usize = 64;

/// Largest accepted zone offset, either side of UTC. Real zones span
/// -12:00..=+14:00; one symmetric bound keeps the rule easy to state.
const MAX_OFFSET_MINUTES: u32 = 14 * 60;

/// Parses the `from` value of `users.presence`, an ISO 8601 subset:
///
/// * `YYYY-MM-DD` (midnight UTC),
/// * `YYYY-MM-DDTHH:MM`, `…THH:MM:SS` or `…THH:MM:SS.f` with 1 to 9 fraction digits,
/// * after a time only, an optional zone: `Z`, `z`, `±HH:MM` or `±HHMM`
///   (at most 14:00 either side of UTC); no zone means UTC.
///
/// Because a URL query decodes `+` to a space, a space is also accepted in place
/// of `T` and in place of a `+` offset sign. Surrounding ASCII whitespace is
/// ignored. Leap seconds (`:60`) are rejected.
///
/// Returns the instant in ms since the Unix epoch, truncated to the millisecond.
///
/// ```
/// use presenced::domain::from_date::parse_from_date;
///
/// let t = parse_from_date("2019-05-22T12:11:45.392Z").unwrap();
/// assert_eq!(t, 1_558_527_105_392);
/// // `+02:00` sent unencoded in a URL arrives as a space.
/// assert_eq!(parse_from_date("2019-05-22T14:11:45.392 02:00"), Ok(t));
/// assert!(parse_from_date("yesterday").is_err());
/// ```
///
/// # Errors
///
/// A [`FromDateError`] for any other input, or for a well-formed value that
/// names an impossible date, time or offset.
pub fn parse_from_date(raw: &str) -> Result<i64, FromDateError> {
    parse(raw.as_bytes()).map_err(|reason| FromDateError::new(raw, reason))
}

/// Why a `from` value was rejected.
///
/// Its `Display` is a sentence naming the parameter, quoting the value (cut to
/// 64 characters), saying what is wrong and showing a valid example, e.g.
/// `from: "2019-13-01" is not a valid date (month 13); expected ISO 8601 such as 2019-05-22T12:11:45.392Z`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromDateError {
    /// The rejected value as sent, or its first `MAX_QUOTED_CHARS` characters.
    quoted: String,
    /// Whether `quoted` is only a prefix of the value.
    truncated: bool,
    reason: Reason,
}

impl FromDateError {
    fn new(raw: &str, reason: Reason) -> Self {
        // Cutting by chars, not bytes, can never split a multi-byte character.
        let quoted: String = raw.chars().take(MAX_QUOTED_CHARS).collect();
        let truncated = quoted.len() < raw.len();
        Self {
            quoted,
            truncated,
            reason,
        }
    }
}

impl fmt::Display for FromDateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug quoting escapes control characters, so a value cannot forge log lines.
        write!(f, "from: {:?}", self.quoted)?;
        if self.truncated {
            f.write_str(" (truncated)")?;
        }
        write!(f, " {}; expected ISO 8601 such as {EXAMPLE}", self.reason)
    }
}

impl std::error::Error for FromDateError {}

/// What is wrong with a value; worded as the end of "from: "…" ___".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Empty,
    NotAscii,
    BadDate,
    ZoneWithoutTime,
    BadSeparator,
    BadTime,
    BadFraction,
    BadZone,
    Trailing,
    Month(u32),
    Day { year: u32, month: u32, day: u32 },
    Hour(u32),
    Minute(u32),
    Second(u32),
    Offset(Offset),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Reason::Empty => f.write_str("is empty"),
            Reason::NotAscii => f.write_str("contains non-ASCII characters"),
            Reason::BadDate => f.write_str("does not start with a date in the form YYYY-MM-DD"),
            Reason::ZoneWithoutTime => {
                f.write_str("has a zone but no time (a zone is only allowed after a time)")
            }
            Reason::BadSeparator => {
                f.write_str("has something other than T or a space between the date and the time")
            }
            Reason::BadTime => {
                f.write_str("has a malformed time (expected HH:MM, HH:MM:SS or HH:MM:SS.fff)")
            }
            Reason::BadFraction => f.write_str(
                "has a malformed fraction of a second (expected 1 to 9 digits after the dot)",
            ),
            Reason::BadZone => {
                f.write_str("has a malformed zone (expected Z, +HH:MM, -HH:MM, +HHMM or -HHMM)")
            }
            Reason::Trailing => f.write_str("has unexpected characters at the end"),
            Reason::Month(month) => write!(f, "is not a valid date (month {month})"),
            Reason::Day { year, month, day } => {
                write!(
                    f,
                    "is not a valid date ({year:04}-{month:02} has no day {day})"
                )
            }
            Reason::Hour(hour) => write!(f, "is not a valid time (hour {hour})"),
            Reason::Minute(minute) => write!(f, "is not a valid time (minute {minute})"),
            Reason::Second(60) => {
                f.write_str("is not a valid time (second 60; leap seconds are not supported)")
            }
            Reason::Second(second) => write!(f, "is not a valid time (second {second})"),
            Reason::Offset(Offset {
                negative,
                hours,
                minutes,
            }) => {
                let sign = if negative { '-' } else { '+' };
                write!(
                    f,
                    "has an out-of-range zone offset ({sign}{hours:02}:{minutes:02}; \
                     at most 14:00 either side of UTC)"
                )
            }
        }
    }
}

/// A zone offset as written, east of UTC unless `negative`; checked later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Offset {
    negative: bool,
    hours: u32,
    minutes: u32,
}

/// The fields as written, before any range or calendar check. Scanning and
/// checking are kept apart so that a well-formed but impossible value gets a
/// message about the value, not about its shape.
#[derive(Debug, Default)]
struct Fields {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
    offset: Offset,
}

fn parse(raw: &[u8]) -> Result<i64, Reason> {
    let text = raw.trim_ascii();
    if text.is_empty() {
        return Err(Reason::Empty);
    }
    // Every accepted form is ASCII; saying so is clearer than a shape error.
    if !text.is_ascii() {
        return Err(Reason::NotAscii);
    }
    to_millis(&scan(text)?)
}

fn scan(text: &[u8]) -> Result<Fields, Reason> {
    let mut cur = Cursor { rest: text };
    let (year, month, day) = scan_date(&mut cur).ok_or(Reason::BadDate)?;
    let mut fields = Fields {
        year,
        month,
        day,
        ..Fields::default()
    };
    match cur.bump() {
        None => return Ok(fields),
        // The space is what `+` becomes when it was not percent-encoded, and
        // also the common "SQL style" separator.
        Some(b'T' | b' ') => {}
        Some(b'Z' | b'z' | b'+' | b'-') => return Err(Reason::ZoneWithoutTime),
        Some(_) => return Err(Reason::BadSeparator),
    }
    fields.hour = cur.digits(2).ok_or(Reason::BadTime)?;
    cur.require(b':').ok_or(Reason::BadTime)?;
    fields.minute = cur.digits(2).ok_or(Reason::BadTime)?;
    if cur.eat(b':') {
        fields.second = cur.digits(2).ok_or(Reason::BadTime)?;
        if cur.eat(b'.') {
            let run = cur.digit_run();
            if !(1..=9).contains(&run.len()) {
                return Err(Reason::BadFraction);
            }
            // Padding to three digits and dropping the rest truncates rather
            // than rounds, so an instant never moves into the next millisecond.
            fields.millis = run
                .iter()
                .chain(b"000")
                .take(3)
                .fold(0, |acc, &d| acc * 10 + u32::from(d - b'0'));
        }
    }
    fields.offset = scan_zone(&mut cur)?;
    if !cur.is_empty() {
        return Err(Reason::Trailing);
    }
    Ok(fields)
}

fn scan_date(cur: &mut Cursor<'_>) -> Option<(u32, u32, u32)> {
    let year = cur.digits(4)?;
    cur.require(b'-')?;
    let month = cur.digits(2)?;
    cur.require(b'-')?;
    let day = cur.digits(2)?;
    Some((year, month, day))
}

fn scan_zone(cur: &mut Cursor<'_>) -> Result<Offset, Reason> {
    let negative = match cur.bump() {
        None | Some(b'Z' | b'z') => return Ok(Offset::default()),
        // Only here, after a time, is a space read as a `+` lost to URL
        // decoding; a leading or doubled space stays an error.
        Some(b'+' | b' ') => false,
        Some(b'-') => true,
        Some(_) => return Err(Reason::Trailing),
    };
    let hours = cur.digits(2).ok_or(Reason::BadZone)?;
    // Both the extended (+02:00) and basic (+0200) forms are in use.
    cur.eat(b':');
    let minutes = cur.digits(2).ok_or(Reason::BadZone)?;
    Ok(Offset {
        negative,
        hours,
        minutes,
    })
}

fn to_millis(f: &Fields) -> Result<i64, Reason> {
    if !(1..=12).contains(&f.month) {
        return Err(Reason::Month(f.month));
    }
    let bad_day = Reason::Day {
        year: f.year,
        month: f.month,
        day: f.day,
    };
    if !(1..=days_in_month(f.year, f.month)).contains(&f.day) {
        return Err(bad_day);
    }
    if f.hour > 23 {
        return Err(Reason::Hour(f.hour));
    }
    if f.minute > 59 {
        return Err(Reason::Minute(f.minute));
    }
    if f.second > 59 {
        return Err(Reason::Second(f.second));
    }
    let Offset {
        negative,
        hours,
        minutes,
    } = f.offset;
    let offset_minutes = hours * 60 + minutes;
    if minutes > 59 || offset_minutes > MAX_OFFSET_MINUTES {
        return Err(Reason::Offset(f.offset));
    }
    let seconds = i64::from(f.hour) * 3600 + i64::from(f.minute) * 60 + i64::from(f.second);
    let local =
        (days_from_epoch(f.year, f.month, f.day) * 86_400 + seconds) * 1000 + i64::from(f.millis);
    // Local time is UTC plus the offset, so UTC is local time minus it.
    let offset_ms = i64::from(offset_minutes) * 60_000;
    let offset_ms = if negative { -offset_ms } else { offset_ms };
    Ok(local - offset_ms)
}

/// Whether `year` of the proleptic Gregorian calendar has a 29 February.
fn is_leap(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// The days of `month` (1..=12) in `year`.
fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a valid date of the proleptic Gregorian calendar,
/// by counting 400-year eras from 0000-03-01 (H. Hinnant's `days_from_civil`):
/// plain arithmetic, where a calendar type would build a date only to take it apart.
fn days_from_epoch(year: u32, month: u32, day: u32) -> i64 {
    // Years start in March, so the leap day is the last day of its year.
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (i64::from(month) + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 0000-03-01 is 719 468 days before the Unix epoch.
    era * 146_097 + day_of_era - 719_468
}

/// A forward-only reader over the bytes of the value. Working on bytes, never
/// on `&str` slices, means no index can land inside a multi-byte character.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn bump(&mut self) -> Option<u8> {
        let (&first, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(first)
    }

    fn eat(&mut self, byte: u8) -> bool {
        match self.rest.split_first() {
            Some((&first, rest)) if first == byte => {
                self.rest = rest;
                true
            }
            _ => false,
        }
    }

    fn require(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// Exactly `n` ASCII digits (n ≤ 9, so the value fits). Hand-rolled
    /// because `str::parse` would also take a sign such as `+1`.
    fn digits(&mut self, n: usize) -> Option<u32> {
        let (head, rest) = self.rest.split_at_checked(n)?;
        if !head.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.rest = rest;
        Some(
            head.iter()
                .fold(0, |acc, &d| acc * 10 + u32::from(d - b'0')),
        )
    }

    /// The longest run of ASCII digits, possibly empty.
    fn digit_run(&mut self) -> &'a [u8] {
        let len = self.rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let (run, rest) = self.rest.split_at_checked(len).unwrap_or((&[], self.rest));
        self.rest = rest;
        run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calendar_arithmetic_agrees_with_chrono() {
        use chrono::{Datelike, NaiveDate};
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let check = |date: NaiveDate| {
            let (y, m, d) = (date.year() as u32, date.month(), date.day());
            assert_eq!(
                days_from_epoch(y, m, d),
                (date - epoch).num_days(),
                "{date}"
            );
        };
        // Every day of two and a half 400-year cycles, then each year's edges to 9999.
        let mut date = NaiveDate::from_ymd_opt(0, 1, 1).unwrap();
        while date.year() <= 1000 {
            check(date);
            date = date.succ_opt().unwrap();
        }
        for year in 0..=9999u32 {
            for month in 1..=12 {
                let last = days_in_month(year, month);
                let y = year as i32;
                assert!(NaiveDate::from_ymd_opt(y, month, last).is_some());
                assert!(NaiveDate::from_ymd_opt(y, month, last + 1).is_none());
                check(NaiveDate::from_ymd_opt(y, month, 1).unwrap());
                check(NaiveDate::from_ymd_opt(y, month, last).unwrap());
            }
        }
    }

    /// Expected values were computed outside Rust, with
    /// `date -u -d '<instant in UTC>' +%s%3N` and cross-checked in Python.
    const ACCEPTED: &[(&str, i64)] = &[
        // date only: midnight UTC
        ("2019-05-22", 1_558_483_200_000),
        ("1970-01-01", 0),
        ("2000-01-01", 946_684_800_000),
        // minutes, seconds
        ("2019-05-22T12:11", 1_558_527_060_000),
        ("2019-05-22T12:11:45", 1_558_527_105_000),
        // 1, 3, 4 and 9 fraction digits, truncated to ms
        ("2019-05-22T12:11:45.3", 1_558_527_105_300),
        ("2019-05-22T12:11:45.392", 1_558_527_105_392),
        ("2019-05-22T12:11:45.9999", 1_558_527_105_999),
        ("2019-05-22T12:11:45.392999999", 1_558_527_105_392),
        ("2019-05-22T12:11:45.000000001", 1_558_527_105_000),
        // zones
        ("2019-05-22T12:11:45.392Z", 1_558_527_105_392),
        ("2019-05-22T12:11:45.392z", 1_558_527_105_392),
        ("2019-05-22T12:11Z", 1_558_527_060_000),
        ("2019-05-22T12:11+02:00", 1_558_519_860_000),
        ("2019-05-22T12:11:45+02:00", 1_558_519_905_000),
        ("2019-05-22T12:11:45.392+02:00", 1_558_519_905_392),
        ("2019-05-22T12:11:45-05:30", 1_558_546_905_000),
        ("2019-05-22T12:11:45+0200", 1_558_519_905_000),
        ("2019-05-22T12:11:45-0530", 1_558_546_905_000),
        ("2019-05-22T12:11:45+05:45", 1_558_506_405_000),
        ("2019-05-22T12:11:45-00:00", 1_558_527_105_000),
        ("2019-05-22T00:30:00+14:00", 1_558_434_600_000),
        ("2019-05-22T23:59:59.999-12:00", 1_558_612_799_999),
        // space for T, space for +, both
        ("2019-05-22 12:11:45Z", 1_558_527_105_000),
        ("2019-05-22 12:11", 1_558_527_060_000),
        ("2019-05-22T12:11:45 02:00", 1_558_519_905_000),
        ("2019-05-22T12:11:45.392 0200", 1_558_519_905_392),
        ("2019-05-22 12:11:45 02:00", 1_558_519_905_000),
        // surrounding whitespace
        ("  2019-05-22T12:11:45.392Z\n", 1_558_527_105_392),
        ("\t2019-05-22 \r\n", 1_558_483_200_000),
        // leap day and calendar edges
        ("2020-02-29", 1_582_934_400_000),
        ("2020-02-29T23:59:59.999Z", 1_583_020_799_999),
        ("1969-12-31T23:59:59.999Z", -1),
        ("1969-12-31T23:59:59.9999Z", -1),
        ("0001-01-01", -62_135_596_800_000),
        ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
    ];

    const REJECTED: &[&str] = &[
        "",
        "   ",
        "now",
        "1558527105392",
        "2019-05-22T12",
        "2019-05-22T1:11",
        "2019-05-22T",
        "2019/05/22",
        "20190522",
        "19-05-22",
        "20190-05-22",
        "2019-5-22",
        "2019-05-2",
        "+2019-05-22",
        "2019-05-22T12:11:45.1234567890",
        "2019-05-22T12:11:45.",
        "2019-05-22T12:11:45.Z",
        "2019-05-22T12:11:45,392",
        "2019-05-22T12:11.5",
        "2019-05-22T12:11:4",
        "2019-05-22T-1:11",
        "2019-05-22T12:11:45Zjunk",
        "2019-05-22T12:11:45.392ZZ",
        "2019-05-22T12:11:45+2",
        "2019-05-22T12:11:45+02",
        "2019-05-22T12:11:45+02:0",
        "2019-05-22T12:11:45+020",
        "2019-05-22T12:11:45+02000",
        "2019-05-22T12:11:45+02:00:00",
        "2019-05-22Z",
        "2019-05-22+02:00",
        "2019-05-22-05:00",
        "2019-05-22T12:11:45Z+02:00",
        "2019-05-22T12:11:45+02:00Z",
        "2019-05-22T12:11:45+02:00+02:00",
        "2019-05-22t12:11:45Z",
        "2019-05-22  12:11:45",
        "2019-05-22T12:11:45  02:00",
        "2019-05-22T12:11:45 -02:00",
        "2019-05-22T12:11:45 Z",
        "2019-05-22T12:11:45é",
        "２019-05-22",
        "2019-05-22T12:11:45+0２:00",
        "2019-05-22\0",
        "2019-13-01",
        "2019-00-10",
        "2019-02-29",
        "2019-04-31",
        "2019-05-00",
        "2019-05-32",
        "2019-05-22T24:00",
        "2019-05-22T12:60",
        "2019-05-22T12:11:60",
        "2019-05-22T12:11:45+15:00",
        "2019-05-22T12:11:45+14:30",
        "2019-05-22T12:11:45-14:01",
        "2019-05-22T12:11:45+02:60",
    ];

    #[test]
    fn every_accepted_form_parses_to_the_expected_instant() {
        for &(input, expected) in ACCEPTED {
            assert_eq!(parse_from_date(input), Ok(expected), "input {input:?}");
        }
    }

    #[test]
    fn date_with_space_for_plus_offset_is_accepted() {
        // What `from=2019-05-22T12:11:45+02:00` becomes after URL query decoding.
        assert_eq!(
            parse_from_date("2019-05-22T12:11:45 02:00"),
            parse_from_date("2019-05-22T12:11:45+02:00")
        );
        assert_eq!(
            parse_from_date("2019-05-22 12:11:45.392 0200"),
            parse_from_date("2019-05-22T12:11:45.392+02:00")
        );
    }

    #[test]
    fn a_space_after_a_bare_date_starts_a_time_not_an_offset() {
        assert_eq!(
            parse_from_date("2019-05-22 02:00"),
            parse_from_date("2019-05-22T02:00Z")
        );
    }

    #[test]
    fn every_rejected_form_names_the_parameter_and_a_valid_example() {
        for &input in REJECTED {
            let err = match parse_from_date(input) {
                Ok(ms) => panic!("{input:?} was accepted as {ms}"),
                Err(err) => err.to_string(),
            };
            assert!(err.starts_with("from: "), "{input:?}: {err}");
            assert!(err.contains(EXAMPLE), "{input:?}: {err}");
        }
    }

    #[test]
    fn every_error_message_quotes_the_rejected_input() {
        for &input in REJECTED {
            let err = parse_from_date(input).expect_err(input).to_string();
            assert!(err.contains(&format!("{input:?}")), "{input:?}: {err}");
        }
    }

    #[test]
    fn a_ten_kilobyte_input_produces_a_short_message_quoting_its_prefix() {
        let input = format!("2019-05-22T12:11:45Z{}", "x".repeat(10 * 1024));
        let err = parse_from_date(&input).expect_err("trailing garbage");
        let msg = err.to_string();
        assert!(msg.len() < 300, "{} bytes: {msg}", msg.len());
        assert!(msg.contains(&format!("{:?}", &input[..MAX_QUOTED_CHARS])));
        assert!(msg.contains("(truncated)"));
    }

    #[test]
    fn a_long_multi_byte_input_is_truncated_on_a_character_boundary() {
        let input = "€".repeat(10 * 1024);
        let msg = parse_from_date(&input).expect_err("non-ASCII").to_string();
        assert!(msg.contains(&format!("{:?}", "€".repeat(MAX_QUOTED_CHARS))));
        assert!(msg.contains("non-ASCII"));
        assert!(msg.len() < 400, "{} bytes: {msg}", msg.len());
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let cases = [
            ("2019-13-01", "is not a valid date (month 13)"),
            ("2019-02-29", "is not a valid date (2019-02 has no day 29)"),
            ("2019-05-22T24:00", "is not a valid time (hour 24)"),
            ("2019-05-22T12:11:60", "leap seconds are not supported"),
            (
                "2019-05-22T12:11:45-15:00",
                "out-of-range zone offset (-15:00",
            ),
            ("2019-05-22Z", "a zone is only allowed after a time"),
            ("2019-05-22T12:11:45+02", "malformed zone"),
            ("2019-05-22T12:11:45.", "malformed fraction"),
            ("2019-05-22T12", "malformed time"),
            ("now", "YYYY-MM-DD"),
            (" ", "is empty"),
            (
                "2019-05-22T12:11:45Zjunk",
                "unexpected characters at the end",
            ),
        ];
        for (input, part) in cases {
            let msg = parse_from_date(input).expect_err(input).to_string();
            assert!(msg.contains(part), "{input:?}: {msg}");
        }
    }

    #[test]
    fn the_documented_example_message_is_produced_verbatim() {
        assert_eq!(
            parse_from_date("2019-13-01").map_err(|e| e.to_string()),
            Err("from: \"2019-13-01\" is not a valid date (month 13); \
                 expected ISO 8601 such as 2019-05-22T12:11:45.392Z"
                .to_owned())
        );
    }

    #[test]
    fn control_characters_in_the_input_are_escaped_in_the_message() {
        let msg = parse_from_date("now\nFAKE LOG LINE")
            .expect_err("bad")
            .to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains(r"now\nFAKE"), "{msg}");
    }

    #[test]
    fn the_error_is_a_std_error() {
        let err: Box<dyn std::error::Error> = Box::new(parse_from_date("x").expect_err("bad"));
        assert!(err.to_string().contains("from"));
    }

    /// A tiny deterministic generator (Knuth's MMIX LCG); no extra crates needed.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            // The high bits of an LCG are the well-mixed ones.
            ((self.0 >> 33) % n as u64) as usize
        }
    }

    /// Parses `input` and every prefix of it that ends on a char boundary.
    fn parse_all_prefixes(input: &str) {
        for (end, _) in input.char_indices().chain([(input.len(), ' ')]) {
            let prefix = &input[..end];
            if let Err(err) = parse_from_date(prefix) {
                // Rendering the message must not panic either.
                assert!(err.to_string().contains("from"));
            }
        }
    }

    #[test]
    fn parsing_never_panics_on_prefixes_and_mutations_of_valid_values() {
        let alphabet: Vec<char> = "0123456789-:T Z+.ztZé€𝟚\u{0}".chars().collect();
        let mut rng = Lcg(0x5eed);
        for &(valid, _) in ACCEPTED {
            parse_all_prefixes(valid);
            for _ in 0..200 {
                let mut chars: Vec<char> = valid.chars().collect();
                for _ in 0..=rng.below(3) {
                    let at = rng.below(chars.len());
                    chars[at] = alphabet[rng.below(alphabet.len())];
                }
                let mutated: String = chars.into_iter().collect();
                parse_all_prefixes(&mutated);
                if !mutated.trim_ascii().is_ascii() {
                    assert!(parse_from_date(&mutated).is_err(), "{mutated:?}");
                }
            }
        }
    }
}

//! Dates and times in the API's text form, written without `core::fmt`.
//!
//! chrono serializes through `Display` and `collect_str`: a formatter
//! call per field, about 7% of the board's CPU (issue 17's profile). These
//! write the same bytes straight into a stack buffer: `YYYY-MM-DD` for a
//! date, RFC 3339 in UTC with a `Z` and chrono's `AutoSi` fraction (none,
//! 3, 6 or 9 digits, the fewest that keep the value) for a time. Values
//! outside years 0-9999, or a leap second, go through chrono itself, so
//! every value gives exactly chrono's text (a test compares them).

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use serde::Serializer;

/// A formatted value: at most `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (30 bytes).
struct Iso {
    buf: [u8; 30],
    len: usize,
}

impl Iso {
    /// The text.
    fn as_str(&self) -> &str {
        // Only ASCII digits and separators are written.
        std::str::from_utf8(&self.buf[..self.len]).expect("ASCII")
    }

    fn push_digits(&mut self, value: u32, width: usize) {
        let mut v = value;
        for i in (0..width).rev() {
            self.buf[self.len + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        self.len += width;
    }

    fn push(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }

    fn date(d: NaiveDate) -> Option<Self> {
        let year = u32::try_from(d.year()).ok().filter(|y| *y <= 9999)?;
        let mut s = Iso {
            buf: [0; 30],
            len: 0,
        };
        s.push_digits(year, 4);
        s.push(b'-');
        s.push_digits(d.month(), 2);
        s.push(b'-');
        s.push_digits(d.day(), 2);
        Some(s)
    }

    fn datetime(t: &DateTime<Utc>) -> Option<Self> {
        let n = t.naive_utc();
        let nanos = n.nanosecond();
        if nanos >= 1_000_000_000 {
            return None; // a leap second: chrono writes :60
        }
        let mut s = Self::date(n.date())?;
        s.push(b'T');
        s.push_digits(n.hour(), 2);
        s.push(b':');
        s.push_digits(n.minute(), 2);
        s.push(b':');
        s.push_digits(n.second(), 2);
        if nanos != 0 {
            s.push(b'.');
            if nanos % 1_000_000 == 0 {
                s.push_digits(nanos / 1_000_000, 3);
            } else if nanos % 1_000 == 0 {
                s.push_digits(nanos / 1_000, 6);
            } else {
                s.push_digits(nanos, 9);
            }
        }
        s.push(b'Z');
        Some(s)
    }
}

/// Serializes a date as chrono does (`serialize_with`).
pub fn date<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
    match Iso::date(*d) {
        Some(iso) => s.serialize_str(iso.as_str()),
        None => serde::Serialize::serialize(d, s),
    }
}

/// Serializes an optional date as chrono does (`serialize_with`).
pub fn opt_date<S: Serializer>(d: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => date(d, s),
        None => s.serialize_none(),
    }
}

/// Serializes a UTC time as chrono does (`serialize_with`).
pub fn datetime<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    match Iso::datetime(t) {
        Some(iso) => s.serialize_str(iso.as_str()),
        None => serde::Serialize::serialize(t, s),
    }
}

/// Serializes an optional UTC time as chrono does (`serialize_with`).
pub fn opt_datetime<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => datetime(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDateTime, TimeZone};
    use rand::Rng;

    fn ours_date(d: NaiveDate) -> String {
        let mut out = Vec::new();
        date(&d, &mut serde_json::Serializer::new(&mut out)).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn ours_datetime(t: DateTime<Utc>) -> String {
        let mut out = Vec::new();
        datetime(&t, &mut serde_json::Serializer::new(&mut out)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn dates_have_chronos_text() {
        let mut rng = rand::thread_rng();
        let edges = [
            NaiveDate::MIN,
            NaiveDate::MAX,
            NaiveDate::from_ymd_opt(0, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(-1, 12, 31).unwrap(),
            NaiveDate::from_ymd_opt(9999, 12, 31).unwrap(),
            NaiveDate::from_ymd_opt(10000, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(2024, 2, 29).unwrap(),
            NaiveDate::from_ymd_opt(7, 3, 9).unwrap(),
        ];
        let random = (0..20_000).map(|_| {
            NaiveDate::from_num_days_from_ce_opt(rng.gen_range(-800_000..4_000_000)).unwrap()
        });
        for d in edges.into_iter().chain(random) {
            assert_eq!(ours_date(d), serde_json::to_string(&d).unwrap(), "{d:?}");
            let opt = Some(d);
            let mut out = Vec::new();
            opt_date(&opt, &mut serde_json::Serializer::new(&mut out)).unwrap();
            assert_eq!(out, serde_json::to_vec(&opt).unwrap());
        }
        let mut out = Vec::new();
        opt_date(&None, &mut serde_json::Serializer::new(&mut out)).unwrap();
        assert_eq!(out, b"null");
    }

    #[test]
    fn times_have_chronos_text() {
        let mut rng = rand::thread_rng();
        let at = |secs: i64, nanos: u32| Utc.timestamp_opt(secs, nanos).unwrap();
        let leap = NaiveDateTime::new(
            NaiveDate::from_ymd_opt(2016, 12, 31).unwrap(),
            chrono::NaiveTime::from_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap(),
        )
        .and_utc();
        let edges = [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            at(0, 0),
            at(-1, 999_999_999),
            at(1_700_000_000, 1_000),
            at(1_700_000_000, 1_000_000),
            at(1_700_000_000, 1),
            at(1_700_000_000, 120_000),
            at(253_402_300_799, 999_999_000), // 9999-12-31T23:59:59.999999
            at(253_402_300_800, 0),           // year 10000
            leap,
        ];
        let random = (0..20_000).map(|i| {
            let secs = rng.gen_range(-70_000_000_000i64..300_000_000_000);
            let nanos: u32 = rng.gen_range(0..1_000_000_000);
            // Postgres keeps microseconds; cover every fraction width.
            let nanos = match i % 4 {
                0 => 0,
                1 => nanos / 1_000_000 * 1_000_000,
                2 => nanos / 1_000 * 1_000,
                _ => nanos,
            };
            at(secs, nanos)
        });
        for t in edges.into_iter().chain(random) {
            assert_eq!(
                ours_datetime(t),
                serde_json::to_string(&t).unwrap(),
                "{t:?}"
            );
        }
        let mut out = Vec::new();
        opt_datetime(&None, &mut serde_json::Serializer::new(&mut out)).unwrap();
        assert_eq!(out, b"null");
    }
}

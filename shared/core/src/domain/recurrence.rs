//! When a recurring task is due next.
//!
//! A task repeats every `interval` (days, or calendar months for monthly and
//! longer frequencies; a custom interval in days wins over the frequency).
//! Anchored on the **due date**, occurrences stay on the series that starts
//! at the task's first due date (month ends clamp per month, so a series of
//! the 31st is due on Feb 28/29, then Mar 31 again; a Feb 29 series is due on
//! Feb 28 in common years); completing an occurrence — even late — moves the
//! task to the first occurrence after the later of the occurrence and the
//! completion day. Anchored on **completion**, the next occurrence is one
//! interval after the completion day.

use chrono::{Datelike, Months, NaiveDate};

/// A repeat interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// Every n days.
    Days(u32),
    /// Every n calendar months.
    Months(u32),
}

/// What a completion is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The series of due dates.
    DueDate,
    /// The day of completion.
    Completion,
}

impl Anchor {
    /// Parses `due_date` / `completion`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "due_date" => Some(Anchor::DueDate),
            "completion" => Some(Anchor::Completion),
            _ => None,
        }
    }
}

/// The interval of a task, from its custom days or its frequency's interval.
pub fn interval(
    custom_days: Option<i32>,
    freq_days: Option<i32>,
    freq_months: Option<i32>,
) -> Option<Interval> {
    let pos = |v: Option<i32>| v.filter(|d| *d > 0).map(|d| d as u32);
    pos(custom_days)
        .map(Interval::Days)
        .or_else(|| pos(freq_days).map(Interval::Days))
        .or_else(|| pos(freq_months).map(Interval::Months))
}

/// The `k`-th occurrence of a series starting at `base` (k = 0 is `base`).
pub fn nth(base: NaiveDate, every: Interval, k: u32) -> NaiveDate {
    match every {
        Interval::Days(d) => base + chrono::Duration::days(i64::from(d) * i64::from(k)),
        Interval::Months(m) => base
            .checked_add_months(Months::new(m * k))
            .unwrap_or(NaiveDate::MAX),
    }
}

/// The first occurrence of the series at `base` strictly after `after`.
pub fn first_after(base: NaiveDate, every: Interval, after: NaiveDate) -> NaiveDate {
    if base > after {
        return base;
    }
    // Jump close, then step: a series can be decades long.
    let mut k = match every {
        Interval::Days(d) => ((after - base).num_days() / i64::from(d)) as u32,
        Interval::Months(m) => {
            let months =
                (after.year() - base.year()) * 12 + after.month() as i32 - base.month() as i32;
            (months.max(0) as u32) / m
        }
    };
    k = k.saturating_sub(1);
    loop {
        let d = nth(base, every, k);
        if d > after {
            return d;
        }
        k += 1;
    }
}

/// The next due date after completing the occurrence due `occurrence` on
/// `completed_on` (the user's local date). `None`: the task does not repeat.
pub fn next_after_completion(
    base: Option<NaiveDate>,
    occurrence: Option<NaiveDate>,
    completed_on: NaiveDate,
    every: Option<Interval>,
    anchor: Anchor,
) -> Option<NaiveDate> {
    let every = every?;
    match (anchor, base.or(occurrence)) {
        (Anchor::DueDate, Some(base)) => {
            let after = occurrence.unwrap_or(completed_on).max(completed_on);
            Some(first_after(base, every, after))
        }
        // Completion-anchored, or a repeating task that never had a due date.
        _ => Some(nth(completed_on, every, 1)),
    }
}

/// The occurrence after `occurrence` (skipping one without completing it).
pub fn next_after_skip(
    base: Option<NaiveDate>,
    occurrence: NaiveDate,
    every: Option<Interval>,
    anchor: Anchor,
) -> Option<NaiveDate> {
    let every = every?;
    match (anchor, base) {
        (Anchor::DueDate, Some(base)) => Some(first_after(base, every, occurrence)),
        _ => Some(nth(occurrence, every, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn month_ends_clamp_without_drifting() {
        let base = d(2026, 1, 31);
        let m = Interval::Months(1);
        assert_eq!(first_after(base, m, d(2026, 1, 31)), d(2026, 2, 28));
        assert_eq!(first_after(base, m, d(2026, 2, 28)), d(2026, 3, 31));
        assert_eq!(first_after(base, m, d(2026, 3, 31)), d(2026, 4, 30));
        assert_eq!(
            first_after(d(2028, 1, 31), m, d(2028, 1, 31)),
            d(2028, 2, 29)
        );
    }

    #[test]
    fn leap_days() {
        let base = d(2024, 2, 29);
        let y = Interval::Months(12);
        assert_eq!(first_after(base, y, base), d(2025, 2, 28));
        assert_eq!(first_after(base, y, d(2027, 3, 1)), d(2028, 2, 29));
    }

    #[test]
    fn late_completion_moves_to_the_first_future_occurrence() {
        let base = d(2026, 1, 1);
        let next = next_after_completion(
            Some(base),
            Some(base),
            d(2026, 3, 15),
            Some(Interval::Months(1)),
            Anchor::DueDate,
        );
        assert_eq!(next, Some(d(2026, 4, 1)));
        // Early completion: the next occurrence after the one completed.
        let next = next_after_completion(
            Some(base),
            Some(d(2026, 2, 1)),
            d(2026, 1, 20),
            Some(Interval::Months(1)),
            Anchor::DueDate,
        );
        assert_eq!(next, Some(d(2026, 3, 1)));
    }

    #[test]
    fn completion_anchored() {
        let next = next_after_completion(
            Some(d(2026, 1, 1)),
            Some(d(2026, 1, 1)),
            d(2026, 1, 10),
            Some(Interval::Days(30)),
            Anchor::Completion,
        );
        assert_eq!(next, Some(d(2026, 2, 9)));
        let next = next_after_completion(
            None,
            None,
            d(2026, 1, 31),
            Some(Interval::Months(1)),
            Anchor::Completion,
        );
        assert_eq!(next, Some(d(2026, 2, 28)));
    }

    #[test]
    fn one_off_tasks_do_not_repeat() {
        assert_eq!(
            next_after_completion(
                Some(d(2026, 1, 1)),
                Some(d(2026, 1, 1)),
                d(2026, 1, 1),
                None,
                Anchor::DueDate
            ),
            None
        );
    }

    #[test]
    fn skipping_and_intervals() {
        assert_eq!(
            next_after_skip(
                Some(d(2026, 1, 1)),
                d(2026, 1, 1),
                Some(Interval::Days(14)),
                Anchor::DueDate
            ),
            Some(d(2026, 1, 15))
        );
        assert_eq!(
            next_after_skip(
                Some(d(2026, 1, 1)),
                d(2026, 1, 5),
                Some(Interval::Days(7)),
                Anchor::Completion
            ),
            Some(d(2026, 1, 12))
        );
        assert_eq!(interval(Some(10), Some(7), None), Some(Interval::Days(10)));
        assert_eq!(interval(None, None, Some(3)), Some(Interval::Months(3)));
        assert_eq!(interval(None, None, None), None);
        // Long series jump straight to the right place.
        assert_eq!(
            first_after(d(1990, 1, 1), Interval::Days(1), d(2026, 6, 1)),
            d(2026, 6, 2)
        );
    }
}

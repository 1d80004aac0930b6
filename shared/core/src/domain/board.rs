//! The task board: which column a task is in, judged in the viewer's time
//! zone. First match wins: cancelled (hidden), completed, in progress,
//! overdue, due soon, upcoming. A task without a due date is upcoming.

use chrono::NaiveDate;
use serde::Serialize;

/// A board column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Column {
    /// Cancelled (never shown on the board).
    Cancelled,
    /// A one-off task that has been done.
    Completed,
    /// Marked in progress.
    InProgress,
    /// Due before today.
    Overdue,
    /// Due today or within the threshold.
    DueSoon,
    /// Later, or no due date.
    Upcoming,
}

/// The columns shown, in order.
pub const SHOWN: [Column; 5] = [
    Column::Overdue,
    Column::DueSoon,
    Column::Upcoming,
    Column::InProgress,
    Column::Completed,
];

impl Column {
    /// The column's key.
    pub fn name(self) -> &'static str {
        match self {
            Column::Cancelled => "cancelled",
            Column::Completed => "completed",
            Column::InProgress => "in_progress",
            Column::Overdue => "overdue",
            Column::DueSoon => "due_soon",
            Column::Upcoming => "upcoming",
        }
    }
    /// Display name.
    pub fn display_name(self) -> &'static str {
        match self {
            Column::Cancelled => "Cancelled",
            Column::Completed => "Completed",
            Column::InProgress => "In Progress",
            Column::Overdue => "Overdue",
            Column::DueSoon => "Due Soon",
            Column::Upcoming => "Upcoming",
        }
    }
    /// Display colour.
    pub fn color(self) -> &'static str {
        match self {
            Column::Cancelled => "#a0aec0",
            Column::Completed => "#38a169",
            Column::InProgress => "#3182ce",
            Column::Overdue => "#e53e3e",
            Column::DueSoon => "#dd6b20",
            Column::Upcoming => "#718096",
        }
    }
    /// What a member may do with a task in this column.
    pub fn actions(self) -> &'static [&'static str] {
        match self {
            Column::Cancelled => &["uncancel", "archive"],
            Column::Completed => &["archive"],
            Column::InProgress => &["complete", "cancel", "archive"],
            Column::Overdue | Column::DueSoon | Column::Upcoming => &[
                "complete",
                "mark_in_progress",
                "skip",
                "reschedule",
                "cancel",
                "archive",
            ],
        }
    }
}

/// The facts the column depends on.
#[derive(Debug, Clone, Copy)]
pub struct TaskState {
    /// Cancelled flag.
    pub cancelled: bool,
    /// In-progress flag.
    pub in_progress: bool,
    /// Next due date (`None` once a one-off task is done, or never set).
    pub next_due: Option<NaiveDate>,
    /// Whether the task repeats.
    pub recurring: bool,
    /// Whether it has at least one completion.
    pub has_completion: bool,
}

/// The column of a task for a viewer whose local date is `today`.
pub fn column(t: &TaskState, today: NaiveDate, days: i64) -> Column {
    if t.cancelled {
        Column::Cancelled
    } else if !t.recurring && t.has_completion && t.next_due.is_none() {
        Column::Completed
    } else if t.in_progress {
        Column::InProgress
    } else {
        match t.next_due {
            Some(d) if d < today => Column::Overdue,
            Some(d) if d <= today + chrono::Duration::days(days) => Column::DueSoon,
            _ => Column::Upcoming,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(next_due: Option<NaiveDate>) -> TaskState {
        TaskState {
            cancelled: false,
            in_progress: false,
            next_due,
            recurring: true,
            has_completion: false,
        }
    }

    #[test]
    fn boundaries() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 10).unwrap();
        let day = |n: i64| Some(today + chrono::Duration::days(n));
        assert_eq!(column(&st(day(-1)), today, 30), Column::Overdue);
        assert_eq!(column(&st(day(0)), today, 30), Column::DueSoon);
        assert_eq!(column(&st(day(30)), today, 30), Column::DueSoon);
        assert_eq!(column(&st(day(31)), today, 30), Column::Upcoming);
        assert_eq!(column(&st(None), today, 30), Column::Upcoming);
        let mut t = st(day(-5));
        t.in_progress = true;
        assert_eq!(column(&t, today, 30), Column::InProgress);
        t.cancelled = true;
        assert_eq!(column(&t, today, 30), Column::Cancelled);
        let done = TaskState {
            cancelled: false,
            in_progress: true,
            next_due: None,
            recurring: false,
            has_completion: true,
        };
        assert_eq!(column(&done, today, 30), Column::Completed);
    }
}

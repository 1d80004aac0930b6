//! Notification kinds: what an inbox row (and its email) is about, which
//! kinds a user may turn off, and at which hour the scheduled ones go out.
//!
//! The hourly jobs send a scheduled kind at the user's local hour for it,
//! one of three settings ([`Hour`]); a user who set none gets the product
//! default, an hour of UTC.
//!
//! The schema repeats parts of this in SQL: the kinds `notifications`
//! accepts (`notifications_kind_check`), the kinds of `task_reminder_log`,
//! which setting `served_users` reads for a kind, and the defaults its
//! comment on `notification_preferences` states. The tests below read the
//! migrations, so the copies cannot drift.

/// A notification kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A task is due in one of its reminder offsets (scheduled).
    DueSoon,
    /// A task is overdue (scheduled).
    Overdue,
    /// Another member completed a task.
    Completed,
    /// A task was assigned to the user.
    Assigned,
    /// A residence was shared with, or handed over to, the user.
    Shared,
    /// A warranty expires soon (scheduled, at the due-soon hour).
    WarrantyExpiring,
    /// The daily digest email (scheduled).
    DailyDigest,
    /// One of the user's push devices moved to another account. Not a
    /// preference: it cannot be turned off.
    DeviceMoved,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 8] = [
        Kind::DueSoon,
        Kind::Overdue,
        Kind::Completed,
        Kind::Assigned,
        Kind::Shared,
        Kind::WarrantyExpiring,
        Kind::DailyDigest,
        Kind::DeviceMoved,
    ];

    /// The kinds a user may turn on and off (and their email), in the order
    /// the preferences list them.
    pub const PREFERENCES: [Kind; 7] = [
        Kind::DueSoon,
        Kind::Overdue,
        Kind::Completed,
        Kind::Assigned,
        Kind::Shared,
        Kind::WarrantyExpiring,
        Kind::DailyDigest,
    ];

    /// The stored form, also the key of the preferences and of unsubscribe
    /// links.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::DueSoon => "due_soon",
            Kind::Overdue => "overdue",
            Kind::Completed => "completed",
            Kind::Assigned => "assigned",
            Kind::Shared => "shared",
            Kind::WarrantyExpiring => "warranty_expiring",
            Kind::DailyDigest => "daily_digest",
            Kind::DeviceMoved => "device_moved",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Parses the stored form of a kind a user may turn off.
    pub fn preference(s: &str) -> Option<Self> {
        Self::parse(s).filter(|k| k.is_preference())
    }

    /// Whether a user may turn it off.
    pub fn is_preference(self) -> bool {
        Self::PREFERENCES.contains(&self)
    }

    /// The setting whose hour a scheduled kind goes out at; `None` for the
    /// kinds sent as things happen.
    pub const fn hour(self) -> Option<Hour> {
        match self {
            Kind::DueSoon | Kind::WarrantyExpiring => Some(Hour::DueSoon),
            Kind::Overdue => Some(Hour::Overdue),
            Kind::DailyDigest => Some(Hour::Digest),
            Kind::Completed | Kind::Assigned | Kind::Shared | Kind::DeviceMoved => None,
        }
    }
}

/// A user's local-hour setting for scheduled kinds (0-23, a column of
/// `notification_preferences`). Unset, the product default applies: an hour
/// of UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hour {
    /// Due-soon and warranty reminders.
    DueSoon,
    /// Overdue reminders.
    Overdue,
    /// The daily digest.
    Digest,
}

impl Hour {
    /// Every setting, in the order the preferences list them.
    pub const ALL: [Hour; 3] = [Hour::DueSoon, Hour::Overdue, Hour::Digest];

    /// The kind it is named after (its key under `hours` in the
    /// preferences).
    pub const fn kind(self) -> Kind {
        match self {
            Hour::DueSoon => Kind::DueSoon,
            Hour::Overdue => Kind::Overdue,
            Hour::Digest => Kind::DailyDigest,
        }
    }

    /// Its column in `notification_preferences`, also its field in the
    /// preferences API.
    pub const fn column(self) -> &'static str {
        match self {
            Hour::DueSoon => "due_soon_hour",
            Hour::Overdue => "overdue_hour",
            Hour::Digest => "digest_hour",
        }
    }

    /// The UTC hour for a user who set none: due soon 14:00, overdue 15:00,
    /// digest 03:00.
    pub const fn default_utc_hour(self) -> i32 {
        match self {
            Hour::DueSoon => 14,
            Hour::Overdue => 15,
            Hour::Digest => 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::schema::{check_in_list, newest};

    fn sorted_names(kinds: impl IntoIterator<Item = Kind>) -> Vec<String> {
        let mut v: Vec<String> = kinds.into_iter().map(|k| k.as_str().to_string()).collect();
        v.sort();
        v
    }

    fn scheduled(kind: &str) -> bool {
        Kind::parse(kind).and_then(Kind::hour).is_some()
    }

    #[test]
    fn kinds() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        let mut distinct = sorted_names(Kind::ALL);
        distinct.dedup();
        assert_eq!(distinct.len(), Kind::ALL.len());
        assert!(Kind::PREFERENCES.iter().all(|k| Kind::ALL.contains(k)));
        assert_eq!(Kind::parse("all"), None);
        assert_eq!(Kind::preference("daily_digest"), Some(Kind::DailyDigest));
        assert_eq!(Kind::preference("device_moved"), None);
        assert!(Kind::parse("device_moved").is_some());
    }

    #[test]
    fn hours() {
        assert_eq!(Kind::DueSoon.hour().map(Hour::default_utc_hour), Some(14));
        assert_eq!(Kind::WarrantyExpiring.hour(), Some(Hour::DueSoon));
        assert_eq!(Kind::Overdue.hour().map(Hour::default_utc_hour), Some(15));
        assert_eq!(
            Kind::DailyDigest.hour().map(Hour::default_utc_hour),
            Some(3)
        );
        assert_eq!(Kind::Completed.hour(), None);
        assert_eq!(Kind::DeviceMoved.hour(), None);
        for h in Hour::ALL {
            assert_eq!(h.kind().hour(), Some(h));
            assert!((0..=23).contains(&h.default_utc_hour()));
        }
    }

    #[test]
    fn the_schema_accepts_exactly_these_kinds() {
        let mut sql = check_in_list("notifications_kind_check");
        sql.sort();
        assert_eq!(sql, sorted_names(Kind::ALL));
        // Task reminders are claimed per kind: scheduled kinds only.
        for k in check_in_list("task_reminder_log_kind_check") {
            assert!(scheduled(&k), "{k}");
        }
    }

    /// `served_users` picks the setting of a kind with
    /// `CASE kind WHEN 'overdue' THEN p.overdue_hour ... ELSE p.due_soon_hour END`.
    #[test]
    fn served_users_reads_each_kinds_setting() {
        let sql = newest("FUNCTION served_users(");
        let case = &sql[sql.find("CASE kind").expect("CASE kind")..];
        let case = &case[..case.find("END").expect("END")];
        let column = |w: Option<&str>| w.expect("a column").trim_start_matches("p.").to_string();
        let (mut whens, mut otherwise) = (Vec::new(), None);
        let mut words = case.split_whitespace();
        while let Some(w) = words.next() {
            match w {
                "WHEN" => {
                    let kind = words.next().expect("a kind").trim_matches('\'');
                    assert_eq!(words.next(), Some("THEN"));
                    whens.push((kind.to_string(), column(words.next())));
                }
                "ELSE" => otherwise = Some(column(words.next())),
                _ => {}
            }
        }
        let otherwise = otherwise.expect("an ELSE");
        for (k, _) in &whens {
            assert!(scheduled(k), "{k}");
        }
        for kind in Kind::ALL {
            if let Some(hour) = kind.hour() {
                let in_sql = whens
                    .iter()
                    .find(|(k, _)| k == kind.as_str())
                    .map_or(&otherwise, |(_, c)| c);
                assert_eq!(in_sql, hour.column(), "{kind:?}");
            }
        }
    }

    /// The comment on `notification_preferences`: "NULL = the product
    /// default (due soon 14:00, overdue 15:00, digest 03:00 UTC)".
    #[test]
    fn the_schema_documents_these_defaults() {
        const MARKER: &str = "product default (";
        let sql = newest(MARKER);
        let listed = &sql[MARKER.len()..sql.find(')').expect("the list closes")];
        let mut documented: Vec<(String, i32)> = listed
            .trim_end_matches(" UTC")
            .split(", ")
            .map(|d| {
                let (name, time) = d.rsplit_once(' ').expect("a name and a time");
                let hour = time
                    .strip_suffix(":00")
                    .and_then(|h| h.parse::<i32>().ok())
                    .expect("HH:00");
                (name.replace(' ', "_"), hour)
            })
            .collect();
        let mut rust: Vec<(String, i32)> = Hour::ALL
            .into_iter()
            .map(|h| {
                let name = h.column().trim_end_matches("_hour");
                (name.to_string(), h.default_utc_hour())
            })
            .collect();
        documented.sort();
        rust.sort();
        assert_eq!(documented, rust);
    }
}

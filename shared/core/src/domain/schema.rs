//! Test support: the SQL copies of domain rules, read from the migrations
//! embedded in [`crate::db::MIGRATOR`], so tests can hold them to the Rust
//! definitions. The newest migration that states a rule wins, so a later
//! migration that redefines it is what gets checked.

use crate::db::MIGRATOR;

/// The SQL from the last occurrence of `marker` on, in the newest migration
/// that contains it.
pub(crate) fn newest(marker: &str) -> String {
    let m = MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && m.sql.contains(marker))
        .max_by_key(|m| m.version)
        .unwrap_or_else(|| panic!("no migration contains {marker:?}"));
    let sql: &str = &m.sql;
    let at = sql
        .rfind(marker)
        .expect("the migration contains the marker");
    sql[at..].to_string()
}

/// The quoted values of the `IN (...)` list of the CHECK constraint `name`.
pub(crate) fn check_in_list(name: &str) -> Vec<String> {
    let sql = newest(&format!("{name} CHECK"));
    let list = &sql[sql.find(" IN").expect("a CHECK with an IN list")..];
    let open = list.find('(').expect("the IN list opens");
    let close = open + list[open..].find(')').expect("the IN list closes");
    list[open + 1..close]
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn reads_check_lists() {
    assert_eq!(check_in_list("devices_platform_check"), ["ios", "android"]);
}

//! Domain rules shared by the functions and the scheduled jobs: recurrence,
//! the task board's columns, membership roles.

pub mod board;
pub mod recurrence;
pub mod roles;

//! Domain rules shared by the functions and the scheduled jobs: recurrence,
//! the task board's columns, membership roles, document types, notification
//! kinds and their hours.

pub mod board;
pub mod documents;
pub mod notifications;
pub mod recurrence;
pub mod roles;

#[cfg(test)]
mod schema;

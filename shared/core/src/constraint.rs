//! Named Postgres constraints mapped to the errors clients see.
//!
//! The schema enforces uniqueness and references with named constraints; a
//! write that violates one answers with the 409 or 422 its caller names,
//! and any other database error stays the usual internal error (logged once,
//! never shown):
//!
//! ```ignore
//! let id = sqlx::query_scalar!("INSERT INTO users ... RETURNING id", ...)
//!     .fetch_one(&mut *tx)
//!     .await
//!     .on_constraint("users_email_key", email_taken)?;
//! ```

use crate::error::{AppError, AppResult};

/// Whether `e` is a violation of the constraint `name`.
pub fn violates(e: &sqlx::Error, name: &str) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.constraint() == Some(name))
}

/// Maps a query's violation of a named constraint to the error clients see.
pub trait OnConstraint<T> {
    /// `err()` when the query violated the constraint `name`; any other
    /// database error becomes [`AppError::Internal`].
    fn on_constraint(self, name: &str, err: impl FnOnce() -> AppError) -> AppResult<T>;
}

impl<T> OnConstraint<T> for Result<T, sqlx::Error> {
    fn on_constraint(self, name: &str, err: impl FnOnce() -> AppError) -> AppResult<T> {
        self.map_err(|e| if violates(&e, name) { err() } else { e.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::error::{DatabaseError, ErrorKind};

    /// What Postgres reports for a violated unique constraint.
    #[derive(Debug)]
    struct Violation(&'static str);

    impl std::fmt::Display for Violation {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "duplicate key value violates unique constraint {}",
                self.0
            )
        }
    }

    impl std::error::Error for Violation {}

    impl DatabaseError for Violation {
        fn message(&self) -> &str {
            "duplicate key value violates unique constraint"
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn constraint(&self) -> Option<&str> {
            Some(self.0)
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::UniqueViolation
        }
    }

    fn violation(name: &'static str) -> Result<i64, sqlx::Error> {
        Err(sqlx::Error::Database(Box::new(Violation(name))))
    }

    fn taken() -> AppError {
        AppError::conflict("email_taken", "taken")
    }

    #[test]
    fn the_named_constraint_maps_to_its_error() {
        assert!(violates(
            &violation("users_email_key").unwrap_err(),
            "users_email_key"
        ));
        let e = violation("users_email_key")
            .on_constraint("users_email_key", taken)
            .unwrap_err();
        assert!(matches!(
            e,
            AppError::Conflict {
                code: "email_taken",
                ..
            }
        ));
    }

    #[test]
    fn anything_else_stays_internal() {
        assert!(!violates(
            &violation("users_email_key").unwrap_err(),
            "users_email"
        ));
        assert!(!violates(&sqlx::Error::RowNotFound, "users_email_key"));
        let other = violation("auth_tokens_token_hash_key").on_constraint("users_email_key", taken);
        assert!(matches!(other, Err(AppError::Internal(_))));
        let not_db =
            Err::<i64, _>(sqlx::Error::RowNotFound).on_constraint("users_email_key", taken);
        assert!(matches!(not_db, Err(AppError::Internal(_))));
        assert!(matches!(
            Ok::<i64, sqlx::Error>(7).on_constraint("users_email_key", taken),
            Ok(7)
        ));
    }
}

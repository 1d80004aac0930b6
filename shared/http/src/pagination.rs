//! `?page=&page_size=` (max 100) and the list envelope.

use honeydue_core::{AppError, AppResult, Validator};
use serde::{Deserialize, Serialize};

/// Requested page, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1-based page number.
    pub page: i64,
    /// Items per page, 1..=100.
    pub page_size: i64,
}

/// Raw query parameters.
#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    /// 1-based page number (default 1).
    pub page: Option<i64>,
    /// Items per page (default 20, max 100).
    pub page_size: Option<i64>,
}

impl Page {
    /// Default page size.
    pub const DEFAULT_SIZE: i64 = 20;
    /// Largest page size.
    pub const MAX_SIZE: i64 = 100;

    /// Validates raw parameters.
    pub fn from_params(p: &PageParams) -> AppResult<Self> {
        let mut v = Validator::new();
        let page = p.page.unwrap_or(1);
        let page_size = p.page_size.unwrap_or(Self::DEFAULT_SIZE);
        v.check(page >= 1, "page", "Must be 1 or more.");
        v.check(
            (1..=Self::MAX_SIZE).contains(&page_size),
            "page_size",
            format!("Must be between 1 and {}.", Self::MAX_SIZE),
        );
        v.finish()?;
        Ok(Self { page, page_size })
    }

    /// SQL `LIMIT`.
    pub fn limit(&self) -> i64 {
        self.page_size
    }

    /// SQL `OFFSET`.
    pub fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.page_size)
    }

    /// A page without a total (the admin listings):
    /// `{page, page_size, results}`.
    pub fn listing(
        &self,
        results: impl IntoIterator<Item = serde_json::Value>,
    ) -> serde_json::Value {
        serde_json::json!({
            "page": self.page,
            "page_size": self.page_size,
            "results": results.into_iter().collect::<Vec<_>>(),
        })
    }
}

impl Default for Page {
    fn default() -> Self {
        Self {
            page: 1,
            page_size: Self::DEFAULT_SIZE,
        }
    }
}

/// A page of results: `{count, page, page_size, results}`.
#[derive(Debug, Serialize)]
pub struct Paginated<T> {
    /// Total items across all pages.
    pub count: i64,
    /// This page's number.
    pub page: i64,
    /// Items per page.
    pub page_size: i64,
    /// This page's items.
    pub results: Vec<T>,
}

impl<T> Paginated<T> {
    /// Wraps one page of results.
    pub fn new(page: Page, count: i64, results: Vec<T>) -> Self {
        Self {
            count,
            page: page.page,
            page_size: page.page_size,
            results,
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Page {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let crate::Query(p) = crate::Query::<PageParams>::from_request_parts(parts, state).await?;
        Page::from_params(&p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert!(Page::from_params(&PageParams {
            page: Some(0),
            page_size: None
        })
        .is_err());
        assert!(Page::from_params(&PageParams {
            page: None,
            page_size: Some(101)
        })
        .is_err());
        let p = Page::from_params(&PageParams {
            page: Some(3),
            page_size: Some(10),
        })
        .unwrap();
        assert_eq!((p.limit(), p.offset()), (10, 20));
    }
}

//! One table per function declares its routes: the same table builds the
//! axum router and documents the API (the OpenAPI document and the check
//! that template.yaml routes every one of them), so they cannot drift.

/// One documented route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteDoc {
    /// `GET`, `POST`, `PATCH`, `PUT`, `DELETE`.
    pub method: &'static str,
    /// API Gateway path template (`/api/tasks/{id}/`).
    pub path: &'static str,
    /// One line for the docs.
    pub summary: &'static str,
    /// Whether a token is required (`Token` / `Bearer`).
    pub auth: Auth,
    /// The handler (its operation id).
    pub handler: &'static str,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone.
    Public,
    /// An app user's token.
    User,
    /// An admin token.
    Admin,
}

/// Declares a function's routes once:
///
/// ```ignore
/// honeydue_http::routes! { State;
///     GET "/api/tasks/" => board_all, User, "The board across all residences";
///     POST "/api/tasks/" => create, User, "Create a task";
/// }
/// ```
///
/// expands to `pub fn router() -> axum::Router<State>` and
/// `pub const ROUTES: &[RouteDoc]`.
#[macro_export]
macro_rules! routes {
    ($state:ty; $( $method:ident $path:literal => $handler:path, $auth:ident, $summary:literal; )*) => {
        /// This function's routes, documented.
        pub const ROUTES: &[$crate::routes::RouteDoc] = &[
            $( $crate::routes::RouteDoc {
                method: stringify!($method),
                path: $path,
                summary: $summary,
                auth: $crate::routes::Auth::$auth,
                handler: stringify!($handler),
            }, )*
        ];

        /// The router built from [`ROUTES`].
        pub fn router() -> axum::Router<$state> {
            let r = axum::Router::new();
            $( let r = r.route(&$crate::routes::axum_path($path), $crate::routes::method_router!($method, $handler)); )*
            r
        }
    };
}

/// `{proxy+}` (API Gateway) -> `{*proxy}` (axum); `{id}` stays.
pub fn axum_path(path: &str) -> String {
    path.split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
                Some(name) => format!("{{*{name}}}"),
                None => seg.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

#[doc(hidden)]
#[macro_export]
macro_rules! __method_router {
    (GET, $h:path) => {
        axum::routing::get($h)
    };
    (POST, $h:path) => {
        axum::routing::post($h)
    };
    (PATCH, $h:path) => {
        axum::routing::patch($h)
    };
    (PUT, $h:path) => {
        axum::routing::put($h)
    };
    (DELETE, $h:path) => {
        axum::routing::delete($h)
    };
}

#[doc(hidden)]
pub use crate::__method_router as method_router;

#[cfg(test)]
mod tests {
    #[test]
    fn proxy_paths_translate() {
        assert_eq!(super::axum_path("/static/{proxy+}"), "/static/{*proxy}");
        assert_eq!(super::axum_path("/api/tasks/{id}/"), "/api/tasks/{id}/");
    }
}

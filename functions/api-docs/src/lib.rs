//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the whole API,
//! built from each function's route table — the same tables that build the
//! functions' routers, so the document cannot describe a route that is not
//! served, nor miss one that is.

use axum::http::header;
use axum::response::IntoResponse;
use axum::Router;
use honeydue_http::routes::{Auth, RouteDoc};
use serde_json::{json, Map, Value};

honeydue_http::routes! { ();
    GET "/api/openapi.json" => openapi, Public, "This document";
}

/// Every function and its routes.
pub fn functions() -> Vec<(&'static str, Vec<RouteDoc>)> {
    vec![
        ("api-health", api_health::ROUTES.to_vec()),
        ("api-auth", api_auth::ROUTES.to_vec()),
        ("api-lookups", api_lookups::ROUTES.to_vec()),
        ("api-residences", api_residences::ROUTES.to_vec()),
        ("api-tasks", api_tasks::routes()),
        ("api-contractors", api_contractors::ROUTES.to_vec()),
        ("api-documents", api_documents::ROUTES.to_vec()),
        ("api-notifications", api_notifications::ROUTES.to_vec()),
        ("api-subscriptions", api_subscriptions::ROUTES.to_vec()),
        ("api-uploads", api_uploads::ROUTES.to_vec()),
        ("api-admin", api_admin::ROUTES.to_vec()),
        ("web", web::ROUTES.to_vec()),
        ("api-docs", ROUTES.to_vec()),
    ]
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "Stable machine-readable code"},
                "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
                           "description": "Field name -> problems (422)"},
                "resource": {"type": "string"}, "limit": {"type": "integer"}, "usage": {"type": "integer"},
                "retry_after": {"type": "integer"}
            }
        }}
    })
}

/// The document.
pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    let mut ids = std::collections::BTreeSet::new();
    for (function, routes) in functions() {
        for r in routes {
            let params: Vec<Value> = r
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(|p| {
                    let name = p.trim_end_matches('+');
                    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
                })
                .collect();
            let security = match r.auth {
                Auth::Public => json!([]),
                Auth::User => json!([{"token": []}]),
                Auth::Admin => json!([{"adminToken": []}]),
            };
            let ok = match (r.method, r.path) {
                ("DELETE", _) => {
                    json!({"204": {"description": "Done"}, "200": {"description": "Done, with the result",
                                         "content": {"application/json": {"schema": {}}}}})
                }
                ("POST", _) => {
                    json!({"201": {"description": "Created", "content": {"application/json": {"schema": {}}}},
                                       "200": {"description": "Done", "content": {"application/json": {"schema": {}}}},
                                       "204": {"description": "Done"}})
                }
                _ => {
                    json!({"200": {"description": "OK", "content": {"application/json": {"schema": {}}}}})
                }
            };
            let mut responses = ok.as_object().cloned().unwrap_or_default();
            responses.insert(
                "4XX".into(),
                json!({"description": "Bad input, no access, not found, conflict, too large, rate limited",
                       "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
            );
            // Handler names repeat across a function's modules (create,
            // remove): the path then tells them apart.
            let mut id = format!("{}_{}", function.replace('-', "_"), r.handler);
            if !ids.insert(id.clone()) {
                let slug: String = r
                    .path
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                id = format!("{id}{}", slug.trim_end_matches('_').replace("__", "_"));
                ids.insert(id.clone());
            }
            let op = json!({
                "operationId": id,
                "summary": r.summary,
                "tags": [function],
                "security": security,
                "parameters": params,
                "responses": responses,
            });
            let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
            entry[r.method.to_ascii_lowercase()] = op;
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "honeyDue API", "version": honeydue_core::VERSION,
                 "description": "Home maintenance: residences, tasks, contractors, documents, uploads, notifications. Errors are {\"error\": {\"code\", \"message\", \"fields\"?}}."},
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "`Token <key>` or `Bearer <key>` from /api/auth/login/"},
                "adminToken": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "`Token <key>` from /api/admin/login/"}
            },
            "schemas": {"Error": error_schema()}
        },
        "paths": paths,
    })
}

async fn openapi() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        document().to_string(),
    )
}

/// The function's router.
pub fn app() -> Router {
    honeydue_http::finish(router(), 1024)
}

//! End-to-end checks of the product as a whole (its tests: the household
//! journey through the gateway, the k3s workloads started from their
//! manifests, the gateway with a real database), and the one place that
//! knows every function: the OpenAPI document is generated here from the
//! functions' route tables, committed as `functions/api-docs/openapi.json`
//! and checked current by `tests/openapi.rs` (`make openapi` rewrites it),
//! so no function links another.

use honeydue_http::routes::{Auth, RouteDoc};
use serde_json::{json, Map, Value};

/// Where the committed document lives (relative to the workspace root).
pub const OPENAPI_PATH: &str = "functions/api-docs/openapi.json";

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
        ("api-docs", api_docs::ROUTES.to_vec()),
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
        "info": {"title": "honeyDue API", "version": env!("CARGO_PKG_VERSION"),
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

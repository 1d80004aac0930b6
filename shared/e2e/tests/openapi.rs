//! The OpenAPI document, template.yaml and the functions' routers agree,
//! and the committed document (served by api-docs) is the one the route
//! tables give: `make openapi` (UPDATE_OPENAPI=1) rewrites it.

use std::collections::BTreeSet;

use honeydue_testkit::proc::workspace_root;
use honeydue_testkit::TestClient;
use sam_template::Template;

#[test]
fn the_committed_openapi_document_is_current() {
    let path = workspace_root().join(honeydue_e2e::OPENAPI_PATH);
    let want = format!("{}\n", honeydue_e2e::document());
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is out of date with the route tables: run `make openapi`",
        path.display()
    );
}

fn template_routes() -> BTreeSet<(String, String, String)> {
    let t = Template::load(&workspace_root().join("template.yaml")).unwrap();
    t.functions
        .iter()
        .flat_map(|f| {
            f.routes
                .iter()
                .map(move |r| (f.name.clone(), r.method.clone(), r.path.clone()))
        })
        .collect()
}

fn code_routes() -> BTreeSet<(String, String, String)> {
    honeydue_e2e::functions()
        .into_iter()
        .flat_map(|(f, routes)| {
            routes
                .into_iter()
                .map(move |r| (f.to_string(), r.method.to_string(), r.path.to_string()))
        })
        .collect()
}

#[test]
fn every_route_in_the_template_is_in_the_code_and_vice_versa() {
    let template = template_routes();
    let code = code_routes();
    let missing_in_template: Vec<_> = code.difference(&template).collect();
    let missing_in_code: Vec<_> = template.difference(&code).collect();
    assert!(
        missing_in_template.is_empty(),
        "served but not routed by template.yaml: {missing_in_template:?}"
    );
    assert!(
        missing_in_code.is_empty(),
        "routed by template.yaml but not served: {missing_in_code:?}"
    );
}

#[tokio::test]
async fn the_served_document_lists_every_route() {
    let c = TestClient::new(api_docs::app());
    let r = c.get("/api/openapi.json", None).await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut served = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            served.insert((method.to_uppercase(), path.clone()));
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path}"
            );
            let params = path.matches('{').count();
            assert_eq!(
                op["parameters"].as_array().unwrap().len(),
                params,
                "{method} {path}"
            );
        }
    }
    let template: BTreeSet<(String, String)> = template_routes()
        .into_iter()
        .map(|(_, m, p)| (m, p))
        .collect();
    assert_eq!(served, template);
    // Operation ids are unique.
    let ids: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|ops| {
            ops.as_object()
                .unwrap()
                .values()
                .map(|o| o["operationId"].as_str().unwrap().to_string())
        })
        .collect();
    let unique: BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
}

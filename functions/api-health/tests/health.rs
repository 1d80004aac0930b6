use honeydue_testkit::TestClient;

#[tokio::test]
async fn reports_status_and_version() {
    let c = TestClient::new(api_health::app());
    let r = c.get("/api/health/", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    assert_eq!(r.json()["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn unknown_paths_and_methods_are_json_errors() {
    let c = TestClient::new(api_health::app());
    let r = c.get("/api/health/nope/", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "not_found");
    let r = c.post("/api/health/", serde_json::json!({}), None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.error_code(), "method_not_allowed");
}

//! api-docs serves the committed document as it is (the e2e crate checks
//! that the document is current with every function's route table).

use honeydue_testkit::TestClient;

#[tokio::test]
async fn serves_the_committed_document() {
    let c = TestClient::new(api_docs::app());
    let r = c.get("/api/openapi.json", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type").unwrap().to_str().unwrap(),
        "application/json"
    );
    assert_eq!(r.text(), api_docs::DOCUMENT.trim_end());
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/openapi.json"]["get"].is_object());
}

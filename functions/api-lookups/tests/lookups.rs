use api_lookups::{app, Config, State};
use axum::http::Method;
use honeydue_testkit::redis::TestRedis;
use honeydue_testkit::{TestClient, TestDb};

async fn spawn(redis: Option<String>) -> (TestDb, TestClient) {
    let db = TestDb::new().await;
    let state = State::new(Config::for_tests(&db.url, redis), db.pool.clone());
    (db, TestClient::new(app(state)))
}

#[tokio::test]
async fn bundle_has_every_lookup_and_an_etag() {
    let (_db, c) = spawn(None).await;
    let r = c.get("/api/static_data/", None).await;
    assert_eq!(r.status, 200);
    let j = r.json();
    for k in [
        "residence_types",
        "task_categories",
        "task_priorities",
        "task_frequencies",
        "contractor_specialties",
        "document_types",
    ] {
        assert!(j[k].as_array().is_some_and(|a| !a.is_empty()), "{k}");
    }
    let annual = j["task_frequencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Annually")
        .unwrap();
    assert_eq!(
        annual["reminder_offsets"],
        serde_json::json!([30, 14, 7, 0])
    );
    assert!(r.headers["etag"]
        .to_str()
        .unwrap()
        .starts_with("\"lookups-"));
}

#[tokio::test]
async fn if_none_match_gives_304_until_a_lookup_changes() {
    for redis in [false, true] {
        let server = redis.then(TestRedis::start);
        let (db, c) = spawn(server.as_ref().map(|r| r.url())).await;
        let r = c.get("/api/static_data/", None).await;
        let tag = r.headers["etag"].to_str().unwrap().to_string();
        let r = c
            .send_raw(
                Method::GET,
                "/api/static_data/",
                None,
                None,
                &[("if-none-match", &tag)],
            )
            .await;
        assert_eq!(r.status, 304);
        assert!(r.body.is_empty());
        let weak = format!("W/{tag}");
        let r = c
            .send_raw(
                Method::GET,
                "/api/static_data/",
                None,
                None,
                &[("if-none-match", &weak)],
            )
            .await;
        assert_eq!(r.status, 304);

        // An admin edit bumps the version: the old tag no longer matches and
        // the cached bundle is not served.
        sqlx::query("INSERT INTO task_categories (name) VALUES ('Solar')")
            .execute(&db.pool)
            .await
            .unwrap();
        let r = c
            .send_raw(
                Method::GET,
                "/api/static_data/",
                None,
                None,
                &[("if-none-match", &tag)],
            )
            .await;
        assert_eq!(r.status, 200);
        assert_ne!(r.headers["etag"].to_str().unwrap(), tag);
        assert!(r.json()["task_categories"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "Solar"));
    }
}

#[tokio::test]
async fn works_with_redis_down() {
    let (_db, c) = spawn(Some("redis://127.0.0.1:1/".into())).await;
    assert_eq!(c.get("/api/static_data/", None).await.status, 200);
}

//! Presigned uploads against a real S3-compatible server (moto's) on
//! loopback: the bytes really go to the bucket over HTTP and come back.

use api_uploads::{app, Uploads};
use honeydue_http::{Config, State};
use honeydue_storage::{Storage, StorageConfig};
use honeydue_testkit::fixtures::{add_member, residence, user};
use honeydue_testkit::s3::TestS3;
use honeydue_testkit::wire;
use honeydue_testkit::{TestClient, TestDb};
use serde_json::json;

struct T {
    db: TestDb,
    c: TestClient,
    _s3: TestS3,
}

async fn spawn() -> T {
    let s3 = tokio::task::spawn_blocking(TestS3::start).await.unwrap();
    let db = TestDb::new().await;
    let mut env = honeydue_core::Env::from_pairs(s3.env("honeydue-test"));
    let cfg = StorageConfig::read(&mut env).unwrap();
    env.finish().unwrap();
    let storage = Storage::new(&cfg).await;
    storage.ensure_bucket().await.unwrap();
    let base = State::new(Config::for_tests(&db.url, None), db.pool.clone());
    T {
        c: TestClient::new(app(Uploads { base, storage })),
        db,
        _s3: s3,
    }
}

/// Sends `method url` (an absolute http URL) with headers and body.
async fn http(
    method: &'static str,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> wire::WireResponse {
    tokio::task::spawn_blocking(move || {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let addr: std::net::SocketAddr = host.parse().unwrap();
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        wire::request(addr, method, path, &h, &body).unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn presign_put_confirm_and_download_round_trip() {
    let t = spawn().await;
    let (a, ta) = user(&t.db.pool, "a@example.com").await;
    let (m, tm) = user(&t.db.pool, "m@example.com").await;
    let (_, tx) = user(&t.db.pool, "x@example.com").await;
    let home = residence(&t.db.pool, a, "Home").await;
    add_member(&t.db.pool, home, m, "viewer").await;
    let photo: Vec<u8> = (0..2048u32).map(|i| (i % 251) as u8).collect();

    let r = t
        .c
        .post(
            "/api/uploads/presign/",
            json!({"purpose": "completion_photo", "filename": "filter.jpg", "content_type": "image/jpeg",
                   "size": photo.len(), "residence_id": home}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let url = r.json()["upload_url"].as_str().unwrap().to_string();
    // The key is random: no file name, no user.
    let path = url.split('?').next().unwrap();
    let key = path.rsplit_once("/uploads/").unwrap().1;
    assert!(
        key.len() == 32 && key.chars().all(|c| c.is_ascii_hexdigit()),
        "{url}"
    );
    assert!(!url.contains("filter"));

    // Confirming before the upload is a conflict.
    assert_eq!(
        t.c.post(&format!("/api/uploads/{id}/confirm/"), json!({}), Some(&ta))
            .await
            .status,
        409
    );
    let put = http(
        "PUT",
        url,
        vec![("content-type".into(), "image/jpeg".into())],
        photo.clone(),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    // Only the uploader confirms.
    assert_eq!(
        t.c.post(&format!("/api/uploads/{id}/confirm/"), json!({}), Some(&tm))
            .await
            .status,
        404
    );
    let r =
        t.c.post(&format!("/api/uploads/{id}/confirm/"), json!({}), Some(&ta))
            .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "confirmed");

    // A member of the residence downloads through a 302; an outsider cannot.
    for token in [&ta, &tm] {
        let r = t.c.get(&format!("/api/files/{id}/"), Some(token)).await;
        assert_eq!(r.status, 302);
        let location = r.headers["location"].to_str().unwrap().to_string();
        let got = http("GET", location, vec![], vec![]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, photo);
    }
    assert_eq!(
        t.c.get(&format!("/api/files/{id}/"), Some(&tx))
            .await
            .status,
        404
    );
    assert_eq!(
        t.c.get("/api/files/not-a-uuid/", Some(&ta)).await.status,
        404
    );
}

#[tokio::test]
async fn a_file_that_does_not_match_is_refused_and_removed() {
    let t = spawn().await;
    let (a, ta) = user(&t.db.pool, "a@example.com").await;
    let home = residence(&t.db.pool, a, "Home").await;
    let r = t
        .c
        .post(
            "/api/uploads/presign/",
            json!({"purpose": "document_file", "filename": "manual.pdf", "content_type": "application/pdf", "size": 100, "residence_id": home}),
            Some(&ta),
        )
        .await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let url = r.json()["upload_url"].as_str().unwrap().to_string();
    // Fewer bytes than announced: the store may refuse the PUT, or keep it
    // and the confirmation refuses it.
    let _ = http(
        "PUT",
        url,
        vec![("content-type".into(), "application/pdf".into())],
        vec![b'%'; 10],
    )
    .await;
    let r =
        t.c.post(&format!("/api/uploads/{id}/confirm/"), json!({}), Some(&ta))
            .await;
    assert!(
        r.status == 422 || r.status == 409,
        "{} {}",
        r.status,
        r.text()
    );
    let status: String = sqlx::query_scalar("SELECT status FROM uploads WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&t.db.pool)
        .await
        .unwrap();
    assert_eq!(status, "pending");
    assert_eq!(
        t.c.get(&format!("/api/files/{id}/"), Some(&ta))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn types_sizes_and_scope_are_checked() {
    let t = spawn().await;
    let (a, ta) = user(&t.db.pool, "a@example.com").await;
    let (_, tx) = user(&t.db.pool, "x@example.com").await;
    let home = residence(&t.db.pool, a, "Home").await;
    let r = t
        .c
        .post(
            "/api/uploads/presign/",
            json!({"purpose": "selfie", "filename": "../x.exe", "content_type": "application/x-msdownload", "size": 0}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 422);
    for k in [
        "purpose",
        "filename",
        "content_type",
        "size",
        "residence_id",
    ] {
        assert!(
            r.json()["error"]["fields"][k].is_array(),
            "{k}: {}",
            r.text()
        );
    }
    // Over the free plan's 10 MB.
    let r = t
        .c
        .post(
            "/api/uploads/presign/",
            json!({"purpose": "residence_image", "filename": "big.png", "content_type": "image/png", "size": 11_000_000, "residence_id": home}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.json()["error"]["fields"]["size"][0]
        .as_str()
        .unwrap()
        .contains("10 MB"));
    // Another user's residence.
    let r = t
        .c
        .post(
            "/api/uploads/presign/",
            json!({"purpose": "residence_image", "filename": "a.png", "content_type": "image/png", "size": 10, "residence_id": home}),
            Some(&tx),
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn viewers_and_outsiders_cannot_upload_to_a_residence() {
    let t = spawn().await;
    let (a, _) = user(&t.db.pool, "a@example.com").await;
    let (v, tv) = user(&t.db.pool, "v@example.com").await;
    let (_, tx) = user(&t.db.pool, "x@example.com").await;
    let home = residence(&t.db.pool, a, "Home").await;
    add_member(&t.db.pool, home, v, "viewer").await;
    let body = json!({"purpose": "document_file", "filename": "manual.pdf", "content_type": "application/pdf",
                      "size": 1000, "residence_id": home});
    let r =
        t.c.post("/api/uploads/presign/", body.clone(), Some(&tv))
            .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = t.c.post("/api/uploads/presign/", body, Some(&tx)).await;
    assert_eq!(r.status, 404, "{}", r.text());
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads")
        .fetch_one(&t.db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

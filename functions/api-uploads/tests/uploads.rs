//! Presigned uploads against a real S3-compatible server (moto's) on
//! loopback: the bytes really go to the bucket over HTTP and come back.

use api_uploads::{app, Uploads};
use honeydue_http::{Config, State};
use honeydue_storage::{Storage, StorageConfig};
use honeydue_testkit::fixtures::{add_member, exec, residence, user};
use honeydue_testkit::s3::TestS3;
use honeydue_testkit::wire;
use honeydue_testkit::{TestClient, TestDb};
use serde_json::json;

struct T {
    db: TestDb,
    c: TestClient,
    s3: TestS3,
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
        s3,
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

/// Presigns a JPEG of `bytes`, uploads it and confirms it: the upload's id.
async fn put_file(
    t: &T,
    token: &str,
    purpose: &str,
    residence: Option<i64>,
    bytes: &[u8],
) -> String {
    let r =
        t.c.post(
            "/api/uploads/presign/",
            json!({"purpose": purpose, "filename": "f.jpg", "content_type": "image/jpeg",
                   "size": bytes.len(), "residence_id": residence}),
            Some(token),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let url = r.json()["upload_url"].as_str().unwrap().to_string();
    let put = http(
        "PUT",
        url,
        vec![("content-type".into(), "image/jpeg".into())],
        bytes.to_vec(),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let r =
        t.c.post(
            &format!("/api/uploads/{id}/confirm/"),
            json!({}),
            Some(token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    id
}

/// Gives `user` `n` more confirmed uploads of `size` bytes each (rows only).
async fn fill(pool: &sqlx::PgPool, user: i64, n: i32, size: i64, purpose: &str) {
    sqlx::query(
        "INSERT INTO uploads (id, user_id, purpose, object_key, filename, content_type, size_bytes, status, confirmed_at)
         SELECT g.id, $1, $4, 'uploads/' || replace(g.id::text, '-', ''), 'f.jpg', 'image/jpeg', $2::bigint, 'confirmed', now()
           FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, $3::int)) g",
    )
    .bind(user)
    .bind(size)
    .bind(n)
    .bind(purpose)
    .execute(pool)
    .await
    .unwrap();
}

async fn count_uploads(pool: &sqlx::PgPool, user: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM uploads WHERE user_id = $1")
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn avatar_of(pool: &sqlx::PgPool, user: i64) -> Option<uuid::Uuid> {
    sqlx::query_scalar("SELECT avatar_upload_id FROM users WHERE id = $1")
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn uid(s: &str) -> uuid::Uuid {
    s.parse().unwrap()
}

async fn presign_avatar(t: &T, token: &str) -> honeydue_testkit::TestResponse {
    t.c.post(
        "/api/uploads/presign/",
        presign_body("avatar", 10, None),
        Some(token),
    )
    .await
}

fn presign_body(purpose: &str, size: i64, residence: Option<i64>) -> serde_json::Value {
    json!({"purpose": purpose, "filename": "f.jpg", "content_type": "image/jpeg",
           "size": size, "residence_id": residence})
}

#[tokio::test]
async fn every_purpose_counts_against_the_uploaders_file_quota() {
    let t = spawn().await;
    let p = &t.db.pool;
    let (a, ta) = user(p, "a@example.com").await;
    let (m, tm) = user(p, "m@example.com").await;
    let home = residence(p, a, "Home").await;
    add_member(p, home, m, "member").await;
    // Free: 200 files. Avatars, like every purpose, count.
    fill(p, a, 150, 1000, "avatar").await;
    fill(p, a, 49, 1000, "document_file").await;
    let r =
        t.c.post(
            "/api/uploads/presign/",
            presign_body("avatar", 10, None),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 201, "the 200th file: {}", r.text());
    for body in [
        presign_body("avatar", 10, None),
        presign_body("completion_photo", 10, Some(home)),
        presign_body("residence_image", 10, Some(home)),
        presign_body("document_file", 10, Some(home)),
    ] {
        let r = t.c.post("/api/uploads/presign/", body, Some(&ta)).await;
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(r.error_code(), "limit_exceeded");
        assert_eq!(r.json()["error"]["resource"], "uploads");
        assert_eq!(r.json()["error"]["limit"], 200);
        assert_eq!(r.json()["error"]["usage"], 200);
    }
    assert_eq!(count_uploads(p, a).await, 200, "nothing was added");
    // The uploader pays, not the residence's owner: a member still uploads
    // to the full owner's home.
    let r =
        t.c.post(
            "/api/uploads/presign/",
            presign_body("completion_photo", 10, Some(home)),
            Some(&tm),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // A replaced avatar (marked for deletion) still counts while its file
    // is stored (else replacing avatars would be unlimited storage for a
    // day); once the cleanup has removed it, its slot is free.
    exec(
        p,
        &format!(
            "UPDATE uploads SET status = 'deleted', deleted_at = now()
              WHERE id = (SELECT id FROM uploads WHERE user_id = {a} AND purpose = 'avatar' LIMIT 1)"
        ),
    )
    .await;
    let again = || {
        t.c.post(
            "/api/uploads/presign/",
            presign_body("avatar", 10, None),
            Some(&ta),
        )
    };
    assert_eq!(again().await.status, 403);
    exec(
        p,
        &format!("DELETE FROM uploads WHERE user_id = {a} AND status = 'deleted'"),
    )
    .await;
    let r = again().await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test]
async fn the_byte_quota_counts_pending_and_confirmed_declared_sizes() {
    let t = spawn().await;
    let p = &t.db.pool;
    let (a, ta) = user(p, "a@example.com").await;
    // Free: 500 MiB = 524,288,000 bytes; 1,000 left.
    fill(p, a, 1, 300 * 1_048_576, "avatar").await;
    fill(p, a, 1, 200 * 1_048_576 - 1000, "avatar").await;
    exec(
        p,
        &format!("UPDATE uploads SET status = 'pending', confirmed_at = NULL WHERE user_id = {a} AND size_bytes < 300 * 1048576"),
    )
    .await;
    let r =
        t.c.post(
            "/api/uploads/presign/",
            presign_body("avatar", 1001, None),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error_code(), "limit_exceeded");
    assert_eq!(r.json()["error"]["resource"], "upload_bytes");
    assert_eq!(r.json()["error"]["limit"], 524_288_000i64);
    assert_eq!(r.json()["error"]["usage"], 524_287_000i64);
    // Exactly what is left fits; then not one byte more, even unconfirmed.
    let r =
        t.c.post(
            "/api/uploads/presign/",
            presign_body("avatar", 1000, None),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r =
        t.c.post(
            "/api/uploads/presign/",
            presign_body("avatar", 1, None),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["usage"], 524_288_000i64);
    // Pro: 10 GiB.
    exec(
        p,
        &format!("INSERT INTO user_subscriptions (user_id, tier) VALUES ({a}, 'pro')"),
    )
    .await;
    let r =
        t.c.post(
            "/api/uploads/presign/",
            presign_body("avatar", 40 * 1_048_576, None),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test]
async fn the_limits_switch_and_the_free_flag_lift_upload_quotas() {
    let t = spawn().await;
    let p = &t.db.pool;
    let (a, ta) = user(p, "a@example.com").await;
    fill(p, a, 200, 10, "avatar").await;
    assert_eq!(presign_avatar(&t, &ta).await.status, 403);
    exec(p, "UPDATE app_settings SET limits_enabled = FALSE").await;
    assert_eq!(presign_avatar(&t, &ta).await.status, 201);
    exec(p, "UPDATE app_settings SET limits_enabled = TRUE").await;
    assert_eq!(presign_avatar(&t, &ta).await.status, 403);
    exec(
        p,
        &format!(
            "INSERT INTO user_subscriptions (user_id, is_free, source) VALUES ({a}, TRUE, 'admin')"
        ),
    )
    .await;
    assert_eq!(presign_avatar(&t, &ta).await.status, 201);
}

#[tokio::test]
async fn confirming_an_avatar_replaces_the_previous_one() {
    let t = spawn().await;
    let p = &t.db.pool;
    let (a, ta) = user(p, "a@example.com").await;
    let home = residence(p, a, "Home").await;
    assert_eq!(avatar_of(p, a).await, None);
    let first = put_file(&t, &ta, "avatar", None, b"first").await;
    assert_eq!(avatar_of(p, a).await, Some(uid(&first)));
    // Other purposes never touch the avatar.
    put_file(&t, &ta, "completion_photo", Some(home), b"photo").await;
    assert_eq!(avatar_of(p, a).await, Some(uid(&first)));

    let second = put_file(&t, &ta, "avatar", None, b"second").await;
    assert_eq!(avatar_of(p, a).await, Some(uid(&second)));
    // The old one is marked for the cleanup job: not served, not counted,
    // and it cannot come back.
    let (status, deleted): (String, bool) =
        sqlx::query_as("SELECT status, deleted_at IS NOT NULL FROM uploads WHERE id = $1::uuid")
            .bind(&first)
            .fetch_one(p)
            .await
            .unwrap();
    assert_eq!((status.as_str(), deleted), ("deleted", true));
    assert_eq!(
        t.c.get(&format!("/api/files/{first}/"), Some(&ta))
            .await
            .status,
        404
    );
    let r = t.c.get(&format!("/api/files/{second}/"), Some(&ta)).await;
    assert_eq!(r.status, 302);
    let got = http(
        "GET",
        r.headers["location"].to_str().unwrap().to_string(),
        vec![],
        vec![],
    )
    .await;
    assert_eq!(got.body, b"second");
    assert_eq!(
        t.c.post(
            &format!("/api/uploads/{first}/confirm/"),
            json!({}),
            Some(&ta)
        )
        .await
        .status,
        404
    );
    // Confirming the current one again changes nothing.
    let r =
        t.c.post(
            &format!("/api/uploads/{second}/confirm/"),
            json!({}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(avatar_of(p, a).await, Some(uid(&second)));
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM uploads WHERE user_id = $1 AND purpose = 'avatar' AND status <> 'deleted'",
    )
    .bind(a)
    .fetch_one(p)
    .await
    .unwrap();
    assert_eq!(live, 1, "one avatar per user");
}

#[tokio::test]
async fn another_users_upload_can_never_be_an_avatar() {
    let t = spawn().await;
    let p = &t.db.pool;
    let (x, tx) = user(p, "x@example.com").await;
    let (y, ty) = user(p, "y@example.com").await;
    let home = residence(p, y, "Home").await;
    let xs = put_file(&t, &tx, "avatar", None, b"x's face").await;
    // Confirming someone else's avatar upload: not found, nothing changes.
    assert_eq!(
        t.c.post(&format!("/api/uploads/{xs}/confirm/"), json!({}), Some(&ty))
            .await
            .status,
        404
    );
    assert_eq!(avatar_of(p, y).await, None);
    assert_eq!(avatar_of(p, x).await, Some(uid(&xs)));
    // The database refuses it too, whoever writes the column: another
    // user's avatar, or one's own upload of another purpose.
    let photo = put_file(&t, &ty, "completion_photo", Some(home), b"photo").await;
    for id in [&xs, &photo] {
        let e = sqlx::query("UPDATE users SET avatar_upload_id = $1::uuid WHERE id = $2")
            .bind(id)
            .bind(y)
            .execute(p)
            .await
            .unwrap_err();
        let constraint = match &e {
            sqlx::Error::Database(d) => d.constraint().map(str::to_string),
            _ => None,
        };
        assert_eq!(
            constraint.as_deref(),
            Some("users_avatar_upload_id_owner_check"),
            "{e}"
        );
    }
    assert_eq!(avatar_of(p, y).await, None);
}

#[tokio::test]
async fn the_store_down_at_confirm_is_a_503_and_the_upload_waits() {
    let mut t = spawn().await;
    let (a, ta) = user(&t.db.pool, "a@example.com").await;
    let home = residence(&t.db.pool, a, "Home").await;
    let photo = vec![7u8; 512];
    let r =
        t.c.post(
            "/api/uploads/presign/",
            json!({"purpose": "residence_image", "filename": "h.jpg", "content_type": "image/jpeg",
                   "size": photo.len(), "residence_id": home}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_string();
    let url = r.json()["upload_url"].as_str().unwrap().to_string();
    let put = http(
        "PUT",
        url,
        vec![("content-type".into(), "image/jpeg".into())],
        photo,
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());

    // The store goes away before the app confirms.
    t.s3.stop();
    let r =
        t.c.post(&format!("/api/uploads/{id}/confirm/"), json!({}), Some(&ta))
            .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "unavailable");
    assert_eq!(r.headers["retry-after"], "2");
    let status: String = sqlx::query_scalar("SELECT status FROM uploads WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&t.db.pool)
        .await
        .unwrap();
    assert_eq!(
        status, "pending",
        "nothing changed: the app's retry confirms it"
    );
}

//! A new household's journey, end to end through the shipped binaries
//! behind `shim gateway`, against a real Postgres: register, verify, create
//! a home, invite a second user by code, add tasks, complete one, and see
//! the board change for both.

use honeydue_testkit::proc::{bin_dir, binary, free_addr, workspace_root, Proc};
use honeydue_testkit::wire::{self, request, WireResponse};
use serde_json::{json, Value};

fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> WireResponse {
    let auth = format!("Token {token}");
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let mut headers = vec![("authorization", auth.as_str())];
    if !text.is_empty() {
        headers.push(("content-type", "application/json"));
    }
    request(addr, method, path, &headers, text.as_bytes()).expect("request")
}

fn split_url(url: &str) -> (std::net::SocketAddr, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    (host.parse().unwrap(), path.to_string())
}

fn put_to(url: &str, content_type: &str, body: &[u8]) -> WireResponse {
    let (addr, path) = split_url(url);
    request(addr, "PUT", &path, &[("content-type", content_type)], body).unwrap()
}

fn get_url(url: &str) -> WireResponse {
    let (addr, path) = split_url(url);
    request(addr, "GET", &path, &[], b"").unwrap()
}

fn column_of(board: &Value, task_id: i64) -> String {
    board["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["id"] == task_id)
        })
        .map(|c| c["name"].as_str().unwrap().to_string())
        .unwrap_or_else(|| "absent".into())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_household_from_sign_up_to_a_shared_board() {
    let db = honeydue_testkit::TestDb::new().await;
    for f in ["api-auth", "api-residences", "api-tasks"] {
        binary(f);
    }
    let s3 = tokio::task::spawn_blocking(honeydue_testkit::s3::TestS3::start)
        .await
        .unwrap();
    let bucket_host: std::net::SocketAddr =
        s3.endpoint().trim_start_matches("http://").parse().unwrap();
    tokio::task::spawn_blocking(move || {
        request(bucket_host, "PUT", "/household", &[], b"").unwrap()
    })
    .await
    .unwrap();
    let addr = free_addr();
    let mut cmd = std::process::Command::new(binary("shim"));
    cmd.current_dir(workspace_root())
        .args([
            "gateway",
            "--listen",
            &addr.to_string(),
            "--drain-delay",
            "0",
        ])
        .arg("--bin-dir")
        .arg(bin_dir())
        .env("DATABASE_URL", &db.url)
        .env("APP_SECRET", "household-test-secret-0123")
        .env_remove("REDIS_URL")
        .envs(s3.env("household"));
    let gw = tokio::task::spawn_blocking(move || Proc::spawn(cmd, addr).ready())
        .await
        .unwrap();
    let pool = db.pool.clone();

    // Codes arrive by email; the test reads them from the outbox.
    let code_for = |email: &'static str| {
        let pool = pool.clone();
        async move {
            let body: String = sqlx::query_scalar(
                "SELECT body_text FROM email_outbox WHERE to_address = $1 AND kind = 'verify_email' ORDER BY id DESC LIMIT 1",
            )
            .bind(email)
            .fetch_one(&pool)
            .await
            .unwrap();
            body.split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() == 6)
                .unwrap()
                .to_string()
        }
    };

    let a = gw.addr;
    let (ann, ann_id) = tokio::task::spawn_blocking(move || {
        let r = wire::post_json(a, "/api/auth/register/", &json!({"email": "ann@example.com", "password": "ann-password", "first_name": "Ann", "timezone": "America/Chicago"}), None);
        assert_eq!(r.status, 201, "{}", r.text());
        (r.json()["token"].as_str().unwrap().to_string(), r.json()["user"]["id"].as_i64().unwrap())
    })
    .await
    .unwrap();
    let code = code_for("ann@example.com").await;
    let ann2 = ann.clone();
    let (home, task_ids) = tokio::task::spawn_blocking(move || {
        let ann = ann2;
        let r = call(a, "POST", "/api/auth/verify-email/", &ann, Some(json!({"code": code})));
        assert_eq!(r.status, 200, "{}", r.text());
        let r = call(a, "POST", "/api/residences/", &ann, Some(json!({"name": "Maple Street", "residence_type_id": 1})));
        assert_eq!(r.status, 201, "{}", r.text());
        let home = r.json()["id"].as_i64().unwrap();
        let mut ids = Vec::new();
        for (title, due) in [("Replace HVAC filter", "2020-01-01"), ("Clean gutters", "2099-10-01")] {
            let r = call(a, "POST", "/api/tasks/", &ann, Some(json!({"residence_id": home, "title": title, "frequency_id": 6, "due_date": due})));
            assert_eq!(r.status, 201, "{}", r.text());
            ids.push(r.json()["id"].as_i64().unwrap());
        }
        (home, ids)
    })
    .await
    .unwrap();

    // Ann invites Ben by code; Ben signs up and joins.
    let ann3 = ann.clone();
    let ben = tokio::task::spawn_blocking(move || {
        let r = call(
            a,
            "POST",
            &format!("/api/residences/{home}/share/"),
            &ann3,
            Some(json!({})),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let share = r.json()["code"].as_str().unwrap().to_string();
        let r = wire::post_json(
            a,
            "/api/auth/register/",
            &json!({"email": "ben@example.com", "password": "ben-password", "first_name": "Ben"}),
            None,
        );
        assert_eq!(r.status, 201);
        let ben = r.json()["token"].as_str().unwrap().to_string();
        let r = call(
            a,
            "POST",
            "/api/residences/join/",
            &ben,
            Some(json!({"code": share})),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["role"], "member");
        ben
    })
    .await
    .unwrap();

    // Both see the overdue filter change on the board; Ben completes it.
    let (ann4, ben2) = (ann.clone(), ben.clone());
    let (filter, gutters) = (task_ids[0], task_ids[1]);
    tokio::task::spawn_blocking(move || {
        for t in [&ann4, &ben2] {
            let b = call(
                a,
                "GET",
                &format!("/api/tasks/by-residence/{home}/"),
                t,
                None,
            )
            .json();
            assert_eq!(column_of(&b, filter), "overdue");
            assert_eq!(column_of(&b, gutters), "upcoming");
        }
        // Ben photographs the new filter: presign, PUT to the bucket, confirm.
        let photo: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
        let r = call(a, "POST", "/api/uploads/presign/", &ben2, Some(json!({"purpose": "completion_photo", "filename": "filter.jpg",
                                                                          "content_type": "image/jpeg", "size": photo.len(), "residence_id": home})));
        assert_eq!(r.status, 201, "{}", r.text());
        let upload = r.json()["id"].as_str().unwrap().to_string();
        let url = r.json()["upload_url"].as_str().unwrap().to_string();
        let put = put_to(&url, "image/jpeg", &photo);
        assert_eq!(put.status, 200, "{}", put.text());
        assert_eq!(call(a, "POST", &format!("/api/uploads/{upload}/confirm/"), &ben2, None).status, 200);
        let r = call(a, "POST", "/api/task-completions/", &ben2,
                     Some(json!({"task_id": filter, "notes": "MERV 11", "rating": 4, "upload_ids": [upload]})));
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["completion"]["image_ids"], json!([upload]));
        // Ann sees the photo.
        let r = call(a, "GET", &format!("/api/files/{upload}/"), &ann4, None);
        assert_eq!(r.status, 302);
        let got = get_url(r.header("location").unwrap());
        assert_eq!(got.body, photo);
        assert_ne!(r.json()["task"]["kanban_column"], "overdue");
        for t in [&ann4, &ben2] {
            let b = call(a, "GET", "/api/tasks/", t, None).json();
            assert_ne!(
                column_of(&b, filter),
                "overdue",
                "the board changed for both"
            );
            assert_ne!(column_of(&b, filter), "absent");
        }
        let members = call(
            a,
            "GET",
            &format!("/api/residences/{home}/users/"),
            &ann4,
            None,
        )
        .json();
        assert_eq!(members.as_array().unwrap().len(), 2);
    })
    .await
    .unwrap();
    // Ann was told of Ben's completion.
    let told: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications WHERE user_id = $1 AND kind = 'completed'",
    )
    .bind(ann_id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(told, 1);
    drop(gw);
}

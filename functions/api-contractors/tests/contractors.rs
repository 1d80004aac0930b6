use api_contractors::{app, Config, State};
use honeydue_testkit::fixtures::{add_member, residence, user};
use honeydue_testkit::{TestClient, TestDb};
use serde_json::json;

async fn spawn() -> (TestDb, TestClient) {
    let db = TestDb::new().await;
    let state = State::new(Config::for_tests(&db.url, None), db.pool.clone());
    (db, TestClient::new(app(state)))
}

#[tokio::test]
async fn crud_filters_and_favourites() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    let r = c
        .post(
            "/api/contractors/",
            json!({"name": "Pat Plumber", "company": "Pipes Ltd", "email": "PAT@Pipes.example", "phone": "555-0100",
                   "website": "https://pipes.example", "specialty_ids": [1, 4], "residence_id": home}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    assert_eq!(r.json()["email"], "pat@pipes.example");
    assert_eq!(r.json()["specialty_ids"], json!([1, 4]));
    let r = c
        .post(
            "/api/contractors/",
            json!({"name": "Eli Electric", "specialty_ids": [2]}),
            Some(&ta),
        )
        .await;
    let eli = r.json()["id"].as_i64().unwrap();

    assert_eq!(
        c.get("/api/contractors/", Some(&ta)).await.json()["count"],
        2
    );
    let r = c.get("/api/contractors/?specialty=2", Some(&ta)).await;
    assert_eq!(r.json()["count"], 1);
    assert_eq!(r.json()["results"][0]["id"], eli);
    assert_eq!(
        c.get(&format!("/api/contractors/?residence={home}"), Some(&ta))
            .await
            .json()["count"],
        1
    );

    let r = c
        .post(
            &format!("/api/contractors/{id}/toggle-favorite/"),
            json!({}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.json()["is_favorite"], true);
    assert_eq!(
        c.get("/api/contractors/?favorite=true", Some(&ta))
            .await
            .json()["results"][0]["id"],
        id
    );
    let r = c
        .patch(
            &format!("/api/contractors/{id}/"),
            json!({"specialty_ids": [3], "notes": "great"}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["specialty_ids"], json!([3]));

    // Tasks done by a contractor.
    sqlx::query(
        "INSERT INTO tasks (residence_id, title, contractor_id) VALUES ($1, 'Fix sink', $2)",
    )
    .bind(home)
    .bind(id)
    .execute(&db.pool)
    .await
    .unwrap();
    let r = c
        .get(&format!("/api/contractors/{id}/tasks/"), Some(&ta))
        .await;
    assert_eq!(r.json()[0]["title"], "Fix sink");

    assert_eq!(
        c.delete(&format!("/api/contractors/{eli}/"), None, Some(&ta))
            .await
            .status,
        204
    );
    assert_eq!(
        c.get(&format!("/api/contractors/{eli}/"), Some(&ta))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn validation_and_scope() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let (m, tm) = user(&db.pool, "m@example.com").await;
    let (v, tv) = user(&db.pool, "v@example.com").await;
    let (_, tx) = user(&db.pool, "x@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    add_member(&db.pool, home, m, "member").await;
    add_member(&db.pool, home, v, "viewer").await;

    let r = c
        .post(
            "/api/contractors/",
            json!({"email": "nope", "website": "ftp://x", "specialty_ids": [999]}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 422);
    for k in ["name", "email", "website", "specialty_ids"] {
        assert!(r.json()["error"]["fields"][k].is_array(), "{k}");
    }
    // A residence the caller cannot write to.
    assert_eq!(
        c.post(
            "/api/contractors/",
            json!({"name": "X", "residence_id": home}),
            Some(&tx)
        )
        .await
        .status,
        404
    );
    assert_eq!(
        c.post(
            "/api/contractors/",
            json!({"name": "X", "residence_id": home}),
            Some(&tv)
        )
        .await
        .status,
        403
    );

    let shared = c
        .post(
            "/api/contractors/",
            json!({"name": "Shared", "residence_id": home}),
            Some(&ta),
        )
        .await
        .json()["id"]
        .as_i64()
        .unwrap();
    let private = c
        .post("/api/contractors/", json!({"name": "Private"}), Some(&ta))
        .await
        .json()["id"]
        .as_i64()
        .unwrap();

    // Members see and edit the residence's contractor; viewers only see it;
    // nobody else sees either; A's private one stays A's.
    assert_eq!(
        c.get(&format!("/api/contractors/{shared}/"), Some(&tm))
            .await
            .status,
        200
    );
    assert_eq!(
        c.patch(
            &format!("/api/contractors/{shared}/"),
            json!({"phone": "1"}),
            Some(&tm)
        )
        .await
        .status,
        200
    );
    assert_eq!(
        c.get(&format!("/api/contractors/{shared}/"), Some(&tv))
            .await
            .status,
        200
    );
    assert_eq!(
        c.patch(
            &format!("/api/contractors/{shared}/"),
            json!({"phone": "2"}),
            Some(&tv)
        )
        .await
        .status,
        403
    );
    assert_eq!(
        c.delete(&format!("/api/contractors/{shared}/"), None, Some(&tv))
            .await
            .status,
        403
    );
    for t in [&tm, &tv, &tx] {
        assert_eq!(
            c.get(&format!("/api/contractors/{private}/"), Some(t))
                .await
                .status,
            404
        );
        assert_eq!(
            c.patch(
                &format!("/api/contractors/{private}/"),
                json!({"name": "mine"}),
                Some(t)
            )
            .await
            .status,
            404
        );
        assert_eq!(
            c.post(
                &format!("/api/contractors/{private}/toggle-favorite/"),
                json!({}),
                Some(t)
            )
            .await
            .status,
            404
        );
        assert_eq!(
            c.get(&format!("/api/contractors/{private}/tasks/"), Some(t))
                .await
                .status,
            404
        );
    }
    assert_eq!(
        c.get(&format!("/api/contractors/{shared}/"), Some(&tx))
            .await
            .status,
        404
    );
    assert_eq!(
        c.get("/api/contractors/", Some(&tx)).await.json()["count"],
        0
    );
    assert_eq!(
        c.get("/api/contractors/", Some(&tm)).await.json()["count"],
        1
    );
}

#[tokio::test]
async fn a_shared_contractor_stays_with_the_household() {
    let (db, c) = spawn().await;
    let p = &db.pool;
    let (ann, ta) = user(p, "ann@example.com").await;
    let (bob, tb) = user(p, "bob@example.com").await;
    let (_, tx) = user(p, "xena@example.com").await;
    let home = residence(p, ann, "Home").await;
    let bobs_own = residence(p, bob, "Bob's flat").await;
    add_member(p, home, bob, "member").await;
    // Bob adds a plumber for the household.
    let r = c
        .post(
            "/api/contractors/",
            json!({"name": "Pat Plumber", "residence_id": home}),
            Some(&tb),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    let path = format!("/api/contractors/{id}/");
    // Ann (a member) may edit it but not move it away from the household.
    assert_eq!(
        c.patch(&path, json!({"phone": "555-0100"}), Some(&ta))
            .await
            .status,
        200
    );
    let r = c
        .patch(&path, json!({"residence_id": null}), Some(&ta))
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    // Outsiders: nothing, for every route.
    assert_eq!(c.get(&path, Some(&tx)).await.status, 404);
    assert_eq!(
        c.patch(&path, json!({"name": "x"}), Some(&tx)).await.status,
        404
    );
    assert_eq!(c.delete(&path, None, Some(&tx)).await.status, 404);
    assert_eq!(
        c.post(&format!("{path}toggle-favorite/"), json!({}), Some(&tx))
            .await
            .status,
        404
    );
    assert_eq!(c.get(&format!("{path}tasks/"), Some(&tx)).await.status, 404);
    let r = c
        .get(&format!("/api/contractors/?residence={home}"), Some(&tx))
        .await;
    assert_eq!(r.json()["count"], 0, "{}", r.text());
    // Bob leaves: the plumber stays with the household, out of Bob's reach.
    sqlx::query("DELETE FROM residence_members WHERE residence_id = $1 AND user_id = $2")
        .bind(home)
        .bind(bob)
        .execute(p)
        .await
        .unwrap();
    assert_eq!(c.get(&path, Some(&tb)).await.status, 404);
    assert_eq!(
        c.patch(&path, json!({"residence_id": bobs_own}), Some(&tb))
            .await
            .status,
        404
    );
    assert_eq!(c.delete(&path, None, Some(&tb)).await.status, 404);
    assert_eq!(c.get(&path, Some(&ta)).await.json()["phone"], "555-0100");
}

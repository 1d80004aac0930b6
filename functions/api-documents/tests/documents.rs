use api_documents::{app, Config, State};
use honeydue_testkit::fixtures::{add_member, residence, upload, user};
use honeydue_testkit::{TestClient, TestDb};
use serde_json::json;

async fn spawn() -> (TestDb, TestClient) {
    let db = TestDb::new().await;
    let state = State::new(Config::for_tests(&db.url, None), db.pool.clone());
    (db, TestClient::new(app(state)))
}

fn in_days(n: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(n)).to_string()
}

#[tokio::test]
async fn warranties_and_the_expiring_filter() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    let mk = |title: &str, t: &str, expiry: Option<String>| {
        json!({"residence_id": home, "title": title, "doc_type": t, "expiry_date": expiry, "start_date": "2020-01-01",
               "provider": "Acme", "claim_email": "Claims@Acme.example", "claim_url": "https://acme.example/claims", "amount": "499.99"})
    };
    let r = c
        .post(
            "/api/documents/",
            mk("Fridge warranty", "warranty", Some(in_days(10))),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let fridge = r.json()["id"].as_i64().unwrap();
    assert_eq!(r.json()["days_until_expiry"], 10);
    assert_eq!(r.json()["claim_email"], "claims@acme.example");
    c.post(
        "/api/documents/",
        mk("Roof warranty", "warranty", Some(in_days(200))),
        Some(&ta),
    )
    .await;
    c.post(
        "/api/documents/",
        mk("Old warranty", "warranty", Some(in_days(-5))),
        Some(&ta),
    )
    .await;
    c.post("/api/documents/", mk("Manual", "manual", None), Some(&ta))
        .await;

    let r = c.get("/api/documents/?expiring_within=30", Some(&ta)).await;
    assert_eq!(r.json()["count"], 1);
    assert_eq!(r.json()["results"][0]["id"], fridge);
    assert_eq!(
        c.get("/api/documents/?type=manual", Some(&ta)).await.json()["count"],
        1
    );
    assert_eq!(
        c.get(&format!("/api/documents/?residence={home}"), Some(&ta))
            .await
            .json()["count"],
        4
    );
    assert_eq!(
        c.get("/api/documents/?type=tattoo", Some(&ta)).await.status,
        422
    );
    assert_eq!(
        c.get("/api/documents/?expiring_within=-1", Some(&ta))
            .await
            .status,
        422
    );

    let r = c
        .patch(
            &format!("/api/documents/{fridge}/"),
            json!({"expiry_date": in_days(60), "amount": null}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["days_until_expiry"], 60);
    assert_eq!(r.json()["amount"], serde_json::Value::Null);
    let r = c
        .patch(
            &format!("/api/documents/{fridge}/"),
            json!({"expiry_date": "2019-01-01"}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 422, "expiry before the stored start date");
    assert_eq!(
        c.delete(&format!("/api/documents/{fridge}/"), None, Some(&ta))
            .await
            .status,
        204
    );
    assert_eq!(
        c.get(&format!("/api/documents/{fridge}/"), Some(&ta))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn validation_and_scope() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let (v, tv) = user(&db.pool, "v@example.com").await;
    let (_, tx) = user(&db.pool, "x@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    add_member(&db.pool, home, v, "viewer").await;
    let r = c.post("/api/documents/", json!({"residence_id": home, "doc_type": "tattoo", "claim_url": "javascript:alert(1)",
                                             "start_date": "2025-01-02", "expiry_date": "2025-01-01", "task_id": 424242}), Some(&ta)).await;
    assert_eq!(r.status, 422);
    for k in ["title", "doc_type", "claim_url", "expiry_date", "task_id"] {
        assert!(
            r.json()["error"]["fields"][k].is_array(),
            "{k}: {}",
            r.text()
        );
    }
    let id = c
        .post(
            "/api/documents/",
            json!({"residence_id": home, "title": "Policy", "doc_type": "insurance"}),
            Some(&ta),
        )
        .await
        .json()["id"]
        .as_i64()
        .unwrap();
    for (t, get, write) in [(&tx, 404, 404), (&tv, 200, 403)] {
        assert_eq!(
            c.get(&format!("/api/documents/{id}/"), Some(t))
                .await
                .status,
            get
        );
        assert_eq!(
            c.patch(
                &format!("/api/documents/{id}/"),
                json!({"title": "x"}),
                Some(t)
            )
            .await
            .status,
            write
        );
        assert_eq!(
            c.delete(&format!("/api/documents/{id}/"), None, Some(t))
                .await
                .status,
            write
        );
    }
    assert_eq!(
        c.post(
            "/api/documents/",
            json!({"residence_id": home, "title": "x", "doc_type": "other"}),
            Some(&tx)
        )
        .await
        .status,
        404
    );
    assert_eq!(
        c.post(
            "/api/documents/",
            json!({"residence_id": home, "title": "x", "doc_type": "other"}),
            Some(&tv)
        )
        .await
        .status,
        403
    );
    assert_eq!(c.get("/api/documents/", Some(&tx)).await.json()["count"], 0);
    assert_eq!(c.get("/api/documents/abc/", Some(&ta)).await.status, 404);
}

#[tokio::test]
async fn files_attach_only_from_the_callers_confirmed_uploads() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let (b, _) = user(&db.pool, "b@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    add_member(&db.pool, home, b, "member").await;
    let receipt = upload(&db.pool, a, Some(home), "document_file", "confirmed").await;
    let photo = upload(&db.pool, a, Some(home), "completion_photo", "confirmed").await;
    let bens = upload(&db.pool, b, Some(home), "document_file", "confirmed").await;
    let r = c
        .post("/api/documents/", json!({"residence_id": home, "title": "Receipt", "doc_type": "receipt", "upload_ids": [receipt]}), Some(&ta))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["file_ids"], json!([receipt]));
    let id = r.json()["id"].as_i64().unwrap();
    for bad in [photo, bens] {
        let r = c
            .patch(
                &format!("/api/documents/{id}/"),
                json!({"upload_ids": [bad]}),
                Some(&ta),
            )
            .await;
        assert_eq!(r.status, 422, "{bad}");
    }
    assert_eq!(
        c.get(&format!("/api/documents/{id}/"), Some(&ta))
            .await
            .json()["file_ids"],
        json!([receipt]),
        "a refused change changes nothing"
    );
    let r = c
        .patch(
            &format!("/api/documents/{id}/"),
            json!({"upload_ids": []}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.json()["file_ids"], json!([]));
}

#[tokio::test]
async fn another_households_task_contractor_and_files_are_refused() {
    let (db, c) = spawn().await;
    let p = &db.pool;
    let (ann, ta) = user(p, "ann@example.com").await;
    let (xena, _) = user(p, "xena@example.com").await;
    let home = residence(p, ann, "Home").await;
    let cabin = residence(p, ann, "Cabin").await;
    let theirs = residence(p, xena, "Elsewhere").await;
    let their_task =
        honeydue_testkit::fixtures::task(p, theirs, "Theirs", "2026-06-10", None, None).await;
    let cabin_task =
        honeydue_testkit::fixtures::task(p, cabin, "Cabin job", "2026-06-10", None, None).await;
    let their_contractor: i64 =
        sqlx::query_scalar("INSERT INTO contractors (owner_id, residence_id, name) VALUES ($1, $2, 'Theirs') RETURNING id")
            .bind(xena)
            .bind(theirs)
            .fetch_one(p)
            .await
            .unwrap();
    let their_file = upload(p, xena, Some(theirs), "document_file", "confirmed").await;
    let cabin_file = upload(p, ann, Some(cabin), "document_file", "confirmed").await;
    let base = json!({"residence_id": home, "title": "Manual", "doc_type": "manual"});
    let with = |k: &str, v: serde_json::Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (field, body) in [
        ("task_id", with("task_id", json!(their_task))),
        ("task_id", with("task_id", json!(cabin_task))),
        (
            "contractor_id",
            with("contractor_id", json!(their_contractor)),
        ),
        ("upload_ids", with("upload_ids", json!([their_file]))),
        ("upload_ids", with("upload_ids", json!([cabin_file]))),
    ] {
        let r = c.post("/api/documents/", body, Some(&ta)).await;
        assert_eq!(r.status, 422, "{field}: {}", r.text());
        assert!(
            r.json()["error"]["fields"][field].is_array(),
            "{field}: {}",
            r.text()
        );
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM documents")
        .fetch_one(p)
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing was created");
}

#[tokio::test]
async fn amounts_that_do_not_fit_numeric_12_2_are_422_not_500() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    // amount is NUMERIC(12,2): 10 digits before the point, 2 after.
    let bad = [
        json!("10000000000"),    // an 11th digit: numeric field overflow
        json!("9999999999.995"), // rounds up into the same overflow
        json!("1.999"),          // would be rounded silently
        json!(123456789012.5),   // a JSON number just as much
        json!(1e300),            // past what a decimal holds
        json!("NaN"),
        json!("-1"),
    ];
    for amount in &bad {
        let r = c
            .post(
                "/api/documents/",
                json!({"residence_id": home, "title": "Receipt", "doc_type": "receipt", "amount": amount}),
                Some(&ta),
            )
            .await;
        assert_eq!(r.status, 422, "{amount}: {}", r.text());
        assert!(
            r.json()["error"]["fields"]["amount"].is_array(),
            "{amount}: {}",
            r.text()
        );
    }
    let r = c
        .post(
            "/api/documents/",
            json!({"residence_id": home, "title": "Receipt", "doc_type": "receipt", "amount": "9999999999.99"}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 201, "the largest amount that fits: {}", r.text());
    assert_eq!(r.json()["amount"], "9999999999.99");
    let id = r.json()["id"].as_i64().unwrap();
    for amount in &bad {
        let r = c
            .patch(
                &format!("/api/documents/{id}/"),
                json!({"amount": amount}),
                Some(&ta),
            )
            .await;
        assert_eq!(r.status, 422, "{amount}: {}", r.text());
        assert!(r.json()["error"]["fields"]["amount"].is_array());
    }
    assert_eq!(
        c.get(&format!("/api/documents/{id}/"), Some(&ta))
            .await
            .json()["amount"],
        "9999999999.99",
        "unchanged"
    );
    let r = c
        .patch(
            &format!("/api/documents/{id}/"),
            json!({"amount": "12.500"}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 200, "trailing zeros fit: {}", r.text());
    assert_eq!(r.json()["amount"], "12.50");
}

/// The file ids of a response, in any order.
fn files_of(v: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = v["file_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn ids(files: &[uuid::Uuid]) -> Vec<String> {
    let mut ids: Vec<String> = files.iter().map(|f| f.to_string()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn members_add_and_remove_files_without_dropping_each_others() {
    let (db, c) = spawn().await;
    let p = &db.pool;
    let (ann, ta) = user(p, "ann@example.com").await;
    let (bob, tb) = user(p, "bob@example.com").await;
    let (vic, tv) = user(p, "vic@example.com").await;
    let home = residence(p, ann, "Home").await;
    add_member(p, home, bob, "member").await;
    add_member(p, home, vic, "viewer").await;
    let ann1 = upload(p, ann, Some(home), "document_file", "confirmed").await;
    let ann2 = upload(p, ann, Some(home), "document_file", "confirmed").await;
    let bob1 = upload(p, bob, Some(home), "document_file", "confirmed").await;
    let bob2 = upload(p, bob, Some(home), "document_file", "confirmed").await;
    let r = c
        .post("/api/documents/", json!({"residence_id": home, "title": "Boiler", "doc_type": "warranty", "upload_ids": [ann1]}), Some(&ta))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    let path = format!("/api/documents/{id}/");
    let view = |t: String| {
        let c = c.clone();
        let path = path.clone();
        async move { files_of(&c.get(&path, Some(&t)).await.json()) }
    };

    // Bob adds his file: Ann's stays, and both see both.
    let r = c
        .patch(&path, json!({"add_file_ids": [bob1]}), Some(&tb))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(files_of(&r.json()), ids(&[ann1, bob1]));
    assert_eq!(view(ta.clone()).await, ids(&[ann1, bob1]));

    // An older client's `upload_ids` listing only Bob's new file replaces
    // Bob's own files, never Ann's.
    let r = c
        .patch(&path, json!({"upload_ids": [bob2]}), Some(&tb))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(files_of(&r.json()), ids(&[ann1, bob2]));
    assert_eq!(view(ta.clone()).await, ids(&[ann1, bob2]));
    // ...and one that echoes the whole list back (Bob's file included) plus
    // Ann's new one works for Ann.
    let r = c
        .patch(&path, json!({"upload_ids": [ann1, bob2, ann2]}), Some(&ta))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(files_of(&r.json()), ids(&[ann1, ann2, bob2]));

    // Nobody attaches someone else's upload.
    let r = c
        .patch(&path, json!({"add_file_ids": [bob1]}), Some(&ta))
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.json()["error"]["fields"]["add_file_ids"].is_array());
    // A viewer changes nothing.
    let r = c
        .patch(&path, json!({"remove_file_ids": [ann1]}), Some(&tv))
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    // Mixing the old field with the new ones is ambiguous.
    let r = c
        .patch(
            &path,
            json!({"upload_ids": [ann1], "add_file_ids": [ann2]}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.json()["error"]["fields"]["upload_ids"].is_array());
    assert_eq!(
        view(tb.clone()).await,
        ids(&[ann1, ann2, bob2]),
        "refused changes change nothing"
    );

    // A member with write access removes a file, whoever attached it; only
    // the files named go, and an id the document does not have is ignored.
    let r = c
        .patch(
            &path,
            json!({"remove_file_ids": [ann2, uuid::Uuid::new_v4()]}),
            Some(&tb),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(files_of(&r.json()), ids(&[ann1, bob2]));
    assert_eq!(view(ta.clone()).await, ids(&[ann1, bob2]));
    assert_eq!(view(tv.clone()).await, ids(&[ann1, bob2]));

    // A PATCH without file fields leaves the files alone.
    let r = c
        .patch(&path, json!({"title": "Boiler (new)"}), Some(&tb))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(files_of(&r.json()), ids(&[ann1, bob2]));
}

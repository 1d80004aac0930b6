//! Warranty reminders: 30, 7 and 0 days before expiry, to every member,
//! warranties only, once each.

use cron_warranty_reminders::JOB;
use honeydue_jobs::run_event;
use honeydue_testkit::fixtures::{add_member, document, notifications, outbox, residence, user};
use honeydue_testkit::jobs::ctx;
use honeydue_testkit::TestDb;
use serde_json::json;

#[tokio::test]
async fn offsets_members_and_types() {
    let db = TestDb::new().await;
    let p = &db.pool;
    let (ann, _) = user(p, "ann@example.com").await;
    let (vic, _) = user(p, "vic@example.com").await;
    let (out, _) = user(p, "out@example.com").await;
    let home = residence(p, ann, "Home").await;
    add_member(p, home, vic, "viewer").await;
    let _elsewhere = residence(p, out, "Elsewhere").await;
    let d30 = document(p, home, "Dishwasher", "warranty", "2026-07-10").await;
    let d7 = document(p, home, "Roof", "warranty", "2026-06-17").await;
    let d0 = document(p, home, "Boiler", "warranty", "2026-06-10").await;
    document(p, home, "Fridge", "warranty", "2026-06-18").await; // 8 days: none
    document(p, home, "Home insurance", "insurance", "2026-06-10").await; // not a warranty
    let c = ctx(&db, &JOB).await;
    let ev = json!({"time": "2026-06-10T14:00:00Z"});
    run_event(&c, &JOB, &ev).await.unwrap();
    for u in [ann, vic] {
        let n = notifications(p, u, "warranty_expiring").await;
        assert_eq!(n.len(), 1);
        let mut ids: Vec<i64> = n[0].1["document_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        ids.sort();
        let mut want = vec![d30, d7, d0];
        want.sort();
        assert_eq!(ids, want);
    }
    assert!(notifications(p, out, "warranty_expiring").await.is_empty());
    let mail = outbox(p, vic, "warranty_expiring").await;
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].0, "3 warranties expire soon");
    assert!(
        mail[0]
            .1
            .contains("Boiler (Home · expires today, Wed 10 Jun)"),
        "{}",
        mail[0].1
    );
    assert!(mail[0]
        .1
        .contains("Dishwasher (Home · expires in 30 days, Fri 10 Jul)"));
    // Again, directly through the scan (no job_runs claim): the ledger holds.
    let again = honeydue_jobs::reminders::run(
        &c,
        honeydue_jobs::reminders::Kind::Warranty,
        "2026-06-10T14:00:00Z".parse().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(again["reminders"], 0);
    assert_eq!(outbox(p, ann, "warranty_expiring").await.len(), 1);
}

//! Notifications as every event writes them: the in-app rows, and with
//! them, in the same transaction, the push outbox rows their recipients'
//! devices and preferences call for (`push_outbox`, delivered by
//! `cron-push-dispatch`). One call per event, one row per recipient: a
//! retried event that writes nothing twice (its ledger, its idempotency
//! key) pushes nothing twice either.

use serde_json::Value;
use sqlx::PgConnection;

/// An in-app notification.
#[derive(Debug, Clone)]
pub struct Notice {
    /// Recipient.
    pub user_id: i64,
    /// Notification kind (`due_soon`, `overdue`, ...).
    pub kind: &'static str,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Data for the app (ids to open).
    pub data: Value,
}

/// Inserts `notices` in one statement, leaving out recipients who turned
/// the kind off (`kinds.<kind>.enabled`), and queues their pushes; returns
/// the new notifications' ids.
pub async fn notify(conn: &mut PgConnection, notices: &[Notice]) -> sqlx::Result<Vec<i64>> {
    if notices.is_empty() {
        return Ok(Vec::new());
    }
    let users: Vec<i64> = notices.iter().map(|n| n.user_id).collect();
    let kinds: Vec<String> = notices.iter().map(|n| n.kind.to_string()).collect();
    let titles: Vec<String> = notices.iter().map(|n| n.title.clone()).collect();
    let bodies: Vec<String> = notices.iter().map(|n| n.body.clone()).collect();
    let data: Vec<Value> = notices.iter().map(|n| n.data.clone()).collect();
    let ids = sqlx::query_scalar!(
        "INSERT INTO notifications (user_id, kind, title, body, data)
         SELECT n.* FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::jsonb[])
                         AS n (user_id, kind, title, body, data)
           LEFT JOIN notification_preferences p ON p.user_id = n.user_id
          WHERE COALESCE((p.kinds -> n.kind ->> 'enabled')::boolean, TRUE)
         RETURNING id",
        &users,
        &kinds,
        &titles,
        &bodies,
        &data
    )
    .fetch_all(&mut *conn)
    .await?;
    enqueue_push(conn, &ids).await?;
    Ok(ids)
}

/// Queues the push of each of `notifications` (rows just written in this
/// transaction) to its recipient's active devices, as their preferences
/// say (all push, the kind's `enabled` and `push`), due when their quiet
/// hours end (SQL `push_due_at`, in their time zone). The unique
/// (notification, device) pair makes a repeated call harmless. Returns how
/// many rows were queued.
pub async fn enqueue_push(conn: &mut PgConnection, notifications: &[i64]) -> sqlx::Result<u64> {
    if notifications.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query!(
        r#"INSERT INTO push_outbox (user_id, device_id, notification_id, kind, title, body, data, next_attempt_at)
           SELECT n.user_id, d.id, n.id, n.kind, n.title, n.body, n.data, push_due_at(n.user_id, now())
             FROM notifications n
             JOIN devices d ON d.user_id = n.user_id AND d.active
             LEFT JOIN notification_preferences p ON p.user_id = n.user_id
            WHERE n.id = ANY($1)
              AND COALESCE(p.push_enabled, TRUE)
              AND COALESCE((p.kinds -> n.kind ->> 'enabled')::boolean, TRUE)
              AND COALESCE((p.kinds -> n.kind ->> 'push')::boolean, TRUE)
           ON CONFLICT (notification_id, device_id) DO NOTHING"#,
        notifications
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

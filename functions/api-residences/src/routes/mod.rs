//! Handlers of `/api/residences/`, one module per resource: `residences`
//! (the homes themselves and their summary), `sharing` (share codes and
//! joining with one) and `members`. The route table and the residence as
//! clients see it, which several of them answer with, live here.

mod members;
mod residences;
mod sharing;

use chrono::{DateTime, NaiveDate, Utc};
use honeydue_core::{AppError, AppResult};
use honeydue_http::State;
use rust_decimal::Decimal;
use serde::Serialize;

use members::{leave, members, remove_member};
use residences::{create, detail, list, remove, summary, update};
use sharing::{create_share, get_share, join, revoke_share};

honeydue_http::routes! { State;
    GET "/api/residences/" => list, User, "Residences the caller belongs to";
    POST "/api/residences/" => create, User, "Create a residence (tier-limited)";
    POST "/api/residences/join/" => join, User, "Join a residence with a share code";
    GET "/api/residences/{id}/" => detail, User, "One residence";
    PATCH "/api/residences/{id}/" => update, User, "Change a residence (owner, member)";
    DELETE "/api/residences/{id}/" => remove, User, "Delete a residence (owner)";
    GET "/api/residences/{id}/share/" => get_share, User, "The active share code (owner)";
    POST "/api/residences/{id}/share/" => create_share, User, "Create or replace the share code (owner)";
    DELETE "/api/residences/{id}/share/" => revoke_share, User, "Revoke the share code (owner)";
    GET "/api/residences/{id}/users/" => members, User, "Members and their roles";
    DELETE "/api/residences/{id}/users/{user_id}/" => remove_member, User, "Remove a member (owner)";
    POST "/api/residences/{id}/leave/" => leave, User, "Leave a residence (not the owner)";
    GET "/api/residences/{id}/summary/" => summary, User, "Task counts per column and spend this year";
}

#[derive(Debug, Serialize)]
struct ResidenceOut {
    id: i64,
    name: String,
    residence_type_id: Option<i32>,
    street: String,
    city: String,
    state: String,
    postal_code: String,
    country: String,
    year_built: Option<i32>,
    sqft: Option<i32>,
    bedrooms: Option<i32>,
    bathrooms: Option<Decimal>,
    purchase_date: Option<NaiveDate>,
    notes: String,
    image_upload_id: Option<uuid::Uuid>,
    owner_id: i64,
    is_owner: bool,
    role: String,
    member_count: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

async fn load(db: &sqlx::PgPool, user_id: i64, id: i64) -> AppResult<ResidenceOut> {
    sqlx::query_as!(
        ResidenceOut,
        r#"SELECT r.id, r.name, r.residence_type_id, r.street, r.city, r.state, r.postal_code, r.country,
                  r.year_built, r.sqft, r.bedrooms, r.bathrooms, r.purchase_date, r.notes, r.image_upload_id,
                  r.owner_id, (r.owner_id = $1) AS "is_owner!", m.role,
                  (SELECT count(*) FROM residence_members x WHERE x.residence_id = r.id) AS "member_count!",
                  r.created_at, r.updated_at
             FROM residences r
             JOIN residence_members m ON m.residence_id = r.id AND m.user_id = $1
            WHERE r.id = $2"#,
        user_id,
        id
    )
    .fetch_optional(db)
    .await?
    .ok_or(AppError::NotFound("residence"))
}

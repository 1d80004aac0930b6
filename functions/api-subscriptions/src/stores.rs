//! Store purchases.
//!
//! * `verify/` (`{"platform": "ios", "signed_transaction": JWS}`): the
//!   transaction is verified (chain to the configured Apple root, bundle
//!   id, environment), recorded once (`subscription_events`), and the
//!   caller's subscription follows it: pro until `expiresDate` for a pro
//!   product, free once expired or revoked. One App Store subscription
//!   (original transaction) belongs to one account: another account gets
//!   409 `subscription_in_use`.
//! * `restore/` (`{"signed_transactions": [JWS, ...]}`): each subscription's
//!   latest transaction among those sent, as `verify/`.
//! * `webhook/apple/` (`{"signedPayload": JWS}`): App Store Server
//!   Notifications v2. The notification and its `signedTransactionInfo` are
//!   both verified; a `notificationUUID` seen before answers 200 and changes
//!   nothing; the transaction is applied to the account that owns its
//!   original transaction (none yet: recorded only). Renewals extend,
//!   expiry and refunds end (revocation date), because the transaction
//!   itself says so.
//! * Google Play (`{"platform": "android", "purchase_token": ...}` to
//!   `verify/`, `{"platform": "android", "purchase_tokens": [...]}` to
//!   `restore/`, real-time developer notifications to `webhook/google/`):
//!   the purchase as the Play Developer API describes it (`play`), applied
//!   the same way (one account per purchase token); 501 `not_configured`
//!   without `GOOGLE_PLAY_*`.
//!
//! Every signed transaction is a statement Apple made at its `signedDate`,
//! and a saved one stays correctly signed forever. So each subscription
//! keeps its latest known state (`store_transaction_state`), whoever owns
//! it, and a statement moves it only forward: one signed before the stored
//! one, or about an earlier transaction (`purchaseDate`) of the same
//! subscription, changes nothing (a notification is still acknowledged),
//! and a stored revocation sticks to its transaction. A refunded purchase
//! replayed to `verify/`, or a notification delivered late, never raises
//! the tier again; a genuine renewal after a refund (a new transaction,
//! signed later, not revoked) does.
//!
//! An admin-granted plan (`source = admin`, pro, unexpired) is never
//! lowered by a store event, but the store subscription is still recorded
//! as the account's (nobody else can claim it).

use axum::extract::State as S;
use axum::Extension;
use chrono::{DateTime, TimeZone, Utc};
use honeydue_core::config::{AppConfig, ConfigError};
use honeydue_core::{AppError, AppResult, Env};
use honeydue_http::{AuthUser, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::PgConnection;

use crate::appstore::Verifier;
use crate::play::{self, GooglePlay};
use crate::{plan_json, State};

/// App Store settings.
#[derive(Clone)]
pub struct Apple {
    /// Trusted roots.
    pub verifier: Verifier,
    /// `APPLE_BUNDLE_ID`: transactions of other apps are refused.
    pub bundle_id: String,
    /// `APPLE_PRO_PRODUCT_IDS`: the products that grant pro (required with
    /// the roots; a product not listed, or an empty list, grants nothing).
    pub pro_products: Vec<String>,
    /// `APPLE_ENVIRONMENTS`: accepted environments (default Production).
    pub environments: Vec<String>,
}

/// The configured stores.
#[derive(Clone, Default)]
pub struct Stores {
    /// The App Store, when `APPLE_ROOT_CERTS` is set.
    pub apple: Option<Apple>,
    /// Google Play, when `GOOGLE_PLAY_PACKAGE_NAME` is set.
    pub google: Option<GooglePlay>,
}

/// The items of a comma-separated setting.
pub(crate) fn list(v: Option<String>) -> Vec<String> {
    v.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Read at cold start from the environment the common settings come from:
/// unusable App Store settings (an App Store without its pro products would
/// grant pro for any product) are named with every other problem at init,
/// never a function that starts with purchases quietly switched off.
impl honeydue_http::Extra for Stores {
    fn read(env: &mut Env, _: &AppConfig) -> Option<Self> {
        Some(Stores::read(env))
    }
}

impl Stores {
    /// Reads the settings from `env`; `Err` names every bad variable.
    pub fn from_env(mut env: Env) -> Result<Self, ConfigError> {
        let stores = Self::read(&mut env);
        env.finish()?;
        Ok(stores)
    }

    /// Reads `APPLE_ROOT_CERTS` (PEM or base64 DER), `APPLE_BUNDLE_ID`,
    /// `APPLE_PRO_PRODUCT_IDS`, `APPLE_ENVIRONMENTS`, recording each
    /// problem in `env`. Unset root: no App Store (its routes answer
    /// `not_configured`) and nothing else is needed. With the root, the
    /// bundle id and the pro products are required: an App Store whose
    /// every product granted pro would sell pro for the price of anything.
    pub fn read(env: &mut Env) -> Self {
        Self {
            apple: Self::read_apple(env),
            google: GooglePlay::read(env),
        }
    }

    fn read_apple(env: &mut Env) -> Option<Apple> {
        let roots = env.optional::<String>("APPLE_ROOT_CERTS")?;
        let verifier = match Verifier::from_text(&roots) {
            Ok(v) => Some(v),
            Err(e) => {
                env.problem(format!("APPLE_ROOT_CERTS is malformed: {e}"));
                None
            }
        };
        let bundle_id = env.optional::<String>("APPLE_BUNDLE_ID");
        if bundle_id.is_none() {
            env.problem("APPLE_BUNDLE_ID is required with APPLE_ROOT_CERTS");
        }
        let pro_products = list(env.optional("APPLE_PRO_PRODUCT_IDS"));
        if pro_products.is_empty() {
            env.problem(
                "APPLE_PRO_PRODUCT_IDS is required with APPLE_ROOT_CERTS \
                 (comma-separated product ids that grant pro)",
            );
        }
        let mut environments = list(env.optional("APPLE_ENVIRONMENTS"));
        if environments.is_empty() {
            environments.push("Production".into());
        }
        match (verifier, bundle_id) {
            (Some(verifier), Some(bundle_id)) if !pro_products.is_empty() => Some(Apple {
                verifier,
                bundle_id,
                pro_products,
                environments,
            }),
            _ => None,
        }
    }
}

fn store_name(source: &str) -> &'static str {
    if source == "google" {
        "Google Play"
    } else {
        "App Store"
    }
}

fn not_configured(store: &str) -> AppError {
    AppError::NotConfigured(format!(
        "{store} purchases are not configured on this server."
    ))
}

/// A verified store statement about a subscription: an App Store
/// transaction, or a Google Play purchase as the Play Developer API
/// described it (`play`).
#[derive(Debug, Clone)]
pub struct Transaction {
    /// `apple` or `google`.
    pub source: &'static str,
    /// `transactionId` (Google: the latest order id).
    pub id: String,
    /// `originalTransactionId`: the subscription (Google: the purchase
    /// token).
    pub original_id: String,
    /// `productId`.
    pub product_id: String,
    /// `purchaseDate`: orders the transactions of one subscription.
    pub purchased_at: DateTime<Utc>,
    /// `signedDate`: when Apple made this statement (Google: when the API
    /// was asked); orders the statements about one subscription.
    pub signed_at: DateTime<Utc>,
    /// `expiresDate` (none: a purchase that does not expire).
    pub expires_at: Option<DateTime<Utc>>,
    /// `revocationDate`: refunded or revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When the plan ends: `revocationDate` if revoked, else `expiresDate`.
    pub ends_at: Option<DateTime<Utc>>,
    /// Whether the product grants pro.
    pub pro: bool,
    /// The decoded payload.
    pub payload: Value,
}

impl Transaction {
    /// Later transactions of a subscription first, then newer statements.
    fn recency(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        (self.purchased_at, self.signed_at)
    }
}

fn millis(v: &Value) -> Option<DateTime<Utc>> {
    v.as_i64()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
}

impl Apple {
    /// Verifies a signed transaction (`field` names it in errors).
    pub fn transaction(&self, jws: &str, field: &str) -> AppResult<Transaction> {
        let p = self
            .verifier
            .verify(jws, Utc::now())
            .map_err(|e| AppError::field(field, e.to_string()))?;
        let text = |k: &str| p[k].as_str().map(str::to_string);
        if text("bundleId").as_deref() != Some(self.bundle_id.as_str()) {
            return Err(AppError::field(
                field,
                "The transaction belongs to another app.",
            ));
        }
        let env = text("environment").unwrap_or_default();
        if !self.environments.contains(&env) {
            return Err(AppError::field(
                field,
                format!("Transactions from the {env:?} environment are not accepted here."),
            ));
        }
        let (Some(id), Some(original_id), Some(product_id)) = (
            text("transactionId"),
            text("originalTransactionId"),
            text("productId"),
        ) else {
            return Err(AppError::field(field, "The transaction lacks its ids."));
        };
        // Without its dates a statement cannot be put in order: refused
        // rather than guessed (Apple always sends both).
        let purchased_at = millis(&p["purchaseDate"]);
        let signed_at = millis(&p["signedDate"]);
        let (Some(purchased_at), Some(signed_at)) = (purchased_at, signed_at) else {
            return Err(AppError::field(
                field,
                "The transaction lacks its purchaseDate or signedDate.",
            ));
        };
        let expires_at = millis(&p["expiresDate"]);
        let revoked_at = millis(&p["revocationDate"]);
        let pro = self.pro_products.contains(&product_id);
        Ok(Transaction {
            source: "apple",
            id,
            original_id,
            product_id,
            purchased_at,
            signed_at,
            expires_at,
            revoked_at,
            ends_at: revoked_at.or(expires_at),
            pro,
            payload: p,
        })
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The event was not recorded before.
    pub fresh: bool,
    /// The statement became its subscription's latest known state (false:
    /// a notification seen before, or a statement older than the stored
    /// one; nothing changed).
    pub current: bool,
}

/// Records `tx` under `event_key`, makes it its subscription's latest known
/// state unless a newer statement is stored, and then applies that state to
/// `user_id` (or to the owner of its original transaction when `user_id` is
/// `None`).
pub async fn apply(
    conn: &mut PgConnection,
    user_id: Option<i64>,
    tx: &Transaction,
    event_key: &str,
    kind: &str,
    payload: &Value,
) -> AppResult<Applied> {
    // One original transaction at a time: two accounts verifying the same
    // new subscription at once get one success and one 409, never a 500;
    // two statements about one subscription are ordered one after the other.
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtext($2 || ':' || $1::text))",
        tx.original_id,
        tx.source
    )
    .execute(&mut *conn)
    .await?;
    let owner = sqlx::query_scalar!(
        "SELECT user_id FROM user_subscriptions WHERE original_transaction_id = $1",
        tx.original_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let (Some(u), Some(o)) = (user_id, owner) {
        if u != o {
            return Err(AppError::conflict(
                "subscription_in_use",
                format!(
                    "This {} subscription belongs to another account.",
                    store_name(tx.source)
                ),
            ));
        }
    }
    let target = user_id.or(owner);
    let fresh = sqlx::query_scalar!(
        "INSERT INTO subscription_events (source, event_key, user_id, kind, payload)
         VALUES ($5, $1, $2, $3, $4)
         ON CONFLICT (source, event_key) DO NOTHING RETURNING id",
        event_key,
        target,
        kind,
        payload,
        tx.source
    )
    .fetch_optional(&mut *conn)
    .await?
    .is_some();
    if !fresh && user_id.is_none() {
        // A notification seen before was applied (or found older) then.
        return Ok(Applied {
            fresh,
            current: false,
        });
    }
    // The statement replaces the stored state only when it is not older
    // (signedDate) and is about the same transaction or a later one
    // (purchaseDate): a saved statement, or re-signed history of earlier
    // periods, cannot roll the subscription back. A revocation stays with
    // its transaction whatever a later statement about it omits; a new
    // transaction (a renewal after a refund) carries its own.
    let state = sqlx::query!(
        "INSERT INTO store_transaction_state AS s
                (source, original_transaction_id, transaction_id, product_id, purchased_at, signed_at,
                 expires_at, revoked_at)
         VALUES ($8, $1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (source, original_transaction_id) DO UPDATE
            SET transaction_id = EXCLUDED.transaction_id, product_id = EXCLUDED.product_id,
                purchased_at = EXCLUDED.purchased_at, signed_at = EXCLUDED.signed_at,
                expires_at = EXCLUDED.expires_at,
                revoked_at = CASE WHEN s.transaction_id = EXCLUDED.transaction_id
                                  THEN COALESCE(s.revoked_at, EXCLUDED.revoked_at)
                                  ELSE EXCLUDED.revoked_at END,
                updated_at = now()
          WHERE EXCLUDED.signed_at >= s.signed_at
            AND (EXCLUDED.transaction_id = s.transaction_id OR EXCLUDED.purchased_at >= s.purchased_at)
         RETURNING expires_at, revoked_at",
        tx.original_id,
        tx.id,
        tx.product_id,
        tx.purchased_at,
        tx.signed_at,
        tx.expires_at,
        tx.revoked_at,
        tx.source
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(state) = state else {
        tracing::info!(
            original_transaction_id = tx.original_id,
            transaction_id = tx.id,
            signed_at = %tx.signed_at,
            kind,
            "store statement older than the subscription's latest; nothing changed"
        );
        return Ok(Applied {
            fresh,
            current: false,
        });
    };
    let applied = Applied {
        fresh,
        current: true,
    };
    let Some(user) = target else {
        tracing::info!(
            original_transaction_id = tx.original_id,
            kind,
            "store event for no known account; recorded"
        );
        return Ok(applied);
    };
    // A revoked transaction grants nothing, even before its revocation
    // date or with a pro product.
    let tier = if tx.pro && state.revoked_at.is_none() {
        "pro"
    } else {
        "free"
    };
    // Google: an entitlement that has ended (on hold, paused, expired)
    // ends the plan when Google was asked, whatever the last expiry said.
    let ends_at = state.revoked_at.or(match (tx.source, tx.pro) {
        ("google", false) => tx.ends_at,
        _ => state.expires_at,
    });
    sqlx::query!(
        "INSERT INTO user_subscriptions (user_id, tier, expires_at, source, original_transaction_id)
         VALUES ($1, $2, $3, $5, $4)
         ON CONFLICT (user_id) DO UPDATE
            SET (tier, expires_at, source) = (
                    SELECT CASE WHEN admin_pro THEN user_subscriptions.tier ELSE EXCLUDED.tier END,
                           CASE WHEN admin_pro THEN user_subscriptions.expires_at ELSE EXCLUDED.expires_at END,
                           CASE WHEN admin_pro THEN user_subscriptions.source ELSE EXCLUDED.source END
                      FROM (SELECT user_subscriptions.source = 'admin' AND user_subscriptions.tier = 'pro'
                                   AND (user_subscriptions.expires_at IS NULL OR user_subscriptions.expires_at > now())
                                   AS admin_pro) a),
                original_transaction_id = EXCLUDED.original_transaction_id, updated_at = now()",
        user,
        tier,
        ends_at,
        tx.original_id,
        tx.source
    )
    .execute(&mut *conn)
    .await?;
    tracing::info!(user_id = user, product = tx.product_id, tier, ends_at = ?ends_at, kind, source = tx.source, "subscription updated from the store");
    Ok(applied)
}

#[derive(Deserialize)]
pub(crate) struct VerifyIn {
    platform: String,
    signed_transaction: Option<String>,
    purchase_token: Option<String>,
}

pub(crate) async fn verify(
    S(state): S<State>,
    Extension(stores): Extension<Stores>,
    user: AuthUser,
    Json(b): Json<VerifyIn>,
) -> AppResult<Json<Value>> {
    match b.platform.as_str() {
        "ios" => {}
        "android" => {
            let play = stores
                .google
                .as_ref()
                .ok_or_else(|| not_configured("Google Play"))?;
            let token = b
                .purchase_token
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| AppError::field("purchase_token", "Required for android."))?;
            let tx = play.purchase(token.trim(), "purchase_token", false).await?;
            return record_for(&state, user.id, &[tx], "verify").await;
        }
        _ => return Err(AppError::field("platform", "Use ios or android.")),
    }
    let apple = stores
        .apple
        .as_ref()
        .ok_or_else(|| not_configured("App Store"))?;
    let jws = b
        .signed_transaction
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| AppError::field("signed_transaction", "Required for ios."))?;
    let tx = apple.transaction(&jws, "signed_transaction")?;
    record_for(&state, user.id, &[tx], "verify").await
}

#[derive(Deserialize)]
pub(crate) struct RestoreIn {
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    signed_transactions: Vec<String>,
    #[serde(default)]
    purchase_tokens: Vec<String>,
}

pub(crate) async fn restore(
    S(state): S<State>,
    Extension(stores): Extension<Stores>,
    user: AuthUser,
    Json(b): Json<RestoreIn>,
) -> AppResult<Json<Value>> {
    if b.platform.as_deref() == Some("android") {
        let play = stores
            .google
            .as_ref()
            .ok_or_else(|| not_configured("Google Play"))?;
        if b.purchase_tokens.is_empty() || b.purchase_tokens.len() > 50 {
            return Err(AppError::field(
                "purchase_tokens",
                "Send 1 to 50 purchase tokens.",
            ));
        }
        let mut txs = Vec::new();
        for (i, token) in b.purchase_tokens.iter().enumerate() {
            txs.push(
                play.purchase(token.trim(), &format!("purchase_tokens[{i}]"), false)
                    .await?,
            );
        }
        // Oldest end first, so the subscription that lasts longest decides.
        txs.sort_by_key(|t| t.ends_at);
        return record_for(&state, user.id, &txs, "restore").await;
    }
    if !matches!(b.platform.as_deref(), None | Some("ios")) {
        return Err(AppError::field("platform", "Use ios or android."));
    }
    let apple = stores
        .apple
        .as_ref()
        .ok_or_else(|| not_configured("App Store"))?;
    if b.signed_transactions.is_empty() || b.signed_transactions.len() > 50 {
        return Err(AppError::field(
            "signed_transactions",
            "Send 1 to 50 signed transactions.",
        ));
    }
    // Every one is verified; of each subscription only its latest
    // transaction (purchase, then statement) is applied: the earlier ones
    // describe periods it has replaced, and their statements, all signed
    // about now, are in no useful order.
    let mut txs: Vec<Transaction> = Vec::new();
    for (i, jws) in b.signed_transactions.iter().enumerate() {
        let tx = apple.transaction(jws, &format!("signed_transactions[{i}]"))?;
        let seen = txs.iter().position(|t| t.original_id == tx.original_id);
        match seen {
            Some(j) if tx.recency() > txs[j].recency() => txs[j] = tx,
            Some(_) => {}
            None => txs.push(tx),
        }
    }
    // Oldest end first, so the subscription that lasts longest decides the
    // plan.
    txs.sort_by_key(|t| t.ends_at);
    record_for(&state, user.id, &txs, "restore").await
}

/// Applies verified transactions a user sent (`kind`: verify, restore)
/// in one database transaction and answers with the resulting plan.
async fn record_for(
    state: &State,
    user_id: i64,
    txs: &[Transaction],
    kind: &str,
) -> AppResult<Json<Value>> {
    let mut db = state.db.begin().await?;
    for tx in txs {
        let key = format!("transaction:{}", tx.id);
        apply(&mut db, Some(user_id), tx, &key, kind, &tx.payload).await?;
    }
    let out = plan_json(&mut db, user_id).await?;
    db.commit().await?;
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppleNotification {
    signed_payload: String,
}

pub(crate) async fn apple_webhook(
    S(state): S<State>,
    Extension(stores): Extension<Stores>,
    Json(b): Json<AppleNotification>,
) -> AppResult<Json<Value>> {
    let apple = stores
        .apple
        .as_ref()
        .ok_or_else(|| not_configured("App Store"))?;
    let n = apple
        .verifier
        .verify(&b.signed_payload, Utc::now())
        .map_err(|e| AppError::field("signedPayload", e.to_string()))?;
    let uuid = n["notificationUUID"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            AppError::field("signedPayload", "The notification has no notificationUUID.")
        })?;
    let kind = n["notificationType"]
        .as_str()
        .unwrap_or("UNKNOWN")
        .to_string();
    let kind = match n["subtype"].as_str() {
        Some(sub) => format!("{kind}/{sub}"),
        None => kind,
    };
    if n["data"]["bundleId"].as_str() != Some(apple.bundle_id.as_str()) {
        return Err(AppError::field(
            "signedPayload",
            "The notification belongs to another app.",
        ));
    }
    let mut db = state.db.begin().await?;
    let applied = match n["data"]["signedTransactionInfo"].as_str() {
        // Ordered by the embedded transaction's signedDate, not the
        // notification's: the same clock as the statements verify/ and
        // restore/ receive (Apple signs both when it sends a notification,
        // and a retry resends them unchanged). An older one answers 200
        // (`applied: false`) so Apple stops retrying it.
        Some(jws) => {
            let tx = apple.transaction(jws, "signedPayload")?;
            apply(&mut db, None, &tx, uuid, &kind, &n).await?
        }
        // TEST notifications and summaries carry no transaction.
        None => record_event(&mut db, "apple", uuid, &kind, &n).await?,
    };
    db.commit().await?;
    Ok(webhook_answer(applied, &kind))
}

/// A notification that names no purchase: recorded once (`fresh` says
/// whether it was new), nothing applied.
async fn record_event(
    db: &mut PgConnection,
    source: &str,
    key: &str,
    kind: &str,
    payload: &Value,
) -> AppResult<Applied> {
    let fresh = sqlx::query_scalar!(
        "INSERT INTO subscription_events (source, event_key, kind, payload) VALUES ($4, $1, $2, $3)
         ON CONFLICT (source, event_key) DO NOTHING RETURNING id",
        key,
        kind,
        payload,
        source
    )
    .fetch_optional(db)
    .await?
    .is_some();
    Ok(Applied {
        fresh,
        current: false,
    })
}

/// What a store's webhook answers (200: the store stops retrying).
fn webhook_answer(applied: Applied, kind: &str) -> Json<Value> {
    Json(json!({
        "received": true,
        "duplicate": !applied.fresh,
        "applied": applied.current,
        "type": kind,
    }))
}

/// Google Play real-time developer notifications (Pub/Sub push). The push
/// is checked first (Google's OIDC token, `play::GooglePlay::check_push`);
/// its message id makes a redelivery change nothing; a subscription or
/// voided-purchase notification is applied as Google Play describes the
/// purchase now (the notification only names it), to the account that
/// owns it (none yet: recorded only).
pub(crate) async fn google_webhook(
    S(state): S<State>,
    Extension(stores): Extension<Stores>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> AppResult<Json<Value>> {
    let play = stores
        .google
        .as_ref()
        .ok_or_else(|| not_configured("Google Play"))?;
    play.check_push(headers.get("authorization").and_then(|v| v.to_str().ok()))
        .await?;
    let (message_id, n) = play::notification(&body)?;
    if n["packageName"].as_str() != Some(play.package.as_str()) {
        return Err(AppError::field(
            "message.data",
            "The notification belongs to another app.",
        ));
    }
    let (kind, token, revoked) = if let Some(s) = n.get("subscriptionNotification") {
        // 12 SUBSCRIPTION_REVOKED; the others are described by the lookup.
        let t = s["notificationType"].as_i64().unwrap_or(0);
        (
            format!("subscription/{t}"),
            s["purchaseToken"].as_str(),
            t == 12,
        )
    } else if let Some(v) = n.get("voidedPurchaseNotification") {
        ("voided".to_string(), v["purchaseToken"].as_str(), true)
    } else if n.get("testNotification").is_some() {
        ("test".to_string(), None, false)
    } else {
        ("other".to_string(), None, false)
    };
    let mut db = state.db.begin().await?;
    let applied = match token {
        Some(token) => {
            let tx = play.purchase(token, "message.data", revoked).await?;
            apply(&mut db, None, &tx, &message_id, &kind, &n).await?
        }
        None => record_event(&mut db, "google", &message_id, &kind, &n).await?,
    };
    db.commit().await?;
    Ok(webhook_answer(applied, &kind))
}

//! Handlers of `/api/admin/`, one module per resource: `session` (the
//! admin's sign-in), `stats`, `settings`, `users` (and their subscription
//! grants), `residences` (and their tasks), `lookups`, `outbox` (the email
//! and push outboxes and the onboarding emails) and `runs` (scheduled runs). The route
//! table and the search parameters of the user and residence lists live
//! here.

mod lookups;
mod outbox;
mod residences;
mod runs;
mod session;
mod settings;
mod stats;
mod users;

use honeydue_http::State;
use serde::Deserialize;

use lookups::{create_lookup, delete_lookup, lookups, update_lookup};
use outbox::{onboarding, outbox, push_outbox, resend};
use residences::{residences, tasks};
use runs::job_runs;
use session::{login, logout, me};
use settings::{settings, update_settings};
use stats::stats;
use users::{activate, deactivate, grant, user_detail, users};

honeydue_http::routes! { State;
    POST "/api/admin/login/" => login, Public, "Admin sign-in";
    POST "/api/admin/logout/" => logout, Admin, "Admin sign-out";
    GET "/api/admin/me/" => me, Admin, "The signed-in admin";
    GET "/api/admin/stats/" => stats, Admin, "Counts for the dashboard";
    GET "/api/admin/settings/" => settings, Admin, "Global settings";
    PATCH "/api/admin/settings/" => update_settings, Admin, "Change global settings (limits switch)";
    GET "/api/admin/users/" => users, Admin, "Users (?search=)";
    GET "/api/admin/users/{id}/" => user_detail, Admin, "One user";
    POST "/api/admin/users/{id}/deactivate/" => deactivate, Admin, "Deactivate a user (revokes sessions)";
    POST "/api/admin/users/{id}/activate/" => activate, Admin, "Reactivate a user";
    POST "/api/admin/users/{id}/subscription/" => grant, Admin, "Grant a tier or the free flag";
    GET "/api/admin/residences/" => residences, Admin, "Residences (?search=)";
    GET "/api/admin/tasks/" => tasks, Admin, "Tasks (?residence=)";
    GET "/api/admin/lookups/{kind}/" => lookups, Admin, "A lookup table";
    POST "/api/admin/lookups/{kind}/" => create_lookup, Admin, "Add a lookup";
    PATCH "/api/admin/lookups/{kind}/{id}/" => update_lookup, Admin, "Change a lookup";
    DELETE "/api/admin/lookups/{kind}/{id}/" => delete_lookup, Admin, "Delete a lookup";
    GET "/api/admin/email-outbox/" => outbox, Admin, "The email outbox (?status=)";
    POST "/api/admin/email-outbox/{id}/resend/" => resend, Admin, "Queue an email again";
    GET "/api/admin/push-outbox/" => push_outbox, Admin, "The push outbox (?status=, ?user=): each push's device, platform and delivery status";
    GET "/api/admin/onboarding-emails/" => onboarding, Admin, "Onboarding emails sent (?user=, ?step=), with their delivery status";
    GET "/api/admin/job-runs/" => job_runs, Admin, "Scheduled runs (?job=): slot, status, figures, error";
}

#[derive(Deserialize)]
struct SearchParams {
    search: Option<String>,
}

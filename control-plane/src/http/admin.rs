//! Settings, audit, users, public keys and health.

use super::AppState;
use super::error::ApiResult;
use super::extract::{Authorized, CanManage, Json, Query, StaffRead};
use super::wire::*;
use crate::domain::settings::Settings;
use crate::error::Error;
use crate::store::AuditQuery;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/settings", get(get_settings).put(put_settings))
        .route("/audit", get(audit))
        .route("/users", get(users).post(create_user))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/licensing-trust.json", get(trust))
        .route("/healthz", get(healthz))
}

async fn get_settings(
    State(state): State<AppState>,
    _: Authorized<StaffRead>,
) -> ApiResult<axum::Json<Settings>> {
    Ok(axum::Json(state.cp.settings().await?))
}

async fn put_settings(
    State(state): State<AppState>,
    auth: Authorized<CanManage>,
    Json(settings): Json<Settings>,
) -> ApiResult<axum::Json<Settings>> {
    Ok(axum::Json(
        state.cp.put_settings(&auth.actor, settings).await?,
    ))
}

/// The audit log. Staff with license.read may read the records of one target
/// (`?target=lic_...`); the whole log needs signing.manage.
async fn audit(
    State(state): State<AppState>,
    auth: Authorized<StaffRead>,
    Query(query): Query<AuditListQuery>,
) -> ApiResult<axum::Json<Value>> {
    // license.read covers the audit of one license (DESIGN.md "Roles"); every
    // other view of the log (settings, users, keys, the whole log) needs
    // signing.manage.
    let target = query.target.filter(|t| !t.is_empty());
    let one_license = target
        .as_deref()
        .is_some_and(|t| crate::domain::ids::LicenseId::parse(t).is_some());
    if !one_license
        && !auth
            .actor
            .allows(crate::domain::user::Permission::SigningManage)
    {
        return Err(Error::Forbidden.into());
    }
    let time = |text: Option<String>, name: &str| -> Result<_, Error> {
        match text.as_deref() {
            None | Some("") => Ok(None),
            Some(t) => parse_time(t)
                .map(Some)
                .ok_or_else(|| Error::bad_request(format!("{name} must be an RFC 3339 time"))),
        }
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::bad_request("limit must be between 1 and 1000").into());
    }
    let page = state
        .cp
        .audit(&AuditQuery {
            target,
            action: query.action.filter(|a| !a.is_empty()),
            from: time(query.from, "from")?,
            until: time(query.until, "until")?,
            after: query.cursor,
            limit,
        })
        .await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|r| {
            json!({
                "seq": r.seq, "at": WireTime(r.at), "action": r.event.action, "target": r.event.target,
                "actor_id": r.event.actor_id, "actor_name": r.event.actor_name, "ip": r.event.ip,
                "metadata": r.event.metadata, "prev_hash": r.prev_hash, "hash": r.hash,
            })
        })
        .collect();
    Ok(axum::Json(
        json!({"items": items, "next_cursor": page.next}),
    ))
}

async fn users(
    State(state): State<AppState>,
    _: Authorized<CanManage>,
) -> ApiResult<axum::Json<Vec<UserView>>> {
    Ok(axum::Json(
        state.cp.users().await?.iter().map(UserView::from).collect(),
    ))
}

async fn create_user(
    State(state): State<AppState>,
    auth: Authorized<CanManage>,
    Json(body): Json<CreateUserBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let (user, token) = state
        .cp
        .create_user(&auth.actor, &body.name, body.role, body.customer)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "user": UserView::from(&user),
            "token": token.expose(),
            "note": "the API token is shown once; store it now",
        })),
    ))
}

async fn jwks(State(state): State<AppState>) -> ApiResult<axum::Json<keys::Jwks>> {
    Ok(axum::Json(state.cp.jwks().await?))
}

async fn trust(State(state): State<AppState>) -> ApiResult<axum::Json<keys::TrustFile>> {
    Ok(axum::Json(state.cp.trust_file().await?))
}

async fn healthz(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    state.cp.store().health().await?;
    Ok(axum::Json(json!({"status": "ok"})))
}

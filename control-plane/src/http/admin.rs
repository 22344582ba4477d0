//! Settings, audit, users, public keys and health.

use super::AppState;
use super::error::{ApiResult, ErrorBody};
use super::extract::{Authorized, CanManage, Json, Path, Query, StaffRead};
use super::wire::*;
use crate::domain::settings::Settings;
use crate::error::Error;
use crate::store::AuditQuery;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// One `routes!` per path: `OpenApiRouter` registers each handler in the
/// router and in the OpenAPI document at once.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(audit))
        .routes(routes!(users, create_user))
        .routes(routes!(set_password))
        .routes(routes!(jwks))
        .routes(routes!(trust))
        .routes(routes!(healthz))
}

/// The fleet-wide settings.
#[utoipa::path(
    get, path = "/settings", tag = "settings",
    security(("api_token" = [])),
    responses(
        (status = 200, description = "The settings", body = Settings),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Not staff with license.read", body = ErrorBody),
    )
)]
async fn get_settings(
    State(state): State<AppState>,
    _: Authorized<StaffRead>,
) -> ApiResult<axum::Json<Settings>> {
    Ok(axum::Json(state.cp.settings().await?))
}

/// Replaces the fleet-wide settings (audited as settings.update).
#[utoipa::path(
    put, path = "/settings", tag = "settings",
    security(("api_token" = [])),
    request_body = Settings,
    responses(
        (status = 200, description = "The new settings", body = Settings),
        (status = 400, description = "Invalid or out-of-bounds settings", body = ErrorBody),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks signing.manage", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    )
)]
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
#[utoipa::path(
    get, path = "/audit", tag = "audit",
    security(("api_token" = [])),
    params(AuditListQuery),
    responses(
        (status = 200, description = "A page of audit records, oldest first", body = AuditPage),
        (status = 400, description = "Invalid time, cursor or limit", body = ErrorBody),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks license.read, or signing.manage beyond one license", body = ErrorBody),
    )
)]
async fn audit(
    State(state): State<AppState>,
    auth: Authorized<StaffRead>,
    Query(query): Query<AuditListQuery>,
) -> ApiResult<axum::Json<AuditPage>> {
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
            newest_first: false,
        })
        .await?;
    Ok(axum::Json(AuditPage {
        items: page.items.iter().map(AuditItem::from).collect(),
        next_cursor: page.next,
    }))
}

/// Every user.
#[utoipa::path(
    get, path = "/users", tag = "users",
    security(("api_token" = [])),
    responses(
        (status = 200, description = "The users", body = Vec<UserView>),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks signing.manage", body = ErrorBody),
    )
)]
async fn users(
    State(state): State<AppState>,
    _: Authorized<CanManage>,
) -> ApiResult<axum::Json<Vec<UserView>>> {
    Ok(axum::Json(
        state.cp.users().await?.iter().map(UserView::from).collect(),
    ))
}

/// Creates a user; its API token is shown once.
#[utoipa::path(
    post, path = "/users", tag = "users",
    security(("api_token" = [])),
    request_body = CreateUserBody,
    responses(
        (status = 201, description = "Created (user.create)", body = CreatedUser),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks signing.manage", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    )
)]
async fn create_user(
    State(state): State<AppState>,
    auth: Authorized<CanManage>,
    Json(body): Json<CreateUserBody>,
) -> ApiResult<(StatusCode, axum::Json<CreatedUser>)> {
    let (user, token) = state
        .cp
        .create_user(
            &auth.actor,
            &body.name,
            body.role,
            body.customer,
            body.password,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedUser {
            user: UserView::from(&user),
            token: token.expose().to_owned(),
            note: "the API token is shown once; store it now".to_owned(),
        }),
    ))
}

/// Sets a user's console password (audited as user.password_set). It also
/// lifts a sign-in lockout and ends the user's console sessions.
#[utoipa::path(
    put, path = "/users/{id}/password", tag = "users",
    security(("api_token" = [])),
    params(("id" = String, Path, description = "The user id (usr_...)")),
    request_body = PasswordBody,
    responses(
        (status = 200, description = "Set (user.password_set)", body = UserView),
        (status = 400, description = "Invalid password or id", body = ErrorBody),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks signing.manage", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    )
)]
async fn set_password(
    State(state): State<AppState>,
    auth: Authorized<CanManage>,
    Path(id): Path<String>,
    Json(body): Json<PasswordBody>,
) -> ApiResult<axum::Json<UserView>> {
    let id = crate::domain::ids::UserId::parse(&id)
        .ok_or_else(|| Error::bad_request("not a user id"))?;
    let user = state
        .cp
        .set_password(&auth.actor, &id, body.password)
        .await?;
    Ok(axum::Json(UserView::from(&user)))
}

/// The public keys (roots and signing keys not revoked) as a JWKS, so any JOSE
/// library verifies a lease (DESIGN.md "Public verification").
#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "public",
    responses(
        (status = 200, description = "A JSON Web Key Set (RFC 7517)", body = Object),
    )
)]
async fn jwks(State(state): State<AppState>) -> ApiResult<axum::Json<keys::Jwks>> {
    Ok(axum::Json(state.cp.jwks().await?))
}

/// The trust file appliances pin: the root keys and the revoked kids.
#[utoipa::path(
    get, path = "/.well-known/licensing-trust.json", tag = "public",
    responses(
        (status = 200, description = "The trust file (docs/token-format.md)", body = Object),
    )
)]
async fn trust(State(state): State<AppState>) -> ApiResult<axum::Json<keys::TrustFile>> {
    Ok(axum::Json(state.cp.trust_file().await?))
}

/// Liveness: the process answers and its store can still make writes durable.
#[utoipa::path(
    get, path = "/healthz", tag = "public",
    responses(
        (status = 200, description = "Alive", body = StatusBody, example = json!({"status": "ok"})),
        (status = 500, description = "The store cannot make writes durable", body = ErrorBody),
    )
)]
async fn healthz(State(state): State<AppState>) -> ApiResult<axum::Json<StatusBody>> {
    state.cp.store().health().await?;
    Ok(axum::Json(StatusBody {
        status: "ok".to_owned(),
    }))
}

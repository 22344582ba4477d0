//! `/licenses`: issue, list, show, the support actions, reveal, sweep, and the
//! appliance endpoints (activate, heartbeat).

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{
    Authorized, CanIssue, CanRead, CanReveal, CanRevoke, Json, OptionalJson, Path, Query, bearer,
    client_ip,
};
use super::wire::*;
use crate::domain::ids::LicenseId;
use crate::domain::license::Status;
use crate::domain::user::Role;
use crate::error::Error;
use crate::service::{DeviceOutcome, IssueRequest, Rebind};
use crate::store::LicenseQuery;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keys::DenialReason;
use keys::proto::DeviceRequest;
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/licenses", get(list).post(issue))
        .route("/licenses/health/sweep", post(sweep))
        .route("/licenses/{id}", get(show))
        .route("/licenses/{id}/activate", post(device))
        .route("/licenses/{id}/heartbeat", post(device))
        .route(
            "/licenses/{id}/offline-activation",
            post(offline_activation),
        )
        .route("/licenses/{id}/revoke", post(revoke))
        .route("/licenses/{id}/reinstate", post(reinstate))
        .route("/licenses/{id}/rebind", post(rebind))
        .route("/licenses/{id}/regenerate", post(regenerate))
        .route("/licenses/{id}/reveal", post(reveal))
        .route("/licenses/{id}/suspend", post(suspend))
        .route("/licenses/{id}/restore", post(restore))
}

fn license_id(text: &str) -> ApiResult<LicenseId> {
    LicenseId::parse(text).ok_or_else(|| Error::NotFound("license").into())
}

fn view(license: &crate::domain::license::License, role: Option<Role>) -> Value {
    if role == Some(Role::Customer) {
        json!(CustomerLicenseView::from(license))
    } else {
        json!(LicenseView::from(license))
    }
}

async fn issue(
    State(state): State<AppState>,
    auth: Authorized<CanIssue>,
    Json(body): Json<IssueBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let (license, key) = state
        .cp
        .issue(
            &auth.actor,
            IssueRequest {
                customer: body.customer,
                entitlements: body.entitlements,
                subscription_ends_at: body.subscription_ends_at.map(|t| t.0),
                policy: body.policy,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "license": LicenseView::from(&license),
            "license_key": key.expose(),
            "note": "the license key is shown once; store it now",
        })),
    ))
}

async fn list(
    State(state): State<AppState>,
    auth: Authorized<CanRead>,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<Value>> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(Status::parse(text).ok_or_else(|| {
            Error::bad_request(format!(
                "unknown status {text:?} (issued, active, grace, expired, suspended)"
            ))
        })?),
    };
    let after = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(text) => {
            Some(LicenseId::parse(text).ok_or_else(|| Error::bad_request("invalid cursor"))?)
        }
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(Error::bad_request("limit must be between 1 and 500").into());
    }
    let page = state
        .cp
        .licenses(
            &auth.actor,
            LicenseQuery {
                status,
                customer: query.customer.filter(|c| !c.is_empty()),
                after,
                limit,
            },
        )
        .await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|l| view(l, auth.actor.role))
        .collect();
    Ok(axum::Json(
        json!({"items": items, "next_cursor": page.next}),
    ))
}

async fn show(
    State(state): State<AppState>,
    auth: Authorized<CanRead>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let id = license_id(&id)?;
    let license = state.cp.license(&auth.actor, &id).await?;
    Ok(axum::Json(view(&license, auth.actor.role)))
}

async fn revoke(
    State(state): State<AppState>,
    auth: Authorized<CanRevoke>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<RevokeBody>,
) -> ApiResult<axum::Json<LicenseView>> {
    let license = state
        .cp
        .revoke(&auth.actor, &license_id(&id)?, body.grace_days)
        .await?;
    Ok(axum::Json(LicenseView::from(&license)))
}

async fn reinstate(
    State(state): State<AppState>,
    auth: Authorized<CanRevoke>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<LicenseView>> {
    let license = state.cp.reinstate(&auth.actor, &license_id(&id)?).await?;
    Ok(axum::Json(LicenseView::from(&license)))
}

async fn suspend(
    State(state): State<AppState>,
    auth: Authorized<CanRevoke>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<LicenseView>> {
    let license = state.cp.suspend(&auth.actor, &license_id(&id)?).await?;
    Ok(axum::Json(LicenseView::from(&license)))
}

async fn restore(
    State(state): State<AppState>,
    auth: Authorized<CanRevoke>,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<RestoreBody>,
) -> ApiResult<axum::Json<LicenseView>> {
    let license = state
        .cp
        .restore(
            &auth.actor,
            &license_id(&id)?,
            body.subscription_ends_at.map(|t| t.0),
        )
        .await?;
    Ok(axum::Json(LicenseView::from(&license)))
}

async fn rebind(
    State(state): State<AppState>,
    auth: Authorized<CanRevoke>,
    Path(id): Path<String>,
    Json(body): Json<RebindBody>,
) -> ApiResult<axum::Json<LicenseView>> {
    let to = match (body.fingerprint, body.unbind) {
        (Some(components), false) => Rebind::To(components),
        (None, true) => Rebind::Unbind,
        _ => {
            return Err(
                Error::bad_request("give exactly one of fingerprint or unbind: true").into(),
            );
        }
    };
    let license = state.cp.rebind(&auth.actor, &license_id(&id)?, to).await?;
    Ok(axum::Json(LicenseView::from(&license)))
}

async fn regenerate(
    State(state): State<AppState>,
    auth: Authorized<CanRevoke>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let (license, key) = state.cp.regenerate(&auth.actor, &license_id(&id)?).await?;
    Ok(axum::Json(json!({
        "license": LicenseView::from(&license),
        "license_key": key.expose(),
        "note": "the new license key is shown once; the old one no longer works",
    })))
}

async fn reveal(
    State(state): State<AppState>,
    auth: Authorized<CanReveal>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let key = state.cp.reveal(&auth.actor, &license_id(&id)?).await?;
    Ok(axum::Json(json!({"license_key": key.expose()})))
}

async fn sweep(
    State(state): State<AppState>,
    auth: Authorized<CanRevoke>,
) -> ApiResult<axum::Json<Value>> {
    let report = state.cp.sweep(&auth.actor).await?;
    Ok(axum::Json(json!(report)))
}

/// Air-gapped activation: the operator posts the box's activation request and
/// gets the response file to carry back (license.issue).
async fn offline_activation(
    State(state): State<AppState>,
    auth: Authorized<CanIssue>,
    Path(id): Path<String>,
    Json(request): Json<DeviceRequest>,
) -> ApiResult<Response> {
    let outcome = state
        .cp
        .offline_activation(&auth.actor, &license_id(&id)?, &request)
        .await?;
    Ok(device_response(outcome))
}

/// The appliance's credential: its license key as a bearer token, and its address.
#[derive(Debug)]
pub struct ApplianceCaller {
    key: String,
    ip: String,
}

impl FromRequestParts<AppState> for ApplianceCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        let key = bearer(parts)
            .ok_or(ApiError::from(Error::Unauthenticated))?
            .to_owned();
        Ok(ApplianceCaller {
            key,
            ip: client_ip(parts),
        })
    }
}

/// Activation and heartbeat share one handler: the request body says which.
async fn device(
    State(state): State<AppState>,
    caller: ApplianceCaller,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    Json(request): Json<DeviceRequest>,
) -> ApiResult<Response> {
    let id = LicenseId::parse(&id).ok_or(Error::Unauthenticated)?;
    let expected = if uri.path().ends_with("/activate") {
        keys::proto::RequestKind::Activate
    } else {
        keys::proto::RequestKind::Heartbeat
    };
    if request.kind != expected {
        return Err(Error::bad_request("the request kind does not match the endpoint").into());
    }
    let outcome = state
        .cp
        .device_request(&id, &caller.key, &request, &caller.ip)
        .await?;
    Ok(device_response(outcome))
}

/// A lease (200) or a signed denial (401 for `invalid_key`, 403 otherwise).
fn device_response(outcome: DeviceOutcome) -> Response {
    match outcome {
        DeviceOutcome::Lease(r) => axum::Json(LeaseResponse {
            lease: r.token,
            chain: r.chain,
            revoked_kids: r.revoked_kids,
            heartbeat_interval_secs: r.heartbeat_interval_secs,
        })
        .into_response(),
        DeviceOutcome::Denied { reason, response } => {
            let status = if reason == DenialReason::InvalidKey {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            };
            (
                status,
                axum::Json(DenialResponse {
                    error: reason.as_str().to_owned(),
                    message: format!("license denied: {}", reason.as_str()),
                    denial: response.token,
                    chain: response.chain,
                    revoked_kids: response.revoked_kids,
                }),
            )
                .into_response()
        }
    }
}

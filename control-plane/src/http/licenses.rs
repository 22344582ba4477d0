//! `/licenses`: issue, list, show, the support actions, reveal, sweep, and the
//! appliance endpoints (activate, heartbeat).

use super::AppState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{
    Authorized, CanIssue, CanRead, CanReveal, CanRevoke, Json, OptionalJson, Path, Query, bearer,
    client_ip,
};
use super::wire::*;
use crate::domain::ids::LicenseId;
use crate::domain::license::Status;
use crate::error::Error;
use crate::metrics::{DeviceCall, DeviceResult};
use crate::service::{DeviceOutcome, IssueRequest, Rebind, SweepReport};
use crate::store::LicenseQuery;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use keys::DenialReason;
use keys::proto::{DeviceRequest, RequestKind};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// One `routes!` per path: `OpenApiRouter` registers each handler in the
/// router and in the OpenAPI document at once.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, issue))
        .routes(routes!(sweep))
        .routes(routes!(show))
        .routes(routes!(activate))
        .routes(routes!(heartbeat))
        .routes(routes!(offline_activation))
        .routes(routes!(revoke))
        .routes(routes!(reinstate))
        .routes(routes!(rebind))
        .routes(routes!(regenerate))
        .routes(routes!(reveal))
        .routes(routes!(suspend))
        .routes(routes!(restore))
}

fn license_id(text: &str) -> ApiResult<LicenseId> {
    LicenseId::parse(text).ok_or_else(|| Error::NotFound("license").into())
}

/// Issues a license; its key is shown once.
#[utoipa::path(
    post, path = "/licenses", tag = "licenses",
    security(("api_token" = [])),
    request_body = IssueBody,
    responses(
        (status = 201, description = "Issued (license.issue)", body = LicenseWithKey),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks license.issue", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    )
)]
async fn issue(
    State(state): State<AppState>,
    auth: Authorized<CanIssue>,
    Json(body): Json<IssueBody>,
) -> ApiResult<(StatusCode, axum::Json<LicenseWithKey>)> {
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
        axum::Json(LicenseWithKey {
            license: LicenseView::from(&license),
            license_key: key.expose().to_owned(),
            note: "the license key is shown once; store it now".to_owned(),
        }),
    ))
}

/// Lists licenses, by id; a customer login sees only its own, in the customer view.
#[utoipa::path(
    get, path = "/licenses", tag = "licenses",
    security(("api_token" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of licenses", body = LicensePage),
        (status = 400, description = "Invalid filter, cursor or limit", body = ErrorBody),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks license.read", body = ErrorBody),
    )
)]
async fn list(
    State(state): State<AppState>,
    auth: Authorized<CanRead>,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<LicensePage>> {
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
    Ok(axum::Json(LicensePage {
        items: page
            .items
            .iter()
            .map(|l| LicenseItem::of(l, auth.actor.role))
            .collect(),
        next_cursor: page.next.map(|id| id.to_string()),
    }))
}

/// One license; a customer login sees only its own, in the customer view.
#[utoipa::path(
    get, path = "/licenses/{id}", tag = "licenses",
    security(("api_token" = [])),
    params(("id" = String, Path, description = "The license id (`lic_...`)")),
    responses(
        (status = 200, description = "The license", body = LicenseItem),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks license.read", body = ErrorBody),
        (status = 404, description = "No such license (or not the customer's)", body = ErrorBody),
    )
)]
async fn show(
    State(state): State<AppState>,
    auth: Authorized<CanRead>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<LicenseItem>> {
    let id = license_id(&id)?;
    let license = state.cp.license(&auth.actor, &id).await?;
    Ok(axum::Json(LicenseItem::of(&license, auth.actor.role)))
}

/// Revokes with grace days (the default grace when the body is empty or omits them): active -> grace, or -> expired with 0.
#[utoipa::path(
    post, path = "/licenses/{id}/revoke", tag = "licenses",
    security(("api_token" = [])),
    params(("id" = String, Path, description = "The license id (`lic_...`)")),
    request_body(content = Option<RevokeBody>, description = "Optional"),
    responses(
        (status = 200, description = "The license after the action", body = LicenseView),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks license.revoke", body = ErrorBody),
        (status = 404, description = "No such license", body = ErrorBody),
        (status = 409, description = "Not allowed in the license's state", body = ErrorBody),
    )
)]
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

/// Reinstates a license in grace or expired: -> active.
#[utoipa::path(
    post, path = "/licenses/{id}/reinstate", tag = "licenses",
    security(("api_token" = [])),
    params(("id" = String, Path, description = "The license id (`lic_...`)")),
    responses(
        (status = 200, description = "The license after the action", body = LicenseView),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks license.revoke", body = ErrorBody),
        (status = 404, description = "No such license", body = ErrorBody),
        (status = 409, description = "Not allowed in the license's state", body = ErrorBody),
    )
)]
async fn reinstate(
    State(state): State<AppState>,
    auth: Authorized<CanRevoke>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<LicenseView>> {
    let license = state.cp.reinstate(&auth.actor, &license_id(&id)?).await?;
    Ok(axum::Json(LicenseView::from(&license)))
}

/// Suspends a license whose subscription lapsed: -> suspended.
#[utoipa::path(
    post, path = "/licenses/{id}/suspend", tag = "licenses",
    security(("api_token" = [])),
    params(("id" = String, Path, description = "The license id (`lic_...`)")),
    responses(
        (status = 200, description = "The license after the action", body = LicenseView),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks license.revoke", body = ErrorBody),
        (status = 404, description = "No such license", body = ErrorBody),
        (status = 409, description = "Not allowed in the license's state", body = ErrorBody),
    )
)]
async fn suspend(
    State(state): State<AppState>,
    auth: Authorized<CanRevoke>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<LicenseView>> {
    let license = state.cp.suspend(&auth.actor, &license_id(&id)?).await?;
    Ok(axum::Json(LicenseView::from(&license)))
}

/// Restores a suspended license (optionally with a new subscription end): -> active.
#[utoipa::path(
    post, path = "/licenses/{id}/restore", tag = "licenses",
    security(("api_token" = [])),
    params(("id" = String, Path, description = "The license id (`lic_...`)")),
    request_body(content = Option<RestoreBody>, description = "Optional"),
    responses(
        (status = 200, description = "The license after the action", body = LicenseView),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks license.revoke", body = ErrorBody),
        (status = 404, description = "No such license", body = ErrorBody),
        (status = 409, description = "Not allowed in the license's state", body = ErrorBody),
    )
)]
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

/// Moves the binding to new hardware (or unbinds); the old box is denied `rebound`.
#[utoipa::path(
    post, path = "/licenses/{id}/rebind", tag = "licenses",
    security(("api_token" = [])),
    params(("id" = String, Path, description = "The license id (`lic_...`)")),
    request_body = RebindBody,
    responses(
        (status = 200, description = "The license after the action", body = LicenseView),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks license.revoke", body = ErrorBody),
        (status = 404, description = "No such license", body = ErrorBody),
        (status = 409, description = "Not allowed in the license's state", body = ErrorBody),
    )
)]
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

/// Replaces a leaked license key; the new key is shown once and the old one is
/// answered 401 with a signed `invalid_key` denial at once.
#[utoipa::path(
    post, path = "/licenses/{id}/regenerate", tag = "licenses",
    security(("api_token" = [])),
    params(("id" = String, Path, description = "The license id (`lic_...`)")),
    responses(
        (status = 200, description = "The license and its new key", body = LicenseWithKey),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks license.revoke", body = ErrorBody),
        (status = 404, description = "No such license", body = ErrorBody),
        (status = 409, description = "A concurrent change won", body = ErrorBody),
    )
)]
async fn regenerate(
    State(state): State<AppState>,
    auth: Authorized<CanRevoke>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<LicenseWithKey>> {
    let (license, key) = state.cp.regenerate(&auth.actor, &license_id(&id)?).await?;
    Ok(axum::Json(LicenseWithKey {
        license: LicenseView::from(&license),
        license_key: key.expose().to_owned(),
        note: "the new license key is shown once; the old one no longer works".to_owned(),
    }))
}

/// Shows a license key in plaintext (audited as license.reveal).
#[utoipa::path(
    post, path = "/licenses/{id}/reveal", tag = "licenses",
    security(("api_token" = [])),
    params(("id" = String, Path, description = "The license id (`lic_...`)")),
    responses(
        (status = 200, description = "The license key", body = RevealedKey),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks license.reveal", body = ErrorBody),
        (status = 404, description = "No such license", body = ErrorBody),
    )
)]
async fn reveal(
    State(state): State<AppState>,
    auth: Authorized<CanReveal>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<RevealedKey>> {
    let key = state.cp.reveal(&auth.actor, &license_id(&id)?).await?;
    Ok(axum::Json(RevealedKey {
        license_key: key.expose().to_owned(),
    }))
}

/// Runs the health sweep now (it also runs on a timer): grace past its end
/// expires, a subscription past its end suspends. Idempotent.
#[utoipa::path(
    post, path = "/licenses/health/sweep", tag = "licenses",
    security(("api_token" = [])),
    responses(
        (status = 200, description = "What the sweep did", body = SweepReport),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks license.revoke", body = ErrorBody),
    )
)]
async fn sweep(
    State(state): State<AppState>,
    auth: Authorized<CanRevoke>,
) -> ApiResult<axum::Json<SweepReport>> {
    Ok(axum::Json(state.cp.sweep(&auth.actor).await?))
}

/// Air-gapped activation: the operator posts the box's activation request and
/// gets the response file to carry back (license.issue).
#[utoipa::path(
    post, path = "/licenses/{id}/offline-activation", tag = "licenses",
    security(("api_token" = [])),
    params(("id" = String, Path, description = "The license id (`lic_...`)")),
    request_body = DeviceRequestSchema,
    responses(
        (status = 200, description = "A lease with the air-gap window", body = LeaseResponseSchema),
        (status = 400, description = "Not a valid activation request for this license", body = ErrorBody),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks license.issue (error), or a signed denial", body = DenialOrError),
        (status = 404, description = "No such license", body = ErrorBody),
        (status = 409, description = "Suspected clone, or a concurrent change won", body = ErrorBody),
    )
)]
async fn offline_activation(
    State(state): State<AppState>,
    auth: Authorized<CanIssue>,
    Path(id): Path<String>,
    Json(request): Json<DeviceRequest>,
) -> ApiResult<Response> {
    let outcome = match license_id(&id) {
        Ok(id) => {
            state
                .cp
                .offline_activation(&auth.actor, &id, &request)
                .await
        }
        Err(e) => {
            record(&state, DeviceCall::Activation, None);
            return Err(e);
        }
    };
    record(&state, DeviceCall::Activation, Some(&outcome));
    Ok(device_response(outcome?))
}

/// Counts what became of a device request; `None`: refused before the service
/// was asked.
fn record(state: &AppState, call: DeviceCall, outcome: Option<&Result<DeviceOutcome, Error>>) {
    let result = match outcome {
        Some(Ok(DeviceOutcome::Lease(_))) => DeviceResult::Lease,
        Some(Ok(DeviceOutcome::Denied { reason, .. })) => DeviceResult::Denial(*reason),
        Some(Err(Error::CloneSuspected(_))) => DeviceResult::CloneSuspected,
        Some(Err(_)) | None => DeviceResult::Refused,
    };
    state.cp.metrics().record_device(call, result);
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

/// Binds the license to this box (fingerprint and device key) and answers
/// with its first lease.
#[utoipa::path(
    post, path = "/licenses/{id}/activate", tag = "appliance",
    security(("license_key" = [])),
    params(("id" = String, Path, description = "The license id (`lic_...`)")),
    request_body = DeviceRequestSchema,
    responses(
        (status = 200, description = "A lease", body = LeaseResponseSchema),
        (status = 400, description = "Malformed request, or its kind is not `activate`", body = ErrorBody),
        (status = 401, description = "Bad key or signature (unsigned error), or a superseded key from the bound box (signed `invalid_key` denial)", body = DenialOrError),
        (status = 403, description = "A signed denial (expired, suspended, rebound...)", body = DenialResponseSchema),
        (status = 409, description = "Suspected clone, or a concurrent change won", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    )
)]
async fn activate(
    State(state): State<AppState>,
    caller: ApplianceCaller,
    Path(id): Path<String>,
    Json(request): Json<DeviceRequest>,
) -> ApiResult<Response> {
    device(state, caller, id, RequestKind::Activate, request).await
}

/// Renews the lease every heartbeat interval; a license that may no longer
/// run gets a signed denial.
#[utoipa::path(
    post, path = "/licenses/{id}/heartbeat", tag = "appliance",
    security(("license_key" = [])),
    params(("id" = String, Path, description = "The license id (`lic_...`)")),
    request_body = DeviceRequestSchema,
    responses(
        (status = 200, description = "A fresh lease", body = LeaseResponseSchema),
        (status = 400, description = "Malformed request, or its kind is not `heartbeat`", body = ErrorBody),
        (status = 401, description = "Bad key or signature (unsigned error), or a superseded key from the bound box (signed `invalid_key` denial)", body = DenialOrError),
        (status = 403, description = "A signed denial (revoked, expired, suspended, rebound, not_activated)", body = DenialResponseSchema),
        (status = 409, description = "Suspected clone, or a concurrent change won", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    )
)]
async fn heartbeat(
    State(state): State<AppState>,
    caller: ApplianceCaller,
    Path(id): Path<String>,
    Json(request): Json<DeviceRequest>,
) -> ApiResult<Response> {
    device(state, caller, id, RequestKind::Heartbeat, request).await
}

/// Activation and heartbeat: the endpoint says which kind of request it expects.
async fn device(
    state: AppState,
    caller: ApplianceCaller,
    id: String,
    expected: RequestKind,
    request: DeviceRequest,
) -> ApiResult<Response> {
    let call = match expected {
        RequestKind::Activate => DeviceCall::Activation,
        RequestKind::Heartbeat => DeviceCall::Heartbeat,
    };
    let Some(id) = LicenseId::parse(&id) else {
        record(&state, call, None);
        return Err(Error::Unauthenticated.into());
    };
    if request.kind != expected {
        record(&state, call, None);
        return Err(Error::bad_request("the request kind does not match the endpoint").into());
    }
    // Heartbeats wait for a slot; an activation (a customer waiting on a new
    // box) goes ahead of them.
    let _slot = match expected {
        RequestKind::Heartbeat => match state.heartbeat_slots.acquire().await {
            Ok(slot) => Some(slot),
            Err(_) => {
                record(&state, call, None);
                return Err(Error::internal("the heartbeat admission semaphore is closed").into());
            }
        },
        RequestKind::Activate => None,
    };
    let outcome = state
        .cp
        .device_request(&id, &caller.key, &request, &caller.ip)
        .await;
    record(&state, call, Some(&outcome));
    Ok(device_response(outcome?))
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

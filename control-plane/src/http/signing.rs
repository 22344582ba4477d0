//! `/signing-keys`: the signing-key lifecycle (super_admin only): list, create
//! (certified by the online root, or offline with `keys certify` and attached),
//! activate, retire, revoke. Every step is audited (`signing.*`).

use super::AppState;
use super::error::{ApiResult, ErrorBody};
use super::extract::{Authorized, CanManage, Json, OptionalJson, Path};
use super::wire::{CertificateAttached, KeyStateChange, SigningKeyItem, SigningKeyList};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// One `routes!` per path: `OpenApiRouter` registers each handler in the
/// router and in the OpenAPI document at once.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(attach))
        .routes(routes!(activate))
        .routes(routes!(retire))
        .routes(routes!(revoke))
}

/// Every signing and root key with its state, dates and live-lease count.
#[utoipa::path(
    get, path = "/signing-keys", tag = "signing-keys",
    security(("api_token" = [])),
    responses(
        (status = 200, description = "The keys", body = SigningKeyList),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks signing.manage", body = ErrorBody),
    )
)]
async fn list(
    State(state): State<AppState>,
    _: Authorized<CanManage>,
) -> ApiResult<axum::Json<SigningKeyList>> {
    let keys = state.cp.signing_keys().await?;
    Ok(axum::Json(SigningKeyList {
        items: keys.iter().map(SigningKeyItem::from).collect(),
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// `online`: the online root certifies the new key now.
    /// `offline`: the answer carries the public key to certify with `keys certify`.
    /// Default: `online` when a root is held online, else `offline`.
    #[serde(default)]
    certify: Option<String>,
}

/// Creates a pending signing key, certified by the online root at once or
/// (with `certify: offline`, or when the root is held offline) left for
/// `keys certify` and attach.
#[utoipa::path(
    post, path = "/signing-keys", tag = "signing-keys",
    security(("api_token" = [])),
    request_body(content = Option<CreateBody>, description = "Optional"),
    responses(
        (status = 201, description = "Created (signing.create)", body = SigningKeyItem),
        (status = 400, description = "Invalid body", body = ErrorBody),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks signing.manage", body = ErrorBody),
        (status = 409, description = "No online root to certify with", body = ErrorBody),
    )
)]
async fn create(
    State(state): State<AppState>,
    auth: Authorized<CanManage>,
    OptionalJson(body): OptionalJson<CreateBody>,
) -> ApiResult<(StatusCode, axum::Json<SigningKeyItem>)> {
    let online = match body.certify.as_deref() {
        // Unsaid: certify online when a root is held online, else hand out the
        // public key for an offline certificate.
        None => state.cp.has_online_root().await?,
        Some("online") => true,
        Some("offline") => false,
        Some(other) => {
            return Err(crate::error::Error::bad_request(format!(
                "certify must be online or offline, not {other:?}"
            ))
            .into());
        }
    };
    let created = state.cp.create_signing_key(&auth.actor, online).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(SigningKeyItem::from(&created)),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AttachBody {
    /// The certificate chain, pinned-root side first (one `keys certify` output
    /// for a key certified directly by a pinned root).
    chain: Vec<String>,
}

/// Attaches the certificate chain made offline by `keys certify`.
#[utoipa::path(
    post, path = "/signing-keys/{kid}/certificate", tag = "signing-keys",
    security(("api_token" = [])),
    params(("kid" = String, Path, description = "The signing key's kid")),
    request_body = AttachBody,
    responses(
        (status = 200, description = "Attached (signing.certify)", body = CertificateAttached),
        (status = 400, description = "The chain does not verify or certifies another key", body = ErrorBody),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks signing.manage", body = ErrorBody),
        (status = 404, description = "No such signing key", body = ErrorBody),
        (status = 409, description = "Not allowed in the key's state", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    )
)]
async fn attach(
    State(state): State<AppState>,
    auth: Authorized<CanManage>,
    Path(kid): Path<String>,
    Json(body): Json<AttachBody>,
) -> ApiResult<axum::Json<CertificateAttached>> {
    state
        .cp
        .attach_certificate(&auth.actor, &kid, body.chain)
        .await?;
    Ok(axum::Json(CertificateAttached {
        kid,
        certified: true,
    }))
}

/// Makes a certified key the one that signs new leases (the previous active key retires).
#[utoipa::path(
    post, path = "/signing-keys/{kid}/activate", tag = "signing-keys",
    security(("api_token" = [])),
    params(("kid" = String, Path, description = "The signing key's kid")),
    responses(
        (status = 200, description = "The key's new state (signing.activate)", body = KeyStateChange),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks signing.manage", body = ErrorBody),
        (status = 404, description = "No such signing key", body = ErrorBody),
        (status = 409, description = "Not allowed in the key's state", body = ErrorBody),
    )
)]
async fn activate(
    State(state): State<AppState>,
    auth: Authorized<CanManage>,
    Path(kid): Path<String>,
) -> ApiResult<axum::Json<KeyStateChange>> {
    state.cp.activate_signing_key(&auth.actor, &kid).await?;
    Ok(axum::Json(KeyStateChange {
        kid,
        state: "active".to_owned(),
    }))
}

/// Stops a key signing; what it signed stays valid until it expires.
#[utoipa::path(
    post, path = "/signing-keys/{kid}/retire", tag = "signing-keys",
    security(("api_token" = [])),
    params(("kid" = String, Path, description = "The signing key's kid")),
    responses(
        (status = 200, description = "The key's new state (signing.retire)", body = KeyStateChange),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks signing.manage", body = ErrorBody),
        (status = 404, description = "No such signing key", body = ErrorBody),
        (status = 409, description = "Not allowed in the key's state", body = ErrorBody),
    )
)]
async fn retire(
    State(state): State<AppState>,
    auth: Authorized<CanManage>,
    Path(kid): Path<String>,
) -> ApiResult<axum::Json<KeyStateChange>> {
    state.cp.retire_signing_key(&auth.actor, &kid).await?;
    Ok(axum::Json(KeyStateChange {
        kid,
        state: "retired".to_owned(),
    }))
}

/// Revokes a compromised key: its kid rides on every heartbeat response as revoked.
#[utoipa::path(
    post, path = "/signing-keys/{kid}/revoke", tag = "signing-keys",
    security(("api_token" = [])),
    params(("kid" = String, Path, description = "The signing key's kid")),
    responses(
        (status = 200, description = "The key's new state (signing.revoke)", body = KeyStateChange),
        (status = 401, description = "No valid API token", body = ErrorBody),
        (status = 403, description = "Lacks signing.manage", body = ErrorBody),
        (status = 404, description = "No such signing key", body = ErrorBody),
        (status = 409, description = "Not allowed in the key's state", body = ErrorBody),
    )
)]
async fn revoke(
    State(state): State<AppState>,
    auth: Authorized<CanManage>,
    Path(kid): Path<String>,
) -> ApiResult<axum::Json<KeyStateChange>> {
    state.cp.revoke_signing_key(&auth.actor, &kid).await?;
    Ok(axum::Json(KeyStateChange {
        kid,
        state: "revoked".to_owned(),
    }))
}

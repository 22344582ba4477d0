//! `/signing-keys`: the signing-key lifecycle (super_admin only): list, create
//! (certified by the online root, or offline with `keys certify` and attached),
//! activate, retire, revoke. Every step is audited (`signing.*`).

use super::AppState;
use super::error::ApiResult;
use super::extract::{Authorized, CanManage, Json, OptionalJson, Path};
use super::wire::WireTime;
use crate::service::SigningKeyView;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/signing-keys", get(list).post(create))
        .route("/signing-keys/{kid}/certificate", post(attach))
        .route("/signing-keys/{kid}/activate", post(activate))
        .route("/signing-keys/{kid}/retire", post(retire))
        .route("/signing-keys/{kid}/revoke", post(revoke))
}

fn view(v: &SigningKeyView) -> Value {
    let r = &v.record;
    json!({
        "kid": r.kid,
        "role": r.role,
        "state": r.state,
        "public_key": v.public,
        "chain": r.chain,
        "certificate_expires_at": v.cert_expires_at.map(WireTime),
        "created_at": WireTime(r.created_at),
        "activated_at": r.activated_at.map(WireTime),
        "retired_at": r.retired_at.map(WireTime),
        "revoked_at": r.revoked_at.map(WireTime),
        "live_leases": v.live_leases,
    })
}

async fn list(
    State(state): State<AppState>,
    _: Authorized<CanManage>,
) -> ApiResult<axum::Json<Value>> {
    let keys = state.cp.signing_keys().await?;
    Ok(axum::Json(
        json!({"items": keys.iter().map(view).collect::<Vec<_>>()}),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// `online` (default): the online root certifies the new key now.
    /// `offline`: the answer carries the public key to certify with `keys certify`.
    #[serde(default)]
    certify: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    auth: Authorized<CanManage>,
    OptionalJson(body): OptionalJson<CreateBody>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let online = match body.certify.as_deref() {
        None | Some("online") => true,
        Some("offline") => false,
        Some(other) => {
            return Err(crate::error::Error::bad_request(format!(
                "certify must be online or offline, not {other:?}"
            ))
            .into());
        }
    };
    let created = state.cp.create_signing_key(&auth.actor, online).await?;
    Ok((StatusCode::CREATED, axum::Json(view(&created))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachBody {
    /// The certificate chain, pinned-root side first (one `keys certify` output
    /// for a key certified directly by a pinned root).
    chain: Vec<String>,
}

async fn attach(
    State(state): State<AppState>,
    auth: Authorized<CanManage>,
    Path(kid): Path<String>,
    Json(body): Json<AttachBody>,
) -> ApiResult<axum::Json<Value>> {
    state
        .cp
        .attach_certificate(&auth.actor, &kid, body.chain)
        .await?;
    Ok(axum::Json(json!({"kid": kid, "certified": true})))
}

async fn activate(
    State(state): State<AppState>,
    auth: Authorized<CanManage>,
    Path(kid): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    state.cp.activate_signing_key(&auth.actor, &kid).await?;
    Ok(axum::Json(json!({"kid": kid, "state": "active"})))
}

async fn retire(
    State(state): State<AppState>,
    auth: Authorized<CanManage>,
    Path(kid): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    state.cp.retire_signing_key(&auth.actor, &kid).await?;
    Ok(axum::Json(json!({"kid": kid, "state": "retired"})))
}

async fn revoke(
    State(state): State<AppState>,
    auth: Authorized<CanManage>,
    Path(kid): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    state.cp.revoke_signing_key(&auth.actor, &kid).await?;
    Ok(axum::Json(json!({"kid": kid, "state": "revoked"})))
}

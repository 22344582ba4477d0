//! Extractors: JSON bodies that fail in the API's error format, and callers
//! authenticated and authorized before a handler runs (STYLE.md "permission
//! checks are extractors").

use super::AppState;
use super::error::ApiError;
use crate::domain::ids::ApiToken;
use crate::domain::user::{Permission, Role};
use crate::error::Error;
use crate::service::Actor;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::net::SocketAddr;

/// `axum::Json`, with rejections in the API's error format.
#[derive(Debug)]
pub struct Json<T>(pub T);

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(BytesRejection::FailedToBufferBody(e))
            if e.to_string().contains("length limit") =>
        {
            payload_too_large()
        }
        JsonRejection::BytesRejection(_) => payload_too_large(),
        other => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", other.body_text()),
    }
}

fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request bodies are limited to {} bytes", super::BODY_LIMIT),
    )
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(v)| Json(v))
            .map_err(json_rejection)
    }
}

/// `axum::extract::Query`, with rejections in the API's error format.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))
    }
}

/// `axum::extract::Path`, with rejections in the API's error format.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))
    }
}

/// A JSON body that may be absent: an empty body reads as `T::default()`.
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| payload_too_large())?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(OptionalJson)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("invalid JSON body: {e}"),
                )
            })
    }
}

/// The caller's address, or `unknown` when there is no socket (router tests).
pub fn client_ip(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(
            || "unknown".to_owned(),
            |ConnectInfo(addr)| addr.ip().to_string(),
        )
}

/// The bearer credential of the request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A permission a route requires, as a type.
pub trait Requirement: Send + Sync + 'static {
    fn allows(role: Role) -> bool;
}

macro_rules! requirement {
    ($name:ident, $doc:literal, |$role:ident| $allows:expr) => {
        #[doc = $doc]
        #[derive(Debug)]
        pub struct $name;
        impl Requirement for $name {
            fn allows($role: Role) -> bool {
                $allows
            }
        }
    };
}

requirement!(
    CanRead,
    "license.read, or a customer's view of its own licenses.",
    |role| role.allows(Permission::LicenseRead) || role.allows(Permission::OwnLicenseRead)
);
requirement!(CanIssue, "license.issue.", |role| role
    .allows(Permission::LicenseIssue));
requirement!(CanRevoke, "license.revoke.", |role| role
    .allows(Permission::LicenseRevoke));
requirement!(CanReveal, "license.reveal.", |role| role
    .allows(Permission::LicenseReveal));
requirement!(CanManage, "signing.manage.", |role| role
    .allows(Permission::SigningManage));
requirement!(
    StaffRead,
    "license.read (staff only, not customers).",
    |role| role.allows(Permission::LicenseRead)
);

/// An authenticated user holding permission `R`: 401 without a valid API token,
/// 403 with one that lacks the permission.
#[derive(Debug)]
pub struct Authorized<R> {
    pub actor: Actor,
    _requirement: PhantomData<R>,
}

impl<R: Requirement> FromRequestParts<AppState> for Authorized<R> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)
            .and_then(ApiToken::parse)
            .ok_or(ApiError::from(Error::Unauthenticated))?;
        let user = state
            .cp
            .authenticate(&token)
            .await?
            .ok_or(ApiError::from(Error::Unauthenticated))?;
        if !R::allows(user.role) {
            return Err(Error::Forbidden.into());
        }
        Ok(Authorized {
            actor: Actor::user(&user, client_ip(parts)),
            _requirement: PhantomData,
        })
    }
}

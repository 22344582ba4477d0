//! The one error type of the HTTP layer. Every failure answers
//! `{"error": code, "message": text}`:
//!
//! | variant | status | error |
//! |---|---|---|
//! | `BadRequest` | 400 | `bad_request` |
//! | `Unauthenticated` | 401 | `unauthenticated` |
//! | `Forbidden` | 403 | `forbidden` |
//! | `NotFound` | 404 | `not_found` |
//! | `InvalidTransition` | 409 | `invalid_transition` |
//! | `Conflict` | 409 | `conflict` |
//! | `CloneSuspected` | 409 | `clone_suspected` |
//! | `KeyState` | 409 | `invalid_key_state` |
//! | payload too large | 413 | `payload_too_large` |
//! | wrong content type | 415 | `unsupported_media_type` |
//! | not ready (`/readyz`) | 503 | `not_ready` |
//! | `Store`, `Internal` | 500 | `internal` (details go to the log only) |

use crate::error::Error;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// The body of every error answer (except signed denials, see
/// `keys::proto::DenialResponse`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code (`bad_request`, `unauthenticated`, ...).
    #[schema(example = "not_found")]
    pub error: String,
    /// A human-readable explanation.
    #[schema(example = "no such route")]
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let (status, code) = match &e {
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            Error::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::InvalidTransition(_) => (StatusCode::CONFLICT, "invalid_transition"),
            Error::Conflict => (StatusCode::CONFLICT, "conflict"),
            Error::CloneSuspected(_) => (StatusCode::CONFLICT, "clone_suspected"),
            Error::KeyState(_) => (StatusCode::CONFLICT, "invalid_key_state"),
            Error::Store(_) | Error::Internal(_) => {
                tracing::error!(error = %e, "request failed");
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                );
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_owned(),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

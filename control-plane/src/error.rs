//! The control plane's error type. Each variant maps to one HTTP status in
//! `http::error`; internal causes are logged there, never sent to clients.

use crate::domain::license::Refused;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed or a value is out of range (400).
    #[error("{0}")]
    BadRequest(String),
    /// No credential, or one that is not valid (401).
    #[error("authentication required")]
    Unauthenticated,
    /// A valid credential without the permission (403).
    #[error("not permitted")]
    Forbidden,
    /// No such resource, or not visible to this caller (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The action is not allowed in the license's state (409).
    #[error("cannot {} a license that is {}", .0.action, .0.from.as_str())]
    InvalidTransition(Refused),
    /// Another writer changed the record first; the caller may retry (409).
    #[error("the record changed concurrently; retry")]
    Conflict,
    /// A signing-key action that its state does not allow (409).
    #[error("{0}")]
    KeyState(String),
    /// A request that looks like a cloned appliance (409).
    #[error("{0}")]
    CloneSuspected(String),
    /// The store failed (500; details logged).
    #[error("storage failure: {0}")]
    Store(String),
    /// Anything else that is our fault (500; details logged).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn internal(message: impl Into<String>) -> Error {
        Error::Internal(message.into())
    }

    pub fn bad_request(message: impl Into<String>) -> Error {
        Error::BadRequest(message.into())
    }
}

impl From<keys::Error> for Error {
    fn from(e: keys::Error) -> Error {
        Error::Internal(format!("keys: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

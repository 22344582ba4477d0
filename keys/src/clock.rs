//! Unix time, and the one place this crate reads the system clock.
//!
//! Everything that depends on time takes a [`UnixTime`] argument (`verify_at`);
//! the convenience wrappers (`verify`) call [`UnixTime::now`]. Nothing in this
//! crate can be told to pretend it is another time except through that argument.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Seconds since 1970-01-01T00:00:00Z, the JWT `NumericDate` (RFC 7519 section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// The system's wall-clock time. A clock before 1970 reads as 0, which makes
    /// every token "not yet valid": wrong clocks fail safe.
    #[allow(clippy::disallowed_methods)] // The one ambient clock read of this crate.
    pub fn now() -> UnixTime {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        UnixTime(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    /// This time plus `secs` seconds, saturating.
    pub fn plus(self, secs: i64) -> UnixTime {
        UnixTime(self.0.saturating_add(secs))
    }

    /// Seconds since the epoch.
    pub fn secs(self) -> i64 {
        self.0
    }

    /// RFC 3339 text in UTC (`2027-01-15T08:00:00Z`), for people and APIs;
    /// tokens carry the plain number.
    pub fn to_rfc3339(self) -> String {
        time::OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| self.0.to_string())
    }

    /// Parses RFC 3339 text (any offset).
    pub fn parse_rfc3339(text: &str) -> Option<UnixTime> {
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(|t| UnixTime(t.unix_timestamp()))
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

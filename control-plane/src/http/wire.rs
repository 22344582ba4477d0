//! Wire types: what the API sends and accepts. Times are RFC 3339 strings in UTC;
//! domain records never go out as they are stored (no key digests, no sealed keys).

use crate::domain::license::{License, Status};
use crate::domain::settings::PolicyOverrides;
use crate::domain::user::{Role, User};
use keys::proto::fingerprint_digest;
use keys::{Entitlements, UnixTime};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// RFC 3339 text of a unix time.
pub fn format_time(at: UnixTime) -> String {
    at.to_rfc3339()
}

/// Parses RFC 3339 text.
pub fn parse_time(text: &str) -> Option<UnixTime> {
    UnixTime::parse_rfc3339(text)
}

/// A time on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireTime(pub UnixTime);

impl Serialize for WireTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_time(self.0))
    }
}

impl<'de> Deserialize<'de> for WireTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_time(&text)
            .map(WireTime)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
    }
}

fn wire(at: Option<UnixTime>) -> Option<WireTime> {
    at.map(WireTime)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueBody {
    pub customer: String,
    pub entitlements: Entitlements,
    #[serde(default)]
    pub subscription_ends_at: Option<WireTime>,
    #[serde(default)]
    pub policy: PolicyOverrides,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    #[serde(default)]
    pub grace_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    #[serde(default)]
    pub subscription_ends_at: Option<WireTime>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RebindBody {
    /// The new box's hashed fingerprint components (from `appliance fingerprint`).
    #[serde(default)]
    pub fingerprint: Option<BTreeMap<String, String>>,
    /// Unbind: the next box to activate binds.
    #[serde(default)]
    pub unbind: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub customer: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub status: Option<String>,
    pub customer: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct AuditListQuery {
    pub target: Option<String>,
    pub action: Option<String>,
    pub from: Option<String>,
    pub until: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct BindingView {
    pub fingerprint: Option<String>,
    pub components: Option<BTreeMap<String, String>>,
    pub device_key: Option<String>,
    pub bound_at: Option<WireTime>,
}

#[derive(Debug, Serialize)]
pub struct LastSeenView {
    pub at: WireTime,
    pub version: String,
    pub ip: String,
}

/// A license as staff see it.
#[derive(Debug, Serialize)]
pub struct LicenseView {
    pub id: String,
    pub customer: String,
    pub status: Status,
    pub entitlements: Entitlements,
    pub subscription_ends_at: Option<WireTime>,
    pub grace_expires_at: Option<WireTime>,
    pub policy: PolicyOverrides,
    pub binding: BindingView,
    pub lease_seq: u64,
    pub last_heartbeat: Option<LastSeenView>,
    pub created_at: WireTime,
    pub updated_at: WireTime,
}

impl From<&License> for LicenseView {
    fn from(l: &License) -> LicenseView {
        LicenseView {
            id: l.id.to_string(),
            customer: l.customer.clone(),
            status: l.state.status(),
            entitlements: l.entitlements.clone(),
            subscription_ends_at: wire(l.subscription_ends_at),
            grace_expires_at: wire(l.state.grace_until()),
            policy: l.policy.clone(),
            binding: BindingView {
                fingerprint: l.binding.components.as_ref().map(fingerprint_digest),
                components: l.binding.components.clone(),
                device_key: l.binding.device_key.clone(),
                bound_at: wire(l.binding.bound_at),
            },
            lease_seq: l.lease_seq,
            last_heartbeat: l.last_seen.as_ref().map(|s| LastSeenView {
                at: WireTime(s.at),
                version: s.version.clone(),
                ip: s.ip.clone(),
            }),
            created_at: WireTime(l.created_at),
            updated_at: WireTime(l.updated_at),
        }
    }
}

/// A license as its customer sees it: status and dates, no binding details.
#[derive(Debug, Serialize)]
pub struct CustomerLicenseView {
    pub id: String,
    pub customer: String,
    pub status: Status,
    pub product: String,
    pub subscription_ends_at: Option<WireTime>,
    pub grace_expires_at: Option<WireTime>,
    pub last_heartbeat_at: Option<WireTime>,
    pub installed_version: Option<String>,
}

impl From<&License> for CustomerLicenseView {
    fn from(l: &License) -> CustomerLicenseView {
        CustomerLicenseView {
            id: l.id.to_string(),
            customer: l.customer.clone(),
            status: l.state.status(),
            product: l.entitlements.product.clone(),
            subscription_ends_at: wire(l.subscription_ends_at),
            grace_expires_at: wire(l.state.grace_until()),
            last_heartbeat_at: l.last_seen.as_ref().map(|s| WireTime(s.at)),
            installed_version: l.last_seen.as_ref().map(|s| s.version.clone()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct UserView {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub customer: Option<String>,
    pub created_at: WireTime,
    pub disabled: bool,
}

impl From<&User> for UserView {
    fn from(u: &User) -> UserView {
        UserView {
            id: u.id.to_string(),
            name: u.name.clone(),
            role: u.role,
            customer: u.customer.clone(),
            created_at: WireTime(u.created_at),
            disabled: u.disabled,
        }
    }
}

/// What an appliance gets back: the wire types shared with the appliance.
pub use keys::proto::{DenialResponse, LeaseResponse};

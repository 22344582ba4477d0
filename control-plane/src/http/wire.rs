//! Wire types: what the API sends and accepts. Times are RFC 3339 strings in UTC;
//! domain records never go out as they are stored (no key digests, no sealed keys).
//!
//! Every type here derives `utoipa::ToSchema`, so `/openapi.json` describes what
//! the handlers really send. Types of the `keys` crate (which must not depend on
//! utoipa) are described by the schema-only mirrors at the end of this file,
//! checked field by field against the real serialization by the `openapi` test.

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(value_type = String, format = DateTime, example = "2027-01-15T08:00:00Z")]
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueBody {
    pub customer: String,
    #[schema(value_type = EntitlementsSchema)]
    pub entitlements: Entitlements,
    #[serde(default)]
    pub subscription_ends_at: Option<WireTime>,
    #[serde(default)]
    pub policy: PolicyOverrides,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    #[serde(default)]
    pub grace_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    #[serde(default)]
    pub subscription_ends_at: Option<WireTime>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebindBody {
    /// The new box's hashed fingerprint components (from `appliance fingerprint`).
    #[serde(default)]
    pub fingerprint: Option<BTreeMap<String, String>>,
    /// Unbind: the next box to activate binds.
    #[serde(default)]
    pub unbind: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub customer: Option<String>,
    /// A console password (12 to 256 characters); without one the user has
    /// API access only.
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    /// The new console password, 12 to 256 characters.
    pub password: String,
}

impl std::fmt::Debug for CreateUserBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUserBody")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("customer", &self.customer)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl std::fmt::Debug for PasswordBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordBody(<redacted>)")
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only licenses in this state (issued, active, grace, expired, suspended).
    pub status: Option<String>,
    /// Only this customer's licenses.
    pub customer: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditListQuery {
    /// Only records about this target (a license id: license.read suffices).
    pub target: Option<String>,
    /// Only records of this action (`license.revoke`, ...).
    pub action: Option<String>,
    /// Only records at or after this RFC 3339 time.
    pub from: Option<String>,
    /// Only records before this RFC 3339 time.
    pub until: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BindingView {
    pub fingerprint: Option<String>,
    pub components: Option<BTreeMap<String, String>>,
    pub device_key: Option<String>,
    pub bound_at: Option<WireTime>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LastSeenView {
    pub at: WireTime,
    pub version: String,
    pub ip: String,
}

/// A license as staff see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LicenseView {
    pub id: String,
    pub customer: String,
    pub status: Status,
    #[schema(value_type = EntitlementsSchema)]
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub customer: Option<String>,
    pub created_at: WireTime,
    pub disabled: bool,
    /// Whether the user has a console password.
    pub console: bool,
    /// Console sign-in is locked until then (repeated failures).
    pub locked_until: Option<WireTime>,
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
            console: u.password.is_some(),
            locked_until: wire(u.locked_until),
        }
    }
}

/// What an appliance gets back: the wire types shared with the appliance.
pub use keys::proto::{DenialResponse, LeaseResponse};

/// A license as the caller may see it: staff get [`LicenseView`], a customer
/// login [`CustomerLicenseView`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum LicenseItem {
    Staff(Box<LicenseView>),
    Customer(CustomerLicenseView),
}

impl LicenseItem {
    pub fn of(license: &License, role: Option<Role>) -> LicenseItem {
        if role == Some(Role::Customer) {
            LicenseItem::Customer(CustomerLicenseView::from(license))
        } else {
            LicenseItem::Staff(Box::new(LicenseView::from(license)))
        }
    }
}

/// A page of the license list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LicensePage {
    pub items: Vec<LicenseItem>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// A license with its key in plaintext: shown once, at issue and regenerate.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LicenseWithKey {
    pub license: LicenseView,
    pub license_key: String,
    pub note: String,
}

/// A revealed license key (audited as `license.reveal`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RevealedKey {
    pub license_key: String,
}

/// One audit record.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditItem {
    pub seq: u64,
    pub at: WireTime,
    pub action: String,
    pub target: String,
    pub actor_id: String,
    pub actor_name: String,
    pub ip: String,
    /// Action-specific details (grace days, old and new fingerprint...).
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

impl From<&crate::domain::audit::AuditRecord> for AuditItem {
    fn from(r: &crate::domain::audit::AuditRecord) -> AuditItem {
        AuditItem {
            seq: r.seq,
            at: WireTime(r.at),
            action: r.event.action.clone(),
            target: r.event.target.clone(),
            actor_id: r.event.actor_id.clone(),
            actor_name: r.event.actor_name.clone(),
            ip: r.event.ip.clone(),
            metadata: r.event.metadata.clone(),
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
        }
    }
}

/// A page of the audit log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditItem>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<u64>,
}

/// A new user and its API token, shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedUser {
    pub user: UserView,
    pub token: String,
    pub note: String,
}

/// A liveness or readiness answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusBody {
    #[schema(example = "ok")]
    pub status: String,
}

/// A signing or root key as `GET /signing-keys` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SigningKeyItem {
    pub kid: String,
    /// `root` or `signing`.
    #[schema(value_type = String)]
    pub role: keys::keyfile::KeyRole,
    pub state: crate::store::KeyState,
    /// The public key, base64url.
    pub public_key: String,
    /// Whether the private half is held by the control plane (sealed under its
    /// KEK); `false` for a root kept offline.
    pub online: bool,
    /// The certificate chain, pinned-root side first.
    pub chain: Vec<String>,
    pub certificate_expires_at: Option<WireTime>,
    pub created_at: WireTime,
    pub activated_at: Option<WireTime>,
    pub retired_at: Option<WireTime>,
    pub revoked_at: Option<WireTime>,
    /// Licenses whose last lease this key signed and that has not expired.
    pub live_leases: u64,
}

impl From<&crate::service::SigningKeyView> for SigningKeyItem {
    fn from(v: &crate::service::SigningKeyView) -> SigningKeyItem {
        let r = &v.record;
        SigningKeyItem {
            kid: r.kid.clone(),
            role: r.role,
            state: r.state,
            online: r.is_online(),
            public_key: v.public.clone(),
            chain: r.chain.clone(),
            certificate_expires_at: wire(v.cert_expires_at),
            created_at: WireTime(r.created_at),
            activated_at: wire(r.activated_at),
            retired_at: wire(r.retired_at),
            revoked_at: wire(r.revoked_at),
            live_leases: v.live_leases,
        }
    }
}

/// Every signing and root key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SigningKeyList {
    pub items: Vec<SigningKeyItem>,
}

/// A signing key's new lifecycle state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyStateChange {
    pub kid: String,
    /// `active`, `retired` or `revoked`.
    pub state: String,
}

/// A certificate chain attached to a signing key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CertificateAttached {
    pub kid: String,
    pub certified: bool,
}

// ----- schema-only mirrors of `keys` types (keys stays free of utoipa) -----

/// `keys::Entitlements`: what a license allows.
#[derive(Debug, utoipa::ToSchema)]
#[schema(as = Entitlements)]
#[allow(dead_code)]
pub struct EntitlementsSchema {
    /// The product the license is for.
    product: String,
    /// Feature flags that are on.
    features: Option<Vec<String>>,
    /// Numeric limits (seats, throughput...), by name.
    limits: Option<BTreeMap<String, i64>>,
}

/// `keys::proto::RequestKind`.
#[derive(Debug, utoipa::ToSchema)]
#[schema(as = RequestKind)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RequestKindSchema {
    Activate,
    Heartbeat,
}

/// `keys::proto::DeviceRequest`: an activation or heartbeat, signed by the
/// device key (see docs/token-format.md).
#[derive(Debug, utoipa::ToSchema)]
#[schema(as = DeviceRequest)]
#[allow(dead_code)]
pub struct DeviceRequestSchema {
    kind: RequestKindSchema,
    /// The license id the request is for (also in the URL; both must agree).
    license_id: String,
    /// Hashed fingerprint components, by name.
    components: BTreeMap<String, String>,
    /// The device public key, base64url.
    device_key: String,
    /// Random, base64url, at least 16 bytes: echoed in the lease or denial.
    nonce: String,
    /// Strictly increasing per device.
    counter: u64,
    /// The appliance software's version.
    version: String,
    /// The appliance's wall clock, unix seconds (informational).
    sent_at: i64,
    /// The device key's signature over the request, base64url.
    signature: String,
}

/// `keys::proto::LeaseResponse`: a fresh lease and what verifies it.
#[derive(Debug, utoipa::ToSchema)]
#[schema(as = LeaseResponse)]
#[allow(dead_code)]
pub struct LeaseResponseSchema {
    /// The `lease+jwt`.
    lease: String,
    /// The signing key's certificate chain, pinned-root side first.
    chain: Vec<String>,
    /// Kids that must no longer be trusted.
    revoked_kids: Vec<String>,
    heartbeat_interval_secs: u32,
}

/// `keys::proto::DenialResponse`: a signed refusal; the appliance locks on it
/// only when its nonce matches its own request.
#[derive(Debug, utoipa::ToSchema)]
#[schema(as = DenialResponse)]
#[allow(dead_code)]
pub struct DenialResponseSchema {
    /// The denial reason (revoked, expired, suspended, rebound, invalid_key, not_activated).
    error: String,
    message: String,
    /// The `denial+jwt`.
    denial: String,
    chain: Vec<String>,
    revoked_kids: Vec<String>,
}

/// A refusal that is either signed (a denial the appliance locks on) or not
/// (an error the appliance treats as "offline").
#[derive(Debug, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum DenialOrError {
    Denial(DenialResponseSchema),
    Error(super::error::ErrorBody),
}

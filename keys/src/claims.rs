//! The claims of the three token kinds (DESIGN.md "Tokens").
//!
//! Each kind implements [`TokenClaims`], which ties it to its `typ` and exposes its
//! validity window, so signing and verification are written once for all kinds and
//! one kind can never be accepted as another.

use crate::clock::UnixTime;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A kind of token: its claims type and its `typ` header value.
pub trait TokenClaims: Serialize + DeserializeOwned {
    /// The `typ` header value (RFC 7515 section 4.1.9) of this kind.
    const TYP: &'static str;

    /// `(nbf, exp)`: the token is valid from `nbf` (inclusive) to `exp` (exclusive).
    fn window(&self) -> (UnixTime, UnixTime);

    /// `iat`.
    fn issued_at(&self) -> UnixTime;

    /// Checks that go beyond the shape of the JSON; called after the signature verified.
    fn check_consistency(&self) -> Result<(), &'static str> {
        self.check_window()
    }

    /// The window is not empty and `iat` lies before its end.
    fn check_window(&self) -> Result<(), &'static str> {
        let (nbf, exp) = self.window();
        if exp <= nbf {
            return Err("exp is not after nbf");
        }
        if self.issued_at() >= exp {
            return Err("iat is not before exp");
        }
        Ok(())
    }
}

/// What a certified key may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyUse {
    /// Leases and denials: a signing key.
    Lease,
    /// Certificates of further keys: a new root certified by an older one, so
    /// appliances that pin the old root accept the new one.
    Root,
}

impl KeyUse {
    /// The claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyUse::Lease => "lease",
            KeyUse::Root => "root",
        }
    }
}

/// `keycert+jwt`: a root's statement that `pub` (with id `kid`) may sign for `use`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCert {
    pub iss: String,
    pub iat: UnixTime,
    pub nbf: UnixTime,
    pub exp: UnixTime,
    pub jti: String,
    /// The certified key's id; must be the thumbprint of `pub`.
    pub kid: String,
    /// The certified public key, base64url. Kept as text here so that a weak or
    /// invalid key is refused with its own error when the chain is verified.
    #[serde(rename = "pub")]
    pub public: String,
    #[serde(rename = "use")]
    pub key_use: KeyUse,
    /// For `use: "root"` only: the certified (new) root's own signature over
    /// [`KeyCert::pop_message`], base64url. A root rotation therefore needs both
    /// keys: the old root signs the certificate, the new one proves possession
    /// and consent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pop: Option<String>,
}

impl KeyCert {
    /// The bytes the certified key signs as its proof of possession: the
    /// issuer's kid and the certificate's identity and window, so a proof cannot
    /// be moved to another certificate.
    pub fn pop_message(&self, issuer_kid: &str) -> Vec<u8> {
        format!(
            "licensing-root-pop/v1\n{}\n{issuer_kid}\n{}\n{}\n{}\n{}\n{}\n",
            self.iss,
            self.kid,
            self.jti,
            self.iat.secs(),
            self.nbf.secs(),
            self.exp.secs()
        )
        .into_bytes()
    }
}

impl TokenClaims for KeyCert {
    const TYP: &'static str = "keycert+jwt";

    fn window(&self) -> (UnixTime, UnixTime) {
        (self.nbf, self.exp)
    }

    fn issued_at(&self) -> UnixTime {
        self.iat
    }
}

/// The state a lease grants (DESIGN.md "License states").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseStatus {
    /// Healthy.
    Active,
    /// Revoked with grace: runs until `grace_expires_at`.
    Grace,
}

/// What the license entitles the appliance to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entitlements {
    /// The product the license is for.
    pub product: String,
    /// Feature flags that are on.
    #[serde(default)]
    pub features: Vec<String>,
    /// Numeric limits (seats, throughput...), by name.
    #[serde(default)]
    pub limits: BTreeMap<String, i64>,
}

/// `lease+jwt`: permission for one bound appliance to run until `exp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub iss: String,
    /// The license id.
    pub sub: String,
    pub iat: UnixTime,
    pub nbf: UnixTime,
    pub exp: UnixTime,
    pub jti: String,
    /// Increases with every lease issued for this license (rollback defence).
    pub seq: u64,
    pub status: LeaseStatus,
    /// When the grace period ends; present exactly when `status` is `grace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_expires_at: Option<UnixTime>,
    /// Digest of the bound hardware fingerprint (base64url).
    pub fp: String,
    /// The bound device public key (base64url).
    pub dev: String,
    /// The customer.
    pub cust: String,
    pub ent: Entitlements,
    /// Heartbeat interval, seconds.
    pub hb: u32,
    /// Offline window, seconds.
    pub offline: u32,
    /// Echo of the request's nonce.
    pub nonce: String,
}

impl TokenClaims for Lease {
    const TYP: &'static str = "lease+jwt";

    fn window(&self) -> (UnixTime, UnixTime) {
        (self.nbf, self.exp)
    }

    fn issued_at(&self) -> UnixTime {
        self.iat
    }

    fn check_consistency(&self) -> Result<(), &'static str> {
        self.check_window()?;
        let exp = self.exp;
        // DESIGN.md "Lease expiry": exp = min(iat + offline, grace_expires_at, ...).
        if exp > self.iat.plus(i64::from(self.offline)) {
            return Err("exp is beyond iat plus the offline window");
        }
        match (self.status, self.grace_expires_at) {
            (LeaseStatus::Grace, None) => Err("a grace lease has no grace_expires_at"),
            (LeaseStatus::Grace, Some(until)) if exp > until => {
                Err("a grace lease expires after grace_expires_at")
            }
            (LeaseStatus::Active, Some(_)) => Err("an active lease has grace_expires_at"),
            _ => Ok(()),
        }
    }
}

/// Why the control plane refuses an appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenialReason {
    Revoked,
    Expired,
    Suspended,
    Rebound,
    InvalidKey,
    NotActivated,
}

impl DenialReason {
    /// The claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            DenialReason::Revoked => "revoked",
            DenialReason::Expired => "expired",
            DenialReason::Suspended => "suspended",
            DenialReason::Rebound => "rebound",
            DenialReason::InvalidKey => "invalid_key",
            DenialReason::NotActivated => "not_activated",
        }
    }
}

/// `denial+jwt`: a signed refusal, bound to the request by `nonce`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    pub iss: String,
    /// The license id.
    pub sub: String,
    pub iat: UnixTime,
    pub nbf: UnixTime,
    pub exp: UnixTime,
    pub jti: String,
    pub reason: DenialReason,
    /// Echo of the request's nonce: an appliance acts only on a denial of its own request.
    pub nonce: String,
}

impl TokenClaims for Denial {
    const TYP: &'static str = "denial+jwt";

    fn window(&self) -> (UnixTime, UnixTime) {
        (self.nbf, self.exp)
    }

    fn issued_at(&self) -> UnixTime {
        self.iat
    }
}

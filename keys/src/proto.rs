//! The appliance's signed requests: activation and heartbeat bodies, and the exact
//! bytes the device key signs.
//!
//! Both sides need this and the appliance must not depend on the control plane,
//! so the wire format lives here. The signature covers every field and a digest
//! of the license key, so a man in the middle can neither alter a request nor swap
//! its license key to provoke a genuine signed denial for someone else's nonce
//! (DESIGN.md "Denials").

use crate::b64;
use crate::error::{Error, Result};
use crate::key::{PrivateKey, PublicKey, verify_bytes};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The longest accepted component name or value, and the most components.
pub const MAX_COMPONENT_LEN: usize = 128;
/// The most fingerprint components a request may carry.
pub const MAX_COMPONENTS: usize = 32;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// First binding (or re-activation of the same box).
    Activate,
    /// Renewal of the lease.
    Heartbeat,
}

impl RequestKind {
    fn as_str(self) -> &'static str {
        match self {
            RequestKind::Activate => "activate",
            RequestKind::Heartbeat => "heartbeat",
        }
    }
}

/// Hashed hardware fingerprint components, by name (`machine_id`, `mac`, ...).
/// Values are already salted and hashed by the appliance; the control plane never
/// sees raw hardware identifiers.
pub type Components = BTreeMap<String, String>;

/// The digest over all components: SHA-256 of `name=value\n` lines in name order,
/// base64url. It is what a lease's `fp` claim carries.
pub fn fingerprint_digest(components: &Components) -> String {
    let mut hasher = Sha256::new();
    for (name, value) in components {
        hasher.update(name.as_bytes());
        hasher.update(b"=");
        hasher.update(value.as_bytes());
        hasher.update(b"\n");
    }
    b64::encode(hasher.finalize())
}

/// SHA-256 of a license key, base64url: what the device signature covers in place
/// of the key itself.
pub fn license_key_digest(license_key: &str) -> String {
    b64::encode(Sha256::digest(license_key.as_bytes()))
}

/// An activation or heartbeat request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRequest {
    pub kind: RequestKind,
    /// The license id the request is for (also in the URL; both must agree).
    pub license_id: String,
    /// Hashed fingerprint components.
    pub components: Components,
    /// The device public key, base64url.
    pub device_key: String,
    /// Random, base64url, at least 16 bytes: echoed in the lease or denial.
    pub nonce: String,
    /// Strictly increasing per device: a counter that goes backwards means two
    /// boxes share one identity.
    pub counter: u64,
    /// The appliance software's version, for the license card.
    pub version: String,
    /// The appliance's wall clock, unix seconds (informational).
    pub sent_at: i64,
    /// The device key's signature over [`DeviceRequest::signing_input`], base64url.
    pub signature: String,
}

impl DeviceRequest {
    /// The exact bytes signed: a versioned, newline-separated list of every field,
    /// with the license key's digest. Field values cannot contain newlines
    /// ([`DeviceRequest::check_shape`]), so the encoding is unambiguous.
    pub fn signing_input(&self, license_key_digest: &str) -> Vec<u8> {
        let mut out = String::with_capacity(256);
        out.push_str("licensing-device-request/v1\n");
        for field in [
            self.kind.as_str(),
            &self.license_id,
            license_key_digest,
            &self.device_key,
            &self.nonce,
            &self.counter.to_string(),
            &self.version,
            &self.sent_at.to_string(),
        ] {
            out.push_str(field);
            out.push('\n');
        }
        for (name, value) in &self.components {
            out.push_str(name);
            out.push('=');
            out.push_str(value);
            out.push('\n');
        }
        out.into_bytes()
    }

    /// Builds and signs a request.
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        kind: RequestKind,
        license_id: &str,
        license_key: &str,
        components: Components,
        device: &PrivateKey,
        nonce: String,
        counter: u64,
        version: String,
        sent_at: i64,
    ) -> DeviceRequest {
        let mut request = DeviceRequest {
            kind,
            license_id: license_id.to_owned(),
            components,
            device_key: device.public().to_b64(),
            nonce,
            counter,
            version,
            sent_at,
            signature: String::new(),
        };
        let input = request.signing_input(&license_key_digest(license_key));
        request.signature = b64::encode(device.sign_bytes(&input));
        request
    }

    /// Checks sizes and characters, so nothing unbounded or ambiguous reaches
    /// the signature check or the store.
    pub fn check_shape(&self) -> std::result::Result<(), &'static str> {
        let clean = |s: &str| {
            !s.is_empty() && s.len() <= MAX_COMPONENT_LEN && !s.contains(['\n', '\r', '='])
        };
        if b64::decode_array::<32>(&self.device_key).is_none() {
            return Err("device_key must be 32 bytes of base64url");
        }
        if !clean(&self.license_id) {
            return Err("license_id is empty, too long or has forbidden characters");
        }
        if self.components.is_empty() || self.components.len() > MAX_COMPONENTS {
            return Err("components must hold between 1 and 32 entries");
        }
        if !self.components.iter().all(|(n, v)| clean(n) && clean(v)) {
            return Err("a component name or value is empty, too long or has forbidden characters");
        }
        if self.version.len() > 64 || self.version.contains(['\n', '\r']) {
            return Err("version is too long or has a line break");
        }
        match b64::decode(&self.nonce) {
            Some(n) if (16..=64).contains(&n.len()) => {}
            _ => return Err("nonce must be 16 to 64 bytes of base64url"),
        }
        Ok(())
    }

    /// Verifies the device signature under the request's own device key.
    pub fn verify(&self, license_key_digest: &str) -> Result<PublicKey> {
        let key = PublicKey::from_b64(&self.device_key)?;
        self.verify_under(&key, license_key_digest)?;
        Ok(key)
    }

    /// Verifies the device signature under a given key (the bound one).
    pub fn verify_under(&self, key: &PublicKey, license_key_digest: &str) -> Result<()> {
        let signature = b64::decode_array::<64>(&self.signature).ok_or(Error::Encoding {
            segment: crate::Segment::Signature,
        })?;
        verify_bytes(key, &self.signing_input(license_key_digest), &signature)
    }
}

/// The control plane's answer to a request it grants: a lease and what the
/// appliance needs to verify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseResponse {
    pub lease: String,
    /// The signing key's certificate chain, pinned-root side first.
    pub chain: Vec<String>,
    /// Kids that must no longer be trusted.
    pub revoked_kids: Vec<String>,
    pub heartbeat_interval_secs: u32,
}

/// The control plane's signed refusal (HTTP 401 for `invalid_key`, 403 otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenialResponse {
    /// The denial reason, as in the token.
    pub error: String,
    pub message: String,
    /// The `denial+jwt`.
    pub denial: String,
    pub chain: Vec<String>,
    pub revoked_kids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> DeviceRequest {
        let device = PrivateKey::from_seed(&[4u8; 32]);
        let components: Components = [("machine_id".to_owned(), "abc".to_owned())].into();
        DeviceRequest::sign(
            RequestKind::Heartbeat,
            "lic_1",
            "pk_secret",
            components,
            &device,
            b64::encode([1u8; 16]),
            7,
            "1.0.0".into(),
            1_800_000_000,
        )
    }

    #[test]
    fn signed_requests_verify_and_any_field_change_fails() {
        let digest = license_key_digest("pk_secret");
        let req = request();
        req.check_shape().expect("shape");
        req.verify(&digest).expect("verifies");
        assert!(req.verify(&license_key_digest("pk_other")).is_err());
        let mut changed = req.clone();
        changed.counter += 1;
        assert!(changed.verify(&digest).is_err());
        let mut changed = req.clone();
        changed.kind = RequestKind::Activate;
        assert!(changed.verify(&digest).is_err());
        let mut changed = req.clone();
        changed.components.insert("mac".into(), "x".into());
        assert!(changed.verify(&digest).is_err());
        let mut changed = req;
        changed.nonce = b64::encode([2u8; 16]);
        assert!(changed.verify(&digest).is_err());
    }

    #[test]
    fn shape_refuses_ambiguous_and_oversized_fields() {
        let mut req = request();
        req.components.insert("a\nb".into(), "x".into());
        assert!(req.check_shape().is_err());
        let mut req = request();
        req.nonce = "short".into();
        assert!(req.check_shape().is_err());
        let mut req = request();
        req.components = (0..33).map(|i| (format!("c{i}"), "v".to_owned())).collect();
        assert!(req.check_shape().is_err());
    }
}

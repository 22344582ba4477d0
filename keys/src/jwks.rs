//! JSON Web Keys for ed25519 public keys: the OKP form of RFC 8037 section 2.
//!
//! The control plane publishes its roots and current signing keys as a JWKS at
//! `/.well-known/jwks.json`, so any standard JOSE library can verify a lease.

use crate::error::{Error, Result};
use crate::jws::ALG;
use crate::key::PublicKey;
use serde::{Deserialize, Serialize};

/// One public key as a JWK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    /// The RFC 7638 thumbprint.
    pub kid: String,
    /// `sig`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
    /// `EdDSA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
}

impl Jwk {
    /// The JWK of a public key.
    pub fn from_public(key: &PublicKey) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: key.to_b64(),
            kid: key.kid().to_string(),
            key_use: Some("sig".into()),
            alg: Some(ALG.into()),
        }
    }

    /// The public key of a JWK, refusing other key types, weak keys, and a kid
    /// that is not the key's thumbprint.
    pub fn to_public(&self) -> Result<PublicKey> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return Err(Error::key_file(format!(
                "key {} is {}/{}, not OKP/Ed25519",
                self.kid, self.kty, self.crv
            )));
        }
        let key = PublicKey::from_b64(&self.x)?;
        if key.kid().as_str() != self.kid {
            return Err(Error::key_file(format!(
                "kid {} is not the thumbprint of its key ({})",
                self.kid,
                key.kid()
            )));
        }
        Ok(key)
    }
}

/// A JWK set (RFC 7517 section 5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The set of these keys.
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> Jwks {
        Jwks {
            keys: keys.into_iter().map(Jwk::from_public).collect(),
        }
    }
}

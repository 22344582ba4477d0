//! Ed25519 keys: public keys checked on import, private keys that never print.
//!
//! A key's id (`kid`) is its RFC 7638 JWK thumbprint, so it is derived from the
//! key itself and the same everywhere: in certificates, JWKS and trust files.

use crate::b64;
use crate::error::{Error, Result};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use zeroize::Zeroizing;

/// A key id: the RFC 7638 SHA-256 thumbprint of the key's JWK, base64url.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Kid(String);

impl Kid {
    /// Wraps a kid read from outside (a header, a revocation list). It is only a
    /// name to look up: holding a `Kid` proves nothing about any key.
    pub fn new(kid: impl Into<String>) -> Kid {
        Kid(kid.into())
    }

    /// The kid as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated ed25519 public key with its kid.
///
/// Construction refuses encodings that are not points and points of small order
/// (DESIGN.md "Tokens": weak keys are refused on import).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    kid: Kid,
}

impl PublicKey {
    /// Imports 32 bytes, refusing invalid and small-order keys.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| Error::InvalidPublicKey)?;
        if key.is_weak() {
            return Err(Error::WeakPublicKey);
        }
        Ok(PublicKey::from_verifying_key(key))
    }

    /// Imports the base64url form used in tokens, JWKs and trust files.
    pub fn from_b64(text: &str) -> Result<PublicKey> {
        let bytes = b64::decode_array::<32>(text).ok_or(Error::InvalidPublicKey)?;
        PublicKey::from_bytes(&bytes)
    }

    fn from_verifying_key(key: VerifyingKey) -> PublicKey {
        let kid = thumbprint(key.as_bytes());
        PublicKey { key, kid }
    }

    /// The key's id.
    pub fn kid(&self) -> &Kid {
        &self.kid
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// The base64url form.
    pub fn to_b64(&self) -> String {
        b64::encode(self.key.as_bytes())
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("x", &self.to_b64())
            .finish()
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_b64())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        PublicKey::from_b64(&text).map_err(serde::de::Error::custom)
    }
}

/// The RFC 7638 thumbprint of an Ed25519 OKP JWK: SHA-256 over the required
/// members in lexicographic order with no whitespace (RFC 8037 appendix A.3).
fn thumbprint(public: &[u8; 32]) -> Kid {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        b64::encode(public)
    );
    Kid(b64::encode(Sha256::digest(canonical.as_bytes())))
}

/// An ed25519 private key.
///
/// It has no `Display` or `Serialize`, its `Debug` shows only the kid, and its
/// bytes are wiped when it is dropped (ed25519-dalek's `zeroize` feature).
/// The only ways out are [`PrivateKey::sign_bytes`], tokens signed with it, and
/// [`crate::keyfile::seal`], which encrypts it.
pub struct PrivateKey {
    key: SigningKey,
    public: PublicKey,
}

impl PrivateKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<PrivateKey> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|_| Error::Random)?;
        Ok(PrivateKey::from_seed(&seed))
    }

    /// The key with this 32-byte seed (RFC 8032 "private key"). Used to open key
    /// files and to build deterministic test vectors.
    pub fn from_seed(seed: &[u8; 32]) -> PrivateKey {
        let key = SigningKey::from_bytes(seed);
        let public = PublicKey::from_verifying_key(key.verifying_key());
        PrivateKey { key, public }
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The public half's kid.
    pub fn kid(&self) -> &Kid {
        self.public.kid()
    }

    /// Signs raw bytes. Tokens are signed with [`crate::sign`]; this is for the
    /// device signatures of activation and heartbeat requests.
    pub fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// The seed, for sealing into a key file.
    pub(crate) fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("kid", self.kid())
            .finish_non_exhaustive()
    }
}

/// Verifies a raw ed25519 signature strictly (no small-order keys or R, S < ℓ):
/// the device signatures of activation and heartbeat requests.
pub fn verify_bytes(key: &PublicKey, message: &[u8], signature: &[u8; 64]) -> Result<()> {
    if !crate::jws::scalar_is_canonical(signature) {
        return Err(Error::NonCanonicalSignature);
    }
    let signature = ed25519_dalek::Signature::from_bytes(signature);
    key.key
        .verify_strict(message, &signature)
        .map_err(|_| Error::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_is_the_rfc_8037_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of the appendix A.2 public key.
        let public = b64::decode_array::<32>("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .expect("test vector");
        let key = PublicKey::from_bytes(&public).expect("valid key");
        assert_eq!(
            key.kid().as_str(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn rfc_8032_seed_gives_its_public_key() {
        // RFC 8037 appendix A.1/A.2 private and public key.
        let seed = b64::decode_array::<32>("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .expect("test vector");
        let key = PrivateKey::from_seed(&seed);
        assert_eq!(
            key.public().to_b64(),
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
    }

    #[test]
    fn small_order_and_invalid_keys_are_refused() {
        // The identity point and a point of order 2 (encodings of small-order points).
        let identity = {
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        };
        let mut order_two = [0u8; 32];
        order_two[0] = 0xec;
        order_two[1..31].fill(0xff);
        order_two[31] = 0x7f;
        assert!(matches!(
            PublicKey::from_bytes(&identity),
            Err(Error::WeakPublicKey)
        ));
        assert!(matches!(
            PublicKey::from_bytes(&order_two),
            Err(Error::WeakPublicKey)
        ));
        // y = 2 is not on the curve.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert!(matches!(
            PublicKey::from_bytes(&off_curve),
            Err(Error::InvalidPublicKey)
        ));
    }

    #[test]
    fn private_key_debug_shows_no_secret() {
        let key = PrivateKey::from_seed(&[9u8; 32]);
        let shown = format!("{key:?}");
        assert!(shown.contains(key.kid().as_str()));
        assert!(!shown.contains(&b64::encode([9u8; 32])));
        assert!(!shown.contains("9, 9, 9"));
    }

    #[test]
    fn raw_signatures_verify_strictly() {
        let key = PrivateKey::from_seed(&[3u8; 32]);
        let sig = key.sign_bytes(b"hello");
        verify_bytes(key.public(), b"hello", &sig).expect("valid");
        assert!(matches!(
            verify_bytes(key.public(), b"hellp", &sig),
            Err(Error::BadSignature)
        ));
    }
}

//! Token format, signing and verification, trust chain and key files for offline
//! appliance licensing (DESIGN.md "Tokens").
//!
//! This crate does no network I/O and knows nothing of tokio, axum or sled; the
//! control plane signs with it and the appliance verifies with it.
//!
//! - [`sign`] writes a JWS compact token (`alg: EdDSA`) of one of the three kinds:
//!   [`KeyCert`], [`Lease`], [`Denial`].
//! - [`TrustStore`] pins roots, verifies certificate chains into a
//!   [`CertifiedKey`], and verifies tokens into [`Verified`] claims, the only
//!   proof of verification the rest of the product accepts.
//! - [`keyfile`] seals private keys at rest; [`Jwks`] exports public keys.

#![forbid(unsafe_code)]

pub mod b64;
mod claims;
mod clock;
mod error;
mod jwks;
mod jws;
mod key;
pub mod keyfile;
pub mod proto;
mod trust;

pub use claims::{
    Denial, DenialReason, Entitlements, KeyCert, KeyUse, Lease, LeaseStatus, TokenClaims,
};
pub use clock::UnixTime;
pub use error::{Error, Result, Segment};
pub use jwks::{Jwk, Jwks};
pub use jws::{ALG, MAX_TOKEN_LEN, Unverified, inspect, sign};

/// Certifies `new_root` as a root under `old_root` (a root rotation): the claims
/// get the new root's proof of possession, then the old root signs.
pub fn certify_root(
    old_root: &PrivateKey,
    new_root: &PrivateKey,
    mut claims: KeyCert,
) -> Result<String> {
    claims.kid = new_root.kid().to_string();
    claims.public = new_root.public().to_b64();
    claims.key_use = KeyUse::Root;
    claims.pop = None;
    let pop = new_root.sign_bytes(&claims.pop_message(old_root.kid().as_str()));
    claims.pop = Some(b64::encode(pop));
    sign(old_root, &claims)
}
pub use key::{Kid, PrivateKey, PublicKey, verify_bytes};
pub use trust::{
    CertifiedKey, DEFAULT_NBF_LEEWAY_SECS, MAX_CHAIN_LEN, SignedBySigningKey, TrustFile,
    TrustStore, Verified,
};

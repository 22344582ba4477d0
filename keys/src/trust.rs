//! The trust chain: pinned roots, certified signing keys, revoked kids, and the
//! [`Verified`] proof type that only this module constructs.
//!
//! DESIGN.md "Trust chain": appliances pin one or more root public keys; roots
//! certify signing keys (`keycert+jwt`); a lease travels with its signing key's
//! certificate, so rotating a signing key needs no appliance update. A root may
//! certify a newer root (`use: "root"`), and [`TrustStore::verify_chain_at`] walks
//! such certificates from a pinned root down to the signing key.

use crate::claims::{Denial, KeyCert, KeyUse, Lease, TokenClaims};
use crate::clock::UnixTime;
use crate::error::{Error, Result};
use crate::jwks::{Jwk, Jwks};
use crate::jws::{Parsed, truncate};
use crate::key::{Kid, PublicKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

/// How far in the future a token's `nbf` may be and still be accepted, by default:
/// the control plane's clock and the appliance's may disagree by this much.
/// Expiry gets no leeway: a skewed clock never extends a lease.
pub const DEFAULT_NBF_LEEWAY_SECS: i64 = 300;

/// The most certificates a chain may hold (root rotations plus the signing key).
pub const MAX_CHAIN_LEN: usize = 8;

/// The kinds of token a certified signing key signs: leases and denials. Sealed,
/// so [`TrustStore::verify_at`] cannot be used to pass off a certificate signed by
/// a signing key (certificates verify only through the chain, from a root).
pub trait SignedBySigningKey: TokenClaims + sealed::Sealed {}
impl SignedBySigningKey for Lease {}
impl SignedBySigningKey for Denial {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::Lease {}
    impl Sealed for crate::Denial {}
}

/// Claims whose signature, chain, revocation status and validity window have been
/// checked at some `now`.
///
/// Only this crate constructs one, so code that takes a `Verified<Lease>` cannot be
/// handed an unverified lease (STYLE.md "Verification proven by types").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T> {
    claims: T,
    signer: Kid,
    token: String,
}

impl<T> Verified<T> {
    /// The verified claims.
    pub fn claims(&self) -> &T {
        &self.claims
    }

    /// The kid of the key that signed the token.
    pub fn signer(&self) -> &Kid {
        &self.signer
    }

    /// The token exactly as verified, for storing and re-verifying later.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The claims, giving up the proof.
    pub fn into_claims(self) -> T {
        self.claims
    }
}

impl<T> Deref for Verified<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.claims
    }
}

/// A signing key whose certificate chain verified: the key that may sign leases and
/// denials, with the window and issuers its chain allows.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    cert: Verified<KeyCert>,
    key: PublicKey,
    /// Every kid on the chain from the pinned root down to this key, root first.
    path: Vec<Kid>,
    /// The intersection of the validity windows of every certificate on the chain.
    not_before: UnixTime,
    not_after: UnixTime,
}

impl CertifiedKey {
    /// The signing key's certificate.
    pub fn cert(&self) -> &Verified<KeyCert> {
        &self.cert
    }

    /// The signing key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// The certified key's kid.
    pub fn kid(&self) -> &Kid {
        self.key.kid()
    }

    /// Every kid on the chain, pinned root first, this key last.
    pub fn path(&self) -> &[Kid] {
        &self.path
    }
}

/// Pinned roots, revoked kids and the `nbf` leeway.
#[derive(Debug, Clone)]
pub struct TrustStore {
    roots: BTreeMap<Kid, PublicKey>,
    revoked: BTreeSet<Kid>,
    nbf_leeway_secs: i64,
}

impl TrustStore {
    /// A store that trusts exactly these roots.
    pub fn new(roots: impl IntoIterator<Item = PublicKey>) -> TrustStore {
        TrustStore {
            roots: roots.into_iter().map(|k| (k.kid().clone(), k)).collect(),
            revoked: BTreeSet::new(),
            nbf_leeway_secs: DEFAULT_NBF_LEEWAY_SECS,
        }
    }

    /// Sets how far in the future `nbf` may be (seconds, at least 0).
    pub fn with_nbf_leeway(mut self, secs: i64) -> TrustStore {
        self.nbf_leeway_secs = secs.max(0);
        self
    }

    /// Marks a kid revoked: nothing it signed, or that a chain through it
    /// certifies, verifies any more.
    pub fn revoke(&mut self, kid: Kid) {
        self.revoked.insert(kid);
    }

    /// Whether a kid is revoked.
    pub fn is_revoked(&self, kid: &Kid) -> bool {
        self.revoked.contains(kid)
    }

    /// The revoked kids.
    pub fn revoked(&self) -> impl Iterator<Item = &Kid> {
        self.revoked.iter()
    }

    /// The pinned roots.
    pub fn roots(&self) -> impl Iterator<Item = &PublicKey> {
        self.roots.values()
    }

    fn check_not_revoked(&self, kid: &Kid) -> Result<()> {
        if self.revoked.contains(kid) {
            return Err(Error::RevokedKey {
                kid: kid.to_string(),
            });
        }
        Ok(())
    }

    /// Verifies one certificate signed by `issuer` and checks its window at `now`;
    /// returns the claims and the certified key.
    fn verify_one_cert(
        &self,
        cert: &str,
        issuer: &PublicKey,
        now: UnixTime,
    ) -> Result<(KeyCert, PublicKey)> {
        let parsed = Parsed::parse::<KeyCert>(cert)?;
        if parsed.kid != *issuer.kid() {
            return Err(Error::UnknownKey {
                kid: truncate(parsed.kid.as_str()),
            });
        }
        let claims: KeyCert = parsed.verify_with(issuer)?;
        let key = PublicKey::from_b64(&claims.public)?;
        if key.kid().as_str() != claims.kid {
            return Err(Error::InconsistentClaims {
                reason: "kid is not the thumbprint of pub",
            });
        }
        self.check_not_revoked(key.kid())?;
        if now < claims.nbf.plus(-self.nbf_leeway_secs) {
            return Err(Error::CertificateNotYetValid {
                kid: claims.kid.clone(),
                nbf: claims.nbf.secs(),
            });
        }
        if now >= claims.exp {
            return Err(Error::CertificateExpired {
                kid: claims.kid.clone(),
                exp: claims.exp.secs(),
            });
        }
        Ok((claims, key))
    }

    /// Verifies a signing key's certificate issued directly by a pinned root.
    pub fn verify_cert_at(&self, cert: &str, now: UnixTime) -> Result<CertifiedKey> {
        self.verify_chain_at(&[cert], now)
    }

    /// [`TrustStore::verify_cert_at`] at the system clock's time.
    pub fn verify_cert(&self, cert: &str) -> Result<CertifiedKey> {
        self.verify_cert_at(cert, UnixTime::now())
    }

    /// Verifies a chain of certificates: zero or more `use: "root"` certificates,
    /// each signed by a pinned root or the previous one, then a `use: "lease"`
    /// certificate of the signing key.
    pub fn verify_chain_at(&self, chain: &[&str], now: UnixTime) -> Result<CertifiedKey> {
        if chain.is_empty() {
            return Err(Error::EmptyChain);
        }
        if chain.len() > MAX_CHAIN_LEN {
            return Err(Error::ChainTooLong {
                len: chain.len(),
                limit: MAX_CHAIN_LEN,
            });
        }
        // After a root rotation the chain starts with the old root's
        // certificate for the new one; a store that pins the new root (and
        // not the old, or the old as revoked) starts at the certificate its
        // own root issued. Trust is anchored at the first certificate whose
        // issuer is a pinned root that is not revoked; the certificates before
        // it are not used. With no such certificate the first one decides the
        // error (unknown or revoked root).
        let start = chain
            .iter()
            .position(|cert| {
                Parsed::parse::<KeyCert>(cert)
                    .map(|p| self.roots.contains_key(&p.kid) && !self.revoked.contains(&p.kid))
                    .unwrap_or(false)
            })
            .unwrap_or(0);
        let Some((leaf, intermediates)) = chain[start..].split_last() else {
            return Err(Error::EmptyChain);
        };
        // The first certificate names its issuer in the header: a pinned root.
        let first = chain[start];
        let root_kid = Parsed::parse::<KeyCert>(first)?.kid;
        let mut issuer = self
            .roots
            .get(&root_kid)
            .cloned()
            .ok_or_else(|| Error::UnknownKey {
                kid: truncate(root_kid.as_str()),
            })?;
        self.check_not_revoked(issuer.kid())?;
        let mut path = vec![issuer.kid().clone()];
        let mut not_before = UnixTime(i64::MIN);
        let mut not_after = UnixTime(i64::MAX);
        for cert in intermediates {
            let (claims, key) = self.verify_one_cert(cert, &issuer, now)?;
            expect_use(&claims, KeyUse::Root)?;
            // A new root is trusted only with the old root's signature (the
            // certificate) and its own (the proof of possession).
            let pop = claims
                .pop
                .as_deref()
                .and_then(crate::b64::decode_array::<64>)
                .ok_or_else(|| Error::RootProofOfPossession {
                    kid: claims.kid.clone(),
                })?;
            crate::key::verify_bytes(&key, &claims.pop_message(issuer.kid().as_str()), &pop)
                .map_err(|_| Error::RootProofOfPossession {
                    kid: claims.kid.clone(),
                })?;
            not_before = not_before.max(claims.nbf);
            not_after = not_after.min(claims.exp);
            issuer = key;
            path.push(issuer.kid().clone());
        }
        let (claims, key) = self.verify_one_cert(leaf, &issuer, now)?;
        expect_use(&claims, KeyUse::Lease)?;
        not_before = not_before.max(claims.nbf);
        not_after = not_after.min(claims.exp);
        path.push(key.kid().clone());
        Ok(CertifiedKey {
            key,
            cert: Verified {
                claims,
                signer: issuer.kid().clone(),
                token: (*leaf).to_owned(),
            },
            path,
            not_before,
            not_after,
        })
    }

    /// Verifies a token of kind `T` signed by a certified key, at `now`.
    ///
    /// The certified key is re-checked against this store's revocations and `now`,
    /// so a `CertifiedKey` verified earlier cannot outlive its certificate or a
    /// revocation learned since.
    pub fn verify_at<T: SignedBySigningKey>(
        &self,
        token: &str,
        signer: &CertifiedKey,
        now: UnixTime,
    ) -> Result<Verified<T>> {
        let parsed = Parsed::parse::<T>(token)?;
        if parsed.kid != *signer.kid() {
            return Err(Error::CertificateMismatch {
                token_kid: truncate(parsed.kid.as_str()),
                cert_kid: signer.kid().to_string(),
            });
        }
        for kid in &signer.path {
            self.check_not_revoked(kid)?;
        }
        if now < signer.not_before.plus(-self.nbf_leeway_secs) {
            return Err(Error::CertificateNotYetValid {
                kid: signer.kid().to_string(),
                nbf: signer.not_before.secs(),
            });
        }
        if now >= signer.not_after {
            return Err(Error::CertificateExpired {
                kid: signer.kid().to_string(),
                exp: signer.not_after.secs(),
            });
        }
        let claims: T = parsed.verify_with(signer.key())?;
        let (nbf, exp) = claims.window();
        if now < nbf.plus(-self.nbf_leeway_secs) {
            return Err(Error::NotYetValid { nbf: nbf.secs() });
        }
        if now >= exp {
            return Err(Error::Expired { exp: exp.secs() });
        }
        Ok(Verified {
            claims,
            signer: parsed.kid,
            token: token.to_owned(),
        })
    }

    /// Verifies a lease with its signing key's certificate at `now`.
    pub fn verify_lease_at(
        &self,
        lease: &str,
        cert: &str,
        now: UnixTime,
    ) -> Result<Verified<Lease>> {
        let signer = self.verify_cert_at(cert, now)?;
        self.verify_at(lease, &signer, now)
    }

    /// [`TrustStore::verify_lease_at`] at the system clock's time.
    pub fn verify_lease(&self, lease: &str, cert: &str) -> Result<Verified<Lease>> {
        self.verify_lease_at(lease, cert, UnixTime::now())
    }

    /// Verifies a denial with its signing key's certificate at `now`.
    pub fn verify_denial_at(
        &self,
        denial: &str,
        cert: &str,
        now: UnixTime,
    ) -> Result<Verified<Denial>> {
        let signer = self.verify_cert_at(cert, now)?;
        self.verify_at(denial, &signer, now)
    }

    /// [`TrustStore::verify_denial_at`] at the system clock's time.
    pub fn verify_denial(&self, denial: &str, cert: &str) -> Result<Verified<Denial>> {
        self.verify_denial_at(denial, cert, UnixTime::now())
    }

    /// The trust file: the roots as a JWKS, plus the revoked kids.
    pub fn to_file(&self) -> TrustFile {
        TrustFile {
            keys: self.roots.values().map(Jwk::from_public).collect(),
            revoked_kids: self.revoked.iter().cloned().collect(),
        }
    }

    /// Loads a trust file; every root must be a valid, strong key whose kid is its
    /// thumbprint.
    pub fn from_file(file: &TrustFile) -> Result<TrustStore> {
        if file.keys.is_empty() {
            return Err(Error::key_file("trust file pins no root key"));
        }
        let roots = file
            .keys
            .iter()
            .map(Jwk::to_public)
            .collect::<Result<Vec<_>>>()?;
        let mut store = TrustStore::new(roots);
        store.revoked = file.revoked_kids.iter().cloned().collect();
        Ok(store)
    }

    /// Parses a trust file's JSON.
    pub fn from_json(json: &str) -> Result<TrustStore> {
        let file: TrustFile = serde_json::from_str(json)
            .map_err(|e| Error::key_file(format!("trust file is not valid: {e}")))?;
        TrustStore::from_file(&file)
    }
}

fn expect_use(claims: &KeyCert, expected: KeyUse) -> Result<()> {
    if claims.key_use != expected {
        return Err(Error::CertificateUse {
            kid: claims.kid.clone(),
            expected: expected.as_str(),
            found: claims.key_use.as_str().into(),
        });
    }
    Ok(())
}

/// What appliances pin: the root public keys as a JWKS (RFC 7517 section 5) with one
/// extra member, the revoked kids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustFile {
    /// The pinned roots.
    pub keys: Vec<Jwk>,
    /// Kids that must not be trusted, whatever certifies them.
    #[serde(default)]
    pub revoked_kids: Vec<Kid>,
}

impl From<TrustFile> for Jwks {
    fn from(file: TrustFile) -> Jwks {
        Jwks { keys: file.keys }
    }
}

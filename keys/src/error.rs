//! The one error type of the `keys` crate.
//!
//! Every rejection has its own variant and a stable [`Error::code`], so that tests,
//! the CLI and other crates can tell exactly why a token was refused without
//! parsing messages.

use std::fmt;
use std::path::PathBuf;

/// Which of the three segments of a compact JWS an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// The protected header.
    Header,
    /// The claims.
    Payload,
    /// The signature.
    Signature,
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Segment::Header => "header",
            Segment::Payload => "payload",
            Segment::Signature => "signature",
        })
    }
}

/// Why a token, key or key file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token is longer than [`crate::MAX_TOKEN_LEN`]; it is refused before any parsing.
    #[error("token is {len} bytes, over the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    /// Not exactly three `.`-separated segments.
    #[error("token is not three segments separated by '.'")]
    Malformed,
    /// A segment is not canonical unpadded base64url (RFC 7515 section 2).
    #[error("{segment} is not canonical unpadded base64url")]
    Encoding { segment: Segment },
    /// A segment decoded but is not a JSON object of the expected shape.
    #[error("{segment} is not valid JSON of the expected shape: {reason}")]
    Json { segment: Segment, reason: String },
    /// The header has no `alg`.
    #[error("header has no alg")]
    MissingAlgorithm,
    /// `alg` is not `EdDSA` (RFC 8037) or its RFC 9864 name `Ed25519`.
    #[error("algorithm {alg:?} is not accepted, only EdDSA")]
    UnsupportedAlgorithm { alg: String },
    /// The header lists critical extensions; none are understood (RFC 7515 section 4.1.11).
    #[error("header marks extensions critical (crit), and none are understood")]
    UnsupportedCritical,
    /// A header that would fetch or embed a key (`jku`, `jwk`, `x5u`, `x5c`, ...):
    /// keys come only from the trust chain.
    #[error("header parameter {name} is refused: keys come only from the trust chain")]
    ForbiddenHeader { name: &'static str },
    /// `typ` is not the kind of token the caller asked for.
    #[error("token type is {found}, expected {expected}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    /// The header has no `kid`.
    #[error("header has no kid")]
    MissingKeyId,
    /// `kid` does not name a key of the trust chain.
    #[error("key {kid} is not in the trust chain")]
    UnknownKey { kid: String },
    /// `kid` names a key that has been revoked.
    #[error("key {kid} is revoked")]
    RevokedKey { kid: String },
    /// The signature segment does not decode to 64 bytes.
    #[error("signature is {len} bytes, not 64")]
    SignatureLength { len: usize },
    /// The signature's S is not below the group order ℓ (RFC 8032 section 5.1.7).
    #[error("signature scalar is not reduced below the group order")]
    NonCanonicalSignature,
    /// The signature does not verify under the named key.
    #[error("signature does not verify")]
    BadSignature,
    /// Bytes that are not an ed25519 public key.
    #[error("not a valid ed25519 public key")]
    InvalidPublicKey,
    /// A public key of small order, which would let one signature verify many messages.
    #[error("public key has small order")]
    WeakPublicKey,
    /// No certificate was offered.
    #[error("no certificate was offered")]
    EmptyChain,
    /// More certificates than [`crate::MAX_CHAIN_LEN`].
    #[error("the certificate chain has {len} certificates, over the limit of {limit}")]
    ChainTooLong { len: usize, limit: usize },
    /// The signing key's certificate is past its `exp`.
    #[error("certificate of key {kid} expired at {exp}")]
    CertificateExpired { kid: String, exp: i64 },
    /// The signing key's certificate is before its `nbf`.
    #[error("certificate of key {kid} is not valid before {nbf}")]
    CertificateNotYetValid { kid: String, nbf: i64 },
    /// The certificate does not certify this key for this use.
    #[error("certificate of key {kid} is for use {found}, not {expected}")]
    CertificateUse {
        kid: String,
        expected: &'static str,
        found: String,
    },
    /// A root-rotation certificate without a valid proof of possession by the
    /// new root.
    #[error("the certificate of root {kid} has no valid proof of possession by that key")]
    RootProofOfPossession { kid: String },
    /// The token names a different key from the certificate offered with it.
    #[error("token is signed by {token_kid} but the certificate is for {cert_kid}")]
    CertificateMismatch { token_kid: String, cert_kid: String },
    /// The token is past its `exp`.
    #[error("token expired at {exp}")]
    Expired { exp: i64 },
    /// The token is before its `nbf` (beyond the trust store's leeway).
    #[error("token is not valid before {nbf}")]
    NotYetValid { nbf: i64 },
    /// The claims contradict each other (for example `exp` before `nbf`).
    #[error("claims are inconsistent: {reason}")]
    InconsistentClaims { reason: &'static str },
    /// A key file or trust file that cannot be used.
    #[error("{reason}")]
    KeyFile { reason: String },
    /// The passphrase does not open the key file (or the file was altered).
    #[error("wrong passphrase, or the key file was altered")]
    WrongPassphrase,
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random,
}

impl Error {
    /// A stable snake_case name for the variant, used by test vectors and the CLI.
    pub fn code(&self) -> &'static str {
        match self {
            Error::TooLarge { .. } => "too_large",
            Error::Malformed => "malformed",
            Error::Encoding { .. } => "encoding",
            Error::Json { .. } => "json",
            Error::MissingAlgorithm => "missing_algorithm",
            Error::UnsupportedAlgorithm { .. } => "unsupported_algorithm",
            Error::UnsupportedCritical => "unsupported_critical",
            Error::EmptyChain => "empty_chain",
            Error::ChainTooLong { .. } => "chain_too_long",
            Error::ForbiddenHeader { .. } => "forbidden_header",
            Error::WrongType { .. } => "wrong_type",
            Error::MissingKeyId => "missing_key_id",
            Error::UnknownKey { .. } => "unknown_key",
            Error::RevokedKey { .. } => "revoked_key",
            Error::SignatureLength { .. } => "signature_length",
            Error::NonCanonicalSignature => "non_canonical_signature",
            Error::BadSignature => "bad_signature",
            Error::InvalidPublicKey => "invalid_public_key",
            Error::WeakPublicKey => "weak_public_key",
            Error::CertificateExpired { .. } => "certificate_expired",
            Error::CertificateNotYetValid { .. } => "certificate_not_yet_valid",
            Error::CertificateUse { .. } => "certificate_use",
            Error::CertificateMismatch { .. } => "certificate_mismatch",
            Error::RootProofOfPossession { .. } => "root_proof_of_possession",
            Error::Expired { .. } => "expired",
            Error::NotYetValid { .. } => "not_yet_valid",
            Error::InconsistentClaims { .. } => "inconsistent_claims",
            Error::KeyFile { .. } => "key_file",
            Error::WrongPassphrase => "wrong_passphrase",
            Error::Io { .. } => "io",
            Error::Random => "random",
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn key_file(reason: impl Into<String>) -> Error {
        Error::KeyFile {
            reason: reason.into(),
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

//! JWS compact serialization restricted to `alg: EdDSA` (RFC 7515, RFC 8037).
//!
//! [`sign`] produces `BASE64URL(header) '.' BASE64URL(claims) '.' BASE64URL(sig)`.
//! [`Parsed::parse`] performs the structural steps of verification, in the order
//! `docs/token-format.md` lists them, before any key is looked up: size, segments,
//! canonical encoding, header checks, signature shape. [`crate::trust`] then picks
//! the key, and [`Parsed::verify_with`] checks the signature and only then decodes
//! the claims.

use crate::b64;
use crate::claims::TokenClaims;
use crate::error::{Error, Result, Segment};
use crate::key::{Kid, PrivateKey, PublicKey};
use serde::Deserialize;
use serde::de::IgnoredAny;

/// The largest token accepted, in bytes; longer input is refused before parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The `alg` value emitted (RFC 8037 section 3.1).
pub const ALG: &str = "EdDSA";

/// The fully-specified name of RFC 9864, accepted as a synonym.
const ALG_RFC_9864: &str = "Ed25519";

/// The protected header as read from a token.
///
/// Parameters that fetch or carry keys are named so their mere presence (even as
/// `null`) can be refused; unknown other parameters are ignored (RFC 7515 section
/// 4). A parameter this verifier reads that is named twice is refused by serde
/// ("duplicate field").
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    typ: Option<String>,
    kid: Option<String>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
    #[serde(default, deserialize_with = "present")]
    jku: bool,
    #[serde(default, deserialize_with = "present")]
    jwk: bool,
    #[serde(default, deserialize_with = "present")]
    x5u: bool,
    #[serde(default, deserialize_with = "present")]
    x5c: bool,
    #[serde(default, deserialize_with = "present")]
    x5t: bool,
    #[serde(default, rename = "x5t#S256", deserialize_with = "present")]
    x5t_s256: bool,
}

/// `true` whenever the member is there, whatever its value (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

/// Whether JSON text is an object: serde would also read a struct from an array,
/// and RFC 7515 requires objects.
fn is_json_object(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// A token that passed the structural checks and awaits its signature check.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    /// `header '.' payload`, the JWS signing input (RFC 7515 section 5.1).
    signing_input: &'a str,
    /// The header's `kid`.
    pub(crate) kid: Kid,
    payload: Vec<u8>,
    signature: [u8; 64],
}

impl<'a> Parsed<'a> {
    /// Structural verification of a token expected to be of kind `T`.
    pub(crate) fn parse<T: TokenClaims>(token: &'a str) -> Result<Parsed<'a>> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Error::TooLarge {
                len: token.len(),
                limit: MAX_TOKEN_LEN,
            });
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Malformed);
        };
        let header_bytes = b64::decode(header_b64).ok_or(Error::Encoding {
            segment: Segment::Header,
        })?;
        if !is_json_object(&header_bytes) {
            return Err(Error::Json {
                segment: Segment::Header,
                reason: "not a JSON object".into(),
            });
        }
        let header: RawHeader = serde_json::from_slice(&header_bytes).map_err(|e| Error::Json {
            segment: Segment::Header,
            reason: e.to_string(),
        })?;
        let kid = check_header::<T>(header)?;
        let payload = b64::decode(payload_b64).ok_or(Error::Encoding {
            segment: Segment::Payload,
        })?;
        let signature_bytes = b64::decode(signature_b64).ok_or(Error::Encoding {
            segment: Segment::Signature,
        })?;
        let signature: [u8; 64] =
            signature_bytes
                .as_slice()
                .try_into()
                .map_err(|_| Error::SignatureLength {
                    len: signature_bytes.len(),
                })?;
        if !scalar_is_canonical(&signature) {
            return Err(Error::NonCanonicalSignature);
        }
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        Ok(Parsed {
            signing_input,
            kid,
            payload,
            signature,
        })
    }

    /// Verifies the signature strictly under `key`, then decodes and checks the claims.
    pub(crate) fn verify_with<T: TokenClaims>(&self, key: &PublicKey) -> Result<T> {
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature);
        key.verifying_key()
            .verify_strict(self.signing_input.as_bytes(), &signature)
            .map_err(|_| Error::BadSignature)?;
        if !is_json_object(&self.payload) {
            return Err(Error::Json {
                segment: Segment::Payload,
                reason: "not a JSON object".into(),
            });
        }
        let claims: T = serde_json::from_slice(&self.payload).map_err(|e| Error::Json {
            segment: Segment::Payload,
            reason: e.to_string(),
        })?;
        claims
            .check_consistency()
            .map_err(|reason| Error::InconsistentClaims { reason })?;
        Ok(claims)
    }
}

/// The header checks, in order: alg, crit, key-carrying parameters, typ, kid.
fn check_header<T: TokenClaims>(header: RawHeader) -> Result<Kid> {
    match header.alg.as_deref() {
        None => return Err(Error::MissingAlgorithm),
        Some(ALG | ALG_RFC_9864) => {}
        Some(other) => {
            return Err(Error::UnsupportedAlgorithm {
                alg: truncate(other),
            });
        }
    }
    // RFC 7515 section 4.1.11: a recipient that does not understand a listed
    // extension must reject the token. This verifier understands none.
    if header.crit {
        return Err(Error::UnsupportedCritical);
    }
    let forbidden = [
        ("jku", header.jku),
        ("jwk", header.jwk),
        ("x5u", header.x5u),
        ("x5c", header.x5c),
        ("x5t", header.x5t),
        ("x5t#S256", header.x5t_s256),
    ];
    if let Some((name, _)) = forbidden.iter().find(|(_, present)| *present) {
        return Err(Error::ForbiddenHeader { name });
    }
    match header.typ {
        Some(typ) if typ == T::TYP => {}
        other => {
            return Err(Error::WrongType {
                expected: T::TYP,
                found: other.as_deref().map_or("nothing".into(), truncate),
            });
        }
    }
    header.kid.map(Kid::new).ok_or(Error::MissingKeyId)
}

/// Keeps attacker-chosen text in error messages short.
pub(crate) fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Signs `claims` as a token of kind `T` with `key`, naming the key in `kid`.
pub fn sign<T: TokenClaims>(key: &PrivateKey, claims: &T) -> Result<String> {
    // The header is written by hand: three fixed members in a fixed order.
    // `typ` is a constant of this crate and the kid is base64url, so neither
    // needs JSON escaping.
    let header = format!(
        r#"{{"alg":"{ALG}","typ":"{}","kid":"{}"}}"#,
        T::TYP,
        key.kid()
    );
    let payload = serde_json::to_vec(claims).map_err(|e| Error::Json {
        segment: Segment::Payload,
        reason: e.to_string(),
    })?;
    let mut token = b64::encode(header.as_bytes());
    token.push('.');
    token.push_str(&b64::encode(payload));
    let signature = key.sign_bytes(token.as_bytes());
    token.push('.');
    token.push_str(&b64::encode(signature));
    Ok(token)
}

/// Whether the S half of a signature is below the group order ℓ (RFC 8032
/// section 5.1.7: "decode ... S, in the range 0 <= s < L").
pub(crate) fn scalar_is_canonical(signature: &[u8; 64]) -> bool {
    // ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let s = &signature[32..];
    // Compare as little-endian integers, most significant byte first.
    for i in (0..32).rev() {
        if s[i] != L[i] {
            return s[i] < L[i];
        }
    }
    false
}

/// The header and claims of a token, decoded without any verification.
///
/// For display only (`keys inspect`): nothing here is trusted.
#[derive(Debug)]
pub struct Unverified {
    /// The header as JSON.
    pub header: serde_json::Value,
    /// The claims as JSON.
    pub claims: serde_json::Value,
}

/// Decodes a token's header and claims without checking anything but the shape.
pub fn inspect(token: &str) -> Result<Unverified> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Error::TooLarge {
            len: token.len(),
            limit: MAX_TOKEN_LEN,
        });
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Malformed);
    };
    let decode = |segment, text: &str| -> Result<serde_json::Value> {
        let bytes = b64::decode(text).ok_or(Error::Encoding { segment })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Json {
            segment,
            reason: e.to_string(),
        })
    };
    Ok(Unverified {
        header: decode(Segment::Header, header)?,
        claims: decode(Segment::Payload, payload)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_scalar(s: [u8; 32]) -> [u8; 64] {
        let mut sig = [0u8; 64];
        sig[32..].copy_from_slice(&s);
        sig
    }

    #[test]
    fn scalar_bound_is_exactly_l() {
        let mut l = [0u8; 32];
        l[..16].copy_from_slice(&[
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14,
        ]);
        l[31] = 0x10;
        assert!(!scalar_is_canonical(&with_scalar(l)));
        let mut below = l;
        below[0] -= 1;
        assert!(scalar_is_canonical(&with_scalar(below)));
        let mut above = l;
        above[0] += 1;
        assert!(!scalar_is_canonical(&with_scalar(above)));
        assert!(scalar_is_canonical(&with_scalar([0; 32])));
        assert!(!scalar_is_canonical(&with_scalar([0xff; 32])));
    }
}

//! Interoperability: an independent JOSE implementation (the `jsonwebtoken`
//! crate, with its own ed25519 stack) verifies a lease we sign, using only the JWKS
//! we export, and rejects it once tampered with.

use crate::support::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
use keys::{Jwks, Lease, UnixTime};

fn fresh_lease() -> (String, Lease) {
    // jsonwebtoken checks exp against the system clock, so this lease is current.
    let now = UnixTime::now();
    let mut claims = lease_claims();
    claims.iat = now;
    claims.nbf = now;
    claims.exp = now.plus(14 * DAY);
    (keys::sign(&signing(), &claims).unwrap(), claims)
}

fn their_key(kid: &str) -> DecodingKey {
    let ours = serde_json::to_string(&Jwks::from_keys([signing().public()])).unwrap();
    let set: JwkSet = serde_json::from_str(&ours).unwrap();
    DecodingKey::from_jwk(set.find(kid).expect("kid in JWKS")).unwrap()
}

fn validation() -> Validation {
    let mut v = Validation::new(Algorithm::EdDSA);
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp", "nbf", "iat", "sub", "iss"]);
    v.validate_nbf = true;
    v
}

#[test]
fn jsonwebtoken_verifies_our_lease_with_our_jwks() {
    let (token, claims) = fresh_lease();
    let header = decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.typ.as_deref(), Some("lease+jwt"));
    let kid = header.kid.unwrap();
    assert_eq!(kid, signing().kid().as_str());
    let data = decode::<Lease>(&token, &their_key(&kid), &validation()).unwrap();
    assert_eq!(data.claims, claims);
}

#[test]
fn jsonwebtoken_rejects_our_lease_when_tampered() {
    let (token, _) = fresh_lease();
    let [h, p, s] = segments(&token);
    let mut claims: serde_json::Value =
        serde_json::from_slice(&keys::b64::decode(&p).unwrap()).unwrap();
    claims["seq"] = serde_json::json!(43);
    let tampered = format!("{h}.{}.{s}", keys::b64::encode(claims.to_string()));
    let kid = signing().kid().to_string();
    assert!(decode::<Lease>(&tampered, &their_key(&kid), &validation()).is_err());
    // And a lease by a key outside the JWKS does not verify under it.
    let stranger_token = keys::sign(&stranger(), &lease_claims()).unwrap();
    assert!(decode::<Lease>(&stranger_token, &their_key(&kid), &validation()).is_err());
}

#[test]
fn our_verifier_accepts_what_jsonwebtoken_signs() {
    // The other direction: a lease signed by jsonwebtoken from the same seed (as
    // PKCS#8) passes our verifier, so neither side relies on the other's quirks.
    let (_, claims) = fresh_lease();
    let mut pkcs8 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    pkcs8.extend_from_slice(&[0x22; 32]);
    let key = jsonwebtoken::EncodingKey::from_ed_der(&pkcs8);
    let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
    header.typ = Some("lease+jwt".into());
    header.kid = Some(signing().kid().to_string());
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let mut cert_claims = cert_claims(&signing(), keys::KeyUse::Lease);
    cert_claims.iat = claims.iat.plus(-DAY);
    cert_claims.nbf = cert_claims.iat;
    cert_claims.exp = claims.iat.plus(365 * DAY);
    let cert = keys::sign(&root(), &cert_claims).unwrap();
    let verified = trust().verify_lease_at(&token, &cert, claims.iat).unwrap();
    assert_eq!(verified.claims(), &claims);
}

//! Exhaustive single-edit attacks on a valid lease and its certificate: every
//! byte flipped (several ways), every truncation. Each must be refused.

use crate::support::*;
use keys::Lease;

fn verifies(lease: &str, cert: &str) -> bool {
    trust().verify_lease_at(lease, cert, NOW).is_ok()
}

/// The token with byte `i` XORed with `mask` (ASCII stays ASCII for masks < 0x80).
fn flipped(token: &str, i: usize, mask: u8) -> Option<String> {
    let mut bytes = token.as_bytes().to_vec();
    bytes[i] ^= mask;
    String::from_utf8(bytes).ok()
}

#[test]
fn the_unmodified_tokens_verify() {
    assert!(verifies(&lease(), &cert()));
}

#[test]
fn every_byte_flip_of_the_lease_is_refused() {
    let (lease, cert) = (lease(), cert());
    let mut tried = 0;
    for i in 0..lease.len() {
        for mask in [0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40] {
            if let Some(bad) = flipped(&lease, i, mask) {
                tried += 1;
                assert!(!verifies(&bad, &cert), "flip {mask:#x} at {i} verified");
            }
        }
    }
    assert!(tried > lease.len() * 6);
}

#[test]
fn every_byte_flip_of_the_certificate_is_refused() {
    let (lease, cert) = (lease(), cert());
    for i in 0..cert.len() {
        for mask in [0x01, 0x20] {
            let bad = flipped(&cert, i, mask).unwrap();
            assert!(
                !verifies(&lease, &bad),
                "cert flip {mask:#x} at {i} verified"
            );
        }
    }
}

#[test]
fn every_truncation_is_refused() {
    let (lease, cert) = (lease(), cert());
    for end in 0..lease.len() {
        assert!(!verifies(&lease[..end], &cert), "lease[..{end}] verified");
    }
    for end in 0..cert.len() {
        assert!(!verifies(&lease, &cert[..end]), "cert[..{end}] verified");
    }
}

#[test]
fn a_verified_lease_exposes_its_token_and_signer() {
    let token = lease();
    let verified = trust().verify_lease_at(&token, &cert(), NOW).unwrap();
    assert_eq!(verified.token(), token);
    assert_eq!(verified.signer(), signing().kid());
    let claims: &Lease = verified.claims();
    assert_eq!(claims, &lease_claims());
}

//! Property tests: arbitrary claims round-trip through sign and verify; any change
//! to the signed bytes is refused; arbitrary input never panics the verifier.

use crate::support::*;
use keys::{Entitlements, Lease, LeaseStatus, UnixTime};
use proptest::prelude::*;

prop_compose! {
    fn arb_lease()(
        sub in "\\PC{1,40}",
        cust in "\\PC{0,40}",
        iat in 1_000_000_000i64..4_000_000_000,
        offline in 60u32..(90 * 86_400),
        life in 1i64..(90 * 86_400),
        seq in any::<u64>(),
        grace in proptest::option::of(0i64..(30 * 86_400)),
        product in "\\PC{0,20}",
        features in proptest::collection::vec("\\PC{0,12}", 0..6),
        limits in proptest::collection::btree_map("[a-z]{1,8}", any::<i64>(), 0..4),
        nonce in "[A-Za-z0-9_-]{0,43}",
        hb in 1u32..3600,
    ) -> Lease {
        let iat = UnixTime(iat);
        let mut exp = iat.plus(life.min(i64::from(offline)));
        let (status, grace_expires_at) = match grace {
            Some(g) => {
                let until = iat.plus(g + 1);
                exp = exp.min(until);
                (LeaseStatus::Grace, Some(until))
            }
            None => (LeaseStatus::Active, None),
        };
        Lease {
            iss: "https://licensing.example".into(),
            sub, iat, nbf: iat, exp, jti: format!("j{seq}"), seq, status, grace_expires_at,
            fp: "fp".into(), dev: "dev".into(), cust,
            ent: Entitlements { product, features, limits },
            hb, offline, nonce,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sign_then_verify_round_trips(claims in arb_lease()) {
        let token = keys::sign(&signing(), &claims).unwrap();
        let now = claims.nbf;
        let signer = trust().verify_cert_at(&cert(), NOW).unwrap();
        // Verify at the lease's own start; the certificate's window is checked at NOW
        // above, and re-checked at `now` below only when `now` falls inside it.
        let result = trust().verify_at::<Lease>(&token, &signer, now);
        if now >= NOW.plus(-DAY) && now < NOW.plus(365 * DAY) {
            prop_assert_eq!(result.unwrap().into_claims(), claims);
        } else {
            prop_assert!(result.is_err());
        }
    }

    #[test]
    fn any_change_to_the_signed_bytes_is_refused(
        claims in arb_lease(),
        pos in any::<prop::sample::Index>(),
        mask in 1u8..0x80,
    ) {
        let token = keys::sign(&signing(), &claims).unwrap();
        let signer = trust().verify_cert_at(&cert(), NOW).unwrap();
        let mut bytes = token.into_bytes();
        let i = pos.index(bytes.len());
        bytes[i] ^= mask;
        if let Ok(bad) = String::from_utf8(bytes) {
            prop_assert!(trust().verify_at::<Lease>(&bad, &signer, claims.nbf).is_err());
        }
    }

    #[test]
    fn arbitrary_input_is_refused_without_panicking(text in "\\PC{0,300}") {
        prop_assert!(trust().verify_lease_at(&text, &text, NOW).is_err());
        let _ = keys::inspect(&text);
    }

    #[test]
    fn arbitrary_dotted_base64_is_refused(
        parts in proptest::collection::vec("[A-Za-z0-9_-]{0,120}", 3..=3),
    ) {
        let token = parts.join(".");
        prop_assert!(trust().verify_lease_at(&token, &cert(), NOW).is_err());
    }
}

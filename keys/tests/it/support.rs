//! Fixed test keys, fixed times, and a raw JWS builder for hostile tokens.
//!
//! The seeds below are public test material: never use them for anything else.

use keys::{
    DenialReason, Entitlements, KeyCert, KeyUse, Lease, LeaseStatus, PrivateKey, TrustStore,
    UnixTime,
};

/// The "now" of every vector: 2027-01-15T08:00:00Z.
pub const NOW: UnixTime = UnixTime(1_800_000_000);
pub const DAY: i64 = 86_400;

pub fn root() -> PrivateKey {
    PrivateKey::from_seed(&[0x11; 32])
}

pub fn signing() -> PrivateKey {
    PrivateKey::from_seed(&[0x22; 32])
}

/// A key nobody trusts.
pub fn stranger() -> PrivateKey {
    PrivateKey::from_seed(&[0x33; 32])
}

/// A second root, certified by the first (root rotation).
pub fn root2() -> PrivateKey {
    PrivateKey::from_seed(&[0x44; 32])
}

pub fn trust() -> TrustStore {
    TrustStore::new([root().public().clone()])
}

pub fn cert_claims(subject: &PrivateKey, key_use: KeyUse) -> KeyCert {
    KeyCert {
        iss: "test-root".into(),
        iat: NOW.plus(-DAY),
        nbf: NOW.plus(-DAY),
        exp: NOW.plus(365 * DAY),
        jti: "cert-0001".into(),
        kid: subject.kid().to_string(),
        public: subject.public().to_b64(),
        key_use,
        pop: None,
    }
}

/// The certificate of `signing()` by `root()`.
pub fn cert() -> String {
    keys::sign(&root(), &cert_claims(&signing(), KeyUse::Lease)).unwrap()
}

pub fn lease_claims() -> Lease {
    let iat = NOW.plus(-60);
    Lease {
        iss: "https://licensing.example".into(),
        sub: "lic_01J9ZQ4M7Y3R8T2V6W0X5B1C9D".into(),
        iat,
        nbf: iat,
        exp: iat.plus(14 * DAY),
        jti: "lease-0001".into(),
        seq: 42,
        status: LeaseStatus::Active,
        grace_expires_at: None,
        fp: "6Yp0y8oG0f5yO3S6Vf2sW3s8QmZb9o5mH1x4cKZ8D2k".into(),
        dev: stranger().public().to_b64(),
        cust: "cus_acme".into(),
        ent: Entitlements {
            product: "gateway".into(),
            features: vec!["vpn".into(), "ids".into()],
            limits: [("seats".to_owned(), 250), ("gbps".to_owned(), 10)]
                .into_iter()
                .collect(),
        },
        hb: 60,
        offline: 14 * 86_400,
        nonce: "bm9uY2Utb2YtdGhlLXJlcXVlc3Q".into(),
    }
}

pub fn lease() -> String {
    keys::sign(&signing(), &lease_claims()).unwrap()
}

pub fn denial_claims() -> keys::Denial {
    keys::Denial {
        iss: "https://licensing.example".into(),
        sub: "lic_01J9ZQ4M7Y3R8T2V6W0X5B1C9D".into(),
        iat: NOW.plus(-5),
        nbf: NOW.plus(-5),
        exp: NOW.plus(300),
        jti: "denial-0001".into(),
        reason: DenialReason::Revoked,
        nonce: "bm9uY2Utb2YtdGhlLXJlcXVlc3Q".into(),
    }
}

/// A compact JWS over arbitrary header and payload text, signed with `key`,
/// built without `keys::sign` so hostile headers can be made.
pub fn sign_raw(header: &str, payload: &str, key: &PrivateKey) -> String {
    let input = format!(
        "{}.{}",
        keys::b64::encode(header.as_bytes()),
        keys::b64::encode(payload.as_bytes())
    );
    let signature = key.sign_bytes(input.as_bytes());
    format!("{input}.{}", keys::b64::encode(signature))
}

/// The standard header of a token of `typ` signed by `key`.
pub fn header(typ: &str, key: &PrivateKey) -> String {
    format!(r#"{{"alg":"EdDSA","typ":"{typ}","kid":"{}"}}"#, key.kid())
}

/// Splits a token into its three segments.
pub fn segments(token: &str) -> [String; 3] {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    [parts[0].into(), parts[1].into(), parts[2].into()]
}

//! How much lease verification costs over the bare ed25519 signature check it
//! is built on (issue 2).
//!
//! The appliance verifies its lease at every start and every heartbeat, so the
//! work that `keys` adds around the signature check (base64url decoding, header
//! and claims JSON, consistency and time-window checks) should stay small next to
//! the check itself. `verify_lease` times [`keys::TrustStore::verify_at`] with
//! the signing key's certificate verified once beforehand, as the appliance does;
//! `raw_verify_strict` times ed25519-dalek's `verify_strict` alone over the same
//! signing input and signature, which is the floor. The target is
//! `verify_lease` ≤ 1.15 × `raw_verify_strict`.
//!
//! `verify_lease_with_cert` (certificate and lease, two signature checks) and the
//! signing pair `sign_lease` / `raw_sign` are there for information.
//!
//! Every benchmark is in one group, so all of them run in the same process one
//! after the other and their ratios mean something on a noisy shared machine.
//! `docs/BENCHMARKS.md` records the results and the command.

// Clippy's `allow-expect-in-tests` does not cover benches. A failed `expect` here
// is set-up data that does not verify, and panicking with its message is the
// right way to stop the benchmark.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::Signer as _;
use keys::{
    CertifiedKey, Entitlements, KeyCert, KeyUse, Lease, LeaseStatus, PrivateKey, TrustStore,
    UnixTime,
};
use std::collections::BTreeMap;
use std::hint::black_box;

/// 2026-11-23T12:00:00Z: the lease's `iat`; verification happens an hour later.
const IAT: i64 = 1_795_435_200;
const NOW: UnixTime = UnixTime(IAT + 3600);
const ROOT_SEED: [u8; 32] = [1; 32];
const SIGNING_SEED: [u8; 32] = [2; 32];
const DEVICE_SEED: [u8; 32] = [3; 32];

/// Everything the benchmarks share, built once.
struct Fixture {
    signing_key: PrivateKey,
    trust: TrustStore,
    cert: String,
    certified: CertifiedKey,
    lease: Lease,
    token: String,
}

fn fixture() -> Fixture {
    let root = PrivateKey::from_seed(&ROOT_SEED);
    let signing_key = PrivateKey::from_seed(&SIGNING_SEED);
    let device = PrivateKey::from_seed(&DEVICE_SEED);

    let cert = keys::sign(
        &root,
        &KeyCert {
            iss: "licensing.example.com".into(),
            iat: UnixTime(IAT - 86_400),
            nbf: UnixTime(IAT - 86_400),
            exp: UnixTime(IAT + 365 * 86_400),
            jti: "cert-2026-11-0001".into(),
            kid: signing_key.kid().to_string(),
            public: signing_key.public().to_b64(),
            key_use: KeyUse::Lease,
            pop: None,
        },
    )
    .expect("the certificate signs");

    // A lease as the control plane issues it: sizes match production (a 43-character
    // SHA-256 fingerprint digest, a 32-byte device key, a 22-character nonce).
    let lease = Lease {
        iss: "licensing.example.com".into(),
        sub: "lic_01JD5Q8Z3V4M9K2R7T6W1X0Y8N".into(),
        iat: UnixTime(IAT),
        nbf: UnixTime(IAT),
        exp: UnixTime(IAT + 7 * 86_400),
        jti: "lease_01JD5Q9A7B3C5D7E9F1G3H5J7K".into(),
        seq: 42,
        status: LeaseStatus::Active,
        grace_expires_at: None,
        fp: keys::b64::encode([0xa7; 32]),
        dev: device.public().to_b64(),
        cust: "cus_acme_corporation".into(),
        ent: Entitlements {
            product: "appliance-pro".into(),
            features: vec!["sso".into(), "audit-log".into(), "ha-cluster".into()],
            limits: BTreeMap::from([("seats".into(), 250), ("throughput_mbps".into(), 10_000)]),
        },
        hb: 3600,
        offline: 7 * 86_400,
        nonce: keys::b64::encode([0x5c; 16]),
    };
    assert_eq!(lease.fp.len(), 43);
    let token = keys::sign(&signing_key, &lease).expect("the lease signs");

    let trust = TrustStore::new([root.public().clone()]);
    let certified = trust
        .verify_cert_at(&cert, NOW)
        .expect("the certificate verifies");
    Fixture {
        signing_key,
        trust,
        cert,
        certified,
        lease,
        token,
    }
}

fn verify(c: &mut Criterion) {
    let f = fixture();

    // The floor: the same bytes `verify_at` checks the signature over.
    let (signing_input, signature_b64) = f
        .token
        .rsplit_once('.')
        .expect("a token has three segments");
    let signature_bytes =
        keys::b64::decode_array::<64>(signature_b64).expect("the signature is 64 bytes");
    let signature = ed25519_dalek::Signature::from_bytes(&signature_bytes);
    let verifying_key = ed25519_dalek::VerifyingKey::from_bytes(f.signing_key.public().as_bytes())
        .expect("a valid public key");
    let raw_signing_key = ed25519_dalek::SigningKey::from_bytes(&SIGNING_SEED);
    verifying_key
        .verify_strict(signing_input.as_bytes(), &signature)
        .expect("the raw signature verifies");
    f.trust
        .verify_at::<Lease>(&f.token, &f.certified, NOW)
        .expect("the lease verifies");

    let mut group = c.benchmark_group("lease");
    group.bench_function("verify_lease", |b| {
        b.iter(|| {
            f.trust
                .verify_at::<Lease>(black_box(&f.token), black_box(&f.certified), black_box(NOW))
                .expect("the lease verifies")
        });
    });
    group.bench_function("raw_verify_strict", |b| {
        b.iter(|| {
            verifying_key
                .verify_strict(black_box(signing_input.as_bytes()), black_box(&signature))
                .expect("the raw signature verifies");
        });
    });
    group.bench_function("verify_lease_with_cert", |b| {
        b.iter(|| {
            f.trust
                .verify_lease_at(black_box(&f.token), black_box(&f.cert), black_box(NOW))
                .expect("the lease and certificate verify")
        });
    });
    group.bench_function("sign_lease", |b| {
        b.iter(|| keys::sign(black_box(&f.signing_key), black_box(&f.lease)).expect("signs"));
    });
    group.bench_function("raw_sign", |b| {
        b.iter(|| raw_signing_key.sign(black_box(signing_input.as_bytes())));
    });
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);

//! The token target: everything `keys` parses from outside the process.
//!
//! The first input byte picks a mode and the verification time; the rest is the
//! input of that mode. Raw modes hand the bytes to a parser (a lease, a denial,
//! a chain, `inspect`, a trust file, a JWKS, a device request, a sealed blob,
//! base64url, RFC 3339 time). Structured modes start from valid tokens signed
//! by the fixture's keys, so the fuzzer gets past base64url and JSON at once:
//! they sign fuzzed claims or headers with the real key, or edit and splice
//! valid tokens.
//!
//! Beyond "never panics", the oracle is independent of `keys`' own checks:
//! whatever verifies must be a token whose every segment is canonical
//! base64url and whose signature `ed25519-dalek` verifies under a key of the
//! fixture, over the exact signing input; verified claims must satisfy the
//! rules of docs/token-format.md; and an edited token that verifies must be
//! byte-identical to the token it was edited from.

use ed25519_dalek::{Signature, VerifyingKey};
use keys::proto::{DeviceRequest, license_key_digest};
use keys::{
    CertifiedKey, Denial, DenialReason, Entitlements, Jwks, KeyCert, KeyUse, Lease, LeaseStatus,
    PrivateKey, PublicKey, TokenClaims, TrustStore, UnixTime, Verified, b64,
};
use std::sync::OnceLock;

/// The fixture's "now": 2027-01-15T08:00:00Z, as in `keys/tests/vectors`.
pub const NOW: UnixTime = UnixTime(1_800_000_000);
const DAY: i64 = 86_400;
const LEEWAY: i64 = keys::DEFAULT_NBF_LEEWAY_SECS;

/// The key of [`SEALED_BLOB`].
const BLOB_KEY: [u8; 32] = [7; 32];
/// `keys::keyfile::seal_blob(&BLOB_KEY, b"fuzz", b"secret")`, fixed (sealing
/// draws a random nonce) so the seed corpus is reproducible.
const SEALED_BLOB: &str = "v1.0xfzkt5VFDZUGeuGIy_PMNfpfuU_pC0K.EyZC6u6NSctrbeDBbL-wJAv0TOaOjw";

/// The verification times a selector byte picks from: inside every window,
/// before the certificates, inside the lease's offline window, past it, and
/// the extremes.
const NOWS: [UnixTime; 7] = [
    NOW,
    UnixTime(NOW.0 - 2 * DAY),
    UnixTime(NOW.0 + 13 * DAY),
    UnixTime(NOW.0 + 15 * DAY),
    UnixTime(0),
    UnixTime(i64::MIN),
    UnixTime(i64::MAX),
];

/// The modes of [`run`], in selector order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// `[chain '\n']* lease`: a lease, under the fixture's certificate when no
    /// chain line is given.
    Lease,
    /// The same for a denial.
    Denial,
    /// Certificates, one per line.
    Chain,
    /// `keys::inspect`.
    Inspect,
    /// A trust file's JSON.
    TrustFile,
    /// A JWKS's JSON.
    Jwks,
    /// A device request's JSON (`keys::proto`).
    DeviceRequest,
    /// A sealed key file's JSON, and a sealed blob.
    KeyFile,
    /// Base64url and public keys.
    Base64,
    /// RFC 3339 time.
    Time,
    /// Bytes as a lease's payload, signed by the signing key.
    SignedLeaseClaims,
    /// Bytes as a denial's payload, signed by the signing key.
    SignedDenialClaims,
    /// Bytes as a certificate's payload, signed by the root.
    SignedCertClaims,
    /// Bytes as a lease's header, signed by the signing key.
    SignedLeaseHeader,
    /// Edits to the valid lease.
    EditLease,
    /// Edits to the valid denial.
    EditDenial,
    /// Edits to one certificate of the rotated-root chain.
    EditChain,
    /// Segments of the valid tokens recombined.
    Splice,
}

impl Mode {
    pub const ALL: [Mode; 18] = [
        Mode::Lease,
        Mode::Denial,
        Mode::Chain,
        Mode::Inspect,
        Mode::TrustFile,
        Mode::Jwks,
        Mode::DeviceRequest,
        Mode::KeyFile,
        Mode::Base64,
        Mode::Time,
        Mode::SignedLeaseClaims,
        Mode::SignedDenialClaims,
        Mode::SignedCertClaims,
        Mode::SignedLeaseHeader,
        Mode::EditLease,
        Mode::EditDenial,
        Mode::EditChain,
        Mode::Splice,
    ];

    /// The selector byte of this mode at `NOWS[now]`.
    pub fn selector(self, now: usize) -> u8 {
        (now * Mode::ALL.len() + self as usize) as u8
    }
}

/// Keys and valid tokens: the material the structured modes start from and the
/// oracle checks against. The seeds are public test material.
#[derive(Debug)]
pub struct Fixture {
    pub root: PrivateKey,
    pub signing: PrivateKey,
    /// A root certified by `root` (a root rotation).
    pub root2: PrivateKey,
    /// A signing key certified by `root2`.
    pub signing2: PrivateKey,
    pub trust: TrustStore,
    /// `signing`'s certificate by `root`.
    pub cert: String,
    /// `[root -> root2, root2 -> signing2]`.
    pub rotated_chain: Vec<String>,
    pub lease_claims: Lease,
    /// `lease_claims` signed by `signing`.
    pub lease: String,
    pub denial_claims: Denial,
    /// `denial_claims` signed by `signing`.
    pub denial: String,
    /// `lease_claims` signed by `signing2`.
    pub lease2: String,
}

impl Fixture {
    fn new() -> Fixture {
        let root = PrivateKey::from_seed(&[0x11; 32]);
        let signing = PrivateKey::from_seed(&[0x22; 32]);
        let root2 = PrivateKey::from_seed(&[0x44; 32]);
        let signing2 = PrivateKey::from_seed(&[0x55; 32]);
        let cert_claims = |subject: &PrivateKey, key_use| KeyCert {
            iss: "fuzz-root".into(),
            iat: NOW.plus(-DAY),
            nbf: NOW.plus(-DAY),
            exp: NOW.plus(365 * DAY),
            jti: "cert-fuzz".into(),
            kid: subject.kid().to_string(),
            public: subject.public().to_b64(),
            key_use,
            pop: None,
        };
        let cert = keys::sign(&root, &cert_claims(&signing, KeyUse::Lease)).expect("cert");
        let rotated_chain = vec![
            keys::certify_root(&root, &root2, cert_claims(&root2, KeyUse::Root)).expect("root2"),
            keys::sign(&root2, &cert_claims(&signing2, KeyUse::Lease)).expect("cert2"),
        ];
        let iat = NOW.plus(-60);
        let lease_claims = Lease {
            iss: "https://licensing.example".into(),
            sub: "lic_01J9ZQ4M7Y3R8T2V6W0X5B1C9D".into(),
            iat,
            nbf: iat,
            exp: iat.plus(14 * DAY),
            jti: "lease-fuzz".into(),
            seq: 42,
            status: LeaseStatus::Active,
            grace_expires_at: None,
            fp: "6Yp0y8oG0f5yO3S6Vf2sW3s8QmZb9o5mH1x4cKZ8D2k".into(),
            dev: PrivateKey::from_seed(&[0x33; 32]).public().to_b64(),
            cust: "cus_acme".into(),
            ent: Entitlements {
                product: "gateway".into(),
                features: vec!["vpn".into()],
                limits: [("seats".to_owned(), 250)].into_iter().collect(),
            },
            hb: 60,
            offline: 14 * 86_400,
            nonce: "bm9uY2Utb2YtdGhlLXJlcXVlc3Q".into(),
        };
        let denial_claims = Denial {
            iss: "https://licensing.example".into(),
            sub: lease_claims.sub.clone(),
            iat,
            nbf: iat,
            exp: iat.plus(DAY),
            jti: "denial-fuzz".into(),
            reason: DenialReason::Revoked,
            nonce: lease_claims.nonce.clone(),
        };
        Fixture {
            trust: TrustStore::new([root.public().clone()]),
            lease: keys::sign(&signing, &lease_claims).expect("lease"),
            denial: keys::sign(&signing, &denial_claims).expect("denial"),
            lease2: keys::sign(&signing2, &lease_claims).expect("lease2"),
            cert,
            rotated_chain,
            lease_claims,
            denial_claims,
            root,
            signing,
            root2,
            signing2,
        }
    }

    /// The certified key of `cert` (verified once; `verify_at` re-checks its
    /// window at every call).
    fn signer(&self) -> &CertifiedKey {
        static SIGNER: OnceLock<CertifiedKey> = OnceLock::new();
        SIGNER.get_or_init(|| {
            self.trust
                .verify_chain_at(&[&self.cert], NOW)
                .expect("fixture certificate")
        })
    }

    /// The keys that signed something in the fixture.
    fn known_keys(&self) -> [&PublicKey; 4] {
        [
            self.root.public(),
            self.signing.public(),
            self.root2.public(),
            self.signing2.public(),
        ]
    }
}

/// The fixture, built once per process.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(Fixture::new)
}

/// The target: see the module documentation.
pub fn run(data: &[u8]) {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let mode = Mode::ALL[usize::from(selector) % Mode::ALL.len()];
    let now = NOWS[usize::from(selector) / Mode::ALL.len() % NOWS.len()];
    let f = fixture();
    let text = String::from_utf8_lossy(input);
    match mode {
        Mode::Lease => raw_signed::<Lease>(f, &text, now),
        Mode::Denial => raw_signed::<Denial>(f, &text, now),
        Mode::Chain => {
            let chain: Vec<&str> = text.split('\n').collect();
            if let Ok(signer) = f.trust.verify_chain_at(&chain, now) {
                check_chain(f, &chain, &signer, now, false);
            }
        }
        Mode::Inspect => {
            if let Ok(u) = keys::inspect(&text) {
                // `inspect` is display-only: it must still have refused
                // anything that is not three segments with JSON in the first two.
                assert_eq!(text.split('.').count(), 3, "inspect accepted {text:?}");
                let _ = (u.header.to_string(), u.claims.to_string());
            }
        }
        Mode::TrustFile => {
            if let Ok(store) = TrustStore::from_json(&text) {
                let file = store.to_file();
                assert!(!file.keys.is_empty(), "a trust file without roots loaded");
                // Reloading what was loaded is the same store.
                let again = TrustStore::from_file(&file).expect("a loaded trust file reloads");
                assert_eq!(again.to_file(), file);
                if let Ok(lease) = store.verify_lease_at(&f.lease, &f.cert, now) {
                    // Only a store that pins the fixture's root, with neither
                    // key revoked, accepts the fixture's lease.
                    assert!(store.roots().any(|k| k == f.root.public()));
                    assert!(!store.is_revoked(f.root.kid()) && !store.is_revoked(f.signing.kid()));
                    assert_eq!(lease.claims(), &f.lease_claims);
                }
            }
        }
        Mode::Jwks => {
            if let Ok(jwks) = serde_json::from_str::<Jwks>(&text) {
                for jwk in &jwks.keys {
                    if let Ok(key) = jwk.to_public() {
                        assert_eq!(key.kid().as_str(), jwk.kid, "kid is not the thumbprint");
                        assert_eq!(key.to_b64(), jwk.x, "x is not canonical");
                        assert_eq!(jwk.kty, "OKP");
                        assert_eq!(jwk.crv, "Ed25519");
                    }
                }
            }
        }
        Mode::DeviceRequest => {
            if let Ok(request) = serde_json::from_str::<DeviceRequest>(&text) {
                let shape = request.check_shape();
                let digest = license_key_digest("lk_fuzz");
                let _ = request.signing_input(&digest);
                if let Ok(device) = request.verify(&digest) {
                    // A signature verifies only under the request's own key.
                    assert_eq!(device.to_b64(), request.device_key);
                    let _ = shape;
                }
            }
        }
        Mode::KeyFile => {
            if let Ok(sealed) = keys::keyfile::SealedKey::from_json(&text) {
                let _ = (sealed.kid(), sealed.public_b64(), sealed.role());
                let _ = keys::keyfile::SealedKey::from_json(&sealed.to_json())
                    .expect("a loaded key file reloads");
            }
            // The AEAD: only the seed blob's exact ciphertext opens, to its
            // plaintext; an edited blob opens to nothing.
            if let Ok(plain) = keys::keyfile::open_blob(&BLOB_KEY, b"fuzz", &text) {
                assert_eq!(&plain[..], b"secret", "an edited blob opened");
            }
        }
        Mode::Base64 => {
            if let Some(bytes) = b64::decode(&text) {
                assert_eq!(
                    b64::encode(&bytes),
                    text,
                    "non-canonical base64url accepted"
                );
            }
            if let Ok(key) = PublicKey::from_b64(&text) {
                assert_eq!(key.to_b64(), text, "non-canonical public key accepted");
            }
        }
        Mode::Time => {
            if let Some(t) = UnixTime::parse_rfc3339(&text) {
                let shown = t.to_rfc3339();
                if let Some(back) = UnixTime::parse_rfc3339(&shown) {
                    assert_eq!(back, t, "{text:?} -> {shown:?}");
                }
            }
        }
        Mode::SignedLeaseClaims => {
            let token = sign_raw(&f.signing, &header("lease+jwt", &f.signing), input);
            if let Ok(v) = f.trust.verify_at::<Lease>(&token, f.signer(), now) {
                check_lease(&v, now);
            }
        }
        Mode::SignedDenialClaims => {
            let token = sign_raw(&f.signing, &header("denial+jwt", &f.signing), input);
            if let Ok(v) = f.trust.verify_at::<Denial>(&token, f.signer(), now) {
                check_window(v.claims(), now);
            }
        }
        Mode::SignedCertClaims => {
            let token = sign_raw(&f.root, &header("keycert+jwt", &f.root), input);
            if let Ok(signer) = f.trust.verify_chain_at(&[&token], now) {
                check_chain(f, &[&token], &signer, now, true);
                let cert = signer.cert().claims();
                assert_eq!(cert.key_use, KeyUse::Lease);
                check_window(cert, now);
            }
        }
        Mode::SignedLeaseHeader => {
            let payload = serde_json::to_vec(&f.lease_claims).expect("claims");
            let token = sign_raw(&f.signing, input, &payload);
            if let Ok(v) = f.trust.verify_at::<Lease>(&token, f.signer(), now) {
                check_header(&token, "lease+jwt", f.signing.public());
                assert_eq!(v.claims(), &f.lease_claims);
            }
        }
        Mode::EditLease => {
            let edited = edit(&f.lease, input);
            if f.trust.verify_at::<Lease>(&edited, f.signer(), now).is_ok() {
                assert_eq!(edited, f.lease, "an edited lease verified");
            }
        }
        Mode::EditDenial => {
            let edited = edit(&f.denial, input);
            if f.trust
                .verify_at::<Denial>(&edited, f.signer(), now)
                .is_ok()
            {
                assert_eq!(edited, f.denial, "an edited denial verified");
            }
        }
        Mode::EditChain => {
            let Some((&which, edits)) = input.split_first() else {
                return;
            };
            let mut chain = f.rotated_chain.clone();
            let i = usize::from(which) % chain.len();
            chain[i] = edit(&chain[i], edits);
            let refs: Vec<&str> = chain.iter().map(String::as_str).collect();
            if let Ok(signer) = f.trust.verify_chain_at(&refs, now) {
                assert_eq!(chain, f.rotated_chain, "an edited chain verified");
                check_chain(f, &refs, &signer, now, false);
                // The lease signed by the rotated signing key verifies too.
                let lease = f.trust.verify_at::<Lease>(&f.lease2, &signer, now);
                assert_eq!(
                    lease.is_ok(),
                    now >= f.lease_claims.nbf.plus(-LEEWAY) && now < f.lease_claims.exp
                );
            }
        }
        Mode::Splice => splice(f, input, now),
    }
}

/// A lease or denial from raw text: `chain lines, then the token`.
fn raw_signed<T: keys::SignedBySigningKey + std::fmt::Debug>(
    f: &Fixture,
    text: &str,
    now: UnixTime,
) {
    let mut lines: Vec<&str> = text.split('\n').collect();
    let token = lines.pop().unwrap_or_default();
    let signer = if lines.is_empty() {
        f.signer().clone()
    } else {
        match f.trust.verify_chain_at(&lines, now) {
            Ok(signer) => {
                check_chain(f, &lines, &signer, now, false);
                signer
            }
            Err(_) => return,
        }
    };
    if let Ok(v) = f.trust.verify_at::<T>(token, &signer, now) {
        assert_eq!(v.token(), token);
        assert_eq!(v.signer(), signer.kid());
        check_signed_by(token, signer.key());
        check_header(token, T::TYP, signer.key());
        check_window(v.claims(), now);
    }
}

/// A verified chain: every certificate signed by the previous key, from the
/// pinned root down to the certified key, each a key of the fixture.
///
/// `any_leaf`: the leaf certificate was signed by the fixture's root over
/// fuzzed claims, so it may certify any key.
fn check_chain(f: &Fixture, chain: &[&str], signer: &CertifiedKey, now: UnixTime, any_leaf: bool) {
    let mut issuer = f.root.public().clone();
    for cert in chain {
        check_signed_by(cert, &issuer);
        check_header(cert, "keycert+jwt", &issuer);
        let claims = keys::inspect(cert)
            .expect("a verified certificate inspects")
            .claims;
        let public = claims["pub"].as_str().expect("pub");
        issuer = PublicKey::from_b64(public).expect("a certified key parses");
        assert_eq!(claims["kid"].as_str(), Some(issuer.kid().as_str()));
        let (nbf, exp) = (
            claims["nbf"].as_i64().expect("nbf"),
            claims["exp"].as_i64().expect("exp"),
        );
        assert!(
            now.0 >= nbf.saturating_sub(LEEWAY) && now.0 < exp,
            "certificate outside its window"
        );
    }
    assert_eq!(
        &issuer,
        signer.key(),
        "the chain does not end in the certified key"
    );
    assert!(
        any_leaf || f.known_keys().contains(&signer.key()),
        "{signer:?}"
    );
}

/// An independent check of a verified token: three canonical base64url
/// segments, and a strict ed25519 signature by `key` over `header.payload`.
fn check_signed_by(token: &str, key: &PublicKey) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token:?}");
    for part in &parts {
        let bytes = b64::decode(part).expect("a verified segment decodes");
        assert_eq!(&b64::encode(&bytes), part, "non-canonical segment verified");
    }
    let signature: [u8; 64] = b64::decode(parts[2])
        .expect("signature")
        .try_into()
        .expect("a verified signature is 64 bytes");
    let signing_input = &token[..parts[0].len() + 1 + parts[1].len()];
    VerifyingKey::from_bytes(key.as_bytes())
        .expect("key")
        .verify_strict(signing_input.as_bytes(), &Signature::from_bytes(&signature))
        .expect("a token verified whose signature ed25519-dalek refuses");
}

/// The header of a verified token says what docs/token-format.md requires.
fn check_header(token: &str, typ: &str, key: &PublicKey) {
    let header = keys::inspect(token).expect("inspect").header;
    let object = header.as_object().expect("a verified header is an object");
    assert!(
        matches!(object["alg"].as_str(), Some("EdDSA" | "Ed25519")),
        "{header}"
    );
    assert_eq!(object["typ"].as_str(), Some(typ), "{header}");
    assert_eq!(object["kid"].as_str(), Some(key.kid().as_str()), "{header}");
    for forbidden in ["crit", "jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256"] {
        assert!(!object.contains_key(forbidden), "{header}");
    }
}

/// The window rules: `nbf < exp`, `iat < exp`, and `now` inside the window.
fn check_window<T: TokenClaims>(claims: &T, now: UnixTime) {
    let (nbf, exp) = claims.window();
    assert!(nbf < exp && claims.issued_at() < exp);
    assert!(
        now >= nbf.plus(-LEEWAY) && now < exp,
        "verified outside its window"
    );
}

/// The lease rules of DESIGN.md "Lease expiry" and "License states".
fn check_lease(v: &Verified<Lease>, now: UnixTime) {
    let lease = v.claims();
    check_window(lease, now);
    assert!(lease.exp <= lease.iat.plus(i64::from(lease.offline)));
    match (lease.status, lease.grace_expires_at) {
        (LeaseStatus::Active, None) => {}
        (LeaseStatus::Grace, Some(until)) => assert!(lease.exp <= until),
        other => panic!("inconsistent lease verified: {other:?}"),
    }
}

fn header(typ: &str, key: &PrivateKey) -> Vec<u8> {
    format!(r#"{{"alg":"EdDSA","typ":"{typ}","kid":"{}"}}"#, key.kid()).into_bytes()
}

/// A JWS over arbitrary header and payload bytes, signed for real.
fn sign_raw(key: &PrivateKey, header: &[u8], payload: &[u8]) -> String {
    let mut token = b64::encode(header);
    token.push('.');
    token.push_str(&b64::encode(payload));
    let signature = key.sign_bytes(token.as_bytes());
    token.push('.');
    token.push_str(&b64::encode(signature));
    token
}

/// Applies edits to a token's bytes: each 4-byte chunk is `op, byte, pos_lo,
/// pos_hi` (replace, insert, delete, truncate, flip a bit).
pub fn edit(token: &str, edits: &[u8]) -> String {
    let mut bytes = token.as_bytes().to_vec();
    for chunk in edits.chunks_exact(4) {
        let (op, value) = (chunk[0], chunk[1]);
        let pos = usize::from(u16::from_le_bytes([chunk[2], chunk[3]]));
        let len = bytes.len();
        match op % 5 {
            0 if len > 0 => bytes[pos % len] = value,
            1 => bytes.insert(pos % (len + 1), value),
            2 if len > 0 => {
                bytes.remove(pos % len);
            }
            3 => bytes.truncate(pos % (len + 1)),
            4 if len > 0 => bytes[pos % len] ^= 1 << (value % 8),
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Recombines the segments of the fixture's tokens (one input byte per
/// segment picks its donor), then verifies the result as each kind: only an
/// unchanged original may verify.
fn splice(f: &Fixture, input: &[u8], now: UnixTime) {
    let donors = [&f.lease, &f.denial, &f.cert, &f.lease2, &f.rotated_chain[0]];
    let segments: Vec<Vec<&str>> = donors.iter().map(|t| t.split('.').collect()).collect();
    let pick = |i: usize| {
        let donor = input.get(i).map_or(i, |b| usize::from(*b)) % donors.len();
        segments[donor][i]
    };
    let token = format!("{}.{}.{}", pick(0), pick(1), pick(2));
    if f.trust.verify_at::<Lease>(&token, f.signer(), now).is_ok() {
        assert_eq!(token, f.lease, "a spliced lease verified");
    }
    if f.trust.verify_at::<Denial>(&token, f.signer(), now).is_ok() {
        assert_eq!(token, f.denial, "a spliced denial verified");
    }
    if f.trust.verify_chain_at(&[&token], now).is_ok() {
        assert_eq!(token, f.cert, "a spliced certificate verified");
    }
}

/// Seed inputs for every mode: the starting corpus (`fuzz/corpus/tokens`) and
/// the CI run's base. Names say what each is.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let f = fixture();
    let with = |mode: Mode, body: &[u8]| {
        let mut v = vec![mode.selector(0)];
        v.extend_from_slice(body);
        v
    };
    let lease_claims = serde_json::to_vec(&f.lease_claims).expect("claims");
    let mut grace = f.lease_claims.clone();
    grace.status = LeaseStatus::Grace;
    grace.grace_expires_at = Some(grace.exp);
    let denial_claims = serde_json::to_vec(&f.denial_claims).expect("claims");
    let cert_claims = keys::inspect(&f.cert).expect("cert").claims.to_string();
    let device = PrivateKey::from_seed(&[0x66; 32]);
    let request = DeviceRequest::sign(
        keys::proto::RequestKind::Heartbeat,
        "lic_fuzz",
        "lk_fuzz",
        [("machine_id".to_owned(), "abc".to_owned())].into(),
        &device,
        b64::encode([9u8; 16]),
        1,
        "1.0.0".into(),
        NOW.0,
    );
    vec![
        ("lease".into(), with(Mode::Lease, f.lease.as_bytes())),
        (
            "lease-with-chain".into(),
            with(Mode::Lease, format!("{}\n{}", f.cert, f.lease).as_bytes()),
        ),
        (
            "lease-rotated".into(),
            with(
                Mode::Lease,
                format!("{}\n{}", f.rotated_chain.join("\n"), f.lease2).as_bytes(),
            ),
        ),
        ("lease-late".into(), {
            let mut v = with(Mode::Lease, f.lease.as_bytes());
            v[0] = Mode::Lease.selector(3);
            v
        }),
        ("denial".into(), with(Mode::Denial, f.denial.as_bytes())),
        ("chain".into(), with(Mode::Chain, f.cert.as_bytes())),
        (
            "chain-rotated".into(),
            with(Mode::Chain, f.rotated_chain.join("\n").as_bytes()),
        ),
        ("inspect".into(), with(Mode::Inspect, f.lease.as_bytes())),
        (
            "trust-file".into(),
            with(
                Mode::TrustFile,
                serde_json::to_string(&f.trust.to_file())
                    .expect("trust")
                    .as_bytes(),
            ),
        ),
        (
            "jwks".into(),
            with(
                Mode::Jwks,
                serde_json::to_string(&Jwks::from_keys(f.known_keys()))
                    .expect("jwks")
                    .as_bytes(),
            ),
        ),
        (
            "device-request".into(),
            with(
                Mode::DeviceRequest,
                serde_json::to_string(&request).expect("request").as_bytes(),
            ),
        ),
        ("blob".into(), with(Mode::KeyFile, SEALED_BLOB.as_bytes())),
        (
            "base64".into(),
            with(Mode::Base64, f.signing.public().to_b64().as_bytes()),
        ),
        (
            "time".into(),
            with(Mode::Time, b"2027-01-15T08:00:00+01:00"),
        ),
        (
            "signed-lease-claims".into(),
            with(Mode::SignedLeaseClaims, &lease_claims),
        ),
        (
            "signed-grace-claims".into(),
            with(
                Mode::SignedLeaseClaims,
                &serde_json::to_vec(&grace).expect("grace"),
            ),
        ),
        (
            "signed-denial-claims".into(),
            with(Mode::SignedDenialClaims, &denial_claims),
        ),
        (
            "signed-cert-claims".into(),
            with(Mode::SignedCertClaims, cert_claims.as_bytes()),
        ),
        (
            "signed-lease-header".into(),
            with(Mode::SignedLeaseHeader, &header("lease+jwt", &f.signing)),
        ),
        ("edit-lease".into(), with(Mode::EditLease, &[4, 1, 10, 0])),
        (
            "edit-denial".into(),
            with(Mode::EditDenial, &[0, b'A', 200, 0]),
        ),
        (
            "edit-chain".into(),
            with(Mode::EditChain, &[1, 2, 0, 30, 0]),
        ),
        ("splice".into(), with(Mode::Splice, &[0, 1, 0])),
    ]
}

//! Golden test vectors: valid tokens with their claims, and the hostile corpus.
//!
//! The files under `keys/tests/vectors/` are the contract other implementations
//! can test against (`docs/token-format.md`). This module generates them
//! deterministically (ed25519 signatures are deterministic and every time and id
//! is fixed); `UPDATE_VECTORS=1 cargo test -p keys --test it vectors_on_disk`
//! rewrites them (run alone: the other vector tests read the files), and otherwise
//! the test fails if the code would produce different bytes, so a format change
//! always shows up as a diff of the vectors.

use crate::support::*;
use keys::{
    Denial, KeyCert, KeyUse, Lease, LeaseStatus, PrivateKey, TrustFile, TrustStore, UnixTime,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One vector file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Case {
    description: String,
    /// The kind the verifier is asked to accept.
    expect_typ: String,
    token: String,
    /// Certificates, pinned-root side first; empty when the token is itself a keycert.
    chain: Vec<String>,
    /// The verification time, unix seconds.
    now: i64,
    /// A trust file to use instead of `trust.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trust: Option<TrustFile>,
    /// Valid vectors: the verified claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claims: Option<Value>,
    /// Hostile vectors: the `keys::Error::code` of the refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// Verifies a case as a relying party would, returning the claims as JSON.
fn verify(case: &Case) -> keys::Result<Value> {
    let trust = match &case.trust {
        Some(file) => TrustStore::from_file(file)?,
        None => trust(),
    };
    let now = UnixTime(case.now);
    let mut chain: Vec<&str> = case.chain.iter().map(String::as_str).collect();
    let value = match case.expect_typ.as_str() {
        "keycert+jwt" => {
            chain.push(&case.token);
            serde_json::to_value(trust.verify_chain_at(&chain, now)?.cert().claims())
        }
        "lease+jwt" => {
            let signer = trust.verify_chain_at(&chain, now)?;
            serde_json::to_value(
                trust
                    .verify_at::<Lease>(&case.token, &signer, now)?
                    .claims(),
            )
        }
        "denial+jwt" => {
            let signer = trust.verify_chain_at(&chain, now)?;
            serde_json::to_value(
                trust
                    .verify_at::<Denial>(&case.token, &signer, now)?
                    .claims(),
            )
        }
        other => panic!("unknown expect_typ {other}"),
    };
    Ok(value.unwrap())
}

fn valid(description: &str, expect_typ: &str, token: String, chain: Vec<String>) -> Case {
    let mut case = Case {
        description: description.into(),
        expect_typ: expect_typ.into(),
        token,
        chain,
        now: NOW.secs(),
        trust: None,
        claims: None,
        error: None,
    };
    case.claims = Some(verify(&case).unwrap_or_else(|e| panic!("{description}: {e}")));
    case
}

fn hostile(description: &str, expect_typ: &str, token: String, error: &str) -> Case {
    let chain = if expect_typ == "keycert+jwt" {
        vec![]
    } else {
        vec![cert()]
    };
    Case {
        description: description.into(),
        expect_typ: expect_typ.into(),
        token,
        chain,
        now: NOW.secs(),
        trust: None,
        claims: None,
        error: Some(error.into()),
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap()
}

fn lease_json() -> String {
    json(&lease_claims())
}

/// `S + ℓ`: the same signature made malleable (RFC 8032 section 5.1.7 forbids it).
fn add_group_order(token: &str) -> String {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let [h, p, s] = segments(token);
    let mut sig = keys::b64::decode(&s).unwrap();
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
        sig[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "S + L overflowed; pick another message");
    format!("{h}.{p}.{}", keys::b64::encode(sig))
}

fn with_trust(mut case: Case, trust: TrustStore) -> Case {
    case.trust = Some(trust.to_file());
    case
}

fn signed_lease(edit: impl FnOnce(&mut Lease)) -> String {
    let mut claims = lease_claims();
    edit(&mut claims);
    keys::sign(&signing(), &claims).unwrap()
}

fn cert_with(subject: &PrivateKey, issuer: &PrivateKey, edit: impl FnOnce(&mut KeyCert)) -> String {
    let mut claims = cert_claims(subject, KeyUse::Lease);
    edit(&mut claims);
    keys::sign(issuer, &claims).unwrap()
}

/// Every vector, by file name relative to `tests/vectors/`.
fn generate() -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let lease_hdr = header("lease+jwt", &signing());
    let sk = signing();

    files.insert(
        "keys.json".to_owned(),
        serde_json::to_string_pretty(&serde_json::json!({
            "warning": "public test material: these seeds sign the vectors and nothing else",
            "root": {"seed": keys::b64::encode([0x11; 32]), "pub": root().public().to_b64(), "kid": root().kid()},
            "signing": {"seed": keys::b64::encode([0x22; 32]), "pub": sk.public().to_b64(), "kid": sk.kid()},
            "stranger": {"seed": keys::b64::encode([0x33; 32]), "pub": stranger().public().to_b64(), "kid": stranger().kid()},
            "root2": {"seed": keys::b64::encode([0x44; 32]), "pub": root2().public().to_b64(), "kid": root2().kid()},
        }))
        .unwrap(),
    );
    files.insert(
        "trust.json".to_owned(),
        serde_json::to_string_pretty(&trust().to_file()).unwrap(),
    );

    let mut valid_cases = vec![
        (
            "cert",
            valid(
                "certificate of the signing key by the root",
                "keycert+jwt",
                cert(),
                vec![],
            ),
        ),
        (
            "lease-active",
            valid("an active lease", "lease+jwt", lease(), vec![cert()]),
        ),
        (
            "lease-grace",
            valid(
                "a lease in grace, ending at grace_expires_at",
                "lease+jwt",
                signed_lease(|l| {
                    l.status = LeaseStatus::Grace;
                    l.grace_expires_at = Some(NOW.plus(3 * DAY));
                    l.exp = NOW.plus(3 * DAY);
                }),
                vec![cert()],
            ),
        ),
        (
            "denial-revoked",
            valid(
                "a signed denial",
                "denial+jwt",
                keys::sign(&sk, &denial_claims()).unwrap(),
                vec![cert()],
            ),
        ),
        (
            "lease-via-rotated-root",
            valid(
                "a lease whose signing key is certified by a new root that the pinned root certified",
                "lease+jwt",
                lease(),
                vec![
                    keys::certify_root(&root(), &root2(), cert_claims(&root2(), KeyUse::Root))
                        .unwrap(),
                    keys::sign(&root2(), &cert_claims(&sk, KeyUse::Lease)).unwrap(),
                ],
            ),
        ),
        (
            "lease-nbf-within-leeway",
            valid(
                "a lease whose nbf is 299 s ahead of the verifier's clock (leeway 300 s)",
                "lease+jwt",
                signed_lease(|l| {
                    l.iat = NOW.plus(299);
                    l.nbf = NOW.plus(299);
                    l.exp = NOW.plus(299 + 14 * DAY);
                }),
                vec![cert()],
            ),
        ),
    ];
    let alg_rfc9864 = sign_raw(
        &format!(
            r#"{{"alg":"Ed25519","typ":"lease+jwt","kid":"{}"}}"#,
            sk.kid()
        ),
        &lease_json(),
        &sk,
    );
    valid_cases.push((
        "lease-alg-ed25519",
        valid(
            "alg Ed25519, the RFC 9864 name, is accepted",
            "lease+jwt",
            alg_rfc9864,
            vec![cert()],
        ),
    ));
    for (name, case) in valid_cases {
        files.insert(
            format!("valid/{name}.json"),
            serde_json::to_string_pretty(&case).unwrap(),
        );
    }

    let kid = sk.kid().to_string();
    let hdr = |extra: &str| format!(r#"{{"alg":"EdDSA","typ":"lease+jwt","kid":"{kid}"{extra}}}"#);
    let [lh, lp, ls] = segments(&lease());
    let mut revoked_signing = trust();
    revoked_signing.revoke(sk.kid().clone());
    let mut revoked_root = trust();
    revoked_root.revoke(root().kid().clone());
    let huge =
        signed_lease(|l| l.ent.features = (0..2000).map(|i| format!("feature-{i}")).collect());
    let weak_root = TrustFile {
        keys: vec![keys::Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: keys::b64::encode({
                let mut b = [0u8; 32];
                b[0] = 1;
                b
            }),
            kid: "identity-point".into(),
            key_use: None,
            alg: None,
        }],
        revoked_kids: vec![],
    };
    let mut weak_trust_case = hostile(
        "the trust file pins a small-order (identity) public key",
        "lease+jwt",
        lease(),
        "weak_public_key",
    );
    weak_trust_case.trust = Some(weak_root);
    let small_order_cert = sign_raw(
        &header("keycert+jwt", &root()),
        &serde_json::json!({
            "iss": "test-root", "iat": NOW.plus(-DAY), "nbf": NOW.plus(-DAY), "exp": NOW.plus(DAY),
            "jti": "c", "kid": "x", "use": "lease",
            "pub": keys::b64::encode({let mut b = [0u8; 32]; b[0] = 1; b}),
        })
        .to_string(),
        &root(),
    );

    let hostile_cases: Vec<(&str, Case)> = vec![
        (
            "alg-none",
            hostile(
                "alg none with an empty signature",
                "lease+jwt",
                format!(
                    "{}.{lp}.",
                    keys::b64::encode(r#"{"alg":"none","typ":"lease+jwt"}"#)
                ),
                "unsupported_algorithm",
            ),
        ),
        (
            "alg-hs256",
            hostile(
                "alg HS256 (a MAC keyed with the public key, the classic confusion)",
                "lease+jwt",
                format!(
                    "{}.{lp}.{}",
                    keys::b64::encode(format!(
                        r#"{{"alg":"HS256","typ":"lease+jwt","kid":"{kid}"}}"#
                    )),
                    keys::b64::encode([7u8; 32])
                ),
                "unsupported_algorithm",
            ),
        ),
        (
            "alg-rs256",
            hostile(
                "alg RS256",
                "lease+jwt",
                sign_raw(
                    &format!(r#"{{"alg":"RS256","typ":"lease+jwt","kid":"{kid}"}}"#),
                    &lease_json(),
                    &sk,
                ),
                "unsupported_algorithm",
            ),
        ),
        (
            "alg-lowercase",
            hostile(
                "alg eddsa in the wrong case",
                "lease+jwt",
                sign_raw(
                    &format!(r#"{{"alg":"eddsa","typ":"lease+jwt","kid":"{kid}"}}"#),
                    &lease_json(),
                    &sk,
                ),
                "unsupported_algorithm",
            ),
        ),
        (
            "alg-missing",
            hostile(
                "no alg",
                "lease+jwt",
                sign_raw(
                    &format!(r#"{{"typ":"lease+jwt","kid":"{kid}"}}"#),
                    &lease_json(),
                    &sk,
                ),
                "missing_algorithm",
            ),
        ),
        (
            "alg-duplicate",
            hostile(
                "alg twice, EdDSA then none (parser differential)",
                "lease+jwt",
                sign_raw(
                    &format!(r#"{{"alg":"EdDSA","alg":"none","typ":"lease+jwt","kid":"{kid}"}}"#),
                    &lease_json(),
                    &sk,
                ),
                "json",
            ),
        ),
        (
            "crit-unknown",
            hostile(
                "crit names an extension this verifier does not understand",
                "lease+jwt",
                sign_raw(&hdr(r#","crit":["exp"],"exp":1"#), &lease_json(), &sk),
                "unsupported_critical",
            ),
        ),
        (
            "header-jku",
            hostile(
                "jku points at an attacker's key set",
                "lease+jwt",
                sign_raw(
                    &hdr(r#","jku":"https://attacker.example/jwks.json""#),
                    &lease_json(),
                    &sk,
                ),
                "forbidden_header",
            ),
        ),
        (
            "header-jwk",
            hostile(
                "jwk embeds the attacker's key, which signed the token",
                "lease+jwt",
                sign_raw(
                    &format!(
                        r#"{{"alg":"EdDSA","typ":"lease+jwt","kid":"{}","jwk":{}}}"#,
                        stranger().kid(),
                        json(&keys::Jwk::from_public(stranger().public()))
                    ),
                    &lease_json(),
                    &stranger(),
                ),
                "forbidden_header",
            ),
        ),
        (
            "header-x5u",
            hostile(
                "x5u points at an attacker's certificate",
                "lease+jwt",
                sign_raw(
                    &hdr(r#","x5u":"https://attacker.example/cert.pem""#),
                    &lease_json(),
                    &sk,
                ),
                "forbidden_header",
            ),
        ),
        (
            "header-jwk-null",
            hostile(
                "jwk present as null (presence alone is refused)",
                "lease+jwt",
                sign_raw(&hdr(r#","jwk":null"#), &lease_json(), &sk),
                "forbidden_header",
            ),
        ),
        (
            "crit-null",
            hostile(
                "crit present as null",
                "lease+jwt",
                sign_raw(&hdr(r#","crit":null"#), &lease_json(), &sk),
                "unsupported_critical",
            ),
        ),
        (
            "header-array",
            hostile(
                "the header is a JSON array, not an object",
                "lease+jwt",
                sign_raw(
                    &format!(r#"["EdDSA","lease+jwt","{kid}"]"#),
                    &lease_json(),
                    &sk,
                ),
                "json",
            ),
        ),
        (
            "payload-array",
            hostile(
                "a correctly signed payload that is a JSON array of the claims in order",
                "lease+jwt",
                sign_raw(
                    &lease_hdr,
                    &{
                        let l = lease_claims();
                        serde_json::json!([
                            l.iss, l.sub, l.iat, l.nbf, l.exp, l.jti, l.seq, "active", null, l.fp,
                            l.dev, l.cust, l.ent, l.hb, l.offline, l.nonce
                        ])
                        .to_string()
                    },
                    &sk,
                ),
                "json",
            ),
        ),
        ("chain-empty", {
            let mut c = hostile(
                "a lease offered with no certificate",
                "lease+jwt",
                lease(),
                "empty_chain",
            );
            c.chain = vec![];
            c
        }),
        ("chain-too-long", {
            let mut c = hostile(
                "nine certificates (the limit is eight)",
                "lease+jwt",
                lease(),
                "chain_too_long",
            );
            c.chain = vec![cert(); 9];
            c
        }),
        ("root-rotation-old-only", {
            let mut c = hostile(
                "a new root certified by the old root without the new root's proof of possession",
                "lease+jwt",
                lease(),
                "root_proof_of_possession",
            );
            c.chain = vec![
                keys::sign(&root(), &cert_claims(&root2(), KeyUse::Root)).unwrap(),
                keys::sign(&root2(), &cert_claims(&sk, KeyUse::Lease)).unwrap(),
            ];
            c
        }),
        ("root-rotation-new-only", {
            let mut c = hostile(
                "a new root that certified itself, without the old root",
                "lease+jwt",
                lease(),
                "unknown_key",
            );
            c.chain = vec![
                keys::certify_root(&root2(), &root2(), cert_claims(&root2(), KeyUse::Root))
                    .unwrap(),
                keys::sign(&root2(), &cert_claims(&sk, KeyUse::Lease)).unwrap(),
            ];
            c
        }),
        ("root-rotation-foreign-pop", {
            let mut c = hostile(
                "a new root certified by the old root, the proof of possession signed by a stranger",
                "lease+jwt",
                lease(),
                "root_proof_of_possession",
            );
            let mut claims = cert_claims(&root2(), KeyUse::Root);
            claims.pop = Some(keys::b64::encode(
                stranger().sign_bytes(&claims.pop_message(root().kid().as_str())),
            ));
            c.chain = vec![
                keys::sign(&root(), &claims).unwrap(),
                keys::sign(&root2(), &cert_claims(&sk, KeyUse::Lease)).unwrap(),
            ];
            c
        }),
        ("root-rotation-moved-pop", {
            let mut c = hostile(
                "a proof of possession copied from a certificate with other dates",
                "lease+jwt",
                lease(),
                "root_proof_of_possession",
            );
            let mut other = cert_claims(&root2(), KeyUse::Root);
            other.exp = other.exp.plus(DAY);
            let moved =
                keys::b64::encode(root2().sign_bytes(&other.pop_message(root().kid().as_str())));
            let mut claims = cert_claims(&root2(), KeyUse::Root);
            claims.pop = Some(moved);
            c.chain = vec![
                keys::sign(&root(), &claims).unwrap(),
                keys::sign(&root2(), &cert_claims(&sk, KeyUse::Lease)).unwrap(),
            ];
            c
        }),
        (
            "header-x5c",
            hostile(
                "x5c embeds a certificate chain",
                "lease+jwt",
                sign_raw(&hdr(r#","x5c":["MIIB"]"#), &lease_json(), &sk),
                "forbidden_header",
            ),
        ),
        (
            "kid-missing",
            hostile(
                "no kid",
                "lease+jwt",
                sign_raw(r#"{"alg":"EdDSA","typ":"lease+jwt"}"#, &lease_json(), &sk),
                "missing_key_id",
            ),
        ),
        (
            "kid-not-in-chain",
            hostile(
                "a lease signed by a key the offered certificate does not certify",
                "lease+jwt",
                sign_raw(
                    &header("lease+jwt", &stranger()),
                    &lease_json(),
                    &stranger(),
                ),
                "certificate_mismatch",
            ),
        ),
        (
            "kid-forged",
            hostile(
                "a lease signed by a stranger but naming the certified kid",
                "lease+jwt",
                sign_raw(&lease_hdr, &lease_json(), &stranger()),
                "bad_signature",
            ),
        ),
        (
            "typ-denial-as-lease",
            hostile(
                "a denial offered as a lease",
                "lease+jwt",
                keys::sign(&sk, &denial_claims()).unwrap(),
                "wrong_type",
            ),
        ),
        (
            "typ-keycert-as-lease",
            hostile(
                "a certificate offered as a lease",
                "lease+jwt",
                cert(),
                "wrong_type",
            ),
        ),
        (
            "typ-lease-as-denial",
            hostile(
                "a lease offered as a denial",
                "denial+jwt",
                lease(),
                "wrong_type",
            ),
        ),
        (
            "typ-keycert-as-denial",
            hostile(
                "a certificate offered as a denial",
                "denial+jwt",
                cert(),
                "wrong_type",
            ),
        ),
        (
            "typ-lease-as-keycert",
            hostile(
                "a lease offered as a certificate",
                "keycert+jwt",
                lease(),
                "wrong_type",
            ),
        ),
        (
            "typ-denial-as-keycert",
            hostile(
                "a denial offered as a certificate",
                "keycert+jwt",
                keys::sign(&sk, &denial_claims()).unwrap(),
                "wrong_type",
            ),
        ),
        (
            "typ-jwt",
            hostile(
                "typ JWT, the generic type",
                "lease+jwt",
                sign_raw(
                    &format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{kid}"}}"#),
                    &lease_json(),
                    &sk,
                ),
                "wrong_type",
            ),
        ),
        (
            "typ-missing",
            hostile(
                "no typ",
                "lease+jwt",
                sign_raw(
                    &format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#),
                    &lease_json(),
                    &sk,
                ),
                "wrong_type",
            ),
        ),
        (
            "too-large",
            hostile(
                "a validly signed lease over 16 KiB",
                "lease+jwt",
                huge,
                "too_large",
            ),
        ),
        (
            "segments-two",
            hostile(
                "two segments",
                "lease+jwt",
                format!("{lh}.{lp}"),
                "malformed",
            ),
        ),
        (
            "segments-four",
            hostile(
                "four segments",
                "lease+jwt",
                format!("{lh}.{lp}.{ls}.{ls}"),
                "malformed",
            ),
        ),
        (
            "b64-padded-header",
            hostile(
                "the header with = padding",
                "lease+jwt",
                format!("{lh}=.{lp}.{ls}"),
                "encoding",
            ),
        ),
        (
            "b64-padded-signature",
            hostile(
                "the signature with = padding",
                "lease+jwt",
                format!("{lh}.{lp}.{ls}=="),
                "encoding",
            ),
        ),
        (
            "b64-standard-alphabet",
            hostile(
                "the payload in the standard alphabet (+ and / instead of - and _)",
                "lease+jwt",
                format!(
                    "{lh}.{}.{ls}",
                    lp.replace('-', "+").replace('_', "/") + "+/"
                ),
                "encoding",
            ),
        ),
        (
            "b64-trailing-bits",
            hostile(
                "the signature's last character with non-zero trailing bits",
                "lease+jwt",
                {
                    let mut s = ls.clone();
                    let last = s.pop().unwrap();
                    // 64 bytes leave 4 unused bits in the last character; set the lowest.
                    let alphabet =
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                    let pos = alphabet.find(last).unwrap();
                    s.push(alphabet.as_bytes()[pos ^ 1] as char);
                    format!("{lh}.{lp}.{s}")
                },
                "encoding",
            ),
        ),
        (
            "b64-whitespace",
            hostile(
                "a newline inside the payload",
                "lease+jwt",
                format!("{lh}.{}\n{}.{ls}", &lp[..10], &lp[10..]),
                "encoding",
            ),
        ),
        (
            "header-not-json",
            hostile(
                "the header is not JSON",
                "lease+jwt",
                format!("{}.{lp}.{ls}", keys::b64::encode("alg=EdDSA")),
                "json",
            ),
        ),
        (
            "payload-not-json",
            hostile(
                "a correctly signed payload that is not JSON",
                "lease+jwt",
                sign_raw(&lease_hdr, "not json", &sk),
                "json",
            ),
        ),
        (
            "payload-missing-claim",
            hostile(
                "a correctly signed lease without exp",
                "lease+jwt",
                sign_raw(
                    &lease_hdr,
                    &{
                        let mut v: Value = serde_json::from_str(&lease_json()).unwrap();
                        v.as_object_mut().unwrap().remove("exp");
                        v.to_string()
                    },
                    &sk,
                ),
                "json",
            ),
        ),
        (
            "signature-short",
            hostile(
                "a 63-byte signature",
                "lease+jwt",
                format!("{lh}.{lp}.{}", keys::b64::encode([1u8; 63])),
                "signature_length",
            ),
        ),
        (
            "signature-s-not-reduced",
            hostile(
                "the valid signature with S + ℓ (malleability)",
                "lease+jwt",
                add_group_order(&lease()),
                "non_canonical_signature",
            ),
        ),
        (
            "signature-other-message",
            hostile(
                "a signature of another message",
                "lease+jwt",
                format!(
                    "{lh}.{lp}.{}",
                    segments(&keys::sign(&sk, &denial_claims()).unwrap())[2]
                ),
                "bad_signature",
            ),
        ),
        ("cert-small-order-key", {
            let mut c = hostile(
                "a certificate that certifies a small-order public key",
                "lease+jwt",
                lease(),
                "weak_public_key",
            );
            c.chain = vec![small_order_cert];
            c
        }),
        ("trust-small-order-root", weak_trust_case),
        ("cert-expired", {
            let mut c = hostile(
                "the signing key's certificate expired a second ago",
                "lease+jwt",
                lease(),
                "certificate_expired",
            );
            c.chain = vec![cert_with(&sk, &root(), |k| k.exp = NOW.plus(-1))];
            c
        }),
        ("cert-not-yet-valid", {
            let mut c = hostile(
                "the signing key's certificate starts tomorrow",
                "lease+jwt",
                lease(),
                "certificate_not_yet_valid",
            );
            c.chain = vec![cert_with(&sk, &root(), |k| {
                k.nbf = NOW.plus(DAY);
                k.iat = NOW.plus(DAY);
            })];
            c
        }),
        ("cert-untrusted-issuer", {
            let mut c = hostile(
                "the certificate is signed by a key that is not a pinned root",
                "lease+jwt",
                lease(),
                "unknown_key",
            );
            c.chain = vec![cert_with(&sk, &stranger(), |_| {})];
            c
        }),
        ("cert-forged-issuer", {
            let mut c = hostile(
                "the certificate names the pinned root but a stranger signed it",
                "lease+jwt",
                lease(),
                "bad_signature",
            );
            c.chain = vec![sign_raw(
                &header("keycert+jwt", &root()),
                &json(&cert_claims(&sk, KeyUse::Lease)),
                &stranger(),
            )];
            c
        }),
        ("cert-kid-mismatch", {
            let mut c = hostile(
                "the certificate's kid is not the thumbprint of its key",
                "lease+jwt",
                lease(),
                "inconsistent_claims",
            );
            c.chain = vec![cert_with(&sk, &root(), |k| {
                k.kid = stranger().kid().to_string()
            })];
            c
        }),
        ("cert-wrong-use", {
            let mut c = hostile(
                "the signing key is certified as a root, not for leases",
                "lease+jwt",
                lease(),
                "certificate_use",
            );
            c.chain = vec![cert_with(&sk, &root(), |k| k.key_use = KeyUse::Root)];
            c
        }),
        (
            "lease-revoked-kid",
            with_trust(
                hostile(
                    "the lease's signing key is on the revoked list",
                    "lease+jwt",
                    lease(),
                    "revoked_key",
                ),
                revoked_signing,
            ),
        ),
        (
            "lease-revoked-root",
            with_trust(
                hostile(
                    "the root that certified the signing key is revoked",
                    "lease+jwt",
                    lease(),
                    "revoked_key",
                ),
                revoked_root,
            ),
        ),
        ("lease-expired", {
            let mut c = hostile("now is the lease's exp", "lease+jwt", lease(), "expired");
            c.now = lease_claims().exp.secs();
            c
        }),
        (
            "lease-not-yet-valid",
            hostile(
                "the lease's nbf is 301 s ahead (leeway 300 s)",
                "lease+jwt",
                signed_lease(|l| {
                    l.iat = NOW.plus(301);
                    l.nbf = NOW.plus(301);
                    l.exp = NOW.plus(301 + DAY);
                }),
                "not_yet_valid",
            ),
        ),
        (
            "lease-grace-without-deadline",
            hostile(
                "status grace without grace_expires_at",
                "lease+jwt",
                signed_lease(|l| l.status = LeaseStatus::Grace),
                "inconsistent_claims",
            ),
        ),
        (
            "lease-beyond-offline-window",
            hostile(
                "exp later than iat plus the offline window",
                "lease+jwt",
                signed_lease(|l| l.exp = l.iat.plus(i64::from(l.offline) + 1)),
                "inconsistent_claims",
            ),
        ),
        (
            "lease-exp-before-nbf",
            hostile(
                "exp before nbf",
                "lease+jwt",
                signed_lease(|l| l.exp = l.nbf.plus(-1)),
                "inconsistent_claims",
            ),
        ),
    ];
    for (name, case) in hostile_cases {
        files.insert(
            format!("hostile/{name}.json"),
            serde_json::to_string_pretty(&case).unwrap(),
        );
    }
    files.into_iter().map(|(k, v)| (k, v + "\n")).collect()
}

fn read_cases(sub: &str) -> Vec<(String, Case)> {
    let mut cases: Vec<(String, Case)> = std::fs::read_dir(dir().join(sub))
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let case = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, case)
        })
        .collect();
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    cases
}

#[test]
fn vectors_on_disk_are_what_the_code_generates() {
    let generated = generate();
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        for sub in ["valid", "hostile"] {
            let _ = std::fs::remove_dir_all(dir().join(sub));
            std::fs::create_dir_all(dir().join(sub)).unwrap();
        }
        for (name, text) in &generated {
            std::fs::write(dir().join(name), text).unwrap();
        }
    }
    let mut on_disk = Vec::new();
    for sub in ["", "valid", "hostile"] {
        for entry in std::fs::read_dir(dir().join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let rel = path
                    .strip_prefix(dir())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                on_disk.push(rel);
            }
        }
    }
    on_disk.sort();
    let expected: Vec<String> = generated.keys().cloned().collect();
    assert_eq!(
        on_disk, expected,
        "vector files differ from the generator; run UPDATE_VECTORS=1 cargo test -p keys --test it vectors_on_disk"
    );
    for (name, text) in &generated {
        let disk = std::fs::read_to_string(dir().join(name)).unwrap();
        assert!(
            disk == *text,
            "{name} differs from what the code generates; run UPDATE_VECTORS=1 cargo test -p keys --test it vectors_on_disk and review the diff"
        );
    }
}

#[test]
fn valid_vectors_verify_to_their_claims() {
    let cases = read_cases("valid");
    assert!(cases.len() >= 7);
    for (name, case) in cases {
        let claims = verify(&case).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(Some(&claims), case.claims.as_ref(), "{name}");
    }
}

#[test]
fn hostile_vectors_fail_with_their_own_error() {
    let cases = read_cases("hostile");
    assert!(cases.len() >= 61, "the corpus shrank to {}", cases.len());
    for (name, case) in cases {
        let expected = case.error.clone().unwrap();
        match verify(&case) {
            Ok(claims) => panic!("{name} ({}) verified: {claims}", case.description),
            Err(e) => assert_eq!(e.code(), expected, "{name} ({}): got {e}", case.description),
        }
    }
}

#[test]
fn trust_file_in_vectors_loads() {
    let text = std::fs::read_to_string(dir().join("trust.json")).unwrap();
    let store = TrustStore::from_json(&text).unwrap();
    assert_eq!(store.roots().count(), 1);
}

/// A chain through a root rotation ([old → new root], [new root → signing key])
/// verifies for every store that pins a usable root on it: the old root only
/// (it walks the chain), the new root only (it starts at its own certificate),
/// both, or the new one with the old one revoked. A store whose only root is
/// revoked, or that pins neither, refuses it.
#[test]
fn a_rotated_chain_serves_old_and_new_installations() {
    use keys::{Error, Kid};
    let rotation =
        keys::certify_root(&root(), &root2(), cert_claims(&root2(), KeyUse::Root)).unwrap();
    let leaf = keys::sign(&root2(), &cert_claims(&signing(), KeyUse::Lease)).unwrap();
    let chain = [rotation.as_str(), leaf.as_str()];
    let old = root().public().clone();
    let new = root2().public().clone();
    let revoked = |mut store: TrustStore| {
        store.revoke(Kid::new(root().kid().to_string()));
        store
    };
    for (name, store, path_len) in [
        ("old root only", TrustStore::new([old.clone()]), 3),
        ("new root only", TrustStore::new([new.clone()]), 2),
        ("both roots", TrustStore::new([old.clone(), new.clone()]), 3),
        (
            "new root, old revoked",
            revoked(TrustStore::new([old.clone(), new.clone()])),
            2,
        ),
    ] {
        let certified = store
            .verify_chain_at(&chain, NOW)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(certified.key().kid(), signing().kid(), "{name}");
        assert_eq!(certified.path().len(), path_len, "{name}");
    }
    assert!(matches!(
        revoked(TrustStore::new([old])).verify_chain_at(&chain, NOW),
        Err(Error::RevokedKey { .. })
    ));
    assert!(matches!(
        TrustStore::new([stranger().public().clone()]).verify_chain_at(&chain, NOW),
        Err(Error::UnknownKey { .. })
    ));
    // Skipping the rotation certificate never skips a check: a new-root store
    // given a leaf its root did not sign still refuses it.
    let forged = keys::sign(&stranger(), &cert_claims(&signing(), KeyUse::Lease)).unwrap();
    assert!(
        TrustStore::new([new])
            .verify_chain_at(&[rotation.as_str(), forged.as_str()], NOW)
            .is_err()
    );
}

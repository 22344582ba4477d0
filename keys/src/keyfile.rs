//! Private keys at rest: sealed with a passphrase, written owner-only.
//!
//! A sealed key is a small JSON document. The key-encryption key is derived from
//! the passphrase with argon2id (RFC 9106) and a random 16-byte salt; the 32-byte
//! ed25519 seed is sealed with XChaCha20-Poly1305 under a random 24-byte nonce.
//! Everything in the file except the nonce and ciphertext is bound to the
//! ciphertext as associated data, so changing the kid, the public key, the role or
//! the KDF parameters makes the file fail to open instead of lying.
//!
//! DESIGN.md "Tokens": "a stolen data directory alone yields no signing key".

use crate::b64;
use crate::error::{Error, Result};
use crate::key::PrivateKey;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key as XKey, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::Path;
use zeroize::Zeroizing;

/// The `format` of sealed key files written by this version.
pub const FORMAT: &str = "licensing-sealed-key/v1";

/// A passphrase (or any key-encryption secret). Never printed; wiped on drop.
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// Wraps secret bytes.
    pub fn new(secret: impl Into<Vec<u8>>) -> Passphrase {
        Passphrase(Zeroizing::new(secret.into()))
    }

    /// Whether it is empty (refused when sealing).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// argon2id cost parameters, stored in the file so that they can be raised later
/// without breaking old files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory, KiB.
    pub m_cost: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// The default for keys people hold: 64 MiB, 3 passes, 4 lanes (RFC 9106
    /// section 4, the second recommended option).
    pub const STRONG: KdfParams = KdfParams {
        m_cost: 64 * 1024,
        t_cost: 3,
        p_cost: 4,
    };

    /// The largest parameters a file may ask for. They are read before the file
    /// is authenticated, so a tampered file must not be able to ask for
    /// terabytes of memory or hours of work.
    pub const MAX: KdfParams = KdfParams {
        m_cost: 1024 * 1024,
        t_cost: 16,
        p_cost: 16,
    };

    /// For secrets that are already 256 random bits (a generated key-encryption
    /// file, test fixtures): stretching adds nothing there, so keep it cheap.
    pub const FOR_RANDOM_SECRETS: KdfParams = KdfParams {
        m_cost: 1024,
        t_cost: 1,
        p_cost: 1,
    };
}

/// What a sealed key is for; bound into the ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// A root that certifies signing keys (usually kept offline).
    Root,
    /// A signing key for leases and denials.
    Signing,
    /// An appliance's device key.
    Device,
}

/// The public, authenticated part of a sealed key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SealedHeader {
    format: String,
    role: KeyRole,
    kid: String,
    #[serde(rename = "pub")]
    public: String,
    kdf: String,
    kdf_params: KdfParams,
    salt: String,
    aead: String,
}

/// A private key sealed under a passphrase. Safe to store and to print: it holds
/// no secret in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedKey {
    #[serde(flatten)]
    header: SealedHeader,
    nonce: String,
    ciphertext: String,
}

impl SealedKey {
    /// The sealed key's kid (readable without the passphrase).
    pub fn kid(&self) -> &str {
        &self.header.kid
    }

    /// The sealed key's public key, base64url (readable without the passphrase).
    pub fn public_b64(&self) -> &str {
        &self.header.public
    }

    /// The role the key was sealed for.
    pub fn role(&self) -> KeyRole {
        self.header.role
    }

    /// Parses a sealed key document.
    pub fn from_json(json: &str) -> Result<SealedKey> {
        serde_json::from_str(json)
            .map_err(|e| Error::key_file(format!("not a sealed key file: {e}")))
    }

    /// The document, pretty-printed.
    pub fn to_json(&self) -> String {
        // A struct of strings and integers always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

fn derive_kek(
    passphrase: &Passphrase,
    salt: &[u8],
    params: KdfParams,
) -> Result<Zeroizing<[u8; 32]>> {
    let max = KdfParams::MAX;
    if params.m_cost > max.m_cost || params.t_cost > max.t_cost || params.p_cost > max.p_cost {
        return Err(Error::key_file(format!(
            "argon2 parameters {params:?} exceed the limit {max:?}"
        )));
    }
    let argon_params = argon2::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32))
        .map_err(|e| Error::key_file(format!("invalid argon2 parameters: {e}")))?;
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon_params,
    );
    let mut kek = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(&passphrase.0, salt, kek.as_mut())
        .map_err(|e| Error::key_file(format!("argon2 failed: {e}")))?;
    Ok(kek)
}

fn associated_data(header: &SealedHeader) -> Result<Vec<u8>> {
    serde_json::to_vec(header).map_err(|e| Error::key_file(e.to_string()))
}

/// Seals `key` under `passphrase`.
pub fn seal(
    key: &PrivateKey,
    role: KeyRole,
    passphrase: &Passphrase,
    params: KdfParams,
) -> Result<SealedKey> {
    if passphrase.is_empty() {
        return Err(Error::key_file("the passphrase is empty"));
    }
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut salt).map_err(|_| Error::Random)?;
    getrandom::fill(&mut nonce).map_err(|_| Error::Random)?;
    let header = SealedHeader {
        format: FORMAT.into(),
        role,
        kid: key.kid().to_string(),
        public: key.public().to_b64(),
        kdf: "argon2id".into(),
        kdf_params: params,
        salt: b64::encode(salt),
        aead: "xchacha20poly1305".into(),
    };
    let kek = derive_kek(passphrase, &salt, params)?;
    let cipher = XChaCha20Poly1305::new(<&XKey>::from(&*kek));
    let seed = key.seed();
    let aad = associated_data(&header)?;
    let ciphertext = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: seed.as_ref(),
                aad: &aad,
            },
        )
        .map_err(|_| Error::key_file("encryption failed"))?;
    Ok(SealedKey {
        header,
        nonce: b64::encode(nonce),
        ciphertext: b64::encode(ciphertext),
    })
}

/// Opens a sealed key with its passphrase.
pub fn open(sealed: &SealedKey, passphrase: &Passphrase) -> Result<PrivateKey> {
    let header = &sealed.header;
    if header.format != FORMAT || header.kdf != "argon2id" || header.aead != "xchacha20poly1305" {
        return Err(Error::key_file(format!(
            "unsupported key file format {} ({} / {})",
            header.format, header.kdf, header.aead
        )));
    }
    let salt = b64::decode(&header.salt).ok_or_else(|| Error::key_file("bad salt"))?;
    let nonce =
        b64::decode_array::<24>(&sealed.nonce).ok_or_else(|| Error::key_file("bad nonce"))?;
    let ciphertext =
        b64::decode(&sealed.ciphertext).ok_or_else(|| Error::key_file("bad ciphertext"))?;
    let kek = derive_kek(passphrase, &salt, header.kdf_params)?;
    let cipher = XChaCha20Poly1305::new(<&XKey>::from(&*kek));
    let aad = associated_data(header)?;
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::WrongPassphrase)?,
    );
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
        plain
            .as_slice()
            .try_into()
            .map_err(|_| Error::key_file("sealed key is not 32 bytes"))?,
    );
    let key = PrivateKey::from_seed(&seed);
    // The AEAD already authenticates the header; this catches a file sealed by a
    // buggy writer rather than an attacker.
    if key.public().to_b64() != header.public || key.kid().as_str() != header.kid {
        return Err(Error::key_file("sealed key does not match its public key"));
    }
    Ok(key)
}

/// Seals `secret` under a 32-byte random key with XChaCha20-Poly1305, bound to
/// `context` (associated data: a value sealed for one license or purpose does not
/// open for another). The result is text: `v1.<nonce>.<ciphertext>`, base64url.
/// For secrets kept by services under a key-encryption key (license keys on the
/// control plane, the license key on an appliance).
pub fn seal_blob(key: &[u8; 32], context: &[u8], secret: &[u8]) -> Result<String> {
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut nonce).map_err(|_| Error::Random)?;
    let sealed = XChaCha20Poly1305::new(<&XKey>::from(key))
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: secret,
                aad: context,
            },
        )
        .map_err(|_| Error::key_file("encryption failed"))?;
    Ok(format!("v1.{}.{}", b64::encode(nonce), b64::encode(sealed)))
}

/// Opens a value sealed by [`seal_blob`] with the same key and context.
pub fn open_blob(key: &[u8; 32], context: &[u8], sealed: &str) -> Result<Zeroizing<Vec<u8>>> {
    let mut parts = sealed.split('.');
    let (Some("v1"), Some(nonce), Some(body), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::key_file("not a sealed value"));
    };
    let nonce = b64::decode_array::<24>(nonce).ok_or_else(|| Error::key_file("bad nonce"))?;
    let body = b64::decode(body).ok_or_else(|| Error::key_file("bad ciphertext"))?;
    XChaCha20Poly1305::new(<&XKey>::from(key))
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &body,
                aad: context,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| Error::WrongPassphrase)
}

/// Writes a file readable and writable by its owner only (mode 0600), refusing to
/// replace an existing file, and syncs it and its directory before returning.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| Error::io(path, e))?;
    file.write_all(contents).map_err(|e| Error::io(path, e))?;
    file.sync_all().map_err(|e| Error::io(path, e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the new directory entry durable too.
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

/// Writes a sealed key file (mode 0600, never overwriting).
pub fn write_key_file(path: &Path, sealed: &SealedKey) -> Result<()> {
    write_secret_file(path, sealed.to_json().as_bytes())
}

/// Reads a sealed key file.
pub fn read_key_file(path: &Path) -> Result<SealedKey> {
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    SealedKey::from_json(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(s: &str) -> Passphrase {
        Passphrase::new(s.as_bytes().to_vec())
    }

    #[test]
    fn seal_then_open_round_trips_and_hides_the_seed() {
        let key = PrivateKey::from_seed(&[5u8; 32]);
        let sealed = seal(
            &key,
            KeyRole::Signing,
            &pass("correct horse"),
            KdfParams::FOR_RANDOM_SECRETS,
        )
        .expect("seal");
        let json = sealed.to_json();
        assert!(!json.contains(&b64::encode([5u8; 32])));
        let opened = open(
            &SealedKey::from_json(&json).expect("parse"),
            &pass("correct horse"),
        )
        .expect("open");
        assert_eq!(opened.public(), key.public());
    }

    #[test]
    fn wrong_passphrase_and_altered_headers_fail() {
        let key = PrivateKey::from_seed(&[6u8; 32]);
        let sealed = seal(
            &key,
            KeyRole::Root,
            &pass("pw"),
            KdfParams::FOR_RANDOM_SECRETS,
        )
        .expect("seal");
        assert!(matches!(
            open(&sealed, &pass("pW")),
            Err(Error::WrongPassphrase)
        ));
        let mut relabelled = sealed.clone();
        relabelled.header.role = KeyRole::Signing;
        assert!(matches!(
            open(&relabelled, &pass("pw")),
            Err(Error::WrongPassphrase)
        ));
        let mut other_pub = sealed.clone();
        other_pub.header.public = PrivateKey::from_seed(&[7u8; 32]).public().to_b64();
        assert!(matches!(
            open(&other_pub, &pass("pw")),
            Err(Error::WrongPassphrase)
        ));
        assert!(
            seal(
                &key,
                KeyRole::Root,
                &pass(""),
                KdfParams::FOR_RANDOM_SECRETS
            )
            .is_err()
        );
    }

    #[test]
    fn blobs_open_only_with_their_key_and_context() {
        let key = [9u8; 32];
        let sealed = seal_blob(&key, b"lic_1", b"pk_secret").expect("seal");
        assert!(!sealed.contains("pk_secret"));
        assert_eq!(
            &*open_blob(&key, b"lic_1", &sealed).expect("open"),
            b"pk_secret"
        );
        assert!(open_blob(&key, b"lic_2", &sealed).is_err());
        assert!(open_blob(&[8u8; 32], b"lic_1", &sealed).is_err());
        assert!(open_blob(&key, b"lic_1", "v1.x.y").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_owner_only_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.json");
        let key = PrivateKey::from_seed(&[8u8; 32]);
        let sealed = seal(
            &key,
            KeyRole::Device,
            &pass("x"),
            KdfParams::FOR_RANDOM_SECRETS,
        )
        .expect("seal");
        write_key_file(&path, &sealed).expect("write");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            write_key_file(&path, &sealed),
            Err(Error::Io { .. })
        ));
        assert_eq!(read_key_file(&path).expect("read"), sealed);
    }
}

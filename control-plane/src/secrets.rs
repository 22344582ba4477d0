//! The key-encryption key (KEK) and what it protects at rest: the encrypted copy
//! of each license key (for reveal) and the sealed root and signing keys.
//!
//! The KEK is 32 random bytes, base64url, supplied by the `CONTROL_PLANE_KEK`
//! environment variable or read from a file that `init` generates with mode 0600
//! *beside* the data directory (`<data-dir>.kek` by default), never inside it: a
//! stolen data directory alone yields no license key and no signing key
//! (DESIGN.md "Tokens", "Roles"). docs/operations.md says how to keep it apart.

use crate::domain::ids::{LicenseId, LicenseKey};
use crate::error::{Error, Result};
use keys::PrivateKey;
use keys::keyfile::{self, KdfParams, KeyRole, Passphrase, SealedKey};
use std::fmt;
use std::path::Path;
use zeroize::Zeroizing;

/// The key-encryption key. Never printed; wiped on drop.
pub struct Kek(Zeroizing<[u8; 32]>);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Kek {
    pub fn generate() -> Result<Kek> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut())
            .map_err(|_| Error::internal("random number generator failed"))?;
        Ok(Kek(bytes))
    }

    pub fn from_b64(text: &str) -> Result<Kek> {
        keys::b64::decode_array::<32>(text.trim())
            .map(|b| Kek(Zeroizing::new(b)))
            .ok_or_else(|| Error::internal("the key-encryption key is not 32 bytes of base64url"))
    }

    fn to_b64(&self) -> Zeroizing<String> {
        Zeroizing::new(keys::b64::encode(self.0.as_ref()))
    }

    /// Reads the KEK file.
    pub fn read(path: &Path) -> Result<Kek> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            Error::internal(format!(
                "reading the key-encryption key {}: {e}",
                path.display()
            ))
        })?);
        Kek::from_b64(&text)
    }

    /// Writes a new KEK file, mode 0600, refusing to replace one.
    pub fn write_new(&self, path: &Path) -> Result<()> {
        keyfile::write_secret_file(path, self.to_b64().as_bytes())
            .map_err(|e| Error::internal(format!("writing the key-encryption key: {e}")))
    }

    /// Encrypts a license key, bound to its license id.
    pub fn seal_license_key(&self, id: &LicenseId, key: &LicenseKey) -> Result<String> {
        keyfile::seal_blob(&self.0, id.as_str().as_bytes(), key.expose().as_bytes())
            .map_err(|e| Error::internal(format!("sealing a license key: {e}")))
    }

    /// Decrypts a license key sealed by [`Kek::seal_license_key`] for the same id.
    pub fn open_license_key(&self, id: &LicenseId, sealed: &str) -> Result<LicenseKey> {
        let bad = || Error::internal(format!("the stored key of {id} cannot be decrypted"));
        let plain =
            keyfile::open_blob(&self.0, id.as_str().as_bytes(), sealed).map_err(|_| bad())?;
        std::str::from_utf8(&plain)
            .ok()
            .and_then(LicenseKey::parse)
            .ok_or_else(bad)
    }

    /// Seals a root or signing key under the KEK.
    pub fn seal_private_key(&self, key: &PrivateKey, role: KeyRole) -> Result<SealedKey> {
        // The KEK is already 256 random bits: no stretching needed.
        Ok(keyfile::seal(
            key,
            role,
            &Passphrase::new(self.to_b64().as_bytes().to_vec()),
            KdfParams::FOR_RANDOM_SECRETS,
        )?)
    }

    pub fn open_private_key(&self, sealed: &SealedKey) -> Result<PrivateKey> {
        keyfile::open(sealed, &Passphrase::new(self.to_b64().as_bytes().to_vec())).map_err(|e| {
            Error::internal(format!(
                "cannot open signing key {} with this key-encryption key: {e}",
                sealed.kid()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn license_keys_round_trip_bound_to_their_id() {
        let kek = Kek::generate().unwrap();
        let id = LicenseId::generate().unwrap();
        let key = LicenseKey::generate().unwrap();
        let sealed = kek.seal_license_key(&id, &key).unwrap();
        assert!(!sealed.contains(key.expose()));
        assert_eq!(kek.open_license_key(&id, &sealed).unwrap(), key);
        let other = LicenseId::generate().unwrap();
        assert!(kek.open_license_key(&other, &sealed).is_err());
        assert!(
            Kek::generate()
                .unwrap()
                .open_license_key(&id, &sealed)
                .is_err()
        );
    }
}

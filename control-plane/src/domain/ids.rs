//! Identifiers and bearer secrets, as newtypes created by `parse` or `generate`.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use subtle::ConstantTimeEq as _;

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|_| Error::internal("the random number generator failed"))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A license id: `lic_` and 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LicenseId(String);

impl LicenseId {
    /// A new random id.
    pub fn generate() -> Result<LicenseId> {
        Ok(LicenseId(format!("lic_{}", hex(&random_bytes::<16>()?))))
    }

    /// Parses an id from outside; `None` unless it has the exact shape.
    pub fn parse(text: &str) -> Option<LicenseId> {
        let rest = text.strip_prefix("lic_")?;
        (rest.len() == 32
            && rest
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| LicenseId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LicenseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user id: `usr_` and 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub fn generate() -> Result<UserId> {
        Ok(UserId(format!("usr_{}", hex(&random_bytes::<16>()?))))
    }

    /// The id of actions the control plane takes by itself (the sweep).
    pub fn system() -> UserId {
        UserId("system".into())
    }

    pub fn parse(text: &str) -> Option<UserId> {
        let rest = text.strip_prefix("usr_")?;
        (rest.len() == 32
            && rest
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| UserId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-256 digest of a bearer secret, as stored: enough to recognise the
/// secret, useless to present as one.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretDigest(String);

impl SecretDigest {
    fn of(secret: &str) -> SecretDigest {
        SecretDigest(keys::proto::license_key_digest(secret))
    }

    /// Constant-time equality (the digest of a presented secret against a stored one).
    pub fn matches(&self, other: &SecretDigest) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretDigest({}…)", &self.0[..self.0.len().min(6)])
    }
}

macro_rules! bearer_secret {
    ($name:ident, $prefix:literal, $doc:literal) => {
        #[doc = $doc]
        ///
        /// Never printed (its `Debug` is redacted) and never stored: only its
        /// [`SecretDigest`] is, plus, for license keys, an encrypted copy.
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(zeroize::Zeroizing<String>);

        impl $name {
            /// The prefix that tells this kind of secret apart.
            pub const PREFIX: &'static str = $prefix;

            /// A new secret: the prefix and 256 random bits, base64url.
            pub fn generate() -> Result<$name> {
                let bytes = random_bytes::<32>()?;
                Ok($name(zeroize::Zeroizing::new(format!(
                    "{}{}",
                    $prefix,
                    keys::b64::encode(bytes)
                ))))
            }

            /// Parses a presented secret; `None` unless it has the exact shape.
            pub fn parse(text: &str) -> Option<$name> {
                let rest = text.strip_prefix($prefix)?;
                keys::b64::decode_array::<32>(rest)?;
                Some($name(zeroize::Zeroizing::new(text.to_owned())))
            }

            /// The stored digest.
            pub fn digest(&self) -> SecretDigest {
                SecretDigest::of(&self.0)
            }

            /// The secret itself, for showing once or encrypting.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

bearer_secret!(
    LicenseKey,
    "pk_",
    "A license key: the appliance's bearer credential for its own license."
);
bearer_secret!(
    SessionToken,
    "cs_",
    "A console session cookie: a signed-in browser's bearer credential."
);
bearer_secret!(
    ApiToken,
    "at_",
    "An admin API token: a user's bearer credential."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_256_bits_and_parse_back() {
        let key = LicenseKey::generate().unwrap();
        assert!(key.expose().starts_with("pk_"));
        assert_eq!(key.expose().len(), 3 + 43);
        assert_eq!(LicenseKey::parse(key.expose()), Some(key.clone()));
        assert!(LicenseKey::parse("pk_short").is_none());
        assert!(ApiToken::parse(key.expose()).is_none());
        assert_eq!(format!("{key:?}"), "LicenseKey(<redacted>)");
        assert!(
            key.digest()
                .matches(&LicenseKey::parse(key.expose()).unwrap().digest())
        );
        assert!(
            !key.digest()
                .matches(&LicenseKey::generate().unwrap().digest())
        );
    }

    #[test]
    fn ids_parse_only_their_shape() {
        let id = LicenseId::generate().unwrap();
        assert_eq!(LicenseId::parse(id.as_str()), Some(id));
        for bad in [
            "lic_",
            "lic_XYZ",
            "usr_00000000000000000000000000000000",
            "lic_0000000000000000000000000000000G",
        ] {
            assert!(LicenseId::parse(bad).is_none(), "{bad}");
        }
    }
}

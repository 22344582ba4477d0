//! Console passwords, stored as argon2id hashes (DESIGN.md "Roles": "Admin API
//! tokens and passwords are stored hashed"). The parameters travel with each hash,
//! so they can be raised later without breaking existing users.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Shortest password accepted (NIST SP 800-63B asks for at least 8; staff
/// consoles that can revoke a customer's service deserve more).
pub const MIN_LEN: usize = 12;
/// Longest password accepted: hashing cost must not be the attacker's to choose.
pub const MAX_LEN: usize = 256;

/// OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane.
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;
const OUTPUT_LEN: usize = 32;

/// An argon2id password hash with its salt and parameters.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordHash {
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    /// base64url
    pub salt: String,
    /// base64url
    pub hash: String,
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// Checks a new password's length: the only rule (NIST SP 800-63B §5.1.1.2
/// advises against composition rules).
pub fn check_new(password: &str) -> Result<()> {
    let chars = password.chars().count();
    if chars < MIN_LEN || password.len() > MAX_LEN {
        return Err(Error::BadRequest(format!(
            "password must be {MIN_LEN} to {MAX_LEN} characters"
        )));
    }
    Ok(())
}

fn derive(password: &str, salt: &[u8], m: u32, t: u32, p: u32) -> Result<Zeroizing<[u8; 32]>> {
    let params = argon2::Params::new(m, t, p, Some(OUTPUT_LEN))
        .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; OUTPUT_LEN]);
    argon
        .hash_password_into(password.as_bytes(), salt, out.as_mut())
        .map_err(|e| Error::Internal(format!("argon2: {e}")))?;
    Ok(out)
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt. Slow on purpose (tens of
    /// milliseconds): call it from a blocking thread.
    pub fn new(password: &str) -> Result<PasswordHash> {
        check_new(password)?;
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| Error::Internal(format!("getrandom: {e}")))?;
        let hash = derive(password, &salt, M_COST_KIB, T_COST, P_COST)?;
        Ok(PasswordHash {
            m_cost: M_COST_KIB,
            t_cost: T_COST,
            p_cost: P_COST,
            salt: keys::b64::encode(salt),
            hash: keys::b64::encode(hash.as_ref()),
        })
    }

    /// Whether `password` is the one hashed, compared in constant time.
    pub fn verify(&self, password: &str) -> bool {
        if password.len() > MAX_LEN {
            return false;
        }
        let (Some(salt), Some(expected)) =
            (keys::b64::decode(&self.salt), keys::b64::decode(&self.hash))
        else {
            return false;
        };
        match derive(password, &salt, self.m_cost, self.t_cost, self.p_cost) {
            Ok(actual) => bool::from(actual.as_ref().ct_eq(expected.as_slice())),
            Err(_) => false,
        }
    }

    /// Burns the same time as a real [`verify`](Self::verify), for unknown user
    /// names, so that response time does not tell which names exist.
    pub fn verify_nothing(password: &str) {
        let _ = derive(password, &[0u8; 16], M_COST_KIB, T_COST, P_COST);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_password_verifies_and_nothing_else_does() {
        let hash = PasswordHash::new("correct horse battery").unwrap();
        assert!(hash.verify("correct horse battery"));
        for wrong in ["correct horse batterY", "", "correct horse battery ", "x"] {
            assert!(!hash.verify(wrong), "{wrong:?}");
        }
        // Salted: the same password hashes differently.
        let again = PasswordHash::new("correct horse battery").unwrap();
        assert_ne!(hash.hash, again.hash);
        assert!(!format!("{hash:?}").contains(&hash.hash));
    }

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert!(PasswordHash::new("short").is_err());
        assert!(PasswordHash::new(&"x".repeat(MAX_LEN + 1)).is_err());
        assert!(check_new(&"é".repeat(MIN_LEN)).is_ok());
    }

    #[test]
    fn a_damaged_hash_verifies_nothing() {
        let mut hash = PasswordHash::new("correct horse battery").unwrap();
        hash.salt = "!!".into();
        assert!(!hash.verify("correct horse battery"));
    }
}

//! Users, roles and permissions (DESIGN.md "Roles"). Deny by default: a role has
//! exactly the permissions [`Role::allows`] lists.

use crate::domain::ids::{SecretDigest, UserId};
use crate::domain::password::PasswordHash;
use keys::UnixTime;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Issues and reads licenses.
    Onboarding,
    /// Also revokes, reinstates, rebinds, regenerates, suspends, restores, sweeps, reveals.
    Support,
    /// Everything, including signing keys, settings and users.
    SuperAdmin,
    /// Sees its own customer's licenses' status, never a key.
    Customer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// List, show, audit of one license.
    LicenseRead,
    /// Create, subscription dates.
    LicenseIssue,
    /// Revoke, reinstate, rebind, regenerate, suspend, restore, sweep.
    LicenseRevoke,
    /// See a license key in plaintext (audited).
    LicenseReveal,
    /// Signing keys, settings, users.
    SigningManage,
    /// A customer's view of its own licenses.
    OwnLicenseRead,
}

impl Role {
    /// DESIGN.md's permission table, and nothing more.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Onboarding => matches!(permission, LicenseRead | LicenseIssue),
            Role::Support => matches!(
                permission,
                LicenseRead | LicenseIssue | LicenseRevoke | LicenseReveal
            ),
            Role::SuperAdmin => matches!(
                permission,
                LicenseRead | LicenseIssue | LicenseRevoke | LicenseReveal | SigningManage
            ),
            Role::Customer => matches!(permission, OwnLicenseRead),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Onboarding => "onboarding",
            Role::Support => "support",
            Role::SuperAdmin => "super_admin",
            Role::Customer => "customer",
        }
    }
}

/// A user as stored. Credentials are digests only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub name: String,
    pub role: Role,
    /// For `customer` users: the customer whose licenses they see.
    pub customer: Option<String>,
    pub token_digests: Vec<SecretDigest>,
    pub created_at: UnixTime,
    pub disabled: bool,
    /// The console password, hashed; `None`: the user cannot sign in to the console.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordHash>,
    /// Console sign-in failures since the last success.
    #[serde(default)]
    pub failed_logins: u32,
    /// Console sign-in is refused until then (after [`LOCKOUT_AFTER`] failures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<UnixTime>,
}

/// Consecutive failed console sign-ins that lock a user out for [`LOCKOUT_SECS`].
pub const LOCKOUT_AFTER: u32 = 5;
/// How long a lockout lasts. Each further failure after it starts a new one.
pub const LOCKOUT_SECS: i64 = 15 * 60;

impl User {
    /// Whether console sign-in is locked at `now`.
    pub fn is_locked(&self, now: UnixTime) -> bool {
        self.locked_until.is_some_and(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_permission_table() {
        use Permission::*;
        let table = [
            (LicenseRead, [true, true, true, false]),
            (LicenseIssue, [true, true, true, false]),
            (LicenseRevoke, [false, true, true, false]),
            (LicenseReveal, [false, true, true, false]),
            (SigningManage, [false, false, true, false]),
            (OwnLicenseRead, [false, false, false, true]),
        ];
        let roles = [
            Role::Onboarding,
            Role::Support,
            Role::SuperAdmin,
            Role::Customer,
        ];
        for (permission, expected) in table {
            for (role, allowed) in roles.iter().zip(expected) {
                assert_eq!(role.allows(permission), allowed, "{role:?} {permission:?}");
            }
        }
    }
}

//! Fleet-wide settings, per-license overrides, and fingerprint matching
//! (DESIGN.md "Settings").

use keys::proto::Components;
use serde::{Deserialize, Serialize};

pub const DAY: i64 = 86_400;

/// How a presented fingerprint is compared with the bound one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum FingerprintPolicy {
    /// Every bound component must be present with the same value.
    Exact,
    /// At least `k` of the bound components must match, so a new NIC does not
    /// lock a box.
    KOfN { k: u32 },
}

impl FingerprintPolicy {
    /// Whether `presented` is the same box as `bound` under this policy.
    pub fn matches(self, bound: &Components, presented: &Components) -> bool {
        let same = bound
            .iter()
            .filter(|(name, value)| presented.get(*name) == Some(*value))
            .count();
        match self {
            FingerprintPolicy::Exact => same == bound.len() && presented.len() == bound.len(),
            FingerprintPolicy::KOfN { k } => {
                // Never fewer than one component, never more than the box has.
                let needed = (k as usize).clamp(1, bound.len().max(1));
                same >= needed
            }
        }
    }

    fn check(self) -> Result<(), String> {
        match self {
            FingerprintPolicy::KOfN { k: 0 } => {
                Err("fingerprint_policy.k must be at least 1".into())
            }
            _ => Ok(()),
        }
    }
}

/// The fleet-wide settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// How long an appliance runs without a successful heartbeat.
    pub offline_window_secs: u32,
    /// How often appliances heartbeat.
    pub heartbeat_interval_secs: u32,
    /// Grace days of a revoke that names none.
    pub default_grace_days: u32,
    pub fingerprint_policy: FingerprintPolicy,
    /// How far back an appliance's clock may step before it locks.
    pub clock_skew_tolerance_secs: u32,
    /// The offline window of leases made for air-gapped activation.
    #[serde(default = "default_airgap_window")]
    pub airgap_offline_window_secs: u32,
}

fn default_airgap_window() -> u32 {
    365 * DAY as u32
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            offline_window_secs: 14 * DAY as u32,
            heartbeat_interval_secs: 60,
            default_grace_days: 5,
            fingerprint_policy: FingerprintPolicy::KOfN { k: 3 },
            clock_skew_tolerance_secs: 300,
            airgap_offline_window_secs: default_airgap_window(),
        }
    }
}

impl Settings {
    /// Refuses settings that would make the fleet unusable.
    pub fn check(&self) -> Result<(), String> {
        if !(60..=366 * DAY as u32).contains(&self.offline_window_secs) {
            return Err("offline_window_secs must be between 60 and 366 days".into());
        }
        if !(10..=86_400).contains(&self.heartbeat_interval_secs) {
            return Err("heartbeat_interval_secs must be between 10 and 86400".into());
        }
        if self.heartbeat_interval_secs >= self.offline_window_secs {
            return Err("heartbeat_interval_secs must be shorter than the offline window".into());
        }
        if self.default_grace_days > 365 {
            return Err("default_grace_days must be at most 365".into());
        }
        if !(DAY as u32..=3 * 366 * DAY as u32).contains(&self.airgap_offline_window_secs) {
            return Err("airgap_offline_window_secs must be between 1 and 1098 days".into());
        }
        if self.clock_skew_tolerance_secs > 86_400 {
            return Err("clock_skew_tolerance_secs must be at most 86400".into());
        }
        self.fingerprint_policy.check()
    }
}

/// Per-license overrides of the settings, fixed at issue time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_window_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_secs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_grace_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint_policy: Option<FingerprintPolicy>,
}

impl PolicyOverrides {
    /// The settings with these overrides applied.
    pub fn apply(&self, base: &Settings) -> Settings {
        Settings {
            offline_window_secs: self.offline_window_secs.unwrap_or(base.offline_window_secs),
            heartbeat_interval_secs: self
                .heartbeat_interval_secs
                .unwrap_or(base.heartbeat_interval_secs),
            default_grace_days: self.default_grace_days.unwrap_or(base.default_grace_days),
            fingerprint_policy: self.fingerprint_policy.unwrap_or(base.fingerprint_policy),
            clock_skew_tolerance_secs: base.clock_skew_tolerance_secs,
            airgap_offline_window_secs: base.airgap_offline_window_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(pairs: &[(&str, &str)]) -> Components {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn fingerprint_policies() {
        let bound = comps(&[
            ("machine_id", "a"),
            ("mac", "b"),
            ("cpu", "c"),
            ("disk", "d"),
        ]);
        let new_nic = comps(&[
            ("machine_id", "a"),
            ("mac", "X"),
            ("cpu", "c"),
            ("disk", "d"),
        ]);
        let other_box = comps(&[
            ("machine_id", "Z"),
            ("mac", "X"),
            ("cpu", "c"),
            ("disk", "Y"),
        ]);
        let extra = comps(&[
            ("machine_id", "a"),
            ("mac", "b"),
            ("cpu", "c"),
            ("disk", "d"),
            ("x", "y"),
        ]);
        let exact = FingerprintPolicy::Exact;
        let three = FingerprintPolicy::KOfN { k: 3 };
        assert!(exact.matches(&bound, &bound));
        assert!(!exact.matches(&bound, &new_nic));
        assert!(!exact.matches(&bound, &extra));
        assert!(three.matches(&bound, &new_nic));
        assert!(!three.matches(&bound, &other_box));
        assert!(FingerprintPolicy::KOfN { k: 99 }.matches(&bound, &bound));
        assert!(!FingerprintPolicy::KOfN { k: 99 }.matches(&bound, &new_nic));
    }

    #[test]
    fn settings_bounds() {
        assert!(Settings::default().check().is_ok());
        let s = Settings {
            heartbeat_interval_secs: 5,
            ..Settings::default()
        };
        assert!(s.check().is_err());
        let s = Settings {
            fingerprint_policy: FingerprintPolicy::KOfN { k: 0 },
            ..Settings::default()
        };
        assert!(s.check().is_err());
    }
}

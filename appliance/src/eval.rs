//! Lease evaluation: the appliance's state as a pure function of what its store
//! holds and the time (DESIGN.md "Appliance", "State").
//!
//! Nothing here reads a clock or a disk. The lease it looks at is a
//! `keys::Verified<Lease>`, so only a lease whose signature and chain verified
//! can ever grant time.

use keys::{Lease, LeaseStatus, UnixTime, Verified};
use serde::{Deserialize, Serialize};

/// Why an appliance is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockReason {
    /// The lease ran out: grace over, offline too long, or the clock moved past it.
    Expired,
    /// A signed denial: the license was revoked.
    Revoked,
    /// A signed denial: the subscription is not valid.
    Suspended,
    /// A signed denial: the license now belongs to other hardware.
    Rebound,
    /// A signed denial: the license key was replaced.
    InvalidKey,
    /// The clock went back beyond the tolerance; a good heartbeat clears it.
    ClockTamper,
    /// No lease that verifies: the store is missing, damaged or was reset.
    NoValidLease,
}

impl LockReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LockReason::Expired => "expired",
            LockReason::Revoked => "revoked",
            LockReason::Suspended => "suspended",
            LockReason::Rebound => "rebound",
            LockReason::InvalidKey => "invalid_key",
            LockReason::ClockTamper => "clock_tamper",
            LockReason::NoValidLease => "no_valid_lease",
        }
    }

    /// The lock a signed denial causes.
    pub fn from_denial(reason: keys::DenialReason) -> LockReason {
        match reason {
            keys::DenialReason::Revoked => LockReason::Revoked,
            keys::DenialReason::Expired => LockReason::Expired,
            keys::DenialReason::Suspended => LockReason::Suspended,
            keys::DenialReason::Rebound => LockReason::Rebound,
            keys::DenialReason::InvalidKey => LockReason::InvalidKey,
            keys::DenialReason::NotActivated => LockReason::NoValidLease,
        }
    }
}

/// The appliance's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Never activated.
    Unlicensed,
    /// Healthy: heartbeats succeed.
    Active { until: UnixTime },
    /// Heartbeats fail; running on the last lease.
    Offline { since: UnixTime, locks_at: UnixTime },
    /// Revoked with grace.
    Grace { until: UnixTime },
    /// Not allowed to run.
    Locked { reason: LockReason },
}

impl State {
    /// Whether the licensed service may run.
    pub fn runs(self) -> bool {
        matches!(
            self,
            State::Active { .. } | State::Offline { .. } | State::Grace { .. }
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Unlicensed => "unlicensed",
            State::Active { .. } => "active",
            State::Offline { .. } => "offline",
            State::Grace { .. } => "grace",
            State::Locked { .. } => "locked",
        }
    }
}

/// What evaluation needs from the store.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The stored lease, verified when it was loaded.
    pub lease: Option<Verified<Lease>>,
    /// A lock a verified denial or a clock check put in place.
    pub lock: Option<LockReason>,
    /// The latest (corrected) wall time the appliance has seen.
    pub high_water: Option<UnixTime>,
    /// When a heartbeat last succeeded.
    pub last_success: Option<UnixTime>,
    /// Whether the appliance was ever activated (the store holds a device key).
    pub activated: bool,
}

/// Tunables of evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How far back the clock may step before it counts as tampering, seconds.
    pub clock_tolerance_secs: i64,
    /// Heartbeats this many intervals overdue make the appliance "offline".
    pub offline_after_intervals: i64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            clock_tolerance_secs: 300,
            offline_after_intervals: 3,
        }
    }
}

/// The state at `now` (the appliance's corrected wall time).
///
/// Order matters: a lock wins over everything; a clock behind the high-water
/// mark or the lease's issue time (by more than the tolerance) is tampering; a
/// lease past `exp` has expired (whatever the reason, including a clock moved
/// forward: fail safe); then grace; then offline if heartbeats are overdue.
pub fn evaluate(facts: &Facts, now: UnixTime, policy: Policy) -> State {
    if let Some(reason) = facts.lock {
        return State::Locked { reason };
    }
    let Some(lease) = &facts.lease else {
        return if facts.activated {
            State::Locked {
                reason: LockReason::NoValidLease,
            }
        } else {
            State::Unlicensed
        };
    };
    let tolerance = policy.clock_tolerance_secs;
    let behind = |mark: UnixTime| now < mark.plus(-tolerance);
    if facts.high_water.is_some_and(behind) || behind(lease.iat) {
        return State::Locked {
            reason: LockReason::ClockTamper,
        };
    }
    if now >= lease.exp {
        return State::Locked {
            reason: LockReason::Expired,
        };
    }
    if lease.status == LeaseStatus::Grace {
        return State::Grace {
            until: lease.grace_expires_at.unwrap_or(lease.exp),
        };
    }
    let last = facts.last_success.unwrap_or(lease.iat).max(lease.iat);
    let overdue = i64::from(lease.hb) * policy.offline_after_intervals;
    if now.secs() - last.secs() > overdue {
        return State::Offline {
            since: last,
            locks_at: lease.exp,
        };
    }
    State::Active { until: lease.exp }
}

/// RFC 3339 text of a time, for banners.
pub fn format_time(at: UnixTime) -> String {
    at.to_rfc3339()
}

fn format_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if days > 0 {
        format!("{days} d {hours} h")
    } else if hours > 0 {
        format!("{hours} h {minutes} min")
    } else {
        format!("{minutes} min")
    }
}

/// The banner for a state (DESIGN.md "Banners"), or `None` when all is well.
pub fn banner(state: State, now: UnixTime) -> Option<String> {
    match state {
        State::Active { .. } => None,
        State::Unlicensed => Some("This appliance is not activated. Contact your administrator.".into()),
        State::Grace { until } => Some(format!(
            "License in grace period. Service will stop on {}. Contact your administrator.",
            format_time(until)
        )),
        State::Offline { since, locks_at } => Some(format!(
            "No contact with the license server for {} (last contact {}). Service will stop on {} unless contact is restored.",
            format_duration(now.secs() - since.secs()),
            format_time(since),
            format_time(locks_at)
        )),
        State::Locked { reason } => Some(match reason {
            LockReason::Expired | LockReason::Revoked | LockReason::Suspended => {
                "License expired. Contact your administrator to restore service.".into()
            }
            LockReason::Rebound => {
                "This license was moved to other hardware. Contact your administrator.".into()
            }
            LockReason::InvalidKey => {
                "The license key was replaced. Install the new key or contact your administrator.".into()
            }
            LockReason::ClockTamper => {
                "The system clock was set back. Service resumes when the license server confirms the time. Contact your administrator.".into()
            }
            LockReason::NoValidLease => {
                "No valid license is stored. Activate this appliance again while it can reach the license server.".into()
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keys::{Entitlements, KeyCert, KeyUse, PrivateKey, TrustStore};

    const T0: UnixTime = UnixTime(1_800_000_000);
    const DAY: i64 = 86_400;
    const POLICY: Policy = Policy {
        clock_tolerance_secs: 300,
        offline_after_intervals: 3,
    };

    /// A verified lease issued at `iat`: 14-day window, or grace until `grace`.
    fn lease(iat: UnixTime, grace: Option<UnixTime>) -> Verified<Lease> {
        let root = PrivateKey::from_seed(&[1; 32]);
        let signing = PrivateKey::from_seed(&[2; 32]);
        let cert = keys::sign(
            &root,
            &KeyCert {
                iss: "t".into(),
                iat: UnixTime(0),
                nbf: UnixTime(0),
                exp: UnixTime(i64::MAX / 2),
                jti: "c".into(),
                kid: signing.kid().to_string(),
                public: signing.public().to_b64(),
                key_use: KeyUse::Lease,
                pop: None,
            },
        )
        .unwrap();
        let exp = [Some(iat.plus(14 * DAY)), grace]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
        let claims = Lease {
            iss: "t".into(),
            sub: "lic".into(),
            iat,
            nbf: iat,
            exp,
            jti: "l".into(),
            seq: 1,
            status: if grace.is_some() {
                LeaseStatus::Grace
            } else {
                LeaseStatus::Active
            },
            grace_expires_at: grace,
            fp: "fp".into(),
            dev: "dev".into(),
            cust: "c".into(),
            ent: Entitlements::default(),
            hb: 60,
            offline: 14 * DAY as u32,
            nonce: "n".into(),
        };
        let token = keys::sign(&signing, &claims).unwrap();
        TrustStore::new([root.public().clone()])
            .verify_lease_at(&token, &cert, iat)
            .unwrap()
    }

    fn facts(iat: UnixTime) -> Facts {
        Facts {
            lease: Some(lease(iat, None)),
            lock: None,
            high_water: Some(iat),
            last_success: Some(iat),
            activated: true,
        }
    }

    fn check(facts: &Facts, now: UnixTime, expected: &str) {
        let state = evaluate(facts, now, POLICY);
        let got = match state {
            State::Locked { reason } => format!("locked:{}", reason.as_str()),
            other => other.name().to_owned(),
        };
        assert_eq!(got, expected, "at {} s: {state:?}", now.secs() - T0.secs());
    }

    #[test]
    fn the_offline_window_to_the_second() {
        let f = facts(T0);
        check(&f, T0, "active");
        check(&f, T0.plus(180), "active");
        check(&f, T0.plus(181), "offline");
        check(&f, T0.plus(13 * DAY), "offline");
        check(&f, T0.plus(14 * DAY - 60), "offline"); // 13 d 23 h 59 m
        check(&f, T0.plus(14 * DAY - 1), "offline");
        check(&f, T0.plus(14 * DAY), "locked:expired"); // exp is exclusive
        check(&f, T0.plus(14 * DAY + 1), "locked:expired");
        match evaluate(&f, T0.plus(13 * DAY), POLICY) {
            State::Offline { since, locks_at } => {
                assert_eq!(since, T0);
                assert_eq!(locks_at, T0.plus(14 * DAY));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn clock_steps() {
        let mut f = facts(T0);
        f.high_water = Some(T0.plus(DAY));
        // Back by a minute (within the tolerance): still running.
        check(&f, T0.plus(DAY - 60), "offline");
        // Back by exactly the tolerance, and one second more.
        check(&f, T0.plus(DAY - 300), "offline");
        check(&f, T0.plus(DAY - 301), "locked:clock_tamper");
        // Back by a day.
        check(&f, T0, "locked:clock_tamper");
        // Before the lease was issued, even with no high-water mark.
        f.high_water = None;
        check(&f, T0.plus(-DAY), "locked:clock_tamper");
        check(&f, T0.plus(-300), "active");
        // Forward by 20 days: past the lease, locked (fail safe).
        check(&facts(T0), T0.plus(20 * DAY), "locked:expired");
    }

    #[test]
    fn grace_and_locks() {
        let mut f = facts(T0);
        f.lease = Some(lease(T0, Some(T0.plus(5 * DAY))));
        check(&f, T0.plus(DAY), "grace");
        assert_eq!(
            evaluate(&f, T0.plus(DAY), POLICY),
            State::Grace {
                until: T0.plus(5 * DAY)
            }
        );
        check(&f, T0.plus(5 * DAY - 1), "grace");
        check(&f, T0.plus(5 * DAY), "locked:expired");
        for reason in [
            LockReason::Revoked,
            LockReason::Rebound,
            LockReason::InvalidKey,
            LockReason::ClockTamper,
        ] {
            let mut locked = facts(T0);
            locked.lock = Some(reason);
            assert_eq!(evaluate(&locked, T0, POLICY), State::Locked { reason });
        }
    }

    #[test]
    fn no_lease() {
        let empty = Facts::default();
        check(&empty, T0, "unlicensed");
        let lost = Facts {
            activated: true,
            ..Facts::default()
        };
        check(&lost, T0, "locked:no_valid_lease");
    }

    #[test]
    fn banners_say_what_the_seeds_say() {
        let grace = banner(
            State::Grace {
                until: T0.plus(5 * DAY),
            },
            T0,
        )
        .unwrap();
        assert_eq!(
            grace,
            "License in grace period. Service will stop on 2027-01-20T08:00:00Z. Contact your administrator."
        );
        let expired = banner(
            State::Locked {
                reason: LockReason::Expired,
            },
            T0,
        )
        .unwrap();
        assert_eq!(
            expired,
            "License expired. Contact your administrator to restore service."
        );
        let offline = banner(
            State::Offline {
                since: T0,
                locks_at: T0.plus(14 * DAY),
            },
            T0.plus(3 * DAY + 3600),
        )
        .unwrap();
        assert!(offline.contains("for 3 d 1 h"), "{offline}");
        assert!(offline.contains("2027-01-29T08:00:00Z"), "{offline}");
        assert_eq!(banner(State::Active { until: T0 }, T0), None);
    }
}

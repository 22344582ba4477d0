//! The license record and its state machine (DESIGN.md "License states").
//!
//! [`transition`] is a pure function of (state, whether a box is bound, action,
//! now): the HTTP handlers, the heartbeat path and the sweep all go through it, so
//! there is one definition of what may happen to a license.

use crate::domain::ids::{LicenseId, SecretDigest};
use crate::domain::settings::{DAY, PolicyOverrides};
use keys::proto::Components;
use keys::{DenialReason, Entitlements, UnixTime};
use serde::{Deserialize, Serialize};

/// Where a license is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum State {
    /// Created, never activated.
    Issued,
    /// Healthy.
    Active,
    /// Revoked with grace: runs until `until`.
    Grace { until: UnixTime },
    /// Revoked and over.
    Expired,
    /// The subscription is not valid.
    Suspended,
}

/// The status names used in the API and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Issued,
    Active,
    Grace,
    Expired,
    Suspended,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Issued,
        Status::Active,
        Status::Grace,
        Status::Expired,
        Status::Suspended,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Issued => "issued",
            Status::Active => "active",
            Status::Grace => "grace",
            Status::Expired => "expired",
            Status::Suspended => "suspended",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl State {
    pub fn status(self) -> Status {
        match self {
            State::Issued => Status::Issued,
            State::Active => Status::Active,
            State::Grace { .. } => Status::Grace,
            State::Expired => Status::Expired,
            State::Suspended => Status::Suspended,
        }
    }

    /// The state of a status and a grace deadline, as a record stores them
    /// (`status`, and `until` for grace). `None`: grace without a deadline, a
    /// record no valid state gives. Any other state ignores `until`, as
    /// deserializing a [`License`] does.
    pub fn from_parts(status: Status, until: Option<UnixTime>) -> Option<State> {
        Some(match status {
            Status::Issued => State::Issued,
            Status::Active => State::Active,
            Status::Grace => State::Grace { until: until? },
            Status::Expired => State::Expired,
            Status::Suspended => State::Suspended,
        })
    }

    pub fn grace_until(self) -> Option<UnixTime> {
        match self {
            State::Grace { until } => Some(until),
            _ => None,
        }
    }

    /// What an appliance of a license in this state is told instead of a lease.
    pub fn denial(self) -> Option<DenialReason> {
        match self {
            State::Expired => Some(DenialReason::Expired),
            State::Suspended => Some(DenialReason::Suspended),
            State::Issued | State::Active | State::Grace { .. } => None,
        }
    }
}

/// Something that may change a license's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// An appliance activates (binds) the license.
    Activate,
    /// Support revokes, with this many days of grace (0: at once).
    Revoke { grace_days: u32 },
    /// Support undoes a revoke.
    Reinstate,
    /// The subscription lapsed.
    Suspend,
    /// The subscription is paid again.
    Restore,
    /// The health sweep reconciles deadlines: grace past its end expires, a
    /// subscription past its end suspends (a license in grace included: its
    /// leases cannot outlive the subscription anyway).
    Sweep {
        subscription_ends_at: Option<UnixTime>,
    },
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Activate => "activate",
            Action::Revoke { .. } => "revoke",
            Action::Reinstate => "reinstate",
            Action::Suspend => "suspend",
            Action::Restore => "restore",
            Action::Sweep { .. } => "sweep",
        }
    }
}

/// An action that is not allowed in the license's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub from: Status,
    pub action: &'static str,
}

/// The state after `action`, `Ok(None)` when the action changes nothing, or the
/// refusal. `bound` says whether a box has ever been bound: undoing a revoke or a
/// suspension returns a never-activated license to `issued`, not `active`.
pub fn transition(
    state: State,
    bound: bool,
    action: Action,
    now: UnixTime,
) -> Result<Option<State>, Refused> {
    let refused = Err(Refused {
        from: state.status(),
        action: action.name(),
    });
    let resumed = if bound { State::Active } else { State::Issued };
    let revoked = |grace_days: u32| {
        if grace_days == 0 {
            State::Expired
        } else {
            State::Grace {
                until: now.plus(i64::from(grace_days) * DAY),
            }
        }
    };
    let next = match (state, action) {
        (State::Issued, Action::Activate) => State::Active,
        (State::Active | State::Grace { .. }, Action::Activate) => return Ok(None),
        (State::Expired | State::Suspended, Action::Activate) => return refused,

        // Revoking again from grace replaces the deadline (for example with 0 days).
        (State::Issued | State::Active | State::Grace { .. }, Action::Revoke { grace_days }) => {
            revoked(grace_days)
        }
        (State::Expired | State::Suspended, Action::Revoke { .. }) => return refused,

        (State::Grace { .. } | State::Expired, Action::Reinstate) => resumed,
        (State::Issued | State::Active | State::Suspended, Action::Reinstate) => return refused,

        (State::Issued | State::Active | State::Grace { .. }, Action::Suspend) => State::Suspended,
        (State::Expired | State::Suspended, Action::Suspend) => return refused,

        (State::Suspended, Action::Restore) => resumed,
        (_, Action::Restore) => return refused,

        (State::Grace { until }, Action::Sweep { .. }) if until <= now => State::Expired,
        (
            State::Issued | State::Active | State::Grace { .. },
            Action::Sweep {
                subscription_ends_at: Some(end),
            },
        ) if end <= now => State::Suspended,
        (_, Action::Sweep { .. }) => return Ok(None),
    };
    Ok(Some(next))
}

/// What the health sweep decides on, and nothing else: the inputs of
/// [`transition`] with [`Action::Sweep`]. [`License::sweep_facts`] reads them off
/// a license; a store may read them off a stored record without decoding the
/// rest ([`crate::store::Store::licenses_due_for_sweep`]). Either way the
/// decision is [`SweepFacts::due`], that is, [`transition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepFacts {
    pub state: State,
    /// Whether a box has ever been bound ([`is_bound`]).
    pub bound: bool,
    pub subscription_ends_at: Option<UnixTime>,
}

impl SweepFacts {
    /// The sweep's action for this license.
    pub fn action(self) -> Action {
        Action::Sweep {
            subscription_ends_at: self.subscription_ends_at,
        }
    }

    /// The state a sweep at `now` moves the license to, or `None` when it is
    /// not due. (`transition` never refuses a sweep.)
    pub fn due(self, now: UnixTime) -> Option<State> {
        transition(self.state, self.bound, self.action(), now)
            .ok()
            .flatten()
    }
}

/// Whether a box has ever been bound, from whether the binding has a device
/// key and a bind time: the one definition behind [`License::is_bound`] and
/// whatever reads the same two fields off a stored record.
pub fn is_bound(has_device_key: bool, has_bound_at: bool) -> bool {
    has_device_key || has_bound_at
}

/// The box a license is bound to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The hashed fingerprint components the box presented (or support set by rebind).
    pub components: Option<Components>,
    /// The device public key, base64url, once a box activated.
    pub device_key: Option<String>,
    /// The highest request counter seen from the device.
    pub counter: u64,
    pub bound_at: Option<UnixTime>,
}

/// What the last heartbeat said, for the license card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSeen {
    pub at: UnixTime,
    pub version: String,
    pub ip: String,
}

/// How many superseded license keys are remembered, so that a box still using
/// one gets a signed `invalid_key` denial rather than silence.
pub const RETIRED_KEYS_KEPT: usize = 8;
/// How many device keys moved off by rebinds are remembered (signed `rebound`).
pub const REBOUND_DEVICES_KEPT: usize = 8;

/// A license as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct License {
    pub id: LicenseId,
    pub customer: String,
    pub entitlements: Entitlements,
    #[serde(flatten)]
    pub state: State,
    pub subscription_ends_at: Option<UnixTime>,
    pub policy: PolicyOverrides,
    /// SHA-256 of the current license key.
    pub key_digest: SecretDigest,
    /// The current license key, encrypted under the key-encryption key (for reveal).
    pub key_sealed: String,
    /// The current key's last four characters, for the console's masked
    /// `pk_•••…•Ab3f` (16 of its 256 bits: no help to a guesser).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_hint: Option<String>,
    /// Digests of superseded keys, newest last.
    pub retired_key_digests: Vec<SecretDigest>,
    pub binding: Binding,
    /// Device keys moved off this license by a rebind, newest last.
    pub rebound_devices: Vec<String>,
    /// The `seq` of the last lease issued.
    pub lease_seq: u64,
    /// Who signed the last lease issued, and when it expires (for the count of
    /// live leases per signing key).
    #[serde(default)]
    pub lease_kid: Option<String>,
    #[serde(default)]
    pub lease_expires_at: Option<UnixTime>,
    pub last_seen: Option<LastSeen>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
    /// Bumped by every write: the store refuses a write based on a stale read.
    pub version: u64,
}

impl License {
    /// The last four characters of a license key, as kept in [`License::key_hint`].
    pub fn hint_of(key: &str) -> String {
        let start = key.len().saturating_sub(4);
        key.get(start..).unwrap_or_default().to_owned()
    }

    /// Whether a box has ever been bound.
    pub fn is_bound(&self) -> bool {
        is_bound(
            self.binding.device_key.is_some(),
            self.binding.bound_at.is_some(),
        )
    }

    /// What the health sweep decides on ([`SweepFacts`]).
    pub fn sweep_facts(&self) -> SweepFacts {
        SweepFacts {
            state: self.state,
            bound: self.is_bound(),
            subscription_ends_at: self.subscription_ends_at,
        }
    }

    /// Pushes onto a bounded most-recent-last list.
    pub fn remember<T: PartialEq>(list: &mut Vec<T>, item: T, keep: usize) {
        list.retain(|x| *x != item);
        list.push(item);
        let excess = list.len().saturating_sub(keep);
        list.drain(..excess);
    }
}

/// A lease's `exp` (DESIGN.md "Lease expiry"):
/// `min(iat + offline window, grace_expires_at, subscription end)`.
pub fn lease_expiry(
    iat: UnixTime,
    offline_window_secs: u32,
    grace_until: Option<UnixTime>,
    subscription_ends_at: Option<UnixTime>,
) -> UnixTime {
    [
        Some(iat.plus(i64::from(offline_window_secs))),
        grace_until,
        subscription_ends_at,
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(iat)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixTime = UnixTime(1_800_000_000);

    fn all_states() -> Vec<(&'static str, State)> {
        vec![
            ("issued", State::Issued),
            ("active", State::Active),
            (
                "grace(future)",
                State::Grace {
                    until: NOW.plus(DAY),
                },
            ),
            (
                "grace(past)",
                State::Grace {
                    until: NOW.plus(-1),
                },
            ),
            ("grace(now)", State::Grace { until: NOW }),
            ("expired", State::Expired),
            ("suspended", State::Suspended),
        ]
    }

    fn all_actions() -> Vec<(&'static str, Action)> {
        vec![
            ("activate", Action::Activate),
            ("revoke(0)", Action::Revoke { grace_days: 0 }),
            ("revoke(5)", Action::Revoke { grace_days: 5 }),
            ("reinstate", Action::Reinstate),
            ("suspend", Action::Suspend),
            ("restore", Action::Restore),
            (
                "sweep(no end)",
                Action::Sweep {
                    subscription_ends_at: None,
                },
            ),
            (
                "sweep(ended)",
                Action::Sweep {
                    subscription_ends_at: Some(NOW),
                },
            ),
            (
                "sweep(running)",
                Action::Sweep {
                    subscription_ends_at: Some(NOW.plus(1)),
                },
            ),
        ]
    }

    /// Expected outcome, written out by hand for every state × action (bound box).
    fn expected(state: &str, action: &str) -> &'static str {
        match (state, action) {
            ("issued", "activate") => "active",
            ("active" | "grace(future)" | "grace(past)" | "grace(now)", "activate") => "unchanged",
            ("expired" | "suspended", "activate") => "refused",
            ("issued" | "active" | "grace(future)" | "grace(past)" | "grace(now)", "revoke(0)") => {
                "expired"
            }
            ("issued" | "active" | "grace(future)" | "grace(past)" | "grace(now)", "revoke(5)") => {
                "grace+5d"
            }
            ("expired" | "suspended", "revoke(0)" | "revoke(5)") => "refused",
            ("grace(future)" | "grace(past)" | "grace(now)" | "expired", "reinstate") => "active",
            (_, "reinstate") => "refused",
            ("issued" | "active" | "grace(future)" | "grace(past)" | "grace(now)", "suspend") => {
                "suspended"
            }
            (_, "suspend") => "refused",
            ("suspended", "restore") => "active",
            (_, "restore") => "refused",
            ("grace(past)" | "grace(now)", a) if a.starts_with("sweep") => "expired",
            ("issued" | "active" | "grace(future)", "sweep(ended)") => "suspended",
            (_, a) if a.starts_with("sweep") => "unchanged",
            _ => panic!("no expectation for {state} × {action}"),
        }
    }

    fn describe(result: Result<Option<State>, Refused>) -> String {
        match result {
            Err(_) => "refused".into(),
            Ok(None) => "unchanged".into(),
            Ok(Some(State::Grace { until })) if until == NOW.plus(5 * DAY) => "grace+5d".into(),
            Ok(Some(state)) => state.status().as_str().into(),
        }
    }

    #[test]
    fn every_state_times_every_action() {
        let mut checked = 0;
        for (state_name, state) in all_states() {
            for (action_name, action) in all_actions() {
                let got = describe(transition(state, true, action, NOW));
                assert_eq!(
                    got,
                    expected(state_name, action_name),
                    "{state_name} × {action_name}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 7 * 9);
    }

    #[test]
    fn a_never_bound_license_resumes_as_issued() {
        let grace = State::Grace {
            until: NOW.plus(DAY),
        };
        assert_eq!(
            transition(grace, false, Action::Reinstate, NOW),
            Ok(Some(State::Issued))
        );
        assert_eq!(
            transition(State::Expired, false, Action::Reinstate, NOW),
            Ok(Some(State::Issued))
        );
        assert_eq!(
            transition(State::Suspended, false, Action::Restore, NOW),
            Ok(Some(State::Issued))
        );
        assert_eq!(
            transition(State::Suspended, true, Action::Restore, NOW),
            Ok(Some(State::Active))
        );
    }

    #[test]
    fn sweep_is_idempotent() {
        let sweep = Action::Sweep {
            subscription_ends_at: Some(NOW),
        };
        for (name, state) in all_states() {
            let once = match transition(state, true, sweep, NOW) {
                Ok(Some(next)) => next,
                Ok(None) => state,
                Err(_) => panic!("sweep refused in {name}"),
            };
            assert_eq!(transition(once, true, sweep, NOW), Ok(None), "{name}");
        }
    }

    #[test]
    fn lease_expiry_is_the_earliest_deadline() {
        assert_eq!(lease_expiry(NOW, 100, None, None), NOW.plus(100));
        assert_eq!(
            lease_expiry(NOW, 100, Some(NOW.plus(50)), None),
            NOW.plus(50)
        );
        assert_eq!(
            lease_expiry(NOW, 100, Some(NOW.plus(50)), Some(NOW.plus(20))),
            NOW.plus(20)
        );
    }

    #[test]
    fn remember_keeps_the_newest() {
        let mut list = vec![];
        for i in 0..12 {
            License::remember(&mut list, i, 8);
        }
        assert_eq!(list, (4..12).collect::<Vec<_>>());
        License::remember(&mut list, 5, 8);
        assert_eq!(list.last(), Some(&5));
        assert_eq!(list.len(), 8);
    }
}

//! A realistic fleet of licenses written straight into a store through
//! [`Store::commit`], no HTTP and no sealing: shared by the sweep benchmark
//! (`benches/sweep.rs`) and the `populate` example, which fills a real data
//! directory for the memory measurement (`bench/rss-1m.sh`).
//!
//! The fleet, as of `now`: 93 % active and bound (a seventh of them perpetual),
//! 3 % never activated, 1 % in grace with time left, 1 % expired, 1 % suspended,
//! and the due ones, 0.5 % in grace past its deadline and 0.5 % active with the
//! subscription ended. One real sealed key string is reused by every license
//! (sealed for the first license's id), so the keys cannot be revealed; nothing
//! that reads the fleet in bulk opens them.
//!
//! This file is a module of each target that includes it (`#[path]`), not a
//! target of its own: Cargo does not discover `benches/support/*.rs`.

use control_plane::domain::ids::{LicenseId, LicenseKey, SecretDigest};
use control_plane::domain::license::{Binding, LastSeen, License, State};
use control_plane::secrets::Kek;
use control_plane::store::{Change, LicenseWrite, Store};
use keys::UnixTime;
use keys::proto::Components;

const DAY: i64 = 86_400;
/// Licenses per commit.
pub const BATCH: usize = 10_000;

/// What the sweep should do to a license.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Due {
    Nothing,
    Expire,
    Suspend,
}

/// What every license shares, built once.
pub struct Template {
    key_digest: SecretDigest,
    key_sealed: String,
    kid: String,
    components: Components,
}

impl Template {
    /// One license key sealed under `kek`, and `kid` as the signer of every
    /// bound license's last lease.
    pub fn new(kek: &Kek, kid: String) -> anyhow::Result<Template> {
        let key = LicenseKey::generate()?;
        Ok(Template {
            key_digest: key.digest(),
            key_sealed: kek.seal_license_key(&id_of(0), &key)?,
            kid,
            components: [
                "machine_id",
                "product_uuid",
                "board_serial",
                "mac",
                "cpu",
                "disk_serial",
                "memory",
            ]
            .iter()
            .enumerate()
            .map(|(i, name)| ((*name).to_owned(), keys::b64::encode([i as u8; 32])))
            .collect(),
        })
    }
}

/// The `i`th license's id: pseudo-random, like generated ids, but reproducible.
pub fn id_of(i: u64) -> LicenseId {
    let mix = |mut x: u64| {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    };
    let text = format!("lic_{:016x}{:016x}", mix(i), mix(i ^ (1 << 63)));
    // Always the form `LicenseId::parse` accepts: `lic_` and 32 hex digits.
    #[allow(clippy::expect_used)]
    LicenseId::parse(&text).expect("a well-formed license id")
}

/// The `i`th license of the fleet as of `now`, and what a sweep at `now`
/// should do to it.
pub fn license(t: &Template, i: u64, now: UnixTime) -> (License, Due) {
    let next_year = Some(now.plus(365 * DAY));
    let (state, subscription_ends_at, bound, due) = match i % 1000 {
        0..5 => (
            State::Grace {
                until: now.plus(-DAY),
            },
            next_year,
            true,
            Due::Expire,
        ),
        5..10 => (State::Active, Some(now.plus(-DAY)), true, Due::Suspend),
        10..20 => (
            State::Grace {
                until: now.plus(3 * DAY),
            },
            next_year,
            true,
            Due::Nothing,
        ),
        20..30 => (State::Expired, next_year, true, Due::Nothing),
        30..40 => (
            State::Suspended,
            Some(now.plus(-30 * DAY)),
            true,
            Due::Nothing,
        ),
        40..70 => (State::Issued, next_year, false, Due::Nothing),
        // A seventh of the healthy fleet has no subscription end (perpetual).
        _ => (
            State::Active,
            next_year.filter(|_| !i.is_multiple_of(7)),
            true,
            Due::Nothing,
        ),
    };
    let id = id_of(i);
    let created = now.plus(-400 * DAY + (i % 300) as i64 * DAY);
    let seen = now.plus(-(((i * 7) % 7200) as i64));
    let license = License {
        id,
        customer: format!("customer-{:04}", i % 5000),
        entitlements: keys::Entitlements {
            product: "gateway".into(),
            features: vec!["sso".into(), "audit-log".into(), "ha-cluster".into()],
            limits: [("seats".to_owned(), 250)].into_iter().collect(),
        },
        state,
        subscription_ends_at,
        policy: Default::default(),
        key_digest: t.key_digest.clone(),
        key_sealed: t.key_sealed.clone(),
        key_hint: Some("Ab3f".into()),
        retired_key_digests: vec![],
        binding: if bound {
            Binding {
                components: Some(t.components.clone()),
                device_key: Some(keys::b64::encode((i as u128).to_le_bytes().repeat(2))),
                counter: 40_000 + i % 1000,
                bound_at: Some(created.plus(DAY)),
            }
        } else {
            Binding::default()
        },
        rebound_devices: vec![],
        lease_seq: if bound { 40_000 + i % 1000 } else { 0 },
        lease_kid: bound.then(|| t.kid.clone()),
        lease_expires_at: bound.then(|| seen.plus(14 * DAY)),
        last_seen: bound.then(|| LastSeen {
            at: seen,
            version: format!("4.{}.0", i % 5),
            ip: format!("10.{}.{}.{}", i / 62_500 % 250, i / 250 % 250, i % 250),
        }),
        created_at: created,
        updated_at: seen,
        version: 1,
    };
    (license, due)
}

/// What [`fill`] wrote.
pub struct Filled {
    /// The licenses a sweep at `now` should change, as written.
    pub due: Vec<(License, Due)>,
    /// The size of the first license's JSON.
    pub bytes: usize,
}

/// Writes licenses `0..count` of the fleet as of `now`, [`BATCH`] to a commit.
pub async fn fill(
    store: &dyn Store,
    template: &Template,
    count: u64,
    now: UnixTime,
) -> anyhow::Result<Filled> {
    let mut due = Vec::new();
    let mut bytes = 0usize;
    for start in (0..count).step_by(BATCH) {
        let end = (start + BATCH as u64).min(count);
        let mut writes: Vec<LicenseWrite> = Vec::with_capacity(BATCH);
        for i in start..end {
            let (license, what) = license(template, i, now);
            if i == 0 {
                bytes = serde_json::to_vec(&license)?.len();
            }
            if what != Due::Nothing {
                due.push((license.clone(), what));
            }
            writes.push(LicenseWrite {
                license,
                expected_version: None,
            });
        }
        let change = Change {
            licenses: writes,
            ..Change::default()
        };
        store.commit(change, now).await?;
    }
    Ok(Filled { due, bytes })
}

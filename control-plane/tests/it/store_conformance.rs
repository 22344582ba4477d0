//! One conformance suite for the [`Store`] trait, run against the embedded sled
//! store and against PostgreSQL (each test in a database of its own, on the
//! server `LICENSING_TEST_POSTGRES` names; `./scripts/test` starts one). Every
//! test is an `async fn(StoreKind)` written once, instantiated for both kinds by
//! [`on_each_store!`]: every operation of the trait, compared where it filters
//! or pages against what a plain scan of the written data finds; atomicity of a
//! change; racing writers; durability across a reopen; random writes against a
//! `BTreeMap` model, reopens included (a property test); and the audit chain's
//! verification, including tampering done directly on the PostgreSQL tables.
//!
//! The state-machine scenarios and the sweep, through the whole control plane,
//! run on both kinds in `routes` and `sweep`.

use crate::support::{StoreKind, TestStore, on_each_store, skip_postgres};
use control_plane::domain::audit::{AuditEvent, AuditRecord, ChainHead, verify_chain};
use control_plane::domain::ids::{ApiToken, LicenseId, LicenseKey, UserId};
use control_plane::domain::license::{Action, Binding, License, State, Status, transition};
use control_plane::domain::settings::Settings;
use control_plane::domain::user::{Role, User};
use control_plane::error::Error;
use control_plane::store::postgres::PgStore;
use control_plane::store::{
    AuditQuery, Change, KeyRecord, KeyState, LicenseQuery, LicenseWrite, Store, StoreLocation,
};
use keys::UnixTime;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::collections::{BTreeMap, HashMap};

const AT: UnixTime = UnixTime(1_800_000_000);

fn event(action: &str, target: &str) -> AuditEvent {
    AuditEvent {
        action: action.into(),
        target: target.into(),
        actor_id: "usr_test".into(),
        actor_name: "test".into(),
        ip: "127.0.0.1".into(),
        metadata: serde_json::json!({"n": target}),
    }
}

/// Commits a change that is one audit record and nothing else.
async fn append(store: &dyn Store, action: &str, target: &str) {
    store
        .commit(
            Change {
                audit: vec![event(action, target)],
                ..Change::default()
            },
            AT,
        )
        .await
        .unwrap();
}

/// The `n`th test license id (ids sort as `n` does).
fn id(n: u32) -> LicenseId {
    LicenseId::parse(&format!("lic_{:032x}", u128::from(n) * 7919)).unwrap()
}

fn license(n: u32, version: u64) -> License {
    let key = LicenseKey::generate().unwrap();
    License {
        id: id(n),
        customer: "acme".into(),
        entitlements: keys::Entitlements::default(),
        state: State::Issued,
        subscription_ends_at: None,
        policy: Default::default(),
        key_digest: key.digest(),
        key_sealed: "sealed".into(),
        key_hint: None,
        retired_key_digests: vec![],
        binding: Binding::default(),
        rebound_devices: vec![],
        lease_seq: 0,
        lease_kid: None,
        lease_expires_at: None,
        last_seen: None,
        created_at: AT,
        updated_at: AT,
        version,
    }
}

fn new_license(license: License) -> LicenseWrite {
    LicenseWrite {
        license,
        expected_version: None,
    }
}

fn user(name: &str, tokens: usize) -> (User, Vec<ApiToken>) {
    let tokens: Vec<ApiToken> = (0..tokens).map(|_| ApiToken::generate().unwrap()).collect();
    let user = User {
        id: UserId::generate().unwrap(),
        name: name.into(),
        role: Role::Support,
        customer: None,
        token_digests: tokens.iter().map(ApiToken::digest).collect(),
        created_at: AT,
        disabled: false,
        password: None,
        failed_logins: 0,
        locked_until: None,
    };
    (user, tokens)
}

fn key(kid: &str, state: KeyState) -> KeyRecord {
    KeyRecord {
        kid: kid.into(),
        role: keys::keyfile::KeyRole::Signing,
        sealed: None,
        public: Some(format!("public-{kid}")),
        chain: vec![format!("cert-{kid}")],
        state,
        created_at: AT,
        activated_at: None,
        retired_at: None,
        revoked_at: None,
    }
}

fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap()
}

/// Every audit record, oldest first.
async fn all_audit(store: &dyn Store) -> Vec<AuditRecord> {
    store
        .audit(&AuditQuery {
            limit: usize::MAX,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .items
}

async fn initialize_once(kind: StoreKind) {
    let t = TestStore::new(kind).await;
    let store = t.store.as_ref();
    assert!(!store.is_initialized().await.unwrap());
    assert_eq!(store.audit_head().await.unwrap(), ChainHead::default());
    let (admin, tokens) = user("admin", 1);
    let written = store
        .initialize(
            Change {
                users: vec![admin.clone()],
                audit: vec![event("init", "control-plane")],
                ..Change::default()
            },
            AT,
        )
        .await
        .unwrap();
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].seq, 1);
    assert!(store.is_initialized().await.unwrap());
    // A second init is refused and writes nothing of its change.
    let (other, _) = user("other", 1);
    assert!(matches!(
        store
            .initialize(
                Change {
                    users: vec![other.clone()],
                    audit: vec![event("init", "control-plane")],
                    ..Change::default()
                },
                AT,
            )
            .await,
        Err(Error::Conflict)
    ));
    assert_eq!(store.audit_head().await.unwrap(), written[0].head());
    assert_eq!(store.user(&other.id).await.unwrap(), None);
    assert_eq!(store.users().await.unwrap(), vec![admin.clone()]);
    assert_eq!(
        store.user_by_token(&tokens[0].digest()).await.unwrap(),
        Some(admin)
    );
}

/// A fleet of licenses in every status, for three customers, written one by
/// one in a shuffled id order.
async fn write_fleet(store: &dyn Store) -> Vec<License> {
    let statuses = [
        State::Issued,
        State::Active,
        State::Grace { until: AT.plus(10) },
        State::Expired,
        State::Suspended,
    ];
    let mut fleet = Vec::new();
    for i in 0..37u32 {
        let n = (i * 17) % 37;
        let mut l = license(n, 1);
        l.state = statuses[(n % 5) as usize];
        l.customer = ["acme", "globex", "customer \"q\" \u{e9}"][(n % 3) as usize].into();
        store
            .commit(
                Change {
                    licenses: vec![new_license(l.clone())],
                    ..Change::default()
                },
                AT,
            )
            .await
            .unwrap();
        fleet.push(l);
    }
    fleet.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    fleet
}

async fn licenses_filter_and_page_as_a_scan_would(kind: StoreKind) {
    let t = TestStore::new(kind).await;
    let store = t.store.as_ref();
    let fleet = write_fleet(store).await;
    for l in &fleet {
        assert_eq!(store.license(&l.id).await.unwrap().as_ref(), Some(l));
    }
    assert_eq!(store.license(&id(1000)).await.unwrap(), None);

    let statuses = [None].into_iter().chain(Status::ALL.into_iter().map(Some));
    for status in statuses {
        for customer in [
            None,
            Some("acme"),
            Some("customer \"q\" \u{e9}"),
            Some("nobody"),
        ] {
            let matching: Vec<&License> = fleet
                .iter()
                .filter(|l| status.is_none_or(|s| l.state.status() == s))
                .filter(|l| customer.is_none_or(|c| l.customer == c))
                .collect();
            // `after` an id in the fleet, between two, and past the end.
            for after in [None, Some(id(0)), Some(id(5)), Some(id(36)), Some(id(1000))] {
                for limit in [0, 1, 3, fleet.len(), usize::MAX] {
                    let query = LicenseQuery {
                        status,
                        customer: customer.map(str::to_owned),
                        after: after.clone(),
                        limit,
                    };
                    let rest: Vec<&License> = matching
                        .iter()
                        .copied()
                        .filter(|l| after.as_ref().is_none_or(|a| l.id.as_str() > a.as_str()))
                        .collect();
                    let page_size = limit.max(1);
                    let want: Vec<&License> = rest.iter().copied().take(page_size).collect();
                    let want_next =
                        (rest.len() > page_size).then(|| want[want.len() - 1].id.clone());
                    let page = store.licenses(&query).await.unwrap();
                    assert_eq!(page.items.iter().collect::<Vec<_>>(), want, "{query:?}");
                    assert_eq!(page.next, want_next, "{query:?}");
                }
            }
            // Following `next` from the start visits every match once.
            for limit in [1, 4] {
                let (mut seen, mut after) = (Vec::new(), None);
                loop {
                    let page = store
                        .licenses(&LicenseQuery {
                            status,
                            customer: customer.map(str::to_owned),
                            after,
                            limit,
                        })
                        .await
                        .unwrap();
                    assert!(page.items.len() <= limit);
                    seen.extend(page.items);
                    match page.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
                assert_eq!(seen.iter().collect::<Vec<_>>(), matching);
            }
        }
    }

    let mut want: HashMap<Status, u64> = HashMap::new();
    for l in &fleet {
        *want.entry(l.state.status()).or_insert(0) += 1;
    }
    let mut counts = store.count_by_state().await.unwrap();
    counts.retain(|_, n| *n > 0);
    assert_eq!(counts, want);
}

/// The licenses a full decode and [`transition`] say a sweep at `now` moves,
/// the oracle of the due-scan.
async fn due_by_full_decode(store: &dyn Store, now: UnixTime) -> Vec<LicenseId> {
    let all = store
        .licenses(&LicenseQuery {
            limit: usize::MAX,
            ..LicenseQuery::default()
        })
        .await
        .unwrap();
    all.items
        .into_iter()
        .filter(|l| {
            let action = Action::Sweep {
                subscription_ends_at: l.subscription_ends_at,
            };
            matches!(transition(l.state, l.is_bound(), action, now), Ok(Some(_)))
        })
        .map(|l| l.id)
        .collect()
}

/// Every page of the due-scan, concatenated, and the count examined.
async fn due_by_scan(store: &dyn Store, now: UnixTime, limit: usize) -> (Vec<LicenseId>, u64) {
    let (mut due, mut examined, mut after) = (Vec::new(), 0, None);
    loop {
        let scan = store
            .licenses_due_for_sweep(now, after.as_ref(), limit)
            .await
            .unwrap();
        assert!(scan.examined <= limit.max(1) as u64);
        examined += scan.examined;
        due.extend(scan.due);
        match scan.next {
            Some(next) => after = Some(next),
            None => return (due, examined),
        }
    }
}

async fn the_due_scan_finds_what_a_full_decode_and_transition_find(kind: StoreKind) {
    let t = TestStore::new(kind).await;
    let store = t.store.as_ref();
    let times = [None, Some(AT.plus(-1)), Some(AT), Some(AT.plus(1))];
    let states = [
        State::Issued,
        State::Active,
        State::Grace { until: AT.plus(-1) },
        State::Grace { until: AT },
        State::Grace { until: AT.plus(1) },
        State::Expired,
        State::Suspended,
    ];
    let mut n = 0u32;
    let mut writes = Vec::new();
    for state in states {
        for (device_key, bound_at) in [(false, false), (true, false), (false, true), (true, true)] {
            for subscription_ends_at in times {
                let mut l = license(n, 1);
                l.state = state;
                l.subscription_ends_at = subscription_ends_at;
                l.binding = Binding {
                    components: device_key.then(Default::default),
                    device_key: device_key.then(|| "device-key".to_owned()),
                    counter: 3,
                    bound_at: bound_at.then_some(AT.plus(-100)),
                };
                l.customer = format!("customer \"{n}\" \u{e9}");
                writes.push(new_license(l));
                n += 1;
            }
        }
    }
    // Written in one change, with its audit records.
    store
        .commit(
            Change {
                licenses: writes,
                audit: vec![event("license.issue", "fleet")],
                ..Change::default()
            },
            AT,
        )
        .await
        .unwrap();
    for now in [AT.plus(-1), AT, AT.plus(1)] {
        let want = due_by_full_decode(store, now).await;
        assert!(!want.is_empty() && want.len() < n as usize);
        for limit in [0, 1, 7, n as usize, 1000, usize::MAX] {
            let (due, examined) = due_by_scan(store, now, limit).await;
            assert_eq!(due, want, "now {now:?}, limit {limit}");
            assert_eq!(examined, u64::from(n), "now {now:?}, limit {limit}");
        }
    }
    let empty = TestStore::new(kind).await;
    let scan = empty
        .store
        .licenses_due_for_sweep(AT, None, 10)
        .await
        .unwrap();
    assert_eq!((scan.examined, scan.due.len(), scan.next), (0, 0, None));
}

async fn users_are_found_by_id_and_current_tokens_only(kind: StoreKind) {
    let t = TestStore::new(kind).await;
    let store = t.store.as_ref();
    let (mut alice, alice_tokens) = user("alice", 2);
    let (bob, bob_tokens) = user("bob", 1);
    let (nobody, _) = user("nobody", 0);
    store
        .commit(
            Change {
                users: vec![alice.clone(), bob.clone(), nobody.clone()],
                ..Change::default()
            },
            AT,
        )
        .await
        .unwrap();
    assert_eq!(store.user(&alice.id).await.unwrap().as_ref(), Some(&alice));
    assert_eq!(
        store.user(&UserId::generate().unwrap()).await.unwrap(),
        None
    );
    for token in &alice_tokens {
        assert_eq!(
            store.user_by_token(&token.digest()).await.unwrap().as_ref(),
            Some(&alice)
        );
    }
    assert_eq!(
        store
            .user_by_token(&bob_tokens[0].digest())
            .await
            .unwrap()
            .as_ref(),
        Some(&bob)
    );
    let stranger = ApiToken::generate().unwrap();
    assert_eq!(store.user_by_token(&stranger.digest()).await.unwrap(), None);
    let mut want = vec![alice.clone(), bob.clone(), nobody.clone()];
    want.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    let mut users = store.users().await.unwrap();
    users.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    assert_eq!(users, want);

    // Replacing alice's tokens: the old ones find no one, the new one finds her
    // as she now is.
    let fresh = ApiToken::generate().unwrap();
    alice.token_digests = vec![fresh.digest()];
    alice.disabled = true;
    store
        .commit(
            Change {
                users: vec![alice.clone()],
                ..Change::default()
            },
            AT,
        )
        .await
        .unwrap();
    for token in &alice_tokens {
        assert_eq!(store.user_by_token(&token.digest()).await.unwrap(), None);
    }
    assert_eq!(
        store.user_by_token(&fresh.digest()).await.unwrap().as_ref(),
        Some(&alice)
    );
    assert_eq!(store.user(&alice.id).await.unwrap().as_ref(), Some(&alice));
    assert_eq!(
        store
            .user_by_token(&bob_tokens[0].digest())
            .await
            .unwrap()
            .as_ref(),
        Some(&bob)
    );
    assert_eq!(store.users().await.unwrap().len(), 3);
}

async fn settings_and_keys_are_stored_and_replaced(kind: StoreKind) {
    let t = TestStore::new(kind).await;
    let store = t.store.as_ref();
    assert_eq!(store.settings().await.unwrap(), Settings::default());
    assert!(store.keys().await.unwrap().is_empty());
    let settings = Settings {
        default_grace_days: 3,
        offline_window_secs: 3600,
        ..Settings::default()
    };
    store
        .commit(
            Change {
                settings: Some(settings.clone()),
                keys: vec![key("k2", KeyState::Pending), key("k1", KeyState::Active)],
                ..Change::default()
            },
            AT,
        )
        .await
        .unwrap();
    assert_eq!(store.settings().await.unwrap(), settings);
    let kids = |keys: Vec<KeyRecord>| {
        let mut keys: Vec<_> = keys.iter().map(json).collect();
        keys.sort_by_key(|k| k["kid"].as_str().unwrap().to_owned());
        keys
    };
    assert_eq!(
        kids(store.keys().await.unwrap()),
        kids(vec![
            key("k1", KeyState::Active),
            key("k2", KeyState::Pending)
        ])
    );
    // A key written again replaces the stored one.
    let mut retired = key("k1", KeyState::Retired);
    retired.retired_at = Some(AT.plus(5));
    store
        .commit(
            Change {
                keys: vec![retired.clone()],
                ..Change::default()
            },
            AT,
        )
        .await
        .unwrap();
    assert_eq!(
        kids(store.keys().await.unwrap()),
        kids(vec![retired, key("k2", KeyState::Pending)])
    );
    assert_eq!(store.settings().await.unwrap(), settings);
}

/// What `audit` must answer, computed by reading every record.
fn scan(records: &[AuditRecord], q: &AuditQuery) -> Vec<u64> {
    let mut seqs: Vec<u64> = records
        .iter()
        .filter(|r| q.target.as_ref().is_none_or(|t| *t == r.event.target))
        .filter(|r| q.action.as_ref().is_none_or(|a| *a == r.event.action))
        .filter(|r| q.from.is_none_or(|f| r.at >= f))
        .filter(|r| q.until.is_none_or(|u| r.at < u))
        .filter(|r| match (q.newest_first, q.after) {
            (false, Some(a)) => r.seq > a,
            (true, Some(b)) => r.seq < b,
            (_, None) => true,
        })
        .map(|r| r.seq)
        .collect();
    if q.newest_first {
        seqs.reverse();
    }
    seqs.truncate(q.limit.max(1));
    seqs
}

async fn audit_queries_find_what_a_scan_finds(kind: StoreKind) {
    let t = TestStore::new(kind).await;
    let store = t.store.as_ref();
    let mut head = ChainHead::default();
    for i in 0..60u32 {
        let action = if i % 3 == 0 {
            "license.revoke"
        } else {
            "license.issue"
        };
        // t1 and t10 share a prefix: they stay apart.
        let extra = if i % 5 == 0 { "t10" } else { "t1x" };
        let written = store
            .commit(
                Change {
                    audit: vec![
                        event(action, &format!("t{}", i % 4)),
                        event("license.issue", extra),
                    ],
                    ..Change::default()
                },
                AT.plus(i64::from(i / 10)),
            )
            .await
            .unwrap();
        // Each record continues the chain from the last one.
        assert_eq!(written.len(), 2);
        assert_eq!(written[0].seq, head.seq + 1);
        assert_eq!(written[0].prev_hash, head.hash);
        head = written[1].head();
    }
    assert_eq!(store.audit_head().await.unwrap(), head);
    let records = all_audit(store).await;
    assert_eq!(records.len(), 120);
    assert_eq!(verify_chain(records.clone()), Ok(120));
    for target in [
        None,
        Some("t0"),
        Some("t1"),
        Some("t10"),
        Some("t3"),
        Some("nothing"),
    ] {
        for action in [None, Some("license.revoke")] {
            for (from, until) in [
                (None, None),
                (Some(AT.plus(2)), None),
                (None, Some(AT.plus(4))),
                (Some(AT.plus(1)), Some(AT.plus(2))),
            ] {
                for newest_first in [false, true] {
                    for after in [None, Some(1), Some(40), Some(119), Some(500)] {
                        for limit in [0, 1, 7, 100, usize::MAX] {
                            let q = AuditQuery {
                                target: target.map(str::to_owned),
                                action: action.map(str::to_owned),
                                from,
                                until,
                                after,
                                limit,
                                newest_first,
                            };
                            let page = store.audit(&q).await.unwrap();
                            let got: Vec<u64> = page.items.iter().map(|r| r.seq).collect();
                            let want = scan(&records, &q);
                            assert_eq!(got, want, "{q:?}");
                            for r in &page.items {
                                assert_eq!(r, &records[r.seq as usize - 1]);
                            }
                            // `next` is the last seq of a full page with more behind it.
                            let more = scan(
                                &records,
                                &AuditQuery {
                                    limit: usize::MAX,
                                    ..q.clone()
                                },
                            )
                            .len()
                                > want.len();
                            assert_eq!(page.next, more.then(|| *want.last().unwrap()), "{q:?}");
                        }
                    }
                }
            }
        }
    }
}

/// A change whose license write is stale fails whole: none of its licenses,
/// users, keys, settings or audit records are written.
async fn a_change_with_a_stale_write_writes_nothing(kind: StoreKind) {
    let t = TestStore::new(kind).await;
    let store = t.store.as_ref();
    store
        .commit(
            Change {
                licenses: vec![new_license(license(1, 1))],
                audit: vec![event("license.issue", "one")],
                ..Change::default()
            },
            AT,
        )
        .await
        .unwrap();
    let head = store.audit_head().await.unwrap();
    let (someone, tokens) = user("someone", 1);
    let change = |stale: LicenseWrite| Change {
        licenses: vec![
            new_license(license(0, 1)),
            stale,
            new_license(license(2, 1)),
        ],
        users: vec![someone.clone()],
        settings: Some(Settings {
            default_grace_days: 1,
            ..Settings::default()
        }),
        keys: vec![key("k", KeyState::Active)],
        audit: vec![event("a", "x"), event("b", "y")],
    };
    let stale_writes = [
        // Written from a read of a version that is no longer the stored one.
        LicenseWrite {
            license: license(1, 3),
            expected_version: Some(2),
        },
        // Created again.
        new_license(license(1, 1)),
        // Updated, but it was never created.
        LicenseWrite {
            license: license(3, 2),
            expected_version: Some(1),
        },
    ];
    for stale in stale_writes {
        assert!(matches!(
            store.commit(change(stale), AT).await,
            Err(Error::Conflict)
        ));
        for n in [0, 2, 3] {
            assert_eq!(store.license(&id(n)).await.unwrap(), None);
        }
        assert_eq!(store.license(&id(1)).await.unwrap().unwrap().version, 1);
        assert_eq!(store.user(&someone.id).await.unwrap(), None);
        assert_eq!(
            store.user_by_token(&tokens[0].digest()).await.unwrap(),
            None
        );
        assert_eq!(store.settings().await.unwrap(), Settings::default());
        assert!(store.keys().await.unwrap().is_empty());
        assert_eq!(store.audit_head().await.unwrap(), head);
        assert_eq!(all_audit(store).await.len(), 1);
    }
    // The same change with a current write lands whole.
    let written = store
        .commit(
            change(LicenseWrite {
                license: license(1, 2),
                expected_version: Some(1),
            }),
            AT,
        )
        .await
        .unwrap();
    assert_eq!(written.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3]);
    for n in [0, 1, 2] {
        assert!(store.license(&id(n)).await.unwrap().is_some());
    }
    assert_eq!(store.user(&someone.id).await.unwrap(), Some(someone));
    assert_eq!(store.verify_audit().await.unwrap(), Ok(3));
    // An empty change writes nothing and succeeds.
    assert!(
        store
            .commit(Change::default(), AT)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.verify_audit().await.unwrap(), Ok(3));
}

/// Eight writers race from the same read of one license, round after round:
/// exactly one wins each round, whether the write is alone (the heartbeat's
/// path) or audited. On PostgreSQL half the writers use a second connection
/// pool, as a second replica would.
async fn racing_writers_from_one_read_one_wins(kind: StoreKind, audited: bool) {
    let t = TestStore::new(kind).await;
    let replica = t.another_replica().await;
    let change = move |license: License, expected_version| Change {
        licenses: vec![LicenseWrite {
            license,
            expected_version,
        }],
        audit: if audited {
            vec![event("license.update", "race")]
        } else {
            vec![]
        },
        ..Change::default()
    };
    t.store
        .commit(change(license(1, 1), None), AT)
        .await
        .unwrap();
    assert!(matches!(
        t.store.commit(change(license(1, 1), None), AT).await,
        Err(Error::Conflict)
    ));
    assert!(matches!(
        t.store.commit(change(license(1, 3), Some(2)), AT).await,
        Err(Error::Conflict)
    ));
    for round in 1..=20u64 {
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let store = match (&replica, i % 2) {
                    (Some(replica), 1) => replica.clone(),
                    _ => t.store.clone(),
                };
                let change = change(license(1, round + 1), Some(round));
                tokio::spawn(async move { store.commit(change, AT).await })
            })
            .collect();
        let mut won = 0;
        for w in writers {
            match w.await.unwrap() {
                Ok(_) => won += 1,
                Err(Error::Conflict) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(won, 1, "round {round}");
    }
    drop(replica);
    let t = t.reopen().await;
    assert_eq!(t.store.license(&id(1)).await.unwrap().unwrap().version, 21);
    // One audit record per winning write (and the first), none for the losers.
    let records = if audited { 21 } else { 0 };
    assert_eq!(t.store.verify_audit().await.unwrap(), Ok(records));
}

async fn racing_license_writes_alone_one_wins(kind: StoreKind) {
    racing_writers_from_one_read_one_wins(kind, false).await;
}

async fn racing_audited_writes_one_wins(kind: StoreKind) {
    racing_writers_from_one_read_one_wins(kind, true).await;
}

/// Audited changes on different licenses, all at once (on PostgreSQL from two
/// pools): none conflicts, and the records form one unbroken chain.
async fn concurrent_audited_changes_make_one_chain(kind: StoreKind) {
    let t = TestStore::new(kind).await;
    let replica = t.another_replica().await;
    let writers: Vec<_> = (0..32u32)
        .map(|n| {
            let store = match (&replica, n % 2) {
                (Some(replica), 1) => replica.clone(),
                _ => t.store.clone(),
            };
            tokio::spawn(async move {
                store
                    .commit(
                        Change {
                            licenses: vec![new_license(license(n, 1))],
                            audit: vec![event("license.issue", id(n).as_str())],
                            ..Change::default()
                        },
                        AT,
                    )
                    .await
            })
        })
        .collect();
    for w in writers {
        assert_eq!(w.await.unwrap().unwrap().len(), 1);
    }
    assert_eq!(t.store.verify_audit().await.unwrap(), Ok(32));
    let mut targets: Vec<String> = all_audit(t.store.as_ref())
        .await
        .into_iter()
        .map(|r| r.event.target)
        .collect();
    targets.sort();
    let mut want: Vec<String> = (0..32).map(|n| id(n).to_string()).collect();
    want.sort();
    assert_eq!(targets, want);
}

async fn sync_health_and_an_intact_chain(kind: StoreKind) {
    let t = TestStore::new(kind).await;
    let store = t.store.as_ref();
    store.health().await.unwrap();
    store.sync().await.unwrap();
    assert_eq!(store.verify_audit().await.unwrap(), Ok(0));
    for i in 0..5 {
        append(store, "settings.update", &format!("t{i}")).await;
    }
    store.sync().await.unwrap();
    store.health().await.unwrap();
    assert_eq!(store.verify_audit().await.unwrap(), Ok(5));
    assert_eq!(store.audit_head().await.unwrap().seq, 5);
}

/// `verify_audit` while audited changes keep committing, as `audit verify`
/// runs against a live database that replicas write to: records appended
/// while it reads are not a break.
async fn the_chain_verifies_while_it_grows(kind: StoreKind) {
    let t = TestStore::new(kind).await;
    let writer = {
        let store = t.store.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                append(store.as_ref(), "license.issue", &format!("t{i}")).await;
            }
        })
    };
    let mut checks = 0;
    while !writer.is_finished() {
        let verified = t.store.verify_audit().await.unwrap();
        assert!(verified.is_ok(), "{verified:?}");
        checks += 1;
    }
    writer.await.unwrap();
    assert!(checks > 0);
    assert_eq!(t.store.verify_audit().await.unwrap(), Ok(300));
}

/// Everything written is there after the store is closed and opened again.
async fn everything_survives_a_reopen(kind: StoreKind) {
    let t = TestStore::new(kind).await;
    let (admin, tokens) = user("admin", 1);
    t.store
        .initialize(
            Change {
                users: vec![admin.clone()],
                audit: vec![event("init", "control-plane")],
                ..Change::default()
            },
            AT,
        )
        .await
        .unwrap();
    let fleet = write_fleet(t.store.as_ref()).await;
    let settings = Settings {
        default_grace_days: 9,
        ..Settings::default()
    };
    t.store
        .commit(
            Change {
                licenses: vec![LicenseWrite {
                    license: license(0, 2),
                    expected_version: Some(1),
                }],
                settings: Some(settings.clone()),
                keys: vec![key("k1", KeyState::Active)],
                audit: vec![event("settings.update", "settings")],
                ..Change::default()
            },
            AT,
        )
        .await
        .unwrap();
    let before = (
        t.store
            .licenses(&LicenseQuery {
                limit: usize::MAX,
                ..LicenseQuery::default()
            })
            .await
            .unwrap()
            .items,
        all_audit(t.store.as_ref()).await,
        t.store.audit_head().await.unwrap(),
    );
    assert_eq!(before.0.len(), fleet.len());
    let t = t.reopen().await;
    let store = t.store.as_ref();
    assert!(store.is_initialized().await.unwrap());
    let after = (
        store
            .licenses(&LicenseQuery {
                limit: usize::MAX,
                ..LicenseQuery::default()
            })
            .await
            .unwrap()
            .items,
        all_audit(store).await,
        store.audit_head().await.unwrap(),
    );
    assert_eq!(after, before);
    assert_eq!(store.license(&id(0)).await.unwrap().unwrap().version, 2);
    assert_eq!(store.users().await.unwrap(), vec![admin.clone()]);
    assert_eq!(
        store.user_by_token(&tokens[0].digest()).await.unwrap(),
        Some(admin)
    );
    assert_eq!(store.settings().await.unwrap(), settings);
    assert_eq!(
        store
            .keys()
            .await
            .unwrap()
            .iter()
            .map(json)
            .collect::<Vec<_>>(),
        vec![json(&key("k1", KeyState::Active))]
    );
    assert_eq!(store.verify_audit().await.unwrap(), Ok(2));
    // A second init is still refused after the reopen.
    assert!(matches!(
        store.initialize(Change::default(), AT).await,
        Err(Error::Conflict)
    ));
}

/// One step of [`writes_match_a_model_across_reopens`].
#[derive(Debug, Clone)]
enum Op {
    /// Creates license `n` (a conflict if it exists).
    Create(u32),
    /// Writes license `n` from a read of its current version, or of another
    /// one (`stale`), with an audit record or alone.
    Update { n: u32, stale: bool, audited: bool },
    /// Closes the store and opens it again.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..5u32).prop_map(Op::Create),
        4 => (0..5u32, any::<bool>(), any::<bool>())
            .prop_map(|(n, stale, audited)| Op::Update { n, stale, audited }),
        1 => Just(Op::Reopen),
    ]
}

/// The stored licenses and the audit chain against a `BTreeMap` model of what
/// each write should have done.
async fn matches_the_model(store: &dyn Store, model: &BTreeMap<u32, u64>, audited: u64) {
    let stored: Vec<(LicenseId, u64)> = store
        .licenses(&LicenseQuery {
            limit: usize::MAX,
            ..LicenseQuery::default()
        })
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|l| (l.id, l.version))
        .collect();
    let want: Vec<(LicenseId, u64)> = model.iter().map(|(n, v)| (id(*n), *v)).collect();
    assert_eq!(stored, want);
    assert_eq!(store.verify_audit().await.unwrap(), Ok(audited));
}

async fn run_against_the_model(kind: StoreKind, ops: Vec<Op>) {
    let mut t = TestStore::new(kind).await;
    let mut model: BTreeMap<u32, u64> = BTreeMap::new();
    let mut audited = 0;
    for op in ops {
        let (n, read, write_audited) = match op {
            Op::Reopen => {
                t = t.reopen().await;
                matches_the_model(t.store.as_ref(), &model, audited).await;
                continue;
            }
            Op::Create(n) => (n, None, true),
            Op::Update { n, stale, audited } => {
                let current = model.get(&n).copied().unwrap_or(1);
                let read = match (stale, current) {
                    (false, v) => v,
                    (true, 1) => 2,
                    (true, v) => v - 1,
                };
                (n, Some(read), audited)
            }
        };
        let change = Change {
            licenses: vec![LicenseWrite {
                license: license(n, read.map_or(1, |v| v + 1)),
                expected_version: read,
            }],
            audit: if write_audited {
                vec![event("license.update", id(n).as_str())]
            } else {
                vec![]
            },
            ..Change::default()
        };
        let result = t.store.commit(change, AT).await;
        if read == model.get(&n).copied() {
            result.unwrap();
            model.insert(n, read.map_or(1, |v| v + 1));
            audited += u64::from(write_audited);
        } else {
            assert!(matches!(result, Err(Error::Conflict)), "{result:?}");
        }
    }
    matches_the_model(t.store.as_ref(), &model, audited).await;
}

/// Random sequences of creates, current and stale writes and reopens (a
/// property test, shrunk to the shortest failing sequence): the store holds
/// what a `BTreeMap` model says, and one audit record per accepted audited write.
async fn writes_match_a_model_across_reopens(kind: StoreKind) {
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 12,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let ops = proptest::collection::vec(op(), 1..40);
    tokio::task::block_in_place(|| {
        runner.run(&ops, |ops| {
            handle.block_on(run_against_the_model(kind, ops));
            Ok(())
        })
    })
    .unwrap();
}

on_each_store!(
    initialize_once,
    licenses_filter_and_page_as_a_scan_would,
    the_due_scan_finds_what_a_full_decode_and_transition_find,
    users_are_found_by_id_and_current_tokens_only,
    settings_and_keys_are_stored_and_replaced,
    audit_queries_find_what_a_scan_finds,
    a_change_with_a_stale_write_writes_nothing,
    racing_license_writes_alone_one_wins,
    racing_audited_writes_one_wins,
    concurrent_audited_changes_make_one_chain,
    sync_health_and_an_intact_chain,
    the_chain_verifies_while_it_grows,
    everything_survives_a_reopen,
    writes_match_a_model_across_reopens,
);

/// A PostgreSQL store with five audited changes, and its pool for tampering.
/// `None` when the PostgreSQL tests are skipped.
async fn postgres_with_five_records() -> Option<(TestStore, PgStore)> {
    if skip_postgres() {
        return None;
    }
    let t = TestStore::new(StoreKind::Postgres).await;
    for i in 0..5 {
        append(t.store.as_ref(), "settings.update", &format!("t{i}")).await;
    }
    assert_eq!(t.store.verify_audit().await.unwrap(), Ok(5));
    let StoreLocation::Postgres(url) = &t.location else {
        unreachable!("a PostgreSQL test store")
    };
    let pg = PgStore::connect(url).await.unwrap();
    Some((t, pg))
}

#[tokio::test]
async fn postgres_a_record_changed_in_the_table_is_named() {
    let Some((t, pg)) = postgres_with_five_records().await else {
        return;
    };
    let record: String = sqlx::query_scalar("SELECT record FROM audit WHERE seq = 3")
        .fetch_one(pg.pool())
        .await
        .unwrap();
    let mut third: AuditRecord = serde_json::from_str(&record).unwrap();
    third.event.actor_name = "mallory".into();
    sqlx::query("UPDATE audit SET record = $1 WHERE seq = 3")
        .bind(serde_json::to_string(&third).unwrap())
        .execute(pg.pool())
        .await
        .unwrap();
    let broken = t.store.verify_audit().await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 3, "{broken:?}");
}

#[tokio::test]
async fn postgres_a_record_deleted_off_the_end_is_noticed() {
    let Some((t, pg)) = postgres_with_five_records().await else {
        return;
    };
    sqlx::query("DELETE FROM audit WHERE seq = 5")
        .execute(pg.pool())
        .await
        .unwrap();
    let broken = t.store.verify_audit().await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 5, "{broken:?}");
    // And one from the middle.
    sqlx::query("DELETE FROM audit WHERE seq = 2")
        .execute(pg.pool())
        .await
        .unwrap();
    let broken = t.store.verify_audit().await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 2, "{broken:?}");
}

//! The health sweep over a fleet in mixed states: the first sweep makes exactly
//! the due transitions, each audited; the second changes and writes nothing.
//! The sweep's scan is only a filter: told that every license is due, the
//! sweep still moves only those whose full record is. Each runs on a sled
//! store and on PostgreSQL; on PostgreSQL, two replicas sweeping the same
//! database at once make each transition once.

use crate::support::*;
use axum::http::{Method, StatusCode};
use control_plane::clock::ManualClock;
use control_plane::domain::audit::{AuditRecord, ChainHead};
use control_plane::domain::ids::{LicenseId, SecretDigest, UserId};
use control_plane::domain::license::{License, Status};
use control_plane::domain::settings::{PolicyOverrides, Settings};
use control_plane::domain::user::User;
use control_plane::error::Result;
use control_plane::http::wire::format_time;
use control_plane::secrets::Kek;
use control_plane::service::{Actor, ControlPlane, IssueRequest, SweepReport};
use control_plane::store::{AuditQuery, Change, KeyRecord, LicenseQuery, Page, Store, SweepScan};
use keys::UnixTime;
use keys::proto::RequestKind::Activate;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

async fn issue_with_end(h: &Harness, end_in_days: Option<i64>) -> String {
    let mut body = json!({"customer": "acme", "entitlements": {"product": "gateway"}});
    if let Some(days) = end_in_days {
        body["subscription_ends_at"] = json!(format_time(h.clock_now().plus(days * DAY)));
    }
    let (status, value) = h
        .call(Method::POST, "/licenses", Some(&h.admin), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{value}");
    value["license"]["id"].as_str().unwrap().to_owned()
}

async fn activate(h: &Harness, id: &str, seed: u8) {
    let key = h.act(id, "reveal", None).await["license_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut device = Device::new(seed);
    let req = device.request(Activate, id, &key, h.clock_now());
    assert_eq!(h.device(id, &key, &req).await.0, StatusCode::OK);
}

async fn snapshot(h: &Harness) -> (Vec<Value>, u64) {
    let (_, list) = h
        .call(Method::GET, "/licenses?limit=500", Some(&h.admin), None)
        .await;
    let (_, audit) = h
        .call(Method::GET, "/audit?limit=1000", Some(&h.admin), None)
        .await;
    let last_seq = audit["items"].as_array().unwrap().last().unwrap()["seq"]
        .as_u64()
        .unwrap();
    (list["items"].as_array().unwrap().clone(), last_seq)
}

async fn sweep_makes_exactly_the_due_transitions_once(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    // At T0: build the fleet.
    let lapsing = issue_with_end(&h, Some(10)).await; // active, subscription ends day 10
    activate(&h, &lapsing, 1).await;
    let grace_over = issue_with_end(&h, None).await; // grace until day 5
    activate(&h, &grace_over, 2).await;
    h.act(&grace_over, "revoke", Some(json!({"grace_days": 5})))
        .await;
    let grace_running = issue_with_end(&h, None).await; // grace until day 30
    activate(&h, &grace_running, 3).await;
    h.act(&grace_running, "revoke", Some(json!({"grace_days": 30})))
        .await;
    let healthy = issue_with_end(&h, Some(365)).await; // active, ends next year
    activate(&h, &healthy, 4).await;
    let unused_lapsed = issue_with_end(&h, Some(1)).await; // issued, ends day 1
    let expired = issue_with_end(&h, None).await;
    h.act(&expired, "revoke", Some(json!({"grace_days": 0})))
        .await;
    let suspended = issue_with_end(&h, None).await;
    h.act(&suspended, "suspend", None).await;

    // Day 20.
    h.clock.advance(20 * DAY);
    let (before, seq_before) = snapshot(&h).await;
    let report = h.act("health", "sweep", None).await;
    assert_eq!(report, json!({"examined": 7, "expired": 1, "suspended": 2}));
    let expected = [
        (&lapsing, "suspended"),
        (&grace_over, "expired"),
        (&grace_running, "grace"),
        (&healthy, "active"),
        (&unused_lapsed, "suspended"),
        (&expired, "expired"),
        (&suspended, "suspended"),
    ];
    for (id, status) in expected {
        assert_eq!(h.status_of(id).await, status, "{id}");
    }
    let (_, audit) = h
        .call(
            Method::GET,
            &format!("/audit?limit=1000&cursor={seq_before}"),
            Some(&h.admin),
            None,
        )
        .await;
    let mut written: Vec<(String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["metadata"]["reason"], "sweep");
            assert_eq!(r["at"], format_time(h.clock_now()));
            (
                r["target"].as_str().unwrap().to_owned(),
                r["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    written.sort();
    let mut want = vec![
        (lapsing.clone(), "license.suspend".to_owned()),
        (grace_over.clone(), "license.expire".to_owned()),
        (unused_lapsed.clone(), "license.suspend".to_owned()),
    ];
    want.sort();
    assert_eq!(written, want);
    // Untouched licenses were not rewritten.
    let (after, _) = snapshot(&h).await;
    for (old, new) in before.iter().zip(&after) {
        if [&grace_running, &healthy, &expired, &suspended]
            .iter()
            .any(|id| old["id"] == id.as_str())
        {
            assert_eq!(old, new);
        }
    }

    // The second sweep at the same time changes nothing and writes nothing.
    let (licenses_before, seq) = snapshot(&h).await;
    let report = h.act("health", "sweep", None).await;
    assert_eq!(report, json!({"examined": 7, "expired": 0, "suspended": 0}));
    let (licenses_after, seq_after) = snapshot(&h).await;
    assert_eq!(licenses_before, licenses_after);
    assert_eq!(seq, seq_after);
}

/// A store whose sweep scan calls every license due, as a scan that ran
/// before every license changed would: the sweep must decide again on each
/// full record and move only the ones really due.
#[derive(Debug)]
struct EverythingDue(Arc<dyn Store>);

#[async_trait::async_trait]
impl Store for EverythingDue {
    async fn is_initialized(&self) -> Result<bool> {
        self.0.is_initialized().await
    }
    async fn license(&self, id: &LicenseId) -> Result<Option<License>> {
        self.0.license(id).await
    }
    async fn licenses(&self, query: &LicenseQuery) -> Result<Page<License, LicenseId>> {
        self.0.licenses(query).await
    }
    async fn count_by_state(&self) -> Result<HashMap<Status, u64>> {
        self.0.count_by_state().await
    }
    async fn licenses_due_for_sweep(
        &self,
        now: UnixTime,
        after: Option<&LicenseId>,
        limit: usize,
    ) -> Result<SweepScan> {
        let mut scan = self.0.licenses_due_for_sweep(now, after, limit).await?;
        let page = self
            .0
            .licenses(&LicenseQuery {
                after: after.cloned(),
                limit,
                ..LicenseQuery::default()
            })
            .await?;
        scan.due = page.items.into_iter().map(|l| l.id).collect();
        Ok(scan)
    }
    async fn user(&self, id: &UserId) -> Result<Option<User>> {
        self.0.user(id).await
    }
    async fn user_by_token(&self, digest: &SecretDigest) -> Result<Option<User>> {
        self.0.user_by_token(digest).await
    }
    async fn users(&self) -> Result<Vec<User>> {
        self.0.users().await
    }
    async fn settings(&self) -> Result<Settings> {
        self.0.settings().await
    }
    async fn keys(&self) -> Result<Vec<KeyRecord>> {
        self.0.keys().await
    }
    async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditRecord, u64>> {
        self.0.audit(query).await
    }
    async fn commit(&self, change: Change, at: UnixTime) -> Result<Vec<AuditRecord>> {
        self.0.commit(change, at).await
    }
    async fn initialize(&self, change: Change, at: UnixTime) -> Result<Vec<AuditRecord>> {
        self.0.initialize(change, at).await
    }
    async fn sync(&self) -> Result<()> {
        self.0.sync().await
    }
    async fn health(&self) -> Result<()> {
        self.0.health().await
    }
    async fn audit_head(&self) -> Result<ChainHead> {
        self.0.audit_head().await
    }
}

async fn the_scan_only_filters_the_sweep_decides_on_the_full_record(kind: StoreKind) {
    let test_store = TestStore::new(kind).await;
    let store = Arc::new(EverythingDue(test_store.store.clone()));
    let clock = Arc::new(ManualClock::new(T0));
    let kek = Kek::generate().unwrap();
    ControlPlane::initialize(store.as_ref(), clock.as_ref(), &kek, "root-admin")
        .await
        .unwrap();
    let cp = ControlPlane::open(store.clone(), clock.clone(), kek, "test-issuer".into())
        .await
        .unwrap();
    let actor = Actor::system();
    let issue = |end_in_days: Option<i64>| IssueRequest {
        customer: "acme".into(),
        entitlements: keys::Entitlements {
            product: "gateway".into(),
            ..keys::Entitlements::default()
        },
        subscription_ends_at: end_in_days.map(|d| T0.plus(d * DAY)),
        policy: PolicyOverrides::default(),
    };
    let lapsing = cp.issue(&actor, issue(Some(1))).await.unwrap().0.id;
    let healthy = cp.issue(&actor, issue(None)).await.unwrap().0.id;
    let grace_over = cp.issue(&actor, issue(None)).await.unwrap().0.id;
    cp.revoke(&actor, &grace_over, Some(5)).await.unwrap();
    let grace_running = cp.issue(&actor, issue(None)).await.unwrap().0.id;
    cp.revoke(&actor, &grace_running, Some(30)).await.unwrap();
    let expired = cp.issue(&actor, issue(None)).await.unwrap().0.id;
    cp.revoke(&actor, &expired, Some(0)).await.unwrap();
    let suspended = cp.issue(&actor, issue(Some(1))).await.unwrap().0.id;
    cp.suspend(&actor, &suspended).await.unwrap();

    clock.advance(20 * DAY);
    let head = store.audit_head().await.unwrap();
    let report = cp.sweep(&actor).await.unwrap();
    assert_eq!(
        report,
        SweepReport {
            examined: 6,
            expired: 1,
            suspended: 1,
        }
    );
    let written = store
        .audit(&AuditQuery {
            after: Some(head.seq),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .items;
    let mut written: Vec<(String, String)> = written
        .into_iter()
        .map(|r| (r.event.target, r.event.action))
        .collect();
    written.sort();
    let mut want = vec![
        (lapsing.to_string(), "license.suspend".to_owned()),
        (grace_over.to_string(), "license.expire".to_owned()),
    ];
    want.sort();
    assert_eq!(written, want);
    for (id, status) in [
        (&lapsing, Status::Suspended),
        (&healthy, Status::Issued),
        (&grace_over, Status::Expired),
        (&grace_running, Status::Grace),
        (&expired, Status::Expired),
        (&suspended, Status::Suspended),
    ] {
        let license = store.license(id).await.unwrap().unwrap();
        assert_eq!(license.state.status(), status, "{id}");
    }

    // Everything is called due again; nothing is.
    let head = store.audit_head().await.unwrap();
    let report = cp.sweep(&actor).await.unwrap();
    assert_eq!((report.expired, report.suspended), (0, 0));
    assert_eq!(store.audit_head().await.unwrap(), head);
}

on_each_store!(
    sweep_makes_exactly_the_due_transitions_once,
    the_scan_only_filters_the_sweep_decides_on_the_full_record,
);

/// Two replicas over one PostgreSQL database sweep at the same moment, round
/// after round: each due license moves once, audited once, whichever replica
/// moves it, and the two reports add up to the transitions made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sweeping_at_once_make_each_transition_once() {
    if skip_postgres() {
        return;
    }
    let h = Harness::with_store(StoreKind::Postgres).await;
    let replica = h.replica().await;
    let actor = Actor::system();
    let issue = |end: Option<UnixTime>| IssueRequest {
        customer: "acme".into(),
        entitlements: keys::Entitlements {
            product: "gateway".into(),
            ..keys::Entitlements::default()
        },
        subscription_ends_at: end,
        policy: PolicyOverrides::default(),
    };
    for round in 0..3 {
        // Half lapse (issued, the subscription ends tomorrow), half run out of
        // grace; one healthy license that stays.
        let mut due = Vec::new();
        for _ in 0..12 {
            let end = Some(h.clock_now().plus(DAY));
            due.push(h.cp.issue(&actor, issue(end)).await.unwrap().0.id);
            let grace_over = h.cp.issue(&actor, issue(None)).await.unwrap().0.id;
            h.cp.revoke(&actor, &grace_over, Some(5)).await.unwrap();
            due.push(grace_over);
        }
        let healthy = h.cp.issue(&actor, issue(None)).await.unwrap().0.id;
        h.clock.advance(20 * DAY);
        let head = h.cp.store().audit_head().await.unwrap();
        let sweeps = [h.cp.clone(), replica.clone(), h.cp.clone(), replica.clone()].map(|cp| {
            let actor = actor.clone();
            tokio::spawn(async move { cp.sweep(&actor).await })
        });
        let (mut expired, mut suspended) = (0, 0);
        for sweep in sweeps {
            let report = sweep.await.unwrap().unwrap();
            expired += report.expired;
            suspended += report.suspended;
        }
        assert_eq!((expired, suspended), (12, 12), "round {round}");
        let written =
            h.cp.store()
                .audit(&AuditQuery {
                    after: Some(head.seq),
                    limit: 1000,
                    ..AuditQuery::default()
                })
                .await
                .unwrap()
                .items;
        let mut per_license: HashMap<String, u32> = HashMap::new();
        for record in &written {
            assert_eq!(record.event.metadata["reason"], "sweep", "{record:?}");
            *per_license.entry(record.event.target.clone()).or_insert(0) += 1;
        }
        assert_eq!(
            per_license.len(),
            due.len(),
            "round {round}: {per_license:?}"
        );
        for id in &due {
            assert_eq!(
                per_license.get(id.as_str()),
                Some(&1),
                "round {round}: {id}"
            );
        }
        assert_eq!(
            h.cp.store()
                .license(&healthy)
                .await
                .unwrap()
                .unwrap()
                .state
                .status(),
            Status::Issued
        );
        assert_eq!(
            h.cp.store().verify_audit().await.unwrap(),
            Ok(written.len() as u64 + head.seq)
        );
    }
}

//! `/metrics` moves with what the control plane does (heartbeats, clone
//! suspicions, revokes and sweeps), and `/readyz` tells ready from not ready.

use crate::support::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use control_plane::clock::ManualClock;
use control_plane::domain::audit::{AuditRecord, ChainHead};
use control_plane::domain::ids::{LicenseId, SecretDigest, UserId};
use control_plane::domain::license::{License, Status};
use control_plane::domain::settings::Settings;
use control_plane::domain::user::User;
use control_plane::error::{Error, Result};
use control_plane::secrets::Kek;
use control_plane::service::ControlPlane;
use control_plane::store::sled_store::SledStore;
use control_plane::store::{AuditQuery, Change, KeyRecord, LicenseQuery, Page, Store};
use http_body_util::BodyExt as _;
use keys::UnixTime;
use keys::proto::RequestKind::{Activate, Heartbeat};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tower::ServiceExt as _;

const HEARTBEAT_ROUTE: &str = "licensing_http_request_duration_seconds_count{route=\"/licenses/{id}/heartbeat\",method=\"POST\",status=\"2xx\"}";

/// `GET /metrics` through the router: the text, after checking the content type.
async fn scrape(router: &axum::Router) -> String {
    let request = Request::builder()
        .uri("/metrics")
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The value of one series (`name{labels}` exactly as exposed); 0 when absent
/// (a counter that never moved has no series yet).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn licenses_in(text: &str, state: &str) -> f64 {
    value(text, &format!("licensing_licenses{{state=\"{state}\"}}"))
}

#[tokio::test]
async fn heartbeats_move_the_counter_and_the_route_histogram_by_exactly_n() {
    let h = Harness::new().await;
    let (id, key) = h.issue("acme").await;
    let mut device = Device::new(1);
    let req = device.request(Activate, &id, &key, h.clock_now());
    assert_eq!(h.device(&id, &key, &req).await.0, StatusCode::OK);

    let before = scrape(&h.router).await;
    const N: usize = 7;
    for _ in 0..N {
        let req = device.request(Heartbeat, &id, &key, h.clock_now());
        let (status, body) = h.device(&id, &key, &req).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let after = scrape(&h.router).await;

    let lease = "licensing_heartbeats_total{outcome=\"lease\"}";
    assert_eq!(
        value(&after, lease) - value(&before, lease),
        N as f64,
        "{after}"
    );
    assert_eq!(
        value(&after, HEARTBEAT_ROUTE) - value(&before, HEARTBEAT_ROUTE),
        N as f64,
        "{after}"
    );
    // The activation was counted as one, and not as a heartbeat.
    assert_eq!(
        value(&after, "licensing_activations_total{outcome=\"lease\"}"),
        1.0
    );
    // Labels are route templates: no license id (nor any raw path) leaks.
    assert!(!after.contains(&id), "{after}");
    assert!(!after.contains("lic_"), "{after}");
    // A refused heartbeat (a wrong key) counts as refused, not as a lease.
    let req = device.request(Heartbeat, &id, &key, h.clock_now());
    let (status, _) = h.device(&id, "pk_wrong", &req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let refused = scrape(&h.router).await;
    assert_eq!(
        value(&refused, "licensing_heartbeats_total{outcome=\"refused\"}"),
        1.0
    );
    assert_eq!(value(&refused, lease), value(&after, lease));
}

#[tokio::test]
async fn a_clone_suspicion_moves_its_counter() {
    let h = Harness::new().await;
    let (id, key) = h.issue("acme").await;
    let mut device = Device::new(1);
    let req = device.request(Activate, &id, &key, h.clock_now());
    assert_eq!(h.device(&id, &key, &req).await.0, StatusCode::OK);
    let mut clone = Device::new(1);
    for _ in 0..3 {
        let req = device.request(Heartbeat, &id, &key, h.clock_now());
        assert_eq!(h.device(&id, &key, &req).await.0, StatusCode::OK);
    }
    let before = scrape(&h.router).await;
    assert_eq!(value(&before, "licensing_clone_suspicions_total"), 0.0);
    let req = clone.request(Heartbeat, &id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &req).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let after = scrape(&h.router).await;
    assert_eq!(value(&after, "licensing_clone_suspicions_total"), 1.0);
    assert_eq!(
        value(
            &after,
            "licensing_heartbeats_total{outcome=\"clone_suspected\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn revoke_and_sweep_move_the_license_gauge_and_the_sweep_series() {
    let h = Harness::new().await;
    let mut ids = Vec::new();
    for seed in 1..=3 {
        let (id, key) = h.issue("acme").await;
        let mut device = Device::new(seed);
        let req = device.request(Activate, &id, &key, h.clock_now());
        assert_eq!(h.device(&id, &key, &req).await.0, StatusCode::OK);
        ids.push(id);
    }
    h.issue("acme").await; // never activated
    let start = scrape(&h.router).await;
    assert_eq!(licenses_in(&start, "active"), 3.0, "{start}");
    assert_eq!(licenses_in(&start, "issued"), 1.0);
    assert_eq!(licenses_in(&start, "grace"), 0.0);
    assert_eq!(licenses_in(&start, "expired"), 0.0);

    h.act(&ids[0], "revoke", Some(json!({"grace_days": 5})))
        .await;
    // Within the cache's few seconds the gauge is not recounted...
    let cached = scrape(&h.router).await;
    assert_eq!(licenses_in(&cached, "active"), 3.0);
    // ...and after them it is.
    h.clock
        .advance(control_plane::metrics::LICENSE_COUNT_TTL_SECS);
    let revoked = scrape(&h.router).await;
    assert_eq!(licenses_in(&revoked, "active"), 2.0, "{revoked}");
    assert_eq!(licenses_in(&revoked, "grace"), 1.0);

    // Past the grace, the sweep expires it; the sweep refreshes the gauge at once.
    h.clock.advance(6 * DAY);
    let report = h.act("health", "sweep", None).await;
    assert_eq!(report["expired"], 1, "{report}");
    let swept = scrape(&h.router).await;
    assert_eq!(licenses_in(&swept, "grace"), 0.0, "{swept}");
    assert_eq!(licenses_in(&swept, "expired"), 1.0);
    assert_eq!(licenses_in(&swept, "active"), 2.0);
    let expired = "licensing_sweep_transitions_total{transition=\"expired\"}";
    assert_eq!(value(&swept, expired) - value(&revoked, expired), 1.0);
    assert_eq!(
        value(&swept, "licensing_sweep_last_success_timestamp_seconds"),
        h.clock_now().secs() as f64
    );
    assert_eq!(
        value(&swept, "licensing_sweep_runs_total{outcome=\"ok\"}"),
        1.0
    );
    // The expired license's heartbeat is a denial, counted by reason.
    let key = h.act(&ids[0], "reveal", None).await["license_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut device = Device::new(1);
    device.counter = 100;
    let req = device.request(Heartbeat, &ids[0], &key, h.clock_now());
    assert_eq!(h.device(&ids[0], &key, &req).await.0, StatusCode::FORBIDDEN);
    let denied = scrape(&h.router).await;
    assert_eq!(
        value(&denied, "licensing_denials_total{reason=\"expired\"}"),
        1.0
    );
    assert_eq!(
        value(&denied, "licensing_heartbeats_total{outcome=\"denial\"}"),
        1.0
    );
}

#[tokio::test]
async fn readyz_is_ready_on_a_fresh_control_plane_and_not_once_the_certificate_lapses() {
    let h = Harness::new().await;
    let (status, body) = h.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"status": "ready"}));
    // Nothing renews the signing certificate in this harness (no housekeeping
    // loop): a year and a day later it has lapsed.
    h.clock.advance(366 * DAY);
    let (status, body) = h.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "not_ready");
    assert!(
        body["message"].as_str().unwrap().contains("certificate"),
        "{body}"
    );
    // Liveness is another question: the process and its store are fine.
    let (status, body) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Renewed, it is ready again.
    assert!(h.cp.renew_certificate_if_due().await.unwrap());
    let (status, _) = h.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}

/// A sled store whose health can be switched off, as after a failed flush.
#[derive(Debug)]
struct Unhealthy {
    inner: SledStore,
    failed: AtomicBool,
}

#[async_trait::async_trait]
impl Store for Unhealthy {
    async fn is_initialized(&self) -> Result<bool> {
        self.inner.is_initialized().await
    }
    async fn license(&self, id: &LicenseId) -> Result<Option<License>> {
        self.inner.license(id).await
    }
    async fn licenses(&self, query: &LicenseQuery) -> Result<Page<License, LicenseId>> {
        self.inner.licenses(query).await
    }
    async fn count_by_state(&self) -> Result<HashMap<Status, u64>> {
        self.inner.count_by_state().await
    }
    async fn user(&self, id: &UserId) -> Result<Option<User>> {
        self.inner.user(id).await
    }
    async fn user_by_token(&self, digest: &SecretDigest) -> Result<Option<User>> {
        self.inner.user_by_token(digest).await
    }
    async fn users(&self) -> Result<Vec<User>> {
        self.inner.users().await
    }
    async fn settings(&self) -> Result<Settings> {
        self.inner.settings().await
    }
    async fn keys(&self) -> Result<Vec<KeyRecord>> {
        self.inner.keys().await
    }
    async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditRecord, u64>> {
        self.inner.audit(query).await
    }
    async fn commit(&self, change: Change, at: UnixTime) -> Result<Vec<AuditRecord>> {
        self.inner.commit(change, at).await
    }
    async fn initialize(&self, change: Change, at: UnixTime) -> Result<Vec<AuditRecord>> {
        self.inner.initialize(change, at).await
    }
    async fn sync(&self) -> Result<()> {
        self.inner.sync().await
    }
    async fn health(&self) -> Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(Error::Store("flush failed: disk on fire".into()));
        }
        self.inner.health().await
    }
    async fn audit_head(&self) -> Result<ChainHead> {
        self.inner.audit_head().await
    }
}

#[tokio::test]
async fn readyz_is_not_ready_when_the_store_cannot_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Unhealthy {
        inner: SledStore::open(&dir.path().join("data")).unwrap(),
        failed: AtomicBool::new(false),
    });
    let clock = Arc::new(ManualClock::new(T0));
    let kek = Kek::generate().unwrap();
    ControlPlane::initialize(store.as_ref(), clock.as_ref(), &kek, "root-admin")
        .await
        .unwrap();
    let cp = ControlPlane::open(store.clone(), clock, kek, "test-issuer".into())
        .await
        .unwrap();
    let router = control_plane::http::router(Arc::new(cp));
    let get = |path: &'static str| {
        let router = router.clone();
        async move {
            let request = Request::builder().uri(path).body(Body::empty()).unwrap();
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    assert_eq!(
        get("/readyz").await,
        (StatusCode::OK, json!({"status": "ready"}))
    );
    store.failed.store(true, Ordering::SeqCst);
    let (status, body) = get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "not_ready");
    assert!(
        body["message"].as_str().unwrap().contains("flush"),
        "{body}"
    );
    store.failed.store(false, Ordering::SeqCst);
    assert_eq!(get("/readyz").await.0, StatusCode::OK);
}

//! Server time of every console page with 10,000 licenses in the store
//! (issue 7: "no page takes more than 200 ms server time").
//!
//! The store is a real sled database in a temp dir, filled through the control
//! plane: 10,000 licenses over 100 customers, every one with a last heartbeat
//! (spread over the past two hours, so the heartbeats page has recent, stale and
//! offline boxes), one in ten revoked with grace, and the audit records all of
//! that wrote. Each page is requested through the router (`oneshot`, no socket),
//! signed in as a super_admin, so the time is the server's: session lookup,
//! store reads, rendering and every middleware layer.
//!
//! The floor, measured in the same group, is the JSON API's first page of the
//! license list (`GET /licenses`, 50 licenses), the cheapest request that reads
//! the same data. `docs/BENCHMARKS.md` records the results and the command.

// A failed `expect` here is broken set-up, and stopping the benchmark with its
// message is right (clippy's test allowances do not cover benches).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use control_plane::clock::ManualClock;
use control_plane::domain::license::LastSeen;
use control_plane::domain::user::Role;
use control_plane::secrets::Kek;
use control_plane::service::{Actor, ControlPlane, IssueRequest, Login};
use control_plane::store::sled_store::SledStore;
use control_plane::store::{Change, LicenseQuery, LicenseWrite};
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt as _;
use keys::UnixTime;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt as _;

const LICENSES: usize = 10_000;
const CUSTOMERS: usize = 100;
const NOW: UnixTime = UnixTime(1_800_000_000);
const PASSWORD: &str = "benchmark password";

struct Fleet {
    router: Router,
    cookie: String,
    token: String,
    card: String,
    _dir: tempfile::TempDir,
}

async fn fleet() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(&dir.path().join("data")).unwrap());
    let clock = Arc::new(ManualClock::new(NOW));
    let kek = Kek::generate().unwrap();
    let init = ControlPlane::initialize(store.as_ref(), clock.as_ref(), &kek, "admin")
        .await
        .unwrap();
    let cp = Arc::new(
        ControlPlane::open(store, clock, kek, "bench".into())
            .await
            .unwrap(),
    );
    let actor = Actor::system();
    // Issue concurrently, so group commit shares the flushes (as in production).
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..32 {
        let cp = cp.clone();
        let actor = actor.clone();
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for i in (worker..LICENSES).step_by(32) {
                let request = IssueRequest {
                    customer: format!("customer-{:03}", i % CUSTOMERS),
                    entitlements: keys::Entitlements {
                        product: "gateway".into(),
                        ..Default::default()
                    },
                    subscription_ends_at: Some(NOW.plus(365 * 86_400)),
                    policy: Default::default(),
                };
                let (license, _) = cp.issue(&actor, request).await.unwrap();
                if i % 10 == 0 {
                    cp.revoke(&actor, &license.id, Some(5)).await.unwrap();
                }
                ids.push(license.id);
            }
            ids
        });
    }
    let mut card = None;
    while let Some(ids) = tasks.join_next().await {
        card = card.or_else(|| ids.unwrap().pop());
    }
    // Every box heartbeated at some point in the last two hours.
    let mut after = None;
    let mut n = 0i64;
    loop {
        let page = cp
            .store()
            .licenses(&LicenseQuery {
                after: after.clone(),
                limit: 500,
                ..Default::default()
            })
            .await
            .unwrap();
        let writes = page
            .items
            .into_iter()
            .map(|mut license| {
                n += 1;
                let version = license.version;
                license.last_seen = Some(LastSeen {
                    at: NOW.plus(-(n * 7 % 7200)),
                    version: format!("4.{}.0", n % 5),
                    ip: format!("10.0.{}.{}", n / 250 % 250, n % 250),
                });
                license.version += 1;
                LicenseWrite {
                    license,
                    expected_version: Some(version),
                }
            })
            .collect();
        cp.store()
            .commit(
                Change {
                    licenses: writes,
                    ..Change::default()
                },
                NOW,
            )
            .await
            .unwrap();
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let admin = init.admin.id.clone();
    cp.set_password(&actor, &admin, PASSWORD.into())
        .await
        .unwrap();
    let Login::Started { token } = cp.login("admin", PASSWORD, "127.0.0.1").await.unwrap() else {
        panic!("the benchmark user cannot sign in");
    };
    let (_, api_token) = cp
        .create_user(&actor, "reader", Role::Support, None, None)
        .await
        .unwrap();
    Fleet {
        router: control_plane::http::router(cp),
        cookie: format!("cp_session={}", token.expose()),
        token: api_token.expose().to_owned(),
        card: format!("/licensing/licenses/{}", card.unwrap()),
        _dir: dir,
    }
}

async fn get(fleet: &Fleet, path: &str, api: bool) -> usize {
    let mut request = Request::get(path);
    request = if api {
        request.header(header::AUTHORIZATION, format!("Bearer {}", fleet.token))
    } else {
        request.header(header::COOKIE, &fleet.cookie)
    };
    let response = fleet
        .router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .len()
}

fn pages(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let fleet = rt.block_on(fleet());
    eprintln!(
        "set-up: {LICENSES} licenses in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let card = fleet.card.clone();
    let cases: Vec<(&str, String, bool)> = vec![
        ("floor_api_licenses_page", "/licenses?limit=50".into(), true),
        ("license_list", "/licensing".into(), false),
        (
            "license_list_by_customer",
            "/licensing?customer=customer-042".into(),
            false,
        ),
        (
            "license_list_grace",
            "/licensing?status=grace".into(),
            false,
        ),
        ("license_card", card, false),
        ("license_new", "/licensing/license-new".into(), false),
        ("heartbeats", "/licensing/heartbeats".into(), false),
        ("signing_keys", "/licensing/signing".into(), false),
        ("settings", "/licensing/settings".into(), false),
        ("audit_log", "/licensing/audit".into(), false),
        (
            "audit_log_by_action",
            "/licensing/audit?action=license.revoke".into(),
            false,
        ),
    ];
    let mut group = c.benchmark_group("console_10k");
    for (name, path, api) in &cases {
        let bytes = rt.block_on(get(&fleet, path, *api));
        eprintln!("{name}: GET {path} -> {bytes} bytes");
        group.bench_function(*name, |b| b.iter(|| rt.block_on(get(&fleet, path, *api))));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = pages
}
criterion_main!(benches);

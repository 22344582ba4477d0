//! The permission matrix: every route of the API × every kind of caller → the
//! exact HTTP status (DESIGN.md "Control plane", "Roles").
//!
//! The table in [`MATRIX`] is written out by hand, one row per route, so that a
//! change in who may do what shows up as a diff of this file. Each cell runs on a
//! fresh license (prepared into the state its route needs), with a request body
//! that succeeds for an authorized caller, so a refusal is about the caller and
//! never about the request.

use crate::support::{Device, Harness};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use keys::proto::RequestKind;
use serde_json::{Value, json};
use std::fmt::Write as _;
use tower::ServiceExt as _;

/// Who sends the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// No `Authorization` header.
    Anonymous,
    /// A customer user of `acme`, the customer the license under test belongs to.
    Customer,
    /// A customer user of `globex`, another customer.
    OtherCustomer,
    Onboarding,
    Support,
    SuperAdmin,
    /// The license key of the license under test, as the appliance presents it.
    OwnKey,
    /// The license key of another license (of `globex`).
    OtherKey,
}

/// The columns of [`MATRIX`], in order.
const CALLERS: [Caller; 8] = [
    Caller::Anonymous,
    Caller::Customer,
    Caller::OtherCustomer,
    Caller::Onboarding,
    Caller::Support,
    Caller::SuperAdmin,
    Caller::OwnKey,
    Caller::OtherKey,
];

impl Caller {
    fn name(self) -> &'static str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::Customer => "customer",
            Caller::OtherCustomer => "other-cust",
            Caller::Onboarding => "onboarding",
            Caller::Support => "support",
            Caller::SuperAdmin => "super_admin",
            Caller::OwnKey => "own-key",
            Caller::OtherKey => "other-key",
        }
    }
}

/// One row of the matrix: a route of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    ListLicenses,
    IssueLicense,
    ShowLicense,
    Activate,
    Heartbeat,
    Revoke,
    Reinstate,
    Rebind,
    Regenerate,
    Reveal,
    Suspend,
    Restore,
    Sweep,
    GetSettings,
    PutSettings,
    AuditAll,
    AuditOfLicense,
    ListUsers,
    CreateUser,
    SetPassword,
    Jwks,
    Trust,
    Healthz,
    OfflineActivation,
    ListSigningKeys,
    CreateSigningKey,
    AttachCertificate,
    ActivateSigningKey,
    RetireSigningKey,
    RevokeSigningKey,
    Readyz,
    Metrics,
    OpenApi,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::ListLicenses => "GET /licenses",
            Route::IssueLicense => "POST /licenses",
            Route::ShowLicense => "GET /licenses/{id}",
            Route::Activate => "POST /licenses/{id}/activate",
            Route::Heartbeat => "POST /licenses/{id}/heartbeat",
            Route::Revoke => "POST /licenses/{id}/revoke",
            Route::Reinstate => "POST /licenses/{id}/reinstate",
            Route::Rebind => "POST /licenses/{id}/rebind",
            Route::Regenerate => "POST /licenses/{id}/regenerate",
            Route::Reveal => "POST /licenses/{id}/reveal",
            Route::Suspend => "POST /licenses/{id}/suspend",
            Route::Restore => "POST /licenses/{id}/restore",
            Route::Sweep => "POST /licenses/health/sweep",
            Route::GetSettings => "GET /settings",
            Route::PutSettings => "PUT /settings",
            Route::AuditAll => "GET /audit",
            Route::AuditOfLicense => "GET /audit?target={id}",
            Route::ListUsers => "GET /users",
            Route::CreateUser => "POST /users",
            Route::SetPassword => "PUT /users/{id}/password",
            Route::Jwks => "GET /.well-known/jwks.json",
            Route::Trust => "GET /.well-known/licensing-trust.json",
            Route::Healthz => "GET /healthz",
            Route::OfflineActivation => "POST /licenses/{id}/offline-activation",
            Route::ListSigningKeys => "GET /signing-keys",
            Route::CreateSigningKey => "POST /signing-keys",
            Route::AttachCertificate => "POST /signing-keys/{kid}/certificate",
            Route::ActivateSigningKey => "POST /signing-keys/{kid}/activate",
            Route::RetireSigningKey => "POST /signing-keys/{kid}/retire",
            Route::RevokeSigningKey => "POST /signing-keys/{kid}/revoke",
            Route::Readyz => "GET /readyz",
            Route::Metrics => "GET /metrics",
            Route::OpenApi => "GET /openapi.json",
        }
    }
}

/// The expected status of every cell. Columns, as in [`CALLERS`]: anonymous,
/// customer (acme, the license's own), other customer (globex), onboarding,
/// support, super_admin, this license's key, another license's key.
///
/// Why the cells are what they are:
/// - no credential, or a credential of the wrong kind, is 401: license keys are
///   not API tokens (admin routes), API tokens are not license keys (activate,
///   heartbeat), and another license's key does not open this license;
/// - a valid API token without the permission is 403 (DESIGN.md "Roles":
///   license.read and license.issue for all staff; license.revoke and
///   license.reveal for support and super_admin; signing.manage, which covers
///   settings changes, users and the whole audit log, for super_admin only);
/// - a customer reads its own licenses and gets 404 for another customer's, so
///   that ids do not leak; it never reads settings or the audit log;
/// - the public keys and the health check are public.
#[rustfmt::skip]
const MATRIX: &[(Route, [u16; 8])] = &[
    //                        anon cust othr onbd supp supr  own  oth
    (Route::ListLicenses,   [ 401, 200, 200, 200, 200, 200, 401, 401]),
    (Route::IssueLicense,   [ 401, 403, 403, 201, 201, 201, 401, 401]),
    (Route::ShowLicense,    [ 401, 200, 404, 200, 200, 200, 401, 401]),
    (Route::Activate,       [ 401, 401, 401, 401, 401, 401, 200, 401]),
    (Route::Heartbeat,      [ 401, 401, 401, 401, 401, 401, 200, 401]),
    (Route::Revoke,         [ 401, 403, 403, 403, 200, 200, 401, 401]),
    (Route::Reinstate,      [ 401, 403, 403, 403, 200, 200, 401, 401]),
    (Route::Rebind,         [ 401, 403, 403, 403, 200, 200, 401, 401]),
    (Route::Regenerate,     [ 401, 403, 403, 403, 200, 200, 401, 401]),
    (Route::Reveal,         [ 401, 403, 403, 403, 200, 200, 401, 401]),
    (Route::Suspend,        [ 401, 403, 403, 403, 200, 200, 401, 401]),
    (Route::Restore,        [ 401, 403, 403, 403, 200, 200, 401, 401]),
    (Route::Sweep,          [ 401, 403, 403, 403, 200, 200, 401, 401]),
    (Route::GetSettings,    [ 401, 403, 403, 200, 200, 200, 401, 401]),
    (Route::PutSettings,    [ 401, 403, 403, 403, 403, 200, 401, 401]),
    (Route::AuditAll,       [ 401, 403, 403, 403, 403, 200, 401, 401]),
    (Route::AuditOfLicense, [ 401, 403, 403, 200, 200, 200, 401, 401]),
    (Route::ListUsers,      [ 401, 403, 403, 403, 403, 200, 401, 401]),
    (Route::CreateUser,     [ 401, 403, 403, 403, 403, 201, 401, 401]),
    (Route::SetPassword,    [ 401, 403, 403, 403, 403, 200, 401, 401]),
    (Route::Jwks,           [ 200, 200, 200, 200, 200, 200, 200, 200]),
    (Route::Trust,          [ 200, 200, 200, 200, 200, 200, 200, 200]),
    (Route::Healthz,        [ 200, 200, 200, 200, 200, 200, 200, 200]),
    (Route::OfflineActivation,  [ 401, 403, 403, 200, 200, 200, 401, 401]),
    (Route::ListSigningKeys,    [ 401, 403, 403, 403, 403, 200, 401, 401]),
    (Route::CreateSigningKey,   [ 401, 403, 403, 403, 403, 201, 401, 401]),
    (Route::AttachCertificate,  [ 401, 403, 403, 403, 403, 200, 401, 401]),
    (Route::ActivateSigningKey, [ 401, 403, 403, 403, 403, 200, 401, 401]),
    (Route::RetireSigningKey,   [ 401, 403, 403, 403, 403, 200, 401, 401]),
    (Route::RevokeSigningKey,   [ 401, 403, 403, 403, 403, 200, 401, 401]),
    (Route::Readyz,             [ 200, 200, 200, 200, 200, 200, 200, 200]),
    (Route::Metrics,            [ 200, 200, 200, 200, 200, 200, 200, 200]),
    (Route::OpenApi,            [ 200, 200, 200, 200, 200, 200, 200, 200]),
];

/// The harness plus what every cell shares: the other customer's token, another
/// license (its key is the `OtherKey` caller) and the current settings.
struct World {
    h: Harness,
    globex: String,
    globex_id: String,
    other_key: String,
    settings: Value,
}

impl World {
    async fn new() -> World {
        let h = Harness::new().await;
        let (status, body) = h
            .call(
                Method::POST,
                "/users",
                Some(&h.admin),
                Some(json!({"name": "globex-ops", "role": "customer", "customer": "globex"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let globex = body["token"].as_str().unwrap().to_owned();
        let globex_id = body["user"]["id"].as_str().unwrap().to_owned();
        let (_, other_key) = h.issue("globex").await;
        let (status, settings) = h.call(Method::GET, "/settings", Some(&h.admin), None).await;
        assert_eq!(status, StatusCode::OK, "{settings}");
        World {
            h,
            globex,
            globex_id,
            other_key,
            settings,
        }
    }
}

/// What one cell answered.
struct Cell {
    route: Route,
    caller: Caller,
    expected: u16,
    status: u16,
    body: Vec<u8>,
}

/// Prepares a fresh license for `route`, sends the request as `caller`, and
/// returns the status and raw body (raw, so that a non-JSON body is reported
/// rather than aborting the whole matrix).
async fn check(w: &World, route: Route, caller: Caller, expected: u16) -> Cell {
    let h = &w.h;
    let (id, key) = h.issue("acme").await;
    let mut device = Device::new(1);

    // The state the route needs to succeed for an authorized caller.
    match route {
        Route::Heartbeat => {
            let request = device.request(RequestKind::Activate, &id, &key, h.clock_now());
            let (status, body) = h.device(&id, &key, &request).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "activation before heartbeat: {body}"
            );
        }
        Route::Reinstate => {
            h.act(&id, "revoke", Some(json!({"grace_days": 5}))).await;
        }
        Route::Restore => {
            h.act(&id, "suspend", None).await;
        }
        _ => {}
    }
    // A fresh pending key, certified by the online root, for the key routes.
    let pending =
        h.cp.create_signing_key(&control_plane::service::Actor::system(), true)
            .await
            .unwrap()
            .record;
    let kid = pending.kid.clone();
    let signing = |action: &str| format!("/signing-keys/{kid}/{action}");

    let token: Option<&str> = match caller {
        Caller::Anonymous => None,
        Caller::Customer => Some(&h.customer),
        Caller::OtherCustomer => Some(&w.globex),
        Caller::Onboarding => Some(&h.onboarding),
        Caller::Support => Some(&h.support),
        Caller::SuperAdmin => Some(&h.admin),
        Caller::OwnKey => Some(&key),
        Caller::OtherKey => Some(&w.other_key),
    };

    // A device request is signed with the caller's own license key when the
    // caller is an appliance; any other caller presents its own credential over
    // a body that the real appliance signed with the real key.
    let mut device_body = |kind: RequestKind| {
        let request = match caller {
            Caller::OtherKey => Device::new(2).request(kind, &id, &w.other_key, h.clock_now()),
            _ => device.request(kind, &id, &key, h.clock_now()),
        };
        Some(serde_json::to_value(request).unwrap())
    };

    let license = |action: &str| format!("/licenses/{id}/{action}");
    let (method, path, body) = match route {
        Route::ListLicenses => (Method::GET, "/licenses".to_owned(), None),
        Route::IssueLicense => (
            Method::POST,
            "/licenses".to_owned(),
            Some(json!({
                "customer": "acme",
                "entitlements": {"product": "gateway", "features": ["vpn"], "limits": {"seats": 10}},
            })),
        ),
        Route::ShowLicense => (Method::GET, format!("/licenses/{id}"), None),
        Route::Activate => (
            Method::POST,
            license("activate"),
            device_body(RequestKind::Activate),
        ),
        Route::Heartbeat => (
            Method::POST,
            license("heartbeat"),
            device_body(RequestKind::Heartbeat),
        ),
        Route::Revoke => (
            Method::POST,
            license("revoke"),
            Some(json!({"grace_days": 5})),
        ),
        Route::Reinstate => (Method::POST, license("reinstate"), None),
        Route::Rebind => (
            Method::POST,
            license("rebind"),
            Some(json!({"unbind": true})),
        ),
        Route::Regenerate => (Method::POST, license("regenerate"), None),
        Route::Reveal => (Method::POST, license("reveal"), None),
        Route::Suspend => (Method::POST, license("suspend"), None),
        Route::Restore => (Method::POST, license("restore"), None),
        Route::Sweep => (Method::POST, "/licenses/health/sweep".to_owned(), None),
        Route::GetSettings => (Method::GET, "/settings".to_owned(), None),
        Route::PutSettings => (
            Method::PUT,
            "/settings".to_owned(),
            Some(w.settings.clone()),
        ),
        Route::AuditAll => (Method::GET, "/audit".to_owned(), None),
        Route::AuditOfLicense => (Method::GET, format!("/audit?target={id}"), None),
        Route::ListUsers => (Method::GET, "/users".to_owned(), None),
        Route::CreateUser => (
            Method::POST,
            "/users".to_owned(),
            Some(json!({"name": "new-onboarder", "role": "onboarding"})),
        ),
        Route::SetPassword => (
            Method::PUT,
            format!("/users/{}/password", w.globex_id),
            Some(json!({"password": "a long enough password"})),
        ),
        Route::Jwks => (Method::GET, "/.well-known/jwks.json".to_owned(), None),
        Route::Trust => (
            Method::GET,
            "/.well-known/licensing-trust.json".to_owned(),
            None,
        ),
        Route::Healthz => (Method::GET, "/healthz".to_owned(), None),
        Route::OfflineActivation => (
            Method::POST,
            license("offline-activation"),
            Some(
                serde_json::to_value(device.request(
                    RequestKind::Activate,
                    &id,
                    &key,
                    h.clock_now(),
                ))
                .unwrap(),
            ),
        ),
        Route::ListSigningKeys => (Method::GET, "/signing-keys".to_owned(), None),
        Route::CreateSigningKey => (Method::POST, "/signing-keys".to_owned(), None),
        Route::AttachCertificate => (
            Method::POST,
            signing("certificate"),
            Some(json!({"chain": pending.chain})),
        ),
        Route::ActivateSigningKey => (Method::POST, signing("activate"), None),
        Route::RetireSigningKey => (Method::POST, signing("retire"), None),
        Route::RevokeSigningKey => (Method::POST, signing("revoke"), None),
        Route::Readyz => (Method::GET, "/readyz".to_owned(), None),
        Route::Metrics => (Method::GET, "/metrics".to_owned(), None),
        Route::OpenApi => (Method::GET, "/openapi.json".to_owned(), None),
    };

    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = h.router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Cell {
        route,
        caller,
        expected,
        status,
        body,
    }
}

/// Runs every cell of [`MATRIX`] on one control plane.
async fn run_matrix() -> Vec<Cell> {
    let w = World::new().await;
    let mut cells = Vec::new();
    for &(route, expected) in MATRIX {
        for (caller, expected) in CALLERS.into_iter().zip(expected) {
            cells.push(check(&w, route, caller, expected).await);
        }
    }
    cells
}

/// The `error` code of a response body, for the failure report.
fn error_code(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => v["error"].as_str().unwrap_or("").to_owned(),
        Err(_) => "<not JSON>".to_owned(),
    }
}

/// The whole matrix as answered, a mismatching cell shown as `actual!expected`,
/// then every mismatch on its own line.
fn report(cells: &[Cell]) -> String {
    let mut out = String::from("(a differing cell shows as actual!expected)\n");
    let _ = write!(out, "{:<40}", "route \\ caller");
    for caller in CALLERS {
        let _ = write!(out, " {:>11}", caller.name());
    }
    out.push('\n');
    for row in cells.chunks(CALLERS.len()) {
        let _ = write!(out, "{:<40}", row[0].route.name());
        for cell in row {
            let text = if cell.status == cell.expected {
                cell.status.to_string()
            } else {
                format!("{}!{}", cell.status, cell.expected)
            };
            let _ = write!(out, " {text:>11}");
        }
        out.push('\n');
    }
    out.push_str("\nmismatches (route, caller: expected, actual, error):\n");
    for cell in cells.iter().filter(|c| c.status != c.expected) {
        let _ = writeln!(
            out,
            "  {} as {}: expected {}, got {} ({})",
            cell.route.name(),
            cell.caller.name(),
            cell.expected,
            cell.status,
            error_code(&cell.body),
        );
    }
    out
}

#[tokio::test]
async fn every_route_answers_every_caller_with_the_expected_status() {
    // The table covers each route once and each row has a cell per caller.
    for (i, &(route, _)) in MATRIX.iter().enumerate() {
        assert!(
            MATRIX[..i].iter().all(|&(r, _)| r != route),
            "{} is listed twice",
            route.name()
        );
    }
    assert_eq!(MATRIX.len(), 33, "one row per route of the API");

    let cells = run_matrix().await;
    let mismatches = cells.iter().filter(|c| c.status != c.expected).count();
    assert!(
        mismatches == 0,
        "{mismatches} of {} cells differ from the permission matrix:\n{}",
        cells.len(),
        report(&cells)
    );
}

/// The matrix has a row for every operation of the OpenAPI document (which
/// lists every route the router serves), so a new route cannot ship without
/// its line here.
#[test]
fn the_matrix_covers_every_documented_route() {
    let mut documented: Vec<String> = crate::openapi::operations(&crate::openapi::generated())
        .into_iter()
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    documented.sort();
    let mut rows: Vec<String> = MATRIX
        .iter()
        .map(|(route, _)| route.name().to_owned())
        // The audit of one license is `GET /audit` with a query.
        .filter(|name| !name.contains('?'))
        .collect();
    rows.sort();
    assert_eq!(rows, documented);
}

#[tokio::test]
async fn every_refusal_in_the_matrix_is_a_json_error() {
    let cells = run_matrix().await;
    let mut bad = Vec::new();
    for cell in cells.iter().filter(|c| c.status >= 400) {
        let parsed = serde_json::from_slice::<Value>(&cell.body);
        let ok = parsed
            .as_ref()
            .is_ok_and(|v| v["error"].is_string() && v["message"].is_string());
        if !ok {
            bad.push(format!(
                "  {} as {} ({}): {}",
                cell.route.name(),
                cell.caller.name(),
                cell.status,
                String::from_utf8_lossy(&cell.body)
            ));
        }
    }
    assert!(
        cells.iter().filter(|c| c.status >= 400).count() > 100,
        "the matrix should hold plenty of refusals"
    );
    assert!(
        bad.is_empty(),
        "error responses without string `error` and `message` fields:\n{}",
        bad.join("\n")
    );
}

/// The two customer columns of `GET /licenses` both answer 200; this checks what
/// is in them: each customer sees its own licenses only, and never a key.
#[tokio::test]
async fn customers_list_only_their_own_licenses() {
    let w = World::new().await;
    let h = &w.h;
    let (acme_1, _) = h.issue("acme").await;
    let (acme_2, _) = h.issue("acme").await;
    let (globex_1, _) = h.issue("globex").await;

    let ids = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, acme) = h
        .call(Method::GET, "/licenses", Some(&h.customer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{acme}");
    let (status, globex) = h
        .call(Method::GET, "/licenses", Some(&w.globex), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{globex}");

    let acme_ids = ids(&acme);
    let globex_ids = ids(&globex);
    assert!(
        acme_ids.contains(&acme_1) && acme_ids.contains(&acme_2),
        "{acme}"
    );
    assert!(!acme_ids.contains(&globex_1), "{acme}");
    assert!(globex_ids.contains(&globex_1), "{globex}");
    assert!(
        !globex_ids.contains(&acme_1) && !globex_ids.contains(&acme_2),
        "{globex}"
    );
    for (customer, body) in [("acme", &acme), ("globex", &globex)] {
        for item in body["items"].as_array().unwrap() {
            assert_eq!(item["customer"], customer, "{item}");
            // A customer sees status, never a key or the binding.
            assert!(item.get("binding").is_none(), "{item}");
            assert!(!item.to_string().contains("pk_"), "{item}");
        }
    }
    // A customer cannot widen its view with a filter.
    let (status, filtered) = h
        .call(
            Method::GET,
            "/licenses?customer=globex",
            Some(&h.customer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{filtered}");
    assert!(!ids(&filtered).contains(&globex_1), "{filtered}");
}

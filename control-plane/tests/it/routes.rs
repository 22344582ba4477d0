//! Every endpoint through the router: the happy path and each refusal, and
//! the license state machine's scenarios (activation, clones, revoke with
//! grace, expiry, reinstate, suspend and restore, rebind, regenerate), each
//! run on a sled store and on PostgreSQL (`on_each_store!`).

use crate::support::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use keys::proto::RequestKind::{Activate, Heartbeat};
use keys::{DenialReason, LeaseStatus};
use serde_json::{Value, json};

async fn audit_actions(h: &Harness, target: &str) -> Vec<String> {
    let (status, body) = h
        .call(
            Method::GET,
            &format!("/audit?target={target}&limit=1000"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect()
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(body["message"].is_string(), "{body}");
}

/// Issues a license and activates it with `device`; returns (id, key).
async fn active_license(h: &Harness, device: &mut Device) -> (String, String) {
    let (id, key) = h.issue("acme").await;
    let req = device.request(Activate, &id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (id, key)
}

async fn issue_and_its_refusals(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let (status, body) = h
        .call(
            Method::POST,
            "/licenses",
            Some(&h.admin),
            Some(json!({
                "customer": "acme",
                "entitlements": {"product": "gateway", "features": ["vpn"], "limits": {"seats": 5}},
                "subscription_ends_at": "2027-06-01T00:00:00Z",
                "policy": {"offline_window_secs": 604800, "fingerprint_policy": {"mode": "exact"}}
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["license"]["status"], "issued");
    assert_eq!(
        body["license"]["subscription_ends_at"],
        "2027-06-01T00:00:00Z"
    );
    assert_eq!(body["license"]["policy"]["offline_window_secs"], 604800);
    let key = body["license_key"].as_str().unwrap();
    assert!(key.starts_with("pk_") && key.len() == 46);
    let id = body["license"]["id"].as_str().unwrap();
    assert_eq!(audit_actions(&h, id).await, ["license.issue"]);
    // The key is never shown again.
    let (_, shown) = h
        .call(
            Method::GET,
            &format!("/licenses/{id}"),
            Some(&h.admin),
            None,
        )
        .await;
    assert!(!shown.to_string().contains(key));

    let bad = [
        (
            json!({"customer": "acme", "entitlements": {"product": ""}}),
            "bad_request",
        ),
        (
            json!({"customer": "", "entitlements": {"product": "gw"}}),
            "bad_request",
        ),
        (json!({"customer": "acme"}), "bad_request"),
        (
            json!({"customer": "acme", "entitlements": {"product": "gw"}, "surprise": 1}),
            "bad_request",
        ),
        (
            json!({"customer": "acme", "entitlements": {"product": "gw"}, "subscription_ends_at": "2020-01-01T00:00:00Z"}),
            "bad_request",
        ),
        (
            json!({"customer": "acme", "entitlements": {"product": "gw"}, "subscription_ends_at": "tomorrow"}),
            "bad_request",
        ),
        (
            json!({"customer": "acme", "entitlements": {"product": "gw"}, "policy": {"heartbeat_interval_secs": 1}}),
            "bad_request",
        ),
        (
            json!({"customer": "acme", "entitlements": {"product": "gw"}, "policy": {"fingerprint_policy": {"mode": "k_of_n", "k": 0}}}),
            "bad_request",
        ),
        (json!([1, 2]), "bad_request"),
    ];
    for (body, code) in bad {
        let (status, value) = h
            .call(
                Method::POST,
                "/licenses",
                Some(&h.admin),
                Some(body.clone()),
            )
            .await;
        assert_error(status, &value, StatusCode::BAD_REQUEST, code);
    }
    // Malformed JSON, wrong content type, a body over 64 KiB.
    let raw = |body: Body, content_type: &str| {
        Request::builder()
            .method(Method::POST)
            .uri("/licenses")
            .header("authorization", format!("Bearer {}", h.admin))
            .header("content-type", content_type)
            .body(body)
            .unwrap()
    };
    let (status, value) = h
        .send(raw(Body::from("{\"customer\":"), "application/json"))
        .await;
    assert_error(status, &value, StatusCode::BAD_REQUEST, "bad_request");
    let (status, value) = h.send(raw(Body::from("customer=acme"), "text/plain")).await;
    assert_error(
        status,
        &value,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let huge = format!("{{\"customer\":\"{}\"}}", "x".repeat(70 * 1024));
    let (status, value) = h.send(raw(Body::from(huge), "application/json")).await;
    assert_error(
        status,
        &value,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    // Nothing of the refused requests was written.
    let (_, list) = h.call(Method::GET, "/licenses", Some(&h.admin), None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

async fn list_filters_and_pages(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let mut ids = vec![];
    for customer in ["acme", "acme", "globex", "acme", "initech"] {
        ids.push(h.issue(customer).await.0);
    }
    h.act(&ids[1], "revoke", Some(json!({"grace_days": 0})))
        .await;
    let get = |q: String| {
        let h = &h;
        async move {
            let (status, body) = h
                .call(Method::GET, &format!("/licenses{q}"), Some(&h.admin), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    let acme = get("?customer=acme".into()).await;
    assert_eq!(acme["items"].as_array().unwrap().len(), 3);
    let expired = get("?status=expired".into()).await;
    assert_eq!(expired["items"].as_array().unwrap().len(), 1);
    assert_eq!(expired["items"][0]["id"], ids[1].as_str());
    let issued_acme = get("?status=issued&customer=acme".into()).await;
    assert_eq!(issued_acme["items"].as_array().unwrap().len(), 2);
    // Pages of two cover everything exactly once, in id order.
    let mut seen = vec![];
    let mut cursor = String::new();
    loop {
        let page = get(format!("?limit=2&cursor={cursor}")).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|l| l["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    for q in [
        "?status=bogus",
        "?limit=0",
        "?limit=501",
        "?cursor=nope",
        "?limit=x",
    ] {
        let (status, body) = h
            .call(Method::GET, &format!("/licenses{q}"), Some(&h.admin), None)
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
}

async fn show_and_not_found(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let (id, _) = h.issue("acme").await;
    let (status, body) = h
        .call(
            Method::GET,
            &format!("/licenses/{id}"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["entitlements"]["product"], "gateway");
    for missing in ["lic_00000000000000000000000000000000", "nope", "lic_%27%3B"] {
        let (status, body) = h
            .call(
                Method::GET,
                &format!("/licenses/{missing}"),
                Some(&h.admin),
                None,
            )
            .await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    let (status, body) = h
        .call(Method::GET, "/licenses/%FF%FE", Some(&h.admin), None)
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let (status, body) = h
        .call(Method::GET, "/no/such/route", Some(&h.admin), None)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = h
        .call(
            Method::DELETE,
            &format!("/licenses/{id}"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

async fn activation_binds_and_is_idempotent(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let mut device = Device::new(1);
    let (id, key) = h.issue("acme").await;
    let req = device.request(Activate, &id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lease = h.verify_lease(&body);
    assert_eq!(lease.sub, id);
    assert_eq!(lease.seq, 1);
    assert_eq!(lease.status, LeaseStatus::Active);
    assert_eq!(lease.nonce, req.nonce);
    assert_eq!(lease.dev, device.key.public().to_b64());
    assert_eq!(
        lease.fp,
        keys::proto::fingerprint_digest(&device.components)
    );
    assert_eq!(lease.exp, h.clock_now().plus(14 * DAY));
    assert_eq!(lease.hb, 60);
    assert_eq!(body["heartbeat_interval_secs"], 60);
    assert_eq!(h.status_of(&id).await, "active");

    // The same box again: a lease, no second binding, no second activation record.
    h.clock.advance(30);
    let again = device.request(Activate, &id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &again).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.verify_lease(&body).seq, 2);
    assert_eq!(
        audit_actions(&h, &id).await,
        ["license.issue", "license.activate"]
    );
    let (_, card) = h
        .call(
            Method::GET,
            &format!("/licenses/{id}"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(card["binding"]["device_key"], device.key.public().to_b64());
    assert_eq!(card["last_heartbeat"]["version"], "1.4.2");
}

async fn device_request_refusals_are_unsigned(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let mut device = Device::new(1);
    let (id, key) = active_license(&h, &mut device).await;
    let (other_id, other_key) = h.issue("acme").await;

    // Wrong key, another license's key, no key: 401 without a denial.
    let req = device.request(Heartbeat, &id, &other_key, h.clock_now());
    let (status, body) = h.device(&id, &other_key, &req).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert!(body.get("denial").is_none());
    let req = device.request(Heartbeat, &id, &key, h.clock_now());
    let (status, _) = h
        .call(
            Method::POST,
            &format!("/licenses/{id}/heartbeat"),
            None,
            Some(serde_json::to_value(&req).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A signature that does not verify.
    let mut forged = device.request(Heartbeat, &id, &key, h.clock_now());
    forged.counter += 1000;
    let (status, body) = h.device(&id, &key, &forged).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthenticated");
    // The body names another license than the URL.
    let req = device.request(Heartbeat, &other_id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &req).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    // An activation body posted to the heartbeat endpoint.
    let req = device.request(Activate, &id, &key, h.clock_now());
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/licenses/{id}/heartbeat"),
            Some(&key),
            Some(serde_json::to_value(&req).unwrap()),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    // A body that is not a device request.
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/licenses/{id}/heartbeat"),
            Some(&key),
            Some(json!({"hello": 1})),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    // And the license still heartbeats afterwards.
    let req = device.request(Heartbeat, &id, &key, h.clock_now());
    assert_eq!(h.device(&id, &key, &req).await.0, StatusCode::OK);
}

async fn clones_are_refused_and_audited(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let mut device = Device::new(1);
    let (id, key) = active_license(&h, &mut device).await;
    // A copy of the box's state: same device key, counter behind.
    let mut clone = Device::new(1);
    for _ in 0..3 {
        let req = device.request(Heartbeat, &id, &key, h.clock_now());
        assert_eq!(h.device(&id, &key, &req).await.0, StatusCode::OK);
    }
    let req = clone.request(Heartbeat, &id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &req).await;
    assert_error(status, &body, StatusCode::CONFLICT, "clone_suspected");
    // A second device key for the bound license.
    let mut stranger = Device::new(2);
    let req = stranger.request(Activate, &id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &req).await;
    assert_error(status, &body, StatusCode::CONFLICT, "clone_suspected");
    // The device key presented from other hardware.
    let mut moved = Device::new(1);
    moved.counter = 100;
    moved.components = Device::new(9).components;
    let req = moved.request(Heartbeat, &id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &req).await;
    assert_error(status, &body, StatusCode::CONFLICT, "clone_suspected");
    let actions = audit_actions(&h, &id).await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "license.clone_suspected")
            .count(),
        3,
        "{actions:?}"
    );
    // The genuine box carries on.
    let req = device.request(Heartbeat, &id, &key, h.clock_now());
    assert_eq!(h.device(&id, &key, &req).await.0, StatusCode::OK);
}

async fn heartbeat_before_activation_gets_a_signed_denial(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let mut device = Device::new(1);
    let (id, key) = h.issue("acme").await;
    let req = device.request(Heartbeat, &id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &req).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "not_activated");
    let denial = h.verify_denial(&body);
    assert_eq!(denial.reason, DenialReason::NotActivated);
    assert_eq!(denial.nonce, req.nonce);
}

async fn revoke_with_grace_then_expiry_then_reinstate(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let mut device = Device::new(1);
    let (id, key) = active_license(&h, &mut device).await;
    let body = h.act(&id, "revoke", Some(json!({"grace_days": 5}))).await;
    assert_eq!(body["status"], "grace");
    let until = h.clock_now().plus(5 * DAY);
    assert_eq!(
        body["grace_expires_at"],
        control_plane::http::wire::format_time(until)
    );

    // A heartbeat in grace: a grace lease ending at the grace deadline.
    h.clock.advance(DAY);
    let req = device.request(Heartbeat, &id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lease = h.verify_lease(&body);
    assert_eq!(lease.status, LeaseStatus::Grace);
    assert_eq!(lease.grace_expires_at, Some(until));
    assert_eq!(lease.exp, until);

    // Past the deadline the next heartbeat expires the license and is denied, signed.
    h.clock.set(until);
    let req = device.request(Heartbeat, &id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &req).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(h.verify_denial(&body).reason, DenialReason::Expired);
    assert_eq!(h.status_of(&id).await, "expired");
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/licenses/{id}/revoke"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "invalid_transition");

    let body = h.act(&id, "reinstate", None).await;
    assert_eq!(body["status"], "active");
    assert!(body["grace_expires_at"].is_null());
    let req = device.request(Heartbeat, &id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.verify_lease(&body).status, LeaseStatus::Active);
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/licenses/{id}/reinstate"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "invalid_transition");
    assert_eq!(
        audit_actions(&h, &id).await,
        [
            "license.issue",
            "license.activate",
            "license.revoke",
            "license.expire",
            "license.reinstate"
        ]
    );
}

async fn revoke_defaults_and_bounds(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let (id, _) = h.issue("acme").await;
    // No body: the default grace from settings (5 days).
    let body = h.act(&id, "revoke", None).await;
    assert_eq!(
        body["grace_expires_at"],
        control_plane::http::wire::format_time(h.clock_now().plus(5 * DAY))
    );
    // Revoking again with 0 ends the grace at once.
    let body = h.act(&id, "revoke", Some(json!({"grace_days": 0}))).await;
    assert_eq!(body["status"], "expired");
    let (id2, _) = h.issue("acme").await;
    for bad in [
        json!({"grace_days": 366}),
        json!({"grace_days": -1}),
        json!({"grace": 1}),
    ] {
        let (status, body) = h
            .call(
                Method::POST,
                &format!("/licenses/{id2}/revoke"),
                Some(&h.admin),
                Some(bad),
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    assert_eq!(h.status_of(&id2).await, "issued");
    // A never-activated license comes back as issued.
    h.act(&id2, "revoke", Some(json!({"grace_days": 0}))).await;
    assert_eq!(h.act(&id2, "reinstate", None).await["status"], "issued");
}

async fn suspend_and_restore(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let mut device = Device::new(1);
    let (id, key) = active_license(&h, &mut device).await;
    assert_eq!(h.act(&id, "suspend", None).await["status"], "suspended");
    let req = device.request(Heartbeat, &id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(h.verify_denial(&body).reason, DenialReason::Suspended);
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/licenses/{id}/suspend"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "invalid_transition");
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/licenses/{id}/restore"),
            Some(&h.admin),
            Some(json!({"subscription_ends_at": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let body = h
        .act(
            &id,
            "restore",
            Some(json!({"subscription_ends_at": "2028-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(body["status"], "active");
    assert_eq!(body["subscription_ends_at"], "2028-01-01T00:00:00Z");
    let req = device.request(Heartbeat, &id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &req).await;
    assert_eq!(status, StatusCode::OK);
    // The lease never outlives the subscription.
    let lease = h.verify_lease(&body);
    assert!(lease.exp <= control_plane::http::wire::parse_time("2028-01-01T00:00:00Z").unwrap());
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/licenses/{id}/restore"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "invalid_transition");
}

async fn rebind_moves_the_license_and_tells_the_old_box(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let mut old_box = Device::new(1);
    let (id, key) = active_license(&h, &mut old_box).await;
    let mut new_box = Device::new(2);
    // To a given fingerprint: only that box may activate.
    h.act(
        &id,
        "rebind",
        Some(json!({"fingerprint": new_box.components})),
    )
    .await;
    let req = old_box.request(Heartbeat, &id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &req).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let denial = h.verify_denial(&body);
    assert_eq!(denial.reason, DenialReason::Rebound);
    assert_eq!(denial.nonce, req.nonce);
    let mut third = Device::new(3);
    let req = third.request(Activate, &id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &req).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let req = new_box.request(Activate, &id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.verify_lease(&body).dev, new_box.key.public().to_b64());

    // Unbind: the next box to activate binds.
    h.act(&id, "rebind", Some(json!({"unbind": true}))).await;
    let req = third.request(Activate, &id, &key, h.clock_now());
    assert_eq!(h.device(&id, &key, &req).await.0, StatusCode::OK);
    let req = new_box.request(Heartbeat, &id, &key, h.clock_now());
    assert_eq!(h.device(&id, &key, &req).await.1["error"], "rebound");

    for bad in [
        json!({}),
        json!({"unbind": true, "fingerprint": {"a": "b"}}),
        json!({"fingerprint": {}}),
    ] {
        let (status, body) = h
            .call(
                Method::POST,
                &format!("/licenses/{id}/rebind"),
                Some(&h.admin),
                Some(bad),
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    let actions = audit_actions(&h, &id).await;
    assert_eq!(actions.iter().filter(|a| *a == "license.rebind").count(), 2);
}

async fn regenerate_invalidates_the_old_key_with_a_signed_denial(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let mut device = Device::new(1);
    let (id, old_key) = active_license(&h, &mut device).await;
    let body = h.act(&id, "regenerate", None).await;
    let new_key = body["license_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, old_key);
    let req = device.request(Heartbeat, &id, &old_key, h.clock_now());
    let (status, body) = h.device(&id, &old_key, &req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(h.verify_denial(&body).reason, DenialReason::InvalidKey);
    // The old key from a box that is not the bound one learns nothing signed.
    let mut other = Device::new(5);
    let req = other.request(Heartbeat, &id, &old_key, h.clock_now());
    let (status, body) = h.device(&id, &old_key, &req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.get("denial").is_none());
    let req = device.request(Heartbeat, &id, &new_key, h.clock_now());
    assert_eq!(h.device(&id, &new_key, &req).await.0, StatusCode::OK);
    // Reveal shows the new key, and is audited.
    let body = h.act(&id, "reveal", None).await;
    assert_eq!(body["license_key"], new_key.as_str());
    let actions = audit_actions(&h, &id).await;
    assert!(
        actions.ends_with(&["license.regenerate".to_owned(), "license.reveal".to_owned()]),
        "{actions:?}"
    );
}

async fn settings_read_update_and_validate(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let (status, mut settings) = h.call(Method::GET, "/settings", Some(&h.admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settings["offline_window_secs"], 14 * DAY);
    assert_eq!(settings["default_grace_days"], 5);
    settings["default_grace_days"] = json!(2);
    let (status, body) = h
        .call(
            Method::PUT,
            "/settings",
            Some(&h.admin),
            Some(settings.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (id, _) = h.issue("acme").await;
    let body = h.act(&id, "revoke", None).await;
    assert_eq!(
        body["grace_expires_at"],
        control_plane::http::wire::format_time(h.clock_now().plus(2 * DAY))
    );
    let mut bad = settings.clone();
    bad["heartbeat_interval_secs"] = json!(0);
    for body in [
        bad,
        json!({"offline_window_secs": 60}),
        json!([]),
        json!({"x": 1}),
    ] {
        let (status, value) = h
            .call(Method::PUT, "/settings", Some(&h.admin), Some(body))
            .await;
        assert_error(status, &value, StatusCode::BAD_REQUEST, "bad_request");
    }
    assert_eq!(audit_actions(&h, "settings").await, ["settings.update"]);
}

async fn audit_filters_and_pages(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let (a, _) = h.issue("acme").await;
    h.clock.advance(100);
    let (b, _) = h.issue("acme").await;
    h.act(&b, "suspend", None).await;
    let (status, body) = h
        .call(
            Method::GET,
            "/audit?action=license.issue",
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["target"], a.as_str());
    assert_eq!(items[0]["actor_name"], "root-admin");
    let from = control_plane::http::wire::format_time(h.clock_now());
    let (_, body) = h
        .call(
            Method::GET,
            &format!("/audit?from={from}"),
            Some(&h.admin),
            None,
        )
        .await;
    let actions: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["license.issue", "license.suspend"]);
    let (_, body) = h
        .call(
            Method::GET,
            &format!("/audit?until={from}&target={a}"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    // Paging through the whole log, one at a time, finds a gap-free chain.
    let mut seqs = vec![];
    let mut cursor = String::new();
    loop {
        let (_, page) = h
            .call(
                Method::GET,
                &format!("/audit?limit=1{cursor}"),
                Some(&h.admin),
                None,
            )
            .await;
        seqs.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["seq"].as_u64().unwrap()),
        );
        match page["next_cursor"].as_u64() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    for q in ["?from=yesterday", "?limit=0", "?cursor=-1"] {
        let (status, body) = h
            .call(Method::GET, &format!("/audit{q}"), Some(&h.admin), None)
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
}

async fn users_are_created_with_a_token_shown_once(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let (status, body) = h
        .call(
            Method::POST,
            "/users",
            Some(&h.admin),
            Some(json!({"name": "nina", "role": "support"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let (status, _) = h.call(Method::GET, "/licenses", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, users) = h.call(Method::GET, "/users", Some(&h.admin), None).await;
    assert!(!users.to_string().contains(&token));
    assert_eq!(users.as_array().unwrap().len(), 5);
    for bad in [
        json!({"name": "c", "role": "customer"}),
        json!({"name": "s", "role": "support", "customer": "acme"}),
        json!({"name": "", "role": "support"}),
        json!({"name": "x", "role": "wizard"}),
    ] {
        let (status, body) = h
            .call(Method::POST, "/users", Some(&h.admin), Some(bad))
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    }
    // A token that was never issued, or malformed, is refused.
    for token in [
        "at_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "at_short",
        "garbage",
    ] {
        let (status, _) = h.call(Method::GET, "/licenses", Some(token), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

async fn public_keys_and_health(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let (status, jwks) = h
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter()
            .all(|k| k["kty"] == "OKP" && k["crv"] == "Ed25519")
    );
    let (status, trust) = h
        .call(Method::GET, "/.well-known/licensing-trust.json", None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(keys::TrustStore::from_json(&trust.to_string()).is_ok());
    let (status, body) = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

async fn restore_into_an_ended_subscription_needs_a_new_end(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let (status, body) = h
        .call(
            Method::POST,
            "/licenses",
            Some(&h.admin),
            Some(json!({"customer": "acme", "entitlements": {"product": "gw"},
                        "subscription_ends_at": control_plane::http::wire::format_time(h.clock_now().plus(DAY))})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = body["license"]["id"].as_str().unwrap().to_owned();
    h.act(&id, "suspend", None).await;
    h.clock.advance(2 * DAY);
    let (status, body) = h
        .call(
            Method::POST,
            &format!("/licenses/{id}/restore"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(h.status_of(&id).await, "suspended");
    let end = control_plane::http::wire::format_time(h.clock_now().plus(30 * DAY));
    let body = h
        .act(&id, "restore", Some(json!({"subscription_ends_at": end})))
        .await;
    assert_eq!(body["status"], "issued");
}

async fn the_signing_certificate_is_renewed_before_it_lapses(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let mut device = Device::new(1);
    let (id, key) = active_license(&h, &mut device).await;
    // Fresh from init: nothing to do.
    assert!(!h.cp.renew_certificate_if_due().await.unwrap());
    // 320 days on, 45 days before the certificate's end: renewed, once, audited.
    h.clock.advance(320 * DAY);
    assert!(h.cp.renew_certificate_if_due().await.unwrap());
    assert!(!h.cp.renew_certificate_if_due().await.unwrap());
    let (_, audit) = h
        .call(
            Method::GET,
            "/audit?action=signing.certify",
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);
    // A year after init (past the first certificate's end), leases still verify.
    h.clock.advance(60 * DAY);
    let req = device.request(Heartbeat, &id, &key, h.clock_now());
    let (status, body) = h.device(&id, &key, &req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.verify_lease(&body).sub, id);
}

async fn offline_activation_for_air_gapped_boxes(kind: StoreKind) {
    let h = Harness::with_store(kind).await;
    let (id, key) = h.issue("acme").await;
    let mut device = Device::new(4);
    // The box signs an activation request with the license key it was given;
    // the operator submits it without ever seeing the key.
    let request = device.request(Activate, &id, &key, h.clock_now());
    let path = format!("/licenses/{id}/offline-activation");
    let (status, body) = h
        .call(
            Method::POST,
            &path,
            Some(&h.onboarding),
            Some(serde_json::to_value(&request).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lease = h.verify_lease(&body);
    assert_eq!(lease.offline, 365 * DAY as u32);
    assert_eq!(lease.exp, h.clock_now().plus(365 * DAY));
    assert_eq!(lease.nonce, request.nonce);
    assert_eq!(h.status_of(&id).await, "active");
    let (_, audit) = h
        .call(
            Method::GET,
            &format!("/audit?target={id}&action=license.activate"),
            Some(&h.admin),
            None,
        )
        .await;
    assert_eq!(audit["items"][0]["actor_name"], "olga");
    assert_eq!(audit["items"][0]["metadata"]["airgapped"], true);

    // A request signed with another key, a heartbeat, another license: refused.
    let (other, other_key) = h.issue("acme").await;
    let forged = Device::new(5).request(Activate, &id, &other_key, h.clock_now());
    let (status, body) = h
        .call(
            Method::POST,
            &path,
            Some(&h.onboarding),
            Some(serde_json::to_value(&forged).unwrap()),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "bad_request");
    let hb = device.request(Heartbeat, &id, &key, h.clock_now());
    let (status, _) = h
        .call(
            Method::POST,
            &path,
            Some(&h.onboarding),
            Some(serde_json::to_value(&hb).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let wrong = Device::new(6).request(Activate, &other, &other_key, h.clock_now());
    let (status, _) = h
        .call(
            Method::POST,
            &path,
            Some(&h.onboarding),
            Some(serde_json::to_value(&wrong).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Customers and appliances cannot use it.
    let (status, _) = h
        .call(
            Method::POST,
            &path,
            Some(&h.customer),
            Some(serde_json::to_value(&request).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h
        .call(
            Method::POST,
            &path,
            Some(&key),
            Some(serde_json::to_value(&request).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// A body that never arrives.
struct Stalled;

impl axum::body::HttpBody for Stalled {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

#[tokio::test]
async fn a_stalled_request_times_out_with_a_json_error() {
    let h = Harness::new().await;
    let router = control_plane::http::router_with_timeout(
        h.cp.clone(),
        std::time::Duration::from_millis(200),
    );
    let request = Request::builder()
        .method(Method::POST)
        .uri("/licenses")
        .header("authorization", format!("Bearer {}", h.admin))
        .header("content-type", "application/json")
        .body(Body::new(Stalled))
        .unwrap();
    let response = tower::ServiceExt::oneshot(router, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"], "timeout");
}

on_each_store!(
    issue_and_its_refusals,
    list_filters_and_pages,
    show_and_not_found,
    activation_binds_and_is_idempotent,
    device_request_refusals_are_unsigned,
    clones_are_refused_and_audited,
    heartbeat_before_activation_gets_a_signed_denial,
    revoke_with_grace_then_expiry_then_reinstate,
    revoke_defaults_and_bounds,
    suspend_and_restore,
    rebind_moves_the_license_and_tells_the_old_box,
    regenerate_invalidates_the_old_key_with_a_signed_denial,
    settings_read_update_and_validate,
    audit_filters_and_pages,
    users_are_created_with_a_token_shown_once,
    public_keys_and_health,
    restore_into_an_ended_subscription_needs_a_new_end,
    the_signing_certificate_is_renewed_before_it_lapses,
    offline_activation_for_air_gapped_boxes,
);

//! The OpenAPI document is generated from the handlers and lists exactly the
//! routes the router serves: every documented (method, path) reaches a handler
//! (not the 404/405 fallbacks), and paths outside the document answer the
//! fallback's 404. `docs/openapi.json` is the checked-in copy; regenerate it with
//! `UPDATE_OPENAPI=1 cargo test -p control-plane --test it openapi`.

use crate::support::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use keys::proto::RequestKind::{Activate, Heartbeat};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use tower::ServiceExt as _;

pub(crate) fn generated() -> Value {
    serde_json::to_value(control_plane::http::openapi()).unwrap()
}

/// Every (method, path) of the document.
pub(crate) fn operations(doc: &Value) -> Vec<(Method, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            out.push((method, path.clone()));
        }
    }
    out
}

/// Whether an answer came from the router's fallbacks rather than a handler.
fn is_fallback(status: StatusCode, body: &Value) -> bool {
    (status == StatusCode::NOT_FOUND && body["message"] == "no such route")
        || status == StatusCode::METHOD_NOT_ALLOWED
}

/// Sends a bodiless, unauthenticated request; returns the status and the body
/// as JSON (or `Null` when it is not JSON: `/metrics` answers text).
async fn raw(h: &Harness, method: Method, path: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let response = h.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[test]
fn openapi_document_is_checked_in() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let fresh = control_plane::http::openapi().to_pretty_json().unwrap() + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "docs/openapi.json differs from the document the code generates; regenerate it with\n  \
         UPDATE_OPENAPI=1 cargo test -p control-plane --test it openapi\nand commit it"
    );
}

#[tokio::test]
async fn openapi_json_is_served_with_title_version_tags_and_security() {
    let h = Harness::new().await;
    let (status, served) = raw(&h, Method::GET, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served, generated());
    assert_eq!(served["info"]["title"], "Licensing control plane");
    assert_eq!(served["info"]["version"], env!("CARGO_PKG_VERSION"));
    let schemes = &served["components"]["securitySchemes"];
    assert_eq!(schemes["api_token"]["scheme"], "bearer");
    assert_eq!(schemes["license_key"]["scheme"], "bearer");
    let tags: BTreeSet<&str> = served["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for (method, path) in operations(&served) {
        let op = &served["paths"][&path][method.as_str().to_lowercase()];
        let tag = op["tags"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no tag"));
        assert!(tags.contains(tag), "{method} {path}: undeclared tag {tag}");
        let security: Vec<&str> = op["security"]
            .as_array()
            .map(|s| {
                s.iter()
                    .flat_map(|r| r.as_object().unwrap().keys())
                    .map(String::as_str)
                    .collect()
            })
            .unwrap_or_default();
        let expected: &[&str] = match tag {
            "public" => &[],
            "appliance" => &["license_key"],
            _ => &["api_token"],
        };
        assert_eq!(security, expected, "{method} {path}");
        // Every refusal is documented with the error schema (or a denial).
        for (code, response) in op["responses"].as_object().unwrap() {
            if code.starts_with('4') || code.starts_with('5') {
                let schema = response["content"]["application/json"]["schema"].to_string();
                assert!(
                    schema.contains("ErrorBody") || schema.contains("Denial"),
                    "{method} {path} {code}: {schema}"
                );
            }
        }
    }
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let h = Harness::new().await;
    let doc = generated();
    let ops = operations(&doc);
    // The document is not empty: the design's seed routes and the operations
    // endpoints are all there.
    for (method, path) in [
        (Method::GET, "/licenses"),
        (Method::POST, "/licenses"),
        (Method::GET, "/licenses/{id}"),
        (Method::POST, "/licenses/{id}/activate"),
        (Method::POST, "/licenses/{id}/heartbeat"),
        (Method::POST, "/licenses/{id}/revoke"),
        (Method::POST, "/licenses/health/sweep"),
        (Method::PUT, "/settings"),
        (Method::GET, "/audit"),
        (Method::POST, "/signing-keys/{kid}/activate"),
        (Method::GET, "/.well-known/jwks.json"),
        (Method::GET, "/healthz"),
        (Method::GET, "/readyz"),
        (Method::GET, "/metrics"),
        (Method::GET, "/openapi.json"),
    ] {
        assert!(
            ops.contains(&(method.clone(), path.to_owned())),
            "{method} {path} is not documented"
        );
    }
    for (method, path) in &ops {
        let concrete = path.replace("{id}", "lic_x").replace("{kid}", "kid_x");
        assert!(!concrete.contains('{'), "unfilled parameter in {path}");
        let (status, body) = raw(&h, method.clone(), &concrete).await;
        assert!(
            !is_fallback(status, &body),
            "{method} {path} is documented but not routed: {status} {body}"
        );
    }
}

#[tokio::test]
async fn nothing_outside_the_document_is_routed() {
    let h = Harness::new().await;
    let doc = generated();
    let ops = operations(&doc);
    let documented: BTreeSet<&str> = ops.iter().map(|(_, p)| p.as_str()).collect();
    for path in [
        "/",
        "/nope",
        "/licenses/lic_x/nope",
        "/signing-keys/kid_x",
        "/metrics/x",
        "/openapi.yaml",
        "/readyz/x",
        "/.well-known/nope.json",
        "/users/u_x",
    ] {
        assert!(!documented.contains(path), "{path} is documented");
        let (status, body) = raw(&h, Method::GET, path).await;
        assert!(
            status == StatusCode::NOT_FOUND
                && body["error"] == "not_found"
                && body["message"] == "no such route",
            "{path}: {status} {body}"
        );
    }
    // A documented path with a method the document does not list: 405.
    for (method, path) in [
        (Method::DELETE, "/licenses"),
        (Method::GET, "/licenses/lic_x/heartbeat"),
        (Method::POST, "/metrics"),
        (Method::PUT, "/users"),
    ] {
        let (status, body) = raw(&h, method.clone(), path).await;
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {body}"
        );
        assert_eq!(body["error"], "method_not_allowed");
    }
}

/// The property names of a component schema.
fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no schema {schema}"))
        .keys()
        .cloned()
        .collect()
}

fn keys_of(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

/// The `keys` crate's wire types are described by schema-only mirrors (keys
/// stays free of utoipa): each mirror has exactly the fields the real type
/// serializes.
#[tokio::test]
async fn openapi_mirrors_of_keys_types_match_their_serialization() {
    let h = Harness::new().await;
    let doc = generated();
    let (id, key) = h.issue("acme").await;
    let mut device = Device::new(1);
    let request = device.request(Activate, &id, &key, h.clock_now());
    assert_eq!(
        properties(&doc, "DeviceRequest"),
        keys_of(&serde_json::to_value(&request).unwrap())
    );
    let (status, lease) = h.device(&id, &key, &request).await;
    assert_eq!(status, StatusCode::OK, "{lease}");
    assert_eq!(properties(&doc, "LeaseResponse"), keys_of(&lease));
    h.act(&id, "revoke", Some(json!({"grace_days": 0}))).await;
    let request = device.request(Heartbeat, &id, &key, h.clock_now());
    let (status, denial) = h.device(&id, &key, &request).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{denial}");
    assert_eq!(properties(&doc, "DenialResponse"), keys_of(&denial));
    let entitlements = keys::Entitlements {
        product: "gateway".into(),
        features: vec!["vpn".into()],
        limits: [("seats".to_owned(), 5)].into(),
    };
    assert_eq!(
        properties(&doc, "Entitlements"),
        keys_of(&serde_json::to_value(&entitlements).unwrap())
    );
}

//! The API target: arbitrary bytes as the body of every POST/PUT route, sent
//! through the control plane's real router (`tower::ServiceExt::oneshot`).
//!
//! [`Api::open`] opens one control plane on a temp dir with a manual clock and
//! provisions what the routes act on: an issued license, an activated one with
//! its device key, and a signing key pending an offline certificate. The first
//! input byte picks the route, the license, whether the body carries a JSON
//! content type and whether a body that parses as a device request is
//! re-signed with the real device and license keys (so fuzzed fingerprints,
//! nonces and versions reach the service, not only the signature check).
//!
//! The oracle (docs/api.md, DESIGN.md "Errors"): never a panic, never a 5xx,
//! and every 4xx is a JSON object with string `error` and `message`.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use control_plane::clock::ManualClock;
use control_plane::http::rate_limit::RateLimits;
use control_plane::http::{Options, router_with};
use control_plane::secrets::Kek;
use control_plane::service::ControlPlane;
use control_plane::store::sled_store::SledStore;
use http_body_util::BodyExt as _;
use keys::proto::{DeviceRequest, RequestKind};
use keys::{PrivateKey, UnixTime};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tower::ServiceExt as _;

/// The control plane's clock: 2027-01-15T08:00:00Z.
pub const T0: UnixTime = UnixTime(1_800_000_000);

/// How the route's path and credential are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    Admin,
    /// The license key of the license in the path.
    LicenseKey,
}

/// The routes that take a body, with `{id}` for a license id and `{kid}` for a
/// signing key's kid. Their order is the selector's.
pub const ROUTES: [(&str, &str); 13] = [
    ("POST", "/licenses"),
    ("POST", "/licenses/{id}/revoke"),
    ("POST", "/licenses/{id}/restore"),
    ("POST", "/licenses/{id}/rebind"),
    ("POST", "/licenses/{id}/offline-activation"),
    ("POST", "/licenses/{id}/activate"),
    ("POST", "/licenses/{id}/heartbeat"),
    ("PUT", "/settings"),
    ("POST", "/users"),
    ("POST", "/signing-keys"),
    ("POST", "/signing-keys/{kid}/certificate"),
    // No body, but they move the licenses between states so that the routes
    // above meet every state.
    ("POST", "/licenses/{id}/reinstate"),
    ("POST", "/licenses/{id}/suspend"),
];

/// At most this many signing keys are created: each is kept for good, and
/// a store full of them would slow every later input.
const MAX_CREATED_KEYS: u64 = 32;

/// One control plane, opened once per process.
#[derive(Debug)]
pub struct Api {
    runtime: tokio::runtime::Runtime,
    router: Router,
    admin: String,
    /// `(id, license key)`: issued, never activated.
    issued: (String, String),
    /// `(id, license key)`: activated by `device`.
    active: (String, String),
    device: PrivateKey,
    counter: AtomicU64,
    pending_kid: String,
    created_keys: AtomicU64,
    /// Answers seen, by class: 2xx, 3xx, 4xx.
    answers: [AtomicU64; 3],
    _dir: tempfile::TempDir,
}

impl Api {
    /// Opens a control plane on a fresh temp dir and provisions it. Panics on
    /// failure: the harness, not the code under test, is broken then.
    pub fn open() -> Api {
        if let Ok(filter) = std::env::var("FUZZ_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .try_init();
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::Builder::new()
            .prefix("licensing-fuzz-api-")
            .tempdir()
            .expect("temp dir");
        let (router, admin) = runtime.block_on(async {
            let store = Arc::new(SledStore::open(&dir.path().join("data")).expect("store"));
            let clock = Arc::new(ManualClock::new(T0));
            let kek = Kek::generate().expect("kek");
            let init = ControlPlane::initialize(store.as_ref(), clock.as_ref(), &kek, "fuzz-admin")
                .await
                .expect("initialize");
            let cp = ControlPlane::open(store, clock, kek, "fuzz-issuer".into())
                .await
                .expect("open");
            // Rate limits off: with them, most heartbeats would stop at a 429
            // before their body is read.
            let options = Options {
                rate_limits: RateLimits::OFF,
                ..Options::default()
            };
            (
                router_with(Arc::new(cp), options),
                init.token.expose().to_owned(),
            )
        });
        let mut api = Api {
            runtime,
            router,
            admin,
            issued: (String::new(), String::new()),
            active: (String::new(), String::new()),
            device: PrivateKey::from_seed(&[0x77; 32]),
            counter: AtomicU64::new(0),
            pending_kid: String::new(),
            created_keys: AtomicU64::new(0),
            answers: Default::default(),
            _dir: dir,
        };
        api.issued = api.issue();
        api.active = api.issue();
        let (id, key) = api.active.clone();
        let request = api.sign(RequestKind::Activate, &id, &key, None);
        let (status, body) = api.send(
            Method::POST,
            &format!("/licenses/{id}/activate"),
            &key,
            true,
            &request,
        );
        assert_eq!(status, StatusCode::OK, "activation: {body}");
        let (status, body) = api.send(
            Method::POST,
            "/signing-keys",
            &api.admin.clone(),
            true,
            br#"{"certify":"offline"}"#,
        );
        assert_eq!(status, StatusCode::CREATED, "signing key: {body}");
        api.pending_kid = body["kid"].as_str().expect("kid").to_owned();
        api
    }

    fn issue(&self) -> (String, String) {
        let body = json!({"customer": "acme", "entitlements": {"product": "gateway"}});
        let (status, body) = self.send(
            Method::POST,
            "/licenses",
            &self.admin,
            true,
            body.to_string().as_bytes(),
        );
        assert_eq!(status, StatusCode::CREATED, "issue: {body}");
        (
            body["license"]["id"].as_str().expect("id").to_owned(),
            body["license_key"].as_str().expect("key").to_owned(),
        )
    }

    /// A device request signed by `device`, from `template`'s fields when given.
    fn sign(
        &self,
        kind: RequestKind,
        id: &str,
        key: &str,
        template: Option<DeviceRequest>,
    ) -> Vec<u8> {
        let counter = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let (components, nonce, version, sent_at) = match template {
            Some(t) => (t.components, t.nonce, t.version, t.sent_at),
            None => (
                [("machine_id".to_owned(), "m-fuzz".to_owned())].into(),
                keys::b64::encode(counter.to_be_bytes().repeat(2)),
                "1.0.0".to_owned(),
                T0.0,
            ),
        };
        let request = DeviceRequest::sign(
            kind,
            id,
            key,
            components,
            &self.device,
            nonce,
            counter,
            version,
            sent_at,
        );
        serde_json::to_vec(&request).expect("request")
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        json: bool,
        body: &[u8],
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if json {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Body::from(body.to_vec())).expect("request");
        let router = self.router.clone();
        let (status, bytes) = self.runtime.block_on(async move {
            let response = router.oneshot(request).await.expect("infallible");
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            (status, bytes)
        });
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{path}: {status} with a body that is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, value)
    }

    /// The target: see the module documentation.
    ///
    /// Selector bits: 0-3 the route (mod 13), 4-5 the license (issued, active,
    /// unknown, malformed), 6 re-sign device requests, 7 no JSON content type.
    pub fn run(&self, data: &[u8]) {
        let Some((&selector, body)) = data.split_first() else {
            return;
        };
        let mut route = usize::from(selector & 0x0f) % ROUTES.len();
        if ROUTES[route].1 == "/signing-keys"
            && self.created_keys.load(Ordering::Relaxed) >= MAX_CREATED_KEYS
        {
            route = 10;
        }
        let (method, template) = ROUTES[route];
        let (id, key) = match (selector >> 4) & 3 {
            0 => self.issued.clone(),
            1 => self.active.clone(),
            2 => (
                "lic_00000000000000000000000000".to_owned(),
                "lk_unknown".to_owned(),
            ),
            _ => ("not%20an%20id".to_owned(), String::new()),
        };
        let resign = selector & 0x40 != 0;
        let json = selector & 0x80 == 0;
        let path = template
            .replace("{id}", &id)
            .replace("{kid}", &self.pending_kid);
        let auth = if template.ends_with("/activate") || template.ends_with("/heartbeat") {
            Auth::LicenseKey
        } else {
            Auth::Admin
        };
        let kind = if template.ends_with("/heartbeat") {
            RequestKind::Heartbeat
        } else {
            RequestKind::Activate
        };
        let mut body = body.to_vec();
        if resign && let Ok(template) = serde_json::from_slice::<DeviceRequest>(&body) {
            // Re-signing keeps the fuzzed fields but makes the signature,
            // license id, device key and counter genuine.
            body = self.sign(kind, &id, &key, Some(template));
        }
        let token = match auth {
            Auth::Admin => self.admin.as_str(),
            Auth::LicenseKey => key.as_str(),
        };
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let (status, value) = self.send(method, &path, token, json, &body);
        assert!(
            !status.is_server_error(),
            "{template}: {status} {value} for body {:?}",
            String::from_utf8_lossy(&body)
        );
        if status.is_client_error() {
            assert!(
                value["error"].is_string() && value["message"].is_string(),
                "{template}: {status} without an error body: {value}"
            );
        }
        let class = usize::from(status.as_u16() / 100).clamp(2, 4) - 2;
        self.answers[class].fetch_add(1, Ordering::Relaxed);
        if template == "/signing-keys" && status == StatusCode::CREATED {
            self.created_keys.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many answers of [`Api::run`] were 2xx, 3xx and 4xx: a harness whose
    /// every request fails authentication would fuzz nothing.
    pub fn answers(&self) -> [u64; 3] {
        self.answers.each_ref().map(|a| a.load(Ordering::Relaxed))
    }

    /// Seed inputs for every route: the starting corpus (`fuzz/corpus/api`)
    /// and the CI run's base.
    pub fn seeds(&self) -> Vec<(String, Vec<u8>)> {
        let (id, key) = self.active.clone();
        let heartbeat = self.sign(RequestKind::Heartbeat, &id, &key, None);
        let activate = self.sign(RequestKind::Activate, &id, &key, None);
        let (_, settings) = self.send(Method::GET, "/settings", &self.admin, false, b"");
        let bodies: [(&str, Vec<u8>); 13] = [
            (
                "issue",
                json!({"customer": "acme", "entitlements": {"product": "gateway", "features": ["vpn"], "limits": {"seats": 10}},
                       "subscription_ends_at": "2028-01-01T00:00:00Z", "policy": {"offline_window_secs": 86400}})
                .to_string()
                .into_bytes(),
            ),
            ("revoke", br#"{"grace_days":5}"#.to_vec()),
            ("restore", br#"{"subscription_ends_at":"2029-01-01T00:00:00Z"}"#.to_vec()),
            ("rebind", br#"{"fingerprint":{"machine_id":"m2","mac":"a2"},"unbind":false}"#.to_vec()),
            ("offline-activation", activate.clone()),
            ("activate", activate),
            ("heartbeat", heartbeat),
            ("settings", settings.to_string().into_bytes()),
            ("users", br#"{"name":"fuzz-user","role":"customer","customer":"acme"}"#.to_vec()),
            ("signing-keys", br#"{"certify":"offline"}"#.to_vec()),
            ("certificate", br#"{"chain":["eyJhbGciOiJFZERTQSJ9.e30.AAAA"]}"#.to_vec()),
            ("reinstate", Vec::new()),
            ("suspend", Vec::new()),
        ];
        let mut seeds = Vec::new();
        for (route, (name, body)) in bodies.into_iter().enumerate() {
            // The active license, re-signing on, JSON on.
            let selector = route as u8 | 0x10 | 0x40;
            let mut input = vec![selector];
            input.extend_from_slice(&body);
            seeds.push((name.to_owned(), input));
        }
        seeds
    }
}

//! Test harness: a control plane on a temp dir, driven through its router.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use control_plane::clock::ManualClock;
use control_plane::domain::user::Role;
use control_plane::secrets::Kek;
use control_plane::service::ControlPlane;
use control_plane::store::sled_store::SledStore;
use http_body_util::BodyExt as _;
use keys::proto::{Components, DeviceRequest, RequestKind};
use keys::{PrivateKey, UnixTime};
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt as _;

/// 2027-01-15T08:00:00Z.
pub const T0: UnixTime = UnixTime(1_800_000_000);
pub const DAY: i64 = 86_400;

#[derive(Debug)]
pub struct Harness {
    pub router: Router,
    pub cp: Arc<ControlPlane>,
    pub clock: Arc<ManualClock>,
    pub admin: String,
    pub onboarding: String,
    pub support: String,
    /// A customer user of customer `acme`.
    pub customer: String,
    pub trust: keys::TrustStore,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(&dir.path().join("data")).unwrap());
        let clock = Arc::new(ManualClock::new(T0));
        let kek = Kek::generate().unwrap();
        let init = ControlPlane::initialize(store.as_ref(), clock.as_ref(), &kek, "root-admin")
            .await
            .unwrap();
        let cp = Arc::new(
            ControlPlane::open(store, clock.clone(), kek, "test-issuer".into())
                .await
                .unwrap(),
        );
        let admin = init.token.expose().to_owned();
        let actor = control_plane::service::Actor::system();
        let token = |name: &str, role: Role, customer: Option<&str>| {
            let cp = cp.clone();
            let actor = actor.clone();
            let name = name.to_owned();
            let customer = customer.map(str::to_owned);
            async move {
                cp.create_user(&actor, &name, role, customer, None)
                    .await
                    .unwrap()
                    .1
                    .expose()
                    .to_owned()
            }
        };
        let onboarding = token("olga", Role::Onboarding, None).await;
        let support = token("sam", Role::Support, None).await;
        let customer = token("acme-ops", Role::Customer, Some("acme")).await;
        let trust = keys::TrustStore::from_file(&cp.trust_file().await.unwrap()).unwrap();
        Harness {
            router: control_plane::http::router(cp.clone()),
            cp,
            clock,
            admin,
            onboarding,
            support,
            customer,
            trust,
            dir,
        }
    }

    /// Sends one request through the router; returns the status and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(v) => {
                request = request.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    /// Sends a prepared request.
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "non-JSON body with {status}: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, value)
    }

    /// Issues a license for `customer`; returns (id, key).
    pub async fn issue(&self, customer: &str) -> (String, String) {
        let (status, body) = self
            .call(
                Method::POST,
                "/licenses",
                Some(&self.admin),
                Some(json!({"customer": customer, "entitlements": {"product": "gateway", "features": ["vpn"], "limits": {"seats": 10}}})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["license"]["id"].as_str().unwrap().to_owned(),
            body["license_key"].as_str().unwrap().to_owned(),
        )
    }

    /// Runs a support action with the admin token and asserts 200.
    pub async fn act(&self, id: &str, action: &str, body: Option<Value>) -> Value {
        let (status, value) = self
            .call(
                Method::POST,
                &format!("/licenses/{id}/{action}"),
                Some(&self.admin),
                body,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{action}: {value}");
        value
    }

    pub async fn status_of(&self, id: &str) -> String {
        let (_, body) = self
            .call(
                Method::GET,
                &format!("/licenses/{id}"),
                Some(&self.admin),
                None,
            )
            .await;
        body["status"].as_str().unwrap().to_owned()
    }

    /// Sends a device request as the appliance would.
    pub async fn device(
        &self,
        id: &str,
        key: &str,
        request: &DeviceRequest,
    ) -> (StatusCode, Value) {
        let path = match request.kind {
            RequestKind::Activate => format!("/licenses/{id}/activate"),
            RequestKind::Heartbeat => format!("/licenses/{id}/heartbeat"),
        };
        self.call(
            Method::POST,
            &path,
            Some(key),
            Some(serde_json::to_value(request).unwrap()),
        )
        .await
    }

    /// Verifies a lease response; returns the lease claims.
    pub fn verify_lease(&self, body: &Value) -> keys::Lease {
        self.verify_signed(body, "lease")
    }

    /// Verifies a denial response; returns the denial claims.
    pub fn verify_denial(&self, body: &Value) -> keys::Denial {
        self.verify_signed(body, "denial")
    }

    fn verify_signed<T: keys::SignedBySigningKey>(&self, body: &Value, field: &str) -> T {
        let chain: Vec<&str> = body["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let signer = self
            .trust
            .verify_chain_at(&chain, self.clock_now())
            .unwrap();
        self.trust
            .verify_at::<T>(body[field].as_str().unwrap(), &signer, self.clock_now())
            .unwrap()
            .into_claims()
    }

    pub fn clock_now(&self) -> UnixTime {
        use control_plane::clock::Clock as _;
        self.clock.now()
    }
}

/// A simulated appliance: a device key, fingerprint components and a counter.
#[derive(Debug)]
pub struct Device {
    pub key: PrivateKey,
    pub components: Components,
    pub counter: u64,
}

impl Device {
    pub fn new(seed: u8) -> Device {
        Device {
            key: PrivateKey::from_seed(&[seed; 32]),
            components: [
                ("machine_id", format!("m{seed}")),
                ("product_uuid", format!("u{seed}")),
                ("mac", format!("a{seed}")),
                ("cpu", "xeon-8".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            counter: 0,
        }
    }

    /// The next signed request (the counter goes up).
    pub fn request(
        &mut self,
        kind: RequestKind,
        id: &str,
        license_key: &str,
        now: UnixTime,
    ) -> DeviceRequest {
        self.counter += 1;
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&self.counter.to_be_bytes());
        nonce[8] = self.key.public().as_bytes()[0];
        DeviceRequest::sign(
            kind,
            id,
            license_key,
            self.components.clone(),
            &self.key,
            keys::b64::encode(nonce),
            self.counter,
            "1.4.2".into(),
            now.secs(),
        )
    }
}

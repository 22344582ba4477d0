//! Test harness: a control plane on a temp dir (its store sled or PostgreSQL),
//! driven through its router; and the stores the conformance suite runs on.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use control_plane::clock::ManualClock;
use control_plane::domain::user::Role;
use control_plane::secrets::Kek;
use control_plane::service::ControlPlane;
use control_plane::store::postgres::{PgStore, create_database};
use control_plane::store::{Store, StoreLocation};
use http_body_util::BodyExt as _;
use keys::proto::{Components, DeviceRequest, RequestKind};
use keys::{PrivateKey, UnixTime};
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt as _;

/// 2027-01-15T08:00:00Z.
pub const T0: UnixTime = UnixTime(1_800_000_000);
pub const DAY: i64 = 86_400;

/// The environment variable naming the PostgreSQL server the tests use
/// (a superuser's URL: each test creates a database of its own).
pub const POSTGRES_VAR: &str = "LICENSING_TEST_POSTGRES";
/// Set to `1` to skip the PostgreSQL tests explicitly.
pub const SKIP_POSTGRES_VAR: &str = "LICENSING_SKIP_POSTGRES";

/// The two implementations of [`Store`] every store test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sled,
    Postgres,
}

/// Whether this PostgreSQL test is to be skipped: only when
/// `LICENSING_SKIP_POSTGRES=1` says so. Without a server and without that, the
/// test fails, so that a run that forgot the server cannot pass quietly.
pub fn skip_postgres() -> bool {
    if std::env::var_os(POSTGRES_VAR).is_some() {
        return false;
    }
    if std::env::var(SKIP_POSTGRES_VAR).as_deref() == Ok("1") {
        eprintln!("{SKIP_POSTGRES_VAR}=1: skipping a PostgreSQL test");
        return true;
    }
    panic!(
        "{POSTGRES_VAR} is not set: run ./scripts/test, which starts PostgreSQL, or start one \
         with `scripts/postgres start DIR` and export {POSTGRES_VAR}=<the URL it prints> \
         (or set {SKIP_POSTGRES_VAR}=1 to skip the PostgreSQL tests)"
    );
}

/// A fresh, empty database on the test server, named `prefix` and a random
/// suffix; returns its URL.
pub async fn fresh_database(prefix: &str) -> String {
    let server =
        std::env::var(POSTGRES_VAR).unwrap_or_else(|_| panic!("{POSTGRES_VAR} is not set"));
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).unwrap();
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    create_database(&server, &format!("{prefix}_{suffix}"))
        .await
        .unwrap()
}

/// A store of one kind for one test: sled in a temp dir, or PostgreSQL in a
/// database of its own; [`TestStore::reopen`] opens the same data again.
#[derive(Debug)]
pub struct TestStore {
    pub store: Arc<dyn Store>,
    pub location: StoreLocation,
    /// The sled store's directory, removed with the test store.
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    pub async fn new(kind: StoreKind) -> TestStore {
        match kind {
            StoreKind::Sled => {
                let dir = tempfile::tempdir().unwrap();
                let location = StoreLocation::Sled(dir.path().join("data"));
                TestStore {
                    store: location.open().await.unwrap(),
                    location,
                    _dir: Some(dir),
                }
            }
            StoreKind::Postgres => {
                let location = StoreLocation::Postgres(fresh_database("conformance").await);
                TestStore {
                    store: location.open().await.unwrap(),
                    location,
                    _dir: None,
                }
            }
        }
    }

    /// Closes the store (every other handle to it must be gone) and opens its
    /// data again: sled reopens its directory, PostgreSQL reconnects.
    pub async fn reopen(self) -> TestStore {
        let TestStore {
            store,
            location,
            _dir,
        } = self;
        assert_eq!(Arc::strong_count(&store), 1, "reopen needs the only handle");
        drop(store);
        // The sled store's group-commit flusher holds the database for the
        // length of a flush that was under way at the drop, and with it the
        // directory's lock: poll, with a deadline, until it lets go.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let store = loop {
            match location.open().await {
                Ok(store) => break store,
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(e) => panic!("reopening {location}: {e}"),
            }
        };
        TestStore {
            store,
            location,
            _dir,
        }
    }

    /// Another handle on the same data, as a second replica has: a second
    /// connection pool for PostgreSQL. `None` for sled, which one process owns.
    pub async fn another_replica(&self) -> Option<Arc<dyn Store>> {
        match &self.location {
            StoreLocation::Sled(_) => None,
            StoreLocation::Postgres(url) => Some(Arc::new(PgStore::connect(url).await.unwrap())),
        }
    }
}

/// Instantiates each named `async fn(StoreKind)` once per store kind, as
/// `name::sled` and `name::postgres` (which fails without a server, see
/// [`skip_postgres`]). The test body is written once.
macro_rules! on_each_store {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sled() {
                super::$name($crate::support::StoreKind::Sled).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::support::skip_postgres() {
                    return;
                }
                super::$name($crate::support::StoreKind::Postgres).await;
            }
        }
    )*};
}
pub(crate) use on_each_store;

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
    /// Where the store is, for a second replica on the same PostgreSQL database.
    pub location: StoreLocation,
    /// The key-encryption key, base64url, for a second replica.
    pub kek: String,
}

impl Harness {
    /// A control plane on a sled store in a temp dir.
    pub async fn new() -> Harness {
        Harness::with_store(StoreKind::Sled).await
    }

    /// A control plane on a store of `kind`: sled in `dir/data`, or a fresh
    /// PostgreSQL database.
    pub async fn with_store(kind: StoreKind) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let location = match kind {
            StoreKind::Sled => StoreLocation::Sled(dir.path().join("data")),
            StoreKind::Postgres => StoreLocation::Postgres(fresh_database("harness").await),
        };
        let store = location.open().await.unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let mut kek = [0u8; 32];
        getrandom::fill(&mut kek).unwrap();
        let kek = keys::b64::encode(kek);
        let init = ControlPlane::initialize(
            store.as_ref(),
            clock.as_ref(),
            &Kek::from_b64(&kek).unwrap(),
            "root-admin",
        )
        .await
        .unwrap();
        let cp = Arc::new(
            ControlPlane::open(
                store,
                clock.clone(),
                Kek::from_b64(&kek).unwrap(),
                "test-issuer".into(),
            )
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
            location,
            kek,
        }
    }

    /// A second control plane over the same PostgreSQL database, on the same
    /// clock, as another replica behind the load balancer would be.
    pub async fn replica(&self) -> Arc<ControlPlane> {
        let StoreLocation::Postgres(url) = &self.location else {
            panic!("only a PostgreSQL store has replicas");
        };
        let store: Arc<dyn Store> = Arc::new(PgStore::connect(url).await.unwrap());
        Arc::new(
            ControlPlane::open(
                store,
                self.clock.clone(),
                Kek::from_b64(&self.kek).unwrap(),
                "test-issuer".into(),
            )
            .await
            .unwrap(),
        )
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

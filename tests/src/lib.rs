//! Support for the tests that cross crates: a real control plane served on a
//! loopback port with a manual clock, simulated machines, and appliance agents
//! pointed at it; in [`procs`], the real binaries as separate processes with
//! days passing through libfaketime; and [`fault_proxy`], a loopback HTTP proxy
//! that injects network faults between an appliance and the control plane; and
//! [`postgres`], a fresh PostgreSQL database per test. The test modules are in
//! `tests/it/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod fault_proxy;
pub mod postgres;
pub mod procs;

use appliance::agent::{Agent, AgentConfig};
use appliance::eval::Policy;
use appliance::fingerprint::RawFacts;
use appliance::transport::{HttpTransport, Transport};
use control_plane::secrets::Kek;
use control_plane::service::ControlPlane;
use control_plane::store::sled_store::SledStore;
use keys::UnixTime;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;

/// 2027-01-15T08:00:00Z.
pub const T0: UnixTime = UnixTime(1_800_000_000);
pub const DAY: i64 = 86_400;

/// A control plane on 127.0.0.1 with a manual clock.
#[derive(Debug)]
pub struct Plane {
    pub url: String,
    pub cp: Arc<ControlPlane>,
    pub clock: Arc<control_plane::clock::ManualClock>,
    pub admin: String,
    /// The trust file appliances pin.
    pub trust: keys::TrustStore,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Plane {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Plane {
    pub async fn start() -> Plane {
        Plane::launch(None).await
    }

    /// A control plane serving HTTPS with a certificate for 127.0.0.1 issued by
    /// `ca`; its admin client trusts only `ca`.
    pub async fn start_tls(ca: &TestCa) -> Plane {
        Plane::launch(Some(ca)).await
    }

    async fn launch(ca: Option<&TestCa>) -> Plane {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(&dir.path().join("data")).unwrap());
        let clock = Arc::new(control_plane::clock::ManualClock::new(T0));
        let kek = Kek::generate().unwrap();
        let init = ControlPlane::initialize(store.as_ref(), clock.as_ref(), &kek, "admin")
            .await
            .unwrap();
        let cp = Arc::new(
            ControlPlane::open(store, clock.clone(), kek, "test".into())
                .await
                .unwrap(),
        );
        let trust = keys::TrustStore::from_file(&cp.trust_file().await.unwrap()).unwrap();
        // The tests drive many heartbeats a second on manual clocks; the limits
        // have their own tests in the control plane.
        let router = control_plane::http::router_with(
            cp.clone(),
            control_plane::http::Options {
                rate_limits: control_plane::http::rate_limit::RateLimits::OFF,
                ..control_plane::http::Options::default()
            },
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (url, http, server) = match ca {
            None => {
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let server = tokio::spawn(async move {
                    let _ =
                        control_plane::http::serve(listener, router, std::future::pending()).await;
                });
                (format!("http://{addr}"), reqwest::Client::new(), server)
            }
            Some(ca) => {
                let files = control_plane::http::tls::TlsFiles {
                    cert: dir.path().join("tls.crt"),
                    key: dir.path().join("tls.key"),
                };
                ca.issue_server_cert(&files.cert, &files.key);
                let tls = control_plane::http::tls::Tls::load(files).unwrap();
                let server = tokio::spawn(async move {
                    let _ = control_plane::http::tls::serve_tls(
                        listener,
                        router,
                        &tls,
                        std::future::pending(),
                    )
                    .await;
                });
                let http = reqwest::Client::builder()
                    .tls_certs_only([reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap()])
                    .build()
                    .unwrap();
                (format!("https://{addr}"), http, server)
            }
        };
        Plane {
            url,
            cp,
            clock,
            admin: init.token.expose().to_owned(),
            trust,
            http,
            server,
            _dir: dir,
        }
    }

    /// Moves the control plane's clock.
    pub fn advance(&self, secs: i64) {
        self.clock.advance(secs);
    }

    /// An admin API call; returns the status and JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("authorization", format!("Bearer {}", self.admin));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A support action that must succeed.
    pub async fn act(&self, id: &str, action: &str, body: Option<Value>) -> Value {
        let (status, value) = self
            .call("POST", &format!("/licenses/{id}/{action}"), body)
            .await;
        assert_eq!(status, 200, "{action}: {value}");
        value
    }

    /// Issues a license; returns (id, key).
    pub async fn issue(&self, customer: &str) -> (String, String) {
        let (status, body) = self
            .call(
                "POST",
                "/licenses",
                Some(json!({"customer": customer, "entitlements": {"product": "gateway"}})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["license"]["id"].as_str().unwrap().to_owned(),
            body["license_key"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn status_of(&self, id: &str) -> String {
        let (_, body) = self.call("GET", &format!("/licenses/{id}"), None).await;
        body["status"].as_str().unwrap_or_default().to_owned()
    }

    /// The audit actions recorded for a license.
    pub async fn audit_actions(&self, id: &str) -> Vec<String> {
        let (_, body) = self
            .call("GET", &format!("/audit?target={id}&limit=1000"), None)
            .await;
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["action"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A certificate authority made for one test, issuing server certificates for
/// 127.0.0.1 and localhost.
#[derive(Debug)]
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        TestCa {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// The CA certificate, as an appliance pins it.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes a server certificate for 127.0.0.1 and localhost, and its key.
    pub fn issue_server_cert(&self, cert: &Path, key: &Path) {
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = params.signed_by(&leaf_key, &self.issuer).unwrap();
        std::fs::write(cert, leaf.pem()).unwrap();
        std::fs::write(key, leaf_key.serialize_pem()).unwrap();
    }
}

/// A simulated machine: distinct hardware facts per seed.
pub fn machine(seed: u8) -> RawFacts {
    RawFacts {
        entries: [
            ("machine_id", format!("{seed:02x}").repeat(16)),
            (
                "product_uuid",
                format!("4c4c4544-0000-1000-8000-0000000000{seed:02x}"),
            ),
            ("macs", format!("02:00:00:00:00:{seed:02x}")),
            ("cpu", "Xeon x8".to_owned()),
            ("memory", "32".to_owned()),
            ("hostname", format!("box-{seed}")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    }
}

/// An appliance agent on `dir`, pinned to `trust`, with its own manual clock.
pub fn agent_with(
    dir: &Path,
    trust: &keys::TrustStore,
    transport: Arc<dyn Transport>,
    clock: Arc<appliance::clock::ManualClock>,
    machine: RawFacts,
) -> Agent {
    Agent::open(
        AgentConfig {
            data_dir: dir.to_owned(),
            trust: trust.clone(),
            policy: Policy::default(),
            version: "2.0.1".into(),
        },
        transport,
        clock,
        machine,
    )
}

/// An appliance agent speaking HTTP to `plane`, with a clock at the plane's time.
pub fn agent(
    plane: &Plane,
    dir: &Path,
    machine: RawFacts,
) -> (Agent, Arc<appliance::clock::ManualClock>) {
    use control_plane::clock::Clock as _;
    let clock = Arc::new(appliance::clock::ManualClock::new(plane.clock.now()));
    let transport = Arc::new(HttpTransport::new(None).unwrap());
    (
        agent_with(dir, &plane.trust, transport, clock.clone(), machine),
        clock,
    )
}

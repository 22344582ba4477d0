//! Faults between the appliance and the control plane (DESIGN.md "Tokens" →
//! Denials, Rollback; "Appliance" → Enforcement).
//!
//! A [`FaultTransport`] sits where a proxy or a man in the middle would: it
//! wraps the real HTTP transport to a [`Plane`], records every genuine answer,
//! and can instead answer with what a network or an attacker produces: unsigned
//! errors, garbage, lost or replayed responses, and tokens signed by keys the
//! appliance does or does not trust. The rule under test: only a verified denial
//! of the appliance's own request locks it; everything else is "offline" and the
//! lease runs on until its `exp`. The last tests drive `appliance::run::run`,
//! which starts, stops and supervises the licensed child process.

use appliance::agent::{Agent, Outcome, Status};
use appliance::clock::ManualClock;
use appliance::eval::{LockReason, State, format_time};
use appliance::run::{Exit, read_status_socket, run};
use appliance::transport::{HttpTransport, NetError, Response, Transport};
use e2e::{DAY, Plane, agent_with, machine};
use keys::proto::{DenialResponse, DeviceRequest, LeaseResponse, fingerprint_digest};
use keys::{
    Denial, DenialReason, Entitlements, KeyCert, KeyUse, Lease, LeaseStatus, PrivateKey, PublicKey,
    TrustStore, UnixTime,
};
use serde_json::json;
use std::future::Future;
use std::hash::{BuildHasher as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a poll waits for the state it expects before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// What the [`FaultTransport`] does with the next request.
#[derive(Debug, Clone)]
enum Mode {
    /// Forwards to the control plane and returns its answer.
    PassThrough,
    /// Forwards and records the genuine answer, but the appliance never sees it:
    /// a response lost on the way back.
    Swallow,
    /// A proxy's 401 with a JSON error body, unsigned.
    Unsigned401,
    /// A 500 from anything in between.
    Status500,
    /// 200 with random bytes.
    Garbage,
    /// 200 with valid JSON that is not a lease (a captive portal).
    GarbageJson200,
    /// 200 with a lease-shaped body whose token is junk.
    BogusLease200,
    /// 403 with a denial-shaped body whose token is junk.
    JunkDenial403,
    /// The body exceeded the cap (what the real transport says).
    Huge,
    /// The connection was reset mid-exchange.
    Reset,
    /// No answer in time.
    Timeout,
    /// The n-th genuine lease recorded (oldest first), replayed: signed, but it
    /// answers an older request and carries an older `seq`.
    ReplayOldLease(usize),
    /// A genuine signed denial that answered another request, replayed.
    WrongNonceDenial(Response),
    /// A denial echoing this request's nonce, for this license, signed by the
    /// forger's key under the forger's own root.
    ForeignDenialSameNonce,
    /// A denial echoing this request's nonce, presented with the genuine
    /// certificate chain and the genuine signing key's kid, but signed by the
    /// forger's key.
    SpoofedDenialSameNonce,
    /// A denial echoing this request's nonce, signed under the forger's root,
    /// for another license id.
    ForgedDenialFor(String),
    /// A lease for this request, signed under the forger's root.
    ForgedLease(LeaseForgery),
}

/// What a forged lease says, relative to the request it answers.
#[derive(Debug, Clone)]
struct LeaseForgery {
    seq: u64,
    /// `iat`: the request's `sent_at` when `None`.
    iat: Option<UnixTime>,
    tweak: Tweak,
}

/// Which claim of a forged lease does not fit the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tweak {
    Fits,
    OtherLicense,
    OtherDevice,
    OtherFingerprint,
    OtherNonce,
}

/// A signing key certified by a root of its own. Whether its tokens are
/// trusted depends only on whether an agent pins [`Forger::root`].
#[derive(Debug)]
struct Forger {
    root: PrivateKey,
    signing: PrivateKey,
    chain: Vec<String>,
}

impl Forger {
    fn new() -> Forger {
        let root = PrivateKey::generate().unwrap();
        let signing = PrivateKey::generate().unwrap();
        let cert = keys::sign(
            &root,
            &KeyCert {
                iss: "forger".into(),
                iat: UnixTime(0),
                nbf: UnixTime(0),
                exp: UnixTime(4_000_000_000),
                jti: "forged-cert".into(),
                kid: signing.kid().to_string(),
                public: signing.public().to_b64(),
                key_use: KeyUse::Lease,
                pop: None,
            },
        )
        .unwrap();
        Forger {
            root,
            signing,
            chain: vec![cert],
        }
    }

    fn root(&self) -> PublicKey {
        self.root.public().clone()
    }

    fn denial_claims(request: &DeviceRequest, sub: &str) -> Denial {
        let iat = UnixTime(request.sent_at);
        Denial {
            iss: "forger".into(),
            sub: sub.to_owned(),
            iat,
            nbf: iat,
            exp: iat.plus(3600),
            jti: format!("forged-denial-{}", request.counter),
            reason: DenialReason::Revoked,
            nonce: request.nonce.clone(),
        }
    }

    fn denial(&self, request: &DeviceRequest, sub: &str) -> Response {
        let token = keys::sign(&self.signing, &Self::denial_claims(request, sub)).unwrap();
        denial_response(token, self.chain.clone())
    }

    /// A denial whose header names the genuine signing key and which travels
    /// with the genuine chain, but whose signature is the forger's.
    fn spoofed_denial(&self, request: &DeviceRequest, genuine: &LeaseResponse) -> Response {
        let genuine_kid = keys::inspect(&genuine.lease).unwrap().header["kid"]
            .as_str()
            .unwrap()
            .to_owned();
        let header = json!({"alg": "EdDSA", "typ": "denial+jwt", "kid": genuine_kid});
        let claims = Self::denial_claims(request, &request.license_id);
        let mut token = keys::b64::encode(header.to_string());
        token.push('.');
        token.push_str(&keys::b64::encode(serde_json::to_vec(&claims).unwrap()));
        let signature = self.signing.sign_bytes(token.as_bytes());
        token.push('.');
        token.push_str(&keys::b64::encode(signature));
        denial_response(token, genuine.chain.clone())
    }

    fn lease(&self, request: &DeviceRequest, forgery: &LeaseForgery) -> Response {
        let iat = forgery.iat.unwrap_or(UnixTime(request.sent_at));
        let other = |tweak: Tweak, ours: &str| {
            if forgery.tweak == tweak {
                format!("{ours}-not-ours")
            } else {
                ours.to_owned()
            }
        };
        let claims = Lease {
            iss: "forger".into(),
            sub: other(Tweak::OtherLicense, &request.license_id),
            iat,
            nbf: iat,
            exp: iat.plus(14 * DAY),
            jti: format!("forged-lease-{}", request.counter),
            seq: forgery.seq,
            status: LeaseStatus::Active,
            grace_expires_at: None,
            fp: other(
                Tweak::OtherFingerprint,
                &fingerprint_digest(&request.components),
            ),
            dev: if forgery.tweak == Tweak::OtherDevice {
                PrivateKey::generate().unwrap().public().to_b64()
            } else {
                request.device_key.clone()
            },
            cust: "acme".into(),
            ent: Entitlements {
                product: "gateway".into(),
                ..Entitlements::default()
            },
            hb: 60,
            offline: u32::try_from(14 * DAY).unwrap(),
            nonce: other(Tweak::OtherNonce, &request.nonce),
        };
        let body = LeaseResponse {
            lease: keys::sign(&self.signing, &claims).unwrap(),
            chain: self.chain.clone(),
            revoked_kids: Vec::new(),
            heartbeat_interval_secs: 60,
        };
        Response {
            status: 200,
            body: serde_json::to_vec(&body).unwrap(),
        }
    }
}

fn denial_response(token: String, chain: Vec<String>) -> Response {
    let body = DenialResponse {
        error: "revoked".into(),
        message: "license denied: revoked".into(),
        denial: token,
        chain,
        revoked_kids: Vec::new(),
    };
    Response {
        status: 403,
        body: serde_json::to_vec(&body).unwrap(),
    }
}

/// Bytes that are neither JSON nor anything else.
fn random_bytes(len: usize) -> Vec<u8> {
    let state = std::collections::hash_map::RandomState::new();
    (0..len)
        .map(|i| {
            let mut hasher = state.build_hasher();
            hasher.write_usize(i);
            hasher.finish().to_le_bytes()[0]
        })
        .collect()
}

/// The real transport with a switch in front of it.
#[derive(Debug)]
struct FaultTransport {
    real: HttpTransport,
    mode: Mutex<Mode>,
    /// Every genuine exchange, oldest first: the request and the control plane's answer.
    recorded: Mutex<Vec<(DeviceRequest, Response)>>,
    forger: Forger,
}

impl FaultTransport {
    fn new() -> FaultTransport {
        FaultTransport {
            real: HttpTransport::new(None).unwrap(),
            mode: Mutex::new(Mode::PassThrough),
            recorded: Mutex::new(Vec::new()),
            forger: Forger::new(),
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn recorded_with_status(&self, wanted: &[u16]) -> Vec<Response> {
        self.recorded
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, r)| wanted.contains(&r.status))
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// The genuine leases seen so far, oldest first.
    fn leases(&self) -> Vec<Response> {
        self.recorded_with_status(&[200])
    }

    /// The genuine signed denials seen so far, oldest first.
    fn denials(&self) -> Vec<Response> {
        self.recorded_with_status(&[401, 403])
    }

    async fn forward(
        &self,
        url: &str,
        bearer: &str,
        body: Vec<u8>,
        request: DeviceRequest,
    ) -> Result<Response, NetError> {
        let response = self.real.post_json(url, bearer, body).await?;
        self.recorded
            .lock()
            .unwrap()
            .push((request, response.clone()));
        Ok(response)
    }
}

#[async_trait::async_trait]
impl Transport for FaultTransport {
    async fn post_json(
        &self,
        url: &str,
        bearer: &str,
        body: Vec<u8>,
    ) -> Result<Response, NetError> {
        let request: DeviceRequest =
            serde_json::from_slice(&body).expect("the agent sends a signed device request");
        let mode = self.mode.lock().unwrap().clone();
        let answer = |status: u16, body: &[u8]| {
            Ok(Response {
                status,
                body: body.to_vec(),
            })
        };
        match mode {
            Mode::PassThrough => self.forward(url, bearer, body, request).await,
            Mode::Swallow => {
                self.forward(url, bearer, body, request).await?;
                Err(NetError::Timeout)
            }
            Mode::Unsigned401 => answer(401, br#"{"error":"unauthenticated","message":"no"}"#),
            Mode::Status500 => answer(500, br#"{"error":"internal","message":"oops"}"#),
            Mode::Garbage => answer(200, &random_bytes(512)),
            Mode::GarbageJson200 => answer(
                200,
                br#"{"status":"ok","message":"Welcome to the guest network","items":[1,2,3]}"#,
            ),
            Mode::BogusLease200 => answer(
                200,
                br#"{"lease":"a.b.c","chain":["x.y.z"],"revoked_kids":[],"heartbeat_interval_secs":60}"#,
            ),
            Mode::JunkDenial403 => answer(
                403,
                br#"{"error":"revoked","message":"license denied: revoked","denial":"a.b.c","chain":["x.y.z"],"revoked_kids":[]}"#,
            ),
            Mode::Huge => Err(NetError::TooLarge),
            Mode::Reset => Err(NetError::Io("connection reset".into())),
            Mode::Timeout => Err(NetError::Timeout),
            Mode::ReplayOldLease(n) => Ok(self.leases()[n].clone()),
            Mode::WrongNonceDenial(denial) => Ok(denial),
            Mode::ForeignDenialSameNonce => Ok(self.forger.denial(&request, &request.license_id)),
            Mode::SpoofedDenialSameNonce => {
                let genuine: LeaseResponse = serde_json::from_slice(&self.leases()[0].body).unwrap();
                Ok(self.forger.spoofed_denial(&request, &genuine))
            }
            Mode::ForgedDenialFor(sub) => Ok(self.forger.denial(&request, &sub)),
            Mode::ForgedLease(forgery) => Ok(self.forger.lease(&request, &forgery)),
        }
    }
}

/// An agent whose every request goes through a [`FaultTransport`].
struct Rig {
    agent: Agent,
    clock: Arc<ManualClock>,
    fault: Arc<FaultTransport>,
    dir: tempfile::TempDir,
}

fn new_rig(plane: &Plane, seed: u8) -> Rig {
    rig_trusting(plane, seed, |_| plane.trust.clone())
}

/// A rig whose agent pins what `trust` returns, given the forger's root.
fn rig_trusting(plane: &Plane, seed: u8, trust: impl FnOnce(PublicKey) -> TrustStore) -> Rig {
    use control_plane::clock::Clock as _;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(plane.clock.now()));
    let fault = Arc::new(FaultTransport::new());
    let trust = trust(fault.forger.root());
    let agent = agent_with(
        dir.path(),
        &trust,
        fault.clone(),
        clock.clone(),
        machine(seed),
    );
    Rig {
        agent,
        clock,
        fault,
        dir,
    }
}

/// Time passes for the control plane and the appliance alike.
fn tick(plane: &Plane, clock: &ManualClock, secs: i64) {
    plane.advance(secs);
    clock.advance(secs);
}

/// Issues a license and activates the rig's agent on it; returns the license id.
async fn activated(plane: &Plane, rig: &Rig, customer: &str) -> String {
    let (id, key) = plane.issue(customer).await;
    rig.agent.activate(&plane.url, &id, &key).await.unwrap();
    id
}

async fn renew(agent: &Agent) -> u64 {
    match agent.heartbeat_once().await {
        Outcome::Renewed { seq, .. } => seq,
        other => panic!("expected a renewal, got {other:?}"),
    }
}

/// A heartbeat that must fail without consequence: offline, with `why` in the
/// reason and in `last_error`, the same lease kept, and the service running.
async fn offline_through(agent: &Agent, why: &str, context: &str) -> Status {
    let before = agent.status();
    let outcome = agent.heartbeat_once().await;
    assert!(
        matches!(&outcome, Outcome::Offline(reason) if reason.contains(why)),
        "{context}: expected offline ({why}), got {outcome:?}"
    );
    let status = agent.check();
    assert_eq!(
        status.lease_seq, before.lease_seq,
        "{context}: the lease changed"
    );
    assert_eq!(
        status.lease_expires_at, before.lease_expires_at,
        "{context}: the lease changed"
    );
    assert_eq!(
        status.last_success, before.last_success,
        "{context}: counted as a success"
    );
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains(why)),
        "{context}: last_error {:?} does not say {why:?}",
        status.last_error
    );
    status
}

/// The faults no signature stands behind, each with what the agent reports.
/// They need nothing but a genuine lease recorded earlier.
fn unsigned_faults() -> Vec<(Mode, &'static str)> {
    vec![
        (Mode::Unsigned401, "unsigned status 401"),
        (Mode::Status500, "unsigned status 500"),
        (Mode::Garbage, "status 200 without a lease"),
        (Mode::GarbageJson200, "status 200 without a lease"),
        (Mode::BogusLease200, "a lease was refused"),
        (Mode::JunkDenial403, "an unverifiable denial was ignored"),
        (Mode::Huge, "64 KiB"),
        (Mode::Reset, "connection reset"),
        (Mode::Timeout, "did not answer in time"),
        (Mode::Swallow, "did not answer in time"),
        (Mode::ReplayOldLease(0), "another request (nonce)"),
        (
            Mode::ForeignDenialSameNonce,
            "an unverifiable denial was ignored",
        ),
        (
            Mode::SpoofedDenialSameNonce,
            "an unverifiable denial was ignored",
        ),
    ]
}

/// Polls `probe` until it yields, failing the test after [`PATIENCE`].
async fn poll<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn alive(pid: &str) -> bool {
    std::process::Command::new("kill")
        .args(["-0", pid])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[tokio::test]
async fn unsigned_failures_never_lock_inside_the_lease() {
    let plane = Plane::start().await;
    let rig = new_rig(&plane, 1);
    let (agent, clock, fault) = (&rig.agent, &rig.clock, &rig.fault);
    activated(&plane, &rig, "acme").await;
    tick(&plane, clock, 60);
    renew(agent).await;
    let last_success = agent.status().last_success.unwrap();
    let locks_at = last_success.plus(14 * DAY);
    let faults = unsigned_faults();

    // Each fault alone, a minute apart: the service runs on its lease.
    for (mode, why) in &faults {
        fault.set(mode.clone());
        tick(&plane, clock, 60);
        let status = offline_through(agent, why, &format!("{mode:?}")).await;
        assert!(
            matches!(status.state, State::Active { .. } | State::Offline { .. }),
            "{mode:?}: {status:?}"
        );
        assert!(status.runs, "{mode:?}: {status:?}");
    }

    // Then 13 days in which every heartbeat fails, one fault after another.
    let mut faults_in_turn = faults.iter().cycle();
    let mut elapsed = i64::try_from(faults.len()).unwrap() * 60;
    let mut step = |to: i64| {
        let secs = to - elapsed;
        elapsed = to;
        tick(&plane, clock, secs);
        let (mode, why) = faults_in_turn.next().unwrap();
        fault.set(mode.clone());
        (mode, *why)
    };
    for day in 1..=13 {
        let (mode, why) = step(day * DAY);
        let context = format!("day {day}, {mode:?}");
        let status = offline_through(agent, why, &context).await;
        assert_eq!(
            status.state,
            State::Offline {
                since: last_success,
                locks_at
            },
            "{context}"
        );
        assert!(status.runs, "{context}");
    }
    let banner = agent.check().banner.unwrap();
    assert!(banner.contains(&format_time(locks_at)), "{banner}");
    assert!(banner.contains("for 13 d 0 h"), "{banner}");

    // The last second of the window still runs; the first one after does not.
    let (mode, why) = step(14 * DAY - 1);
    let status = offline_through(agent, why, &format!("14 d - 1 s, {mode:?}")).await;
    assert!(status.runs, "{status:?}");
    let (mode, why) = step(14 * DAY + 1);
    let status = offline_through(agent, why, &format!("14 d + 1 s, {mode:?}")).await;
    assert_eq!(
        status.state,
        State::Locked {
            reason: LockReason::Expired
        }
    );
    assert!(!status.runs);
    assert_eq!(
        status.banner.as_deref(),
        Some("License expired. Contact your administrator to restore service.")
    );

    // Contact again: the next heartbeat renews and the box runs.
    fault.set(Mode::PassThrough);
    tick(&plane, clock, 60);
    renew(agent).await;
    let status = agent.check();
    assert!(matches!(status.state, State::Active { .. }), "{status:?}");
    assert_eq!(status.last_error, None);
}

#[tokio::test]
async fn a_replayed_older_lease_is_refused() {
    let plane = Plane::start().await;
    let rig = new_rig(&plane, 1);
    let (clock, fault) = (rig.clock.clone(), rig.fault.clone());
    activated(&plane, &rig, "acme").await;
    let mut newest = 0;
    for _ in 0..4 {
        tick(&plane, &clock, 60);
        newest = renew(&rig.agent).await;
    }
    assert_eq!(rig.agent.status().lease_seq, Some(newest));
    let recorded = fault.leases().len();
    assert_eq!(recorded, 5, "the activation and four heartbeats");

    // Every genuine lease seen so far, the newest included, answered an older request.
    for n in 0..recorded {
        fault.set(Mode::ReplayOldLease(n));
        tick(&plane, &clock, 60);
        let status =
            offline_through(&rig.agent, "another request (nonce)", &format!("lease {n}")).await;
        assert_eq!(status.lease_seq, Some(newest));
        assert!(status.runs, "{status:?}");
    }

    // What was stored on disk is the newest lease too.
    let Rig {
        agent, dir, clock, ..
    } = rig;
    drop(agent);
    let agent = agent_with(
        dir.path(),
        &plane.trust,
        fault.clone(),
        clock.clone(),
        machine(1),
    );
    let status = agent.check();
    assert_eq!(status.lease_seq, Some(newest), "{status:?}");
    assert!(status.runs, "{status:?}");

    // And the control plane's next lease is accepted.
    fault.set(Mode::PassThrough);
    tick(&plane, &clock, 60);
    assert!(renew(&agent).await > newest);
}

#[tokio::test]
async fn a_lease_from_a_trusted_key_must_answer_our_request_and_not_roll_back() {
    // The agent also pins the forger's root: these leases verify, so only the
    // binding and rollback checks stand between them and the store.
    let plane = Plane::start().await;
    let rig = rig_trusting(&plane, 1, |forger| {
        TrustStore::new(plane.trust.roots().cloned().chain([forger]))
    });
    let (agent, clock, fault) = (&rig.agent, &rig.clock, &rig.fault);
    activated(&plane, &rig, "acme").await;
    for _ in 0..3 {
        tick(&plane, clock, 60);
        renew(agent).await;
    }
    let held = agent.status().lease_seq.unwrap();
    assert_eq!(held, 4);
    // The held lease's iat: the time of the last success.
    let held_iat = agent.status().last_success.unwrap();
    let lease = |seq, iat, tweak| Mode::ForgedLease(LeaseForgery { seq, iat, tweak });
    let cases = [
        // DESIGN.md "Rollback": a lower seq, or an older iat, is refused.
        (lease(held - 2, None, Tweak::Fits), "an older lease"),
        (
            lease(held + 1, Some(held_iat.plus(-1)), Tweak::Fits),
            "an older lease",
        ),
        // A lease must answer our request, for our license, device and hardware.
        (
            lease(held + 1, None, Tweak::OtherNonce),
            "another request (nonce)",
        ),
        (
            lease(held + 1, None, Tweak::OtherLicense),
            "another license",
        ),
        (
            lease(held + 1, None, Tweak::OtherDevice),
            "another device key",
        ),
        (
            lease(held + 1, None, Tweak::OtherFingerprint),
            "another fingerprint",
        ),
    ];
    for (mode, why) in cases {
        fault.set(mode.clone());
        tick(&plane, clock, 60);
        let status = offline_through(agent, why, &format!("{mode:?}")).await;
        assert_eq!(status.lease_seq, Some(held));
    }
    // A denial from the trusted key for another license is ignored as well.
    fault.set(Mode::ForgedDenialFor("lic_someone_else".into()));
    tick(&plane, clock, 60);
    let status = offline_through(agent, "another license", "a denial for another license").await;
    assert!(status.runs, "{status:?}");

    // The control: the same forger's lease that fits is taken, so the refusals
    // above were the checks at work and not an untrusted signature.
    fault.set(lease(held + 1, None, Tweak::Fits));
    tick(&plane, clock, 60);
    assert_eq!(renew(agent).await, held + 1);
}

#[tokio::test]
async fn a_denial_for_another_request_is_ignored() {
    let plane = Plane::start().await;
    let rig = new_rig(&plane, 1);
    let (agent, clock, fault) = (&rig.agent, &rig.clock, &rig.fault);
    let id = activated(&plane, &rig, "acme").await;
    tick(&plane, clock, 60);
    renew(agent).await;

    // A genuine denial for another license: a throwaway box, revoked with no grace.
    let other = new_rig(&plane, 2);
    let other_id = activated(&plane, &other, "globex").await;
    plane
        .act(&other_id, "revoke", Some(json!({"grace_days": 0})))
        .await;
    assert_eq!(
        other.agent.heartbeat_once().await,
        Outcome::Denied(LockReason::Expired)
    );
    let foreign = other.fault.denials().pop().unwrap();

    // A genuine denial for OUR license, answering one of our earlier requests:
    // captured on the way while the license was briefly revoked, then reinstated.
    plane
        .act(&id, "revoke", Some(json!({"grace_days": 0})))
        .await;
    fault.set(Mode::Swallow);
    tick(&plane, clock, 60);
    offline_through(agent, "did not answer in time", "swallowed denial").await;
    plane.act(&id, "reinstate", None).await;
    let ours = fault.denials().pop().unwrap();
    assert_eq!(ours.status, 403);
    let stolen: DenialResponse = serde_json::from_slice(&ours.body).unwrap();
    assert_eq!(stolen.error, "expired");
    fault.set(Mode::PassThrough);
    tick(&plane, clock, 60);
    let held = renew(agent).await;

    for (name, denial) in [("another license's", foreign), ("our own older", ours)] {
        for status in [403, 401] {
            fault.set(Mode::WrongNonceDenial(Response {
                status,
                body: denial.body.clone(),
            }));
            tick(&plane, clock, 60);
            let context = format!("{name} denial as {status}");
            let status = offline_through(
                agent,
                "an unverifiable denial was ignored: the denial answers another request (nonce)",
                &context,
            )
            .await;
            assert!(status.runs, "{context}: {status:?}");
            assert_eq!(status.lease_seq, Some(held), "{context}");
        }
    }

    fault.set(Mode::PassThrough);
    tick(&plane, clock, 60);
    renew(agent).await;
    assert!(matches!(agent.check().state, State::Active { .. }));
}

#[tokio::test]
async fn a_denial_from_an_untrusted_key_is_ignored() {
    let plane = Plane::start().await;
    let rig = new_rig(&plane, 1);
    let (agent, clock, fault) = (&rig.agent, &rig.clock, &rig.fault);
    activated(&plane, &rig, "acme").await;
    tick(&plane, clock, 60);
    let held = renew(agent).await;

    // Our nonce and our license id, but the signature is not the control plane's:
    // under a root of its own, or under the genuine chain and kid.
    for mode in [Mode::ForeignDenialSameNonce, Mode::SpoofedDenialSameNonce] {
        fault.set(mode.clone());
        tick(&plane, clock, 60);
        let status = offline_through(
            agent,
            "an unverifiable denial was ignored",
            &format!("{mode:?}"),
        )
        .await;
        assert!(
            matches!(status.state, State::Active { .. }),
            "{mode:?}: {status:?}"
        );
        assert_eq!(status.lease_seq, Some(held));
    }

    fault.set(Mode::PassThrough);
    tick(&plane, clock, 60);
    assert!(renew(agent).await > held);
}

#[tokio::test]
async fn a_genuine_signed_denial_locks() {
    let plane = Plane::start().await;
    let rig = new_rig(&plane, 1);
    let (agent, clock) = (&rig.agent, &rig.clock);
    let id = activated(&plane, &rig, "acme").await;
    tick(&plane, clock, 60);
    renew(agent).await;

    plane
        .act(&id, "revoke", Some(json!({"grace_days": 0})))
        .await;
    tick(&plane, clock, 60);
    assert_eq!(
        agent.heartbeat_once().await,
        Outcome::Denied(LockReason::Expired)
    );
    let status = agent.check();
    assert_eq!(
        status.state,
        State::Locked {
            reason: LockReason::Expired
        }
    );
    assert!(!status.runs);
    assert_eq!(
        status.banner.as_deref(),
        Some("License expired. Contact your administrator to restore service.")
    );
    assert_eq!(status.lease_seq, None, "the lease goes with the lock");

    // A locked appliance that is reinstated resumes on its next heartbeat.
    plane.act(&id, "reinstate", None).await;
    tick(&plane, clock, 60);
    renew(agent).await;
    let status = agent.check();
    assert!(matches!(status.state, State::Active { .. }), "{status:?}");
    assert!(status.runs);
    assert_eq!(status.banner, None);
}

/// A child that writes its pid to `dir/child.pid` and then waits to be stopped.
fn child_command(dir: &Path) -> (Vec<String>, PathBuf) {
    let pid_file = dir.join("child.pid");
    let script = format!("echo $$ > '{}'; exec sleep 600", pid_file.display());
    (vec!["sh".into(), "-c".into(), script], pid_file)
}

async fn child_pid(pid_file: &Path) -> String {
    poll("the child to start", || async {
        let text = std::fs::read_to_string(pid_file).ok()?;
        let pid = text.trim();
        pid.parse::<u32>().is_ok().then(|| pid.to_owned())
    })
    .await
}

async fn gone(pid: &str) {
    poll("the child to stop", || async {
        (!alive(pid)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_supervises_and_stops_the_child() {
    let plane = Plane::start().await;
    let rig = new_rig(&plane, 1);
    activated(&plane, &rig, "acme").await;
    let work = tempfile::tempdir().unwrap();
    let (command, pid_file) = child_command(work.path());
    let socket = work.path().join("status.sock");
    let agent = Arc::new(rig.agent);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(run(
        agent.clone(),
        Some(command),
        Some(socket.clone()),
        async move {
            let _ = stopped.await;
        },
    ));

    let pid = child_pid(&pid_file).await;
    assert!(alive(&pid));
    let status = poll("the status socket", || read_status_socket(&socket)).await;
    assert_eq!(status["state"], "active", "{status}");
    assert_eq!(status["runs"], true, "{status}");

    stop.send(()).unwrap();
    let exit = tokio::time::timeout(PATIENCE, running)
        .await
        .expect("run stops when asked")
        .unwrap();
    assert_eq!(exit, Exit::Stopped);
    gone(&pid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stops_the_child_when_the_lease_runs_out() {
    // The loop checks the lease every 10 s between heartbeats, so this test
    // waits up to that long in real time.
    let plane = Plane::start().await;
    let rig = new_rig(&plane, 1);
    activated(&plane, &rig, "acme").await;
    let work = tempfile::tempdir().unwrap();
    let (command, pid_file) = child_command(work.path());
    let socket = work.path().join("status.sock");
    let agent = Arc::new(rig.agent);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(run(
        agent.clone(),
        Some(command),
        Some(socket.clone()),
        async move {
            let _ = stopped.await;
        },
    ));
    let pid = child_pid(&pid_file).await;

    // Fifteen days without contact (the next heartbeat is a minute away).
    tick(&plane, &rig.clock, 15 * DAY);
    gone(&pid).await;
    let status = poll("the locked status", || async {
        let status = read_status_socket(&socket).await?;
        (status["state"] == "locked").then_some(status)
    })
    .await;
    assert_eq!(status["reason"], "expired", "{status}");
    assert!(!running.is_finished(), "with a child, run keeps going");

    stop.send(()).unwrap();
    let exit = tokio::time::timeout(PATIENCE, running)
        .await
        .expect("run stops when asked")
        .unwrap();
    assert_eq!(exit, Exit::Stopped);
}

#[tokio::test]
async fn run_without_a_child_exits_when_locked() {
    let plane = Plane::start().await;
    let rig = new_rig(&plane, 1);
    let id = activated(&plane, &rig, "acme").await;
    plane
        .act(&id, "revoke", Some(json!({"grace_days": 0})))
        .await;
    tick(&plane, &rig.clock, 60);

    let exit = tokio::time::timeout(
        Duration::from_secs(30),
        run(Arc::new(rig.agent), None, None, std::future::pending()),
    )
    .await
    .expect("run exits on the first denied heartbeat");
    let Exit::Locked(status) = exit else {
        panic!("expected a locked exit, got {exit:?}");
    };
    assert_eq!(
        status.state,
        State::Locked {
            reason: LockReason::Expired
        }
    );
    assert!(!status.runs);
}

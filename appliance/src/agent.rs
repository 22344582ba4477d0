//! The agent: activation, heartbeats, clock checks and the state they lead to.
//!
//! [`Agent::heartbeat_once`] is one round trip, called by tests directly and by
//! the run loop (STYLE.md "Background loops split in two"). Every decision the
//! agent takes rests on what verified: a lease is stored only as a token that
//! verified against the pinned roots and answers our own nonce, and a lock from
//! the control plane is taken only from a signed denial of our own request
//! (DESIGN.md "Denials"). Anything else, whatever its status code, means
//! "offline", and the lease runs on.
//!
//! Time: the agent's "now" is the wall clock plus an offset learned from the
//! `iat` of the last lease (signed, and bound to our request by its nonce, so it
//! is fresh). A good heartbeat therefore repairs a wrong clock. Between
//! heartbeats, the high-water mark and a comparison with monotonic time catch a
//! clock set back; the lock that causes lasts until a heartbeat succeeds.

use crate::clock::Clock;
use crate::eval::{self, Facts, LockReason, Policy, State};
use crate::fingerprint::{self, RawFacts};
use crate::store::{Loaded, LocalStore, Record, StoredLease};
use crate::transport::{Response, Transport};
use keys::keyfile::{self, KdfParams, KeyRole, Passphrase};
use keys::proto::{
    Components, DenialResponse, DeviceRequest, LeaseResponse, RequestKind, fingerprint_digest,
};
use keys::{Denial, Kid, Lease, PrivateKey, TrustStore, UnixTime, Verified};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Another process holds the store (see `StoreError::Busy`).
    #[error("{0}")]
    Busy(String),
    #[error("this appliance is not activated: run `appliance activate` first")]
    NotActivated,
    #[error(
        "the local store is damaged ({0}); activate again while the license server is reachable"
    )]
    Damaged(String),
    #[error("{0}")]
    BadInput(String),
    #[error("the license server could not be used: {0}")]
    Offline(String),
    #[error("the license server refused: {}", .0.as_str())]
    Denied(LockReason),
    #[error("{0}")]
    Internal(String),
}

/// What one heartbeat achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A fresh lease was verified and stored.
    Renewed { seq: u64, exp: UnixTime },
    /// A verified denial of our request: locked.
    Denied(LockReason),
    /// No usable answer; the lease runs on.
    Offline(String),
    /// Nothing to heartbeat for.
    NotActivated,
}

/// How the agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub data_dir: PathBuf,
    /// The pinned roots (the vendor's trust file).
    pub trust: TrustStore,
    pub policy: Policy,
    /// The software version reported to the control plane.
    pub version: String,
}

/// A status report: the state, its banner, and the facts behind it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub state: State,
    pub runs: bool,
    pub banner: Option<String>,
    pub license_id: Option<String>,
    pub now: UnixTime,
    pub lease_expires_at: Option<UnixTime>,
    pub lease_seq: Option<u64>,
    pub last_success: Option<UnixTime>,
    pub last_attempt: Option<UnixTime>,
    pub last_error: Option<String>,
    pub heartbeat_interval_secs: u32,
}

struct Inner {
    /// The local store; `None` when sled could not open it (see `reset_damaged`).
    store: Option<LocalStore>,
    record: Record,
    /// The stored lease, verified when loaded or received.
    lease: Option<Verified<Lease>>,
    /// Why the store could not be used, if it could not.
    damaged: Option<String>,
    /// The store is held by another process: not damage, never reset.
    busy: Option<String>,
    /// (monotonic, corrected wall) when the agent started or last resynchronised.
    anchor: (Duration, UnixTime),
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("license_id", &self.record.license_id)
            .field("lease_seq", &self.lease.as_ref().map(|l| l.seq))
            .field("damaged", &self.damaged)
            .finish_non_exhaustive()
    }
}

/// The licensing agent. Embed it in a Rust product and watch [`Agent::watch`].
pub struct Agent {
    config: AgentConfig,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    machine: RawFacts,
    inner: Mutex<Inner>,
    state: watch::Sender<Status>,
}

impl std::fmt::Debug for Agent {
    // Not derived: the machine facts are the input of the machine secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("data_dir", &self.config.data_dir)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The key that seals this appliance's secrets to its machine.
fn machine_passphrase(machine: &RawFacts) -> Passphrase {
    Passphrase::new(keys::b64::encode(fingerprint::machine_secret(machine)).into_bytes())
}

fn random_nonce() -> Result<String, AgentError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|_| AgentError::Internal("random number generator failed".into()))?;
    Ok(keys::b64::encode(bytes))
}

/// Verifies a token and its chain as of the token's own `iat`: signature,
/// chain and revocations must be sound; whether it is still current is decided
/// elsewhere (by `eval`, against the corrected clock). Used for the stored lease,
/// a fresh lease and a denial alike.
fn verify_as_issued<T: keys::SignedBySigningKey>(
    trust: &TrustStore,
    token: &str,
    chain: &[String],
) -> Result<Verified<T>, String> {
    let iat = keys::inspect(token)
        .map_err(|e| e.to_string())?
        .claims
        .get("iat")
        .and_then(serde_json::Value::as_i64)
        .ok_or("the token has no iat")?;
    let chain: Vec<&str> = chain.iter().map(String::as_str).collect();
    let signer = trust
        .verify_chain_at(&chain, UnixTime(iat))
        .map_err(|e| e.to_string())?;
    trust
        .verify_at(token, &signer, UnixTime(iat))
        .map_err(|e| e.to_string())
}

/// Describes an unsigned answer for the log and `status`: its status and, when
/// the body says, its error code (`clone_suspected` tells support what to do).
/// Informational only: nothing unsigned changes what the agent does.
fn unsigned(status: u16, body: &[u8]) -> String {
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("error")
                .and_then(|e| e.as_str())
                .map(|e| e.chars().take(40).collect::<String>())
        })
        .filter(|c| c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'));
    match code {
        Some(code) => format!("unsigned status {status} ({code})"),
        None => format!("unsigned status {status}"),
    }
}

impl Agent {
    /// Opens the agent on its data directory. A damaged store does not fail
    /// this: the agent reports `locked(no_valid_lease)` until it is activated again.
    pub fn open(
        config: AgentConfig,
        transport: Arc<dyn Transport>,
        clock: Arc<dyn Clock>,
        machine: RawFacts,
    ) -> Agent {
        let mut busy = None;
        let (store, record, damaged) = match LocalStore::open(&config.data_dir) {
            Ok(store) => match store.load() {
                Loaded::Empty => (Some(store), Record::default(), None),
                Loaded::Ok(record) => (Some(store), *record, None),
                Loaded::Damaged(reason) => (Some(store), Record::default(), Some(reason)),
            },
            Err(e @ crate::store::StoreError::Busy { .. }) => {
                busy = Some(e.to_string());
                (None, Record::default(), None)
            }
            Err(e) => (None, Record::default(), Some(e.to_string())),
        };
        let now = clock.wall().plus(record.clock_offset);
        let mut inner = Inner {
            store,
            record,
            lease: None,
            damaged,
            busy,
            anchor: (clock.monotonic(), now),
        };
        inner.lease = Self::verify_stored(&config.trust, &inner.record);
        let initial = Self::status_of(&inner, &config, now);
        let (state, _) = watch::channel(initial);
        Agent {
            config,
            transport,
            clock,
            machine,
            inner: Mutex::new(inner),
            state,
        }
    }

    /// Re-verifies the stored lease against the pinned roots (and the kids the
    /// control plane revoked since), as of its own `iat`: the signature and chain
    /// must be sound; whether it is still current is for `eval`.
    fn verify_stored(pinned: &TrustStore, record: &Record) -> Option<Verified<Lease>> {
        let stored = record.lease.as_ref()?;
        let trust = Self::trust_with(pinned, &record.revoked_kids);
        let lease: Verified<Lease> = verify_as_issued(&trust, &stored.token, &stored.chain).ok()?;
        (Some(lease.sub.as_str()) == record.license_id.as_deref()).then_some(lease)
    }

    fn trust_with(pinned: &TrustStore, revoked: &[String]) -> TrustStore {
        let mut trust = pinned.clone();
        for kid in revoked {
            trust.revoke(Kid::new(kid.clone()));
        }
        trust
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, inner: &Inner) -> Result<(), AgentError> {
        match &inner.store {
            Some(store) => Ok(store.save(&inner.record)?),
            None => Err(AgentError::Damaged(
                inner.damaged.clone().unwrap_or_default(),
            )),
        }
    }

    /// The corrected wall time.
    fn now_of(&self, inner: &Inner) -> UnixTime {
        self.clock.wall().plus(inner.record.clock_offset)
    }

    fn facts(inner: &Inner) -> Facts {
        Facts {
            lease: inner.lease.clone(),
            lock: inner.record.lock,
            high_water: inner.record.high_water,
            last_success: inner.record.last_success,
            activated: inner.record.device_key.is_some() || inner.damaged.is_some(),
        }
    }

    fn status_of(inner: &Inner, config: &AgentConfig, now: UnixTime) -> Status {
        let state = eval::evaluate(&Self::facts(inner), now, config.policy);
        Status {
            state,
            runs: state.runs(),
            banner: eval::banner(state, now),
            license_id: inner.record.license_id.clone(),
            now,
            lease_expires_at: inner.lease.as_ref().map(|l| l.exp),
            lease_seq: inner.lease.as_ref().map(|l| l.seq),
            last_success: inner.record.last_success,
            last_attempt: inner.record.last_attempt,
            last_error: inner
                .record
                .last_error
                .clone()
                .or_else(|| inner.damaged.clone())
                .or_else(|| inner.busy.clone()),
            heartbeat_interval_secs: inner.lease.as_ref().map_or(60, |l| l.hb),
        }
    }

    /// Subscribes to state changes (for products that embed the agent).
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.state.subscribe()
    }

    /// The current status, without any check or write.
    pub fn status(&self) -> Status {
        let inner = self.lock();
        Self::status_of(&inner, &self.config, self.now_of(&inner))
    }

    /// The periodic check: compares the clock with the high-water mark and with
    /// monotonic time, latches a clock-tamper lock, advances and saves the
    /// high-water mark, and publishes the state.
    pub fn check(&self) -> Status {
        let mut inner = self.lock();
        let now = self.now_of(&inner);
        let tolerance = self.config.policy.clock_tolerance_secs;
        // Monotonic time cannot be set back: the wall clock must have moved at
        // least as far as it since the anchor.
        let (mono0, wall0) = inner.anchor;
        let elapsed = self.clock.monotonic().saturating_sub(mono0).as_secs();
        let expected = wall0.plus(i64::try_from(elapsed).unwrap_or(i64::MAX));
        let set_back = now < expected.plus(-tolerance);
        let mut changed = false;
        let state = eval::evaluate(&Self::facts(&inner), now, self.config.policy);
        let tampered = set_back
            || state
                == (State::Locked {
                    reason: LockReason::ClockTamper,
                });
        if tampered && inner.record.lock.is_none() && inner.lease.is_some() {
            tracing::warn!(
                now = now.secs(),
                expected = expected.secs(),
                "the clock was set back: locked until a heartbeat succeeds"
            );
            inner.record.lock = Some(LockReason::ClockTamper);
            changed = true;
        }
        if inner.record.high_water.is_none_or(|hw| now > hw) && !tampered {
            inner.record.high_water = Some(now);
            changed = true;
        }
        if changed
            && inner.damaged.is_none()
            && let Err(e) = self.save(&inner)
        {
            tracing::error!(error = %e, "cannot save the local state");
        }
        let status = Self::status_of(&inner, &self.config, now);
        self.state.send_replace(status.clone());
        status
    }

    /// Activates online: binds this box to the license and stores the lease.
    /// Re-activating the same box is idempotent (same device key).
    pub async fn activate(
        &self,
        server: &str,
        license_id: &str,
        license_key: &str,
    ) -> Result<Status, AgentError> {
        let server = server.trim_end_matches('/').to_owned();
        if !(server.starts_with("https://") || server.starts_with("http://")) {
            return Err(AgentError::BadInput(
                "the server must be an http:// or https:// URL".into(),
            ));
        }
        let request = self.prepare(
            Some(server.clone()),
            license_id,
            license_key,
            RequestKind::Activate,
        )?;
        let url = format!("{server}/licenses/{license_id}/activate");
        match self.exchange(&url, license_key, &request).await {
            Outcome::Renewed { .. } => Ok(self.check()),
            Outcome::Denied(reason) => Err(AgentError::Denied(reason)),
            Outcome::Offline(why) => Err(AgentError::Offline(why)),
            Outcome::NotActivated => Err(AgentError::NotActivated),
        }
    }

    /// Prepares an activation request for an air-gapped box: the request to carry
    /// to the control plane's operator. [`Agent::install_activation_response`]
    /// takes the answer.
    pub fn activation_request(
        &self,
        license_id: &str,
        license_key: &str,
    ) -> Result<DeviceRequest, AgentError> {
        self.prepare(None, license_id, license_key, RequestKind::Activate)
    }

    /// Installs the answer to [`Agent::activation_request`].
    pub fn install_activation_response(&self, body: &[u8]) -> Result<Status, AgentError> {
        let nonce = self
            .lock()
            .record
            .pending_nonce
            .clone()
            .ok_or_else(|| AgentError::BadInput("no activation request is pending".into()))?;
        let response: LeaseResponse = serde_json::from_slice(body)
            .map_err(|e| AgentError::BadInput(format!("not an activation response: {e}")))?;
        match self.accept_lease(&response, &nonce) {
            Ok(_) => Ok(self.check()),
            Err(why) => Err(AgentError::BadInput(why)),
        }
    }

    /// Stores the license, creates the device key if needed, counts and signs a
    /// request. Everything is saved before the request leaves.
    fn prepare(
        &self,
        server: Option<String>,
        license_id: &str,
        license_key: &str,
        kind: RequestKind,
    ) -> Result<DeviceRequest, AgentError> {
        if license_id.is_empty() || license_id.len() > 128 || !license_key.starts_with("pk_") {
            return Err(AgentError::BadInput(
                "a license id and a pk_ license key are required".into(),
            ));
        }
        let mut inner = self.lock();
        if let Some(busy) = inner.busy.clone() {
            return Err(AgentError::Busy(busy));
        }
        if let Some(reason) = inner.damaged.clone() {
            // Activation is the way out of a damaged store: start afresh.
            self.reset_damaged(&mut inner, &reason)?;
        }
        let passphrase = machine_passphrase(&self.machine);
        let secret = fingerprint::machine_secret(&self.machine);
        let same_license = inner.record.license_id.as_deref() == Some(license_id);
        let device = match (&inner.record.device_key, same_license) {
            (Some(sealed), true) => match keyfile::open(sealed, &passphrase) {
                Ok(key) => key,
                Err(_) => {
                    return Err(AgentError::Damaged(
                        "the device key does not open on this machine".into(),
                    ));
                }
            },
            _ => {
                let key =
                    PrivateKey::generate().map_err(|e| AgentError::Internal(e.to_string()))?;
                inner.record = Record {
                    device_key: Some(
                        keyfile::seal(
                            &key,
                            KeyRole::Device,
                            &passphrase,
                            KdfParams::FOR_RANDOM_SECRETS,
                        )
                        .map_err(|e| AgentError::Internal(e.to_string()))?,
                    ),
                    high_water: inner.record.high_water,
                    revoked_kids: inner.record.revoked_kids.clone(),
                    ..Record::default()
                };
                inner.lease = None;
                key
            }
        };
        inner.record.license_id = Some(license_id.to_owned());
        if server.is_some() {
            inner.record.server = server;
        }
        inner.record.license_key_sealed = Some(
            keyfile::seal_blob(&secret, license_id.as_bytes(), license_key.as_bytes())
                .map_err(|e| AgentError::Internal(e.to_string()))?,
        );
        let request = self.sign_request(&mut inner, &device, license_key, kind)?;
        self.save(&inner)?;
        Ok(request)
    }

    /// Starts a fresh store in place of a damaged one. A store sled would not
    /// open is moved aside (`<dir>.damaged-<time>`, kept for support) first.
    fn reset_damaged(&self, inner: &mut Inner, reason: &str) -> Result<(), AgentError> {
        tracing::warn!(%reason, "starting a fresh local store");
        if inner.store.is_none() {
            let dir = &self.config.data_dir;
            let moved = crate::store::set_aside(dir, self.clock.wall()).map_err(|e| {
                AgentError::Damaged(format!("{reason}; moving it aside failed: {e}"))
            })?;
            tracing::warn!(moved = %moved.display(), "the damaged store was moved aside");
            std::fs::create_dir_all(dir)
                .map_err(|e| AgentError::Damaged(format!("recreating {}: {e}", dir.display())))?;
            inner.store = Some(LocalStore::open(dir)?);
        }
        inner.record = Record::default();
        inner.lease = None;
        self.save(inner)?;
        inner.damaged = None;
        Ok(())
    }

    /// Counts and signs a request; the caller saves before sending.
    fn sign_request(
        &self,
        inner: &mut Inner,
        device: &PrivateKey,
        license_key: &str,
        kind: RequestKind,
    ) -> Result<DeviceRequest, AgentError> {
        let license_id = inner
            .record
            .license_id
            .clone()
            .ok_or(AgentError::NotActivated)?;
        let now = self.now_of(inner);
        inner.record.counter += 1;
        inner.record.last_attempt = Some(now);
        let nonce = random_nonce()?;
        inner.record.pending_nonce = Some(nonce.clone());
        Ok(DeviceRequest::sign(
            kind,
            &license_id,
            license_key,
            self.components(&license_id),
            device,
            nonce,
            inner.record.counter,
            self.config.version.clone(),
            now.secs(),
        ))
    }

    fn components(&self, license_id: &str) -> Components {
        fingerprint::hashed(&self.machine, license_id)
    }

    /// One heartbeat: sign, send, verify the answer, store what verified.
    pub async fn heartbeat_once(&self) -> Outcome {
        type Prepared = (String, zeroize::Zeroizing<String>, DeviceRequest);
        let prepared = (|| -> Result<Prepared, AgentError> {
            let mut inner = self.lock();
            if let Some(busy) = inner.busy.clone() {
                return Err(AgentError::Busy(busy));
            }
            if inner.damaged.is_some() || inner.record.device_key.is_none() {
                return Err(AgentError::NotActivated);
            }
            let (Some(server), Some(license_id), Some(sealed_key), Some(sealed_device)) = (
                inner.record.server.clone(),
                inner.record.license_id.clone(),
                inner.record.license_key_sealed.clone(),
                inner.record.device_key.clone(),
            ) else {
                return Err(AgentError::NotActivated);
            };
            let secret = fingerprint::machine_secret(&self.machine);
            let key =
                keyfile::open_blob(&secret, license_id.as_bytes(), &sealed_key).map_err(|_| {
                    AgentError::Damaged("the license key does not open on this machine".into())
                })?;
            let key = zeroize::Zeroizing::new(
                String::from_utf8(key.to_vec())
                    .map_err(|_| AgentError::Damaged("bad license key".into()))?,
            );
            let device = keyfile::open(&sealed_device, &machine_passphrase(&self.machine))
                .map_err(|_| {
                    AgentError::Damaged("the device key does not open on this machine".into())
                })?;
            let request = self.sign_request(&mut inner, &device, &key, RequestKind::Heartbeat)?;
            self.save(&inner)?;
            Ok((
                format!("{server}/licenses/{license_id}/heartbeat"),
                key,
                request,
            ))
        })();
        let outcome = match prepared {
            Ok((url, key, request)) => self.exchange(&url, &key, &request).await,
            Err(AgentError::NotActivated) => Outcome::NotActivated,
            Err(e) => Outcome::Offline(e.to_string()),
        };
        self.check();
        outcome
    }

    /// Sends a request and acts on the answer.
    async fn exchange(&self, url: &str, license_key: &str, request: &DeviceRequest) -> Outcome {
        let body = match serde_json::to_vec(request) {
            Ok(body) => body,
            Err(e) => return Outcome::Offline(e.to_string()),
        };
        let outcome = match self.transport.post_json(url, license_key, body).await {
            Ok(response) => self.interpret(&response, &request.nonce),
            Err(e) => Outcome::Offline(e.to_string()),
        };
        if let Outcome::Offline(why) = &outcome {
            tracing::warn!(%why, "heartbeat failed; running on the stored lease");
            let mut inner = self.lock();
            inner.record.last_error = Some(why.clone());
            if let Err(e) = self.save(&inner) {
                tracing::error!(error = %e, "cannot save the local state");
            }
        }
        outcome
    }

    fn interpret(&self, response: &Response, nonce: &str) -> Outcome {
        match response.status {
            200 => match serde_json::from_slice::<LeaseResponse>(&response.body) {
                Ok(lease) => match self.accept_lease(&lease, nonce) {
                    Ok(outcome) => outcome,
                    Err(why) => Outcome::Offline(format!("a lease was refused: {why}")),
                },
                Err(_) => Outcome::Offline("status 200 without a lease".into()),
            },
            401 | 403 => match serde_json::from_slice::<DenialResponse>(&response.body) {
                Ok(denial) => match self.accept_denial(&denial, nonce) {
                    Ok(reason) => Outcome::Denied(reason),
                    Err(why) => {
                        Outcome::Offline(format!("an unverifiable denial was ignored: {why}"))
                    }
                },
                Err(_) => Outcome::Offline(unsigned(response.status, &response.body)),
            },
            other => Outcome::Offline(unsigned(other, &response.body)),
        }
    }

    /// Verifies and stores a lease that answers `nonce`.
    fn accept_lease(&self, response: &LeaseResponse, nonce: &str) -> Result<Outcome, String> {
        let mut inner = self.lock();
        let license_id = inner.record.license_id.clone().ok_or("not activated")?;
        // Revocations only ever add distrust (store.rs `revoked_kids`).
        let mut revoked = inner.record.revoked_kids.clone();
        for kid in &response.revoked_kids {
            if !revoked.contains(kid) && revoked.len() < 1024 {
                revoked.push(kid.clone());
            }
        }
        let trust = Self::trust_with(&self.config.trust, &revoked);
        // Our clock may be the thing that is wrong; the nonce proves freshness.
        let lease: Verified<Lease> = verify_as_issued(&trust, &response.lease, &response.chain)?;
        if lease.nonce != nonce {
            return Err("the lease answers another request (nonce)".into());
        }
        if lease.sub != license_id {
            return Err("the lease is for another license".into());
        }
        let device = inner
            .record
            .device_key
            .as_ref()
            .map(|k| k.public_b64().to_owned());
        if Some(&lease.dev) != device.as_ref() {
            return Err("the lease is for another device key".into());
        }
        if lease.fp != fingerprint_digest(&self.components(&license_id)) {
            return Err("the lease is for another fingerprint".into());
        }
        // DESIGN.md "Rollback": a lower seq or an older iat than the stored lease.
        if let Some(current) = &inner.lease {
            if lease.seq < current.seq {
                return Err(format!(
                    "an older lease (seq {} < {})",
                    lease.seq, current.seq
                ));
            }
            if lease.iat < current.iat {
                return Err(format!(
                    "an older lease (issued {} < {})",
                    lease.iat, current.iat
                ));
            }
        }
        // The lease's iat is the control plane's signed time at our request:
        // resynchronise the clock to it, and restart the clock checks from there.
        let wall = self.clock.wall();
        inner.record.clock_offset = lease.iat.secs() - wall.secs();
        inner.record.high_water = Some(lease.iat);
        inner.anchor = (self.clock.monotonic(), lease.iat);
        inner.record.lease = Some(StoredLease {
            token: response.lease.clone(),
            chain: response.chain.clone(),
        });
        inner.record.revoked_kids = revoked;
        inner.record.lock = None;
        inner.record.last_success = Some(lease.iat);
        inner.record.last_error = None;
        inner.record.pending_nonce = None;
        let outcome = Outcome::Renewed {
            seq: lease.seq,
            exp: lease.exp,
        };
        inner.lease = Some(lease);
        self.save(&inner).map_err(|e| e.to_string())?;
        Ok(outcome)
    }

    /// Verifies a denial of our request and locks on it.
    fn accept_denial(&self, response: &DenialResponse, nonce: &str) -> Result<LockReason, String> {
        let mut inner = self.lock();
        let license_id = inner.record.license_id.clone().ok_or("not activated")?;
        let trust = Self::trust_with(&self.config.trust, &inner.record.revoked_kids);
        let denial: Verified<Denial> = verify_as_issued(&trust, &response.denial, &response.chain)?;
        if denial.nonce != nonce {
            return Err("the denial answers another request (nonce)".into());
        }
        if denial.sub != license_id {
            return Err("the denial is for another license".into());
        }
        // A verified answer: its revoked kids count too (they only ever add).
        for kid in &response.revoked_kids {
            if !inner.record.revoked_kids.contains(kid) && inner.record.revoked_kids.len() < 1024 {
                inner.record.revoked_kids.push(kid.clone());
            }
        }
        let reason = LockReason::from_denial(denial.reason);
        tracing::warn!(
            reason = reason.as_str(),
            "the license server denied this appliance"
        );
        inner.record.lock = Some(reason);
        // The lease goes too, so the lock does not depend on one stored field.
        inner.record.lease = None;
        inner.lease = None;
        inner.record.last_error = Some(format!("denied: {}", reason.as_str()));
        inner.record.pending_nonce = None;
        self.save(&inner).map_err(|e| e.to_string())?;
        Ok(reason)
    }

    /// Why the store is unavailable because another process holds it, if it is.
    pub fn busy(&self) -> Option<String> {
        self.lock().busy.clone()
    }

    /// The device key's public half, if activated.
    pub fn device_public_key(&self) -> Option<String> {
        self.lock()
            .record
            .device_key
            .as_ref()
            .map(|k| k.public_b64().to_owned())
    }
}

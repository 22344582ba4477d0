//! The control plane's operations: what each API call does, over the store, the
//! clock and the signing key. The HTTP layer parses and authorizes; this module
//! decides and writes. Every state change and its audit record go to the store
//! in one `commit`.

use crate::clock::Clock;
use crate::domain::audit::{AuditEvent, AuditRecord};
use crate::domain::ids::{ApiToken, LicenseId, LicenseKey, UserId};
use crate::domain::license::{
    Action, Binding, License, REBOUND_DEVICES_KEPT, RETIRED_KEYS_KEPT, State, lease_expiry,
    transition,
};
use crate::domain::settings::{PolicyOverrides, Settings};
use crate::domain::user::{Permission, Role, User};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::secrets::Kek;
use crate::store::{
    AuditQuery, Change, KeyRecord, KeyState, LicenseQuery, LicenseWrite, Page, Store,
};
use keys::keyfile::KeyRole;
use keys::proto::{Components, DeviceRequest, RequestKind, fingerprint_digest, license_key_digest};
use keys::{
    Denial, DenialReason, Entitlements, KeyCert, KeyUse, Lease, LeaseStatus, PrivateKey, PublicKey,
    UnixTime,
};
use serde_json::json;
use std::sync::{Arc, RwLock};

mod console;
pub use console::{Login, SESSION_MAX_SECS, Session};

/// How many licenses one page of the sweep's scan examines: the scan holds a
/// tokio worker for a page (some 50 ms for 10,000 licenses on the benchmark
/// machine), and at most a page of due ids is kept.
const SWEEP_PAGE: usize = 10_000;
/// How many times a read-modify-write is retried when another writer got there first.
const CONFLICT_RETRIES: usize = 8;
/// How often a replica sharing its store with others reloads the signing key
/// from it, so a rotation, renewal or revocation made through another replica
/// reaches it (docs/operations.md "PostgreSQL and replicas").
pub const SIGNER_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a signed denial is valid: long enough to reach the appliance.
const DENIAL_TTL_SECS: i64 = 3600;
/// Validity of a signing-key certificate made by the online root.
const SIGNING_CERT_DAYS: i64 = 365;
/// A certificate with fewer days than this left is renewed.
const RENEW_BEFORE_DAYS: i64 = 60;

/// Who is acting, for permission checks and the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: String,
    pub name: String,
    /// `None` for the control plane itself and for appliances.
    pub role: Option<Role>,
    /// For customer users: the customer they may see.
    pub customer: Option<String>,
    pub ip: String,
}

impl Actor {
    pub fn user(user: &User, ip: String) -> Actor {
        Actor {
            id: user.id.to_string(),
            name: user.name.clone(),
            role: Some(user.role),
            customer: user.customer.clone(),
            ip,
        }
    }

    pub fn system() -> Actor {
        Actor {
            id: UserId::system().to_string(),
            name: "control-plane".into(),
            role: None,
            customer: None,
            ip: String::new(),
        }
    }

    fn appliance(license: &LicenseId, ip: &str) -> Actor {
        Actor {
            id: format!("appliance:{license}"),
            name: "appliance".into(),
            role: None,
            customer: None,
            ip: ip.to_owned(),
        }
    }

    pub fn allows(&self, permission: Permission) -> bool {
        self.role.is_some_and(|r| r.allows(permission))
    }

    fn event(&self, action: &str, target: &str, metadata: serde_json::Value) -> AuditEvent {
        AuditEvent {
            action: action.into(),
            target: target.into(),
            actor_id: self.id.clone(),
            actor_name: self.name.clone(),
            ip: self.ip.clone(),
            metadata,
        }
    }
}

/// The key that signs leases and denials, with its chain and the revoked kids.
#[derive(Debug)]
struct Signer {
    key: PrivateKey,
    chain: Vec<String>,
    revoked: Vec<String>,
}

/// What `issue` needs.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub customer: String,
    pub entitlements: Entitlements,
    pub subscription_ends_at: Option<UnixTime>,
    pub policy: PolicyOverrides,
}

/// Where a rebind moves a license.
#[derive(Debug, Clone)]
pub enum Rebind {
    /// To the box with these fingerprint components (its device key binds at activation).
    To(Components),
    /// To whichever box activates next.
    Unbind,
}

/// What the appliance is sent back.
#[derive(Debug, Clone)]
pub enum DeviceOutcome {
    /// A fresh lease.
    Lease(SignedResponse),
    /// A signed refusal; the HTTP status says which kind (401 invalid key, 403 otherwise).
    Denied {
        reason: DenialReason,
        response: SignedResponse,
    },
}

/// A lease or denial with what the appliance needs to verify it.
#[derive(Debug, Clone)]
pub struct SignedResponse {
    pub token: String,
    pub chain: Vec<String>,
    pub revoked_kids: Vec<String>,
    pub heartbeat_interval_secs: u32,
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SweepReport {
    pub examined: u64,
    pub expired: u64,
    pub suspended: u64,
}

/// A signing or root key as `GET /signing-keys` shows it.
#[derive(Debug, Clone)]
pub struct SigningKeyView {
    pub record: KeyRecord,
    pub public: String,
    /// When its (leaf) certificate ends.
    pub cert_expires_at: Option<UnixTime>,
    /// Licenses whose last lease this key signed and that has not expired.
    pub live_leases: u64,
}

/// What `init` created.
#[derive(Debug)]
pub struct Initialized {
    pub admin: User,
    pub token: ApiToken,
    pub root_kid: String,
    pub signing_kid: String,
}

/// The control plane.
#[derive(Debug)]
pub struct ControlPlane {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    kek: Kek,
    signer: RwLock<Arc<Signer>>,
    issuer: String,
    metrics: Metrics,
    sessions: console::Sessions,
}

/// The root's certificate for a signing key, valid for `SIGNING_CERT_DAYS`.
fn certify(root: &PrivateKey, signing: &PrivateKey, now: UnixTime) -> Result<String> {
    Ok(keys::sign(
        root,
        &KeyCert {
            iss: "control-plane-root".into(),
            iat: now,
            nbf: now,
            exp: now.plus(SIGNING_CERT_DAYS * 86_400),
            jti: random_id()?,
            kid: signing.kid().to_string(),
            public: signing.public().to_b64(),
            key_use: KeyUse::Lease,
            pop: None,
        },
    )?)
}

/// When a certificate chain stops verifying: the earliest `exp` of its
/// certificates (a chain through a root rotation ends with its root
/// certificate if that ends first). `None` for an empty chain.
fn chain_end(chain: &[String]) -> Option<UnixTime> {
    chain
        .iter()
        .filter_map(|cert| keys::inspect(cert).ok())
        .filter_map(|cert| cert.claims.get("exp").and_then(serde_json::Value::as_i64))
        .min()
        .map(UnixTime)
}

/// The sealed private half of a key the control plane signs with.
fn sealed_of(record: &KeyRecord) -> Result<&keys::keyfile::SealedKey> {
    record.sealed.as_ref().ok_or_else(|| {
        Error::KeyState(format!(
            "the private half of key {} is held offline",
            record.kid
        ))
    })
}

/// Where the root key lives (docs/key-ceremony.md).
#[derive(Debug)]
pub enum RootSetup {
    /// The control plane generates the root and holds it sealed under the KEK,
    /// so it certifies new signing keys itself.
    Online,
    /// The roots stay on an air-gapped machine; the control plane gets their
    /// public halves (the trust file appliances pin), and a first signing key
    /// with a root's certificate for it (all made with the `keys` CLI).
    Offline {
        roots: Vec<PublicKey>,
        signing: Box<PrivateKey>,
        certificate: String,
    },
}

fn random_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| Error::internal("random number generator failed"))?;
    Ok(keys::b64::encode(bytes))
}

impl ControlPlane {
    /// Creates the store's first contents: a root key, a signing key certified by
    /// it, default settings and the first super_admin. Refuses an initialized store.
    pub async fn initialize(
        store: &dyn Store,
        clock: &dyn Clock,
        kek: &Kek,
        admin_name: &str,
    ) -> Result<Initialized> {
        Self::initialize_with(store, clock, kek, admin_name, RootSetup::Online).await
    }

    /// [`Self::initialize`] with the root held online or offline. An offline
    /// root's certificate must verify now against that root and certify exactly
    /// the given signing key.
    pub async fn initialize_with(
        store: &dyn Store,
        clock: &dyn Clock,
        kek: &Kek,
        admin_name: &str,
        root: RootSetup,
    ) -> Result<Initialized> {
        if store.is_initialized().await? {
            return Err(Error::bad_request(
                "the store is already initialized; nothing was changed",
            ));
        }
        let now = clock.now();
        let key_record = |key: &PrivateKey, role, chain| -> Result<KeyRecord> {
            Ok(KeyRecord {
                kid: key.kid().to_string(),
                role,
                sealed: Some(kek.seal_private_key(key, role)?),
                public: None,
                chain,
                state: KeyState::Active,
                created_at: now,
                activated_at: Some(now),
                retired_at: None,
                revoked_at: None,
            })
        };
        let (root_records, signing) = match root {
            RootSetup::Online => {
                let root = PrivateKey::generate()?;
                let signing = PrivateKey::generate()?;
                let cert = certify(&root, &signing, now)?;
                (
                    vec![key_record(&root, KeyRole::Root, vec![])?],
                    key_record(&signing, KeyRole::Signing, vec![cert])?,
                )
            }
            RootSetup::Offline {
                roots,
                signing,
                certificate,
            } => {
                if roots.is_empty() {
                    return Err(Error::bad_request("no root key given"));
                }
                let trust = keys::TrustStore::new(roots.iter().cloned());
                let certified = trust
                    .verify_chain_at(&[certificate.as_str()], now)
                    .map_err(|e| {
                        Error::bad_request(format!(
                            "the signing key's certificate does not verify against the root: {e}"
                        ))
                    })?;
                if certified.key().to_b64() != signing.public().to_b64() {
                    return Err(Error::bad_request(
                        "the certificate certifies another key than the signing key given",
                    ));
                }
                let root_records = roots
                    .iter()
                    .map(|root| KeyRecord {
                        kid: root.kid().to_string(),
                        role: KeyRole::Root,
                        sealed: None,
                        public: Some(root.to_b64()),
                        chain: vec![],
                        state: KeyState::Active,
                        created_at: now,
                        activated_at: Some(now),
                        retired_at: None,
                        revoked_at: None,
                    })
                    .collect();
                (
                    root_records,
                    key_record(&signing, KeyRole::Signing, vec![certificate])?,
                )
            }
        };
        let token = ApiToken::generate()?;
        let admin = User {
            id: UserId::generate()?,
            name: admin_name.to_owned(),
            role: Role::SuperAdmin,
            customer: None,
            token_digests: vec![token.digest()],
            created_at: now,
            disabled: false,
            password: None,
            failed_logins: 0,
            locked_until: None,
        };
        let actor = Actor::system();
        let root_kid = root_records
            .iter()
            .map(|r| r.kid.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let signing_kid = signing.kid.clone();
        let mut audit: Vec<AuditEvent> = root_records
            .iter()
            .map(|root| {
                actor.event(
                    "signing.create",
                    &root.kid,
                    json!({"role": "root", "online": root.is_online()}),
                )
            })
            .collect();
        audit.push(actor.event(
            "signing.create",
            &signing.kid,
            json!({"role": "signing", "certified_by": root_kid}),
        ));
        audit.push(actor.event(
            "user.create",
            admin.id.as_str(),
            json!({"name": admin.name, "role": "super_admin"}),
        ));
        let mut keys = root_records;
        keys.push(signing);
        let change = Change {
            users: vec![admin.clone()],
            settings: Some(Settings::default()),
            audit,
            keys,
            ..Change::default()
        };
        store.initialize(change, now).await?;
        Ok(Initialized {
            admin,
            token,
            root_kid,
            signing_kid,
        })
    }

    /// Opens an initialized store: loads and unseals the active signing key.
    pub async fn open(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        kek: Kek,
        issuer: String,
    ) -> Result<ControlPlane> {
        if !store.is_initialized().await? {
            return Err(Error::bad_request(
                "the store is not initialized: run `control-plane init` first",
            ));
        }
        let signer = Self::load_signer(store.as_ref(), &kek).await?;
        Ok(ControlPlane {
            store,
            clock,
            kek,
            signer: RwLock::new(Arc::new(signer)),
            issuer,
            metrics: Metrics::new(),
            sessions: console::Sessions::default(),
        })
    }

    /// Re-certifies the active signing key with the root when its certificate has
    /// fewer than `RENEW_BEFORE_DAYS` days left, so a fleet never locks because a
    /// certificate lapsed. Needs the root key online (sealed in the store); with an
    /// offline root it logs an error every time it is due instead. Returns whether
    /// it renewed.
    pub async fn renew_certificate_if_due(&self) -> Result<bool> {
        let now = self.now();
        let records = self.store.keys().await?;
        let Some(active) = records
            .iter()
            .filter(|k| k.role == KeyRole::Signing && k.state == KeyState::Active)
            .max_by_key(|k| k.activated_at)
        else {
            return Err(Error::internal("no active signing key in the store"));
        };
        let exp = chain_end(&active.chain).map_or(i64::MIN, UnixTime::secs);
        if exp - now.secs() > RENEW_BEFORE_DAYS * 86_400 {
            return Ok(false);
        }
        let Some(root) = records
            .iter()
            .find(|k| k.role == KeyRole::Root && k.state == KeyState::Active && k.is_online())
        else {
            tracing::error!(kid = %active.kid, exp, "the signing certificate needs renewing and no root key is online: certify it offline");
            return Ok(false);
        };
        let root_key = self.kek.open_private_key(sealed_of(root)?)?;
        let signing = self.kek.open_private_key(sealed_of(active)?)?;
        let cert = certify(&root_key, &signing, now)?;
        let mut record = active.clone();
        record.chain = vec![cert];
        let actor = Actor::system();
        self.store
            .commit(
                Change {
                    keys: vec![record],
                    audit: vec![actor.event(
                        "signing.certify",
                        active.kid.as_str(),
                        json!({"certified_by": root.kid, "previous_exp": exp, "reason": "renewal"}),
                    )],
                    ..Change::default()
                },
                now,
            )
            .await?;
        self.reload_signer().await?;
        tracing::info!(kid = %active.kid, "renewed the signing key's certificate");
        Ok(true)
    }

    async fn load_signer(store: &dyn Store, kek: &Kek) -> Result<Signer> {
        let records = store.keys().await?;
        let active = records
            .iter()
            .filter(|k| k.role == KeyRole::Signing && k.state == KeyState::Active)
            .max_by_key(|k| k.activated_at)
            .ok_or_else(|| Error::internal("no active signing key in the store"))?;
        Ok(Signer {
            key: kek.open_private_key(sealed_of(active)?)?,
            chain: active.chain.clone(),
            revoked: records
                .iter()
                .filter(|k| k.state == KeyState::Revoked)
                .map(|k| k.kid.clone())
                .collect(),
        })
    }

    fn signer(&self) -> Arc<Signer> {
        match self.signer.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The metrics handle: the HTTP layer records device outcomes and latency
    /// into it; [`Self::sweep`] records its results, whoever runs it.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The metrics in the Prometheus text format. The license-state gauge is
    /// recounted from the store when its cached count is older than
    /// [`crate::metrics::LICENSE_COUNT_TTL_SECS`]; a failed count is logged and
    /// the last one kept, so a store problem does not blank every other series.
    pub async fn metrics_text(&self) -> String {
        let now = self.now();
        if self.metrics.license_counts_stale(now) {
            match self.store.count_by_state().await {
                Ok(counts) => self.metrics.set_license_counts(now, &counts),
                Err(e) => tracing::error!(error = %e, "counting licenses by state failed"),
            }
        }
        self.metrics.encode()
    }

    /// Readiness (`GET /readyz`): the store answers a read, its last flush
    /// succeeded, and the active signing key's certificate chain verifies now
    /// against the store's own roots. `Err` carries the reason, for the operator.
    pub async fn readiness(&self) -> std::result::Result<(), String> {
        self.store
            .health()
            .await
            .map_err(|_| "the store cannot make writes durable (a flush failed)".to_owned())?;
        let records = self
            .store
            .keys()
            .await
            .map_err(|_| "the store does not answer reads".to_owned())?;
        let active = records
            .iter()
            .filter(|k| k.role == KeyRole::Signing && k.state == KeyState::Active)
            .max_by_key(|k| k.activated_at)
            .ok_or_else(|| "no active signing key".to_owned())?;
        let roots = records
            .iter()
            .filter(|k| k.role == KeyRole::Root && k.state != KeyState::Revoked)
            .filter_map(|k| PublicKey::from_b64(k.public_b64()).ok());
        let mut trust = keys::TrustStore::new(roots);
        for revoked in records.iter().filter(|k| k.state == KeyState::Revoked) {
            trust.revoke(keys::Kid::new(revoked.kid.clone()));
        }
        let chain: Vec<&str> = active.chain.iter().map(String::as_str).collect();
        let certified = trust.verify_chain_at(&chain, self.now()).map_err(|e| {
            format!(
                "the active signing key {} has no valid certificate: {e}",
                active.kid
            )
        })?;
        if certified.key().to_b64() != active.public_b64() {
            return Err(format!(
                "the certificate of the active signing key {} certifies another key",
                active.kid
            ));
        }
        Ok(())
    }

    /// The user a bearer API token belongs to.
    pub async fn authenticate(&self, token: &ApiToken) -> Result<Option<User>> {
        let digest = token.digest();
        let Some(user) = self.store.user_by_token(&digest).await? else {
            return Ok(None);
        };
        // The index lookup found it; compare again in constant time before trusting.
        let genuine = user.token_digests.iter().any(|d| d.matches(&digest));
        Ok((genuine && !user.disabled).then_some(user))
    }

    // ----- licenses -----

    pub async fn issue(
        &self,
        actor: &Actor,
        request: IssueRequest,
    ) -> Result<(License, LicenseKey)> {
        if request.customer.trim().is_empty() || request.customer.len() > 128 {
            return Err(Error::bad_request("customer must be 1 to 128 characters"));
        }
        if request.entitlements.product.trim().is_empty() {
            return Err(Error::bad_request("entitlements.product is required"));
        }
        let base = self.store.settings().await?;
        request
            .policy
            .apply(&base)
            .check()
            .map_err(Error::BadRequest)?;
        let now = self.now();
        if request.subscription_ends_at.is_some_and(|end| end <= now) {
            return Err(Error::bad_request("subscription_ends_at is in the past"));
        }
        let id = LicenseId::generate()?;
        let key = LicenseKey::generate()?;
        let license = License {
            id: id.clone(),
            customer: request.customer,
            entitlements: request.entitlements,
            state: State::Issued,
            subscription_ends_at: request.subscription_ends_at,
            policy: request.policy,
            key_digest: key.digest(),
            key_sealed: self.kek.seal_license_key(&id, &key)?,
            key_hint: Some(License::hint_of(key.expose())),
            retired_key_digests: vec![],
            binding: Binding::default(),
            rebound_devices: vec![],
            lease_seq: 0,
            lease_kid: None,
            lease_expires_at: None,
            last_seen: None,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let event = actor.event(
            "license.issue",
            id.as_str(),
            json!({
                "customer": license.customer,
                "product": license.entitlements.product,
                "subscription_ends_at": license.subscription_ends_at,
            }),
        );
        self.store
            .commit(
                Change {
                    licenses: vec![LicenseWrite {
                        license: license.clone(),
                        expected_version: None,
                    }],
                    audit: vec![event],
                    ..Change::default()
                },
                now,
            )
            .await?;
        Ok((license, key))
    }

    /// The license with this id, or "not found".
    async fn existing(&self, id: &LicenseId) -> Result<License> {
        self.store
            .license(id)
            .await?
            .ok_or(Error::NotFound("license"))
    }

    /// A license as `actor` may see it: customers see only their own, and get
    /// "not found" for the rest so that ids do not leak.
    pub async fn license(&self, actor: &Actor, id: &LicenseId) -> Result<License> {
        let license = self.existing(id).await?;
        if actor.role == Some(Role::Customer)
            && actor.customer.as_deref() != Some(&license.customer)
        {
            return Err(Error::NotFound("license"));
        }
        Ok(license)
    }

    /// Every license, for fleet-wide views (the console's heartbeats page).
    pub async fn fleet(&self) -> Result<Vec<License>> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .licenses(&LicenseQuery {
                    after,
                    limit: 1000,
                    ..LicenseQuery::default()
                })
                .await?;
            all.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    pub async fn licenses(
        &self,
        actor: &Actor,
        mut query: LicenseQuery,
    ) -> Result<Page<License, LicenseId>> {
        if actor.role == Some(Role::Customer) {
            query.customer = actor.customer.clone().or(Some(String::new()));
        }
        self.store.licenses(&query).await
    }

    /// Read-modify-write of one license with optimistic concurrency: `edit`
    /// returns the audit events of its change (none: nothing is written).
    async fn modify<F>(&self, id: &LicenseId, edit: F) -> Result<License>
    where
        F: Fn(&mut License, UnixTime) -> Result<Vec<AuditEvent>>,
    {
        self.modify_written(id, edit)
            .await
            .map(|(license, _)| license)
    }

    /// [`Self::modify`], also saying whether it wrote.
    async fn modify_written<F>(&self, id: &LicenseId, edit: F) -> Result<(License, bool)>
    where
        F: Fn(&mut License, UnixTime) -> Result<Vec<AuditEvent>>,
    {
        for _ in 0..CONFLICT_RETRIES {
            let mut license = self.existing(id).await?;
            let read_version = license.version;
            let now = self.now();
            let events = edit(&mut license, now)?;
            if events.is_empty() {
                return Ok((license, false));
            }
            license.version = read_version + 1;
            license.updated_at = now;
            let change = Change {
                licenses: vec![LicenseWrite {
                    license: license.clone(),
                    expected_version: Some(read_version),
                }],
                audit: events,
                ..Change::default()
            };
            match self.store.commit(change, now).await {
                Ok(_) => return Ok((license, true)),
                Err(Error::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict)
    }

    /// Applies a state-machine action, audited as `audit_action`.
    async fn act(
        &self,
        actor: &Actor,
        id: &LicenseId,
        action: Action,
        audit_action: &'static str,
        metadata: serde_json::Value,
        extra: impl Fn(&mut License) + Send + Sync,
    ) -> Result<License> {
        self.act_on(actor, id, |_| action, |_| audit_action, metadata, extra)
            .await
            .map(|(license, _)| license)
    }

    /// [`Self::act`], with the action chosen from the license as read for the
    /// write and the audit action from the state it leads to (the sweep's
    /// action carries the license's own subscription end, and its audit action
    /// says whether it expired or suspended); also says whether it wrote.
    async fn act_on(
        &self,
        actor: &Actor,
        id: &LicenseId,
        action: impl Fn(&License) -> Action + Send + Sync,
        audit_action: impl Fn(State) -> &'static str + Send + Sync,
        metadata: serde_json::Value,
        extra: impl Fn(&mut License) + Send + Sync,
    ) -> Result<(License, bool)> {
        self.modify_written(id, |license, now| {
            let action = action(license);
            let next = transition(license.state, license.is_bound(), action, now)
                .map_err(Error::InvalidTransition)?;
            let from = license.state.status();
            match next {
                Some(next) => license.state = next,
                // Nothing to do (a sweep that lost a race with another writer,
                // say): nothing is written and nothing is audited.
                None => return Ok(vec![]),
            }
            extra(license);
            let mut metadata = metadata.clone();
            if let Some(map) = metadata.as_object_mut() {
                map.insert("from".into(), json!(from.as_str()));
                map.insert("to".into(), json!(license.state.status().as_str()));
                if let Some(until) = license.state.grace_until() {
                    map.insert("grace_expires_at".into(), json!(until));
                }
            }
            Ok(vec![actor.event(
                audit_action(license.state),
                id.as_str(),
                metadata,
            )])
        })
        .await
    }

    pub async fn revoke(
        &self,
        actor: &Actor,
        id: &LicenseId,
        grace_days: Option<u32>,
    ) -> Result<License> {
        let license = self.existing(id).await?;
        let settings = license.policy.apply(&self.store.settings().await?);
        let grace_days = grace_days.unwrap_or(settings.default_grace_days);
        if grace_days > 365 {
            return Err(Error::bad_request("grace_days must be at most 365"));
        }
        self.act(
            actor,
            id,
            Action::Revoke { grace_days },
            "license.revoke",
            json!({"grace_days": grace_days}),
            |_| {},
        )
        .await
    }

    pub async fn reinstate(&self, actor: &Actor, id: &LicenseId) -> Result<License> {
        self.act(
            actor,
            id,
            Action::Reinstate,
            "license.reinstate",
            json!({}),
            |_| {},
        )
        .await
    }

    pub async fn suspend(&self, actor: &Actor, id: &LicenseId) -> Result<License> {
        self.act(
            actor,
            id,
            Action::Suspend,
            "license.suspend",
            json!({}),
            |_| {},
        )
        .await
    }

    /// Restores a suspended license, optionally with a new subscription end.
    pub async fn restore(
        &self,
        actor: &Actor,
        id: &LicenseId,
        subscription_ends_at: Option<UnixTime>,
    ) -> Result<License> {
        let now = self.now();
        if subscription_ends_at.is_some_and(|end| end <= now) {
            return Err(Error::bad_request("subscription_ends_at is in the past"));
        }
        let license = self.existing(id).await?;
        if license.state == State::Suspended
            && subscription_ends_at.is_none()
            && license.subscription_ends_at.is_some_and(|end| end <= now)
        {
            return Err(Error::bad_request(
                "the subscription has ended: give a new subscription_ends_at to restore",
            ));
        }
        self.act(
            actor,
            id,
            Action::Restore,
            "license.restore",
            json!({"subscription_ends_at": subscription_ends_at}),
            move |license| {
                if subscription_ends_at.is_some() {
                    license.subscription_ends_at = subscription_ends_at;
                }
            },
        )
        .await
    }

    pub async fn rebind(&self, actor: &Actor, id: &LicenseId, to: Rebind) -> Result<License> {
        if let Rebind::To(components) = &to
            && (components.is_empty() || components.len() > keys::proto::MAX_COMPONENTS)
        {
            return Err(Error::bad_request(
                "fingerprint must hold 1 to 32 components",
            ));
        }
        self.modify(id, |license, now| {
            let old = license.binding.clone();
            if let Some(device) = &old.device_key {
                License::remember(
                    &mut license.rebound_devices,
                    device.clone(),
                    REBOUND_DEVICES_KEPT,
                );
            }
            license.binding = Binding {
                components: match &to {
                    Rebind::To(components) => Some(components.clone()),
                    Rebind::Unbind => None,
                },
                device_key: None,
                counter: 0,
                bound_at: old.bound_at.or(Some(now)).filter(|_| license.is_bound()),
            };
            Ok(vec![actor.event(
                "license.rebind",
                id.as_str(),
                json!({
                    "old_fingerprint": old.components.as_ref().map(fingerprint_digest),
                    "new_fingerprint": license.binding.components.as_ref().map(fingerprint_digest),
                    "old_device_key": old.device_key,
                    "unbound": matches!(to, Rebind::Unbind),
                }),
            )])
        })
        .await
    }

    /// Replaces the license key; the old one is refused from now on.
    pub async fn regenerate(&self, actor: &Actor, id: &LicenseId) -> Result<(License, LicenseKey)> {
        let key = LicenseKey::generate()?;
        let sealed = self.kek.seal_license_key(id, &key)?;
        let license = self
            .modify(id, |license, _| {
                let old = license.key_digest.clone();
                License::remember(&mut license.retired_key_digests, old, RETIRED_KEYS_KEPT);
                license.key_digest = key.digest();
                license.key_sealed = sealed.clone();
                license.key_hint = Some(License::hint_of(key.expose()));
                Ok(vec![actor.event(
                    "license.regenerate",
                    id.as_str(),
                    json!({}),
                )])
            })
            .await?;
        Ok((license, key))
    }

    /// The license key in plaintext, audited.
    pub async fn reveal(&self, actor: &Actor, id: &LicenseId) -> Result<LicenseKey> {
        let license = self.existing(id).await?;
        let key = self.kek.open_license_key(id, &license.key_sealed)?;
        self.store
            .commit(
                Change {
                    audit: vec![actor.event("license.reveal", id.as_str(), json!({}))],
                    ..Change::default()
                },
                self.now(),
            )
            .await?;
        Ok(key)
    }

    /// Reconciles every license with the clock: grace past its end expires, a
    /// subscription past its end suspends. Each transition is its own audited
    /// commit; a second sweep at the same time finds nothing to do and writes nothing.
    pub async fn sweep(&self, actor: &Actor) -> Result<SweepReport> {
        let result = self.sweep_all(actor).await;
        match &result {
            Ok(report) => self
                .metrics
                .record_sweep(report.expired, report.suspended, self.now()),
            Err(_) => self.metrics.record_sweep_failure(),
        }
        result
    }

    /// Pages of [`Store::licenses_due_for_sweep`], whose due licenses are swept
    /// one by one ([`Self::sweep_one`]). Memory is bounded by a page: the ids of
    /// at most [`SWEEP_PAGE`] licenses.
    async fn sweep_all(&self, actor: &Actor) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        let mut after = None;
        loop {
            let scan = self
                .store
                .licenses_due_for_sweep(self.now(), after.as_ref(), SWEEP_PAGE)
                .await?;
            report.examined += scan.examined;
            for id in &scan.due {
                match self.sweep_one(actor, id).await? {
                    Some(State::Expired) => report.expired += 1,
                    Some(State::Suspended) => report.suspended += 1,
                    _ => {}
                }
            }
            match scan.next {
                Some(next) => after = Some(next),
                None => return Ok(report),
            }
        }
    }

    /// Sweeps one license the scan found due, through the audited [`Self::act`]
    /// path: the license is read again in full and the decision made again on
    /// it, so one written since the scan (restored, say) is handled as it now
    /// is, and one no longer due is not written. Returns the state it moved to.
    async fn sweep_one(&self, actor: &Actor, id: &LicenseId) -> Result<Option<State>> {
        let (license, written) = self
            .act_on(
                actor,
                id,
                |license| license.sweep_facts().action(),
                |next| match next {
                    State::Expired => "license.expire",
                    _ => "license.suspend",
                },
                json!({"reason": "sweep"}),
                |_| {},
            )
            .await?;
        Ok(written.then_some(license.state))
    }

    // ----- appliances -----

    /// Handles an activation or heartbeat. `presented_key` is the bearer license
    /// key of the request. Unsigned failures come back as `Err`; the appliance
    /// treats those as "offline". Signed denials come back as `Ok(Denied)`, only
    /// for a request whose device signature verified and covers the digest of the
    /// license key it presents: either the current key (any denial of the
    /// license's true state), or, for `invalid_key`, a superseded key presented by
    /// the bound device. A man in the middle can neither forge such a request nor
    /// alter one, so he cannot obtain a denial for a nonce of his choosing.
    pub async fn device_request(
        &self,
        id: &LicenseId,
        presented_key: &str,
        request: &DeviceRequest,
        ip: &str,
    ) -> Result<DeviceOutcome> {
        request.check_shape().map_err(Error::bad_request)?;
        if request.license_id != id.as_str() {
            return Err(Error::bad_request("license_id does not match the URL"));
        }
        let presented = LicenseKey::parse(presented_key).ok_or(Error::Unauthenticated)?;
        let digest_b64 = license_key_digest(presented.expose());
        let device = request
            .verify(&digest_b64)
            .map_err(|_| Error::Unauthenticated)?;
        let actor = Actor::appliance(id, ip);
        self.device_loop(id, Some(&presented), request, &device, &actor, None)
            .await
    }

    /// Air-gapped activation: an operator submits the box's signed activation
    /// request (carried out of the site as a file); the answer is a lease with
    /// the long air-gap window, carried back. The request's signature covers the
    /// license key's digest, which the control plane holds, so the operator never
    /// needs the key itself.
    pub async fn offline_activation(
        &self,
        actor: &Actor,
        id: &LicenseId,
        request: &DeviceRequest,
    ) -> Result<DeviceOutcome> {
        request.check_shape().map_err(Error::bad_request)?;
        if request.license_id != id.as_str() || request.kind != RequestKind::Activate {
            return Err(Error::bad_request(
                "the request is not an activation request for this license",
            ));
        }
        let license = self.existing(id).await?;
        let device = request.verify(license.key_digest.as_str()).map_err(|_| {
            Error::bad_request(
                "the request's signature does not verify with this license's current key",
            )
        })?;
        let settings = self.store.settings().await?;
        self.device_loop(
            id,
            None,
            request,
            &device,
            actor,
            Some(settings.airgap_offline_window_secs),
        )
        .await
    }

    /// Runs [`Self::device_step`], retrying when another writer got there first.
    async fn device_loop(
        &self,
        id: &LicenseId,
        presented: Option<&LicenseKey>,
        request: &DeviceRequest,
        device: &PublicKey,
        actor: &Actor,
        offline_window: Option<u32>,
    ) -> Result<DeviceOutcome> {
        for _ in 0..CONFLICT_RETRIES {
            let license = self
                .store
                .license(id)
                .await?
                .ok_or(Error::Unauthenticated)?;
            match self
                .device_step(license, presented, request, device, actor, offline_window)
                .await
            {
                Err(Error::Conflict) => continue,
                other => return other,
            }
        }
        Err(Error::Conflict)
    }

    /// `presented`: the license key of an appliance's own request, or `None`
    /// when an authorized operator submits it (air-gapped activation, whose
    /// signature was checked against the stored key digest).
    async fn device_step(
        &self,
        mut license: License,
        presented: Option<&LicenseKey>,
        request: &DeviceRequest,
        device: &PublicKey,
        actor: &Actor,
        offline_window: Option<u32>,
    ) -> Result<DeviceOutcome> {
        let now = self.now();
        let id = license.id.clone();
        let bound_here = license.binding.device_key.as_deref() == Some(request.device_key.as_str());
        if let Some(presented) = presented
            && !presented.digest().matches(&license.key_digest)
        {
            // A superseded key from the box this license is bound to: tell it, signed.
            let retired = license
                .retired_key_digests
                .iter()
                .any(|d| d.matches(&presented.digest()));
            if retired && bound_here {
                return self
                    .deny(&license, DenialReason::InvalidKey, &request.nonce, now)
                    .await;
            }
            return Err(Error::Unauthenticated);
        }
        if license.rebound_devices.contains(&request.device_key) {
            return self
                .deny(&license, DenialReason::Rebound, &request.nonce, now)
                .await;
        }
        let settings = license.policy.apply(&self.store.settings().await?);
        let read_version = license.version;
        let mut events = Vec::new();

        // Deadlines that passed since the last sweep take effect now.
        let sweep = Action::Sweep {
            subscription_ends_at: license.subscription_ends_at,
        };
        if let Ok(Some(next)) = transition(license.state, license.is_bound(), sweep, now) {
            let audit = if next == State::Expired {
                "license.expire"
            } else {
                "license.suspend"
            };
            events.push(Actor::system().event(
                audit,
                id.as_str(),
                json!({"reason": "deadline", "from": license.state.status().as_str()}),
            ));
            license.state = next;
        }

        match license.binding.device_key.clone() {
            Some(bound) if bound == request.device_key => {
                if request.counter <= license.binding.counter {
                    return self
                        .suspect_clone(
                            &license,
                            actor,
                            "the request counter went backwards",
                            json!({
                                "counter": request.counter, "last_counter": license.binding.counter,
                            }),
                        )
                        .await;
                }
                let fingerprint_ok = license.binding.components.as_ref().is_none_or(|bound| {
                    settings
                        .fingerprint_policy
                        .matches(bound, &request.components)
                });
                if !fingerprint_ok {
                    return self
                        .suspect_clone(
                            &license,
                            actor,
                            "the device key came from different hardware",
                            json!({
                                "fingerprint": fingerprint_digest(&request.components),
                            }),
                        )
                        .await;
                }
            }
            Some(_) => {
                return self
                    .suspect_clone(
                        &license,
                        actor,
                        "a second device key for a bound license",
                        json!({
                            "device_key": request.device_key,
                        }),
                    )
                    .await;
            }
            None => {
                if request.kind == RequestKind::Heartbeat {
                    return self
                        .deny(&license, DenialReason::NotActivated, &request.nonce, now)
                        .await;
                }
                if let Some(reason) = license.state.denial() {
                    return self.deny(&license, reason, &request.nonce, now).await;
                }
                if let Some(expected) = &license.binding.components
                    && !settings
                        .fingerprint_policy
                        .matches(expected, &request.components)
                {
                    return Err(Error::bad_request(
                        "this box's fingerprint does not match the one the license was rebound to",
                    ));
                }
                let from = license.state.status();
                if let Some(next) = transition(license.state, true, Action::Activate, now)
                    .map_err(Error::InvalidTransition)?
                {
                    license.state = next;
                }
                license.binding = Binding {
                    components: Some(request.components.clone()),
                    device_key: Some(request.device_key.clone()),
                    counter: 0,
                    bound_at: Some(now),
                };
                events.push(actor.event(
                    "license.activate",
                    id.as_str(),
                    json!({
                        "airgapped": offline_window.is_some(),
                        "fingerprint": fingerprint_digest(&request.components),
                        "device_key": request.device_key,
                        "from": from.as_str(),
                        "to": license.state.status().as_str(),
                    }),
                ));
            }
        }
        if let Some(reason) = license.state.denial() {
            // Record the deadline transition (if any) before answering.
            if !events.is_empty() {
                self.write(license.clone(), read_version, events, now)
                    .await?;
            }
            return self.deny(&license, reason, &request.nonce, now).await;
        }

        let offline_secs = offline_window.unwrap_or(settings.offline_window_secs);
        let (status, grace) = match license.state {
            State::Grace { until } => (LeaseStatus::Grace, Some(until)),
            _ => (LeaseStatus::Active, None),
        };
        let exp = lease_expiry(now, offline_secs, grace, license.subscription_ends_at);
        if exp <= now {
            return self
                .deny(&license, DenialReason::Expired, &request.nonce, now)
                .await;
        }
        let signer = self.signer();
        license.lease_seq += 1;
        license.lease_kid = Some(signer.key.kid().to_string());
        license.lease_expires_at = Some(exp);
        license.binding.counter = request.counter;
        license.last_seen = Some(crate::domain::license::LastSeen {
            at: now,
            version: request.version.clone(),
            ip: actor.ip.clone(),
        });
        let lease = Lease {
            iss: self.issuer.clone(),
            sub: id.to_string(),
            iat: now,
            nbf: now,
            exp,
            jti: random_id()?,
            seq: license.lease_seq,
            status,
            grace_expires_at: grace,
            fp: fingerprint_digest(&request.components),
            dev: device.to_b64(),
            cust: license.customer.clone(),
            ent: license.entitlements.clone(),
            hb: settings.heartbeat_interval_secs,
            offline: offline_secs,
            nonce: request.nonce.clone(),
        };
        let token = keys::sign(&signer.key, &lease)?;
        // The lease is answered only once its seq, the counter and any state
        // change are durable.
        self.write(license, read_version, events, now).await?;
        Ok(DeviceOutcome::Lease(SignedResponse {
            token,
            chain: signer.chain.clone(),
            revoked_kids: signer.revoked.clone(),
            heartbeat_interval_secs: settings.heartbeat_interval_secs,
        }))
    }

    async fn write(
        &self,
        mut license: License,
        read_version: u64,
        audit: Vec<AuditEvent>,
        now: UnixTime,
    ) -> Result<()> {
        license.version = read_version + 1;
        license.updated_at = now;
        self.store
            .commit(
                Change {
                    licenses: vec![LicenseWrite {
                        license,
                        expected_version: Some(read_version),
                    }],
                    audit,
                    ..Change::default()
                },
                now,
            )
            .await
            .map(drop)
    }

    async fn suspect_clone(
        &self,
        license: &License,
        actor: &Actor,
        why: &str,
        mut metadata: serde_json::Value,
    ) -> Result<DeviceOutcome> {
        if let Some(map) = metadata.as_object_mut() {
            map.insert("reason".into(), json!(why));
        }
        self.store
            .commit(
                Change {
                    audit: vec![actor.event(
                        "license.clone_suspected",
                        license.id.as_str(),
                        metadata,
                    )],
                    ..Change::default()
                },
                self.now(),
            )
            .await?;
        Err(Error::CloneSuspected(format!("suspected clone: {why}")))
    }

    async fn deny(
        &self,
        license: &License,
        reason: DenialReason,
        nonce: &str,
        now: UnixTime,
    ) -> Result<DeviceOutcome> {
        // The denial is based on what was read; make sure that is durable before
        // an appliance locks on it.
        self.store.sync().await?;
        let signer = self.signer();
        let denial = Denial {
            iss: self.issuer.clone(),
            sub: license.id.to_string(),
            iat: now,
            nbf: now,
            exp: now.plus(DENIAL_TTL_SECS),
            jti: random_id()?,
            reason,
            nonce: nonce.to_owned(),
        };
        Ok(DeviceOutcome::Denied {
            reason,
            response: SignedResponse {
                token: keys::sign(&signer.key, &denial)?,
                chain: signer.chain.clone(),
                revoked_kids: signer.revoked.clone(),
                heartbeat_interval_secs: 0,
            },
        })
    }

    // ----- signing keys (DESIGN.md "Trust chain"; super_admin only) -----

    /// Every signing and root key with its state, dates and live-lease count.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyView>> {
        let now = self.now();
        let mut live: std::collections::BTreeMap<String, u64> = Default::default();
        let mut after = None;
        loop {
            let page = self
                .store
                .licenses(&LicenseQuery {
                    after: after.clone(),
                    limit: 1000,
                    ..LicenseQuery::default()
                })
                .await?;
            for license in &page.items {
                if let (Some(kid), Some(exp)) = (&license.lease_kid, license.lease_expires_at)
                    && exp > now
                {
                    *live.entry(kid.clone()).or_default() += 1;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let mut records = self.store.keys().await?;
        records.sort_by_key(|k| (k.created_at, k.kid.clone()));
        Ok(records
            .into_iter()
            .map(|k| SigningKeyView {
                live_leases: live.get(&k.kid).copied().unwrap_or(0),
                cert_expires_at: chain_end(&k.chain),
                public: k.public_b64().to_owned(),
                record: k,
            })
            .collect())
    }

    async fn key_record(&self, kid: &str) -> Result<KeyRecord> {
        self.store
            .keys()
            .await?
            .into_iter()
            .find(|k| k.kid == kid && k.role == KeyRole::Signing)
            .ok_or(Error::NotFound("signing key"))
    }

    /// Creates a signing key (pending). With `online_root`, the online root
    /// certifies it at once; otherwise its public key is certified offline with
    /// `keys certify` and attached with [`Self::attach_certificate`].
    pub async fn create_signing_key(
        &self,
        actor: &Actor,
        online_root: bool,
    ) -> Result<SigningKeyView> {
        let now = self.now();
        let key = PrivateKey::generate()?;
        let chain = if online_root {
            let records = self.store.keys().await?;
            let root = records
                .iter()
                .find(|k| k.role == KeyRole::Root && k.state == KeyState::Active && k.is_online())
                .ok_or_else(|| {
                    Error::KeyState("no root key is held online: certify offline".into())
                })?;
            vec![certify(
                &self.kek.open_private_key(sealed_of(root)?)?,
                &key,
                now,
            )?]
        } else {
            vec![]
        };
        let record = KeyRecord {
            kid: key.kid().to_string(),
            role: KeyRole::Signing,
            sealed: Some(self.kek.seal_private_key(&key, KeyRole::Signing)?),
            public: None,
            chain,
            state: KeyState::Pending,
            created_at: now,
            activated_at: None,
            retired_at: None,
            revoked_at: None,
        };
        self.store
            .commit(
                Change {
                    keys: vec![record.clone()],
                    audit: vec![actor.event(
                        "signing.create",
                        &record.kid,
                        json!({"role": "signing", "certified_online": online_root}),
                    )],
                    ..Change::default()
                },
                now,
            )
            .await?;
        self.signing_keys()
            .await?
            .into_iter()
            .find(|v| v.record.kid == record.kid)
            .ok_or(Error::NotFound("signing key"))
    }

    /// Whether a root key is held online (sealed here), so new signing keys can
    /// be certified without an offline ceremony.
    pub async fn has_online_root(&self) -> Result<bool> {
        Ok(self
            .store
            .keys()
            .await?
            .iter()
            .any(|k| k.role == KeyRole::Root && k.state == KeyState::Active && k.is_online()))
    }

    /// Attaches a certificate chain made offline (`keys certify`) to a pending
    /// key: it must verify against the pinned roots and certify this key.
    pub async fn attach_certificate(
        &self,
        actor: &Actor,
        kid: &str,
        chain: Vec<String>,
    ) -> Result<()> {
        let now = self.now();
        let mut record = self.key_record(kid).await?;
        if record.state != KeyState::Pending {
            return Err(Error::KeyState(
                "only a pending key takes a new certificate".into(),
            ));
        }
        // `keys certify --out` ends its file with a newline; tokens never contain one.
        let chain: Vec<String> = chain.iter().map(|c| c.trim().to_owned()).collect();
        let trust = keys::TrustStore::from_file(&self.trust_file().await?)?;
        let refs: Vec<&str> = chain.iter().map(String::as_str).collect();
        let certified = trust.verify_chain_at(&refs, now).map_err(|e| {
            Error::bad_request(format!("the certificate chain does not verify: {e}"))
        })?;
        if certified.kid().as_str() != kid {
            return Err(Error::bad_request("the certificate is for another key"));
        }
        // A chain through a root rotation names a new root, certified by a
        // root pinned here (the path was verified above). Record its public
        // half, so the trust file served to new installations pins it too and
        // keys it certifies directly verify here.
        let known: Vec<String> = self
            .store
            .keys()
            .await?
            .into_iter()
            .map(|k| k.kid)
            .collect();
        let path: Vec<&str> = certified.path().iter().map(|k| k.as_str()).collect();
        let mut change = Change::default();
        for cert in &chain {
            let Ok(parsed) = keys::inspect(cert) else {
                continue;
            };
            let claim = |name: &str| parsed.claims.get(name).and_then(serde_json::Value::as_str);
            let (Some("root"), Some(new_kid), Some(public)) =
                (claim("use"), claim("kid"), claim("pub"))
            else {
                continue;
            };
            if !path.contains(&new_kid) || known.iter().any(|k| k == new_kid) {
                continue;
            }
            // Certificates before the start of the verified path are not
            // verified: take a public key only if it is the one the verified
            // kid (its thumbprint) names.
            if PublicKey::from_b64(public)
                .map(|p| p.kid().to_string())
                .ok()
                .as_deref()
                != Some(new_kid)
            {
                continue;
            }
            change.keys.push(KeyRecord {
                kid: new_kid.to_owned(),
                role: KeyRole::Root,
                sealed: None,
                public: Some(public.to_owned()),
                chain: vec![],
                state: KeyState::Active,
                created_at: now,
                activated_at: Some(now),
                retired_at: None,
                revoked_at: None,
            });
            change.audit.push(actor.event(
                "signing.root_add",
                new_kid,
                json!({"certified_by": parsed.header.get("kid"), "online": false}),
            ));
        }
        record.chain = chain;
        change.keys.push(record);
        change.audit.push(actor.event(
            "signing.certify",
            kid,
            json!({"reason": "offline certificate"}),
        ));
        self.store.commit(change, now).await?;
        Ok(())
    }

    /// Makes a pending, certified key the one new leases are signed with; the
    /// key it replaces is retired (its leases stay valid until they expire).
    pub async fn activate_signing_key(&self, actor: &Actor, kid: &str) -> Result<()> {
        let now = self.now();
        let mut record = self.key_record(kid).await?;
        if record.state != KeyState::Pending {
            return Err(Error::KeyState(format!(
                "only a pending key can be activated; this one is {}",
                format!("{:?}", record.state).to_lowercase()
            )));
        }
        let trust = keys::TrustStore::from_file(&self.trust_file().await?)?;
        let refs: Vec<&str> = record.chain.iter().map(String::as_str).collect();
        if trust.verify_chain_at(&refs, now).is_err() {
            return Err(Error::KeyState(
                "the key has no valid certificate yet".into(),
            ));
        }
        let mut change = Change::default();
        for mut old in self.store.keys().await? {
            if old.role == KeyRole::Signing && old.state == KeyState::Active {
                old.state = KeyState::Retired;
                old.retired_at = Some(now);
                change.audit.push(actor.event(
                    "signing.retire",
                    &old.kid,
                    json!({"replaced_by": kid}),
                ));
                change.keys.push(old);
            }
        }
        record.state = KeyState::Active;
        record.activated_at = Some(now);
        change
            .audit
            .push(actor.event("signing.activate", kid, json!({})));
        change.keys.push(record);
        self.store.commit(change, now).await?;
        self.reload_signer().await
    }

    /// Stops a pending key from ever signing. The active key is replaced by
    /// activating another, which retires it.
    pub async fn retire_signing_key(&self, actor: &Actor, kid: &str) -> Result<()> {
        let now = self.now();
        let mut record = self.key_record(kid).await?;
        match record.state {
            KeyState::Pending => {}
            KeyState::Active => {
                return Err(Error::KeyState(
                    "the active key is retired by activating its successor".into(),
                ));
            }
            KeyState::Retired | KeyState::Revoked => {
                return Err(Error::KeyState("the key is already out of use".into()));
            }
        }
        record.state = KeyState::Retired;
        record.retired_at = Some(now);
        self.save_key(record, actor.event("signing.retire", kid, json!({})), now)
            .await?;
        Ok(())
    }

    /// Revokes a compromised key: its kid joins the revoked list every lease
    /// and denial response carries, and appliances stop trusting anything it
    /// signed. The active key must be replaced first.
    pub async fn revoke_signing_key(&self, actor: &Actor, kid: &str) -> Result<()> {
        let now = self.now();
        let mut record = self.key_record(kid).await?;
        match record.state {
            KeyState::Active => {
                return Err(Error::KeyState(
                    "activate another signing key before revoking the active one".into(),
                ));
            }
            KeyState::Revoked => return Err(Error::KeyState("the key is already revoked".into())),
            KeyState::Pending | KeyState::Retired => {}
        }
        record.state = KeyState::Revoked;
        record.revoked_at = Some(now);
        self.save_key(record, actor.event("signing.revoke", kid, json!({})), now)
            .await?;
        self.reload_signer().await
    }

    /// Writes one key record with its audit event.
    async fn save_key(&self, record: KeyRecord, event: AuditEvent, now: UnixTime) -> Result<()> {
        self.store
            .commit(
                Change {
                    keys: vec![record],
                    audit: vec![event],
                    ..Change::default()
                },
                now,
            )
            .await
            .map(drop)
    }

    /// Reloads the active signing key and the revoked kids from the store.
    pub async fn reload_signer(&self) -> Result<()> {
        let signer = Self::load_signer(self.store.as_ref(), &self.kek).await?;
        match self.signer.write() {
            Ok(mut guard) => *guard = Arc::new(signer),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(signer),
        }
        Ok(())
    }

    // ----- settings, audit, users, keys -----

    pub async fn settings(&self) -> Result<Settings> {
        self.store.settings().await
    }

    pub async fn put_settings(&self, actor: &Actor, settings: Settings) -> Result<Settings> {
        settings.check().map_err(Error::BadRequest)?;
        let old = self.store.settings().await?;
        if old == settings {
            return Ok(settings);
        }
        self.store
            .commit(
                Change {
                    settings: Some(settings.clone()),
                    audit: vec![actor.event(
                        "settings.update",
                        "settings",
                        json!({"old": old, "new": settings}),
                    )],
                    ..Change::default()
                },
                self.now(),
            )
            .await?;
        Ok(settings)
    }

    pub async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditRecord, u64>> {
        self.store.audit(query).await
    }

    /// Creates a user and its first API token (shown once).
    pub async fn create_user(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
        customer: Option<String>,
        password: Option<String>,
    ) -> Result<(User, ApiToken)> {
        if name.trim().is_empty() || name.len() > 128 {
            return Err(Error::bad_request("name must be 1 to 128 characters"));
        }
        if (role == Role::Customer) != customer.is_some() {
            return Err(Error::bad_request(
                "customer is required for, and only for, the customer role",
            ));
        }
        if self.store.users().await?.iter().any(|u| u.name == name) {
            return Err(Error::bad_request(format!("a user named {name:?} exists")));
        }
        let password = match password {
            Some(password) => Some(console::hash_password(password).await?),
            None => None,
        };
        let token = ApiToken::generate()?;
        let user = User {
            id: UserId::generate()?,
            name: name.to_owned(),
            role,
            customer,
            token_digests: vec![token.digest()],
            created_at: self.now(),
            disabled: false,
            password,
            failed_logins: 0,
            locked_until: None,
        };
        self.store
            .commit(
                Change {
                    users: vec![user.clone()],
                    audit: vec![actor.event("user.create", user.id.as_str(), json!({"name": user.name, "role": role.as_str(), "customer": user.customer}))],
                    ..Change::default()
                },
                self.now(),
            )
            .await?;
        Ok((user, token))
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        self.store.users().await
    }

    /// The public keys anyone may use to verify leases: roots and every signing
    /// key that is not revoked.
    pub async fn jwks(&self) -> Result<keys::Jwks> {
        let records = self.store.keys().await?;
        let keys = records
            .iter()
            .filter(|k| k.state != KeyState::Revoked)
            .map(|k| PublicKey::from_b64(k.public_b64()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(keys::Jwks::from_keys(&keys))
    }

    /// The trust file appliances pin: the root keys.
    pub async fn trust_file(&self) -> Result<keys::TrustFile> {
        let records = self.store.keys().await?;
        let roots = records
            .iter()
            .filter(|k| k.role == KeyRole::Root && k.state != KeyState::Revoked)
            .map(|k| PublicKey::from_b64(k.public_b64()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut trust = keys::TrustStore::new(roots);
        for kid in &self.signer().revoked {
            trust.revoke(keys::Kid::new(kid.clone()));
        }
        Ok(trust.to_file())
    }
}

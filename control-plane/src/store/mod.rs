//! Storage: the [`Store`] trait the rest of the control plane uses, and its
//! embedded sled implementation.
//!
//! The trait speaks only domain types, in shapes a SQL table could hold (one row
//! per license, user, key and audit record), so a PostgreSQL implementation can
//! follow. Every write goes through [`Store::commit`]: one atomic step that
//! applies record changes and appends their audit records to the hash chain, and
//! returns only once the step is durable.

pub mod group_commit;
pub mod migrate;
pub mod postgres;
pub mod sled_store;

use crate::domain::audit::{AuditEvent, AuditRecord, Broken, ChainHead};
use crate::domain::ids::{LicenseId, SecretDigest, UserId};
use crate::domain::license::{License, Status};
use crate::domain::settings::Settings;
use crate::domain::user::User;
use crate::error::Result;
use keys::UnixTime;
use keys::keyfile::SealedKey;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Where the store is: `sled:DIR` (or a bare directory), the embedded default,
/// or `postgres://...` / `postgresql://...` (docs/operations.md "PostgreSQL").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sled(PathBuf),
    Postgres(String),
}

impl StoreLocation {
    /// Parses `sled:DIR`, `postgres://...` or `postgresql://...`; anything else
    /// is taken as a sled directory.
    pub fn parse(text: &str) -> StoreLocation {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            StoreLocation::Postgres(text.to_owned())
        } else {
            StoreLocation::Sled(PathBuf::from(text.strip_prefix("sled:").unwrap_or(text)))
        }
    }

    /// Opens the store (for PostgreSQL: connects and applies migrations).
    pub async fn open(&self) -> Result<Arc<dyn Store>> {
        Ok(match self {
            StoreLocation::Sled(dir) => Arc::new(sled_store::SledStore::open(dir)?),
            StoreLocation::Postgres(url) => Arc::new(postgres::PgStore::connect(url).await?),
        })
    }
}

impl std::fmt::Display for StoreLocation {
    /// The location with any password in a PostgreSQL URL masked, for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sled(dir) => write!(f, "sled:{}", dir.display()),
            StoreLocation::Postgres(url) => f.write_str(&postgres::redact(url)),
        }
    }
}

/// A write of one license, checked against the version it was read at.
#[derive(Debug, Clone)]
pub struct LicenseWrite {
    pub license: License,
    /// The version the writer read; `None` for a new license, which must not exist.
    pub expected_version: Option<u64>,
}

/// The lifecycle state of a signing or root key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Created, not signing yet (it may still await its certificate).
    Pending,
    /// Signs new leases (signing) or is the current root.
    Active,
    /// No longer signs; what it signed stays valid until it expires.
    Retired,
    /// Compromised: its kid is on the revoked list.
    Revoked,
}

/// A root or signing key as stored: sealed under the key-encryption key, or,
/// for a root held offline, its public half only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    pub kid: String,
    pub role: keys::keyfile::KeyRole,
    /// The key, sealed under the KEK (its header carries the public half).
    /// `None` for a root kept offline: nothing here can sign with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedKey>,
    /// The public half (base64url) of a key held offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<String>,
    /// For signing keys: the certificate chain, pinned-root side first.
    pub chain: Vec<String>,
    pub state: KeyState,
    pub created_at: UnixTime,
    pub activated_at: Option<UnixTime>,
    pub retired_at: Option<UnixTime>,
    #[serde(default)]
    pub revoked_at: Option<UnixTime>,
}

impl KeyRecord {
    /// The public half, base64url.
    pub fn public_b64(&self) -> &str {
        match (&self.sealed, &self.public) {
            (Some(sealed), _) => sealed.public_b64(),
            (None, Some(public)) => public,
            (None, None) => "",
        }
    }

    /// Whether the private half is here (sealed), so the control plane can sign with it.
    pub fn is_online(&self) -> bool {
        self.sealed.is_some()
    }
}

/// Everything one atomic step writes.
#[derive(Debug, Default)]
pub struct Change {
    pub licenses: Vec<LicenseWrite>,
    pub users: Vec<User>,
    pub settings: Option<Settings>,
    pub keys: Vec<KeyRecord>,
    /// Audit records appended to the chain in the same step, stamped `at`.
    pub audit: Vec<AuditEvent>,
}

impl Change {
    /// Whether only licenses are written: no user, setting, key or audit record.
    pub fn is_license_only(&self) -> bool {
        self.users.is_empty()
            && self.settings.is_none()
            && self.keys.is_empty()
            && self.audit.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.licenses.is_empty()
            && self.users.is_empty()
            && self.settings.is_none()
            && self.keys.is_empty()
            && self.audit.is_empty()
    }
}

/// Filters and a page of the license list, ordered by id.
#[derive(Debug, Clone, Default)]
pub struct LicenseQuery {
    pub status: Option<Status>,
    pub customer: Option<String>,
    /// Return ids strictly after this one.
    pub after: Option<LicenseId>,
    pub limit: usize,
}

/// Filters and a page of the audit log, ordered by sequence number.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub target: Option<String>,
    pub action: Option<String>,
    pub from: Option<UnixTime>,
    pub until: Option<UnixTime>,
    /// Return records with `seq` strictly after this one (strictly before it
    /// when `newest_first`).
    pub after: Option<u64>,
    pub limit: usize,
    /// Newest first (the console's audit page) instead of oldest first.
    pub newest_first: bool,
}

/// A page of results and the cursor of the next one.
#[derive(Debug, Clone)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

/// One page of the health sweep's scan ([`Store::licenses_due_for_sweep`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepScan {
    /// How many licenses the page examined, due or not.
    pub examined: u64,
    /// The examined licenses a sweep would move, in id order.
    pub due: Vec<LicenseId>,
    /// The last license examined, the `after` of the next page; `None` once
    /// the scan has reached the end.
    pub next: Option<LicenseId>,
}

/// The control plane's storage.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Whether `init` has run (the schema-version key exists).
    async fn is_initialized(&self) -> Result<bool>;
    async fn license(&self, id: &LicenseId) -> Result<Option<License>>;
    async fn licenses(&self, query: &LicenseQuery) -> Result<Page<License, LicenseId>>;
    /// How many licenses are in each state (states with none may be absent).
    /// Reads every license: callers cache the answer (the metrics gauge does).
    async fn count_by_state(&self) -> Result<std::collections::HashMap<Status, u64>>;
    /// The health sweep's scan: examines up to `limit` licenses in id order,
    /// after `after`, and returns the ids of those that a sweep at `now` would
    /// move, those whose [`SweepFacts::due`](crate::domain::license::SweepFacts::due)
    /// is `Some`.
    ///
    /// It is a filter, not a decision: the sweep re-reads each due license in
    /// full and decides again, so a license written since the scan is handled as
    /// it now is. That lets a store read only what the decision needs (the sled
    /// store decodes four fields of each record; a SQL store would select the
    /// due rows with a `WHERE` on its state and deadline columns), and it is what
    /// makes a sweep with nothing to do cheap. A record it cannot read fails the
    /// scan, as it fails [`Store::licenses`]. A `limit` of 0 is taken as 1.
    ///
    /// The default decodes every license in full through [`Store::licenses`].
    async fn licenses_due_for_sweep(
        &self,
        now: UnixTime,
        after: Option<&LicenseId>,
        limit: usize,
    ) -> Result<SweepScan> {
        let page = self
            .licenses(&LicenseQuery {
                after: after.cloned(),
                limit,
                ..LicenseQuery::default()
            })
            .await?;
        Ok(SweepScan {
            examined: page.items.len() as u64,
            due: page
                .items
                .iter()
                .filter(|l| l.sweep_facts().due(now).is_some())
                .map(|l| l.id.clone())
                .collect(),
            next: page.next,
        })
    }
    async fn user(&self, id: &UserId) -> Result<Option<User>>;
    async fn user_by_token(&self, digest: &SecretDigest) -> Result<Option<User>>;
    async fn users(&self) -> Result<Vec<User>>;
    /// The stored settings, or the defaults.
    async fn settings(&self) -> Result<Settings>;
    async fn keys(&self) -> Result<Vec<KeyRecord>>;
    async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditRecord, u64>>;
    /// Applies `change` atomically, appends its audit records stamped `at`, and
    /// returns once all of it is durable. Fails with `Error::Conflict`, writing
    /// nothing, if a license changed since the version a write expects.
    async fn commit(&self, change: Change, at: UnixTime) -> Result<Vec<AuditRecord>>;
    /// Marks the store initialized (writes the schema version) within `change`.
    async fn initialize(&self, change: Change, at: UnixTime) -> Result<Vec<AuditRecord>>;
    /// Waits until every write applied so far is durable, so that an answer
    /// based on what was read reflects durable state.
    async fn sync(&self) -> Result<()>;
    /// Fails when the store can no longer make writes durable.
    async fn health(&self) -> Result<()>;
    /// The head of the audit chain (the last record's seq and hash).
    async fn audit_head(&self) -> Result<ChainHead>;

    /// Checks the whole audit chain, and that it ends at the head recorded in
    /// the same steps as the records (so records cut off the end are noticed
    /// too). Returns the number of records, or where the chain breaks.
    ///
    /// The head is read before the records and again after them: on a store
    /// that other processes write meanwhile (PostgreSQL replicas), records
    /// appended during the read are past the first head, and are accepted as
    /// far as the second head goes ([`judge_chain`]).
    async fn verify_audit(&self) -> Result<std::result::Result<u64, Broken>> {
        let before = self.audit_head().await?;
        let mut records = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .audit(&AuditQuery {
                    after,
                    limit: 10_000,
                    ..AuditQuery::default()
                })
                .await?;
            records.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let later = self.audit_head().await?;
        Ok(judge_chain(records, &before, &later))
    }
}

/// The verdict on `records` (the whole log, read in order) given the chain's
/// recorded head read before them (`before`) and after them (`later`; the
/// same head on a store nothing writes meanwhile). The chain must verify,
/// reach at least `before` and hold its hash there, and not go past `later`:
/// so records cut off the end, or added past the head, are found.
pub fn judge_chain(
    records: Vec<AuditRecord>,
    before: &ChainHead,
    later: &ChainHead,
) -> std::result::Result<u64, Broken> {
    let hash_at = |seq: u64| {
        records
            .iter()
            .find(|r| r.seq == seq)
            .map(|r| r.hash.clone())
    };
    let (at_before, at_later) = (hash_at(before.seq), hash_at(later.seq));
    let count = crate::domain::audit::verify_chain(records)?;
    let fits = |head: &ChainHead, hash: &Option<String>| {
        head.seq == 0 || hash.as_deref() == Some(head.hash.as_str())
    };
    if count < before.seq
        || count > later.seq
        || !fits(before, &at_before)
        || (count == later.seq && !fits(later, &at_later))
    {
        let head = if count < before.seq { before } else { later };
        return Err(Broken {
            seq: count + 1,
            reason: format!(
                "the log ends at record {count} but the recorded head is record {}",
                head.seq
            ),
        });
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: u64) -> Vec<AuditRecord> {
        let mut head = ChainHead::default();
        (1..=n)
            .map(|i| {
                let record = AuditRecord::chain(
                    &head,
                    UnixTime(1_800_000_000 + i as i64),
                    AuditEvent {
                        action: "license.issue".into(),
                        target: format!("lic_{i}"),
                        actor_id: "usr_1".into(),
                        actor_name: "admin".into(),
                        ip: "127.0.0.1".into(),
                        metadata: serde_json::Value::Null,
                    },
                );
                head = record.head();
                record
            })
            .collect()
    }

    fn head_of(records: &[AuditRecord], seq: u64) -> ChainHead {
        match seq {
            0 => ChainHead::default(),
            seq => records[usize::try_from(seq - 1).unwrap()].head(),
        }
    }

    /// (records in the log, head seq before the read, head seq after it) →
    /// the verdict: the count, or the seq `Broken` names.
    fn check(records: u64, before: u64, later: u64, expected: std::result::Result<u64, u64>) {
        let full = log(records.max(before).max(later));
        let (before, later) = (head_of(&full, before), head_of(&full, later));
        let shown: Vec<AuditRecord> = full.into_iter().take(records as usize).collect();
        let verdict = judge_chain(shown, &before, &later).map_err(|b| b.seq);
        assert_eq!(
            verdict, expected,
            "{records} records, head {} then {}",
            before.seq, later.seq
        );
    }

    #[test]
    fn the_audit_chain_is_judged_against_the_heads_around_the_read() {
        check(0, 0, 0, Ok(0));
        check(5, 5, 5, Ok(5));
        // Appended by another replica while the records were read: not a break
        // (it was one before the head was read twice).
        check(5, 3, 5, Ok(5));
        check(4, 3, 5, Ok(4));
        // Cut off the end: the log stops short of the head read first.
        check(3, 5, 5, Err(4));
        check(2, 3, 5, Err(3));
        // Records past any recorded head.
        check(5, 3, 3, Err(6));
    }

    #[test]
    fn a_head_whose_hash_the_log_does_not_hold_is_a_break() {
        let records = log(3);
        let mut head = records[2].head();
        head.hash = "forged".into();
        assert_eq!(
            judge_chain(records.clone(), &head, &head).map_err(|b| b.seq),
            Err(4)
        );
        let mut earlier = records[1].head();
        earlier.hash = "forged".into();
        let later = records[2].head();
        assert_eq!(
            judge_chain(records, &earlier, &later).map_err(|b| b.seq),
            Err(4)
        );
    }
}

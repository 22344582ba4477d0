//! The embedded store on sled 0.34.
//!
//! Trees: `meta` (schema version, settings, audit chain head), `licenses` (id →
//! JSON), `users` (id → JSON), `tokens` (API token digest → user id), `keys` (kid →
//! sealed key record), `audit` (big-endian seq → JSON), `audit_by_target`
//! (target, NUL, big-endian seq → nothing: the index that finds one license's
//! history without reading the whole log). A [`Change`] is one sled
//! transaction over all seven trees, so a state change and its audit record land
//! together or not at all; then [`GroupCommit`] flushes before the caller is
//! answered. A change of one license with no audit record (a heartbeat) is a
//! compare-and-swap instead ([`SledStore::swap_license`] says why).
//!
//! Durability: sled's flush writes its log with `sync_file_range`-style syncing,
//! which survives a process crash (`kill -9`), the promise DESIGN.md
//! "Durability" makes; docs/operations.md states what it does not promise (power
//! loss on some file systems).

use super::group_commit::GroupCommit;
use super::{AuditQuery, Change, KeyRecord, LicenseQuery, Page, SCHEMA_VERSION, Store, SweepScan};
use crate::domain::audit::{AuditRecord, ChainHead};
use crate::domain::ids::{LicenseId, SecretDigest, UserId};
use crate::domain::license::{License, State, Status, SweepFacts, is_bound};
use crate::domain::settings::Settings;
use crate::domain::user::User;
use crate::error::{Error, Result};
use keys::UnixTime;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use sled::Transactional as _;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use std::path::Path;
use std::sync::Arc;

const SCHEMA_KEY: &[u8] = b"schema_version";
const SETTINGS_KEY: &[u8] = b"settings";
const HEAD_KEY: &[u8] = b"audit_head";
/// Set once `audit_by_target` indexes every record (stores written before the
/// index existed are indexed when they are opened).
const TARGET_INDEX_KEY: &[u8] = b"audit_by_target_complete";

/// One page of the records `query` selects, from records already in its order
/// (`None`: an index entry whose record is gone, skipped).
fn audit_page(
    records: impl Iterator<Item = Result<Option<AuditRecord>>>,
    query: &AuditQuery,
) -> Result<Page<AuditRecord, u64>> {
    let limit = query.limit.max(1);
    let mut items = Vec::new();
    let mut next = None;
    for record in records {
        let Some(record) = record? else { continue };
        let keep = query.after != Some(record.seq)
            && query
                .target
                .as_ref()
                .is_none_or(|t| *t == record.event.target)
            && query
                .action
                .as_ref()
                .is_none_or(|a| *a == record.event.action)
            && query.from.is_none_or(|f| record.at >= f)
            && query.until.is_none_or(|u| record.at < u);
        if !keep {
            continue;
        }
        if items.len() == limit {
            next = items.last().map(|r: &AuditRecord| r.seq);
            break;
        }
        items.push(record);
    }
    Ok(Page { items, next })
}

/// The `audit_by_target` key of a record.
fn target_key(target: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(target.len() + 9);
    key.extend_from_slice(target.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The fields of a stored license that the sweep decides on ([`SweepFacts`]),
/// decoded without the rest of the record: serde skips every other field
/// without building it, and nothing here allocates. Decoding a whole `License`
/// allocates some thirty blocks (its strings, the fingerprint map) and costs
/// 2.2 to 2.6 × a raw scan of the tree; this costs about 1.4 × (docs/BENCHMARKS.md,
/// the health sweep).
#[derive(Deserialize)]
struct SweepView {
    /// [`State`] is flattened into the record: its tag, and `until` for grace.
    status: Status,
    until: Option<UnixTime>,
    subscription_ends_at: Option<UnixTime>,
    binding: SweepBindingView,
}

#[derive(Deserialize)]
struct SweepBindingView {
    device_key: Option<IgnoredAny>,
    bound_at: Option<UnixTime>,
}

impl SweepView {
    fn decode(bytes: &[u8]) -> Result<SweepFacts> {
        let view: SweepView = decode(bytes)?;
        let state = State::from_parts(view.status, view.until).ok_or_else(|| {
            Error::Store("a stored record is unreadable: grace without `until`".into())
        })?;
        Ok(SweepFacts {
            state,
            bound: is_bound(
                view.binding.device_key.is_some(),
                view.binding.bound_at.is_some(),
            ),
            subscription_ends_at: view.subscription_ends_at,
        })
    }
}

/// The license id a `licenses` key holds.
fn license_id(key: &[u8]) -> Result<LicenseId> {
    std::str::from_utf8(key)
        .ok()
        .and_then(LicenseId::parse)
        .ok_or_else(|| Error::Store("a stored license has a malformed id".into()))
}

#[derive(Debug, Clone)]
pub struct SledStore {
    db: Arc<sled::Db>,
    meta: sled::Tree,
    licenses: sled::Tree,
    users: sled::Tree,
    tokens: sled::Tree,
    keys: sled::Tree,
    audit: sled::Tree,
    audit_by_target: sled::Tree,
    group: Arc<GroupCommit>,
}

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(store_err)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Store(format!("a stored record is unreadable: {e}")))
}

/// The one field of a stored license that a write checks: decoding only it
/// skips the rest of the record without allocating.
#[derive(Deserialize)]
struct StoredVersion {
    version: u64,
}

fn stored_version(bytes: &[u8]) -> Result<u64> {
    decode::<StoredVersion>(bytes).map(|v| v.version)
}

/// Why a transaction stopped.
enum Abort {
    Conflict,
    Other(Error),
}

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Abort>>;

fn abort(e: Error) -> ConflictableTransactionError<Abort> {
    ConflictableTransactionError::Abort(Abort::Other(e))
}

fn tx_decode<T: DeserializeOwned>(bytes: &[u8]) -> TxResult<T> {
    decode(bytes).map_err(abort)
}

fn tx_encode<T: Serialize>(value: &T) -> TxResult<Vec<u8>> {
    encode(value).map_err(abort)
}

impl SledStore {
    /// Opens (or creates) the store in `dir`. Must be called in a tokio runtime.
    pub fn open(dir: &Path) -> Result<SledStore> {
        let db = Arc::new(
            sled::Config::new()
                .path(dir)
                .cache_capacity(128 * 1024 * 1024)
                .mode(sled::Mode::HighThroughput)
                .open()
                .map_err(|e| {
                    Error::Store(format!("opening the store at {}: {e}", dir.display()))
                })?,
        );
        let tree = |name: &str| db.open_tree(name).map_err(store_err);
        let store = SledStore {
            meta: tree("meta")?,
            licenses: tree("licenses")?,
            users: tree("users")?,
            tokens: tree("tokens")?,
            keys: tree("keys")?,
            audit: tree("audit")?,
            audit_by_target: tree("audit_by_target")?,
            group: {
                // The flusher must not keep the database (and its lock) alive.
                let db = Arc::downgrade(&db);
                GroupCommit::start(move || match db.upgrade() {
                    Some(db) => db.flush().map(drop).map_err(|e| e.to_string()),
                    None => Err("the store is closed".to_owned()),
                })
            },
            db,
        };
        if let Some(version) = store.meta.get(SCHEMA_KEY).map_err(store_err)? {
            let version: u32 = decode(&version)?;
            if version > SCHEMA_VERSION {
                return Err(Error::Store(format!(
                    "the store has schema version {version}; this build reads up to {SCHEMA_VERSION}"
                )));
            }
        }
        store.index_audit_targets()?;
        Ok(store)
    }

    /// Indexes, once, the audit records of a store written before
    /// `audit_by_target` existed. Idempotent, so a crash half-way is harmless.
    fn index_audit_targets(&self) -> Result<()> {
        if self
            .meta
            .get(TARGET_INDEX_KEY)
            .map_err(store_err)?
            .is_some()
        {
            return Ok(());
        }
        for record in self.audit_records() {
            let record = record?;
            self.audit_by_target
                .insert(target_key(&record.event.target, record.seq), &[])
                .map_err(store_err)?;
        }
        self.meta
            .insert(TARGET_INDEX_KEY, &[1])
            .map_err(store_err)?;
        self.db.flush().map_err(store_err)?;
        Ok(())
    }

    fn get<T: DeserializeOwned>(tree: &sled::Tree, key: &[u8]) -> Result<Option<T>> {
        tree.get(key)
            .map_err(store_err)?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Applies a change in one transaction; returns the audit records written.
    fn apply(&self, change: &Change, at: UnixTime, init: bool) -> Result<Vec<AuditRecord>> {
        if let ([write], true) = (
            change.licenses.as_slice(),
            !init && change.is_license_only(),
        ) {
            return self.swap_license(write).map(|()| Vec::new());
        }
        let trees = (
            &self.meta,
            &self.licenses,
            &self.users,
            &self.tokens,
            &self.keys,
            &self.audit,
            &self.audit_by_target,
        );
        let result =
            trees.transaction(|(meta, licenses, users, tokens, keys, audit, by_target)| {
                if init {
                    if meta.get(SCHEMA_KEY)?.is_some() {
                        return Err(abort(Error::Conflict));
                    }
                    meta.insert(SCHEMA_KEY, tx_encode(&SCHEMA_VERSION)?)?;
                }
                for write in &change.licenses {
                    let id = write.license.id.as_str().as_bytes();
                    let current = licenses
                        .get(id)?
                        .map(|v| stored_version(&v).map_err(abort))
                        .transpose()?;
                    if current != write.expected_version {
                        return Err(ConflictableTransactionError::Abort(Abort::Conflict));
                    }
                    licenses.insert(id, tx_encode(&write.license)?)?;
                }
                for user in &change.users {
                    put_user(users, tokens, user)?;
                }
                if let Some(settings) = &change.settings {
                    meta.insert(SETTINGS_KEY, tx_encode(settings)?)?;
                }
                for key in &change.keys {
                    keys.insert(key.kid.as_bytes(), tx_encode(key)?)?;
                }
                let mut written = Vec::with_capacity(change.audit.len());
                if !change.audit.is_empty() {
                    let mut head: ChainHead = match meta.get(HEAD_KEY)? {
                        Some(v) => tx_decode(&v)?,
                        None => ChainHead::default(),
                    };
                    for event in &change.audit {
                        let record = AuditRecord::chain(&head, at, event.clone());
                        audit.insert(&record.seq.to_be_bytes(), tx_encode(&record)?)?;
                        by_target.insert(target_key(&record.event.target, record.seq), &[])?;
                        head = record.head();
                        written.push(record);
                    }
                    meta.insert(HEAD_KEY, tx_encode(&head)?)?;
                }
                Ok(written)
            });
        match result {
            Ok(written) => Ok(written),
            Err(TransactionError::Abort(Abort::Conflict)) => Err(Error::Conflict),
            Err(TransactionError::Abort(Abort::Other(e))) => Err(e),
            Err(TransactionError::Storage(e)) => Err(store_err(e)),
        }
    }

    /// [`Store::audit`] for one target, through `audit_by_target`: it reads
    /// only that target's records.
    fn audit_of_target(&self, target: &str, query: &AuditQuery) -> Result<Page<AuditRecord, u64>> {
        let (low, high) = match (query.newest_first, query.after) {
            (false, after) => (
                target_key(target, after.map_or(0, |a| a.saturating_add(1))),
                target_key(target, u64::MAX),
            ),
            (true, before) => (
                target_key(target, 0),
                target_key(target, before.map_or(u64::MAX, |b| b.saturating_sub(1))),
            ),
        };
        let range = self.audit_by_target.range(low..=high);
        let keys: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            if query.newest_first {
                Box::new(range.rev())
            } else {
                Box::new(range)
            };
        let records = keys.map(|entry| {
            let (key, _) = entry.map_err(store_err)?;
            let seq_bytes: [u8; 8] = key
                .get(key.len().saturating_sub(8)..)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| Error::Store("a malformed audit index key".into()))?;
            Self::get::<AuditRecord>(&self.audit, &seq_bytes)
        });
        audit_page(records, query)
    }

    /// One license written alone, with no audit record (a heartbeat): a
    /// compare-and-swap against the exact bytes whose version was checked,
    /// which is as atomic as a transaction for one key. It matters for speed:
    /// sled serializes every transaction against every flush in progress (a
    /// transaction takes its global lock for writing, a flush for reading), so
    /// transactions let group commit batch almost nothing; a compare-and-swap
    /// runs beside a flush.
    fn swap_license(&self, write: &super::LicenseWrite) -> Result<()> {
        let id = write.license.id.as_str().as_bytes();
        let current = self.licenses.get(id).map_err(store_err)?;
        let version = current
            .as_ref()
            .map(|bytes| stored_version(bytes))
            .transpose()?;
        if version != write.expected_version {
            return Err(Error::Conflict);
        }
        match self
            .licenses
            .compare_and_swap(id, current, Some(encode(&write.license)?))
            .map_err(store_err)?
        {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::Conflict),
        }
    }

    async fn durable(&self) -> Result<()> {
        self.group.durable().await.map_err(Error::Store)
    }

    /// Every audit record in order, for `audit verify`.
    pub fn audit_records(&self) -> impl Iterator<Item = Result<AuditRecord>> + '_ {
        self.audit.iter().map(|entry| {
            let (_, value) = entry.map_err(store_err)?;
            decode(&value)
        })
    }

    /// Flushes everything to disk (at shutdown).
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map(drop).map_err(store_err)
    }
}

fn put_user(users: &TransactionalTree, tokens: &TransactionalTree, user: &User) -> TxResult<()> {
    let id = user.id.as_str().as_bytes();
    if let Some(old) = users.get(id)? {
        let old: User = tx_decode(&old)?;
        for digest in &old.token_digests {
            tokens.remove(digest.as_str().as_bytes())?;
        }
    }
    for digest in &user.token_digests {
        tokens.insert(digest.as_str().as_bytes(), id)?;
    }
    users.insert(id, tx_encode(user)?)?;
    Ok(())
}

#[async_trait::async_trait]
impl Store for SledStore {
    async fn is_initialized(&self) -> Result<bool> {
        Ok(self.meta.get(SCHEMA_KEY).map_err(store_err)?.is_some())
    }

    async fn license(&self, id: &LicenseId) -> Result<Option<License>> {
        Self::get(&self.licenses, id.as_str().as_bytes())
    }

    async fn licenses(&self, query: &LicenseQuery) -> Result<Page<License, LicenseId>> {
        let start = match &query.after {
            Some(after) => std::ops::Bound::Excluded(after.as_str().as_bytes().to_vec()),
            None => std::ops::Bound::Unbounded,
        };
        let limit = query.limit.max(1);
        let mut items = Vec::new();
        let mut next = None;
        for entry in self.licenses.range((start, std::ops::Bound::Unbounded)) {
            let (_, value) = entry.map_err(store_err)?;
            let license: License = decode(&value)?;
            if query.status.is_some_and(|s| license.state.status() != s)
                || query
                    .customer
                    .as_ref()
                    .is_some_and(|c| *c != license.customer)
            {
                continue;
            }
            if items.len() == limit {
                next = items.last().map(|l: &License| l.id.clone());
                break;
            }
            items.push(license);
        }
        Ok(Page { items, next })
    }

    async fn count_by_state(&self) -> Result<std::collections::HashMap<Status, u64>> {
        let mut counts = std::collections::HashMap::new();
        for entry in self.licenses.iter() {
            let (_, value) = entry.map_err(store_err)?;
            let license: License = decode(&value)?;
            *counts.entry(license.state.status()).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Decodes only [`SweepView`] of each record, and takes the id from the
    /// key, so a record that is not due costs no allocation.
    async fn licenses_due_for_sweep(
        &self,
        now: UnixTime,
        after: Option<&LicenseId>,
        limit: usize,
    ) -> Result<SweepScan> {
        let start = match after {
            Some(after) => std::ops::Bound::Excluded(after.as_str().as_bytes()),
            None => std::ops::Bound::Unbounded,
        };
        let limit = limit.max(1);
        let mut scan = SweepScan::default();
        let mut last = None;
        for entry in self
            .licenses
            .range::<&[u8], _>((start, std::ops::Bound::Unbounded))
            .take(limit)
        {
            let (key, value) = entry.map_err(store_err)?;
            scan.examined += 1;
            if SweepView::decode(&value)?.due(now).is_some() {
                scan.due.push(license_id(&key)?);
            }
            last = Some(key);
        }
        if scan.examined == limit as u64 {
            scan.next = last.map(|key| license_id(&key)).transpose()?;
        }
        Ok(scan)
    }

    async fn user(&self, id: &UserId) -> Result<Option<User>> {
        Self::get(&self.users, id.as_str().as_bytes())
    }

    async fn user_by_token(&self, digest: &SecretDigest) -> Result<Option<User>> {
        let Some(id) = self
            .tokens
            .get(digest.as_str().as_bytes())
            .map_err(store_err)?
        else {
            return Ok(None);
        };
        Self::get(&self.users, &id)
    }

    async fn users(&self) -> Result<Vec<User>> {
        self.users
            .iter()
            .map(|entry| decode(&entry.map_err(store_err)?.1))
            .collect()
    }

    async fn settings(&self) -> Result<Settings> {
        Ok(Self::get(&self.meta, SETTINGS_KEY)?.unwrap_or_default())
    }

    async fn keys(&self) -> Result<Vec<KeyRecord>> {
        self.keys
            .iter()
            .map(|entry| decode(&entry.map_err(store_err)?.1))
            .collect()
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditRecord, u64>> {
        if let Some(target) = &query.target {
            return self.audit_of_target(target, query);
        }
        let entries: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            if query.newest_first {
                let end = query.after.unwrap_or(u64::MAX);
                Box::new(self.audit.range(..end.to_be_bytes()).rev())
            } else {
                let start = query.after.map_or(1, |a| a.saturating_add(1));
                Box::new(self.audit.range(start.to_be_bytes()..))
            };
        let records = entries.map(|entry| {
            let (_, value) = entry.map_err(store_err)?;
            decode::<AuditRecord>(&value).map(Some)
        });
        audit_page(records, query)
    }

    async fn commit(&self, change: Change, at: UnixTime) -> Result<Vec<AuditRecord>> {
        if change.is_empty() {
            return Ok(Vec::new());
        }
        let written = self.apply(&change, at, false)?;
        self.durable().await?;
        Ok(written)
    }

    async fn initialize(&self, change: Change, at: UnixTime) -> Result<Vec<AuditRecord>> {
        let written = self.apply(&change, at, true)?;
        self.durable().await?;
        Ok(written)
    }

    async fn sync(&self) -> Result<()> {
        self.durable().await
    }

    async fn health(&self) -> Result<()> {
        match self.group.failure() {
            Some(e) => Err(Error::Store(format!("writes cannot be made durable: {e}"))),
            None => Ok(()),
        }
    }

    async fn audit_head(&self) -> Result<ChainHead> {
        Ok(Self::get(&self.meta, HEAD_KEY)?.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::{AuditEvent, verify_chain};
    use crate::domain::ids::LicenseKey;
    use crate::domain::license::{Binding, State};
    use crate::store::LicenseWrite;

    const AT: UnixTime = UnixTime(1_800_000_000);

    fn event(target: &str) -> AuditEvent {
        AuditEvent {
            action: "license.issue".into(),
            target: target.into(),
            actor_id: "usr_test".into(),
            actor_name: "test".into(),
            ip: "127.0.0.1".into(),
            metadata: serde_json::json!({}),
        }
    }

    fn license(version: u64) -> License {
        let key = LicenseKey::generate().unwrap();
        License {
            id: LicenseId::parse("lic_0123456789abcdef0123456789abcdef").unwrap(),
            customer: "acme".into(),
            entitlements: keys::Entitlements::default(),
            state: State::Issued,
            subscription_ends_at: None,
            policy: Default::default(),
            key_digest: key.digest(),
            key_sealed: "sealed".into(),
            key_hint: None,
            retired_key_digests: vec![],
            binding: Binding::default(),
            rebound_devices: vec![],
            lease_seq: 0,
            lease_kid: None,
            lease_expires_at: None,
            last_seen: None,
            created_at: AT,
            updated_at: AT,
            version,
        }
    }

    fn write(license: License, expected_version: Option<u64>) -> Change {
        Change {
            licenses: vec![LicenseWrite {
                license,
                expected_version,
            }],
            audit: vec![event("lic")],
            ..Change::default()
        }
    }

    #[tokio::test]
    async fn a_tampered_audit_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        for i in 0..5 {
            let change = Change {
                audit: vec![event(&format!("t{i}"))],
                ..Change::default()
            };
            store.commit(change, AT).await.unwrap();
        }
        let mut third: AuditRecord =
            decode(&store.audit.get(3u64.to_be_bytes()).unwrap().unwrap()).unwrap();
        third.event.actor_name = "mallory".into();
        store
            .audit
            .insert(3u64.to_be_bytes(), encode(&third).unwrap())
            .unwrap();
        let records: Vec<_> = store.audit_records().collect::<Result<_>>().unwrap();
        assert_eq!(verify_chain(records).unwrap_err().seq, 3);
        store.audit.remove(3u64.to_be_bytes()).unwrap();
        let records: Vec<_> = store.audit_records().collect::<Result<_>>().unwrap();
        assert_eq!(verify_chain(records).unwrap_err().seq, 3);
    }

    #[tokio::test]
    async fn records_cut_off_the_end_are_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        for i in 0..4 {
            let change = Change {
                audit: vec![event(&format!("t{i}"))],
                ..Change::default()
            };
            store.commit(change, AT).await.unwrap();
        }
        assert_eq!(store.verify_audit().await.unwrap(), Ok(4));
        store.audit.remove(4u64.to_be_bytes()).unwrap();
        let broken = store.verify_audit().await.unwrap().unwrap_err();
        assert_eq!(broken.seq, 4);
        store.audit.remove(3u64.to_be_bytes()).unwrap();
        assert_eq!(store.verify_audit().await.unwrap().unwrap_err().seq, 3);
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .meta
                .insert(SCHEMA_KEY, encode(&(SCHEMA_VERSION + 1)).unwrap())
                .unwrap();
            store.flush().unwrap();
        }
        assert!(matches!(SledStore::open(dir.path()), Err(Error::Store(_))));
    }

    /// What `audit` must answer, computed by reading every record.
    fn scan(records: &[AuditRecord], q: &AuditQuery) -> Vec<u64> {
        let mut seqs: Vec<u64> = records
            .iter()
            .filter(|r| q.target.as_ref().is_none_or(|t| *t == r.event.target))
            .filter(|r| q.action.as_ref().is_none_or(|a| *a == r.event.action))
            .filter(|r| match (q.newest_first, q.after) {
                (false, Some(a)) => r.seq > a,
                (true, Some(b)) => r.seq < b,
                (_, None) => true,
            })
            .map(|r| r.seq)
            .collect();
        if q.newest_first {
            seqs.reverse();
        }
        seqs.truncate(q.limit);
        seqs
    }

    #[tokio::test]
    async fn one_targets_history_comes_from_the_index_as_a_scan_would_find_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            for i in 0..60u32 {
                let mut e = event(&format!("t{}", i % 4));
                if i % 3 == 0 {
                    e.action = "license.revoke".into();
                }
                // t1 and t10 share a prefix: the NUL separator keeps them apart.
                let extra = event(if i % 5 == 0 { "t10" } else { "t1x" });
                let change = Change {
                    audit: vec![e, extra],
                    ..Change::default()
                };
                store.commit(change, AT).await.unwrap();
            }
            // As if written before the index existed.
            store.audit_by_target.clear().unwrap();
            store.meta.remove(TARGET_INDEX_KEY).unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        let records: Vec<_> = store.audit_records().collect::<Result<_>>().unwrap();
        for target in ["t0", "t1", "t10", "t3", "nothing"] {
            for action in [None, Some("license.revoke")] {
                for newest_first in [false, true] {
                    for after in [None, Some(1), Some(40), Some(119), Some(500)] {
                        for limit in [1, 7, 100] {
                            let q = AuditQuery {
                                target: Some(target.into()),
                                action: action.map(str::to_owned),
                                after,
                                limit,
                                newest_first,
                                ..AuditQuery::default()
                            };
                            let got: Vec<u64> = store
                                .audit(&q)
                                .await
                                .unwrap()
                                .items
                                .iter()
                                .map(|r| r.seq)
                                .collect();
                            assert_eq!(got, scan(&records, &q), "{q:?}");
                        }
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn the_due_scan_fails_on_an_unreadable_record_as_the_listing_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.commit(write(license(1), None), AT).await.unwrap();
        let id = license(1).id;
        let mut grace_without_until = serde_json::to_value(license(1)).unwrap();
        grace_without_until["status"] = "grace".into();
        for bad in [
            b"{not json".to_vec(),
            b"{}".to_vec(),
            serde_json::to_vec(&grace_without_until).unwrap(),
        ] {
            store.licenses.insert(id.as_str(), bad).unwrap();
            assert!(matches!(
                store.licenses(&LicenseQuery::default()).await,
                Err(Error::Store(_))
            ));
            assert!(matches!(
                store.licenses_due_for_sweep(AT, None, 100).await,
                Err(Error::Store(_))
            ));
        }
    }
}

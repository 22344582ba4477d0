//! The appliance's local state, in sled.
//!
//! Everything the appliance knows lives in one record, written whole and
//! prefixed with its SHA-256, so a damaged store is recognised as damaged rather
//! than half-read: a store that is missing, truncated, bit-flipped or from a
//! newer version loads as [`Loaded::Damaged`], which the agent treats as "no
//! valid lease; activate again online". Nothing in the record grants time by
//! itself: the lease is re-verified against the pinned roots every time it is
//! loaded (see `agent`).
//!
//! Every save is flushed before it returns, because the agent relies on each one
//! (the request counter before a request is sent, the lease before it is used).

use crate::eval::LockReason;
use keys::UnixTime;
use keys::keyfile::SealedKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const SCHEMA_VERSION: u32 = 1;
const SCHEMA_KEY: &[u8] = b"schema_version";
const RECORD_KEY: &[u8] = b"state";

/// A lease as stored: the token and the certificate chain it verified with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLease {
    pub token: String,
    pub chain: Vec<String>,
}

/// Everything the appliance keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub license_id: Option<String>,
    /// The control plane's base URL.
    pub server: Option<String>,
    /// The license key, sealed to this machine (`keyfile::seal_blob` under
    /// `fingerprint::machine_secret`).
    pub license_key_sealed: Option<String>,
    /// The device key, sealed to this machine.
    pub device_key: Option<SealedKey>,
    /// The last request counter used; saved before each request is sent.
    pub counter: u64,
    pub lease: Option<StoredLease>,
    /// Kids the control plane reported revoked. Only ever grows: an unsigned list
    /// may add distrust, never remove it.
    pub revoked_kids: Vec<String>,
    pub lock: Option<LockReason>,
    /// The latest corrected wall time seen.
    pub high_water: Option<UnixTime>,
    /// Seconds to add to the wall clock: learned from the `iat` of the last
    /// lease, which is signed and bound to our request's nonce.
    pub clock_offset: i64,
    pub last_attempt: Option<UnixTime>,
    /// The nonce of the last request sent, awaiting its answer (air-gapped
    /// activation carries it across processes).
    pub pending_nonce: Option<String>,
    pub last_success: Option<UnixTime>,
    pub last_error: Option<String>,
}

/// What opening the store found.
#[derive(Debug)]
pub enum Loaded {
    /// Nothing stored yet.
    Empty,
    Ok(Box<Record>),
    /// Something is stored but cannot be trusted; the reason says what.
    Damaged(String),
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (usually the running service) holds the store's lock.
    /// Not damage: nothing may be reset or moved aside because of it.
    #[error(
        "another appliance process (the running service?) is using {path}: stop it first, or ask it with `appliance status`"
    )]
    Busy { path: PathBuf },
    #[error("the local store at {path} cannot be opened: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("the local store cannot be written: {0}")]
    Write(String),
}

/// The sled-backed store.
#[derive(Debug)]
pub struct LocalStore {
    db: sled::Db,
    path: PathBuf,
}

fn encode(record: &Record) -> Result<Vec<u8>, StoreError> {
    let body = serde_json::to_vec(record).map_err(|e| StoreError::Write(e.to_string()))?;
    let mut out = Sha256::digest(&body).to_vec();
    out.extend_from_slice(&body);
    Ok(out)
}

fn decode(bytes: &[u8]) -> Result<Record, String> {
    if bytes.len() < 32 {
        return Err("the state record is truncated".into());
    }
    let (sum, body) = bytes.split_at(32);
    if Sha256::digest(body).as_slice() != sum {
        return Err("the state record fails its checksum".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("the state record is unreadable: {e}"))
}

impl LocalStore {
    /// Opens (or creates) the store. sled can panic on some kinds of damage
    /// (sled issue 1533); that is caught and reported as an error like any other.
    pub fn open(dir: &Path) -> Result<LocalStore, StoreError> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(8 * 1024 * 1024);
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open()));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(sled::Error::Io(e)))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.to_string().contains("could not acquire lock") =>
            {
                return Err(StoreError::Busy {
                    path: dir.to_owned(),
                });
            }
            Ok(Err(e)) => {
                return Err(StoreError::Open {
                    path: dir.to_owned(),
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(StoreError::Open {
                    path: dir.to_owned(),
                    reason: "the store is damaged (sled panicked while opening it)".into(),
                });
            }
        };
        Ok(LocalStore {
            db,
            path: dir.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the record.
    pub fn load(&self) -> Loaded {
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (self.db.get(SCHEMA_KEY), self.db.get(RECORD_KEY))
        }));
        let (schema, record) = match read {
            Ok((Ok(schema), Ok(record))) => (schema, record),
            Ok((Err(e), _) | (_, Err(e))) => return Loaded::Damaged(format!("read failed: {e}")),
            Err(_) => return Loaded::Damaged("sled panicked while reading".into()),
        };
        match (schema, record) {
            (None, None) => Loaded::Empty,
            (Some(schema), Some(record)) => {
                match serde_json::from_slice::<u32>(&schema) {
                    Ok(SCHEMA_VERSION) => {}
                    Ok(other) => {
                        return Loaded::Damaged(format!(
                            "schema version {other}; this build reads {SCHEMA_VERSION}"
                        ));
                    }
                    Err(_) => return Loaded::Damaged("the schema version is unreadable".into()),
                }
                match decode(&record) {
                    Ok(record) => Loaded::Ok(Box::new(record)),
                    Err(reason) => Loaded::Damaged(reason),
                }
            }
            _ => Loaded::Damaged("the store is incomplete".into()),
        }
    }

    /// Writes the record and flushes it to disk before returning.
    pub fn save(&self, record: &Record) -> Result<(), StoreError> {
        let bytes = encode(record)?;
        let write = || -> Result<(), sled::Error> {
            self.db.insert(
                SCHEMA_KEY,
                serde_json::to_vec(&SCHEMA_VERSION).unwrap_or_default(),
            )?;
            self.db.insert(RECORD_KEY, bytes.as_slice())?;
            self.db.flush()?;
            Ok(())
        };
        write().map_err(|e| StoreError::Write(e.to_string()))
    }
}

/// Moves a damaged store aside (`<dir>.damaged-<unix time>`) so a fresh one can
/// be created; the old files are kept for support to look at.
pub fn set_aside(dir: &Path, now: UnixTime) -> std::io::Result<PathBuf> {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".damaged-{}", now.secs()));
    let target = dir.with_file_name(name);
    std::fs::rename(dir, &target)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            license_id: Some("lic_1".into()),
            counter: 7,
            high_water: Some(UnixTime(1_800_000_000)),
            revoked_kids: vec!["k".into()],
            ..Record::default()
        }
    }

    #[test]
    fn saves_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LocalStore::open(dir.path()).unwrap();
            assert!(matches!(store.load(), Loaded::Empty));
            store.save(&record()).unwrap();
        }
        let store = LocalStore::open(dir.path()).unwrap();
        match store.load() {
            Loaded::Ok(r) => assert_eq!(*r, record()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_damaged_record_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        store.save(&record()).unwrap();
        let mut bytes = store.db.get(RECORD_KEY).unwrap().unwrap().to_vec();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x20;
        store.db.insert(RECORD_KEY, bytes.as_slice()).unwrap();
        assert!(matches!(store.load(), Loaded::Damaged(_)));
        store.db.insert(RECORD_KEY, &b"short"[..]).unwrap();
        assert!(matches!(store.load(), Loaded::Damaged(_)));
        store.db.remove(RECORD_KEY).unwrap();
        assert!(matches!(store.load(), Loaded::Damaged(_)));
        store.db.insert(SCHEMA_KEY, &b"99"[..]).unwrap();
        store
            .db
            .insert(RECORD_KEY, encode(&record()).unwrap())
            .unwrap();
        assert!(matches!(store.load(), Loaded::Damaged(_)));
    }

    #[test]
    fn a_damaged_store_is_set_aside() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("state");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("x"), b"x").unwrap();
        let moved = set_aside(&dir, UnixTime(5)).unwrap();
        assert!(!dir.exists());
        assert!(moved.ends_with("state.damaged-5"));
        assert!(moved.join("x").exists());
    }
}

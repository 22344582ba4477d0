//! The audit log's records and hash chain (DESIGN.md "Audit").
//!
//! Each record carries the hash of the one before it; its own hash is SHA-256 over
//! the previous hash and the record's canonical JSON (every field but `hash`).
//! Changing, removing or reordering any record breaks every hash after it, and
//! [`verify_chain`] names the first record that does not fit.

use keys::UnixTime;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash the first record chains from.
pub const GENESIS: &str = "genesis";

/// What an audit record says happened, before it is placed in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// `license.revoke`, `settings.update`, ...
    pub action: String,
    /// What it happened to (a license id, `settings`, a user id).
    pub target: String,
    pub actor_id: String,
    pub actor_name: String,
    pub ip: String,
    pub metadata: serde_json::Value,
}

/// A record as stored: the event, its place and its hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub at: UnixTime,
    #[serde(flatten)]
    pub event: AuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// The head of the chain: the last record's sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

impl Default for ChainHead {
    fn default() -> ChainHead {
        ChainHead {
            seq: 0,
            hash: GENESIS.into(),
        }
    }
}

#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    at: UnixTime,
    #[serde(flatten)]
    event: &'a AuditEvent,
    prev_hash: &'a str,
}

fn hash_of(seq: u64, at: UnixTime, event: &AuditEvent, prev_hash: &str) -> String {
    let canonical = serde_json::to_vec(&Hashed {
        seq,
        at,
        event,
        prev_hash,
    })
    .unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(&canonical);
    keys::b64::encode(hasher.finalize())
}

impl AuditRecord {
    /// The record that follows `head`.
    pub fn chain(head: &ChainHead, at: UnixTime, event: AuditEvent) -> AuditRecord {
        let seq = head.seq + 1;
        let hash = hash_of(seq, at, &event, &head.hash);
        AuditRecord {
            seq,
            at,
            event,
            prev_hash: head.hash.clone(),
            hash,
        }
    }

    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The sequence number of the first record that does not fit (or that is missing).
    pub seq: u64,
    pub reason: String,
}

/// Checks records given in order from the first; returns how many were checked.
pub fn verify_chain(records: impl IntoIterator<Item = AuditRecord>) -> Result<u64, Broken> {
    let mut head = ChainHead::default();
    for record in records {
        let expected_seq = head.seq + 1;
        if record.seq != expected_seq {
            return Err(Broken {
                seq: expected_seq,
                reason: format!(
                    "record {expected_seq} is missing (found {} next)",
                    record.seq
                ),
            });
        }
        if record.prev_hash != head.hash {
            return Err(Broken {
                seq: record.seq,
                reason: "prev_hash is not the hash of the record before".into(),
            });
        }
        if hash_of(record.seq, record.at, &record.event, &record.prev_hash) != record.hash {
            return Err(Broken {
                seq: record.seq,
                reason: "the record's contents do not match its hash".into(),
            });
        }
        head = record.head();
    }
    Ok(head.seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64) -> AuditEvent {
        AuditEvent {
            action: "license.revoke".into(),
            target: format!("lic_{i}"),
            actor_id: "usr_1".into(),
            actor_name: "sam".into(),
            ip: "127.0.0.1".into(),
            metadata: serde_json::json!({"grace_days": i}),
        }
    }

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut head = ChainHead::default();
        (1..=n)
            .map(|i| {
                let r = AuditRecord::chain(&head, UnixTime(i as i64), event(i));
                head = r.head();
                r
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify_chain(chain(10)), Ok(10));
        assert_eq!(verify_chain(vec![]), Ok(0));
    }

    #[test]
    fn tampering_names_the_first_broken_record() {
        let mut records = chain(10);
        records[4].event.metadata = serde_json::json!({"grace_days": 99});
        assert_eq!(verify_chain(records).unwrap_err().seq, 5);

        let mut records = chain(10);
        records.remove(6);
        assert_eq!(verify_chain(records).unwrap_err().seq, 7);

        let mut records = chain(10);
        records.swap(2, 3);
        assert_eq!(verify_chain(records).unwrap_err().seq, 3);

        // Rewriting a record and its own hash still breaks the next link.
        let mut records = chain(10);
        records[4].event.actor_name = "mallory".into();
        records[4].hash = hash_of(5, records[4].at, &records[4].event, &records[4].prev_hash);
        assert_eq!(verify_chain(records).unwrap_err().seq, 6);
    }
}

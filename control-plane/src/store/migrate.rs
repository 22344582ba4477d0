//! `control-plane migrate`: copies a whole installation from one store to an
//! empty PostgreSQL store, audit chain included, then checks the copy record by
//! record against the source.

use super::postgres::PgStore;
use super::{AuditQuery, LicenseQuery, Store};
use crate::error::{Error, Result};
use serde::Serialize;

/// What a migration copied, each count checked against the source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Copied {
    pub licenses: u64,
    pub users: u64,
    pub keys: u64,
    pub audit_records: u64,
}

/// Copies `from` into `to`, which must be empty (not initialized), in one
/// transaction, then [`verify`]s the copy.
pub async fn migrate(from: &dyn Store, to: &PgStore) -> Result<Copied> {
    if !from.is_initialized().await? {
        return Err(Error::bad_request("the source store is not initialized"));
    }
    to.import(from).await?;
    verify(from, to).await
}

/// Checks that `to` holds exactly what `from` holds: every license, user, key,
/// the settings and every audit record, compared as their stored JSON; that
/// the target's audit chain verifies; and that both heads agree.
pub async fn verify(from: &dyn Store, to: &dyn Store) -> Result<Copied> {
    fn json<T: Serialize>(value: &T) -> Result<serde_json::Value> {
        serde_json::to_value(value).map_err(|e| Error::internal(e.to_string()))
    }
    fn differs(what: &str) -> Error {
        Error::Store(format!("the copy differs from the source: {what}"))
    }
    let mut copied = Copied::default();
    let mut after = None;
    loop {
        let query = LicenseQuery {
            after: after.clone(),
            limit: 1000,
            ..LicenseQuery::default()
        };
        let (a, b) = (from.licenses(&query).await?, to.licenses(&query).await?);
        if json(&a.items)? != json(&b.items)? || a.next != b.next {
            return Err(differs(&format!(
                "licenses after {}",
                after
                    .as_ref()
                    .map_or("the start", |id: &crate::domain::ids::LicenseId| id
                        .as_str())
            )));
        }
        copied.licenses += a.items.len() as u64;
        match a.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let (users, copy) = (from.users().await?, to.users().await?);
    if json(&sorted_by(users.clone(), |u| u.id.as_str().to_owned()))?
        != json(&sorted_by(copy, |u| u.id.as_str().to_owned()))?
    {
        return Err(differs("users"));
    }
    copied.users = users.len() as u64;
    for user in &users {
        for digest in &user.token_digests {
            let found = to.user_by_token(digest).await?.map(|u| u.id);
            if found.as_ref() != Some(&user.id) {
                return Err(differs("an API token's user"));
            }
        }
    }
    let (keys, copy) = (from.keys().await?, to.keys().await?);
    if json(&sorted_by(keys.clone(), |k| k.kid.clone()))?
        != json(&sorted_by(copy, |k| k.kid.clone()))?
    {
        return Err(differs("keys"));
    }
    copied.keys = keys.len() as u64;
    if json(&from.settings().await?)? != json(&to.settings().await?)? {
        return Err(differs("settings"));
    }
    let mut after = None;
    loop {
        let query = AuditQuery {
            after,
            limit: 10_000,
            ..AuditQuery::default()
        };
        let (a, b) = (from.audit(&query).await?, to.audit(&query).await?);
        if json(&a.items)? != json(&b.items)? || a.next != b.next {
            return Err(differs(&format!(
                "audit records after {}",
                after.unwrap_or(0)
            )));
        }
        copied.audit_records += a.items.len() as u64;
        match a.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if from.audit_head().await? != to.audit_head().await? {
        return Err(differs("the audit chain's head"));
    }
    if let Err(broken) = to.verify_audit().await? {
        return Err(Error::Store(format!(
            "the copied audit chain is broken at record {}: {}",
            broken.seq, broken.reason
        )));
    }
    Ok(copied)
}

fn sorted_by<T>(mut items: Vec<T>, key: impl Fn(&T) -> String) -> Vec<T> {
    items.sort_by_key(|item| key(item));
    items
}

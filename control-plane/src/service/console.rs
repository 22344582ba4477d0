//! Console sign-in: passwords, lockout and sessions.
//!
//! Sessions live in memory only: a restart signs everyone out, which costs a
//! sign-in and keeps session secrets off the disk. A session is looked up by the
//! SHA-256 of its cookie (so the map holds no usable secret) and re-reads its
//! user on every request, so a disabled user or a changed role takes effect at
//! once. Failed sign-ins are counted on the user record and audited; after
//! [`LOCKOUT_AFTER`] in a row the user is locked for [`LOCKOUT_SECS`] (audited
//! `user.lockout`), whatever address the attempts come from.

use super::{Actor, ControlPlane};
use crate::domain::ids::{SessionToken, UserId};
use crate::domain::password::{self, PasswordHash};
use crate::domain::user::{LOCKOUT_AFTER, LOCKOUT_SECS, User};
use crate::error::{Error, Result};
use crate::store::Change;
use keys::UnixTime;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;

/// A session ends after this long without a request...
pub const IDLE_SECS: i64 = 30 * 60;
/// ...and this long after sign-in in any case.
pub const SESSION_MAX_SECS: i64 = 12 * 3600;
/// Sessions kept at most; the oldest is dropped beyond it, so a flood of
/// sign-ins cannot exhaust memory.
const MAX_SESSIONS: usize = 10_000;

/// A signed-in console session.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    /// The session's CSRF token, which every form posts back.
    pub csrf: String,
}

#[derive(Debug, Clone)]
struct Entry {
    user: UserId,
    csrf: String,
    started: UnixTime,
    last_used: UnixTime,
}

/// Sessions by the SHA-256 of their token.
#[derive(Debug, Default)]
pub(super) struct Sessions(Mutex<HashMap<String, Entry>>);

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every operation is a single insert or remove), so keep going.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How a sign-in ended.
#[derive(Debug)]
pub enum Login {
    /// Signed in: set this cookie.
    Started { token: SessionToken },
    /// Wrong name or password (the two are not told apart).
    Refused,
    /// Locked out until then.
    Locked { until: UnixTime },
}

/// A random 256-bit value, base64url: a CSRF token.
fn random_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal(format!("getrandom: {e}")))?;
    Ok(keys::b64::encode(bytes))
}

/// Hashes a new password on a blocking thread (argon2id takes tens of ms).
pub(super) async fn hash_password(password: String) -> Result<PasswordHash> {
    password::check_new(&password)?;
    tokio::task::spawn_blocking(move || PasswordHash::new(&password))
        .await
        .map_err(|e| Error::Internal(format!("password hashing task: {e}")))?
}

impl ControlPlane {
    /// Checks a console sign-in and starts a session. Every failure for a known
    /// user, and every lockout, is audited in the same step as the counter.
    pub async fn login(&self, name: &str, password: &str, ip: &str) -> Result<Login> {
        let users = self.store.users().await?;
        let user = users
            .into_iter()
            .find(|u| u.name == name && !u.disabled && u.password.is_some());
        let Some(mut user) = user else {
            let password = password.to_owned();
            // Same work as a real check, so timing does not reveal the name.
            let _ =
                tokio::task::spawn_blocking(move || PasswordHash::verify_nothing(&password)).await;
            return Ok(Login::Refused);
        };
        let now = self.now();
        if let Some(until) = user.locked_until.filter(|_| user.is_locked(now)) {
            return Ok(Login::Locked { until });
        }
        let hash = user.password.clone().ok_or(Error::Unauthenticated)?;
        let attempt = password.to_owned();
        let genuine = tokio::task::spawn_blocking(move || hash.verify(&attempt))
            .await
            .map_err(|e| Error::Internal(format!("password check task: {e}")))?;
        let actor = Actor::user(&user, ip.to_owned());
        if !genuine {
            user.failed_logins = user.failed_logins.saturating_add(1);
            let mut audit = vec![actor.event(
                "user.login_failed",
                user.id.as_str(),
                json!({"failures": user.failed_logins}),
            )];
            let locked = user.failed_logins >= LOCKOUT_AFTER;
            if locked {
                let until = now.plus(LOCKOUT_SECS);
                user.locked_until = Some(until);
                audit.push(actor.event(
                    "user.lockout",
                    user.id.as_str(),
                    json!({"failures": user.failed_logins, "until": until}),
                ));
            }
            self.store
                .commit(
                    Change {
                        users: vec![user.clone()],
                        audit,
                        ..Change::default()
                    },
                    now,
                )
                .await?;
            return Ok(match user.locked_until {
                Some(until) if locked => Login::Locked { until },
                _ => Login::Refused,
            });
        }
        user.failed_logins = 0;
        user.locked_until = None;
        self.store
            .commit(
                Change {
                    users: vec![user.clone()],
                    audit: vec![actor.event("user.login", user.id.as_str(), json!({}))],
                    ..Change::default()
                },
                now,
            )
            .await?;
        let token = SessionToken::generate()?;
        let entry = Entry {
            user: user.id.clone(),
            csrf: random_token()?,
            started: now,
            last_used: now,
        };
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, e| live(e, now));
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, e)| e.started)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(token.digest().as_str().to_owned(), entry);
        Ok(Login::Started { token })
    }

    /// The live session of a cookie, with its user as stored now; `None` for an
    /// unknown, expired or disabled one. Touches the idle timer.
    pub async fn session(&self, token: &SessionToken) -> Result<Option<Session>> {
        let key = token.digest().as_str().to_owned();
        let now = self.now();
        let entry = {
            let mut sessions = self.sessions.lock();
            match sessions.get_mut(&key) {
                Some(entry) if live(entry, now) => {
                    entry.last_used = now;
                    entry.clone()
                }
                Some(_) => {
                    sessions.remove(&key);
                    return Ok(None);
                }
                None => return Ok(None),
            }
        };
        let user = self.store.user(&entry.user).await?;
        match user {
            Some(user) if !user.disabled && user.password.is_some() => Ok(Some(Session {
                user,
                csrf: entry.csrf,
            })),
            _ => {
                self.sessions.lock().remove(&key);
                Ok(None)
            }
        }
    }

    /// Ends a session (audited `user.logout`).
    pub async fn logout(&self, actor: &Actor, token: &SessionToken) -> Result<()> {
        let removed = self
            .sessions
            .lock()
            .remove(token.digest().as_str())
            .is_some();
        if removed {
            self.store
                .commit(
                    Change {
                        audit: vec![actor.event("user.logout", &actor.id, json!({}))],
                        ..Change::default()
                    },
                    self.now(),
                )
                .await?;
        }
        Ok(())
    }

    /// Sets a user's console password (audited `user.password_set`); it also
    /// lifts a lockout and ends the user's sessions.
    pub async fn set_password(&self, actor: &Actor, id: &UserId, password: String) -> Result<User> {
        let hash = hash_password(password).await?;
        let mut user = self.store.user(id).await?.ok_or(Error::NotFound("user"))?;
        user.password = Some(hash);
        user.failed_logins = 0;
        user.locked_until = None;
        self.store
            .commit(
                Change {
                    users: vec![user.clone()],
                    audit: vec![actor.event("user.password_set", id.as_str(), json!({}))],
                    ..Change::default()
                },
                self.now(),
            )
            .await?;
        self.sessions.lock().retain(|_, e| e.user != *id);
        Ok(user)
    }
}

fn live(entry: &Entry, now: UnixTime) -> bool {
    now.0 - entry.last_used.0 < IDLE_SECS && now.0 - entry.started.0 < SESSION_MAX_SECS
}

//! Rate limits, answered with 429 `rate_limited` and `Retry-After` before a
//! request reaches its handler:
//!
//! - activations (`/licenses/{id}/activate`, `/offline-activation`) per client IP;
//! - failed authentications (401 answers outside the appliance endpoints) per
//!   client IP: an address that uses up its allowance is refused outright
//!   (valid token or not: checking it would let the guessing go on) until it
//!   has one again, so API tokens cannot be guessed at speed. The public routes
//!   (health, readiness, metrics, public keys, the API document) stay open;
//! - heartbeats per license, whatever the address, so one misbehaving box (or
//!   a copy of its key) cannot hog the signing path.
//!
//! A 429 is unsigned, so an appliance reads it as "offline" and its lease runs
//! on (DESIGN.md "Denials"): a limit can delay a heartbeat, never lock a box.
//!
//! The client IP is the TCP peer. Behind a reverse proxy every request shares
//! the proxy's address; operators then set the IP limits at the proxy (see
//! docs/operations.md). Requests without a peer address (router tests driving
//! `oneshot`) skip the IP limits.

use super::error::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Each limit is a number of requests per minute per key, with bursts of the
/// same size (a full bucket refills over a minute); 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Activations (online and air-gapped) per client IP.
    pub activations_per_minute: u32,
    /// Failed authentications per client IP.
    pub auth_failures_per_minute: u32,
    /// Heartbeats per license. An appliance sends one a minute, more while it
    /// retries after failures or restarts in a loop while locked.
    pub heartbeats_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> RateLimits {
        RateLimits {
            activations_per_minute: 60,
            auth_failures_per_minute: 30,
            heartbeats_per_minute: 20,
        }
    }
}

impl RateLimits {
    /// No limits (for tests that drive many requests on manual clocks).
    pub const OFF: RateLimits = RateLimits {
        activations_per_minute: 0,
        auth_failures_per_minute: 0,
        heartbeats_per_minute: 0,
    };
}

/// How many limiter checks pass between clean-ups of idle keys.
const SWEEP_EVERY: u64 = 4096;

/// The limiters' state, shared by every request.
#[derive(Debug)]
pub struct Limiter {
    activations: Option<DefaultKeyedRateLimiter<IpAddr>>,
    auth_failures: Option<DefaultKeyedRateLimiter<IpAddr>>,
    heartbeats: Option<DefaultKeyedRateLimiter<String>>,
    /// Addresses that used up their failed-authentication allowance, until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    checks: AtomicU64,
    clock: DefaultClock,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(per_minute: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_minute).map(|n| governor::RateLimiter::keyed(Quota::per_minute(n)))
}

impl Limiter {
    pub fn new(limits: RateLimits) -> Arc<Limiter> {
        Arc::new(Limiter {
            activations: limiter(limits.activations_per_minute),
            auth_failures: limiter(limits.auth_failures_per_minute),
            heartbeats: limiter(limits.heartbeats_per_minute),
            blocked: Mutex::new(HashMap::new()),
            checks: AtomicU64::new(0),
            clock: DefaultClock::default(),
        })
    }

    /// `Err(wait)` when `key` is over `limiter`'s allowance.
    fn check<K: std::hash::Hash + Eq + Clone>(
        &self,
        limiter: &Option<DefaultKeyedRateLimiter<K>>,
        key: &K,
    ) -> Result<(), Duration> {
        let Some(limiter) = limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.forget_idle();
        }
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops the state of keys whose buckets are full again, so memory follows
    /// the recently active keys rather than every key ever seen.
    fn forget_idle(&self) {
        for limiter in [&self.activations, &self.auth_failures]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
        }
        if let Some(limiter) = &self.heartbeats {
            limiter.retain_recent();
        }
        let now = Instant::now();
        if let Ok(mut blocked) = self.blocked.lock() {
            blocked.retain(|_, until| *until > now);
        }
    }

    fn blocked_for(&self, ip: IpAddr) -> Option<Duration> {
        let blocked = self.blocked.lock().ok()?;
        let until = blocked.get(&ip)?;
        until.checked_duration_since(Instant::now())
    }

    fn failed_authentication(&self, ip: IpAddr) {
        if let Err(wait) = self.check(&self.auth_failures, &ip)
            && let Ok(mut blocked) = self.blocked.lock()
        {
            tracing::warn!(%ip, wait_secs = wait.as_secs(), "too many failed authentications; address blocked");
            blocked.insert(ip, Instant::now() + wait);
        }
    }
}

/// What a request is, for the limits.
enum Kind {
    Activation,
    Heartbeat(String),
    /// Needs no credential: health checks, metrics, public keys, the API
    /// document. Never blocked, so a health check behind the same address as a
    /// script with a stale token keeps working.
    Public,
    Other,
}

fn kind(method: &Method, path: &str) -> Kind {
    if method == Method::GET
        && (matches!(path, "/healthz" | "/readyz" | "/metrics" | "/openapi.json")
            || path.starts_with("/.well-known/"))
    {
        return Kind::Public;
    }
    if method != Method::POST {
        return Kind::Other;
    }
    let mut segments = path.trim_start_matches('/').split('/');
    match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some("licenses"), Some(id), Some("activate" | "offline-activation"), None)
            if !id.is_empty() =>
        {
            Kind::Activation
        }
        (Some("licenses"), Some(id), Some("heartbeat"), None) if !id.is_empty() => {
            Kind::Heartbeat(id.to_owned())
        }
        _ => Kind::Other,
    }
}

fn too_many(wait: Duration, what: &str) -> Response {
    let secs = wait.as_secs().max(1);
    let response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many {what}; retry in {secs} s"),
    )
    .into_response();
    retry_after(response, secs)
}

/// Adds `Retry-After: secs` to a 429.
fn retry_after(mut response: Response, secs: u64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The same refusal as a page, for the web console's browsers.
fn console_too_many(wait: Duration) -> Response {
    let secs = wait.as_secs().max(1);
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Too many attempts · Licensing</title></head><body>\
         <h1>Too many attempts</h1><p>Too many failed sign-ins from this address. \
         Try again in {secs} s.</p></body></html>"
    );
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::response::Html(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The middleware: refuses over-limit requests and counts failed authentications.
pub async fn enforce(
    State(limiter): State<Arc<Limiter>>,
    request: Request,
    next: Next,
) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let kind = kind(request.method(), request.uri().path());
    match (&kind, ip) {
        (Kind::Activation, Some(ip)) => {
            if let Err(wait) = limiter.check(&limiter.activations, &ip) {
                return too_many(wait, "activations from this address");
            }
        }
        (Kind::Heartbeat(license), _) => {
            if let Err(wait) = limiter.check(&limiter.heartbeats, license) {
                return too_many(wait, "heartbeats for this license");
            }
        }
        (Kind::Other, Some(ip)) => {
            if let Some(wait) = limiter.blocked_for(ip) {
                if request.uri().path().starts_with("/licensing") {
                    return console_too_many(wait);
                }
                return too_many(wait, "failed authentications from this address");
            }
        }
        _ => {}
    }
    let response = next.run(request).await;
    // Appliance endpoints answer 401 with a signed `invalid_key` denial to a
    // regenerated key; that is a verdict, not a guess, and has its own limits.
    if let (Kind::Other, Some(ip)) = (&kind, ip)
        && response.status() == StatusCode::UNAUTHORIZED
    {
        limiter.failed_authentication(ip);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified_by_method_and_path() {
        let check = |method: Method, path: &str, expected: &str| {
            let got = match kind(&method, path) {
                Kind::Activation => "activation".to_owned(),
                Kind::Heartbeat(id) => format!("heartbeat {id}"),
                Kind::Public => "public".to_owned(),
                Kind::Other => "other".to_owned(),
            };
            assert_eq!(got, expected, "{method} {path}");
        };
        check(Method::POST, "/licenses/lic_1/activate", "activation");
        check(
            Method::POST,
            "/licenses/lic_1/offline-activation",
            "activation",
        );
        check(Method::POST, "/licenses/lic_1/heartbeat", "heartbeat lic_1");
        check(Method::GET, "/licenses/lic_1/heartbeat", "other");
        check(Method::POST, "/licenses/lic_1/heartbeat/x", "other");
        check(Method::POST, "/licenses//heartbeat", "other");
        check(Method::POST, "/licenses/lic_1/revoke", "other");
        check(Method::POST, "/licenses", "other");
        check(Method::GET, "/licenses", "other");
        check(Method::GET, "/healthz", "public");
        check(Method::GET, "/readyz", "public");
        check(Method::GET, "/metrics", "public");
        check(Method::GET, "/.well-known/jwks.json", "public");
        check(Method::POST, "/healthz", "other");
    }

    #[test]
    fn a_limit_allows_its_burst_then_refuses_with_a_wait() {
        let limiter = Limiter::new(RateLimits {
            heartbeats_per_minute: 3,
            ..RateLimits::OFF
        });
        let key = "lic_1".to_owned();
        for _ in 0..3 {
            assert_eq!(limiter.check(&limiter.heartbeats, &key), Ok(()));
        }
        let wait = limiter.check(&limiter.heartbeats, &key).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Other keys have their own buckets; a limit that is off never refuses.
        assert_eq!(
            limiter.check(&limiter.heartbeats, &"lic_2".to_owned()),
            Ok(())
        );
        let ip = IpAddr::from([127, 0, 0, 1]);
        for _ in 0..1000 {
            assert_eq!(limiter.check(&limiter.activations, &ip), Ok(()));
        }
    }
}
